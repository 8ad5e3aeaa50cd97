-- Per-user timelines (embedded profile). One row per (user, seq); `event` is NULL for a
-- filler written over a dead writer's hole.
CREATE TABLE timeline (
    user_id    INTEGER NOT NULL,
    seq        INTEGER NOT NULL,
    event_key  TEXT    NOT NULL,
    event      TEXT,
    written_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, seq)
) WITHOUT ROWID;
CREATE UNIQUE INDEX timeline_by_event ON timeline(user_id, event_key);
