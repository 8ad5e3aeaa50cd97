-- Groups. Membership is the group conversation's member list, with a role.
ALTER TABLE conversation_members ADD COLUMN role TEXT NOT NULL DEFAULT 'member';
ALTER TABLE conversation_members ADD COLUMN joined_at INTEGER NOT NULL DEFAULT 0;

CREATE TABLE chat_groups (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    create_key   TEXT    NOT NULL UNIQUE,
    name         TEXT    NOT NULL,
    announcement TEXT    NOT NULL DEFAULT '',
    owner_id     INTEGER NOT NULL,
    member_count INTEGER NOT NULL DEFAULT 0,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    disbanded_at INTEGER
);
