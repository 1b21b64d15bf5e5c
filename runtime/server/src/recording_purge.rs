//! The hourly purge of whole-call recordings: files and rows older than `[recording] keep`
//! are deleted (the live deployment's setting at each round), the first round at start-up.

use crate::clock::local_now;
use crate::live::Live;
use ivr_data::call_recordings;
use ivr_data::connect::Pool;
use ivr_data::records::timestamp;
use std::sync::Arc;
use std::time::Duration;

/// How often the purge runs.
pub const EVERY: Duration = Duration::from_secs(3600);

/// Runs the purge now and every [`EVERY`] after, for as long as the server runs.
pub fn start(live: Arc<Live>, pool: Pool) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let days = live.current().config.recording.keep_days;
            let before = timestamp(local_now() - i64::from(days) * 86_400_000);
            match call_recordings::purge(&pool, before).await {
                Ok(p) if p.rows > 0 || p.failed > 0 => tracing::info!(
                    rows = p.rows,
                    files = p.files,
                    missing = p.missing,
                    failed = p.failed,
                    keep_days = days,
                    "old call recordings deleted"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "call recordings not purged"),
            }
        }
    });
}
