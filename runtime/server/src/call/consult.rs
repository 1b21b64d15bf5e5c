//! An agent consults before passing the caller on, and transfers to numbers.
//!
//! A consultation ([`ConsultAction::Start`], from the console or `POST /agents/ID/consult`):
//! the caller holds (the transfer node's `music` in a loop, or silence when it has none), the
//! target is rung on a leg of its own — a queue or an agent through the ACD (first in line, like
//! a transfer, [`AcdMsg::Consult`]), a number through the default trunk — and once it answers
//! the agent's leg is bridged to it ([`relay_between`]). Then [`ConsultAction::Complete`]
//! moves the caller's bridge to the target ([`Driver::bridge_caller_to`]) and releases the
//! agent (wrap-up), the target agent having seen the screen pop with `transferred_by` and the
//! note; or [`ConsultAction::Cancel`] ends the target's leg and bridges the caller back to the
//! agent. A target that refuses, does not answer within [`RING_LIMIT`] or hangs up returns the
//! agent to the caller, and the console says why. One consultation per call at a time.
//!
//! A blind transfer to a number (the console's transfer, `POST /agents/ID/transfer`, a REFER
//! to a number) is the same leg without the hold: the caller stays with the agent while the
//! number rings, goes to it once it answers, and stays with the agent when it does not.

use super::rewire::{LegParts, LegSpec, relay_between};
use super::*;
use crate::acd_task::{PassOrigin, TransferTo};
use crate::agent_hub::ToPage;
use crate::consult_request::{ConsultAction, ConsultRefusal};
use crate::pass_refusal::PassRefusal;
use crate::screen_pop::NOTE_CHARS;
use pass_on::PassTarget;
use tokio::sync::OwnedSemaphorePermit;

/// The playback item of the consultation's hold music.
pub(super) const CONSULT_HOLD_SEQ: u32 = u32::MAX - 1;
/// How long the target may ring (through every agent a queue offers it to) before the agent
/// is back with the caller.
pub(super) const RING_LIMIT: Duration = Duration::from_secs(30);

/// The consultation (or transfer to a number) of a call in progress.
pub(super) struct Consult {
    /// The agent who consults.
    by: String,
    /// The target as the agent named it.
    target: String,
    /// The consultation's key in the ACD (queue and agent targets).
    key: Option<CallKey>,
    /// The target is one agent: its first refusal ends the consultation.
    one_agent: bool,
    /// The target's leg, once placed.
    leg: Option<Leg>,
    /// The target answered (and, through the ACD, the answer was taken).
    connected: bool,
    /// What a target agent sees.
    pop: ScreenPop,
    /// When the target has rung long enough.
    until: Instant,
    /// Who waits for the answer: the start of an ACD target (until the ACD took it), or a
    /// blind transfer to a number (until it answered).
    origin: Option<PassOrigin>,
    /// A blind transfer to a number: no hold, completed at the answer.
    blind: bool,
    /// A number: the trunk's From user and credentials.
    trunk: Option<(String, Option<(String, String)>)>,
    /// The trunk's channel until the leg is placed (then the leg holds it).
    channel: Option<OwnedSemaphorePermit>,
}

impl Driver {
    /// Whether the caller holds while its agent consults.
    pub(super) fn holding(&self) -> bool {
        self.consult.as_ref().is_some_and(|c| !c.blind)
    }

    /// When the consultation's target has rung long enough, if it rings.
    pub(super) fn consult_deadline(&self) -> Option<Instant> {
        self.consult
            .as_ref()
            .filter(|c| !c.connected)
            .map(|c| c.until)
    }

    /// The agent `by` asks something of the consultation (from the ACD task).
    pub(super) fn on_consult_request(
        &mut self,
        by: &str,
        action: ConsultAction,
        reply: tokio::sync::oneshot::Sender<Result<(), PassRefusal>>,
    ) {
        match action {
            ConsultAction::Start { target, note } => {
                self.start_consult(by, &target, note, PassOrigin::Console(reply), false);
            }
            ConsultAction::Complete => {
                let _ = reply.send(self.complete_consult(by));
            }
            ConsultAction::Cancel => {
                let _ = reply.send(self.cancel_consult(by));
            }
        }
    }

    /// Starts a consultation of `target` for agent `by` (`blind`: a transfer to a number).
    pub(super) fn start_consult(
        &mut self,
        by: &str,
        target: &str,
        note: String,
        origin: PassOrigin,
        blind: bool,
    ) {
        let talking = self
            .leg
            .as_ref()
            .is_some_and(|l| l.connected && l.agent.as_deref() == Some(by));
        if !talking {
            return answer(&self.services, origin, Err(PassRefusal::NotConnected));
        }
        if self.consult.is_some() || self.passing.is_some() {
            return answer(
                &self.services,
                origin,
                Err(PassRefusal::Consult(ConsultRefusal::Busy)),
            );
        }
        let target = target.trim();
        let parsed = match PassTarget::parse(target, &self.deployment.config) {
            Some(PassTarget::Agent(a)) if a == by => Err(PassRefusal::Yourself),
            Some(t) => Ok(t),
            None => Err(PassRefusal::Unknown(target.to_string())),
        };
        let parsed = match parsed {
            Ok(t) => t,
            Err(e) => return answer(&self.services, origin, Err(e)),
        };
        let mut pop = self.last_pop.clone().unwrap_or_default();
        pop.transferred_by = Some(by.to_string());
        let note: String = note.trim().chars().take(NOTE_CHARS).collect();
        pop.note = (!note.is_empty()).then_some(note);
        let mut c = Consult {
            by: by.to_string(),
            target: target.to_string(),
            key: None,
            one_agent: matches!(parsed, PassTarget::Agent(_)),
            leg: None,
            connected: false,
            pop,
            until: Instant::now() + RING_LIMIT,
            origin: None,
            blind,
            trunk: None,
            channel: None,
        };
        match parsed {
            PassTarget::Queue(_) | PassTarget::Agent(_) => {
                let to = match parsed {
                    PassTarget::Queue(q) => TransferTo::Queue(q),
                    PassTarget::Agent(a) => TransferTo::Agent(a),
                    PassTarget::Number(_) => return,
                };
                let key = random_u64();
                let (tx, rx) = mpsc::unbounded_channel();
                c.key = Some(key);
                // Answered once the ACD took (or refused) the target.
                c.origin = Some(origin);
                tracing::info!(agent = %by, target = ?to, "consultation: asking the ACD");
                let _ = self.services.acd.send(AcdMsg::Consult {
                    call: key,
                    target: to,
                    pop: Box::new(c.pop.clone()),
                    to: tx,
                });
                self.consult_rx = Some(rx);
            }
            PassTarget::Number(number) => {
                let config = &self.deployment.config;
                let Some((name, trunk)) = crate::trunk_channels::default_trunk(config) else {
                    let why = ConsultRefusal::NoTrunk(number);
                    return answer(&self.services, origin, Err(PassRefusal::Consult(why)));
                };
                let Some(channel) = self.services.trunks.try_take(name, trunk.max_calls) else {
                    let why = ConsultRefusal::TrunkFull {
                        number,
                        trunk: name.to_string(),
                    };
                    return answer(&self.services, origin, Err(PassRefusal::Consult(why)));
                };
                c.channel = Some(channel);
                c.trunk = Some((
                    trunk.caller_id.clone(),
                    trunk.username.clone().zip(trunk.password.clone()),
                ));
                let uri = trunk.target.uri_for(&number);
                tracing::info!(agent = %by, trunk = %name, number = %number, blind, "calling a number through the trunk");
                let (tx, sip) = (self.internal.clone(), self.services.sip.clone());
                tokio::spawn(async move {
                    let peer = resolve(&uri, &sip).await;
                    let _ = tx.send(Internal::ConsultResolved { target: uri, peer });
                });
                if blind {
                    c.origin = Some(origin);
                } else {
                    answer(&self.services, origin, Ok(()));
                }
                tell(&self.services, &c, "ringing", "");
            }
        }
        self.consult = Some(Box::new(c));
        if !blind {
            self.hold_caller();
        }
    }

    /// The trunk's address was looked up: place the number's leg.
    pub(super) fn consult_resolved(
        &mut self,
        target: &str,
        peer: Result<(Peer, Option<TcpLink>), u16>,
    ) {
        let Some(c) = &self.consult else { return };
        let Some((from_user, credentials)) = c.trunk.clone() else {
            return;
        };
        let placed = peer.and_then(|(peer, link)| {
            self.place_leg(
                target,
                LegSpec {
                    peer,
                    agent: None,
                    // A carrier gets no caller data.
                    pop: None,
                    from_user,
                    credentials,
                    link,
                },
            )
        });
        self.consult_placed(placed);
    }

    fn consult_placed(&mut self, placed: Result<LegParts, u16>) {
        match placed {
            Ok(mut parts) => {
                self.consult_events = Some(parts.events);
                self.consult_sock = Some(parts.sock);
                if let Some(c) = &mut self.consult {
                    // A number's trunk channel lives with its leg (after a completion too).
                    parts.leg.channel = c.channel.take();
                    c.leg = Some(parts.leg);
                }
            }
            Err(code) => self.consult_leg_failed(code),
        }
    }

    /// What the ACD says of the consultation.
    pub(super) fn on_consult_queue(&mut self, ev: QueueEvent) {
        let Some(c) = &mut self.consult else {
            return self.on_queue_event(ev);
        };
        match ev {
            QueueEvent::Passed(Ok(_)) => {
                if let Some(origin) = c.origin.take() {
                    answer(&self.services, origin, Ok(()));
                }
                tell(&self.services, c, "ringing", "");
            }
            QueueEvent::Passed(Err(e)) => {
                c.key = None;
                self.consult_failed(PassRefusal::Queue(e));
            }
            QueueEvent::Offer {
                agent,
                contact,
                conn,
                ..
            } => {
                let peer = Peer {
                    addr: contact.addr,
                    proto: if contact.tcp { Proto::Tcp } else { Proto::Udp },
                    conn,
                };
                self.end_consult_leg();
                let Some(c) = &self.consult else { return };
                let spec = LegSpec {
                    peer,
                    agent: Some(agent),
                    pop: Some(c.pop.clone()),
                    from_user: self.call.info().caller.clone(),
                    credentials: None,
                    link: None,
                };
                let placed = self.place_leg(&contact.uri, spec);
                self.consult_placed(placed);
            }
            QueueEvent::Cancel { agent } => {
                if c.leg.as_ref().and_then(|l| l.agent.as_deref()) == Some(agent.as_str()) {
                    self.end_consult_leg();
                }
            }
            QueueEvent::Connected => self.consult_connected(),
            QueueEvent::NoAgents => {
                let why = ConsultRefusal::Failed {
                    target: c.target.clone(),
                    why: "has nobody available".into(),
                };
                self.consult_failed(PassRefusal::Consult(why));
            }
            QueueEvent::Position(_) => {}
            // The target agent asks before it has the caller.
            QueueEvent::PassOn { reply, .. } | QueueEvent::Consult { reply, .. } => {
                let _ = reply.send(Err(PassRefusal::NotConnected));
            }
        }
    }

    /// An event of the target's leg (`None`: the core forgot it).
    pub(super) fn on_consult_leg(&mut self, ev: Option<LegEvent>) {
        let Some(c) = &mut self.consult else { return };
        match ev {
            Some(LegEvent::Ringing) => {}
            Some(LegEvent::Answered(n) | LegEvent::Media(n)) => {
                let Some(l) = &mut c.leg else { return };
                let answered = l.side.is_none();
                l.remote = if n.direction.remote_receives() {
                    n.remote
                } else {
                    None
                };
                l.latch.relearn(n.remote);
                l.side = Some(Side {
                    law: n.law,
                    pt: n.pt,
                    event_pt: n.event_pt,
                });
                if !answered {
                    return;
                }
                match (c.key, l.agent.clone()) {
                    (Some(call), Some(agent)) => {
                        let _ = self.services.acd.send(AcdMsg::Answered { call, agent });
                    }
                    _ => self.consult_connected(),
                }
            }
            Some(LegEvent::Failed(code)) => self.consult_leg_failed(code),
            None => self.consult_leg_failed(500),
            Some(LegEvent::Dialog(_)) => {}
            Some(LegEvent::Refer(_)) => {
                // The target cannot pass on a caller it does not have yet.
                if let Some(l) = &c.leg {
                    let tag = l.tag.clone();
                    let _ = self
                        .services
                        .core
                        .send(CoreMsg::ReferDone { tag, code: 403 });
                }
            }
            Some(LegEvent::Bye) => {
                tracing::info!("the consultation's target hung up");
                self.consult_events = None;
                self.consult_sock = None;
                c.leg = None;
                let why = ConsultRefusal::Failed {
                    target: c.target.clone(),
                    why: "hung up".into(),
                };
                self.consult_failed(PassRefusal::Consult(why));
            }
        }
    }

    fn consult_leg_failed(&mut self, code: u16) {
        let Some(c) = &mut self.consult else { return };
        tracing::info!(code, target = %c.target, "the consultation's call failed");
        let one_agent = c.one_agent;
        let (key, target) = (c.key, c.target.clone());
        self.consult_events = None;
        self.consult_sock = None;
        c.leg = None;
        match key {
            // A queue tries its next agent (until the ring limit).
            Some(key) if !one_agent => {
                let why = match code {
                    486 | 600 | 603 => Decline::Busy,
                    408 | 480 | 487 => Decline::NoAnswer,
                    crate::agent_hub::GONE => Decline::Lost,
                    _ => Decline::Failed,
                };
                let _ = self.services.acd.send(AcdMsg::Declined(key, why));
            }
            _ => {
                let why = ConsultRefusal::failed(&target, code);
                self.consult_failed(PassRefusal::Consult(why));
            }
        }
    }

    /// The target answered (and the ACD took it).
    fn consult_connected(&mut self) {
        let Some(c) = &mut self.consult else { return };
        let Some(l) = &mut c.leg else { return };
        if l.side.is_none() || c.connected {
            return;
        }
        l.connected = true;
        c.connected = true;
        tracing::info!(target = %c.target, blind = c.blind, "the consultation's target answered");
        if c.blind {
            let _ = self.finish_consult();
        } else {
            tell(&self.services, c, "connected", "");
        }
    }

    /// The ring limit passed without an answer.
    pub(super) fn consult_timed_out(&mut self) {
        let Some(c) = &self.consult else { return };
        if c.connected {
            return;
        }
        let why = ConsultRefusal::Failed {
            target: c.target.clone(),
            why: "did not answer".into(),
        };
        self.consult_failed(PassRefusal::Consult(why));
    }

    /// The consultation is over without reaching the target: the agent is back with the
    /// caller, and hears why.
    fn consult_failed(&mut self, why: PassRefusal) {
        let Some(mut c) = self.consult.take() else {
            return;
        };
        tracing::info!(reason = %why, "consultation over: back with the caller");
        self.withdraw(&mut c);
        tell(&self.services, &c, "failed", &why.to_string());
        if let Some(origin) = c.origin.take() {
            answer(&self.services, origin, Err(why));
        }
        self.unhold_caller();
    }

    /// The agent completes: the caller goes to the target.
    fn complete_consult(&mut self, by: &str) -> Result<(), PassRefusal> {
        match &self.consult {
            Some(c) if c.by == by && c.connected => self.finish_consult(),
            Some(c) if c.by == by => Err(PassRefusal::Consult(ConsultRefusal::NotAnswered)),
            _ => Err(PassRefusal::Consult(ConsultRefusal::None)),
        }
    }

    /// Moves the caller to the connected target and releases the first agent.
    fn finish_consult(&mut self) -> Result<(), PassRefusal> {
        let Some(mut c) = self.consult.take() else {
            return Err(PassRefusal::Consult(ConsultRefusal::None));
        };
        let (Some(leg), Some(events), Some(sock)) = (
            c.leg.take(),
            self.consult_events.take(),
            self.consult_sock.take(),
        ) else {
            return Err(PassRefusal::Consult(ConsultRefusal::NotAnswered));
        };
        self.consult_rx = None;
        tracing::info!(agent = %c.by, target = %c.target, "consultation completed: the caller goes to the target");
        let agent = leg.agent.clone();
        // The first agent's page first, before its leg ends.
        self.services.consoles.notify(
            &c.by,
            ToPage::Transferred {
                target: c.target.clone(),
            },
        );
        if let Some(origin) = c.origin.take() {
            answer(&self.services, origin, Ok(()));
        }
        let old = self.bridge_caller_to(LegParts { leg, events, sock });
        if let Some(old) = old {
            self.end_parts(old);
        }
        let first = self.transfer.take().and_then(|t| t.key);
        if let Some(key) = first {
            let _ = self.services.acd.send(AcdMsg::ConversationOver(key));
        }
        if let Some(key) = c.key {
            // The target's key is the call's now: the ACD tells the call, not the consultation.
            let _ = self.services.acd.send(AcdMsg::Redirect {
                call: key,
                to: self.queue_tx.clone(),
            });
        }
        self.transfer = Some(Transfer {
            key: c.key,
            connected: true,
            passed: false,
        });
        self.last_pop = Some(c.pop.clone());
        self.recording_agent(agent.clone());
        if agent.is_some() {
            // The record names the agent the caller talks with now (as after a phone's
            // attended transfer); a number keeps the first agent.
            self.feed(Event::Transfer(TransferUpdate::Answered { agent }));
        }
        Ok(())
    }

    /// The agent cancels: the target's leg ends, the caller is back with the agent.
    fn cancel_consult(&mut self, by: &str) -> Result<(), PassRefusal> {
        match self.consult.take() {
            Some(mut c) if c.by == by => {
                tracing::info!(agent = %by, target = %c.target, "consultation cancelled: back with the caller");
                self.withdraw(&mut c);
                tell(&self.services, &c, "cancelled", "");
                self.unhold_caller();
                Ok(())
            }
            other => {
                self.consult = other;
                Err(PassRefusal::Consult(ConsultRefusal::None))
            }
        }
    }

    /// The first agent's leg ended during the consultation: with the target on the line, the
    /// caller goes to it (as a completion); else the consultation ends too. `true` when the
    /// caller went to the target (the agent's BYE is handled).
    pub(super) fn agent_left_consult(&mut self) -> bool {
        match &self.consult {
            Some(c) if c.connected && !c.blind => self.finish_consult().is_ok(),
            Some(_) => {
                if let Some(mut c) = self.consult.take() {
                    self.withdraw(&mut c);
                    if let Some(origin) = c.origin.take() {
                        answer(&self.services, origin, Err(PassRefusal::NotConnected));
                    }
                }
                false
            }
            None => false,
        }
    }

    /// The call ends (or its transfer does): the consultation with it.
    pub(super) fn end_consult(&mut self) {
        if let Some(mut c) = self.consult.take() {
            self.withdraw(&mut c);
            tell(&self.services, &c, "cancelled", "");
            if let Some(origin) = c.origin.take() {
                answer(&self.services, origin, Err(PassRefusal::NotConnected));
            }
        }
    }

    /// Ends the target's leg and gives the ACD its key back.
    fn withdraw(&mut self, c: &mut Consult) {
        if let Some(leg) = c.leg.take()
            && let (Some(events), Some(sock)) =
                (self.consult_events.take(), self.consult_sock.take())
        {
            self.end_parts(LegParts { leg, events, sock });
        }
        self.consult_events = None;
        self.consult_sock = None;
        self.consult_rx = None;
        if let Some(key) = c.key.take() {
            let msg = if c.connected {
                AcdMsg::ConversationOver(key)
            } else {
                AcdMsg::Leave(key, LeaveReason::Withdrawn)
            };
            let _ = self.services.acd.send(msg);
        }
    }

    /// Ends the target's leg only (a queue's next offer may come).
    fn end_consult_leg(&mut self) {
        let Some(c) = &mut self.consult else { return };
        if let Some(leg) = c.leg.take()
            && let (Some(events), Some(sock)) =
                (self.consult_events.take(), self.consult_sock.take())
        {
            self.end_parts(LegParts { leg, events, sock });
        }
    }

    /// The caller holds: the pacer speaks to it again, the node's music in a loop (or silence).
    fn hold_caller(&mut self) {
        self.channel.set_remote(self.remote);
        self.play_consult_hold();
    }

    /// The transfer node's `music`, once more (the playback of [`CONSULT_HOLD_SEQ`] ended).
    pub(super) fn play_consult_hold(&self) {
        if !self.holding() {
            return;
        }
        self.play_node_music(CONSULT_HOLD_SEQ);
    }

    /// The caller is back with the agent (if the agent is still there).
    fn unhold_caller(&mut self) {
        self.channel.stop();
        if self.bridged() {
            self.channel.set_remote(None);
        }
    }

    /// The caller's packet while it holds: it keeps the call alive, nobody hears it.
    pub(super) fn caller_holds(&mut self) {
        self.last_rtp = Instant::now();
        self.heard_rtp = true;
    }

    /// The agent's packet while it consults: to the target once it answered.
    pub(super) fn agent_to_target(&mut self, data: &[u8], from: SocketAddr, out: &mut [u8]) {
        let (Some(src), Some(c), Some(sock)) = (&mut self.leg, &self.consult, &self.consult_sock)
        else {
            return;
        };
        if let Some(dst) = c.leg.as_ref().filter(|l| l.connected) {
            relay_between(data, from, src, dst, sock, out);
        }
    }

    /// The target's packet: to the agent (the caller holds).
    pub(super) fn target_to_agent(&mut self, data: &[u8], from: SocketAddr, out: &mut [u8]) {
        let (Some(c), Some(dst), Some(sock)) = (&mut self.consult, &self.leg, &self.leg_sock)
        else {
            return;
        };
        if let Some(src) = c.leg.as_mut().filter(|l| l.connected) {
            relay_between(data, from, src, dst, sock, out);
        }
    }
}

/// Tells the consulting agent's console how it goes (a blind transfer's answer goes to whoever
/// asked for it instead).
fn tell(services: &Services, c: &Consult, stage: &'static str, message: &str) {
    if c.blind {
        return;
    }
    services.consoles.notify(
        &c.by,
        ToPage::Consult {
            stage,
            target: c.target.clone(),
            message: message.to_string(),
        },
    );
}

/// Answers whoever asked: the console (or HTTP) with the result, a REFER with its final
/// NOTIFY.
fn answer(services: &Services, origin: PassOrigin, result: Result<(), PassRefusal>) {
    if let Err(e) = &result {
        tracing::info!(reason = %e, "refused: the caller stays with the agent");
    }
    match origin {
        PassOrigin::Refer(tag) => {
            let code = result.as_ref().map_or_else(PassRefusal::code, |()| 200);
            let _ = services.core.send(CoreMsg::ReferDone { tag, code });
        }
        PassOrigin::Console(reply) => {
            let _ = reply.send(result);
        }
    }
}

/// Waits for the next ACD event of the consultation, if there is one.
pub(super) async fn queue_event(
    rx: &mut Option<mpsc::UnboundedReceiver<QueueEvent>>,
) -> Option<QueueEvent> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Waits until `at`, or forever.
pub(super) async fn until(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}
