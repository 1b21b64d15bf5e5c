//! What the ACD looks like now: agents and queues, for `GET /status` and monitoring.

use super::agents::AgentState;
use super::{Acd, CallKey};
use ivr_engine::Millis;
use serde::{Deserialize, Serialize};

/// The ACD at one instant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AcdStatus {
    /// Every configured agent (and removed agents still on a call), in configuration order.
    pub agents: Vec<AgentStatus>,
    /// Every configured queue (and removed queues still holding calls).
    pub queues: Vec<QueueStatus>,
}

/// One agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentStatus {
    /// Its id (`[agents.ID]`).
    pub id: String,
    /// Its display name.
    pub name: String,
    /// Its skills.
    pub skills: Vec<String>,
    /// Its level (1..5).
    pub level: u8,
    /// What it is doing.
    pub state: AgentState,
    /// Since when (ms, the driver's clock); 0 when it has not changed state since the ACD
    /// started (an agent offline from the start: unknown since when).
    pub since: Millis,
    /// The call ringing or connected. In JSON a string of its decimal digits: keys are
    /// random 64-bit numbers, beyond the integers JavaScript holds exactly (2^53).
    #[serde(serialize_with = "key_as_text", deserialize_with = "key_from_text")]
    pub call: Option<CallKey>,
    /// Calls it answered.
    pub calls_answered: u64,
    /// Offers it let ring out, was busy for, or that failed.
    pub offers_missed: u64,
}

/// One queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueStatus {
    /// Its name (`[queues.NAME]`).
    pub name: String,
    /// Skills every agent of it needs.
    pub skills: Vec<String>,
    /// Calls queued and not yet answered (including those ringing an agent).
    pub waiting: u32,
    /// How long the longest-waiting of them has waited, in ms (0 when none).
    pub longest_wait_ms: i64,
    /// Calls that entered the queue.
    pub offered: u64,
    /// Calls an agent answered.
    pub answered: u64,
    /// Calls that left before an answer (hang-up or `max_wait`).
    pub abandoned: u64,
    /// Calls sent down their `no_agents` path.
    pub no_agents: u64,
    /// Calls of this queue that overflowed (were also offered to another queue's agents).
    pub overflowed: u64,
    /// Calls of other queues this queue's agents answered through an overflow.
    pub overflow_answered: u64,
    /// Its ring timeout, ms.
    pub ring_timeout_ms: i64,
    /// Its wrap-up time, ms.
    pub wrap_up_ms: i64,
}

/// A call key as a JSON string (`null` for none).
fn key_as_text<S: serde::Serializer>(key: &Option<CallKey>, s: S) -> Result<S::Ok, S::Error> {
    match key {
        Some(k) => s.serialize_str(&k.to_string()),
        None => s.serialize_none(),
    }
}

fn key_from_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<CallKey>, D::Error> {
    let text: Option<String> = Option::deserialize(d)?;
    text.map(|t| t.parse().map_err(serde::de::Error::custom))
        .transpose()
}

impl Acd {
    /// Every agent and queue as it is at `now`.
    pub fn status(&self, now: Millis) -> AcdStatus {
        let agents = self
            .agents
            .iter()
            .filter(|a| a.configured || a.call.is_some())
            .map(|a| AgentStatus {
                id: a.id.clone(),
                name: a.name.clone(),
                skills: a.skill_names.clone(),
                level: a.level,
                state: a.state,
                since: a.since,
                call: a.call,
                calls_answered: a.answered,
                offers_missed: a.missed,
            })
            .collect();
        let queues = self
            .queues
            .iter()
            .filter(|q| q.configured || !q.order.is_empty())
            .map(|q| QueueStatus {
                name: q.name.clone(),
                skills: q.skill_names.clone(),
                waiting: u32::try_from(q.order.len()).unwrap_or(u32::MAX),
                longest_wait_ms: q
                    .arrivals
                    .first_key_value()
                    .map_or(0, |(_, &at)| now.saturating_sub(at).max(0)),
                offered: q.offered,
                answered: q.answered,
                abandoned: q.abandoned,
                no_agents: q.no_agents,
                overflowed: q.overflowed,
                overflow_answered: q.overflow_answered,
                ring_timeout_ms: q.ring_timeout,
                wrap_up_ms: q.wrap_up,
            })
            .collect();
        AcdStatus { agents, queues }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Call keys above 2^53 reach JavaScript whole: as strings.
    #[test]
    fn call_keys_are_strings_in_json() {
        let mut a = AgentStatus {
            id: "2001".into(),
            name: "Wang Fang".into(),
            skills: Vec::new(),
            level: 1,
            state: AgentState::OnCall,
            since: 1,
            call: Some(u64::MAX - 1),
            calls_answered: 0,
            offers_missed: 0,
        };
        let json = serde_json::to_value(&a).expect("json");
        assert_eq!(json["call"], serde_json::json!("18446744073709551614"));
        a.call = None;
        let json = serde_json::to_value(&a).expect("json");
        assert!(json["call"].is_null(), "{json}");
    }
}
