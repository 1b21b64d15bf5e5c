//! Matching calls and agents: requirement classes, offers, the tried set, `NoAgents`.
//!
//! A requirement class is the set of skills a call needs (its queue's plus its node's). Every
//! class keeps its waiting calls ordered by (priority, arrival), its available qualifying
//! agents ordered by idle-since, and how many qualifying agents are logged in. Classes are
//! few (one per distinct skill combination of the transfers), so "which classes does this
//! agent qualify for" is a short list kept on the agent, and every match is a walk from the
//! front of an ordered set.

use super::Timer;
use super::agents::{AgentState, IdleKey};
use super::queue::{CallState, OrderKey};
use super::{Acd, AcdOut, CallKey, RETRY_PAUSE_MS, SkillSet};
use crate::route::OverflowWhen;
use ivr_engine::Millis;
use std::collections::BTreeSet;

/// The calls needing one set of skills, and the agents who have them.
#[derive(Debug)]
pub(super) struct Class {
    /// The skills needed.
    pub(super) mask: SkillSet,
    /// The least agent level (0: any).
    pub(super) min_level: u8,
    /// Available agents ordered by level first (`strategy = "best_level"`).
    pub(super) best_level: bool,
    /// Waiting calls (not ringing, not connected), best first; resting calls included.
    pub(super) waiting: BTreeSet<OrderKey>,
    /// Available qualifying agents, best first ([`IdleKey`]).
    pub(super) available: BTreeSet<IdleKey>,
    /// Qualifying agents logged in (any state but offline).
    pub(super) logged_in: u32,
}

impl Class {
    /// Whether `agent` (configured) qualifies for this class's calls.
    pub(super) fn admits(&self, agent: &super::agents::Agent) -> bool {
        agent.configured && agent.level >= self.min_level && self.mask.is_subset(&agent.mask)
    }
}

impl Acd {
    /// The class of calls needing `mask` and agents of at least `min_level`, with available
    /// agents ordered by level first when `best_level`; created (with its qualifying agents)
    /// if new.
    pub(super) fn class_for(&mut self, mask: SkillSet, min_level: u8, best_level: bool) -> usize {
        let id_key = (mask, min_level, best_level);
        if let Some(&c) = self.class_ids.get(&id_key) {
            return c;
        }
        let id = self.classes.len();
        let mut class = Class {
            mask: id_key.0.clone(),
            min_level,
            best_level,
            waiting: BTreeSet::new(),
            available: BTreeSet::new(),
            logged_in: 0,
        };
        for (i, agent) in self.agents.iter_mut().enumerate() {
            if class.admits(agent) {
                agent.classes.push(id);
                if agent.counted {
                    class.logged_in += 1;
                }
                if agent.state == AgentState::Available {
                    class.available.insert(agent.idle_entry(i, best_level));
                }
            }
        }
        self.class_ids.insert(id_key, id);
        self.classes.push(class);
        id
    }

    /// Rings agent `a` (available) for `call` (waiting).
    fn offer(&mut self, call: CallKey, a: usize, now: Millis, out: &mut Vec<AcdOut>) {
        if !self.calls.contains_key(&call) {
            return;
        }
        let Some(contact) = self.agents[a].contact.clone() else {
            return;
        };
        let via = self.via(call, a);
        self.wait_remove(call);
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        c.via = via;
        let until = now.saturating_add(self.queues[via].ring_timeout);
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

    /// Offers a waiting call to the best available qualifying agent that has not tried it:
    /// through its own class first, then (once none there is idle: `overflow ... when
    /// none_idle` triggers) through its active routes in order. When every qualifying
    /// logged-in agent has tried it, the tried set is cleared; if one of them is available,
    /// the call pauses for [`RETRY_PAUSE_MS`] first.
    pub(super) fn dispatch_call(&mut self, call: CallKey, now: Millis, out: &mut Vec<AcdOut>) {
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        if c.state != CallState::Waiting {
            return;
        }
        let pick = |acd: &Acd, class: usize| {
            acd.classes[class]
                .available
                .iter()
                .map(|&(_, _, _, a)| a)
                .find(|a| !acd.calls.get(&call).is_some_and(|c| c.tried.contains(a)))
        };
        if let Some(a) = pick(self, c.class) {
            self.offer(call, a, now, out);
            return;
        }
        if !c.routes.is_empty() {
            self.trigger_overflow(call, |w| w == OverflowWhen::NoneIdle);
            let classes = self.active_classes(call);
            for &(class, _) in classes.iter().skip(1) {
                if let Some(a) = pick(self, class) {
                    self.offer(call, a, now, out);
                    return;
                }
            }
        }
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        if c.tried.is_empty() || !self.tried_everyone(call) {
            return;
        }
        let anyone_available = self
            .active_classes(call)
            .iter()
            .any(|&(class, _)| !self.classes[class].available.is_empty());
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

    /// Whether every qualifying logged-in agent (of every class the call is offered through)
    /// has tried `call`.
    pub(super) fn tried_everyone(&self, call: CallKey) -> bool {
        let Some(c) = self.calls.get(&call) else {
            return false;
        };
        self.active_classes(call).iter().all(|&(class, _)| {
            let class = &self.classes[class];
            let tried = c
                .tried
                .iter()
                .filter(|&&a| self.agents[a].counted && class.admits(&self.agents[a]))
                .count();
            u32::try_from(tried).unwrap_or(u32::MAX) >= class.logged_in
        })
    }

    /// Calls of these classes that nobody logged in can take any more leave their queues
    /// with [`AcdOut::NoAgents`].
    pub(super) fn sweep_no_agents(
        &mut self,
        classes: &[usize],
        now: Millis,
        out: &mut Vec<AcdOut>,
    ) {
        let zero: Vec<usize> = classes
            .iter()
            .copied()
            .filter(|&c| self.classes[c].logged_in == 0)
            .collect();
        if zero.is_empty() {
            return;
        }
        let mut candidates: BTreeSet<OrderKey> = zero
            .iter()
            .flat_map(|&c| self.classes[c].waiting.iter().copied())
            .collect();
        // Waiting calls whose not yet triggered overflow led to one of these classes.
        candidates.extend(
            self.calls
                .iter()
                .filter(|(_, c)| {
                    matches!(c.state, CallState::Waiting | CallState::Resting { .. })
                        && c.routes.iter().any(|r| zero.contains(&r.class))
                })
                .map(|(&k, c)| c.order_key(k)),
        );
        {
            let gone: Vec<CallKey> = candidates
                .into_iter()
                .map(|(_, _, call)| call)
                .filter(|&call| {
                    !self.reachable(call) && !self.calls.get(&call).is_some_and(|c| c.kept)
                })
                .collect();
            for call in gone {
                self.wait_remove(call);
                self.drop_overflow_timer(call);
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
