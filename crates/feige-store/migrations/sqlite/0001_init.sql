-- Users, login sessions, conversations, members and history (embedded profile).
-- Times are milliseconds since the Unix epoch.
CREATE TABLE users (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    username      TEXT    NOT NULL COLLATE NOCASE UNIQUE,
    nickname      TEXT    NOT NULL,
    password_hash TEXT    NOT NULL,
    created_at    INTEGER NOT NULL
);

CREATE TABLE sessions (
    sid                TEXT    PRIMARY KEY,
    user_id            INTEGER NOT NULL REFERENCES users(id),
    device_id          TEXT    NOT NULL,
    platform           TEXT    NOT NULL,
    refresh_hash       TEXT    NOT NULL,
    prev_refresh_hash  TEXT,
    refresh_expires_at INTEGER NOT NULL,
    created_at         INTEGER NOT NULL,
    revoked_at         INTEGER
);
CREATE INDEX sessions_by_device ON sessions(user_id, device_id);
CREATE INDEX sessions_by_revoked ON sessions(revoked_at);

CREATE TABLE conversations (
    id         TEXT    PRIMARY KEY,
    kind       TEXT    NOT NULL,
    group_id   INTEGER,
    last_seq   INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE TABLE conversation_members (
    conversation_id TEXT    NOT NULL REFERENCES conversations(id),
    user_id         INTEGER NOT NULL,
    peer_id         INTEGER,
    read_seq        INTEGER NOT NULL DEFAULT 0,
    joined_seq      INTEGER NOT NULL DEFAULT 0,
    active          INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (conversation_id, user_id)
);
CREATE INDEX members_by_user ON conversation_members(user_id, active);

CREATE TABLE messages (
    msg_id          TEXT    PRIMARY KEY,
    conversation_id TEXT    NOT NULL,
    conv_seq        INTEGER NOT NULL,
    sender_id       INTEGER NOT NULL,
    client_msg_id   TEXT    NOT NULL,
    type            TEXT    NOT NULL,
    body            TEXT    NOT NULL,
    created_at      INTEGER NOT NULL,
    recalled_at     INTEGER,
    UNIQUE (conversation_id, conv_seq),
    UNIQUE (sender_id, client_msg_id)
);
