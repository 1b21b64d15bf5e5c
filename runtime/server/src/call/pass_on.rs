//! An agent passes its caller on (blind transfer): from the agent's SIP phone with REFER
//! (RFC 3515; the core answered 202 and NOTIFY `100 Trying`, we send the final NOTIFY), or
//! from the agent console. A queue target goes back to the ACD at the head of that queue, an
//! agent target to the head of a queue for that agent only ([`AcdMsg::Transfer`]), with the
//! screen pop plus `transferred_by` and `note`; the first agent's leg ends once the ACD took
//! the call. A number is dialled through the default trunk (`consult.rs`): the caller stays
//! with the agent until it answers (no trunk: refused, 403; the trunk full: 503). A refused
//! target leaves the caller with the agent, and the REFER's NOTIFY (or the console) says why.

use super::*;
use crate::acd_task::{PassOrigin, TransferTo};
pub use crate::pass_refusal::PassRefusal;
use crate::screen_pop::NOTE_CHARS;
use ivr_acd::TransferRefused;

/// The playback item of the hold music of a passed-on caller.
pub(super) const HOLD_SEQ: u32 = u32::MAX;

/// Where an agent asks to pass the caller on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PassTarget {
    /// `sip:queue.NAME@...`, or the console's queue.
    Queue(String),
    /// `sip:AGENT@...`: an agent id of `[agents.*]`.
    Agent(String),
    /// Any other number: through a trunk.
    Number(String),
}

impl PassTarget {
    /// Reads the user part of a Refer-To URI (or the console's target): `queue.NAME`, an agent
    /// id of `config`, a number; `None` for anything else.
    pub fn parse(user: &str, config: &ivr_compiler::config::Config) -> Option<PassTarget> {
        if let Some(q) = user.strip_prefix("queue.") {
            return (!q.is_empty()).then(|| PassTarget::Queue(q.to_string()));
        }
        if config.agents.contains_key(user) {
            return Some(PassTarget::Agent(user.to_string()));
        }
        crate::trunk_channels::is_number(user).then(|| PassTarget::Number(user.to_string()))
    }
}

impl Driver {
    /// The agent's phone sent REFER on the leg `tag`.
    pub(super) fn on_refer(&mut self, refer: ivr_sip::ua::Refer) {
        let Some(tag) = self.leg.as_ref().map(|l| l.tag.clone()) else {
            return;
        };
        let origin = PassOrigin::Refer(tag);
        if refer.replaces.is_some() {
            // Attended transfer (RFC 3891): `attended.rs`.
            return self.attended(refer.replaces.as_deref(), origin);
        }
        match PassTarget::parse(&refer.user, &self.deployment.config) {
            Some(target) => self.pass_on(target, String::new(), origin),
            None => self.pass_refused(origin, &PassRefusal::Unknown(refer.user)),
        }
    }

    /// The console (or HTTP) asks for agent `by`'s transfer to `target`.
    pub(super) fn on_pass_request(
        &mut self,
        by: &str,
        target: &str,
        note: String,
        reply: tokio::sync::oneshot::Sender<Result<(), PassRefusal>>,
    ) {
        let origin = PassOrigin::Console(reply);
        let talking = self
            .leg
            .as_ref()
            .is_some_and(|l| l.connected && l.agent.as_deref() == Some(by));
        if !talking {
            return self.pass_refused(origin, &PassRefusal::NotConnected);
        }
        let target = target.trim();
        match PassTarget::parse(target, &self.deployment.config) {
            Some(t) => self.pass_on(t, note, origin),
            None => self.pass_refused(origin, &PassRefusal::Unknown(target.to_string())),
        }
    }

    /// Passes the caller on to `target` for the agent talking with it.
    pub(super) fn pass_on(&mut self, target: PassTarget, note: String, origin: PassOrigin) {
        let agent = self
            .leg
            .as_ref()
            .filter(|l| l.connected)
            .and_then(|l| l.agent.clone());
        let key = self
            .transfer
            .as_ref()
            .filter(|t| t.connected)
            .and_then(|t| t.key);
        let (Some(agent), Some(from), None) = (agent, key, self.passing.as_ref()) else {
            self.pass_refused(origin, &PassRefusal::NotConnected);
            return;
        };
        let to = match target {
            PassTarget::Queue(q) => TransferTo::Queue(q),
            PassTarget::Agent(a) if a == agent => {
                return self.pass_refused(origin, &PassRefusal::Yourself);
            }
            PassTarget::Agent(a) => TransferTo::Agent(a),
            // Through the default trunk: the caller stays with the agent until it answers.
            PassTarget::Number(n) => return self.start_consult(&agent, &n, note, origin, true),
        };
        tracing::info!(agent = %agent, target = ?to, "the agent transfers the caller");
        let mut pop = self.last_pop.clone().unwrap_or_default();
        if let TransferTo::Queue(q) = &to {
            pop.queue.clone_from(q);
        }
        pop.transferred_by = Some(agent);
        let note: String = note.trim().chars().take(NOTE_CHARS).collect();
        pop.note = (!note.is_empty()).then_some(note);
        self.passing = Some((origin, pop.clone()));
        let _ = self.services.acd.send(AcdMsg::Transfer {
            from,
            call: random_u64(),
            target: to,
            pop: Box::new(pop),
            to: self.queue_tx.clone(),
        });
    }

    /// The ACD's answer to the transfer.
    pub(super) fn on_passed(&mut self, result: Result<CallKey, TransferRefused>) {
        let Some((origin, pop)) = self.passing.take() else {
            // Nobody asked (any more): a call it took must not wait for nobody.
            if let Ok(key) = result {
                let _ = self
                    .services
                    .acd
                    .send(AcdMsg::Leave(key, LeaveReason::Hangup));
            }
            return;
        };
        match result {
            Ok(key) => {
                let still = self.transfer.as_ref().is_some_and(|t| t.connected);
                if !still {
                    // The conversation ended meanwhile (either side hung up).
                    let _ = self
                        .services
                        .acd
                        .send(AcdMsg::Leave(key, LeaveReason::Hangup));
                    self.pass_refused(origin, &PassRefusal::NotConnected);
                    return;
                }
                self.pass_done(origin, Ok(()));
                // The next agent's INVITE carries the new screen pop.
                self.last_pop = Some(pop);
                // The first agent's leg ends (BYE after the final NOTIFY); the caller waits.
                self.hang_up_leg();
                self.transfer = Some(Transfer {
                    key: Some(key),
                    connected: false,
                    passed: true,
                });
                self.play_hold();
            }
            Err(e) => self.pass_refused(origin, &PassRefusal::Queue(e)),
        }
    }

    /// While a passed-on caller waits for the next agent: the transfer node's `music` again,
    /// in a loop (playback item [`HOLD_SEQ`], which the engine never uses).
    pub(super) fn play_hold(&self) {
        let waiting = self
            .transfer
            .as_ref()
            .is_some_and(|t| t.passed && !t.connected);
        if !waiting {
            return;
        }
        self.play_node_music(HOLD_SEQ);
    }

    /// Plays the transfer node's `music` (the call is in a transfer node) as playback item
    /// `seq`: the hold of a passed-on caller and of a consultation.
    pub(super) fn play_node_music(&self, seq: u32) {
        let flow = self.call.flow();
        let Some(Body::Transfer(t)) = flow
            .program
            .nodes
            .get(self.call.node() as usize)
            .map(|n| &n.body)
        else {
            return;
        };
        let lang = self.call.language();
        let prompts: Vec<_> = t
            .music
            .iter()
            .filter_map(|id| {
                self.deployment
                    .prompts
                    .get(lang, flow.program.prompt(*id))
                    .cloned()
            })
            .collect();
        if !prompts.is_empty() {
            self.channel.push(prompts, seq);
        }
    }

    pub(super) fn pass_refused(&mut self, origin: PassOrigin, why: &PassRefusal) {
        tracing::info!(reason = %why, "transfer refused: the caller stays with the agent");
        self.pass_done(origin, Err(why));
    }

    pub(super) fn pass_done(&mut self, origin: PassOrigin, result: Result<(), &PassRefusal>) {
        match origin {
            PassOrigin::Refer(tag) => {
                let code = result.map_or_else(PassRefusal::code, |()| 200);
                let _ = self.services.core.send(CoreMsg::ReferDone { tag, code });
            }
            PassOrigin::Console(reply) => {
                let _ = reply.send(result.map_err(Clone::clone));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_queues_agents_or_numbers() {
        let text = "[agents.2002]\nname = \"李强\"\nha1 = \"00000000000000000000000000000000\"\n";
        let mut sources = ivr_dsl::SourceMap::new();
        let file = sources.add("ivr.toml", text.to_string());
        let (config, _) =
            ivr_compiler::config::Config::parse(file, std::path::Path::new("."), text);
        assert_eq!(
            PassTarget::parse("queue.billing", &config),
            Some(PassTarget::Queue("billing".into()))
        );
        assert_eq!(
            PassTarget::parse("2002", &config),
            Some(PassTarget::Agent("2002".into()))
        );
        assert_eq!(
            PassTarget::parse("+8613800000001", &config),
            Some(PassTarget::Number("+8613800000001".into()))
        );
        assert_eq!(PassTarget::parse("queue.", &config), None);
        assert_eq!(PassTarget::parse("alice", &config), None);
        // A number has a digit: `+`, `*` or `#` alone is not one (no `sip:+@trunk`).
        for sign in ["+", "*", "#", "+#", "**"] {
            assert_eq!(PassTarget::parse(sign, &config), None, "{sign}");
        }
        assert_eq!(
            PassTarget::parse("*21#", &config),
            Some(PassTarget::Number("*21#".into()))
        );
        assert_eq!(
            PassRefusal::Queue(TransferRefused::NoAgents("x".into())).code(),
            480
        );
    }
}
