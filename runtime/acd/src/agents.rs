//! Agents: their states, registration (log-in, refresh, expiry, log-out), away and back,
//! wrap-up.

use super::Timer;
use super::queue::CallState;
use super::{Acd, AcdError, AcdOut, CallKey, Contact, SkillSet};
use ivr_engine::Millis;
use serde::Serialize;
use std::cmp::Reverse;

/// An available agent's place in a class: (its level when the class orders by level, else
/// 0, highest first; available since; availability number; agent).
pub(super) type IdleKey = (Reverse<u8>, Millis, u64, usize);

/// What an agent is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentState {
    /// Not registered, or the registration expired.
    Offline,
    /// Registered and idle: may be offered a call.
    Available,
    /// The agent's phone rings with a call.
    Ringing,
    /// Talking with a caller.
    OnCall,
    /// After a call, for the queue's `wrap_up`; then available.
    WrapUp,
    /// Logged in but not taking calls.
    Away,
}

/// An agent of the configuration (`[agents.ID]`).
#[derive(Debug)]
pub(super) struct Agent {
    /// Its id.
    pub(super) id: String,
    /// Its display name.
    pub(super) name: String,
    /// Its skills, as written.
    pub(super) skill_names: Vec<String>,
    /// The same, interned.
    pub(super) mask: SkillSet,
    /// Its level, 1..5 (`[agents.ID] level`).
    pub(super) level: u8,
    /// False once the agent left the configuration (the entry stays, out of every index).
    pub(super) configured: bool,
    /// Registered and configured: counted in its classes' logged-in agents.
    pub(super) counted: bool,
    /// What it is doing.
    pub(super) state: AgentState,
    /// Since when.
    pub(super) since: Millis,
    /// Where its phone registered.
    pub(super) contact: Option<Contact>,
    /// When its registration expires; `None` when not registered.
    pub(super) expires_at: Option<Millis>,
    /// Asked to be away: applied when the current call and wrap-up are over.
    pub(super) away: bool,
    /// The call ringing or connected.
    pub(super) call: Option<CallKey>,
    /// Calls answered.
    pub(super) answered: u64,
    /// Offers that rang out, were busy or failed.
    pub(super) missed: u64,
    /// The requirement classes whose skills it has.
    pub(super) classes: Vec<usize>,
    /// Its place among available agents: (available since, availability number).
    pub(super) idle_key: (Millis, u64),
    /// When its wrap-up ends.
    pub(super) wrap_until: Option<Millis>,
}

impl Agent {
    /// A configured agent, offline.
    pub(super) fn new(id: &str) -> Agent {
        Agent {
            id: id.to_string(),
            name: String::new(),
            skill_names: Vec::new(),
            mask: SkillSet::default(),
            level: 1,
            configured: true,
            counted: false,
            state: AgentState::Offline,
            since: 0,
            contact: None,
            expires_at: None,
            away: false,
            call: None,
            answered: 0,
            missed: 0,
            classes: Vec::new(),
            idle_key: (0, 0),
            wrap_until: None,
        }
    }

    /// Its entry in the available set of a class (ordered by level first when
    /// `best_level`).
    pub(super) fn idle_entry(&self, index: usize, best_level: bool) -> IdleKey {
        let level = if best_level { self.level } else { 0 };
        (Reverse(level), self.idle_key.0, self.idle_key.1, index)
    }
}

impl Acd {
    /// An agent's phone registered (or refreshed its registration) at `contact` until
    /// `expires_at`. An offline agent becomes available (and is offered the best waiting call
    /// it qualifies for); a registered one only gets its expiry and contact refreshed. An agent
    /// that is not in the configuration is refused.
    pub(crate) fn register(
        &mut self,
        agent: &str,
        contact: Contact,
        expires_at: Millis,
        now: Millis,
        out: &mut Vec<AcdOut>,
    ) -> Result<(), AcdError> {
        let a = self.configured_agent(agent)?;
        if expires_at <= now {
            self.go_offline(a, now, out);
            return Ok(());
        }
        let entry = &mut self.agents[a];
        entry.contact = Some(contact);
        if let Some(old) = entry.expires_at.replace(expires_at) {
            self.timers.remove(&(old, Timer::Expiry(a)));
        }
        self.timers.insert((expires_at, Timer::Expiry(a)));
        if !self.agents[a].counted {
            self.set_counted(a, true);
        }
        if self.agents[a].state == AgentState::Offline {
            self.agents[a].away = false;
            self.make_available(a, now, false);
            self.pick_call(a, now, out);
        }
        self.apply_level_flips(now, out);
        Ok(())
    }

    /// An agent's phone unregistered: as when its registration expires. A ringing offer is
    /// cancelled and the call offered to the next agent; an agent on a call finishes it and
    /// then is offline. Unknown agents are ignored.
    pub(crate) fn unregister(&mut self, agent: &str, now: Millis, out: &mut Vec<AcdOut>) {
        if let Some(&a) = self.agent_ids.get(agent) {
            self.go_offline(a, now, out);
        }
    }

    /// An agent goes away (`true`) or comes back (`false`). An available agent goes away at
    /// once; one ringing, on a call or in wrap-up goes away when that is over. Coming back
    /// makes an away agent available. Away agents still count as logged in (callers wait for
    /// them). Refused for agents not in the configuration or not logged in.
    pub(crate) fn set_away(
        &mut self,
        agent: &str,
        away: bool,
        now: Millis,
        out: &mut Vec<AcdOut>,
    ) -> Result<(), AcdError> {
        let a = self.configured_agent(agent)?;
        if !self.agents[a].counted {
            return Err(AcdError::NotLoggedIn(agent.to_string()));
        }
        self.agents[a].away = away;
        match (self.agents[a].state, away) {
            (AgentState::Available, true) => {
                self.leave_available(a);
                self.set_state(a, AgentState::Away, now);
            }
            (AgentState::Away, false) => {
                self.make_available(a, now, false);
                self.pick_call(a, now, out);
            }
            _ => {}
        }
        Ok(())
    }

    /// Puts back (a new leader rebuilding the ACD) an agent's wrap-up until `until`: the
    /// agent, registered and available or away, is offered nothing until then, and is then
    /// available (or away, if it asked). False (nothing changes) when the agent is unknown,
    /// not logged in, busy, or `until` is not after `now`.
    pub(crate) fn restore_wrap_up(&mut self, agent: &str, until: Millis, now: Millis) -> bool {
        let Some(&a) = self.agent_ids.get(agent) else {
            return false;
        };
        if until <= now
            || !self.agents[a].counted
            || !matches!(
                self.agents[a].state,
                AgentState::Available | AgentState::Away
            )
        {
            return false;
        }
        self.leave_available(a);
        self.set_state(a, AgentState::WrapUp, now);
        self.agents[a].wrap_until = Some(until);
        self.timers.insert((until, Timer::WrapUp(a)));
        true
    }

    /// Whether agent `agent` asked to be away (now, or once its call and wrap-up are over).
    pub fn wants_away(&self, agent: &str) -> bool {
        self.agent_ids
            .get(agent)
            .is_some_and(|&a| self.agents[a].away)
    }

    /// When agent `agent`'s wrap-up ends, if it is wrapping up.
    pub fn wrap_up_until(&self, agent: &str) -> Option<Millis> {
        self.agent_ids
            .get(agent)
            .and_then(|&a| self.agents[a].wrap_until)
    }

    /// The index of a configured agent.
    fn configured_agent(&self, agent: &str) -> Result<usize, AcdError> {
        self.agent_ids
            .get(agent)
            .copied()
            .filter(|&a| self.agents[a].configured)
            .ok_or_else(|| AcdError::UnknownAgent(agent.to_string()))
    }

    /// Sets an agent's state and the time it began.
    pub(super) fn set_state(&mut self, a: usize, state: AgentState, now: Millis) {
        self.agents[a].state = state;
        self.agents[a].since = now;
    }

    /// Counts the agent in (or out of) its classes' logged-in agents.
    pub(super) fn set_counted(&mut self, a: usize, on: bool) {
        let agent = &mut self.agents[a];
        if agent.counted == on {
            return;
        }
        agent.counted = on;
        for &c in &agent.classes {
            let class = &mut self.classes[c];
            let before = class.logged_in;
            if on {
                class.logged_in += 1;
            } else {
                class.logged_in = class.logged_in.saturating_sub(1);
            }
            if class.min_level > 0 && (before == 0) != (class.logged_in == 0) {
                self.level_flips.push(c);
            }
        }
    }

    /// Makes the agent available: into the available set of each of its classes, by the time
    /// it became idle. With `keep_place`, it keeps the place it had before its last offer (the
    /// caller left while it rang: not the agent's doing).
    pub(super) fn make_available(&mut self, a: usize, now: Millis, keep_place: bool) {
        let agent = &mut self.agents[a];
        if !keep_place {
            self.idle_seq += 1;
            agent.idle_key = (now, self.idle_seq);
        }
        agent.state = AgentState::Available;
        agent.since = agent.idle_key.0;
        for &c in &agent.classes {
            let class = &mut self.classes[c];
            class
                .available
                .insert(agent.idle_entry(a, class.best_level));
        }
    }

    /// Takes an available agent out of the available sets (it is about to ring or go away).
    pub(super) fn leave_available(&mut self, a: usize) {
        let agent = &self.agents[a];
        if agent.state != AgentState::Available {
            return;
        }
        for &c in &agent.classes {
            let class = &mut self.classes[c];
            class
                .available
                .remove(&agent.idle_entry(a, class.best_level));
        }
    }

    /// An agent is free again after an offer or a wrap-up: away if it asked to be, else
    /// available and offered the best waiting call. `keep_place` as in [`Acd::make_available`].
    pub(super) fn agent_free(
        &mut self,
        a: usize,
        now: Millis,
        keep_place: bool,
        out: &mut Vec<AcdOut>,
    ) {
        self.agents[a].call = None;
        if !self.agents[a].counted {
            self.agents[a].contact = None;
            self.set_state(a, AgentState::Offline, now);
        } else if self.agents[a].away {
            self.set_state(a, AgentState::Away, now);
        } else {
            self.make_available(a, now, keep_place);
            self.pick_call(a, now, out);
        }
    }

    /// The wrap-up is over.
    pub(super) fn end_wrap_up(&mut self, a: usize, now: Millis, out: &mut Vec<AcdOut>) {
        if self.agents[a].state == AgentState::WrapUp {
            self.agent_free(a, now, false, out);
        }
    }

    /// The agent is no longer registered (log-out, expiry, or removal from the configuration).
    /// A ringing offer is cancelled and its call offered to the next agent; an agent on a call
    /// stays on it and is offline afterwards. Calls that nobody logged in can take any more get
    /// [`AcdOut::NoAgents`].
    pub(super) fn go_offline(&mut self, a: usize, now: Millis, out: &mut Vec<AcdOut>) {
        if let Some(at) = self.agents[a].expires_at.take() {
            self.timers.remove(&(at, Timer::Expiry(a)));
        }
        self.set_counted(a, false);
        self.agents[a].away = false;
        match self.agents[a].state {
            AgentState::Offline | AgentState::OnCall => {}
            AgentState::Available => {
                self.leave_available(a);
                self.offline(a, now);
            }
            AgentState::Away => self.offline(a, now),
            AgentState::WrapUp => {
                if let Some(at) = self.agents[a].wrap_until.take() {
                    self.timers.remove(&(at, Timer::WrapUp(a)));
                }
                self.offline(a, now);
            }
            AgentState::Ringing => {
                let call = self.agents[a].call;
                self.offline(a, now);
                if let Some(call) = call {
                    out.push(AcdOut::Cancel {
                        call,
                        agent: self.agents[a].id.clone(),
                    });
                    if self.requeue_ringing(call) {
                        self.dispatch_call(call, now, out);
                    }
                }
            }
        }
        self.apply_level_flips(now, out);
        let classes = std::mem::take(&mut self.agents[a].classes);
        self.sweep_no_agents(&classes, now, out);
        self.agents[a].classes = classes;
        self.recheck_retrying(now, out);
    }

    /// Marks an agent offline with nothing going on.
    fn offline(&mut self, a: usize, now: Millis) {
        let agent = &mut self.agents[a];
        agent.call = None;
        agent.contact = None;
        self.set_state(a, AgentState::Offline, now);
    }

    /// Puts a ringing call back among the waiting calls of its class (its offer ended without
    /// an answer); returns whether it was ringing.
    pub(super) fn requeue_ringing(&mut self, call: CallKey) -> bool {
        let Some(c) = self.calls.get_mut(&call) else {
            return false;
        };
        let CallState::Ringing { until, .. } = c.state else {
            return false;
        };
        self.timers.remove(&(until, Timer::Ring(call)));
        c.state = CallState::Waiting;
        self.wait_insert(call);
        true
    }
}
