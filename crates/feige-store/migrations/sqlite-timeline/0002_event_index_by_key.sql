-- The uniqueness of (user, event) is kept, but indexed event-first: a fan-out's entries (one
-- event, every member) are then neighbours in the index, so writing them touches a few index
-- pages instead of one page per member (issue 7: half the pages, and WAL bytes, of a group send).
DROP INDEX timeline_by_event;
CREATE UNIQUE INDEX timeline_by_event_key ON timeline(event_key, user_id);
