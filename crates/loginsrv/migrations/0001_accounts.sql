-- Accounts of the reference LoginSrv. Portable SQL: the same file runs on
-- SQLite and PostgreSQL. Times are unix seconds.
CREATE TABLE accounts (
    -- ASCII-lowercased account name: names compare case-insensitively, like
    -- the Delphi LoginSrv, so "Admin" cannot impersonate "admin".
    account_key   TEXT PRIMARY KEY NOT NULL,
    -- The name as the player typed it at registration.
    account       TEXT NOT NULL,
    -- Argon2id PHC string; passwords are never stored in clear.
    password_hash TEXT NOT NULL,
    -- Argon2id of "quiz1\tanswer1\tquiz2\tanswer2\tbirthday"; NULL = recovery disabled.
    recovery_hash TEXT,
    user_name     TEXT NOT NULL DEFAULT '',
    phone         TEXT NOT NULL DEFAULT '',
    email         TEXT NOT NULL DEFAULT '',
    mobile_phone  TEXT NOT NULL DEFAULT '',
    memo          TEXT NOT NULL DEFAULT '',
    memo2         TEXT NOT NULL DEFAULT '',
    -- Consecutive failed password / recovery attempts since the last success.
    failed_logins BIGINT NOT NULL DEFAULT 0,
    -- Logins refused until this time.
    locked_until  BIGINT NOT NULL DEFAULT 0,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);
