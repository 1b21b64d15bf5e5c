//! SIP INFO with a key (`application/dtmf-relay`, `application/dtmf`): the body's key.

/// The key of a SIP INFO body of type `content_type` (`application/dtmf-relay`:
/// `Signal=5`; `application/dtmf`: `5`). `*` and `#` may also come as 10 and 11. Keys are
/// `0`-`9`, `*` and `#`; A-D and others are not.
pub fn key_of_info(content_type: &str, body: &str) -> Option<char> {
    let ct = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let signal = match ct.as_str() {
        "application/dtmf-relay" => body.lines().find_map(|l| {
            let (k, v) = l.split_once('=')?;
            k.trim().eq_ignore_ascii_case("signal").then(|| v.trim())
        })?,
        "application/dtmf" => body.trim(),
        _ => return None,
    };
    match signal {
        "10" => Some('*'),
        "11" => Some('#'),
        s if s.len() == 1 => {
            let c = s.chars().next()?;
            (c.is_ascii_digit() || c == '*' || c == '#').then_some(c)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_bodies() {
        assert_eq!(
            key_of_info("application/dtmf-relay", "Signal=7\r\nDuration=160\r\n"),
            Some('7')
        );
        assert_eq!(
            key_of_info("Application/DTMF-Relay; x=y", "Signal= #\r\n"),
            Some('#')
        );
        assert_eq!(key_of_info("application/dtmf", "10"), Some('*'));
        assert_eq!(key_of_info("application/dtmf", "x"), None);
        assert_eq!(key_of_info("application/dtmf", "A"), None);
        assert_eq!(key_of_info("text/plain", "5"), None);
    }
}
