//! The supervisors' search of `recordings` (`GET /supervisor/recordings`): both kinds
//! (whole calls and voice-mail messages) by caller (any part of the number), agent, queue,
//! time (from, until) and kind, a bounded page at a time, newest first; and one recording by
//! its id (the only way to its file: paths come from the rows, never from a request).

use crate::DataError;
use crate::call_recordings::Listed;
use crate::cells::{int, text};
use crate::connect::Pool;
use crate::query::fetch_rows;
use chrono::NaiveDateTime;
use ivr_engine::value::Value;

/// Most rows of one page.
pub const MAX_PAGE: usize = 200;
/// Rows of a page when none is asked for.
pub const DEFAULT_PAGE: usize = 50;
/// The furthest a search pages on (rows skipped).
pub const MAX_OFFSET: usize = 100_000;
/// Most characters of a search term.
pub const MAX_TERM: usize = 64;

/// What to search for (every part optional; all given must hold).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Search {
    /// Calling numbers containing this.
    pub caller: Option<String>,
    /// This agent.
    pub agent: Option<String>,
    /// This queue.
    pub queue: Option<String>,
    /// Started at or after this (UTC).
    pub since: Option<NaiveDateTime>,
    /// Started before this (UTC).
    pub until: Option<NaiveDateTime>,
    /// `call` or `message`.
    pub kind: Option<String>,
    /// Rows of the page (1..[`MAX_PAGE`]; 0: [`DEFAULT_PAGE`]).
    pub limit: usize,
    /// Rows skipped (at most [`MAX_OFFSET`]).
    pub offset: usize,
}

/// `LIKE` pattern of "contains `term`", its wildcards escaped (with `\`).
fn contains(term: &str) -> String {
    let mut p = String::with_capacity(term.len() + 2);
    p.push('%');
    for c in term.chars().take(MAX_TERM) {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

fn term(s: &str) -> String {
    s.chars().take(MAX_TERM).collect()
}

const COLUMNS: &str =
    "id, kind, call_id, caller, agent, queue, recorded_at, length_ms, file, sha256";

fn listed(r: &[Value]) -> Listed {
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
}

/// One page of the recordings matching `s`, newest first.
pub async fn search(pool: &Pool, s: &Search) -> Result<Vec<Listed>, DataError> {
    let mut conds = Vec::new();
    let mut args = Vec::new();
    if let Some(c) = s.caller.as_deref().filter(|c| !c.is_empty()) {
        args.push(Value::Text(contains(c)));
        conds.push(format!("caller LIKE ${} ESCAPE '\\'", args.len()));
    }
    for (column, value) in [("agent", &s.agent), ("queue", &s.queue), ("kind", &s.kind)] {
        if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
            args.push(Value::Text(term(v)));
            conds.push(format!("{column} = ${}", args.len()));
        }
    }
    if let Some(t) = s.since {
        args.push(Value::DateTime(t));
        conds.push(format!("recorded_at >= ${}", args.len()));
    }
    if let Some(t) = s.until {
        args.push(Value::DateTime(t));
        conds.push(format!("recorded_at < ${}", args.len()));
    }
    let filter = if conds.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conds.join(" AND "))
    };
    let limit = match s.limit {
        0 => DEFAULT_PAGE,
        n => n.min(MAX_PAGE),
    };
    let offset = s.offset.min(MAX_OFFSET);
    let sql = format!(
        "SELECT {COLUMNS} FROM recordings {filter} \
         ORDER BY recorded_at DESC, id DESC LIMIT {limit} OFFSET {offset}"
    );
    let rows = fetch_rows(pool, &sql, &args).await?;
    Ok(rows.iter().map(|r| listed(r)).collect())
}

/// The recording `id`, if there is one.
pub async fn by_id(pool: &Pool, id: i64) -> Result<Option<Listed>, DataError> {
    let sql = format!("SELECT {COLUMNS} FROM recordings WHERE id = $1");
    let rows = fetch_rows(pool, &sql, &[Value::Number(id.into())]).await?;
    Ok(rows.first().map(|r| listed(r)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_are_escaped() {
        assert_eq!(contains("1390"), "%1390%");
        assert_eq!(contains("1_3%\\"), "%1\\_3\\%\\\\%");
        assert_eq!(contains(&"9".repeat(500)).len(), MAX_TERM + 2);
    }
}
