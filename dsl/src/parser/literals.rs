//! Converting literal tokens (strings, numbers, durations, counts) into values. Each function
//! returns a [`LiteralError`] when the text cannot be represented; its message is the
//! diagnostic's.

use crate::ast::Duration;
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

/// Resolves the escapes of a quoted string token (the quotes included).
pub(crate) fn unescape(raw: &str) -> String {
    let inner = raw
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(raw);
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

/// The first escape of a string token that is not one of `\"`, `\\`, `\n`, `\t`: its byte
/// offset in the token and its length.
pub(crate) fn bad_escape(raw: &str) -> Option<(usize, usize)> {
    let mut iter = raw.char_indices();
    while let Some((i, c)) = iter.next() {
        if c == '\\' {
            match iter.next() {
                Some((_, '"' | '\\' | 'n' | 't')) => {}
                Some((_, other)) => return Some((i, 1 + other.len_utf8())),
                None => return Some((i, 1)),
            }
        }
    }
    None
}

/// A number, count or duration that cannot be represented: the diagnostic's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum LiteralError {
    /// A decimal with more digits than a 96-bit mantissa holds.
    #[error("`{0}` has too many digits to be represented exactly")]
    TooManyDigits(String),
    /// A count beyond 32 bits.
    #[error("`{0}` is too large; counts go up to {max}", max = u32::MAX)]
    CountTooLarge(String),
    /// A whole number beyond 64 bits.
    #[error("`{0}` is too large a number here")]
    IntegerTooLarge(String),
    /// A duration whose unit is not `ms`, `s`, `m` or `h`.
    #[error("`{0}` has an unknown unit; use `ms`, `s`, `m` or `h`")]
    UnknownUnit(String),
    /// A duration beyond 64 bits of milliseconds.
    #[error("`{0}` is too long a duration")]
    DurationTooLong(String),
    /// A duration with a fraction of a millisecond.
    #[error("`{0}` is not a whole number of milliseconds")]
    FractionalMillis(String),
}

/// An exact decimal: `12`, `58.30`.
pub(crate) fn decimal(text: &str) -> Result<Decimal, LiteralError> {
    Decimal::from_str_exact(text).map_err(|_| LiteralError::TooManyDigits(text.to_string()))
}

/// A count such as `digits 18` or `attempts 3`.
pub(crate) fn count(text: &str) -> Result<u32, LiteralError> {
    text.parse::<u32>()
        .map_err(|_| LiteralError::CountTooLarge(text.to_string()))
}

/// A whole number such as the bounds of `scale 1..5`.
pub(crate) fn integer(text: &str) -> Result<i64, LiteralError> {
    text.parse::<i64>()
        .map_err(|_| LiteralError::IntegerTooLarge(text.to_string()))
}

/// A duration: `500ms`, `5s`, `2m`, `1h` (a fraction is allowed when it makes whole
/// milliseconds: `1.5s`).
pub(crate) fn duration(text: &str) -> Result<Duration, LiteralError> {
    let split = text
        .find(|c: char| c.is_ascii_alphabetic())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let factor: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(LiteralError::UnknownUnit(text.to_string())),
    };
    let too_long = || LiteralError::DurationTooLong(text.to_string());
    let value = Decimal::from_str_exact(digits).map_err(|_| too_long())?;
    let millis = value
        .checked_mul(Decimal::from(factor))
        .ok_or_else(too_long)?;
    if !millis.is_integer() {
        return Err(LiteralError::FractionalMillis(text.to_string()));
    }
    let millis = millis.to_u64().ok_or_else(too_long)?;
    Ok(Duration { millis })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes() {
        assert_eq!(unescape(r#""a\"b\\c\nd""#), "a\"b\\c\nd");
        assert_eq!(unescape("\"中文\""), "中文");
        assert_eq!(bad_escape(r#""a\qb""#), Some((2, 2)));
        assert_eq!(bad_escape(r#""a\nb""#), None);
    }

    #[test]
    fn durations() {
        assert_eq!(duration("500ms").unwrap().millis, 500);
        assert_eq!(duration("5s").unwrap().millis, 5_000);
        assert_eq!(duration("2m").unwrap().millis, 120_000);
        assert_eq!(duration("1h").unwrap().millis, 3_600_000);
        assert_eq!(duration("1.5s").unwrap().millis, 1_500);
        assert!(duration("0.5ms").is_err());
        assert!(duration("99999999999999999999999999999h").is_err());
        assert!(duration("9999999999999999999h").is_err());
    }

    #[test]
    fn numbers() {
        assert_eq!(decimal("58.30").unwrap().to_string(), "58.30");
        assert!(decimal("123456789012345678901234567890123").is_err());
        assert_eq!(count("18"), Ok(18));
        assert!(count("99999999999").is_err());
        assert!(integer("99999999999999999999").is_err());
    }
}
