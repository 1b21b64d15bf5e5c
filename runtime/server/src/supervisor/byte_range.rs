//! The `Range` header of a recording's request (RFC 9110 §14): one range of bytes, checked
//! against the file's length with checked arithmetic. Anything else — several ranges, another
//! unit, numbers that do not parse or overflow, a start past the end — is unsatisfiable (416).

/// What to send of a file of some length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The whole file (no `Range`): 200.
    Whole,
    /// Bytes `start..=end` (within the file): 206 with `Content-Range`.
    Bytes {
        /// The first byte.
        start: u64,
        /// The last byte (inclusive).
        end: u64,
    },
    /// 416 with `Content-Range: bytes */LEN`.
    Unsatisfiable,
}

/// Most characters of a `Range` header looked at (a longer one is unsatisfiable).
pub const MAX_HEADER: usize = 100;

/// The part of a file of `len` bytes that `range` (the header's value, if any) asks for.
pub fn part(range: Option<&str>, len: u64) -> Part {
    let Some(range) = range else {
        return Part::Whole;
    };
    if range.len() > MAX_HEADER {
        return Part::Unsatisfiable;
    }
    let Some(spec) = range.trim().strip_prefix("bytes=") else {
        return Part::Unsatisfiable;
    };
    if spec.contains(',') || len == 0 {
        return Part::Unsatisfiable;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return Part::Unsatisfiable;
    };
    let number = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()))
            .then(|| s.parse::<u64>().ok())
            .flatten()
    };
    let last = len - 1;
    match (a.trim(), b.trim()) {
        // The last N bytes.
        ("", n) => match number(n) {
            Some(n) if n > 0 => Part::Bytes {
                start: len.saturating_sub(n),
                end: last,
            },
            _ => Part::Unsatisfiable,
        },
        // From A to the end.
        (a, "") => match number(a) {
            Some(start) if start <= last => Part::Bytes { start, end: last },
            _ => Part::Unsatisfiable,
        },
        (a, b) => match (number(a), number(b)) {
            (Some(start), Some(end)) if start <= end && start <= last => Part::Bytes {
                start,
                end: end.min(last),
            },
            _ => Part::Unsatisfiable,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(part(None, 100), Part::Whole);
        assert_eq!(
            part(Some("bytes=10-19"), 100),
            Part::Bytes { start: 10, end: 19 }
        );
        assert_eq!(
            part(Some("bytes=90-"), 100),
            Part::Bytes { start: 90, end: 99 }
        );
        assert_eq!(
            part(Some("bytes=-5"), 100),
            Part::Bytes { start: 95, end: 99 }
        );
        assert_eq!(
            part(Some("bytes=-500"), 100),
            Part::Bytes { start: 0, end: 99 }
        );
        assert_eq!(
            part(Some("bytes=95-500"), 100),
            Part::Bytes { start: 95, end: 99 }
        );
        assert_eq!(part(Some("bytes=0-0"), 1), Part::Bytes { start: 0, end: 0 });
        for bad in [
            "bytes=100-",
            "bytes=9-3",
            "bytes=-0",
            "bytes=0-1,5-6",
            "items=0-1",
            "bytes=abc-",
            "bytes=+1-2",
            "bytes=18446744073709551616-",
            "bytes=0-18446744073709551616",
            "bytes=-18446744073709551616",
            "bytes=",
            "bytes=-",
            "bytes=5",
        ] {
            assert_eq!(part(Some(bad), 100), Part::Unsatisfiable, "{bad}");
        }
        assert_eq!(part(Some("bytes=0-"), 0), Part::Unsatisfiable);
        let long = format!("bytes=0-{}", "9".repeat(200));
        assert_eq!(part(Some(&long), 100), Part::Unsatisfiable);
    }
}
