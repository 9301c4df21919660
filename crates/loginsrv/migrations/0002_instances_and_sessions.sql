-- LoginSrv instances sharing this database, and the accounts online through
-- them. Portable SQL (SQLite and PostgreSQL). Times are unix seconds.
CREATE TABLE loginsrv_instances (
    -- 0..63, unique among live instances: the residue of every session id the
    -- instance issues, so ids drawn by different instances never collide.
    slot         BIGINT PRIMARY KEY NOT NULL,
    -- Random, names the instance in online_sessions and in events.
    instance_id  BIGINT NOT NULL UNIQUE,
    -- Host name and gate listen address, for operators.
    host         TEXT NOT NULL,
    listen       TEXT NOT NULL,
    started_at   BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL,
    -- Past this time without a heartbeat the instance counts as dead: any
    -- other instance deletes the row, and with it its online sessions.
    expires_at   BIGINT NOT NULL
);

-- One row per account logged in (its login client still connected) or in
-- the game with a live session id: the duplicate-login check of every
-- instance.
CREATE TABLE online_sessions (
    account_key TEXT PRIMARY KEY NOT NULL,
    -- The instance holding the login client (and the session's ticket).
    instance_id BIGINT NOT NULL,
    -- The login client's token on that instance; NULL once it disconnected
    -- (the player went on to the game with the session id).
    token       BIGINT,
    -- Gate link address and the gate's id for the client (for kicks and operators).
    gate        TEXT NOT NULL,
    client_id   BIGINT NOT NULL,
    client_ip   TEXT NOT NULL,
    -- Selected server and the session id issued for it; NULL until selected.
    server      TEXT,
    session_id  BIGINT UNIQUE,
    since       BIGINT NOT NULL
);
CREATE INDEX online_sessions_instance ON online_sessions (instance_id);

-- Per-client-address budget of hash-costing requests (login, registration,
-- password change, recovery) shared by every instance: one fixed window per
-- address, rows of past windows deleted by the instances' heartbeat.
CREATE TABLE ip_budgets (
    ip           TEXT PRIMARY KEY NOT NULL,
    window_start BIGINT NOT NULL,
    used         BIGINT NOT NULL
);
