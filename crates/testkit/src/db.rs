//! Throwaway databases: a SQLite file in a temporary directory, or a fresh
//! PostgreSQL schema when `DATABASE_URL` is a `postgres://` URL.

use rand::Rng as _;

/// Which database a test runs against.
#[derive(Clone, Copy, Debug)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A database location that outlives server restarts within one test.
pub struct Db {
    /// URL passed to the server.
    pub url: String,
    /// Keeps the SQLite directory alive.
    _dir: Option<tempfile::TempDir>,
    /// Unique per test run so PostgreSQL tests never collide.
    pub prefix: String,
}

impl Db {
    /// `None` (with a printed note) when PostgreSQL is requested but `DATABASE_URL` is unset.
    /// PostgreSQL tests each get a fresh schema (via `search_path`), so runs never collide.
    pub async fn new(backend: Backend) -> Option<Db> {
        let prefix: String = {
            let mut rng = rand::rng();
            (0..3)
                .map(|_| char::from(rng.random_range(b'a'..=b'z')))
                .collect()
        };
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("tempdir");
                let url = format!("sqlite://{}", dir.path().join("accounts.db").display());
                Some(Db {
                    url,
                    _dir: Some(dir),
                    prefix,
                })
            }
            Backend::Postgres => match std::env::var("DATABASE_URL") {
                Ok(base) if base.starts_with("postgres") => {
                    let schema = fresh_schema(&base).await;
                    let sep = if base.contains('?') { '&' } else { '?' };
                    Some(Db {
                        url: format!("{base}{sep}options[search_path]={schema}"),
                        _dir: None,
                        prefix,
                    })
                }
                _ => {
                    println!(
                        "note: DATABASE_URL is not a postgres:// URL; PostgreSQL test skipped"
                    );
                    None
                }
            },
        }
    }

    /// A unique account name (≤ 10 bytes) for `base` (≤ 7 bytes).
    pub fn account(&self, base: &str) -> String {
        format!("{}{base}", self.prefix)
    }
}

/// Schemas older than this are left-overs of earlier runs and are dropped.
const STALE_SCHEMA_SECS: u64 = 3600;

/// Create `t_<unix secs>_<random>` and drop stale test schemas.
async fn fresh_schema(url: &str) -> String {
    use sqlx::Connection as _;
    let mut conn = sqlx::PgConnection::connect(url)
        .await
        .expect("connect to DATABASE_URL");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let names: Vec<(String,)> =
        sqlx::query_as("SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 't\\_%\\_%'")
            .fetch_all(&mut conn)
            .await
            .expect("list schemas");
    for (name,) in names {
        let born = name.split('_').nth(1).and_then(|t| t.parse::<u64>().ok());
        if born.is_some_and(|b| b + STALE_SCHEMA_SECS < now) {
            // Identifier built from our own digits and letters only.
            let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE"))
                .execute(&mut conn)
                .await;
        }
    }
    let tag: u64 = rand::rng().random();
    let schema = format!("t_{now}_{tag:016x}");
    sqlx::query(&format!("CREATE SCHEMA \"{schema}\""))
        .execute(&mut conn)
        .await
        .expect("create schema");
    schema
}

/// The LoginSrv config of the scripted tests, on `db`: an ephemeral loopback
/// port, cheap Argon2, a lockout after 3 failures for 1 s, and two servers
/// (one with a GBK name and room for a single session).
pub fn loginsrv_toml(db: &Db) -> String {
    format!(
        r#"listen = "127.0.0.1:0"
database = "{}"

[security]
argon2_m_kib = 8
argon2_t = 1
argon2_p = 1
lockout_secs = 1
max_failed_logins = 3

[[servers]]
name = "alpha"
selgates = ["127.0.0.1:7100", "127.0.0.1:7101"]
capacity = 10

[[servers]]
name = "传奇"
selgates = ["127.0.0.2:7200"]
capacity = 1
"#,
        db.url
    )
}
