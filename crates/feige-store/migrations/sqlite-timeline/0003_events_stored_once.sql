-- A fan-out writes one event to every member's timeline: its JSON is now stored once, in
-- `timeline_event`, and each member's row points at it (issue 7: a 500-member send wrote the
-- same ~300 bytes 500 times, and the wide rows split a member's page every dozen sends).
-- Rows written before keep their JSON inline in `timeline.event`; a row has one or the other,
-- or neither (a filler).
CREATE TABLE timeline_event (
    id    INTEGER PRIMARY KEY,
    event TEXT NOT NULL
);
ALTER TABLE timeline ADD COLUMN event_id INTEGER;
