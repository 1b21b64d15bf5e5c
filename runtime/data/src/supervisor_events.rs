//! `supervisor_events`: what supervisors did on `/supervisor` — one row per action (a login,
//! a recordings search, a recording played, listen, whisper, barge), with who did it, the call
//! it was about and when (UTC).

use crate::DataError;
use crate::cells::text;
use crate::connect::Pool;
use crate::query::fetch_rows;
use chrono::NaiveDateTime;
use ivr_engine::value::Value;
use rust_decimal::prelude::ToPrimitive;
use serde::Serialize;

/// Most characters of an action or a call id kept (longer ones are cut).
pub const MAX_TEXT: usize = 200;

/// Most rows [`recent`] returns.
pub const MAX_RECENT: usize = 1_000;

/// One row of `supervisor_events`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SupervisorEvent {
    /// `supervisor_events.id`.
    pub id: i64,
    /// The supervisor (`[supervisors.ID]`).
    pub supervisor: String,
    /// What it did (`login`, `search`, `play`, `listen`, `whisper`, `barge`, ...).
    pub action: String,
    /// The call it was about, if any.
    pub call_id: Option<String>,
    /// When, `YYYY-MM-DD HH:MM:SS` (the server's local time, as in every other table).
    pub at: String,
}

fn cut(s: &str) -> String {
    s.chars().take(MAX_TEXT).collect()
}

/// Writes one row: `supervisor` did `action` (on `call_id`) at `at` (UTC).
pub async fn insert(
    pool: &Pool,
    supervisor: &str,
    action: &str,
    call_id: Option<&str>,
    at: NaiveDateTime,
) -> Result<(), DataError> {
    let args = [
        Value::Text(cut(supervisor)),
        Value::Text(cut(action)),
        call_id.map_or(Value::Null, |c| Value::Text(cut(c))),
        Value::DateTime(at),
    ];
    fetch_rows(
        pool,
        "INSERT INTO supervisor_events (supervisor, action, call_id, at) VALUES ($1, $2, $3, $4)",
        &args,
    )
    .await?;
    Ok(())
}

/// The newest rows (at most `limit`, capped at [`MAX_RECENT`]), newest first.
pub async fn recent(pool: &Pool, limit: usize) -> Result<Vec<SupervisorEvent>, DataError> {
    let limit = limit.min(MAX_RECENT);
    let sql = format!(
        "SELECT id, supervisor, action, call_id, at FROM supervisor_events \
         ORDER BY id DESC LIMIT {limit}"
    );
    let rows = fetch_rows(pool, &sql, &[]).await?;
    Ok(rows
        .iter()
        .map(|r| {
            let get = |i: usize| r.get(i).unwrap_or(&Value::Null);
            SupervisorEvent {
                id: get(0).as_decimal().and_then(|d| d.to_i64()).unwrap_or(0),
                supervisor: text(get(1)).unwrap_or_default(),
                action: text(get(2)).unwrap_or_default(),
                call_id: text(get(3)),
                at: text(get(4)).unwrap_or_default(),
            }
        })
        .collect())
}
