//! The one sans-IO style that every state machine of `ivr` follows: the call engine
//! (`ivr_engine::Call`), the ACD (`ivr_acd::Acd`), SIP transactions, the registrar and the
//! user-agent core (`ivr_sip`).
//!
//! A machine reads no clock, opens no socket and spawns no task. Its driver (a tokio task of
//! `ivr serve`, the simulator's virtual clock, or a test) does, in a loop:
//!
//! 1. hand in what happened with [`Machine::handle_input`], stamped with `now`;
//! 2. when the deadline of [`Machine::poll_timeout`] has come, call [`Machine::handle_timeout`];
//! 3. take out everything the machine wants done with [`Machine::poll_output`] until it says
//!    `None`, and do it (send bytes, play audio, run a query, ring an agent).
//!
//! Time is one type everywhere: [`Millis`], milliseconds of local wall-clock time since
//! 1970-01-01 00:00 (no time zone), because flows ask for the time of day (calendars) and the
//! records keep it. Drivers read it from a [`Clock`], which is monotonic: it never goes back
//! when the system clock is stepped, so timers of transactions and calls stay in order.
//!
//! The model is str0m's `handle_input(input, now)` / `poll_output()` / `poll_timeout()`.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::time::Instant;

/// Milliseconds of local wall-clock time since 1970-01-01 00:00 (no time zone): the "now"
/// that drivers hand to every machine with every input.
pub type Millis = i64;

/// A state machine in the sans-IO style of `ivr` (see the crate's documentation).
pub trait Machine {
    /// What the machine is told: an event, a message, an operation.
    type Input;
    /// What the machine asks its driver to do.
    type Output;

    /// Hands in one input that happened at `now`.
    fn handle_input(&mut self, input: Self::Input, now: Millis);

    /// When [`Machine::handle_timeout`] next has work, if ever.
    fn poll_timeout(&self) -> Option<Millis>;

    /// Lets the machine act on the time `now` (timers that are due fire).
    fn handle_timeout(&mut self, now: Millis);

    /// Takes out the next thing to do, oldest first; `None` when there is nothing left.
    fn poll_output(&mut self) -> Option<Self::Output>;
}

/// The clock drivers read: local wall-clock milliseconds that only go forward.
///
/// It takes the system clock and the machine's UTC offset once, when made, and from then on
/// adds the monotonic time elapsed. Make one per process (or per call) and copy it.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    base: Instant,
    base_ms: Millis,
}

impl Clock {
    /// A clock that starts at the system's local time now.
    pub fn new() -> Clock {
        let now = chrono::Local::now();
        let offset = i64::from(now.offset().local_minus_utc()) * 1000;
        Clock {
            base: Instant::now(),
            base_ms: now.timestamp_millis().saturating_add(offset),
        }
    }

    /// A clock whose [`Clock::now`] is `at` at this instant (tests, replays).
    pub fn starting_at(at: Millis) -> Clock {
        Clock {
            base: Instant::now(),
            base_ms: at,
        }
    }

    /// Local wall-clock milliseconds now.
    pub fn now(&self) -> Millis {
        self.at(Instant::now())
    }

    /// The time of `instant` on this clock (an instant before the clock was made counts as
    /// the clock's start).
    pub fn at(&self, instant: Instant) -> Millis {
        let elapsed = instant.saturating_duration_since(self.base).as_millis();
        self.base_ms
            .saturating_add(i64::try_from(elapsed).unwrap_or(i64::MAX))
    }

    /// The instant at which this clock reads `at` (for drivers that sleep until a deadline;
    /// a time before the clock was made is its start).
    pub fn instant(&self, at: Millis) -> Instant {
        let ms = u64::try_from(at.saturating_sub(self.base_ms)).unwrap_or(0);
        self.base + std::time::Duration::from_millis(ms)
    }
}

impl Default for Clock {
    fn default() -> Clock {
        Clock::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_clock_goes_forward_with_monotonic_time_and_maps_back() {
        let c = Clock::starting_at(1_000);
        let later = c.base + Duration::from_millis(250);
        assert_eq!(c.at(later), 1_250);
        assert_eq!(c.instant(1_250), later);
        assert_eq!(c.at(c.base), 1_000);
        assert_eq!(
            c.instant(500),
            c.base,
            "a time before the start is the start"
        );
        assert!(c.now() >= 1_000);
    }

    #[test]
    fn a_new_clock_reads_local_wall_time() {
        let c = Clock::new();
        let utc = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        // Within a day of UTC (offsets are at most ±14 h).
        assert!((c.now() - utc).abs() <= 14 * 3_600_000 + 1_000);
    }
}
