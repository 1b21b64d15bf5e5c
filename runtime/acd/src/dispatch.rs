//! Matching calls and agents: requirement classes, offers, the tried set, `NoAgents`.
//!
//! A requirement class is the set of skills a call needs (its queue's plus its node's). Every
//! class keeps its waiting calls ordered by (priority, arrival), its available qualifying
//! agents ordered by idle-since, and how many qualifying agents are logged in. Classes are
//! few (one per distinct skill combination of the transfers), so "which classes does this
//! agent qualify for" is a short list kept on the agent, and every match is a walk from the
//! front of an ordered set.

use super::Timer;
use super::agents::AgentState;
use super::queue::{CallState, OrderKey};
use super::{Acd, AcdOut, CallKey, RETRY_PAUSE_MS, SkillSet};
use ivr_engine::Millis;
use std::collections::BTreeSet;

/// The calls needing one set of skills, and the agents who have them.
#[derive(Debug)]
pub(super) struct Class {
    /// The skills needed.
    pub(super) mask: SkillSet,
    /// Waiting calls (not ringing, not connected), best first; resting calls included.
    pub(super) waiting: BTreeSet<OrderKey>,
    /// Available qualifying agents, idle longest first: (since, availability number, agent).
    pub(super) available: BTreeSet<(Millis, u64, usize)>,
    /// Qualifying agents logged in (any state but offline).
    pub(super) logged_in: u32,
}

impl Acd {
    /// The class of calls needing `mask`, created (with its qualifying agents) if new.
    pub(super) fn class_for(&mut self, mask: SkillSet) -> usize {
        if let Some(&c) = self.class_ids.get(&mask) {
            return c;
        }
        let id = self.classes.len();
        let mut class = Class {
            mask,
            waiting: BTreeSet::new(),
            available: BTreeSet::new(),
            logged_in: 0,
        };
        for (i, agent) in self.agents.iter_mut().enumerate() {
            if agent.configured && class.mask.is_subset(&agent.mask) {
                agent.classes.push(id);
                if agent.counted {
                    class.logged_in += 1;
                }
                if agent.state == AgentState::Available {
                    class.available.insert(agent.idle_entry(i));
                }
            }
        }
        self.class_ids.insert(class.mask.clone(), id);
        self.classes.push(class);
        id
    }

    /// Rings agent `a` (available) for `call` (waiting).
    fn offer(&mut self, call: CallKey, a: usize, now: Millis, out: &mut Vec<AcdOut>) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let Some(contact) = self.agents[a].contact.clone() else {
            return;
        };
        self.classes[c.class].waiting.remove(&c.order_key(call));
        let until = now.saturating_add(self.queues[c.queue].ring_timeout);
        c.state = CallState::Ringing { agent: a, until };
        self.timers.insert((until, Timer::Ring(call)));
        self.leave_available(a);
        self.set_state(a, AgentState::Ringing, now);
        self.agents[a].call = Some(call);
        out.push(AcdOut::Offer {
            call,
            agent: self.agents[a].id.clone(),
            contact,
        });
    }

    /// Offers a waiting call to the available qualifying agent idle longest that has not
    /// tried it. When every qualifying logged-in agent has tried it, the tried set is cleared;
    /// if one of them is available, the call pauses for [`RETRY_PAUSE_MS`] first.
    pub(super) fn dispatch_call(&mut self, call: CallKey, now: Millis, out: &mut Vec<AcdOut>) {
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        if c.state != CallState::Waiting {
            return;
        }
        let class = &self.classes[c.class];
        let pick = class
            .available
            .iter()
            .map(|&(_, _, a)| a)
            .find(|a| !c.tried.contains(a));
        if let Some(a) = pick {
            self.offer(call, a, now, out);
            return;
        }
        if c.tried.is_empty() || !self.tried_everyone(call) {
            return;
        }
        let anyone_available = !class.available.is_empty();
        self.retrying.remove(&call);
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        c.tried.clear();
        if anyone_available {
            let until = now.saturating_add(RETRY_PAUSE_MS);
            c.state = CallState::Resting { until };
            self.timers.insert((until, Timer::Rest(call)));
        }
    }

    /// Offers an available agent the best waiting call it qualifies for, across all queues:
    /// highest priority, then longest waiting. Calls it already tried are skipped (a tried set
    /// that covers every qualifying logged-in agent never waits: [`Acd::dispatch_call`] and
    /// [`Acd::recheck_retrying`] clear it as soon as it does).
    pub(super) fn pick_call(&mut self, a: usize, now: Millis, out: &mut Vec<AcdOut>) {
        if self.agents[a].state != AgentState::Available {
            return;
        }
        let mut best: Option<OrderKey> = None;
        for &c in &self.agents[a].classes {
            let found = self.classes[c]
                .waiting
                .iter()
                .take_while(|&&entry| best.is_none_or(|b| entry < b))
                .find(|&&(_, _, key)| {
                    self.calls.get(&key).is_some_and(|call| {
                        call.state == CallState::Waiting && !call.tried.contains(&a)
                    })
                });
            if let Some(&entry) = found {
                best = Some(entry);
            }
        }
        if let Some((_, _, call)) = best {
            self.offer(call, a, now, out);
        }
    }

    /// Whether every qualifying logged-in agent has tried `call`.
    pub(super) fn tried_everyone(&self, call: CallKey) -> bool {
        let Some(c) = self.calls.get(&call) else {
            return false;
        };
        let class = &self.classes[c.class];
        let tried = c
            .tried
            .iter()
            .filter(|&&a| {
                let agent = &self.agents[a];
                agent.counted && class.mask.is_subset(&agent.mask)
            })
            .count();
        u32::try_from(tried).unwrap_or(u32::MAX) >= class.logged_in
    }

    /// Calls of these classes that nobody logged in can take any more leave their queues
    /// with [`AcdOut::NoAgents`].
    pub(super) fn sweep_no_agents(
        &mut self,
        classes: &[usize],
        now: Millis,
        out: &mut Vec<AcdOut>,
    ) {
        for &c in classes {
            if self.classes[c].logged_in > 0 || self.classes[c].waiting.is_empty() {
                continue;
            }
            let waiting = std::mem::take(&mut self.classes[c].waiting);
            for (_, _, call) in waiting {
                let Some(entry) = self.calls.remove(&call) else {
                    continue;
                };
                if let CallState::Resting { until } = entry.state {
                    self.timers.remove(&(until, Timer::Rest(call)));
                }
                self.retrying.remove(&call);
                let q = entry.queue;
                self.queues[q].remove(entry.order_key(call));
                self.queues[q].no_agents += 1;
                self.positions_changed(q, now);
                out.push(AcdOut::NoAgents { call });
            }
        }
    }

    /// Waiting calls whose every qualifying logged-in agent has tried them (after an agent
    /// logged out) start a new round.
    pub(super) fn recheck_retrying(&mut self, now: Millis, out: &mut Vec<AcdOut>) {
        if self.retrying.is_empty() {
            return;
        }
        let calls: Vec<CallKey> = self.retrying.iter().copied().collect();
        for call in calls {
            let waiting = self
                .calls
                .get(&call)
                .is_some_and(|c| c.state == CallState::Waiting);
            if waiting && self.tried_everyone(call) {
                self.dispatch_call(call, now, out);
            }
        }
    }
}
