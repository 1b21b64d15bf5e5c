//! Routes beyond a call's own queue: `overflow QUEUE after D` / `when none_idle`, the level
//! fallback of `level N` (agents of any level once nobody of level N is logged in), and the
//! rank of calls transferred in by an agent.
//!
//! A call always waits in its primary class (its queue's and node's skills, its level). Each
//! [`Route`] is another class it may be offered through; an active route holds the call in
//! that class's waiting set under the same order key, so the call keeps its place and its
//! time, and whichever qualifying agent of any active class is free first takes it.

use super::queue::CallState;
use super::route::{OverflowWhen, Route, RouteKind};
use super::{Acd, AcdOut, CallKey, SkillSet, Timer};
use ivr_engine::Millis;

impl Acd {
    /// Whether route `r` of `call` offers it now.
    pub(super) fn route_active(&self, call: &super::queue::QueuedCall, r: &Route) -> bool {
        match r.kind {
            RouteKind::LevelFallback => self.classes[call.class].logged_in == 0,
            RouteKind::Overflow(_) => r.triggered,
        }
    }

    /// The classes `call` is offered through now: its own first, then its active routes.
    pub(super) fn active_classes(&self, call: CallKey) -> Vec<(usize, usize)> {
        let Some(c) = self.calls.get(&call) else {
            return Vec::new();
        };
        let mut out = Vec::with_capacity(1 + c.routes.len());
        out.push((c.class, c.queue));
        for r in &c.routes {
            if self.route_active(c, r) {
                out.push((r.class, r.queue));
            }
        }
        out
    }

    /// Puts a waiting call into the waiting sets of every class it is offered through.
    pub(super) fn wait_insert(&mut self, call: CallKey) {
        let Some(key) = self.calls.get(&call).map(|c| c.order_key(call)) else {
            return;
        };
        for (class, _) in self.active_classes(call) {
            self.classes[class].waiting.insert(key);
        }
    }

    /// Takes a call out of every waiting set it may be in.
    pub(super) fn wait_remove(&mut self, call: CallKey) {
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        let key = c.order_key(call);
        self.classes[c.class].waiting.remove(&key);
        for r in &c.routes {
            self.classes[r.class].waiting.remove(&key);
        }
    }

    /// Whether an agent who is logged in could take `call` through one of its routes
    /// (active or not yet): otherwise it goes down `no_agents`.
    pub(super) fn reachable(&self, call: CallKey) -> bool {
        self.calls.get(&call).is_some_and(|c| {
            self.classes[c.class].logged_in > 0
                || c.routes.iter().any(|r| self.classes[r.class].logged_in > 0)
        })
    }

    /// The queue through which agent `a` is offered `call`: the call's own when the agent
    /// qualifies for it, else the first active route the agent qualifies for.
    pub(super) fn via(&self, call: CallKey, a: usize) -> usize {
        let Some(c) = self.calls.get(&call) else {
            return 0;
        };
        let agent = &self.agents[a];
        if agent.classes.contains(&c.class) {
            return c.queue;
        }
        c.routes
            .iter()
            .find(|r| self.route_active(c, r) && agent.classes.contains(&r.class))
            .map_or(c.queue, |r| r.queue)
    }

    /// Triggers the overflow routes of `call` that `fire` selects; a waiting call enters their
    /// classes' waiting sets. Returns whether any was triggered.
    pub(super) fn trigger_overflow(
        &mut self,
        call: CallKey,
        fire: impl Fn(OverflowWhen) -> bool,
    ) -> bool {
        let Some(c) = self.calls.get_mut(&call) else {
            return false;
        };
        let key = c.order_key(call);
        let waiting = matches!(c.state, CallState::Waiting | CallState::Resting { .. });
        let mut fired = Vec::new();
        for r in &mut c.routes {
            if let RouteKind::Overflow(when) = r.kind
                && !r.triggered
                && fire(when)
            {
                r.triggered = true;
                fired.push(r.class);
            }
        }
        if fired.is_empty() {
            return false;
        }
        let first = !c.overflowed;
        c.overflowed = true;
        let q = c.queue;
        if first {
            self.queues[q].overflowed += 1;
        }
        if waiting {
            for class in fired {
                self.classes[class].waiting.insert(key);
            }
        }
        true
    }

    /// An `overflow ... after` timer of `call` is due at `now`: its rules whose time has come
    /// are triggered and the call is offered to their agents; the next one is scheduled.
    pub(super) fn overflow_due(
        &mut self,
        call: CallKey,
        at: Millis,
        now: Millis,
        out: &mut Vec<AcdOut>,
    ) {
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        if c.overflow_at != Some(at) || matches!(c.state, CallState::Connected { .. }) {
            return;
        }
        let queued_at = c.queued_at;
        self.trigger_overflow(
            call,
            |w| matches!(w, OverflowWhen::After(d) if queued_at.saturating_add(d) <= now),
        );
        self.schedule_overflow(call);
        if let Some(c) = self.calls.get_mut(&call)
            && let CallState::Resting { until } = c.state
        {
            // New agents have not tried it: no need to finish the pause.
            c.state = CallState::Waiting;
            self.timers.remove(&(until, Timer::Rest(call)));
        }
        self.dispatch_call(call, now, out);
    }

    /// Schedules the earliest `overflow ... after` of `call` not yet triggered.
    pub(super) fn schedule_overflow(&mut self, call: CallKey) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let next = c
            .routes
            .iter()
            .filter(|r| !r.triggered)
            .filter_map(|r| match r.kind {
                RouteKind::Overflow(OverflowWhen::After(d)) => Some(c.queued_at.saturating_add(d)),
                _ => None,
            })
            .min();
        if let Some(old) = c.overflow_at.take() {
            self.timers.remove(&(old, Timer::Overflow(call)));
        }
        if let Some(at) = next {
            c.overflow_at = Some(at);
            self.timers.insert((at, Timer::Overflow(call)));
        }
    }

    /// Drops the overflow timer of a call leaving the queue.
    pub(super) fn drop_overflow_timer(&mut self, call: CallKey) {
        if let Some(c) = self.calls.get_mut(&call)
            && let Some(at) = c.overflow_at.take()
        {
            self.timers.remove(&(at, Timer::Overflow(call)));
        }
    }

    /// Classes asking for a level whose logged-in count crossed zero: the level fallback of
    /// their waiting calls turns on (the calls enter the any-level class and are offered) or
    /// off (they leave it).
    pub(super) fn apply_level_flips(&mut self, now: Millis, out: &mut Vec<AcdOut>) {
        if self.level_flips.is_empty() {
            return;
        }
        while let Some(c) = self.level_flips.pop() {
            let on = self.classes[c].logged_in == 0;
            let keys: Vec<_> = self.classes[c].waiting.iter().copied().collect();
            for key in keys {
                let call = key.2;
                let Some(entry) = self.calls.get(&call) else {
                    continue;
                };
                if entry.class != c {
                    continue;
                }
                // A triggered overflow may lead to the same class: the call stays there.
                let fallbacks: Vec<usize> = entry
                    .routes
                    .iter()
                    .filter(|r| r.kind == RouteKind::LevelFallback)
                    .map(|r| r.class)
                    .filter(|&f| on || !entry.routes.iter().any(|o| o.class == f && o.triggered))
                    .collect();
                for f in fallbacks {
                    if on {
                        self.classes[f].waiting.insert(key);
                    } else {
                        self.classes[f].waiting.remove(&key);
                    }
                }
                if on {
                    self.dispatch_call(call, now, out);
                }
            }
        }
        // Fewer agents may now take a call that some of them tried: a call every remaining
        // one has tried starts a new round.
        self.recheck_retrying(now, out);
    }

    /// The class for a route or a call: `mask`, agents of at least `level` (0: any), ordered
    /// by level first when `best_level`.
    pub(super) fn class_of(&mut self, mask: SkillSet, level: u8, best_level: bool) -> usize {
        self.class_for(mask, if level <= 1 { 0 } else { level }, best_level)
    }
}
