-- Users, login sessions, conversations, members and history (MySQL 8 / MariaDB 10.11).
-- Times are milliseconds since the Unix epoch. utf8mb4_unicode_ci makes usernames
-- case-insensitive, like the SQLite schema's COLLATE NOCASE.
CREATE TABLE users (
    id            BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    username      VARCHAR(32)  NOT NULL,
    nickname      VARCHAR(255) NOT NULL,
    password_hash VARCHAR(255) NOT NULL,
    created_at    BIGINT       NOT NULL,
    UNIQUE KEY users_username (username)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE sessions (
    sid                VARCHAR(64)  NOT NULL PRIMARY KEY,
    user_id            BIGINT       NOT NULL,
    device_id          VARCHAR(64)  NOT NULL,
    platform           VARCHAR(32)  NOT NULL,
    refresh_hash       CHAR(64)     NOT NULL,
    prev_refresh_hash  CHAR(64),
    refresh_expires_at BIGINT       NOT NULL,
    created_at         BIGINT       NOT NULL,
    revoked_at         BIGINT,
    KEY sessions_by_device (user_id, device_id),
    KEY sessions_by_revoked (revoked_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE conversations (
    id         VARCHAR(64) NOT NULL PRIMARY KEY,
    kind       VARCHAR(16) NOT NULL,
    group_id   BIGINT,
    last_seq   BIGINT      NOT NULL DEFAULT 0,
    created_at BIGINT      NOT NULL,
    updated_at BIGINT      NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE conversation_members (
    conversation_id VARCHAR(64) NOT NULL,
    user_id         BIGINT      NOT NULL,
    peer_id         BIGINT,
    read_seq        BIGINT      NOT NULL DEFAULT 0,
    joined_seq      BIGINT      NOT NULL DEFAULT 0,
    active          BIGINT      NOT NULL DEFAULT 1,
    PRIMARY KEY (conversation_id, user_id),
    KEY members_by_user (user_id, active)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- One row per message whatever the fan-out. (sender, client_msg_id) makes sends idempotent;
-- (conversation, conv_seq) is the paging index of history.
CREATE TABLE messages (
    msg_id          VARCHAR(64)  NOT NULL PRIMARY KEY,
    conversation_id VARCHAR(64)  NOT NULL,
    conv_seq        BIGINT       NOT NULL,
    sender_id       BIGINT       NOT NULL,
    client_msg_id   VARCHAR(64)  NOT NULL,
    type            VARCHAR(16)  NOT NULL,
    body            MEDIUMTEXT   CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NOT NULL,
    created_at      BIGINT       NOT NULL,
    recalled_at     BIGINT,
    UNIQUE KEY messages_by_conv_seq (conversation_id, conv_seq),
    UNIQUE KEY messages_by_client_id (sender_id, client_msg_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
