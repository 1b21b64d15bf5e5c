//! Voice mail: the messages callers left with `record` nodes (rows of `recordings` with an
//! audio file), the queue each belongs to, and what agents did with them (`message_states`:
//! heard, done). The agent console's inbox and the dashboard's counts read them here. Only
//! rows of kind `message`: whole-call recordings (kind `call`) are no voice mail.

use crate::DataError;
use crate::cells::{int, text};
use crate::connect::Pool;
use crate::query::fetch_rows;
use chrono::NaiveDateTime;
use ivr_engine::value::Value;
use serde::Serialize;

/// The most messages one listing returns (newest first).
pub const MAX_LIST: usize = 500;

/// One message as the inbox lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Message {
    /// `recordings.id`.
    pub id: i64,
    /// The call that left it.
    pub call_id: String,
    /// The calling number.
    pub caller: String,
    /// The flow and its record node.
    pub flow: String,
    /// The record node.
    pub node: String,
    /// The record node's `save` name.
    pub save: String,
    /// The queue whose agents handle it (none: every agent's).
    pub queue: Option<String>,
    /// When the caller started speaking, `YYYY-MM-DD HH:MM:SS`.
    pub recorded_at: String,
    /// Its length in milliseconds.
    pub length_ms: i64,
    /// When an agent first played it, and who.
    pub heard_at: Option<String>,
    /// The agent who first played it.
    pub heard_by: Option<String>,
    /// When an agent marked it done, and who.
    pub done_at: Option<String>,
    /// The agent who marked it done.
    pub done_by: Option<String>,
    /// The audio file (not sent to pages).
    #[serde(skip)]
    pub file: String,
}

const COLUMNS: &str = "r.id, r.call_id, r.caller, r.flow, r.node, r.save_table, r.queue, \
     r.recorded_at, r.length_ms, s.heard_at, s.heard_by, s.done_at, s.done_by, r.file";

fn when(v: &Value) -> Option<String> {
    text(v).map(|t| t.chars().take(19).collect())
}

fn message(row: &[Value]) -> Option<Message> {
    let get = |i: usize| row.get(i).unwrap_or(&Value::Null);
    Some(Message {
        id: int(get(0)),
        call_id: text(get(1))?,
        caller: text(get(2)).unwrap_or_default(),
        flow: text(get(3)).unwrap_or_default(),
        node: text(get(4)).unwrap_or_default(),
        save: text(get(5)).unwrap_or_default(),
        queue: text(get(6)),
        recorded_at: when(get(7)).unwrap_or_default(),
        length_ms: int(get(8)),
        heard_at: when(get(9)),
        heard_by: text(get(10)),
        done_at: when(get(11)),
        done_by: text(get(12)),
        file: text(get(13))?,
    })
}

/// The messages (with audio) of `queues` — and those of no queue, and of queues not in
/// `configured` (a queue removed from `ivr.toml` leaves its messages to everyone) — newest
/// first, at most [`MAX_LIST`]; done ones only when `with_done`.
pub async fn list(
    pool: &Pool,
    queues: &[String],
    configured: &[String],
    with_done: bool,
) -> Result<Vec<Message>, DataError> {
    let mut args = Vec::new();
    let mut mine = Vec::new();
    for q in queues {
        args.push(Value::Text(q.clone()));
        mine.push(format!("${}", args.len()));
    }
    let mut known = Vec::new();
    for q in configured {
        args.push(Value::Text(q.clone()));
        known.push(format!("${}", args.len()));
    }
    let mut visible = vec!["r.queue IS NULL".to_string()];
    if !mine.is_empty() {
        visible.push(format!("r.queue IN ({})", mine.join(", ")));
    }
    if known.is_empty() {
        visible.push("r.queue IS NOT NULL".to_string());
    } else {
        visible.push(format!("r.queue NOT IN ({})", known.join(", ")));
    }
    let done = if with_done {
        ""
    } else {
        " AND s.done_at IS NULL"
    };
    let sql = format!(
        "SELECT {COLUMNS} FROM recordings r LEFT JOIN message_states s ON s.recording_id = r.id \
         WHERE r.file IS NOT NULL AND r.kind = 'message' AND ({}){done} \
         ORDER BY r.recorded_at DESC, r.id DESC LIMIT {MAX_LIST}",
        visible.join(" OR ")
    );
    let rows = fetch_rows(pool, &sql, &args).await?;
    Ok(rows.iter().filter_map(|r| message(r)).collect())
}

/// One message with audio, by id.
pub async fn get(pool: &Pool, id: i64) -> Result<Option<Message>, DataError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM recordings r LEFT JOIN message_states s ON s.recording_id = r.id \
         WHERE r.id = $1 AND r.file IS NOT NULL AND r.kind = 'message'"
    );
    let rows = fetch_rows(pool, &sql, &[Value::Number(id.into())]).await?;
    Ok(rows.first().and_then(|r| message(r)))
}

/// Notes that `agent` played message `id` at `at` (the first play counts).
pub async fn mark_heard(
    pool: &Pool,
    id: i64,
    agent: &str,
    at: NaiveDateTime,
) -> Result<(), DataError> {
    fetch_rows(
        pool,
        "INSERT INTO message_states (recording_id, heard_at, heard_by) VALUES ($1, $2, $3) \
         ON CONFLICT (recording_id) DO UPDATE SET \
         heard_at = COALESCE(message_states.heard_at, excluded.heard_at), \
         heard_by = COALESCE(message_states.heard_by, excluded.heard_by) \
         RETURNING recording_id",
        &[
            Value::Number(id.into()),
            Value::DateTime(at),
            Value::Text(agent.to_string()),
        ],
    )
    .await?;
    Ok(())
}

/// Marks message `id` done by `agent` at `at`, or open again (`done` false).
pub async fn mark_done(
    pool: &Pool,
    id: i64,
    agent: &str,
    at: NaiveDateTime,
    done: bool,
) -> Result<(), DataError> {
    let (at, by) = if done {
        (Value::DateTime(at), Value::Text(agent.to_string()))
    } else {
        (Value::Null, Value::Null)
    };
    fetch_rows(
        pool,
        "INSERT INTO message_states (recording_id, done_at, done_by) VALUES ($1, $2, $3) \
         ON CONFLICT (recording_id) DO UPDATE SET \
         done_at = excluded.done_at, done_by = excluded.done_by \
         RETURNING recording_id",
        &[Value::Number(id.into()), at, by],
    )
    .await?;
    Ok(())
}

/// Unheard messages (neither played nor done) per queue (`None`: of no queue).
pub async fn unheard_by_queue(pool: &Pool) -> Result<Vec<(Option<String>, u64)>, DataError> {
    let rows = fetch_rows(
        pool,
        "SELECT r.queue, COUNT(*) FROM recordings r \
         LEFT JOIN message_states s ON s.recording_id = r.id \
         WHERE r.file IS NOT NULL AND r.kind = 'message' AND s.heard_at IS NULL AND s.done_at IS NULL \
         GROUP BY r.queue",
        &[],
    )
    .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let q = r.first().and_then(text);
            let n = r.get(1).map_or(0, int);
            (q, u64::try_from(n).unwrap_or(0))
        })
        .collect())
}
