//! The routes of a waiting call as data: what a transfer node asks beyond its queue
//! ([`Routing`], [`OverflowRule`], [`OverflowWhen`]) and the classes a call may be offered
//! through ([`Route`]). What the ACD does with them is in `routing.rs`.

use ivr_engine::Millis;

/// What a transfer node asks of the ACD beyond its queue, skills and priority.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Routing {
    /// `level N`: agents of at least this level (1..5) while one is logged in; 0 or 1: any.
    pub level: u8,
    /// `overflow QUEUE ...` rules, in the node's order.
    pub overflow: Vec<OverflowRule>,
    /// Transferred in by an agent: served before every call of its queue that was not.
    pub transferred: bool,
}

/// `overflow QUEUE after D` or `overflow QUEUE when none_idle`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OverflowRule {
    /// The other queue.
    pub queue: String,
    /// The node's own skills (the other queue's are added by the ACD).
    pub skills: Vec<String>,
    /// When the call is also offered to that queue's agents.
    pub when: OverflowWhen,
}

/// When an overflow rule applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum OverflowWhen {
    /// After the call has waited this long (ms) in its queue.
    After(Millis),
    /// As soon as no agent of the call's own queue is idle to take it (at once when queued).
    NoneIdle,
}

/// Which kind of route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RouteKind {
    /// Agents of any level in the primary queue: active while nobody of the asked level is
    /// logged in.
    LevelFallback,
    /// An overflow rule; active once triggered, for good.
    Overflow(OverflowWhen),
}

/// Another class a call may be offered through.
#[derive(Debug, Clone)]
pub(super) struct Route {
    /// The queue whose agents take it this way (ring timeout, wrap-up and counts are that
    /// queue's).
    pub(super) queue: usize,
    /// The node's own skills, as written (masks are rebuilt from them on reload).
    pub(super) skill_names: Vec<String>,
    /// Its class.
    pub(super) class: usize,
    /// What it is.
    pub(super) kind: RouteKind,
    /// An overflow that has been triggered.
    pub(super) triggered: bool,
}
