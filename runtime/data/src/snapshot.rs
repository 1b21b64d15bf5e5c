//! Throwaway copies of a SQLite database: what each scenario of `ivr test` (and each call of
//! `ivr simulate`) works on when the configured database is SQLite, so that what it writes is
//! gone at its end.
//!
//! A [`Snapshot`] is taken once per run with `VACUUM INTO` (a consistent copy, made through a
//! read transaction, so a server writing the same file meanwhile is neither blocked nor seen
//! half-way); each scenario then gets a plain file copy of it ([`Snapshot::copy`]), opened on a
//! pool of its own and deleted when the scenario ends. Concurrent scenarios, concurrent runs
//! and `ivr serve` on the same file never see each other's writes and never wait for each
//! other's locks (which a transaction held open for a whole scenario on the shared file would
//! make them do: SQLite has one writer at a time).

use super::connect::Pool;
use super::hashing::Secret;
use super::{DataError, Database};
use indexmap::IndexMap;
use ivr_compiler::config::QueryDef;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A consistent copy of a SQLite database in a private temporary folder, removed on drop.
#[derive(Debug)]
pub struct Snapshot {
    dir: PathBuf,
    base: PathBuf,
    next: AtomicU64,
}

/// One scenario's copy of a [`Snapshot`]: its database and its file (removed by
/// [`ScenarioCopy::remove`]).
#[derive(Debug)]
pub struct ScenarioCopy {
    /// The copy with the data catalog.
    pub db: Database,
    path: PathBuf,
}

/// A folder of its own below the system's temporary folder.
fn private_dir() -> Result<PathBuf, DataError> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let dir = std::env::temp_dir().join(format!("ivr-data-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir)
        .map_err(|e| DataError::Connect(format!("cannot create {}: {e}", dir.display())))?;
    Ok(dir)
}

impl Snapshot {
    /// Copies the database of `pool` (SQLite) as it is now.
    pub async fn take(pool: &Pool) -> Result<Snapshot, DataError> {
        let Pool::Sqlite(p) = pool else {
            return Err(DataError::Config(
                "a snapshot is taken of SQLite databases only".into(),
            ));
        };
        let dir = private_dir()?;
        let base = dir.join("snapshot.db");
        let snapshot = Snapshot {
            dir,
            base,
            next: AtomicU64::new(0),
        };
        let path = snapshot
            .base
            .to_str()
            .ok_or_else(|| DataError::Config("the temporary folder's path is not UTF-8".into()))?;
        sqlx::query("VACUUM INTO ?1").bind(path).execute(p).await?;
        Ok(snapshot)
    }

    /// The snapshot's file.
    pub fn path(&self) -> &Path {
        &self.base
    }

    /// A fresh copy of the snapshot, opened with the data catalog `queries`.
    pub async fn copy(
        &self,
        queries: &IndexMap<String, QueryDef>,
        secret: Option<Secret>,
    ) -> Result<ScenarioCopy, DataError> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let path = self.dir.join(format!("scenario-{n}.db"));
        std::fs::copy(&self.base, &path).map_err(|e| {
            DataError::Connect(format!(
                "cannot copy the snapshot to {}: {e}",
                path.display()
            ))
        })?;
        // The snapshot is migrated already: the copy is opened as it is, on one connection
        // (a scenario runs one query at a time), with the configured file's settings.
        let opts = SqliteConnectOptions::new()
            .filename(&path)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Off)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(opts)
            .await
            .map_err(|e| DataError::Connect(format!("{}: {e}", path.display())))?;
        Ok(ScenarioCopy {
            db: Database::new(Pool::Sqlite(pool), queries, secret)?,
            path,
        })
    }
}

impl ScenarioCopy {
    /// Closes the copy and deletes its files.
    pub async fn remove(self) {
        self.db.pool().close().await;
        remove_files(&self.path);
    }
}

/// Removes a SQLite file with its `-wal` and `-shm` companions.
fn remove_files(path: &Path) {
    let _ = std::fs::remove_file(path);
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
