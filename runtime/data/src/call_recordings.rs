//! Whole-call recordings (`recordings` rows of kind `call`, written by `ivr serve` when a call
//! is recorded by `[recording] calls` or a flow's `record call`): listing them for
//! `ivr recordings` and deleting those older than `[recording] keep` (file and row).

use crate::DataError;
use crate::cells::{int, text};
use crate::connect::Pool;
use crate::query::fetch_rows;
use chrono::NaiveDateTime;
use ivr_engine::value::Value;
use serde::Serialize;
use std::path::Path;

/// The most rows one listing returns (newest first).
pub const MAX_LIST: usize = 10_000;

/// Rows one purge round reads and deletes.
const PURGE_BATCH: usize = 500;

/// One recording as `ivr recordings` lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Listed {
    /// `recordings.id`.
    pub id: i64,
    /// `call` or `message`.
    pub kind: String,
    /// The call.
    pub call_id: String,
    /// The calling number.
    pub caller: String,
    /// The agent who answered, if any.
    pub agent: Option<String>,
    /// The queue, if any.
    pub queue: Option<String>,
    /// When the recording started, `YYYY-MM-DD HH:MM:SS`.
    pub recorded_at: String,
    /// Its length in milliseconds.
    pub length_ms: i64,
    /// The audio file.
    pub file: Option<String>,
    /// The SHA-256 of the file (whole-call recordings).
    pub sha256: Option<String>,
}

/// What to list.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only this calling number.
    pub caller: Option<String>,
    /// Only this agent.
    pub agent: Option<String>,
    /// Only recordings started at or after this.
    pub since: Option<NaiveDateTime>,
}

/// Recordings of both kinds matching `filter`, newest first (at most [`MAX_LIST`]).
pub async fn list(pool: &Pool, filter: &Filter) -> Result<Vec<Listed>, DataError> {
    let mut conds = Vec::new();
    let mut args = Vec::new();
    if let Some(c) = &filter.caller {
        args.push(Value::Text(c.clone()));
        conds.push(format!("caller = ${}", args.len()));
    }
    if let Some(a) = &filter.agent {
        args.push(Value::Text(a.clone()));
        conds.push(format!("agent = ${}", args.len()));
    }
    if let Some(s) = filter.since {
        args.push(Value::DateTime(s));
        conds.push(format!("recorded_at >= ${}", args.len()));
    }
    let filter = if conds.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conds.join(" AND "))
    };
    let sql = format!(
        "SELECT id, kind, call_id, caller, agent, queue, recorded_at, length_ms, file, sha256 \
         FROM recordings {filter} ORDER BY recorded_at DESC, id DESC LIMIT {MAX_LIST}"
    );
    let rows = fetch_rows(pool, &sql, &args).await?;
    Ok(rows
        .iter()
        .map(|r| {
            let get = |i: usize| r.get(i).unwrap_or(&Value::Null);
            Listed {
                id: int(get(0)),
                kind: text(get(1)).unwrap_or_default(),
                call_id: text(get(2)).unwrap_or_default(),
                caller: text(get(3)).unwrap_or_default(),
                agent: text(get(4)),
                queue: text(get(5)),
                recorded_at: text(get(6)).unwrap_or_default(),
                length_ms: int(get(7)),
                file: text(get(8)),
                sha256: text(get(9)),
            }
        })
        .collect())
}

/// What a purge did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Purged {
    /// Rows deleted.
    pub rows: u64,
    /// Files deleted.
    pub files: u64,
    /// Rows whose file was already gone (deleted all the same).
    pub missing: u64,
    /// Files that could not be deleted (their rows are kept for the next round).
    pub failed: u64,
}

/// Deletes whole-call recordings started before `before`: the file first, then the row (a
/// file that cannot be deleted keeps its row, so the next purge tries again). Voice-mail
/// messages (kind `message`) are not touched.
pub async fn purge(pool: &Pool, before: NaiveDateTime) -> Result<Purged, DataError> {
    let mut done = Purged::default();
    let mut skip: Vec<i64> = Vec::new();
    loop {
        let sql = format!(
            "SELECT id, file FROM recordings WHERE kind = 'call' AND recorded_at < $1 \
             ORDER BY id LIMIT {}",
            PURGE_BATCH + skip.len()
        );
        let rows = fetch_rows(pool, &sql, &[Value::DateTime(before)]).await?;
        let mut progressed = false;
        for r in &rows {
            let id = r.first().map_or(0, int);
            if skip.contains(&id) {
                continue;
            }
            if let Some(file) = r.get(1).and_then(text) {
                match std::fs::remove_file(Path::new(&file)) {
                    Ok(()) => done.files += 1,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => done.missing += 1,
                    Err(e) => {
                        tracing::warn!(file = %file, error = %e, "recording not deleted");
                        done.failed += 1;
                        skip.push(id);
                        continue;
                    }
                }
            }
            fetch_rows(
                pool,
                "DELETE FROM recordings WHERE id = $1 RETURNING id",
                &[Value::Number(id.into())],
            )
            .await?;
            done.rows += 1;
            progressed = true;
        }
        if !progressed || skip.len() > PURGE_BATCH {
            return Ok(done);
        }
    }
}
