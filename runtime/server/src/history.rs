//! The dashboard's charts' figures, sampled in memory since the server started
//! (`GET /dashboard/history`):
//!
//! - calls in progress and calls started per second, every [`CALLS_EVERY`], the last hour
//!   ([`CALLS_KEEP`] points);
//! - per queue, every [`QUEUE_SLOT_MS`] of the server's local day: the most callers seen
//!   waiting in that slot and today's service level at its end; from midnight (points
//!   before the server started are missing), at most [`MAX_QUEUES`] queues.
//!
//! Counts only, no caller data. A restart starts the series again (the call records keep the
//! history; `ivr report` reads it).

use crate::acd_task::AcdSnapshot;
use crate::live_calls::CallsSnapshot;
use ivr_engine::Millis;
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

/// Calls are sampled this often.
pub const CALLS_EVERY: Duration = Duration::from_secs(10);
/// And kept for an hour.
pub const CALLS_KEEP: usize = 360;
/// Queues' slots.
pub const QUEUE_SLOT_MS: Millis = 5 * 60 * 1000;
/// Queues charted at most.
pub const MAX_QUEUES: usize = 64;
const DAY_MS: Millis = 86_400_000;

/// One sample of the calls.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CallPoint {
    /// When (Unix ms).
    pub t: i64,
    /// Calls in progress.
    pub in_progress: u64,
    /// Calls started per second since the sample before.
    pub per_second: f64,
}

/// One slot of a queue.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct QueuePoint {
    /// The slot's start (Unix ms).
    pub t: i64,
    /// The most callers seen waiting in it.
    pub waiting: u32,
    /// Today's service level at its end (or now); none before a call finished waiting.
    pub service_level: Option<f64>,
}

#[derive(Default)]
struct Inner {
    calls: VecDeque<CallPoint>,
    last: Option<(i64, u64)>,
    day: Millis,
    queues: BTreeMap<String, VecDeque<QueuePoint>>,
}

/// The series (one per server).
#[derive(Default)]
pub struct History {
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "History")
    }
}

impl History {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a sample: `utc` is Unix ms (for the page), `local` the server's local ms (for
    /// the day and its slots).
    pub fn sample(
        &self,
        calls: &CallsSnapshot,
        acd: Option<&AcdSnapshot>,
        utc: i64,
        local: Millis,
    ) {
        let mut g = self.lock();
        let per_second = match g.last {
            Some((t, started)) if utc > t => {
                calls.started.saturating_sub(started) as f64 * 1000.0 / (utc - t) as f64
            }
            _ => calls.per_second,
        };
        g.last = Some((utc, calls.started));
        if g.calls.len() >= CALLS_KEEP {
            g.calls.pop_front();
        }
        g.calls.push_back(CallPoint {
            t: utc,
            in_progress: calls.in_progress,
            per_second: (per_second * 100.0).round() / 100.0,
        });
        let day = local.div_euclid(DAY_MS);
        if day != g.day {
            g.day = day;
            g.queues.clear();
        }
        let Some(acd) = acd else {
            return;
        };
        // The slot's start in Unix ms: the local slot start shifted by the local offset.
        let slot_local = local - local.rem_euclid(QUEUE_SLOT_MS);
        let slot_t = utc - (local - slot_local);
        for q in &acd.status.queues {
            if !g.queues.contains_key(&q.name) && g.queues.len() >= MAX_QUEUES {
                continue;
            }
            let level = acd.today.get(&q.name).and_then(|d| d.service_level);
            let series = g.queues.entry(q.name.clone()).or_default();
            match series.back_mut() {
                Some(p) if p.t == slot_t => {
                    p.waiting = p.waiting.max(q.waiting);
                    p.service_level = level;
                }
                _ => {
                    if series.len() >= (DAY_MS / QUEUE_SLOT_MS) as usize {
                        series.pop_front();
                    }
                    series.push_back(QueuePoint {
                        t: slot_t,
                        waiting: q.waiting,
                        service_level: level,
                    });
                }
            }
        }
    }

    /// The series as `GET /dashboard/history` gives them.
    pub fn json(&self) -> serde_json::Value {
        let g = self.lock();
        serde_json::json!({
            "calls": {
                "every_s": CALLS_EVERY.as_secs(),
                "points": g.calls,
            },
            "queues": {
                "slot_s": QUEUE_SLOT_MS / 1000,
                "by_queue": g.queues,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn calls(in_progress: u64, started: u64) -> CallsSnapshot {
        CallsSnapshot {
            in_progress,
            by_channel: BTreeMap::new(),
            by_node: Vec::new(),
            started,
            ended: BTreeMap::new(),
            ended_by_flow: BTreeMap::new(),
            per_second: 0.0,
        }
    }

    #[test]
    fn calls_are_kept_an_hour_with_their_rate() {
        let h = History::default();
        h.sample(&calls(1, 10), None, 1_000_000, 5_000);
        h.sample(&calls(3, 30), None, 1_010_000, 15_000);
        let j = h.json();
        let pts = j["calls"]["points"].as_array().cloned().unwrap_or_default();
        assert_eq!(pts.len(), 2);
        assert_eq!(pts[1]["in_progress"], 3);
        assert_eq!(pts[1]["per_second"], 2.0);
        for i in 0..CALLS_KEEP as i64 + 10 {
            h.sample(&calls(0, 30), None, 2_000_000 + i * 10_000, 25_000 + i);
        }
        let j = h.json();
        assert_eq!(
            j["calls"]["points"].as_array().map(Vec::len),
            Some(CALLS_KEEP)
        );
    }

    fn acd(waiting: u32, level: Option<f64>) -> AcdSnapshot {
        let queue = ivr_acd::QueueStatus {
            name: "general".into(),
            skills: Vec::new(),
            waiting,
            longest_wait_ms: 0,
            offered: 0,
            answered: 0,
            abandoned: 0,
            no_agents: 0,
            overflowed: 0,
            overflow_answered: 0,
            ring_timeout_ms: 0,
            wrap_up_ms: 0,
        };
        let mut today = BTreeMap::new();
        today.insert(
            "general".to_string(),
            crate::queue_day::QueueDay {
                service_level: level,
                ..Default::default()
            },
        );
        AcdSnapshot {
            status: ivr_acd::AcdStatus {
                agents: Vec::new(),
                queues: vec![queue],
            },
            screen_pops: Default::default(),
            today,
        }
    }

    #[test]
    fn queues_keep_the_most_waiting_per_slot_and_restart_each_day() {
        let h = History::default();
        let day = 20_000 * DAY_MS;
        // Two samples in the first slot, one in the next.
        h.sample(&calls(0, 0), Some(&acd(3, None)), 1_000, day + 1_000);
        h.sample(&calls(0, 0), Some(&acd(1, Some(0.5))), 11_000, day + 11_000);
        h.sample(
            &calls(0, 0),
            Some(&acd(2, Some(0.75))),
            301_000,
            day + 301_000,
        );
        let j = h.json();
        let g = j["queues"]["by_queue"]["general"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(g.len(), 2, "{j}");
        assert_eq!(
            (g[0]["waiting"].clone(), g[0]["service_level"].clone()),
            (3.into(), 0.5.into())
        );
        assert_eq!(g[0]["t"], 0);
        assert_eq!(g[1]["t"], 300_000);
        assert_eq!(g[1]["waiting"], 2);
        h.sample(
            &calls(0, 0),
            Some(&acd(0, None)),
            86_401_000,
            day + DAY_MS + 1_000,
        );
        let j = h.json();
        assert_eq!(
            j["queues"]["by_queue"]["general"].as_array().map(Vec::len),
            Some(1)
        );
    }
}
