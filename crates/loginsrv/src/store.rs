//! Account storage: SQLite (default) or PostgreSQL through sqlx.
//!
//! One portable schema (`migrations/`) and one set of `$n`-parameterised
//! statements serve both backends; `on_pool!` runs a statement on whichever
//! pool is configured. No SQL is ever built from client text.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context as _;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::Row as _;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// How long a statement waits for SQLite's write lock before failing.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a request waits for a pooled connection.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// The configured database.
#[derive(Clone)]
pub struct Store {
    /// The backend's pool; cloning shares it.
    pool: Pool,
    /// Where instances, online sessions and address budgets live: the same
    /// pool on PostgreSQL (shared by every instance), an in-memory database
    /// on SQLite (one instance owns the file, and a login then costs no
    /// extra disk write: it still works on a full disk).
    live: Pool,
}

/// The backend chosen by the database URL.
#[derive(Clone)]
enum Pool {
    /// A file database (default): WAL, synchronous=FULL.
    Sqlite(SqlitePool),
    /// `postgres://…`.
    Postgres(PgPool),
}

/// Run `$body` with `$p` bound to the concrete pool (each arm type-checks separately).
macro_rules! on_pool {
    ($store:expr, |$p:ident| $body:expr) => {{
        let _timer = crate::timing::Timer::db();
        match &$store.pool {
            Pool::Sqlite($p) => $body,
            Pool::Postgres($p) => $body,
        }
    }};
}

/// [`on_pool!`] on the pool of instances and online sessions.
macro_rules! on_live {
    ($store:expr, |$p:ident| $body:expr) => {{
        let _timer = crate::timing::Timer::db();
        match &$store.live {
            Pool::Sqlite($p) => $body,
            Pool::Postgres($p) => $body,
        }
    }};
}

/// The stored secrets of an account.
#[derive(Debug, Clone)]
pub struct AccountAuth {
    /// Argon2id PHC string of the password.
    pub password_hash: String,
    /// Argon2id PHC string of the recovery answers, if any were given.
    pub recovery_hash: Option<String>,
}

/// What an account looks like before any guess is claimed (a cheap read).
#[derive(Debug, Clone)]
pub struct AccountState {
    /// Whether recovery answers were ever set.
    pub has_recovery: bool,
    /// Unix time until which the account is locked.
    pub locked_until: i64,
}

/// Outcome of [`Store::claim_attempt`].
#[derive(Debug, Clone)]
pub enum Attempt {
    /// The guess may be evaluated against these secrets.
    Claimed(AccountAuth),
    /// Locked, or all of this window's guesses are taken (and it is now locked).
    Locked,
    /// No account by that name.
    NoAccount,
}

/// Profile fields kept from TUserEntry / TUserEntryAdd (never the password).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Profile {
    /// Player's real name.
    pub user_name: String,
    /// Contact phone.
    pub phone: String,
    /// Contact e-mail.
    pub email: String,
    /// Contact mobile phone.
    pub mobile_phone: String,
    /// Free text.
    pub memo: String,
    /// Free text.
    pub memo2: String,
}

/// A row to insert on CM_ADDNEWUSER.
#[derive(Debug, Clone)]
pub struct NewAccount {
    /// Lookup key (ASCII-lowercased name).
    pub key: String,
    /// Name as typed.
    pub account: String,
    /// Argon2id of the password.
    pub password_hash: String,
    /// Argon2id of the recovery answers.
    pub recovery_hash: Option<String>,
    /// Contact details.
    pub profile: Profile,
}

impl Store {
    /// Connect (creating a SQLite file if needed), check the database can be
    /// read and written, and apply migrations. Errors name the file, or the
    /// PostgreSQL host and port with the cause.
    pub async fn open(url: &str, max_connections: u32) -> anyhow::Result<Store> {
        let (pool, live) = if is_postgres(url) {
            let pool = Pool::Postgres(open_postgres(url, max_connections).await?);
            (pool.clone(), pool)
        } else {
            let pool = Pool::Sqlite(open_sqlite(url, max_connections).await?);
            (pool, Pool::Sqlite(open_memory().await?))
        };
        let store = Store { pool, live };
        on_pool!(store, |p| MIGRATOR.run(p).await).context("applying database migrations")?;
        if let Pool::Sqlite(p) = &store.live {
            MIGRATOR
                .run(p)
                .await
                .context("creating the in-memory session tables")?;
        }
        Ok(store)
    }

    /// The PostgreSQL pool, for `LISTEN` (`None` on SQLite).
    pub fn postgres(&self) -> Option<&PgPool> {
        match &self.pool {
            Pool::Postgres(p) => Some(p),
            Pool::Sqlite(_) => None,
        }
    }

    /// Short backend name for logs.
    pub fn backend(&self) -> &'static str {
        match self.pool {
            Pool::Sqlite(_) => "sqlite",
            Pool::Postgres(_) => "postgres",
        }
    }

    /// Close every pooled connection.
    pub async fn close(&self) {
        on_pool!(self, |p| p.close().await);
        on_live!(self, |p| p.close().await);
    }

    /// Whether an account exists (cheap check before an expensive hash).
    pub async fn exists(&self, key: &str) -> sqlx::Result<bool> {
        let sql = "SELECT 1 FROM accounts WHERE account_key = $1";
        on_pool!(self, |p| sqlx::query(sql)
            .bind(key)
            .fetch_optional(p)
            .await
            .map(|r| r.is_some()))
    }

    /// Insert a new account; `false` when the name is taken.
    pub async fn insert(&self, a: &NewAccount, now: i64) -> sqlx::Result<bool> {
        let sql = "INSERT INTO accounts (account_key, account, password_hash, recovery_hash, \
                   user_name, phone, email, mobile_phone, memo, memo2, created_at, updated_at) \
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11) \
                   ON CONFLICT (account_key) DO NOTHING";
        on_pool!(self, |p| sqlx::query(sql)
            .bind(&a.key)
            .bind(&a.account)
            .bind(&a.password_hash)
            .bind(a.recovery_hash.as_deref())
            .bind(&a.profile.user_name)
            .bind(&a.profile.phone)
            .bind(&a.profile.email)
            .bind(&a.profile.mobile_phone)
            .bind(&a.profile.memo)
            .bind(&a.profile.memo2)
            .bind(now)
            .execute(p)
            .await
            .map(|r| r.rows_affected() == 1))
    }

    /// Lock state of an account, and whether it can be recovered; no secrets.
    pub async fn state(&self, key: &str) -> sqlx::Result<Option<AccountState>> {
        let sql = "SELECT recovery_hash IS NOT NULL AS has_recovery, locked_until \
                   FROM accounts WHERE account_key = $1";
        on_pool!(self, |p| {
            match sqlx::query(sql).bind(key).fetch_optional(p).await? {
                None => Ok(None),
                Some(row) => Ok(Some(AccountState {
                    has_recovery: row.try_get("has_recovery")?,
                    locked_until: row.try_get("locked_until")?,
                })),
            }
        })
    }

    /// Claim one guess at the account's password or recovery answers, before it
    /// is verified: the failure count is raised first (a success clears it again),
    /// so however many guesses arrive at once, on however many LoginSrv instances
    /// share the database, at most `max_failures` are ever evaluated before the
    /// account locks. A guess beyond them locks the account at once (`lock_until`),
    /// which also refuses a correct guess still being verified, and keeps an attempt
    /// that never finished (a crash mid-hash) from wedging the account.
    pub async fn claim_attempt(
        &self,
        key: &str,
        max_failures: i64,
        now: i64,
        lock_until: i64,
    ) -> sqlx::Result<Attempt> {
        let claim = "UPDATE accounts SET failed_logins = failed_logins + 1 \
                     WHERE account_key = $1 AND locked_until <= $2 AND failed_logins < $3 \
                     RETURNING password_hash, recovery_hash";
        let exhausted = "UPDATE accounts SET locked_until = $4, failed_logins = 0 \
                         WHERE account_key = $1 AND locked_until <= $2 AND failed_logins >= $3";
        on_pool!(self, |p| {
            let row = sqlx::query(claim)
                .bind(key)
                .bind(now)
                .bind(max_failures)
                .fetch_optional(p)
                .await?;
            if let Some(row) = row {
                return Ok(Attempt::Claimed(AccountAuth {
                    password_hash: row.try_get("password_hash")?,
                    recovery_hash: row.try_get("recovery_hash")?,
                }));
            }
            sqlx::query(exhausted)
                .bind(key)
                .bind(now)
                .bind(max_failures)
                .bind(lock_until)
                .execute(p)
                .await?;
            let exists = sqlx::query("SELECT 1 FROM accounts WHERE account_key = $1")
                .bind(key)
                .fetch_optional(p)
                .await?;
            Ok(if exists.is_some() {
                Attempt::Locked
            } else {
                Attempt::NoAccount
            })
        })
    }

    /// A claimed guess was wrong: lock the account if its count is at the limit
    /// (`true` if this call locked it).
    pub async fn lock_if_exhausted(
        &self,
        key: &str,
        max_failures: i64,
        lock_until: i64,
    ) -> sqlx::Result<bool> {
        let sql = "UPDATE accounts SET locked_until = $3, failed_logins = 0 \
                   WHERE account_key = $1 AND failed_logins >= $2";
        on_pool!(self, |p| sqlx::query(sql)
            .bind(key)
            .bind(max_failures)
            .bind(lock_until)
            .execute(p)
            .await
            .map(|r| r.rows_affected() == 1))
    }

    /// Lift a lockout and forget earlier failures; `false` when there is no such account.
    pub async fn unlock(&self, key: &str) -> sqlx::Result<bool> {
        let sql = "UPDATE accounts SET failed_logins = 0, locked_until = 0 WHERE account_key = $1";
        on_pool!(self, |p| sqlx::query(sql)
            .bind(key)
            .execute(p)
            .await
            .map(|r| r.rows_affected() == 1))
    }

    /// A claimed guess was right: clear the failure count, unless the account
    /// locked while it was being verified (`false`: the success must be refused).
    pub async fn confirm_success(&self, key: &str, now: i64) -> sqlx::Result<bool> {
        let sql = "UPDATE accounts SET failed_logins = 0 \
                   WHERE account_key = $1 AND locked_until <= $2";
        on_pool!(self, |p| sqlx::query(sql)
            .bind(key)
            .bind(now)
            .execute(p)
            .await
            .map(|r| r.rows_affected() == 1))
    }

    /// Replace the password hash and clear failures, only if it is still
    /// `expected` (the hash the request was verified against) and the account is
    /// not locked: of simultaneous changes, exactly one wins. `false` otherwise.
    pub async fn set_password(
        &self,
        key: &str,
        expected: &str,
        password_hash: &str,
        now: i64,
    ) -> sqlx::Result<bool> {
        let sql = "UPDATE accounts SET password_hash = $3, failed_logins = 0, updated_at = $4 \
                   WHERE account_key = $1 AND password_hash = $2 AND locked_until <= $4";
        on_pool!(self, |p| sqlx::query(sql)
            .bind(key)
            .bind(expected)
            .bind(password_hash)
            .bind(now)
            .execute(p)
            .await
            .map(|r| r.rows_affected() == 1))
    }

    /// Replace the profile, and the recovery hash when one is given.
    pub async fn update_profile(
        &self,
        key: &str,
        profile: &Profile,
        recovery_hash: Option<&str>,
        now: i64,
    ) -> sqlx::Result<bool> {
        let sql = "UPDATE accounts SET user_name = $2, phone = $3, email = $4, mobile_phone = $5, \
                   memo = $6, memo2 = $7, recovery_hash = COALESCE($8, recovery_hash), updated_at = $9 \
                   WHERE account_key = $1";
        on_pool!(self, |p| sqlx::query(sql)
            .bind(key)
            .bind(&profile.user_name)
            .bind(&profile.phone)
            .bind(&profile.email)
            .bind(&profile.mobile_phone)
            .bind(&profile.memo)
            .bind(&profile.memo2)
            .bind(recovery_hash)
            .bind(now)
            .execute(p)
            .await
            .map(|r| r.rows_affected() == 1))
    }
}

/// Session ids carry their issuer's slot as the residue modulo this: at most
/// this many instances share one database.
pub const SLOTS: i64 = 64;

/// A row of `online_sessions` removed by a newer login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evicted {
    /// The instance that held it.
    pub instance_id: i64,
    /// Its login client's token there, if still connected.
    pub token: Option<u64>,
    /// The selected server, with a session id.
    pub server: Option<String>,
    /// The session id issued, if any.
    pub session_id: Option<i32>,
}

/// Who asks to hold an account (see [`Store::claim_online`]).
#[derive(Debug, Clone)]
pub struct OnlineClaim<'a> {
    /// Account key.
    pub key: &'a str,
    /// This instance.
    pub instance_id: i64,
    /// The login client's token.
    pub token: u64,
    /// Gate link address.
    pub gate: String,
    /// The gate's id for the client.
    pub client_id: u32,
    /// Client address.
    pub client_ip: String,
    /// Unix time.
    pub now: i64,
}

/// Outcome of [`Store::claim_online`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnlineOutcome {
    /// The row is now the caller's.
    Claimed,
    /// Another row held the account; it is gone now, and nobody holds it.
    Evicted(Evicted),
}

impl Store {
    /// Register this instance under the lowest free slot, after removing
    /// instances whose heartbeat expired (and their sessions). The slot.
    pub async fn register_instance(
        &self,
        instance_id: i64,
        host: &str,
        listen: &str,
        now: i64,
        expiry: i64,
    ) -> anyhow::Result<i64> {
        self.expire_instances(now).await?;
        for _ in 0..SLOTS {
            let taken: Vec<i64> = on_live!(self, |p| sqlx::query_scalar(
                "SELECT slot FROM loginsrv_instances ORDER BY slot"
            )
            .fetch_all(p)
            .await)?;
            let Some(slot) = (0..SLOTS).find(|s| !taken.contains(s)) else {
                anyhow::bail!(
                    "{SLOTS} LoginSrv instances are registered on this database already \
                     (table loginsrv_instances)"
                );
            };
            let sql = "INSERT INTO loginsrv_instances \
                       (slot, instance_id, host, listen, started_at, heartbeat_at, expires_at) \
                       VALUES ($1, $2, $3, $4, $5, $5, $6) ON CONFLICT DO NOTHING";
            let inserted = on_live!(self, |p| sqlx::query(sql)
                .bind(slot)
                .bind(instance_id)
                .bind(host)
                .bind(listen)
                .bind(now)
                .bind(now.saturating_add(expiry))
                .execute(p)
                .await
                .map(|r| r.rows_affected() == 1))?;
            if inserted {
                return Ok(slot);
            }
        }
        anyhow::bail!("no free instance slot after {SLOTS} tries (instances starting at once)")
    }

    /// Extend this instance's lease; `false` when its row is gone (another
    /// instance judged it dead).
    pub async fn heartbeat(&self, instance_id: i64, now: i64, expiry: i64) -> sqlx::Result<bool> {
        let sql = "UPDATE loginsrv_instances SET heartbeat_at = $2, expires_at = $3 \
                   WHERE instance_id = $1";
        on_live!(self, |p| sqlx::query(sql)
            .bind(instance_id)
            .bind(now)
            .bind(now.saturating_add(expiry))
            .execute(p)
            .await
            .map(|r| r.rows_affected() == 1))
    }

    /// Delete instances past their expiry, the sessions of instances that are
    /// not registered, and past budget windows. Returns (instances, sessions) removed.
    pub async fn expire_instances(&self, now: i64) -> sqlx::Result<(u64, u64)> {
        on_live!(self, |p| {
            let instances = sqlx::query("DELETE FROM loginsrv_instances WHERE expires_at < $1")
                .bind(now)
                .execute(p)
                .await?
                .rows_affected();
            let sessions = sqlx::query(
                "DELETE FROM online_sessions WHERE instance_id NOT IN \
                 (SELECT instance_id FROM loginsrv_instances)",
            )
            .execute(p)
            .await?
            .rows_affected();
            sqlx::query("DELETE FROM ip_budgets WHERE window_start < $1")
                .bind(now.saturating_sub(IP_BUDGET_WINDOW_SECS))
                .execute(p)
                .await?;
            Ok((instances, sessions))
        })
    }

    /// Remove this instance and its sessions (an orderly stop).
    pub async fn deregister_instance(&self, instance_id: i64) -> sqlx::Result<()> {
        on_live!(self, |p| {
            sqlx::query("DELETE FROM online_sessions WHERE instance_id = $1")
                .bind(instance_id)
                .execute(p)
                .await?;
            sqlx::query("DELETE FROM loginsrv_instances WHERE instance_id = $1")
                .bind(instance_id)
                .execute(p)
                .await?;
            Ok(())
        })
    }

    /// Claim account `c.key` for a login client. The account's row, if any,
    /// is removed and returned (its holder must be kicked, its session closed):
    /// nobody holds the account afterwards, as in the Delphi servers, and the
    /// player retries. A row of this same client without a session (`keep`
    /// decides for one with a session) is taken over instead.
    pub async fn claim_online(
        &self,
        c: &OnlineClaim<'_>,
        keep: impl Fn(&Evicted) -> bool,
    ) -> sqlx::Result<OnlineOutcome> {
        let insert = "INSERT INTO online_sessions \
                      (account_key, instance_id, token, gate, client_id, client_ip, since) \
                      VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (account_key) DO NOTHING";
        let remove = "DELETE FROM online_sessions WHERE account_key = $1 \
                      RETURNING instance_id, token, server, session_id";
        // A row can vanish between the two statements (its client closed): try again.
        for _ in 0..3 {
            let token = i64::try_from(c.token).unwrap_or(i64::MAX);
            let inserted = on_live!(self, |p| sqlx::query(insert)
                .bind(c.key)
                .bind(c.instance_id)
                .bind(token)
                .bind(&c.gate)
                .bind(i64::from(c.client_id))
                .bind(&c.client_ip)
                .bind(c.now)
                .execute(p)
                .await
                .map(|r| r.rows_affected() == 1))?;
            if inserted {
                return Ok(OnlineOutcome::Claimed);
            }
            let old = on_live!(self, |p| {
                match sqlx::query(remove).bind(c.key).fetch_optional(p).await? {
                    None => None,
                    Some(row) => {
                        let token: Option<i64> = row.try_get("token")?;
                        let session: Option<i64> = row.try_get("session_id")?;
                        Some(Evicted {
                            instance_id: row.try_get("instance_id")?,
                            token: token.and_then(|t| u64::try_from(t).ok()),
                            server: row.try_get("server")?,
                            session_id: session.and_then(|s| i32::try_from(s).ok()),
                        })
                    }
                }
            });
            match old {
                None => continue,
                Some(old)
                    if old.instance_id == c.instance_id
                        && old.token == Some(c.token)
                        && keep(&old) =>
                {
                    continue
                }
                Some(old) => return Ok(OnlineOutcome::Evicted(old)),
            }
        }
        Ok(OnlineOutcome::Evicted(Evicted {
            instance_id: c.instance_id,
            token: None,
            server: None,
            session_id: None,
        }))
    }

    /// Record the session id issued to the login client holding `key`;
    /// `false` when it no longer holds the account (evicted meanwhile).
    pub async fn set_online_session(
        &self,
        key: &str,
        instance_id: i64,
        token: u64,
        server: &str,
        session_id: i32,
    ) -> sqlx::Result<bool> {
        let sql = "UPDATE online_sessions SET server = $4, session_id = $5 \
                   WHERE account_key = $1 AND instance_id = $2 AND token = $3";
        on_live!(self, |p| sqlx::query(sql)
            .bind(key)
            .bind(instance_id)
            .bind(i64::try_from(token).unwrap_or(i64::MAX))
            .bind(server)
            .bind(i64::from(session_id))
            .execute(p)
            .await
            .map(|r| r.rows_affected() == 1))
    }

    /// The login client disconnected: its row stays while it has a session
    /// id and `keep_session` (game servers end sessions), else goes.
    pub async fn release_online(
        &self,
        key: &str,
        instance_id: i64,
        token: u64,
        keep_session: bool,
    ) -> sqlx::Result<()> {
        let token = i64::try_from(token).unwrap_or(i64::MAX);
        on_live!(self, |p| {
            if keep_session {
                let kept = sqlx::query(
                    "UPDATE online_sessions SET token = NULL WHERE account_key = $1 \
                     AND instance_id = $2 AND token = $3 AND session_id IS NOT NULL",
                )
                .bind(key)
                .bind(instance_id)
                .bind(token)
                .execute(p)
                .await?
                .rows_affected();
                if kept == 1 {
                    return Ok(());
                }
            }
            sqlx::query(
                "DELETE FROM online_sessions WHERE account_key = $1 \
                 AND instance_id = $2 AND token = $3",
            )
            .bind(key)
            .bind(instance_id)
            .bind(token)
            .execute(p)
            .await?;
            Ok(())
        })
    }

    /// A game server ended session `session_id` of `key`: the row goes if
    /// its login client is gone, else loses the session. The server it was
    /// for; `None` when no such session is live.
    pub async fn end_online_session(
        &self,
        key: &str,
        session_id: i32,
    ) -> sqlx::Result<Option<String>> {
        let sid = i64::from(session_id);
        on_live!(self, |p| {
            let gone: Option<Option<String>> = sqlx::query_scalar(
                "DELETE FROM online_sessions WHERE account_key = $1 AND session_id = $2 \
                 AND token IS NULL RETURNING server",
            )
            .bind(key)
            .bind(sid)
            .fetch_optional(p)
            .await?;
            if let Some(server) = gone {
                return Ok(Some(server.unwrap_or_default()));
            }
            // Its login client is still connected: the row stays, without the session.
            let server: Option<Option<String>> = sqlx::query_scalar(
                "SELECT server FROM online_sessions WHERE account_key = $1 AND session_id = $2",
            )
            .bind(key)
            .bind(sid)
            .fetch_optional(p)
            .await?;
            let Some(server) = server else {
                return Ok(None);
            };
            sqlx::query(
                "UPDATE online_sessions SET session_id = NULL, server = NULL \
                 WHERE account_key = $1 AND session_id = $2",
            )
            .bind(key)
            .bind(sid)
            .execute(p)
            .await?;
            Ok(Some(server.unwrap_or_default()))
        })
    }

    /// Spend one unit of `ip`'s shared budget of `per_window` per
    /// [`IP_BUDGET_WINDOW_SECS`]; `false` when it is used up.
    pub async fn spend_ip_budget(&self, ip: &str, per_window: i64, now: i64) -> sqlx::Result<bool> {
        let window = now - now.rem_euclid(IP_BUDGET_WINDOW_SECS);
        let sql = "INSERT INTO ip_budgets (ip, window_start, used) VALUES ($1, $2, 1) \
                   ON CONFLICT (ip) DO UPDATE SET \
                   used = CASE WHEN ip_budgets.window_start = excluded.window_start \
                          THEN ip_budgets.used + 1 ELSE 1 END, \
                   window_start = excluded.window_start \
                   RETURNING used";
        let used: i64 = on_live!(self, |p| sqlx::query_scalar(sql)
            .bind(ip)
            .bind(window)
            .fetch_one(p)
            .await)?;
        Ok(used <= per_window)
    }
}

/// The shared per-address budget's window (`hashes_per_ip_per_minute`).
pub const IP_BUDGET_WINDOW_SECS: i64 = 60;

/// Whether `url` names a PostgreSQL database.
pub fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// One connection first, so an unreachable server is reported with its host,
/// port and the real cause (a pool only says it timed out), then the pool.
async fn open_postgres(url: &str, max_connections: u32) -> anyhow::Result<PgPool> {
    use sqlx::ConnectOptions as _;
    let opts = PgConnectOptions::from_str(url).context("bad PostgreSQL URL in database")?;
    let at = format!(
        "PostgreSQL at {}:{} (database {:?}, user {:?})",
        opts.get_host(),
        opts.get_port(),
        opts.get_database().unwrap_or(""),
        opts.get_username()
    );
    match tokio::time::timeout(ACQUIRE_TIMEOUT, opts.connect()).await {
        Ok(Ok(conn)) => {
            let _ = sqlx::Connection::close(conn).await;
        }
        Ok(Err(e)) => anyhow::bail!("cannot connect to {at}: {}", error_chain(&e)),
        Err(_) => anyhow::bail!(
            "cannot connect to {at}: no answer within {}s",
            ACQUIRE_TIMEOUT.as_secs()
        ),
    }
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_with(opts)
        .await
        .with_context(|| format!("connecting to {at}"))
}

/// Open the file (WAL, synchronous=FULL), then refuse a damaged or read-only
/// one at startup instead of at the first login: `PRAGMA quick_check`, and a
/// write in a transaction that is rolled back.
async fn open_sqlite(url: &str, max_connections: u32) -> anyhow::Result<SqlitePool> {
    let opts = sqlite_options(url)?;
    let path = opts.get_filename().display().to_string();
    let opts = opts
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        // FULL: a write the client was told about survives kill -9 and power loss.
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(SQLITE_BUSY_TIMEOUT);
    let pool = SqlitePoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_with(opts)
        .await
        .map_err(|e| anyhow::anyhow!("cannot open SQLite database {path}: {}", error_chain(&e)))?;
    let check: Vec<String> = sqlx::query_scalar("PRAGMA quick_check")
        .fetch_all(&pool)
        .await
        .map_err(|e| anyhow::anyhow!("SQLite database {path} is damaged: {}", error_chain(&e)))?;
    if check.as_slice() != ["ok"] {
        anyhow::bail!(
            "SQLite database {path} is damaged (quick_check: {})",
            check.join("; ")
        );
    }
    let write = async {
        let mut tx = pool.begin().await?;
        sqlx::query("CREATE TABLE loginsrv_write_check (x INTEGER)")
            .execute(&mut *tx)
            .await?;
        tx.rollback().await
    };
    write.await.map_err(|e| {
        anyhow::anyhow!(
            "SQLite database {path} cannot be written: {}",
            error_chain(&e)
        )
    })?;
    Ok(pool)
}

/// One connection kept for the process's life: an in-memory database lives
/// as long as its connection.
async fn open_memory() -> anyhow::Result<SqlitePool> {
    let opts = SqliteConnectOptions::from_str("sqlite::memory:")?;
    Ok(SqlitePoolOptions::new()
        .max_connections(1)
        .min_connections(1)
        .idle_timeout(None)
        .max_lifetime(None)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_with(opts)
        .await?)
}

/// An error and its causes, `a: b: c`.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

/// The SQLite file a database URL names (`None` for PostgreSQL or `:memory:`).
pub fn sqlite_path(url: &str) -> anyhow::Result<Option<std::path::PathBuf>> {
    if is_postgres(url) {
        return Ok(None);
    }
    let opts = sqlite_options(url)?;
    let path = opts.get_filename();
    if path.as_os_str().is_empty() || path == Path::new(":memory:") {
        return Ok(None);
    }
    Ok(Some(path.to_path_buf()))
}

/// `sqlite://path`, `sqlite:path` or a bare path.
fn sqlite_options(url: &str) -> anyhow::Result<SqliteConnectOptions> {
    if url.starts_with("sqlite:") {
        SqliteConnectOptions::from_str(url).with_context(|| format!("bad SQLite URL {url}"))
    } else if url.contains("://") {
        anyhow::bail!(
            "unsupported database URL {url} (expected sqlite://, postgres:// or a file path)"
        )
    } else {
        Ok(SqliteConnectOptions::new().filename(Path::new(url)))
    }
}
