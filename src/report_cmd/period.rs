//! The period `ivr report` covers: `--since`, `--until` and the period argument
//! (`today`, `yesterday`, `7d`, `30d`, a day, a month), in the server's local time (the
//! time call records keep).

use chrono::{DateTime, Days, Months, NaiveDate, NaiveDateTime, NaiveTime};
use thiserror::Error;

/// The longest `Nd` period.
pub const MAX_DAYS: u64 = 3660;

/// What the period words and dates accept, for messages.
const FORMS: &str = "write YYYY-MM-DD (e.g. 2026-11-01), YYYY-MM-DDTHH:MM, today, yesterday, \
                     7d or 30d (the last N days, today included)";

/// A period that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PeriodError {
    /// Not a time, a day or a period word.
    #[error("`{text}` is not a time for {what}: {FORMS}")]
    NotATime {
        /// What was written.
        text: String,
        /// `--since`, `--until` or `the period`.
        what: &'static str,
    },
    /// `Nd` with N out of range.
    #[error("`{0}`: a period of days is 1d to {MAX_DAYS}d")]
    Days(String),
    /// `--until Nd`: a number of days has no end.
    #[error("`--until {0}`: a number of days is a period start; write it as `--since {0}`")]
    UntilDays(String),
    /// A period argument beside `--since` or `--until`.
    #[error("give a period (`{0}`) or --since/--until, not both")]
    Both(String),
    /// The period ends before it starts.
    #[error("the period ends ({until}) before it starts ({since})")]
    Backwards {
        /// Its start.
        since: NaiveDateTime,
        /// Its end.
        until: NaiveDateTime,
    },
}

/// A period `[since, until)`, either end open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Period {
    /// Calls that started at or after this time.
    pub since: Option<NaiveDateTime>,
    /// Calls that started before this time.
    pub until: Option<NaiveDateTime>,
}

fn midnight(d: NaiveDate) -> NaiveDateTime {
    d.and_time(NaiveTime::MIN)
}

/// `Nd`: N days.
fn days(text: &str) -> Option<Result<u64, PeriodError>> {
    let n = text.strip_suffix('d')?;
    if n.is_empty() || !n.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    Some(match n.parse::<u64>() {
        Ok(n) if (1..=MAX_DAYS).contains(&n) => Ok(n),
        _ => Err(PeriodError::Days(text.to_string())),
    })
}

/// A time of day written out: `YYYY-MM-DDTHH:MM[:SS]` (or with a space), or RFC 3339 with an
/// offset (taken to the local time).
fn instant(text: &str) -> Option<NaiveDateTime> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&chrono::Local).naive_local());
    }
    [
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(text, f).ok())
}

fn day(text: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()
}

/// `YYYY-MM`: the first day of that month.
fn month(text: &str) -> Option<NaiveDate> {
    let (y, m) = text.split_once('-')?;
    if y.len() != 4 || m.len() != 2 {
        return None;
    }
    NaiveDate::from_ymd_opt(y.parse().ok()?, m.parse().ok()?, 1)
}

/// A period argument: `today`, `yesterday`, `Nd` (the last N days, today included),
/// `YYYY-MM-DD` (that day), `YYYY-MM` (that month).
pub fn period(text: &str, now: NaiveDateTime) -> Result<Period, PeriodError> {
    let t = text.trim().to_ascii_lowercase();
    let today = now.date();
    let tomorrow = today + Days::new(1);
    let (since, until) = match t.as_str() {
        "today" => (today, tomorrow),
        "yesterday" => (today - Days::new(1), today),
        _ => {
            if let Some(n) = days(&t) {
                (today - Days::new(n? - 1), tomorrow)
            } else if let Some(d) = day(&t) {
                (d, d + Days::new(1))
            } else if let Some(m) = month(&t) {
                (m, m + Months::new(1))
            } else {
                return Err(PeriodError::NotATime {
                    text: text.to_string(),
                    what: "the period",
                });
            }
        }
    };
    Ok(Period {
        since: Some(midnight(since)),
        until: Some(midnight(until)),
    })
}

/// `--since`: a day (from its start), a time, `today`, `yesterday` (from that day's start),
/// `Nd` (from the start of the day N-1 days ago: the last N days, today included).
pub fn since(text: &str, now: NaiveDateTime) -> Result<NaiveDateTime, PeriodError> {
    let t = text.trim().to_ascii_lowercase();
    match t.as_str() {
        "today" | "yesterday" => return Ok(period(&t, now)?.since.unwrap_or(now)),
        _ => {}
    }
    if let Some(n) = days(&t) {
        return Ok(midnight(now.date() - Days::new(n? - 1)));
    }
    if let Some(d) = day(&t) {
        return Ok(midnight(d));
    }
    instant(text.trim()).ok_or_else(|| PeriodError::NotATime {
        text: text.to_string(),
        what: "--since",
    })
}

/// `--until` (exclusive): a day (up to its end: the day is included), a time (up to it),
/// `today` (up to its end), `yesterday` (up to today's start).
pub fn until(text: &str, now: NaiveDateTime) -> Result<NaiveDateTime, PeriodError> {
    let t = text.trim().to_ascii_lowercase();
    match t.as_str() {
        "today" | "yesterday" => return Ok(period(&t, now)?.until.unwrap_or(now)),
        _ => {}
    }
    if days(&t).is_some() {
        return Err(PeriodError::UntilDays(text.to_string()));
    }
    if let Some(d) = day(&t) {
        return Ok(midnight(d + Days::new(1)));
    }
    instant(text.trim()).ok_or_else(|| PeriodError::NotATime {
        text: text.to_string(),
        what: "--until",
    })
}

/// The period of the command line: a period argument, or `--since` and `--until`.
pub fn resolve(
    word: Option<&str>,
    since_text: Option<&str>,
    until_text: Option<&str>,
    now: NaiveDateTime,
) -> Result<Period, PeriodError> {
    let p = match word {
        Some(w) if since_text.is_some() || until_text.is_some() => {
            return Err(PeriodError::Both(w.to_string()));
        }
        Some(w) => period(w, now)?,
        None => Period {
            since: since_text.map(|s| since(s, now)).transpose()?,
            until: until_text.map(|u| until(u, now)).transpose()?,
        },
    };
    if let (Some(since), Some(until)) = (p.since, p.until)
        && until < since
    {
        return Err(PeriodError::Backwards { since, until });
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").expect("time")
    }

    const NOW: &str = "2026-11-23 15:30";

    #[test]
    fn period_words_cover_whole_days_up_to_today() {
        let now = at(NOW);
        let p = |w| period(w, now).expect(w);
        assert_eq!(p("today").since, Some(at("2026-11-23 00:00")));
        assert_eq!(p("today").until, Some(at("2026-11-24 00:00")));
        assert_eq!(p("yesterday").since, Some(at("2026-11-22 00:00")));
        assert_eq!(p("yesterday").until, Some(at("2026-11-23 00:00")));
        assert_eq!(p("7d").since, Some(at("2026-11-17 00:00")));
        assert_eq!(p("7d").until, Some(at("2026-11-24 00:00")));
        assert_eq!(p("30d").since, Some(at("2026-10-25 00:00")));
        assert_eq!(p("1d"), p("today"));
        assert_eq!(p("2026-11-01").until, Some(at("2026-11-02 00:00")));
        assert_eq!(p("2026-02").since, Some(at("2026-02-01 00:00")));
        assert_eq!(p("2026-02").until, Some(at("2026-03-01 00:00")));
        assert_eq!(p("Yesterday"), p("yesterday"));
        assert!(matches!(period("0d", now), Err(PeriodError::Days(_))));
        assert!(matches!(
            period("lastweek", now),
            Err(PeriodError::NotATime { .. })
        ));
    }

    #[test]
    fn since_and_until_take_days_times_and_words() {
        let now = at(NOW);
        assert_eq!(since("2026-11-01", now), Ok(at("2026-11-01 00:00")));
        assert_eq!(since("2026-11-01T08:15", now), Ok(at("2026-11-01 08:15")));
        assert_eq!(since("yesterday", now), Ok(at("2026-11-22 00:00")));
        assert_eq!(since("7d", now), Ok(at("2026-11-17 00:00")));
        // A day given to --until is included whole.
        assert_eq!(until("2026-11-01", now), Ok(at("2026-11-02 00:00")));
        assert_eq!(until("2026-11-01 12:00", now), Ok(at("2026-11-01 12:00")));
        assert_eq!(until("yesterday", now), Ok(at("2026-11-23 00:00")));
        assert!(matches!(until("7d", now), Err(PeriodError::UntilDays(_))));
        let e = since("last week", now).expect_err("not a time");
        assert!(e.to_string().contains("YYYY-MM-DD"), "{e}");
    }

    #[test]
    fn a_period_is_a_word_or_since_and_until() {
        let now = at(NOW);
        assert!(matches!(
            resolve(Some("today"), Some("2026-11-01"), None, now),
            Err(PeriodError::Both(_))
        ));
        assert!(matches!(
            resolve(None, Some("2026-11-02"), Some("2026-11-01T00:00"), now),
            Err(PeriodError::Backwards { .. })
        ));
        let p = resolve(None, Some("2026-11-01"), Some("2026-11-30"), now).expect("period");
        assert_eq!(p.since, Some(at("2026-11-01 00:00")));
        assert_eq!(p.until, Some(at("2026-12-01 00:00")));
        assert_eq!(resolve(None, None, None, now), Ok(Period::default()));
    }
}
