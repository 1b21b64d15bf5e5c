//! Today's figures of each queue, for the dashboard: calls queued, answered, answered within
//! [`SERVICE_LEVEL_MS`], abandoned (the caller hung up) and left (`max_wait`, or no agents any
//! more), and the service level: the share of the calls that finished waiting today that an
//! agent answered within 20 s. Kept by the ACD task ([`super::agents`]) as it records queue
//! events; the day is the server's local day and the figures start again at midnight.

use ivr_engine::Millis;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The service level's answer time.
pub const SERVICE_LEVEL_MS: Millis = 20_000;

const DAY_MS: Millis = 86_400_000;

/// One queue's figures today.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QueueDay {
    /// Calls taken into the queue.
    pub queued: u64,
    /// Calls an agent answered.
    pub answered: u64,
    /// Of those, answered within [`SERVICE_LEVEL_MS`] of joining the queue.
    pub answered_in_time: u64,
    /// Calls whose caller hung up while waiting.
    pub abandoned: u64,
    /// Calls that left the queue without an answer otherwise (`max_wait`, no agents).
    pub left: u64,
    /// `answered_in_time` ÷ (`answered` + `abandoned` + `left`); none before any call
    /// finished waiting today.
    pub service_level: Option<f64>,
}

/// How a call finished waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// An agent answered after this wait, ms.
    Answered(Millis),
    /// The caller hung up.
    Abandoned,
    /// `max_wait` or no agents.
    Left,
}

/// Every queue's figures of the current day.
#[derive(Debug, Default)]
pub struct Today {
    day: Millis,
    queues: BTreeMap<String, QueueDay>,
}

impl Today {
    fn at(&mut self, now: Millis) -> &mut BTreeMap<String, QueueDay> {
        let day = now.div_euclid(DAY_MS);
        if day != self.day {
            self.day = day;
            self.queues.clear();
        }
        &mut self.queues
    }

    fn queue(&mut self, queue: &str, now: Millis) -> &mut QueueDay {
        self.at(now).entry(queue.to_string()).or_default()
    }

    /// A call joined `queue` at `now` (local ms).
    pub fn queued(&mut self, queue: &str, now: Millis) {
        self.queue(queue, now).queued += 1;
    }

    /// A call finished waiting in `queue`.
    pub fn finished(&mut self, queue: &str, how: Finish, now: Millis) {
        let q = self.queue(queue, now);
        match how {
            Finish::Answered(wait) => {
                q.answered += 1;
                if wait <= SERVICE_LEVEL_MS {
                    q.answered_in_time += 1;
                }
            }
            Finish::Abandoned => q.abandoned += 1,
            Finish::Left => q.left += 1,
        }
    }

    /// Today's figures by queue name (queues without calls today are left out).
    pub fn snapshot(&mut self, now: Millis) -> BTreeMap<String, QueueDay> {
        self.at(now)
            .iter()
            .map(|(name, q)| {
                let done = q.answered + q.abandoned + q.left;
                let mut q = q.clone();
                q.service_level = (done > 0).then(|| q.answered_in_time as f64 / done as f64);
                (name.clone(), q)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_level_counts_answers_within_20_s_and_restarts_each_day() {
        let mut t = Today::default();
        let day = 20_000 * DAY_MS;
        t.queued("general", day + 1);
        t.queued("general", day + 2);
        t.queued("general", day + 3);
        t.queued("general", day + 4);
        t.finished("general", Finish::Answered(5_000), day + 10);
        t.finished("general", Finish::Answered(25_000), day + 11);
        t.finished("general", Finish::Abandoned, day + 12);
        t.finished("general", Finish::Left, day + 13);
        let s = t.snapshot(day + 14);
        let g = &s["general"];
        assert_eq!((g.queued, g.answered, g.answered_in_time), (4, 2, 1));
        assert_eq!((g.abandoned, g.left), (1, 1));
        assert_eq!(g.service_level, Some(0.25));
        assert!(t.snapshot(day + DAY_MS).is_empty());
    }
}
