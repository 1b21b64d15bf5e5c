//! Hot reload: agents and queues added, removed or changed, with agent states and waiting
//! calls kept.

use super::Timer;
use super::agents::{Agent, AgentState};
use super::queue::{CallState, Queue};
use super::route::RouteKind;
use super::skills::SkillTable;
use super::{Acd, AcdOut, millis};
use ivr_compiler::config::{Config, Strategy};
use ivr_engine::Millis;

impl Acd {
    /// Applies a new configuration (hot reload). New agents start offline; removed agents are
    /// logged out (a ringing offer is cancelled and its call offered to the next agent; a call
    /// in progress goes on); changed skills apply to every waiting call and agent. Queues keep
    /// their calls and counters; a removed queue keeps its waiting calls (with its last
    /// settings) until they are served or gone, but takes no new ones. Waiting calls nobody
    /// logged in can take any more get [`AcdOut::NoAgents`]; newly qualifying available agents
    /// are offered calls.
    pub(crate) fn reconfigure(&mut self, config: &Config, now: Millis, out: &mut Vec<AcdOut>) {
        for queue in &mut self.queues {
            queue.configured = false;
        }
        for (name, qc) in &config.queues {
            let q = match self.queue_ids.get(name) {
                Some(&q) => q,
                None => {
                    self.queues.push(Queue::new(name));
                    self.queue_ids.insert(name.clone(), self.queues.len() - 1);
                    self.queues.len() - 1
                }
            };
            let queue = &mut self.queues[q];
            queue.configured = true;
            queue.skill_names = qc.skills.clone();
            queue.ring_timeout = millis(qc.ring_timeout()).max(1);
            queue.wrap_up = millis(qc.wrap_up());
            queue.best_level = qc.strategy == Strategy::BestLevel;
        }
        let mut removed = Vec::new();
        for (a, agent) in self.agents.iter().enumerate() {
            if agent.configured && !config.agents.contains_key(&agent.id) {
                removed.push(a);
            }
        }
        for (id, ac) in &config.agents {
            let a = match self.agent_ids.get(id) {
                Some(&a) => a,
                None => {
                    self.agents.push(Agent::new(id));
                    self.agent_ids.insert(id.clone(), self.agents.len() - 1);
                    self.agents.len() - 1
                }
            };
            let agent = &mut self.agents[a];
            agent.configured = true;
            agent.name = ac.name.clone();
            agent.skill_names = ac.skills.clone();
            agent.level = ac.level();
        }
        // Removed agents leave every index; a ringing offer goes back to waiting.
        let mut cancelled = Vec::new();
        for &a in &removed {
            self.set_counted(a, false);
            if let Some(at) = self.agents[a].expires_at.take() {
                self.timers.remove(&(at, Timer::Expiry(a)));
            }
            if let Some(at) = self.agents[a].wrap_until.take() {
                self.timers.remove(&(at, Timer::WrapUp(a)));
            }
            let state = self.agents[a].state;
            if state == AgentState::Ringing
                && let Some(call) = self.agents[a].call.take()
            {
                out.push(AcdOut::Cancel {
                    call,
                    agent: self.agents[a].id.clone(),
                });
                self.requeue_ringing(call);
                cancelled.push(call);
            }
            self.leave_available(a);
            let agent = &mut self.agents[a];
            agent.configured = false;
            agent.away = false;
            if state != AgentState::OnCall {
                agent.contact = None;
                self.set_state(a, AgentState::Offline, now);
            }
        }
        self.rebuild();
        let all: Vec<usize> = (0..self.classes.len()).collect();
        self.sweep_no_agents(&all, now, out);
        for call in cancelled {
            self.dispatch_call(call, now, out);
        }
        self.recheck_retrying(now, out);
        let mut available: Vec<super::agents::IdleKey> = self
            .agents
            .iter()
            .enumerate()
            .filter(|(_, a)| a.state == AgentState::Available)
            .map(|(i, a)| a.idle_entry(i, false))
            .collect();
        available.sort_unstable();
        for (_, _, _, a) in available {
            self.pick_call(a, now, out);
        }
        // Drop queues that left the configuration and have no call any more from the status.
        self.queue_ids
            .retain(|_, q| self.queues[*q].configured || !self.queues[*q].order.is_empty());
    }

    /// Interns every skill in use afresh and rebuilds the requirement classes from the agents
    /// and the calls in the ACD.
    fn rebuild(&mut self) {
        let mut table = SkillTable::default();
        for agent in &mut self.agents {
            agent.classes.clear();
            agent.mask = if agent.configured {
                // Every agent has a skill of its own: transfers to that agent ask for it.
                let mut mask = table.set(&agent.skill_names);
                mask.insert(table.bit(&super::agent_skill(&agent.id)));
                mask
            } else {
                Default::default()
            };
        }
        for queue in &mut self.queues {
            queue.mask = table.set(&queue.skill_names);
        }
        for call in self.calls.values_mut() {
            call.mask = self.queues[call.queue]
                .mask
                .union(&table.set(&call.skill_names));
        }
        self.skills = table;
        self.classes.clear();
        self.class_ids.clear();
        self.level_flips.clear();
        let mut keys: Vec<_> = self
            .calls
            .iter()
            .map(|(&k, c)| (c.order_key(k), k))
            .collect();
        keys.sort_unstable();
        for &(_, key) in &keys {
            let Some(c) = self.calls.get(&key) else {
                continue;
            };
            let best = self.queues[c.queue].best_level;
            let (mask, level) = (c.mask.clone(), c.level);
            let mut routes = c.routes.clone();
            let class = self.class_of(mask.clone(), level, best);
            for r in &mut routes {
                let q = &self.queues[r.queue];
                let (best, level) = match r.kind {
                    RouteKind::LevelFallback => (best, 0),
                    RouteKind::Overflow(_) => (q.best_level, 0),
                };
                let mask = match r.kind {
                    RouteKind::LevelFallback => mask.clone(),
                    RouteKind::Overflow(_) => q.mask.union(&self.skills.set(&r.skill_names)),
                };
                r.class = self.class_of(mask, level, best);
            }
            if let Some(c) = self.calls.get_mut(&key) {
                c.class = class;
                c.routes = routes;
            }
        }
        for &(_, key) in &keys {
            let waiting = self
                .calls
                .get(&key)
                .is_some_and(|c| matches!(c.state, CallState::Waiting | CallState::Resting { .. }));
            if waiting {
                self.wait_insert(key);
            }
        }
    }
}
