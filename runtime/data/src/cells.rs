//! Cells of a row read through the data catalog ([`Value`]), as the platform's own tables
//! store them: text (a timestamp written as SQLite stores it), times (a PostgreSQL timestamp
//! or SQLite's text), whole numbers. One place for what the modules reading those tables share.

use chrono::NaiveDateTime;
use ivr_engine::value::Value;
use rust_decimal::prelude::ToPrimitive;

/// A text cell; `None` for NULL. A timestamp reads as `YYYY-MM-DD HH:MM:SS`, as SQLite stores it.
pub(crate) fn text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::DateTime(t) => Some(t.format("%Y-%m-%d %H:%M:%S").to_string()),
        Value::Text(t) => Some(t.clone()),
        other => Some(other.to_string()),
    }
}

/// A stored time (a timestamp, or SQLite's text).
pub(crate) fn stored_time(v: &Value) -> Option<NaiveDateTime> {
    match v {
        Value::DateTime(t) => Some(*t),
        Value::Text(t) => {
            let t = t.trim();
            NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f")
                .or_else(|_| NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S%.f"))
                .ok()
        }
        _ => None,
    }
}

/// A whole number; 0 for NULL or what is not one.
pub(crate) fn int(v: &Value) -> i64 {
    v.as_decimal().and_then(|d| d.to_i64()).unwrap_or(0)
}
