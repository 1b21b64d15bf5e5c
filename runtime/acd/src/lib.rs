//! The ACD (automatic call distribution): which logged-in agent gets which waiting call.
//!
//! Like the call engine, the ACD is sans-IO: it reads no clock, opens no socket and spawns no
//! task. One [`Acd`] is fed operations (a call queued or gone, an offer answered or declined, an
//! agent registered, away or back, a conversation over), each with the current time `now`, and
//! pushes what must happen into the caller's `Vec<AcdOut>`: ring an agent, stop ringing, tell a
//! caller its place in line, or send a caller down its flow's `no_agents` path. Timers are data:
//! [`Acd::poll_timeout`] says when [`Acd::handle_timeout`] next has work (ring timeouts, wrap-up
//! ends, registration expiry, retries, coalesced position updates).
//!
//! The rules (docs/acd.md has them for operators):
//! - A call may go to an agent who has every skill of its queue and of its transfer node.
//! - Waiting calls are served by priority (higher first), then first come first served.
//! - Among available qualifying agents, the one idle longest gets the call; an agent who
//!   becomes available gets the best waiting call it qualifies for, across all queues.
//! - An offer rings for the queue's `ring_timeout`, then goes to the next agent. An agent who
//!   let a call ring out, was busy or failed is not offered that same call again until every
//!   qualifying logged-in agent has been tried; then the call pauses for [`RETRY_PAUSE_MS`]
//!   before the round starts again, so that an instantly failing phone is not rung in a loop.
//! - After a conversation the agent is in wrap-up for the queue's `wrap_up`, then available.
//! - A call whose skills no logged-in agent has (away agents count as logged in) is not queued
//!   ([`AcdOut::NoAgents`]); waiting calls get the same when their last agent logs out.
//! - [`Routing`] ([`route`], [`routing`]): `overflow QUEUE after D | when none_idle` offers a waiting call
//!   to another queue's agents too, keeping its place and time; `level N` asks for agents of
//!   level N or more while one is logged in; `strategy = "best_level"` queues offer to the
//!   highest level first; calls transferred in by an agent rank above every flow priority.
//! - An agent's transfer is checked first ([`Acd::transfer_target`],
//!   [`Acd::agent_transfer_target`]); a transfer to one agent asks for that agent's own skill
//!   ([`agent_skill`]), which every configured agent has and nobody else.
//!
//! Data structures: skills are interned to bitmasks ([`skills`]); waiting calls are grouped by
//! requirement class (the skill mask they need, the least agent level, whether agents are
//! ordered by level; a call with routes is in each class it may be taken through), each class
//! holding its waiting calls in a
//! `BTreeSet` ordered by (priority, arrival) and its available qualifying agents in a
//! `BTreeSet` ordered by idle-since, with a count of its logged-in agents ([`dispatch`]). Each
//! queue orders its calls for positions ([`queue`]). Timers are one `BTreeSet` of [`Timer`]s
//! by deadline, handled in [`timers`].

mod agents;
mod calls;
mod dispatch;
mod machine;
mod queue;
mod reload;
mod route;
mod routing;
mod skills;
mod status;
#[cfg(test)]
mod tests;
mod timers;

pub use agents::AgentState;
pub use ivr_sansio::Machine;
pub use machine::AcdInput;
pub use route::{OverflowRule, OverflowWhen, Routing};
pub use status::{AcdStatus, AgentStatus, QueueStatus};

use agents::Agent;
use dispatch::Class;
use ivr_engine::Millis;
use queue::{Queue, QueuedCall};
use serde::{Deserialize, Serialize};
use skills::{SkillSet, SkillTable};
use std::collections::{BTreeSet, HashMap, VecDeque};

/// The serve layer's key for a call (unique among the calls it has in the ACD).
pub type CallKey = u64;

/// What a deadline of [`Acd`]'s timers is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    /// A ringing offer of this call times out.
    Ring(CallKey),
    /// This call's pause after a full round of tried agents ends.
    Rest(CallKey),
    /// This agent's wrap-up ends.
    WrapUp(usize),
    /// This agent's registration expires.
    Expiry(usize),
    /// Positions of this queue are due.
    Positions(usize),
    /// An `overflow ... after` of this call is due.
    Overflow(CallKey),
}

/// How long a call pauses after every qualifying agent has been tried and the tried set is
/// cleared, before it is offered again (a phone that fails at once is not rung in a loop).
pub const RETRY_PAUSE_MS: Millis = 1_000;

/// Position updates of one call are sent at most this often (and only when they changed).
pub const POSITION_INTERVAL_MS: Millis = 1_000;

/// Where a registered agent's phone is reached (opaque to the ACD; handed back in offers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    /// The Contact URI the agent registered.
    pub uri: String,
    /// The address to send the INVITE to.
    pub addr: std::net::SocketAddr,
    /// Whether the agent registered over TCP.
    pub tcp: bool,
}

/// What the ACD asks its driver to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AcdOut {
    /// Ring `agent` for `call` (the serve layer sends an INVITE to `contact`).
    Offer {
        /// The call offered.
        call: CallKey,
        /// The agent's id (`[agents.ID]`).
        agent: String,
        /// Where the agent's phone registered.
        contact: Contact,
    },
    /// Stop ringing `agent` for `call` (ring timeout passed, the caller left, or the agent
    /// logged out; the ACD already moved on).
    Cancel {
        /// The call whose offer ends.
        call: CallKey,
        /// The agent whose phone rang.
        agent: String,
    },
    /// The caller's place in its queue changed (1 = next).
    Position {
        /// The call.
        call: CallKey,
        /// Its place among the calls of its queue (1 = next).
        position: u32,
    },
    /// Nobody who could take this call is logged in: the flow takes its no_agents path; the
    /// call is no longer queued.
    NoAgents {
        /// The call.
        call: CallKey,
    },
    /// An operation on an agent was refused ([`AcdInput::Register`] of an agent not in the
    /// configuration, [`AcdInput::SetAway`] of one not logged in).
    Refused {
        /// The agent's id as given.
        agent: String,
        /// Why.
        error: AcdError,
    },
}

/// Why an offer failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Decline {
    /// The agent's phone answered busy (486, 600).
    Busy,
    /// The agent's phone rang without an answer (408, 480, or the phone gave up itself).
    NoAnswer,
    /// The INVITE failed otherwise (no route, transport error, another final response).
    Failed,
    /// The agent's phone or console went away while it rang (the console's page closed, a
    /// phone answered 410 Gone): neither a refusal nor a ring-out.
    Lost,
}

/// A request the ACD refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum AcdError {
    /// No `[agents.ID]` of that id in the configuration.
    #[error("there is no agent `{0}` in ivr.toml")]
    UnknownAgent(String),
    /// The agent is not registered (or its registration expired).
    #[error("agent `{0}` is not logged in")]
    NotLoggedIn(String),
}

/// Why a transfer to a queue is refused ([`Acd::transfer_target`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum TransferRefused {
    /// No `[queues.NAME]` of that name in the configuration.
    #[error("there is no queue `{0}`")]
    UnknownQueue(String),
    /// No agent who could take a call of that queue is logged in.
    #[error("no agent of queue `{0}` is logged in")]
    NoAgents(String),
    /// No `[agents.ID]` of that id in the configuration.
    #[error("there is no agent `{0}`")]
    UnknownAgent(String),
    /// The agent is not logged in.
    #[error("agent `{0}` is not logged in")]
    AgentOffline(String),
    /// The agent has the skills of no queue.
    #[error("agent `{0}` has the skills of no queue")]
    NoQueue(String),
}

/// The node skill that only agent `id` has (a transfer to that agent asks for it). Its
/// first character is a control character, which no skill of `ivr.toml` holds.
pub fn agent_skill(id: &str) -> String {
    format!("\u{1}agent:{id}")
}

/// The ACD: every agent and queue of a deployment and every call waiting for an agent.
#[derive(Debug, Default)]
pub struct Acd {
    /// Skill names interned to bit numbers.
    skills: SkillTable,
    /// Agents by index; removed agents stay as unconfigured entries (indices are never reused).
    agents: Vec<Agent>,
    /// Agent id to index.
    agent_ids: HashMap<String, usize>,
    /// Queues by index; removed queues stay as unconfigured entries.
    queues: Vec<Queue>,
    /// Queue name to index.
    queue_ids: HashMap<String, usize>,
    /// Requirement classes by index.
    classes: Vec<Class>,
    /// Requirement (skill mask, least agent level, ordered by level) to class index.
    class_ids: HashMap<(SkillSet, u8, bool), usize>,
    /// Classes asking for a level whose count of logged-in agents went from 0 to more or
    /// back since it was last looked at (their calls' level fallback turns on or off).
    level_flips: Vec<usize>,
    /// Every call in the ACD: waiting, ringing, or connected until its conversation is over.
    calls: HashMap<CallKey, QueuedCall>,
    /// Calls with a non-empty tried set (checked again when an agent logs out).
    retrying: BTreeSet<CallKey>,
    /// Pending timers by deadline.
    timers: BTreeSet<(Millis, Timer)>,
    /// Arrival counter (first come first served).
    seq: u64,
    /// Availability counter (breaks ties between agents available since the same instant).
    idle_seq: u64,
    /// Outputs not yet taken with `poll_output`, oldest first.
    pending: VecDeque<AcdOut>,
    /// Reused buffer of the operations' outputs.
    scratch: Vec<AcdOut>,
}

impl Acd {
    /// An ACD for the `[queues.*]` and `[agents.*]` of a configuration: every agent offline,
    /// no call waiting.
    pub fn new(config: &ivr_compiler::config::Config) -> Acd {
        let mut acd = Acd::default();
        acd.reconfigure(config, 0, &mut Vec::new());
        acd
    }

    /// The agent ringing for `call` or talking with it, if any. The serve layer checks it
    /// before reporting an answer: a late 200 OK from an agent whose offer was cancelled is
    /// not this call's answer.
    pub fn agent_of(&self, call: CallKey) -> Option<&str> {
        let agent = self.calls.get(&call)?.agent()?;
        Some(self.agents[agent].id.as_str())
    }

    /// Whether an agent may transfer a call to `queue` now: the queue is configured and an
    /// agent with its skills is logged in (any state but offline). A transfer the ACD would
    /// answer at once with [`AcdOut::NoAgents`] is refused instead, and the caller stays with
    /// the agent who transferred.
    pub fn transfer_target(&self, queue: &str) -> Result<(), TransferRefused> {
        let q = self
            .queue_ids
            .get(queue)
            .map(|&q| &self.queues[q])
            .filter(|q| q.configured)
            .ok_or_else(|| TransferRefused::UnknownQueue(queue.to_string()))?;
        let served = self
            .agents
            .iter()
            .any(|a| a.configured && a.state != AgentState::Offline && q.mask.is_subset(&a.mask));
        if served {
            Ok(())
        } else {
            Err(TransferRefused::NoAgents(queue.to_string()))
        }
    }

    /// Whether an agent may transfer a call to agent `agent` now, and through which queue:
    /// `agent` is configured and logged in (any state but offline: a busy agent gets the call
    /// when free); the queue is `prefer` when `agent` has its skills, else the first
    /// configured queue whose skills it has. The call is then queued there with the node
    /// skill [`agent_skill`]`(agent)`, which only that agent has.
    pub fn agent_transfer_target(
        &self,
        agent: &str,
        prefer: &str,
    ) -> Result<String, TransferRefused> {
        let a = self
            .agent_ids
            .get(agent)
            .map(|&a| &self.agents[a])
            .filter(|a| a.configured)
            .ok_or_else(|| TransferRefused::UnknownAgent(agent.to_string()))?;
        if a.state == AgentState::Offline {
            return Err(TransferRefused::AgentOffline(agent.to_string()));
        }
        let fits = |q: &Queue| q.configured && q.mask.is_subset(&a.mask);
        if let Some(q) = self.queue_ids.get(prefer).map(|&q| &self.queues[q])
            && fits(q)
        {
            return Ok(q.name.clone());
        }
        self.queues
            .iter()
            .find(|q| fits(q))
            .map(|q| q.name.clone())
            .ok_or_else(|| TransferRefused::NoQueue(agent.to_string()))
    }

    /// Whether `call` is in the ACD (waiting, ringing or connected).
    pub fn contains(&self, call: CallKey) -> bool {
        self.calls.contains_key(&call)
    }
}

/// Milliseconds of a configured duration as [`Millis`].
fn millis(ms: u64) -> Millis {
    Millis::try_from(ms).unwrap_or(Millis::MAX)
}
