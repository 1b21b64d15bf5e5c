//! Runtime values of call variables and expressions. Numbers and money are exact decimals.

use chrono::{NaiveDate, NaiveDateTime, NaiveTime};
use rust_decimal::Decimal;
use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

/// A value held by a call variable or computed by an expression.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Value {
    /// No value (an unanswered survey question, a NULL column).
    #[default]
    Null,
    /// Text.
    Text(String),
    /// A plain number.
    Number(Decimal),
    /// An amount of money.
    Money(Decimal),
    /// A truth value.
    Bool(bool),
    /// Milliseconds.
    Duration(u64),
    /// A calendar date.
    Date(NaiveDate),
    /// A time of day.
    Time(NaiveTime),
    /// A local date and time.
    DateTime(NaiveDateTime),
    /// A query row: its fields in catalog order.
    Row(Arc<[Value]>),
}

impl Value {
    /// The decimal of a number or money value.
    pub fn as_decimal(&self) -> Option<Decimal> {
        match self {
            Value::Number(d) | Value::Money(d) => Some(*d),
            _ => None,
        }
    }

    /// The truth value, if this is one.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// Equality as flows see it: numbers and money compare by value (`58.3 == 58.30`).
    pub fn equals(&self, other: &Value) -> bool {
        match (self.as_decimal(), other.as_decimal()) {
            (Some(a), Some(b)) => a == b,
            _ => self.compare(other) == Some(Ordering::Equal) || self == other,
        }
    }

    /// Ordering where it is defined (numbers, text, dates, times, durations).
    pub fn compare(&self, other: &Value) -> Option<Ordering> {
        if let (Some(a), Some(b)) = (self.as_decimal(), other.as_decimal()) {
            return Some(a.cmp(&b));
        }
        match (self, other) {
            (Value::Text(a), Value::Text(b)) => Some(a.cmp(b)),
            (Value::Bool(a), Value::Bool(b)) => Some(a.cmp(b)),
            (Value::Duration(a), Value::Duration(b)) => Some(a.cmp(b)),
            (Value::Date(a), Value::Date(b)) => Some(a.cmp(b)),
            (Value::Time(a), Value::Time(b)) => Some(a.cmp(b)),
            (Value::DateTime(a), Value::DateTime(b)) => Some(a.cmp(b)),
            (Value::DateTime(a), Value::Date(b)) => Some(a.date().cmp(b)),
            (Value::Date(a), Value::DateTime(b)) => Some(a.cmp(&b.date())),
            (Value::DateTime(a), Value::Time(b)) => Some(a.time().cmp(b)),
            (Value::Time(a), Value::DateTime(b)) => Some(a.cmp(&b.time())),
            (Value::Null, Value::Null) => Some(Ordering::Equal),
            _ => None,
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("null"),
            Value::Text(s) => f.write_str(s),
            Value::Number(d) => write!(f, "{}", d.normalize()),
            Value::Money(d) => write!(f, "{:.2}", d.round_dp(2)),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Duration(ms) => {
                if ms % 1000 == 0 {
                    write!(f, "{}s", ms / 1000)
                } else {
                    write!(f, "{ms}ms")
                }
            }
            Value::Date(d) => write!(f, "{}", d.format("%Y-%m-%d")),
            Value::Time(t) => write!(f, "{}", t.format("%H:%M")),
            Value::DateTime(t) => write!(f, "{}", t.format("%Y-%m-%d %H:%M")),
            Value::Row(fields) => {
                f.write_str("{")?;
                for (i, v) in fields.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_str("}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn numbers_compare_by_value() {
        let a = Value::Money(Decimal::from_str("58.30").unwrap());
        let b = Value::Number(Decimal::from_str("58.3").unwrap());
        assert!(a.equals(&b));
        assert_eq!(a.to_string(), "58.30");
        assert_eq!(b.to_string(), "58.3");
        assert!(!Value::Text("1".into()).equals(&Value::Number(Decimal::ONE)));
    }
}
