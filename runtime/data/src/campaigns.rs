//! Campaigns: the rows of `campaign_attempts` (one per attempt at a number: written when it
//! starts, before the INVITE leaves, and completed when it ends) and `campaign_states`
//! (whether each campaign is started or paused), from which the dialler goes on after a
//! restart of `ivr serve`.

use crate::DataError;
use crate::cells::{stored_time as time, text};
use crate::connect::Pool;
use crate::query::fetch_rows;
use chrono::NaiveDateTime;
use ivr_engine::value::Value;
use rust_decimal::prelude::ToPrimitive;

/// The most attempts of one campaign read back at start-up.
pub const MAX_ATTEMPTS_READ: usize = 5_000_000;

/// One row of `campaign_attempts` as read back.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptRow {
    /// The number dialled.
    pub phone: String,
    /// 1, 2, ...
    pub attempt: u32,
    /// When it started.
    pub started_at: NaiveDateTime,
    /// When the callee answered.
    pub answered_at: Option<NaiveDateTime>,
    /// When it ended (`None`: under way, or cut by a stop of the server).
    pub ended_at: Option<NaiveDateTime>,
    /// `answered`, `no_answer`, `busy`, `failed`.
    pub result: Option<String>,
    /// The flow's outcome, when answered.
    pub outcome: Option<String>,
}

/// Writes the start of an attempt. `false` when that attempt at that number was already
/// written (another run got there first): the number must not be dialled.
pub async fn start_attempt(
    pool: &Pool,
    campaign: &str,
    phone: &str,
    attempt: u32,
    at: NaiveDateTime,
) -> Result<bool, DataError> {
    let rows = fetch_rows(
        pool,
        "INSERT INTO campaign_attempts (campaign, phone, attempt, started_at) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (campaign, phone, attempt) DO NOTHING \
         RETURNING attempt",
        &[
            Value::Text(campaign.to_string()),
            Value::Text(phone.to_string()),
            Value::Number(attempt.into()),
            Value::DateTime(at),
        ],
    )
    .await?;
    Ok(!rows.is_empty())
}

/// Notes that the callee of an attempt answered, and the call's id.
pub async fn answered(
    pool: &Pool,
    campaign: &str,
    phone: &str,
    attempt: u32,
    at: NaiveDateTime,
    call_id: &str,
) -> Result<(), DataError> {
    fetch_rows(
        pool,
        "UPDATE campaign_attempts SET answered_at = $4, call_id = $5 \
         WHERE campaign = $1 AND phone = $2 AND attempt = $3 RETURNING attempt",
        &[
            Value::Text(campaign.to_string()),
            Value::Text(phone.to_string()),
            Value::Number(attempt.into()),
            Value::DateTime(at),
            Value::Text(call_id.to_string()),
        ],
    )
    .await?;
    Ok(())
}

/// Writes the end of an attempt: its result and, when answered, the flow's outcome.
pub async fn end_attempt(
    pool: &Pool,
    campaign: &str,
    phone: &str,
    attempt: u32,
    at: NaiveDateTime,
    result: &str,
    outcome: Option<&str>,
) -> Result<(), DataError> {
    fetch_rows(
        pool,
        "UPDATE campaign_attempts SET ended_at = $4, result = $5, outcome = $6 \
         WHERE campaign = $1 AND phone = $2 AND attempt = $3 RETURNING attempt",
        &[
            Value::Text(campaign.to_string()),
            Value::Text(phone.to_string()),
            Value::Number(attempt.into()),
            Value::DateTime(at),
            Value::Text(result.to_string()),
            outcome.map_or(Value::Null, |o| Value::Text(o.to_string())),
        ],
    )
    .await?;
    Ok(())
}

/// Ends the attempts of a campaign that a stop of the server cut (no `ended_at`): answered
/// ones as `answered`, the others as `failed`, at `at`. Returns how many.
pub async fn close_cut_attempts(
    pool: &Pool,
    campaign: &str,
    at: NaiveDateTime,
) -> Result<usize, DataError> {
    let rows = fetch_rows(
        pool,
        "UPDATE campaign_attempts SET ended_at = $2, \
         result = CASE WHEN answered_at IS NULL THEN 'failed' ELSE 'answered' END \
         WHERE campaign = $1 AND ended_at IS NULL RETURNING attempt",
        &[Value::Text(campaign.to_string()), Value::DateTime(at)],
    )
    .await?;
    Ok(rows.len())
}

/// Every attempt of a campaign, oldest first (at most [`MAX_ATTEMPTS_READ`]).
pub async fn attempts(pool: &Pool, campaign: &str) -> Result<Vec<AttemptRow>, DataError> {
    let rows = fetch_rows(
        pool,
        &format!(
            "SELECT phone, attempt, started_at, answered_at, ended_at, result, outcome \
             FROM campaign_attempts WHERE campaign = $1 ORDER BY id LIMIT {MAX_ATTEMPTS_READ}"
        ),
        &[Value::Text(campaign.to_string())],
    )
    .await?;
    Ok(rows
        .iter()
        .filter_map(|r| {
            let get = |i: usize| r.get(i).unwrap_or(&Value::Null);
            Some(AttemptRow {
                phone: text(get(0))?,
                attempt: get(1)
                    .as_decimal()
                    .and_then(|d| d.to_u32())
                    .filter(|a| *a > 0)?,
                started_at: time(get(2))?,
                answered_at: time(get(3)),
                ended_at: time(get(4)),
                result: text(get(5)),
                outcome: text(get(6)),
            })
        })
        .collect())
}

/// Whether a campaign was left started (`Some(true)`), paused, or never touched (`None`).
pub async fn running(pool: &Pool, campaign: &str) -> Result<Option<bool>, DataError> {
    let rows = fetch_rows(
        pool,
        "SELECT running FROM campaign_states WHERE campaign = $1",
        &[Value::Text(campaign.to_string())],
    )
    .await?;
    Ok(rows.first().and_then(|r| r.first()).map(|v| match v {
        Value::Bool(b) => *b,
        other => other.as_decimal().is_some_and(|d| !d.is_zero()),
    }))
}

/// Keeps whether a campaign is started or paused.
pub async fn set_running(
    pool: &Pool,
    campaign: &str,
    running: bool,
    at: NaiveDateTime,
) -> Result<(), DataError> {
    fetch_rows(
        pool,
        "INSERT INTO campaign_states (campaign, running, changed_at) VALUES ($1, $2, $3) \
         ON CONFLICT (campaign) DO UPDATE SET running = excluded.running, \
         changed_at = excluded.changed_at RETURNING campaign",
        &[
            Value::Text(campaign.to_string()),
            Value::Bool(running),
            Value::DateTime(at),
        ],
    )
    .await?;
    Ok(())
}
