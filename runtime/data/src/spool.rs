//! Where call records wait while the database cannot take them, and where a record that the
//! database refuses is kept for an operator to look at.
//!
//! Both are files of one JSON record a line in the spool folder (`[paths] spool`, by default
//! `spool/` beside `ivr.toml`):
//! - `records.jsonl`: records accepted while the database was down (connection refused, pool
//!   timed out, SQLite busy). The writer appends whole batches (flushed and synced to disk) and
//!   writes them to the database once it answers again, then removes the file. A restart
//!   writes what a previous run left there.
//! - `quarantine.jsonl`: records the database refused one by one (a value it cannot store).
//!   Each is also logged with its call id and the database's reason, and counted.
//!
//! Both files are bounded ([`Spool::max_bytes`] each): past that, records are dropped and
//! counted as lost ([`crate::records::WriterStats::failed`]).

use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

/// The file of records waiting for the database.
const PENDING: &str = "records.jsonl";
/// The file of records the database refused.
const QUARANTINE: &str = "quarantine.jsonl";

/// What can go wrong with the spool files.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// The folder or a file could not be created, written or read.
    #[error("spool {path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// The file is full ([`Spool::max_bytes`]).
    #[error("spool {0} is full")]
    Full(PathBuf),
}

/// The spool folder of a record writer.
#[derive(Debug, Clone)]
pub struct Spool {
    dir: PathBuf,
    /// Bytes each file may hold at most.
    pub max_bytes: u64,
}

impl Spool {
    /// The spool in `dir` (created when first written), each file at most `max_bytes`.
    pub fn new(dir: impl Into<PathBuf>, max_bytes: u64) -> Spool {
        Spool {
            dir: dir.into(),
            max_bytes,
        }
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether records are waiting for the database.
    pub fn has_pending(&self) -> bool {
        self.dir.join(PENDING).exists()
    }

    /// Appends records that wait for the database (synced to disk before it returns).
    pub fn append_pending<R: Serialize>(&self, records: &[R]) -> Result<(), SpoolError> {
        self.append(PENDING, records.iter())
    }

    /// Appends a record the database refused.
    pub fn quarantine<R: Serialize>(&self, record: &R) -> Result<(), SpoolError> {
        self.append(QUARANTINE, std::iter::once(record))
    }

    /// The records waiting for the database, oldest first (lines that cannot be read are
    /// skipped and counted in the second value).
    pub fn read_pending<R: DeserializeOwned>(&self) -> Result<(Vec<R>, u64), SpoolError> {
        let path = self.dir.join(PENDING);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
            Err(source) => return Err(SpoolError::Io { path, source }),
        };
        let mut records = Vec::new();
        let mut bad = 0;
        for line in BufReader::new(file).lines() {
            let line = line.map_err(|source| SpoolError::Io {
                path: path.clone(),
                source,
            })?;
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<R>(&line) {
                Ok(r) => records.push(r),
                Err(_) => bad += 1,
            }
        }
        Ok((records, bad))
    }

    /// Forgets the records waiting for the database (they have been written).
    pub fn clear_pending(&self) -> Result<(), SpoolError> {
        let path = self.dir.join(PENDING);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(SpoolError::Io { path, source }),
        }
    }

    /// Keeps only `records` as waiting for the database (the others have been written):
    /// written to a new file that then takes the old one's place, so a crash leaves either.
    pub fn replace_pending<R: Serialize>(&self, records: &[R]) -> Result<(), SpoolError> {
        let path = self.dir.join(PENDING);
        let tmp = self.dir.join(format!("{PENDING}.new"));
        let _ = fs::remove_file(&tmp);
        let spool = Spool::new(&self.dir, u64::MAX);
        spool.append(&format!("{PENDING}.new"), records.iter())?;
        fs::rename(&tmp, &path).map_err(|source| SpoolError::Io { path, source })
    }

    fn append<'a, R: Serialize + 'a>(
        &self,
        name: &str,
        records: impl Iterator<Item = &'a R>,
    ) -> Result<(), SpoolError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| SpoolError::Io { path, source }
        };
        fs::create_dir_all(&self.dir).map_err(io(&self.dir))?;
        let path = self.dir.join(name);
        let mut text = String::new();
        for r in records {
            // Records serialise (plain strings, numbers and timestamps); one that would not is
            // left out rather than stopping the others.
            if let Ok(line) = serde_json::to_string(r) {
                text.push_str(&line);
                text.push('\n');
            }
        }
        let size = fs::metadata(&path).map_or(0, |m| m.len());
        if size.saturating_add(text.len() as u64) > self.max_bytes {
            return Err(SpoolError::Full(path));
        }
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        f.write_all(text.as_bytes()).map_err(io(&path))?;
        f.sync_data().map_err(io(&path))?;
        Ok(())
    }
}
