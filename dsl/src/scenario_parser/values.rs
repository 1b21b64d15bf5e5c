//! Values: strings, keys, numbers, durations, dates and times, and "did you mean" hints.

use super::lex::Token;
use super::{BAD_KEY, BAD_VALUE, PResult, SYNTAX};
use crate::diagnostic::{Diagnostic, FileId};
use crate::span::Span;
use rust_decimal::Decimal;
use std::str::FromStr;

/// Resolves the escapes `\"`, `\\`, `\n`, `\t` of a string token (quotes included).
pub(super) fn unescape(file: FileId, t: Token<'_>) -> PResult<String> {
    let inner = t
        .text
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(t.text);
    let base = t.span.start as usize + 1;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.char_indices();
    while let Some((i, c)) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some((_, '"')) => out.push('"'),
            Some((_, '\\')) => out.push('\\'),
            Some((_, 'n')) => out.push('\n'),
            Some((_, 't')) => out.push('\t'),
            Some((j, other)) => {
                let span = Span::new(base + i, base + j + other.len_utf8());
                return Err(Diagnostic::error(
                    SYNTAX,
                    file,
                    span,
                    format!("unknown escape `\\{other}` in a string"),
                )
                .with_hint(
                    "the escapes are `\\\"`, `\\\\`, `\\n` and `\\t`; write `\\\\` for a backslash",
                ));
            }
            None => out.push('\\'),
        }
    }
    Ok(out)
}

/// Checks that every character is a DTMF key; `text` starts at byte `start` of the file.
pub(super) fn check_keys(file: FileId, text: &str, start: usize) -> PResult<()> {
    let (inner, base) = match text.strip_prefix('"') {
        Some(rest) => (rest.strip_suffix('"').unwrap_or(rest), start + 1),
        None => (text, start),
    };
    for (i, c) in inner.char_indices() {
        if !(c.is_ascii_digit() || c == '*' || c == '#') {
            let span = Span::new(base + i, base + i + c.len_utf8());
            let shown = if c == '\\' {
                "\\".to_string()
            } else {
                c.to_string()
            };
            return Err(
                Diagnostic::error(BAD_KEY, file, span, format!("`{shown}` is not a key"))
                    .with_hint("keys are `0` to `9`, `*` and `#`"),
            );
        }
    }
    Ok(())
}

/// The text, cut to 40 characters for messages.
pub(super) fn shorten(text: &str) -> String {
    if text.chars().count() > 40 {
        let s: String = text.chars().take(37).collect();
        format!("{s}...")
    } else {
        text.to_string()
    }
}

fn bad_value(file: FileId, span: Span, message: impl Into<String>) -> Diagnostic {
    Diagnostic::error(BAD_VALUE, file, span, message)
}

pub(super) fn parse_decimal(file: FileId, t: Token<'_>) -> PResult<Decimal> {
    Decimal::from_str(t.text).map_err(|_| {
        bad_value(
            file,
            t.span,
            format!("the number `{}` is too large", shorten(t.text)),
        )
        .with_hint("numbers have at most 28 digits")
    })
}

pub(super) fn parse_duration(file: FileId, t: Token<'_>) -> PResult<u64> {
    let (digits, factor) = if let Some(d) = t.text.strip_suffix("ms") {
        (d, 1u64)
    } else if let Some(d) = t.text.strip_suffix('s') {
        (d, 1_000)
    } else if let Some(d) = t.text.strip_suffix('m') {
        (d, 60_000)
    } else if let Some(d) = t.text.strip_suffix('h') {
        (d, 3_600_000)
    } else {
        (t.text, 1)
    };
    let too_long = || {
        bad_value(
            file,
            t.span,
            format!("the duration `{}` is too long", shorten(t.text)),
        )
    };
    let amount = Decimal::from_str(digits).map_err(|_| too_long())?;
    let millis = amount
        .checked_mul(Decimal::from(factor))
        .ok_or_else(too_long)?;
    if !millis.fract().is_zero() {
        return Err(bad_value(
            file,
            t.span,
            format!("`{}` is not a whole number of milliseconds", t.text),
        ));
    }
    u64::try_from(millis).map_err(|_| too_long())
}

pub(super) fn parse_date(file: FileId, t: Token<'_>) -> PResult<(i32, u32, u32)> {
    let bad = |what: &str| {
        bad_value(file, t.span, format!("`{}` is not a date: {what}", t.text))
            .with_hint("write dates as `2026-11-23` (year-month-day)")
    };
    let mut parts = t.text.split('-');
    let mut next = || parts.next().and_then(|p| p.parse::<u32>().ok());
    let (Some(year), Some(month), Some(day)) = (next(), next(), next()) else {
        return Err(bad("it needs a year, a month and a day"));
    };
    if !(1..=12).contains(&month) {
        return Err(bad("the month must be 1 to 12"));
    }
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    if day < 1 || day > days {
        return Err(bad(&format!("that month has days 1 to {days}")));
    }
    // four digits, so it always fits
    let year = i32::try_from(year).map_err(|_| bad("the year is too large"))?;
    Ok((year, month, day))
}

pub(super) fn parse_time(file: FileId, t: Token<'_>) -> PResult<(u32, u32, u32)> {
    let bad = |what: &str| {
        bad_value(file, t.span, format!("`{}` is not a time: {what}", t.text))
            .with_hint("write times as `10:00` or `10:00:30`")
    };
    let parts: Vec<Option<u32>> = t.text.split(':').map(|p| p.parse().ok()).collect();
    let (hour, minute, second) = match parts.as_slice() {
        [Some(h), Some(m)] => (*h, *m, 0),
        [Some(h), Some(m), Some(s)] => (*h, *m, *s),
        _ => return Err(bad("it needs hours and minutes")),
    };
    if hour > 23 {
        return Err(bad("the hour must be 0 to 23"));
    }
    if minute > 59 {
        return Err(bad("the minutes must be 0 to 59"));
    }
    if second > 59 {
        return Err(bad("the seconds must be 0 to 59"));
    }
    Ok((hour, minute, second))
}

/// ``did you mean `x`?`` for the nearest candidate, if one is near enough.
pub(super) fn did_you_mean(word: &str, candidates: &[&str]) -> Option<String> {
    suggest(word, candidates).map(|s| format!("did you mean `{s}`?"))
}

/// The candidate nearest to `word` (optimal string alignment distance, so that a swap of two
/// letters counts once), if it is near enough to be a likely typo.
pub(super) fn suggest<'c>(word: &str, candidates: &[&'c str]) -> Option<&'c str> {
    let lower = word.to_lowercase();
    let len = lower.chars().count();
    let limit = match len {
        0..=2 => 1,
        3..=5 => 2,
        _ => 3,
    };
    candidates
        .iter()
        .map(|c| (distance(&lower, c), *c))
        .filter(|(d, c)| *d <= limit || (len >= 3 && c.starts_with(lower.as_str())))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

pub(super) fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // words longer than this are no typo of a keyword; avoid quadratic work on fuzzed input
    if a.len() > 64 || b.len() > 64 {
        return usize::MAX;
    }
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    if let Some(first) = d.first_mut() {
        for (j, cell) in first.iter_mut().enumerate() {
            *cell = j;
        }
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::super::lex::Tk;
    use super::super::{AGENT_ACTIONS, EXPECTATIONS, LINE_KEYWORDS};
    use super::*;

    #[test]
    fn suggestions() {
        assert_eq!(suggest("plya", EXPECTATIONS), Some("play"));
        assert_eq!(suggest("expct", LINE_KEYWORDS), Some("expect"));
        assert_eq!(suggest("Expect", LINE_KEYWORDS), Some("expect"));
        assert_eq!(suggest("hangs", AGENT_ACTIONS), Some("hangs_up"));
        assert_eq!(suggest("zebra", LINE_KEYWORDS), None);
    }

    #[test]
    fn durations() {
        let t = |text: &'static str| Token {
            kind: Tk::Duration,
            text,
            span: Span::default(),
        };
        let f = FileId(0);
        assert_eq!(parse_duration(f, t("500ms")).ok(), Some(500));
        assert_eq!(parse_duration(f, t("5s")).ok(), Some(5_000));
        assert_eq!(parse_duration(f, t("1.5s")).ok(), Some(1_500));
        assert_eq!(parse_duration(f, t("2m")).ok(), Some(120_000));
        assert_eq!(parse_duration(f, t("1h")).ok(), Some(3_600_000));
        assert!(parse_duration(f, t("1.5ms")).is_err());
        assert!(parse_duration(f, t("99999999999999999999999999h")).is_err());
    }
}
