//! Queues (their settings, their calls in order, their counters) and the calls in them;
//! callers' positions, sent at enqueue and then coalesced.

use super::Timer;
use super::{Acd, AcdOut, CallKey, POSITION_INTERVAL_MS};
use ivr_engine::Millis;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

/// A call's rank: transferred in by an agent first, then higher priority.
pub(super) type Rank = (bool, i64);

/// Where a call stands in every ordered index: higher rank first, then earlier arrival.
pub(super) type OrderKey = (Reverse<Rank>, u64, CallKey);

/// A queue of the configuration (`[queues.NAME]`).
#[derive(Debug)]
pub(super) struct Queue {
    /// Its name.
    pub(super) name: String,
    /// Skills every agent of the queue needs, as written.
    pub(super) skill_names: Vec<String>,
    /// The same, interned.
    pub(super) mask: super::SkillSet,
    /// How long an offer rings.
    pub(super) ring_timeout: Millis,
    /// How long an agent wraps up after a call of this queue.
    pub(super) wrap_up: Millis,
    /// `strategy = "best_level"`: the highest level first, then longest idle.
    pub(super) best_level: bool,
    /// False once the queue left the configuration (kept while calls of it remain).
    pub(super) configured: bool,
    /// Every queued call (waiting or ringing), in order.
    pub(super) order: BTreeSet<OrderKey>,
    /// How many queued calls have each priority (positions at enqueue without a walk).
    pub(super) per_priority: BTreeMap<Reverse<Rank>, u32>,
    /// Arrival number to arrival time of queued calls (the longest wait).
    pub(super) arrivals: BTreeMap<u64, Millis>,
    /// Calls that entered the queue (including those answered `NoAgents` at once).
    pub(super) offered: u64,
    /// Calls an agent answered.
    pub(super) answered: u64,
    /// Calls that left before an agent answered (hang-up or `max_wait`).
    pub(super) abandoned: u64,
    /// Calls sent down their `no_agents` path.
    pub(super) no_agents: u64,
    /// Calls of this queue that overflowed (were also offered to another queue's agents).
    pub(super) overflowed: u64,
    /// Calls of other queues that this queue's agents answered through an overflow.
    pub(super) overflow_answered: u64,
    /// When positions are next walked, if some may have changed.
    pub(super) positions_due: Option<Millis>,
    /// When positions were last walked.
    pub(super) last_walk: Option<Millis>,
}

impl Queue {
    /// An empty queue.
    pub(super) fn new(name: &str) -> Queue {
        Queue {
            name: name.to_string(),
            skill_names: Vec::new(),
            mask: Default::default(),
            ring_timeout: 0,
            wrap_up: 0,
            best_level: false,
            configured: true,
            order: BTreeSet::new(),
            per_priority: BTreeMap::new(),
            arrivals: BTreeMap::new(),
            offered: 0,
            answered: 0,
            abandoned: 0,
            no_agents: 0,
            overflowed: 0,
            overflow_answered: 0,
            positions_due: None,
            last_walk: None,
        }
    }

    /// Adds a call arriving now (the last of its priority); returns its position.
    pub(super) fn insert(&mut self, key: OrderKey, at: Millis) -> u32 {
        let ahead: u32 = self.per_priority.range(..=key.0).map(|(_, n)| *n).sum();
        self.order.insert(key);
        *self.per_priority.entry(key.0).or_default() += 1;
        self.arrivals.insert(key.1, at);
        ahead + 1
    }

    /// Takes a call out.
    pub(super) fn remove(&mut self, key: OrderKey) {
        if !self.order.remove(&key) {
            return;
        }
        if let Some(n) = self.per_priority.get_mut(&key.0) {
            *n -= 1;
            if *n == 0 {
                self.per_priority.remove(&key.0);
            }
        }
        self.arrivals.remove(&key.1);
    }

    /// Whether calls of a lower rank than `priority` are queued.
    pub(super) fn any_behind(&self, priority: Reverse<Rank>) -> bool {
        self.per_priority
            .range((Bound::Excluded(priority), Bound::Unbounded))
            .next()
            .is_some()
    }
}

/// Where a call is in its life in the ACD.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CallState {
    /// Waiting for an agent.
    Waiting,
    /// Waiting, but every qualifying agent was tried: offered again from `until`.
    Resting {
        /// When the pause ends.
        until: Millis,
    },
    /// Offered to `agent`, whose phone rings until `until`.
    Ringing {
        /// The agent rung.
        agent: usize,
        /// The ring timeout.
        until: Millis,
    },
    /// Answered by `agent`; kept until the conversation is over.
    Connected {
        /// The agent talking with the caller.
        agent: usize,
    },
}

/// A call in the ACD.
#[derive(Debug)]
pub(super) struct QueuedCall {
    /// Its queue.
    pub(super) queue: usize,
    /// The transfer node's own skills, as written (masks are rebuilt from them on reload).
    pub(super) skill_names: Vec<String>,
    /// Queue skills and node skills, interned.
    pub(super) mask: super::SkillSet,
    /// Its requirement class.
    pub(super) class: usize,
    /// Its priority (higher first).
    pub(super) priority: i64,
    /// Transferred in by an agent (before any priority).
    pub(super) transferred: bool,
    /// The least agent level asked for (0: any).
    pub(super) level: u8,
    /// Other classes it may be offered through (level fallback, overflows).
    pub(super) routes: Vec<super::route::Route>,
    /// Whether an overflow of it was triggered.
    pub(super) overflowed: bool,
    /// When its next `overflow ... after` is due.
    pub(super) overflow_at: Option<Millis>,
    /// When it entered its queue.
    pub(super) queued_at: Millis,
    /// The queue through which it was last offered (its own or an overflow's).
    pub(super) via: usize,
    /// Its arrival number (first come first served within a priority).
    pub(super) seq: u64,
    /// Where it is.
    pub(super) state: CallState,
    /// Agents that let it ring out, were busy or failed, since the set was last cleared.
    pub(super) tried: Vec<usize>,
    /// A kept callback: the caller hung up and is called back once an agent takes it; it
    /// stays even when nobody who could take it is logged in for a while.
    pub(super) kept: bool,
    /// The position last sent.
    pub(super) position: u32,
    /// When it was sent.
    pub(super) position_at: Millis,
}

impl QueuedCall {
    /// Its key in the ordered indexes.
    pub(super) fn order_key(&self, key: CallKey) -> OrderKey {
        (Reverse((self.transferred, self.priority)), self.seq, key)
    }

    /// The agent ringing for it or talking with it.
    pub(super) fn agent(&self) -> Option<usize> {
        match self.state {
            CallState::Ringing { agent, .. } | CallState::Connected { agent } => Some(agent),
            CallState::Waiting | CallState::Resting { .. } => None,
        }
    }
}

impl Acd {
    /// Notes that positions in queue `q` may have changed: they are walked at the next
    /// opportunity, at most once per [`POSITION_INTERVAL_MS`] per queue.
    pub(super) fn positions_changed(&mut self, q: usize, now: Millis) {
        let queue = &mut self.queues[q];
        if queue.positions_due.is_some() || queue.order.is_empty() {
            return;
        }
        let due = queue
            .last_walk
            .map_or(now, |t| now.max(t.saturating_add(POSITION_INTERVAL_MS)));
        queue.positions_due = Some(due);
        self.timers.insert((due, Timer::Positions(q)));
    }

    /// Walks queue `q` in order and sends the positions that changed, except to calls told
    /// less than [`POSITION_INTERVAL_MS`] ago: they are told at a later walk, which comes
    /// when that has passed but never sooner than [`POSITION_INTERVAL_MS`] after this one (a
    /// queue is walked at most once per interval, however callers arrive).
    pub(super) fn send_positions(&mut self, q: usize, now: Millis, out: &mut Vec<AcdOut>) {
        if let Some(due) = self.queues[q].positions_due.take() {
            self.timers.remove(&(due, Timer::Positions(q)));
        }
        let mut again: Option<Millis> = None;
        for (rank, &(_, _, key)) in self.queues[q].order.iter().enumerate() {
            let Some(call) = self.calls.get_mut(&key) else {
                continue;
            };
            let position = u32::try_from(rank + 1).unwrap_or(u32::MAX);
            if call.position == position {
                continue;
            }
            let next = call.position_at.saturating_add(POSITION_INTERVAL_MS);
            if next <= now {
                call.position = position;
                call.position_at = now;
                out.push(AcdOut::Position {
                    call: key,
                    position,
                });
            } else {
                again = Some(again.map_or(next, |a| a.min(next)));
            }
        }
        let queue = &mut self.queues[q];
        queue.last_walk = Some(now);
        if let Some(due) = again {
            let due = due.max(now.saturating_add(POSITION_INTERVAL_MS));
            queue.positions_due = Some(due);
            self.timers.insert((due, Timer::Positions(q)));
        }
    }
}
