//! Account storage: SQLite (default) or PostgreSQL through sqlx.
//!
//! One portable schema (`migrations/`) and one set of `$n`-parameterised
//! statements serve both backends; `on_pool!` runs a statement on whichever
//! pool is configured. No SQL is ever built from client text.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context as _;
use sqlx::postgres::{PgPool, PgPoolOptions};
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
    /// Connect (creating a SQLite file if needed) and apply migrations.
    pub async fn open(url: &str, max_connections: u32) -> anyhow::Result<Store> {
        let pool = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool = PgPoolOptions::new()
                .max_connections(max_connections)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .connect(url)
                .await
                .context("connecting to PostgreSQL")?;
            Pool::Postgres(pool)
        } else {
            let opts = sqlite_options(url)?
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
                .with_context(|| format!("opening SQLite database {url}"))?;
            Pool::Sqlite(pool)
        };
        let store = Store { pool };
        on_pool!(store, |p| MIGRATOR.run(p).await).context("applying database migrations")?;
        Ok(store)
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
        on_pool!(self, |p| p.close().await)
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
