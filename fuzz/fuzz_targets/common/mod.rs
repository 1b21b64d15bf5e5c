//! Shared by the network targets: the panic hook that lets `ivr_sip::message::parse` catch
//! rsip's panics (as it does in production) while every other panic stays a finding, and the
//! checks on the bytes we put on the wire.

#![allow(dead_code)]

use ivr_sip::message::{self, ParseError};
use rsip::SipMessage;
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

thread_local! {
    /// Inside `message::parse`, whose `catch_unwind` turns rsip's panics into `Err`.
    static IN_PARSE: Cell<bool> = const { Cell::new(false) };
}

/// rsip panics caught by `message::parse` so far (not findings: the function exists for them).
pub static CAUGHT: AtomicU64 = AtomicU64::new(0);

/// Replaces libFuzzer's hook (print, then abort) with one that stays quiet for a panic inside
/// `message::parse` (it is caught there and becomes `ParseError::Unparseable`) and aborts for
/// every other panic. Call it in `fuzz_target!(init: ...)`.
pub fn install_hook() {
    let abort = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if IN_PARSE.with(Cell::get) {
            CAUGHT.fetch_add(1, Ordering::Relaxed);
            return;
        }
        abort(info);
    }));
}

/// `ivr_sip::message::parse`, with rsip's panics caught there not counted as findings.
pub fn parse(data: &[u8]) -> Result<SipMessage, ParseError> {
    IN_PARSE.with(|f| f.set(true));
    let r = message::parse(data);
    IN_PARSE.with(|f| f.set(false));
    r
}

/// rsip's parse of bytes we built, without `message::parse`'s size limit (what we send may be
/// longer than what we accept); a panic of rsip is caught and becomes `Err` here too.
pub fn parse_built(data: &[u8]) -> Result<SipMessage, String> {
    IN_PARSE.with(|f| f.set(true));
    let r = std::panic::catch_unwind(|| SipMessage::try_from(data));
    IN_PARSE.with(|f| f.set(false));
    match r {
        Ok(Ok(m)) => Ok(m),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("rsip panicked".into()),
    }
}

/// A message we built and send: rsip reads it back, and its head has no CR or LF other than
/// the CRLF that end its lines (RFC 3261 7.3.1: no bare line breaks inside a header value, which
/// a lenient reader would take for the start of another header). `what` names it in the panic.
pub fn check_wire(bytes: &[u8], what: &str) -> SipMessage {
    let head_end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| {
            panic!(
                "{what}: no end of head: {:?}",
                String::from_utf8_lossy(bytes)
            )
        });
    let head = &bytes[..head_end + 2];
    for (i, &b) in head.iter().enumerate() {
        let ok = match b {
            b'\r' => head.get(i + 1) == Some(&b'\n'),
            b'\n' => i > 0 && head[i - 1] == b'\r',
            _ => true,
        };
        assert!(
            ok,
            "{what}: a bare CR or LF at byte {i} of the head: {:?}",
            String::from_utf8_lossy(bytes)
        );
    }
    parse_built(bytes).unwrap_or_else(|e| {
        panic!(
            "{what}: what we send does not read back ({e}): {:?}",
            String::from_utf8_lossy(bytes)
        )
    })
}
