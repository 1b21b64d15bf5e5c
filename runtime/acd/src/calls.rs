//! Calls: queued, offered, answered, declined, over, gone.

use super::Timer;
use super::agents::AgentState;
use super::queue::{CallState, QueuedCall};
use super::route::{Route, RouteKind};
use super::{Acd, AcdOut, CallKey, Decline, Routing};
use ivr_engine::Millis;

/// Most overflow rules of one call (a node has a handful; more are ignored).
pub(crate) const MAX_OVERFLOW: usize = 8;

impl Acd {
    /// Queues `call` in `queue` for an agent with the queue's skills and `skills` (the transfer
    /// node's), at `priority` (higher is served first), with `routing` (level, overflow,
    /// transferred in). Sends the caller's position, then offers the call at once if a
    /// qualifying agent is available. When no agent who could take it (through its queue or
    /// an overflow) is logged in, or the queue is unknown, the answer is [`AcdOut::NoAgents`]
    /// and the call is not queued. A call already in the ACD is first taken out as by
    /// [`Acd::leave`].
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn enqueue(
        &mut self,
        call: CallKey,
        queue: &str,
        skills: &[String],
        priority: i64,
        routing: &Routing,
        queued_at: Millis,
        now: Millis,
        out: &mut Vec<AcdOut>,
    ) {
        if self.calls.contains_key(&call) {
            self.leave(call, now, out);
        }
        let Some(&q) = self
            .queue_ids
            .get(queue)
            .filter(|&&q| self.queues[q].configured)
        else {
            out.push(AcdOut::NoAgents { call });
            return;
        };
        self.queues[q].offered += 1;
        let mask = self.queues[q].mask.union(&self.skills.set(skills));
        let level = if routing.level <= 1 { 0 } else { routing.level };
        let best_level = self.queues[q].best_level;
        let class = self.class_of(mask.clone(), level, best_level);
        let mut routes = Vec::new();
        if level > 0 {
            routes.push(Route {
                queue: q,
                skill_names: skills.to_vec(),
                class: self.class_of(mask.clone(), 0, best_level),
                kind: RouteKind::LevelFallback,
                triggered: false,
            });
        }
        for rule in routing.overflow.iter().take(MAX_OVERFLOW) {
            let Some(&o) = self
                .queue_ids
                .get(&rule.queue)
                .filter(|&&o| o != q && self.queues[o].configured)
            else {
                continue;
            };
            let mask = self.queues[o].mask.union(&self.skills.set(&rule.skills));
            let best = self.queues[o].best_level;
            routes.push(Route {
                queue: o,
                skill_names: rule.skills.clone(),
                class: self.class_of(mask, 0, best),
                kind: RouteKind::Overflow(rule.when),
                triggered: false,
            });
        }
        if self.classes[class].logged_in == 0
            && !routes.iter().any(|r| self.classes[r.class].logged_in > 0)
        {
            self.queues[q].no_agents += 1;
            out.push(AcdOut::NoAgents { call });
            return;
        }
        self.seq += 1;
        let entry = QueuedCall {
            queue: q,
            skill_names: skills.to_vec(),
            mask,
            class,
            priority,
            transferred: routing.transferred,
            level,
            routes,
            overflowed: false,
            overflow_at: None,
            queued_at: queued_at.min(now),
            via: q,
            seq: self.seq,
            state: CallState::Waiting,
            tried: Vec::new(),
            kept: false,
            position: 0,
            position_at: now,
        };
        let key = entry.order_key(call);
        let position = self.queues[q].insert(key, queued_at.min(now));
        self.calls.insert(call, QueuedCall { position, ..entry });
        self.wait_insert(call);
        self.schedule_overflow(call);
        out.push(AcdOut::Position { call, position });
        if self.queues[q].any_behind(key.0) {
            self.positions_changed(q, now);
        }
        self.dispatch_call(call, now, out);
    }

    /// Puts back (a new leader rebuilding the ACD) `call` that talks with `agent` through
    /// `queue`: the agent, registered and available or away, is on that call from now on
    /// and is offered nothing until its [`Acd::conversation_over`]. False (nothing changes)
    /// when the agent or the queue is unknown, the agent is not free, or the call is known.
    pub(crate) fn restore_talking(
        &mut self,
        call: CallKey,
        agent: &str,
        queue: &str,
        now: Millis,
    ) -> bool {
        let (Some(&a), Some(&q)) = (self.agent_ids.get(agent), self.queue_ids.get(queue)) else {
            return false;
        };
        if self.calls.contains_key(&call)
            || !self.agents[a].counted
            || !matches!(
                self.agents[a].state,
                AgentState::Available | AgentState::Away
            )
        {
            return false;
        }
        let mask = self.queues[q].mask.clone();
        let best_level = self.queues[q].best_level;
        // The class first: a new one takes in the agents available now.
        let class = self.class_of(mask.clone(), 0, best_level);
        self.leave_available(a);
        self.seq += 1;
        self.calls.insert(
            call,
            QueuedCall {
                queue: q,
                skill_names: Vec::new(),
                mask,
                class,
                priority: 0,
                transferred: false,
                level: 0,
                routes: Vec::new(),
                overflowed: false,
                overflow_at: None,
                queued_at: now,
                via: q,
                seq: self.seq,
                state: CallState::Connected { agent: a },
                tried: Vec::new(),
                kept: false,
                position: 0,
                position_at: now,
            },
        );
        self.set_state(a, AgentState::OnCall, now);
        self.agents[a].call = Some(call);
        true
    }

    /// The call left its queue (the caller hung up, or `max_wait` passed). If an agent was
    /// ringing for it, that offer is cancelled ([`AcdOut::Cancel`]) and the agent is free,
    /// keeping its place among idle agents. For a call already answered this is
    /// [`Acd::conversation_over`]. Unknown calls are ignored.
    /// The caller of `call` kept a callback: its place stays (with its time) after the caller
    /// hung up, and it is not sent away when nobody who could take it is logged in; an agent
    /// who becomes available takes it in turn. False when the call is not waiting here.
    pub(crate) fn keep_callback(&mut self, call: CallKey) -> bool {
        match self.calls.get_mut(&call) {
            Some(c) => {
                c.kept = true;
                true
            }
            None => false,
        }
    }

    pub(crate) fn leave(&mut self, call: CallKey, now: Millis, out: &mut Vec<AcdOut>) {
        let Some(state) = self.calls.get(&call).map(|c| c.state) else {
            return;
        };
        if let CallState::Connected { .. } = state {
            self.conversation_over(call, now, out);
            return;
        }
        let Some(entry) = self.calls.remove(&call) else {
            return;
        };
        self.retrying.remove(&call);
        let key = entry.order_key(call);
        self.classes[entry.class].waiting.remove(&key);
        for r in &entry.routes {
            self.classes[r.class].waiting.remove(&key);
        }
        if let Some(at) = entry.overflow_at {
            self.timers.remove(&(at, Timer::Overflow(call)));
        }
        let q = entry.queue;
        self.queues[q].remove(key);
        self.queues[q].abandoned += 1;
        self.positions_changed(q, now);
        match state {
            CallState::Waiting | CallState::Connected { .. } => {}
            CallState::Resting { until } => {
                self.timers.remove(&(until, Timer::Rest(call)));
            }
            CallState::Ringing { agent, until } => {
                self.timers.remove(&(until, Timer::Ring(call)));
                out.push(AcdOut::Cancel {
                    call,
                    agent: self.agents[agent].id.clone(),
                });
                self.agent_free(agent, now, true, out);
            }
        }
    }

    /// The agent offered `call` answered: the agent is on the call and the call leaves its
    /// queue. Ignored unless the call is ringing (see [`Acd::agent_of`] for late answers).
    pub(crate) fn answered(&mut self, call: CallKey, now: Millis, _out: &mut Vec<AcdOut>) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let CallState::Ringing { agent, until } = c.state else {
            return;
        };
        c.state = CallState::Connected { agent };
        c.tried.clear();
        let (q, key, via) = (c.queue, c.order_key(call), c.via);
        self.timers.remove(&(until, Timer::Ring(call)));
        self.drop_overflow_timer(call);
        self.retrying.remove(&call);
        self.queues[q].remove(key);
        self.queues[q].answered += 1;
        if via != q {
            self.queues[via].overflow_answered += 1;
        }
        self.positions_changed(q, now);
        self.set_state(agent, AgentState::OnCall, now);
        self.agents[agent].answered += 1;
    }

    /// The offer of `call` failed (`why`): the call goes back to its place in line (its
    /// arrival time is kept) and is offered to the next agent; the agent stays available for
    /// other calls but is not offered this one again until every qualifying logged-in agent
    /// has been tried. Ignored unless the call is ringing.
    pub(crate) fn declined(
        &mut self,
        call: CallKey,
        why: Decline,
        now: Millis,
        out: &mut Vec<AcdOut>,
    ) {
        let ringing = self.calls.get(&call).and_then(|c| match c.state {
            CallState::Ringing { agent, .. } => Some(agent),
            _ => None,
        });
        if let Some(agent) = ringing {
            // Busy, no answer and failure are treated alike: the next agent is tried.
            let _ = why;
            self.offer_failed(call, agent, now, out);
        }
    }

    /// The conversation of an answered call is over (either side hung up): the agent enters
    /// wrap-up for the queue's `wrap_up` (or goes offline if it logged out meanwhile) and the
    /// call leaves the ACD. For a call not yet answered this is [`Acd::leave`].
    pub(crate) fn conversation_over(&mut self, call: CallKey, now: Millis, out: &mut Vec<AcdOut>) {
        let Some(state) = self.calls.get(&call).map(|c| c.state) else {
            return;
        };
        let CallState::Connected { agent } = state else {
            self.leave(call, now, out);
            return;
        };
        let Some(entry) = self.calls.remove(&call) else {
            return;
        };
        let wrap_up = self.queues[entry.via].wrap_up;
        self.agents[agent].call = None;
        if !self.agents[agent].counted || wrap_up <= 0 {
            self.agent_free(agent, now, false, out);
            return;
        }
        let until = now.saturating_add(wrap_up);
        self.set_state(agent, AgentState::WrapUp, now);
        self.agents[agent].wrap_until = Some(until);
        self.timers.insert((until, Timer::WrapUp(agent)));
    }

    /// An offer of `call` to agent `a` ended without an answer (declined or rang out).
    pub(super) fn offer_failed(
        &mut self,
        call: CallKey,
        a: usize,
        now: Millis,
        out: &mut Vec<AcdOut>,
    ) {
        if !self.requeue_ringing(call) {
            return;
        }
        if let Some(c) = self.calls.get_mut(&call) {
            if !c.tried.contains(&a) {
                c.tried.push(a);
            }
            self.retrying.insert(call);
        }
        self.agents[a].missed += 1;
        self.agents[a].call = None;
        // The agent is available before the call looks for the next one, so that a call every
        // agent has tried pauses instead of ringing the same phone again at once.
        if !self.agents[a].counted {
            self.agent_free(a, now, false, out);
        } else if self.agents[a].away {
            self.set_state(a, AgentState::Away, now);
        } else {
            self.make_available(a, now, false);
        }
        self.dispatch_call(call, now, out);
        self.pick_call(a, now, out);
    }
}
