//! Callbacks: one row of `callbacks` per caller who kept a callback (key 1 after a queue's
//! offer). Written when the place is kept, updated at each dial of the caller, closed with a
//! result; rows without a result are pending and read back when `ivr serve` starts.

use crate::DataError;
use crate::cells::{stored_time as time, text};
use crate::connect::Pool;
use crate::query::fetch_rows;
use chrono::NaiveDateTime;
use ivr_engine::value::Value;
use rust_decimal::prelude::ToPrimitive;

/// The most pending callbacks read back at start-up.
pub const MAX_PENDING_READ: usize = 10_000;

/// How a callback ended (`callbacks.result`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbackResult {
    /// The caller answered and was bridged with the agent.
    Connected,
    /// The caller did not answer (or was busy) at every attempt.
    NoAnswer,
    /// The caller could not be dialled (no trunk, no port, a failed INVITE at every attempt).
    Failed,
    /// The configuration changed so that it cannot be served (its queue is gone).
    Cancelled,
}

impl CallbackResult {
    /// The name stored.
    pub fn as_str(self) -> &'static str {
        match self {
            CallbackResult::Connected => "connected",
            CallbackResult::NoAnswer => "no_answer",
            CallbackResult::Failed => "failed",
            CallbackResult::Cancelled => "cancelled",
        }
    }
}

/// A pending callback as read back.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingCallback {
    /// The call that kept it.
    pub call_id: String,
    /// Its queue.
    pub queue: String,
    /// The number dialled back.
    pub phone: String,
    /// When it was kept.
    pub requested_at: NaiveDateTime,
    /// Dials so far.
    pub attempts: u32,
    /// What the server stored to offer it again (JSON: screen pop, skills, level).
    pub offer: Option<String>,
}

/// Writes a kept callback, with what the server needs to offer it again after a restart
/// (`offer`, opaque here). `false` when that call's callback was already written.
pub async fn keep(
    pool: &Pool,
    call_id: &str,
    queue: &str,
    phone: &str,
    at: NaiveDateTime,
    offer: Option<&str>,
) -> Result<bool, DataError> {
    let rows = fetch_rows(
        pool,
        "INSERT INTO callbacks (call_id, queue, phone, requested_at, attempts, offer) \
         VALUES ($1, $2, $3, $4, 0, $5) ON CONFLICT (call_id) DO NOTHING RETURNING call_id",
        &[
            Value::Text(call_id.to_string()),
            Value::Text(queue.to_string()),
            Value::Text(phone.to_string()),
            Value::DateTime(at),
            offer.map_or(Value::Null, |o| Value::Text(o.to_string())),
        ],
    )
    .await?;
    Ok(!rows.is_empty())
}

/// An agent answered the callback's offer: the caller is dialled now, for the `attempt`-th
/// time.
pub async fn dialling(
    pool: &Pool,
    call_id: &str,
    agent: &str,
    attempt: u32,
    at: NaiveDateTime,
) -> Result<(), DataError> {
    fetch_rows(
        pool,
        "UPDATE callbacks SET agent = $2, attempts = $3, agent_answered_at = $4 \
         WHERE call_id = $1 RETURNING call_id",
        &[
            Value::Text(call_id.to_string()),
            Value::Text(agent.to_string()),
            Value::Number(attempt.into()),
            Value::DateTime(at),
        ],
    )
    .await?;
    Ok(())
}

/// The caller answered: agent and caller are bridged.
pub async fn connected(pool: &Pool, call_id: &str, at: NaiveDateTime) -> Result<(), DataError> {
    fetch_rows(
        pool,
        "UPDATE callbacks SET connected_at = $2 WHERE call_id = $1 RETURNING call_id",
        &[Value::Text(call_id.to_string()), Value::DateTime(at)],
    )
    .await?;
    Ok(())
}

/// Closes a callback with its result.
pub async fn end(
    pool: &Pool,
    call_id: &str,
    result: CallbackResult,
    at: NaiveDateTime,
) -> Result<(), DataError> {
    fetch_rows(
        pool,
        "UPDATE callbacks SET result = $2, ended_at = $3 WHERE call_id = $1 RETURNING call_id",
        &[
            Value::Text(call_id.to_string()),
            Value::Text(result.as_str().to_string()),
            Value::DateTime(at),
        ],
    )
    .await?;
    Ok(())
}

/// The callbacks without a result, oldest first (at most [`MAX_PENDING_READ`]).
pub async fn pending(pool: &Pool) -> Result<Vec<PendingCallback>, DataError> {
    let rows = fetch_rows(
        pool,
        &format!(
            "SELECT call_id, queue, phone, requested_at, attempts, offer FROM callbacks \
             WHERE result IS NULL ORDER BY requested_at, id LIMIT {MAX_PENDING_READ}"
        ),
        &[],
    )
    .await?;
    Ok(rows
        .iter()
        .filter_map(|r| {
            let get = |i: usize| r.get(i).unwrap_or(&Value::Null);
            Some(PendingCallback {
                call_id: text(get(0))?,
                queue: text(get(1))?,
                phone: text(get(2))?,
                requested_at: time(get(3))?,
                attempts: get(4).as_decimal().and_then(|d| d.to_u32()).unwrap_or(0),
                offer: text(get(5)),
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connect::{self, Target};

    #[tokio::test]
    async fn a_callback_is_kept_dialled_connected_and_closed() {
        let pool = connect::open(&Target::SqliteMemory, 1).await.expect("open");
        connect::migrate(&pool).await.expect("migrate");
        check_rows(&pool).await;
    }

    #[tokio::test]
    async fn a_callback_is_kept_dialled_connected_and_closed_postgres() {
        let Some(scratch) = crate::scratch::Scratch::new("callbacks", "callbacks", 2).await else {
            return;
        };
        let pool = scratch.pool.clone();
        connect::migrate(&pool).await.expect("migrate");
        check_rows(&pool).await;
        drop(pool);
        scratch.drop().await;
    }

    async fn check_rows(pool: &Pool) {
        let pool = pool.clone();
        let at = |s: &str| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").expect("time");
        assert!(
            keep(
                &pool,
                "c1",
                "general",
                "13800000001",
                at("2026-12-07 10:00:00"),
                None
            )
            .await
            .expect("keep")
        );
        assert!(
            !keep(
                &pool,
                "c1",
                "general",
                "13800000001",
                at("2026-12-07 10:00:01"),
                None
            )
            .await
            .expect("again")
        );
        keep(
            &pool,
            "c2",
            "general",
            "13800000002",
            at("2026-12-07 10:01:00"),
            Some("{\"level\":2}"),
        )
        .await
        .expect("keep");
        dialling(&pool, "c1", "2001", 1, at("2026-12-07 10:05:00"))
            .await
            .expect("dial");
        connected(&pool, "c1", at("2026-12-07 10:05:10"))
            .await
            .expect("connected");
        end(
            &pool,
            "c1",
            CallbackResult::Connected,
            at("2026-12-07 10:09:00"),
        )
        .await
        .expect("end");
        let left = pending(&pool).await.expect("pending");
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].call_id, "c2");
        assert_eq!(left[0].attempts, 0);
        assert_eq!(left[0].requested_at, at("2026-12-07 10:01:00"));
        assert_eq!(left[0].offer.as_deref(), Some("{\"level\":2}"));
    }
}
