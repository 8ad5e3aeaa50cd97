-- Groups. Membership is the group conversation's member list, with a role.
-- (`groups` is a reserved word in MySQL 8, hence chat_groups.)
ALTER TABLE conversation_members
    ADD COLUMN role VARCHAR(16) NOT NULL DEFAULT 'member',
    ADD COLUMN joined_at BIGINT NOT NULL DEFAULT 0;

CREATE TABLE chat_groups (
    id           BIGINT        NOT NULL AUTO_INCREMENT PRIMARY KEY,
    create_key   VARCHAR(32)   NOT NULL,
    name         VARCHAR(255)  NOT NULL,
    announcement VARCHAR(2000) NOT NULL DEFAULT '',
    owner_id     BIGINT        NOT NULL,
    member_count BIGINT        NOT NULL DEFAULT 0,
    created_at   BIGINT        NOT NULL,
    updated_at   BIGINT        NOT NULL,
    disbanded_at BIGINT,
    UNIQUE KEY chat_groups_create_key (create_key)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
