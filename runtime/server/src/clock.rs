//! The engine's "now" in `ivr serve`: local wall-clock milliseconds that only go forward
//! ([`ivr_sansio::Clock`]), read by call tasks, the ACD task and the dashboard.

use ivr_engine::Millis;
pub use ivr_sansio::Clock;

/// The engine's "now" (local wall-clock milliseconds) outside a call's task: for records of
/// calls that never started, the ACD task's turns, the dashboard.
pub fn local_now() -> Millis {
    Clock::new().now()
}
