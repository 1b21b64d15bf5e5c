//! Opening the configured database: SQLite for `sqlite:` URLs (the embedded default, a file
//! created with its parent folder on first run), PostgreSQL for `postgres://` URLs; then the
//! platform's migrations (calls, node visits, survey answers, recordings).

use super::DataError;
use ivr_compiler::config::DatabaseConfig;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

/// A connection pool of either engine. (Not `sqlx::Any`: it cannot decode exact decimals.)
#[derive(Debug, Clone)]
pub enum Pool {
    /// SQLite (embedded).
    Sqlite(SqlitePool),
    /// PostgreSQL.
    Postgres(PgPool),
}

impl Pool {
    /// `sqlite` or `postgres`.
    pub fn engine(&self) -> &'static str {
        match self {
            Pool::Sqlite(_) => "sqlite",
            Pool::Postgres(_) => "postgres",
        }
    }

    /// Closes every connection (waits for those in use).
    pub async fn close(&self) {
        match self {
            Pool::Sqlite(p) => p.close().await,
            Pool::Postgres(p) => p.close().await,
        }
    }
}

/// Where a database URL points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A SQLite file (relative paths resolved against the configuration's folder).
    SqliteFile(PathBuf),
    /// A private in-memory SQLite database (`sqlite::memory:`), one per pool.
    SqliteMemory,
    /// A PostgreSQL URL, as given.
    Postgres(String),
}

/// Whether `url` is the embedded default (`sqlite://ivr-data/ivr.db`): the database that is
/// created and filled with the demo data on first run, and that may use the demo secret.
pub fn is_embedded_default(url: &str) -> bool {
    url.trim() == DatabaseConfig::default().url
}

/// Whether `url` is the embedded demo database: the default, or another configuration's path
/// to a SQLite file `ivr-data/ivr.db` (the examples use `sqlite://../ivr-data/ivr.db`, the
/// main deployment's file).
pub fn is_demo(url: &str, base: &Path) -> bool {
    is_embedded_default(url)
        || matches!(parse_url(url, base), Ok(Target::SqliteFile(p)) if p.ends_with("ivr-data/ivr.db"))
}

/// The URL without its password, for messages.
pub fn redact_url(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://")
        && let Some((auth, host)) = rest.split_once('@')
    {
        let user = auth.split(':').next().unwrap_or("");
        return format!("{scheme}://{user}:***@{host}");
    }
    url.to_string()
}

/// Reads a database URL; relative SQLite paths are taken from `base`.
pub fn parse_url(url: &str, base: &Path) -> Result<Target, DataError> {
    let url = url.trim();
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Target::Postgres(url.to_string()));
    }
    let Some(rest) = url.strip_prefix("sqlite:") else {
        return Err(DataError::Config(format!(
            "database url `{}`: write `sqlite://FILE` (embedded) or `postgres://user:pass@host/db`",
            redact_url(url)
        )));
    };
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let path = rest.split('?').next().unwrap_or("");
    if path == ":memory:" || path.is_empty() {
        return Ok(Target::SqliteMemory);
    }
    let path = Path::new(path);
    Ok(Target::SqliteFile(if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    }))
}

/// How long opening a PostgreSQL database may wait for its first connection.
const FIRST_CONNECTION: Duration = Duration::from_secs(10);

/// Opens a pool for `target` (creating a SQLite file and its folder when missing) and runs
/// the platform's migrations.
pub async fn open(target: &Target, max_connections: u32) -> Result<Pool, DataError> {
    let pool = match target {
        Target::SqliteFile(path) => {
            if let Some(dir) = path.parent()
                && !dir.as_os_str().is_empty()
            {
                std::fs::create_dir_all(dir).map_err(|e| {
                    DataError::Connect(format!("cannot create {}: {e}", dir.display()))
                })?;
            }
            let opts = SqliteConnectOptions::new()
                .filename(path)
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true);
            let pool = SqlitePoolOptions::new()
                .max_connections(max_connections.max(1))
                .acquire_timeout(Duration::from_secs(30))
                .connect_with(opts)
                .await
                .map_err(|e| DataError::Connect(format!("{}: {e}", path.display())))?;
            Pool::Sqlite(pool)
        }
        Target::SqliteMemory => {
            // One connection that never closes: the database lives as long as the pool.
            let opts = SqliteConnectOptions::from_str("sqlite::memory:")
                .map_err(|e| DataError::Connect(e.to_string()))?
                .foreign_keys(true);
            let pool = SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
                .connect_with(opts)
                .await
                .map_err(|e| DataError::Connect(format!("sqlite::memory: {e}")))?;
            Pool::Sqlite(pool)
        }
        Target::Postgres(url) => {
            let opts = PgConnectOptions::from_str(url)
                .map_err(|e| DataError::Connect(format!("{}: {e}", redact_url(url))))?;
            // The first connection within 10 s (sqlx would retry a refused one for the whole
            // acquire timeout, leaving `ivr serve` silent for half a minute).
            let connect = PgPoolOptions::new()
                .max_connections(max_connections.max(1))
                .acquire_timeout(Duration::from_secs(30))
                .connect_with(opts);
            let pool = tokio::time::timeout(FIRST_CONNECTION, connect)
                .await
                .map_err(|_| {
                    DataError::Connect(format!(
                        "{}: no answer within {} s",
                        redact_url(url),
                        FIRST_CONNECTION.as_secs()
                    ))
                })?
                .map_err(|e| DataError::Connect(format!("{}: {e}", redact_url(url))))?;
            Pool::Postgres(pool)
        }
    };
    migrate(&pool).await?;
    Ok(pool)
}

/// Runs the platform's migrations (`runtime/data/migrations/{sqlite,postgres}`). Two processes
/// opening a new database at once may race on the first migration: a failure is retried.
pub async fn migrate(pool: &Pool) -> Result<(), DataError> {
    let mut tries = 0;
    loop {
        let result = match pool {
            Pool::Sqlite(p) => sqlx::migrate!("./migrations/sqlite").run(p).await,
            Pool::Postgres(p) => sqlx::migrate!("./migrations/postgres").run(p).await,
        };
        match result {
            Ok(()) => return Ok(()),
            Err(e) if tries >= 3 => return Err(DataError::Migrate(e.to_string())),
            Err(_) => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(100 * tries)).await;
            }
        }
    }
}

/// Runs SQL statements (separated by `;`) in one transaction: the starter table of
/// `ivr init`, a deployment's own setup.
pub async fn execute_script(pool: &Pool, sql: &str) -> Result<(), DataError> {
    match pool {
        Pool::Sqlite(p) => {
            let mut tx = p.begin().await?;
            sqlx::raw_sql(sql).execute(&mut *tx).await?;
            tx.commit().await?;
        }
        Pool::Postgres(p) => {
            let mut tx = p.begin().await?;
            sqlx::raw_sql(sql).execute(&mut *tx).await?;
            tx.commit().await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let base = Path::new("/srv/ivr");
        assert_eq!(
            parse_url("sqlite://ivr-data/ivr.db", base).ok(),
            Some(Target::SqliteFile(PathBuf::from(
                "/srv/ivr/ivr-data/ivr.db"
            )))
        );
        assert_eq!(
            parse_url("sqlite:///var/ivr.db", base).ok(),
            Some(Target::SqliteFile(PathBuf::from("/var/ivr.db")))
        );
        assert_eq!(
            parse_url("sqlite::memory:", base).ok(),
            Some(Target::SqliteMemory)
        );
        assert!(matches!(
            parse_url("postgres://u:p@h/db", base),
            Ok(Target::Postgres(_))
        ));
        assert!(parse_url("mysql://x", base).is_err());
        assert_eq!(
            redact_url("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert!(is_embedded_default("sqlite://ivr-data/ivr.db"));
        assert!(is_demo("sqlite://../ivr-data/ivr.db", base));
        assert!(!is_demo("sqlite://prod.db", base));
        assert!(!is_demo("postgres://u@h/ivr-data/ivr.db", base));
    }
}
