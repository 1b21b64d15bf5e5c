//! The open-file limit of `ivr serve`. Every call holds file descriptors (its RTP socket, a
//! transfer leg's, a TCP connection), and so does every accepted SIP TCP connection; a
//! process that runs out refuses calls in odd ways (no RTP port, no database connection). At
//! start-up the soft limit (`RLIMIT_NOFILE`) is raised to the hard one, and the server says
//! what it has and whether that is enough for `max_calls`.

/// File descriptors that are not per call: listening sockets, the database, logs, the
/// runtime's and the pacer's, prompt files being reloaded.
pub const BASE_FILES: u64 = 256;

/// File descriptors a call may hold: its RTP socket, a transfer leg's RTP socket, and the TCP
/// connection we open for a leg to a `transport=tcp` address (or a browser call's relay).
/// Accepted TCP connections are counted apart ([`needed`]).
pub const FILES_PER_CALL: u64 = 3;

/// The file descriptors `max_calls` calls and `tcp_connections` accepted SIP TCP connections
/// need.
pub fn needed(max_calls: usize, tcp_connections: usize) -> u64 {
    let calls = u64::try_from(max_calls).unwrap_or(u64::MAX);
    let tcp = u64::try_from(tcp_connections).unwrap_or(u64::MAX);
    BASE_FILES
        .saturating_add(calls.saturating_mul(FILES_PER_CALL))
        .saturating_add(tcp)
}

/// The open-file limit before and after [`raise`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenFiles {
    /// The soft limit found.
    pub was: u64,
    /// The soft limit now.
    pub now: u64,
    /// The hard limit (the most the soft one can be raised to without privileges).
    pub hard: u64,
    /// Why it could not be read or raised, if so.
    pub error: Option<String>,
}

/// Raises the soft open-file limit to the hard one (to `needed` at least, when the hard limit
/// is unlimited).
#[cfg(unix)]
pub fn raise(needed: u64) -> OpenFiles {
    use nix::sys::resource::{RLIM_INFINITY, Resource, getrlimit, setrlimit};
    let (soft, hard) = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok(l) => l,
        Err(e) => {
            return OpenFiles {
                was: 0,
                now: 0,
                hard: 0,
                error: Some(e.to_string()),
            };
        }
    };
    let (soft, hard, infinity) = (wide(soft), wide(hard), wide(RLIM_INFINITY));
    // An unlimited hard limit cannot be the soft one for files (the kernel's nr_open is).
    let target = if hard == infinity {
        needed.max(soft)
    } else {
        hard
    };
    let mut out = OpenFiles {
        was: soft,
        now: soft,
        hard,
        error: None,
    };
    if soft == infinity || soft >= target {
        return out;
    }
    // Some systems refuse the whole hard limit (macOS's OPEN_MAX): then what is needed.
    for t in [target, needed.min(target)] {
        if t <= soft {
            break;
        }
        match setrlimit(Resource::RLIMIT_NOFILE, narrow(t), narrow(hard)) {
            Ok(()) => {
                out.now = t;
                out.error = None;
                break;
            }
            Err(e) => out.error = Some(e.to_string()),
        }
    }
    out
}

/// A limit as a u64 (`rlim_t` is u64 on Linux and macOS, i64 on some BSDs).
#[cfg(unix)]
#[allow(clippy::useless_conversion)]
fn wide(v: nix::libc::rlim_t) -> u64 {
    u64::try_from(v).unwrap_or(u64::MAX)
}

/// A u64 as a limit (the largest when it does not fit).
#[cfg(unix)]
#[allow(clippy::useless_conversion)]
fn narrow(v: u64) -> nix::libc::rlim_t {
    nix::libc::rlim_t::try_from(v).unwrap_or(nix::sys::resource::RLIM_INFINITY)
}

/// Elsewhere there is nothing to raise.
#[cfg(not(unix))]
pub fn raise(_needed: u64) -> OpenFiles {
    OpenFiles {
        was: u64::MAX,
        now: u64::MAX,
        hard: u64::MAX,
        error: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_calls_need() {
        assert_eq!(needed(0, 0), BASE_FILES);
        assert_eq!(needed(100, 256), BASE_FILES + 300 + 256);
        assert_eq!(needed(usize::MAX, usize::MAX), u64::MAX);
    }

    #[cfg(unix)]
    #[test]
    fn the_soft_limit_goes_up_to_the_hard_one() {
        let l = raise(1_000);
        assert!(l.error.is_none(), "{l:?}");
        assert!(l.now >= l.was);
        assert!(l.now == l.hard || l.now >= 1_000, "{l:?}");
    }
}
