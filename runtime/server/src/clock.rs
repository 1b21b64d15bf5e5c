//! The engine's "now" in `ivr serve`: local wall-clock milliseconds, read by call tasks, the
//! ACD task and the dashboard.

use ivr_engine::Millis;

/// Local wall-clock milliseconds (the engine's "now"): the system clock plus the machine's
/// UTC offset, taken when the clock is made (a call's, when it starts).
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    offset_ms: i64,
}

impl Clock {
    /// A clock with the machine's UTC offset now.
    pub fn new() -> Clock {
        let offset = chrono::Local::now().offset().local_minus_utc();
        Clock {
            offset_ms: i64::from(offset) * 1000,
        }
    }

    /// Local wall-clock milliseconds now.
    pub fn now(&self) -> Millis {
        let utc = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        utc + self.offset_ms
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

/// The engine's "now" (local wall-clock milliseconds) outside a call's task: for records of
/// calls that never started, the ACD task's turns, the dashboard.
pub fn local_now() -> Millis {
    Clock::new().now()
}
