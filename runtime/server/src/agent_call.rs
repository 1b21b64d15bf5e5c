//! Calls an agent places from its SIP phone: the consultation call of an attended transfer.
//! A logged-in agent's phone INVITEs `sip:AGENT@ivr` (a colleague) or `sip:queue.NAME@ivr`
//! with the digest credentials of its REGISTER (the core challenges it first, and gives the
//! authenticated agent to [`crate`]'s admission); the call waits in the ACD like a call an
//! agent transferred (first in line, [`AcdMsg::PhoneConsult`]), rings the agent the ACD offers it
//! to with the screen pop of the caller the calling agent talks with plus `transferred_by`,
//! and once answered relays RTP both ways.
//!
//! The calling agent then completes the transfer with REFER on its caller's leg, `Refer-To:
//! <sip:TARGET@ivr?Replaces=...>` naming this call's dialog (RFC 3891): the caller's call
//! finds it in [`crate::consultations::Consultations`] and asks for its far leg ([`Handover`]); this call hands the
//! leg over ([`TakenLeg`]: the SIP leg, its RTP socket, its ACD key) and ends its own dialog
//! with a BYE. Everything here is bounded: one registry entry per admitted dialog (the core's
//! `max_calls`), a target that does not answer within [`RING_LIMIT`] ends the call, and so
//! does [`crate::services::Shared::rtp_timeout`] without RTP from the agent's phone (an hour
//! while the phone holds the call).

use crate::acd_task::{AcdMsg, LeaveReason, QueueEvent, TransferTo};
use crate::consultations::{Entry, Handover, TakenLeg};
use crate::pass_refusal::PassRefusal;
use crate::screen_pop::ScreenPop;
use crate::services::Services;
use crate::sip_task::{CoreMsg, Dial, DialogEvent, LegEvent};
use crate::transport::{Peer, Proto};
use ivr_acd::{CallKey, Decline};
use ivr_compiler::config::Config;
use ivr_media::bridge::{self, Side};
use ivr_media::latch::{Latch, Verdict};
use ivr_media::ports::RtpPort;
use ivr_media::rtp;
use ivr_sip::message::random_u64;
use ivr_sip::sdp::Negotiated;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot};

/// A consultation whose target has not answered within this long is ended.
pub const RING_LIMIT: Duration = Duration::from_secs(60);

/// A consultation the phone holds (no audio from it) ends after this long.
const HOLD_LIMIT: Duration = Duration::from_secs(3600);

/// How long the ACD task may take to accept the consultation's target.
const ACD_ANSWER: Duration = Duration::from_secs(5);

/// Who an agent's phone calls (the user part of its INVITE's Request-URI).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A colleague, `sip:AGENT@ivr`.
    Agent(String),
    /// A queue, `sip:queue.NAME@ivr`.
    Queue(String),
    /// A number, `sip:NUMBER@ivr`, dialled through the default trunk.
    Number(String),
}

pub use crate::trunk_channels::default_trunk;
use crate::trunk_channels::is_number;

impl Target {
    /// The target `user` names in `config`: a configured agent or queue, or a number when
    /// there is a default trunk; `None` for anything else.
    pub fn parse(user: &str, config: &Config) -> Option<Target> {
        if let Some(q) = user.strip_prefix("queue.") {
            return config
                .queues
                .contains_key(q)
                .then(|| Target::Queue(q.to_string()));
        }
        if config.agents.contains_key(user) {
            return Some(Target::Agent(user.to_string()));
        }
        (is_number(user) && default_trunk(config).is_some())
            .then(|| Target::Number(user.to_string()))
    }
}

/// An admitted call of an agent's phone, once it starts.
pub struct Incoming {
    /// The authenticated agent who calls.
    pub agent: String,
    /// Who it calls.
    pub target: Target,
    /// The dialog's RTP port.
    pub port: RtpPort,
    /// The media of the phone's side.
    pub negotiated: Negotiated,
    /// The dialog's events from the core.
    pub events: mpsc::UnboundedReceiver<DialogEvent>,
    /// Our To-tag (the dialog's key in the core).
    pub tag: String,
    /// The dialog's Call-ID.
    pub call_id: String,
    /// The phone's From tag.
    pub remote_tag: String,
    /// A number's trunk channel, taken at admission.
    pub trunk: Option<OwnedSemaphorePermit>,
}

/// The far leg while the consultation rings or talks.
struct Far {
    tag: String,
    agent: String,
    port: RtpPort,
    sock: tokio::net::UdpSocket,
    remote: Option<SocketAddr>,
    latch: Latch,
    side: Option<Side>,
}

struct Consult {
    services: Services,
    /// Our To-tag of the consultation's dialog.
    tag: String,
    agent: String,
    /// The ACD's key (none: a number, dialled through the trunk).
    key: Option<CallKey>,
    pop: ScreenPop,
    /// A number's trunk channel.
    trunk: Option<OwnedSemaphorePermit>,
    /// The phone's side.
    law_side: Side,
    remote: Option<SocketAddr>,
    latch: Latch,
    far: Option<Far>,
    far_events: Option<mpsc::UnboundedReceiver<LegEvent>>,
    /// The ACD took the target's answer: the conversation is on.
    connected: bool,
}

/// Why the consultation ends.
enum End {
    /// The phone hung up (no BYE from us).
    PhoneBye,
    /// We end it (BYE).
    Ours,
    /// Handed over to the caller's call (the leg and the ACD key live on there; that call
    /// ends this dialog).
    HandedOver,
}

/// Runs a consultation call to its end.
pub async fn run(services: Services, incoming: Incoming) {
    let Incoming {
        agent,
        target,
        mut port,
        negotiated: n,
        mut events,
        tag,
        call_id,
        remote_tag,
        trunk,
    } = incoming;
    let sock = port.take_socket().and_then(|s| {
        s.set_nonblocking(true).ok()?;
        tokio::net::UdpSocket::from_std(s).ok()
    });
    let Some(sock) = sock else {
        let _ = services.core.send(CoreMsg::Ended { tag, bye: true });
        return;
    };
    let (queue_tx, mut queue_rx) = mpsc::unbounded_channel();
    tracing::info!(agent = %agent, target = ?target, "an agent's consultation call");
    let (key, pop) = match &target {
        Target::Agent(_) | Target::Queue(_) => {
            let key = random_u64();
            let (reply_tx, reply_rx) = oneshot::channel();
            let to = match &target {
                Target::Queue(q) => TransferTo::Queue(q.clone()),
                Target::Agent(a) | Target::Number(a) => TransferTo::Agent(a.clone()),
            };
            let _ = services.acd.send(AcdMsg::PhoneConsult {
                by: agent.clone(),
                call: key,
                target: to,
                to: queue_tx,
                reply: reply_tx,
            });
            match tokio::time::timeout(ACD_ANSWER, reply_rx).await {
                Ok(Ok(Ok(pop))) => (Some(key), pop),
                Ok(Ok(Err(e))) => {
                    tracing::info!(error = %e, "the consultation's target is refused: hanging up");
                    let _ = services.core.send(CoreMsg::Ended { tag, bye: true });
                    return;
                }
                _ => {
                    let _ = services.core.send(CoreMsg::Ended { tag, bye: true });
                    return;
                }
            }
        }
        Target::Number(_) => {
            drop(queue_tx);
            (None, ScreenPop::default())
        }
    };
    let (handover_tx, mut handover_rx) = mpsc::unbounded_channel();
    services.consultations.lock().insert(
        tag.clone(),
        Entry {
            call_id,
            remote_tag,
            agent: agent.clone(),
            tx: handover_tx,
        },
    );
    let mut c = Consult {
        services: services.clone(),
        tag: tag.clone(),
        agent,
        key,
        pop,
        trunk,
        law_side: Side {
            law: n.law,
            pt: n.pt,
            event_pt: n.event_pt,
        },
        remote: n.remote.filter(|_| n.direction.remote_receives()),
        latch: Latch::new(n.remote),
        far: None,
        far_events: None,
        connected: false,
    };
    if let Target::Number(number) = &target
        && !c.dial_number(number).await
    {
        services.consultations.lock().remove(&tag);
        let _ = services.core.send(CoreMsg::Ended { tag, bye: true });
        return;
    }
    let started = Instant::now();
    let mut last_rtp = Instant::now();
    // The phone holds the consultation (sends no audio): no RTP timeout, an hour at most.
    let mut held = !n.direction.remote_sends() || n.remote.is_none();
    let rtp_timeout = services.rtp_timeout;
    let (mut buf, mut far_buf, mut out) = ([0u8; 1500], [0u8; 1500], [0u8; 1500]);
    let end = loop {
        let mut due = last_rtp + if held { HOLD_LIMIT } else { rtp_timeout };
        if !c.connected {
            due = due.min(started + RING_LIMIT);
        }
        tokio::select! {
            ev = events.recv() => match ev {
                Some(DialogEvent::Media(n)) => {
                    c.law_side = Side { law: n.law, pt: n.pt, event_pt: n.event_pt };
                    c.remote = n.remote.filter(|_| n.direction.remote_receives());
                    c.latch.relearn(n.remote);
                    held = !n.direction.remote_sends() || n.remote.is_none();
                    last_rtp = Instant::now();
                }
                Some(DialogEvent::Key(_)) => {}
                Some(DialogEvent::Bye) | None => {
                    tracing::info!("the agent hung up the consultation");
                    break End::PhoneBye;
                }
                Some(DialogEvent::Terminate) => break End::Ours,
            },
            Some(ev) = queue_rx.recv() => if let Some(end) = c.on_queue_event(ev) { break end },
            ev = far_event(&mut c.far_events) => match ev {
                Some(ev) => if let Some(end) = c.on_far_event(ev) { break end },
                None => c.far_failed(500),
            },
            h = handover_rx.recv() => if let Some(h) = h && c.hand_over(h) {
                break End::HandedOver;
            },
            r = far_packet(c.far.as_ref(), &mut far_buf) => if let Ok((len, from)) = r {
                c.relay_to_phone(&far_buf[..len], from, &sock, &mut out);
            },
            r = sock.recv_from(&mut buf) => if let Ok((len, from)) = r {
                last_rtp = Instant::now();
                c.relay_to_far(&buf[..len], from, &mut out);
            },
            () = tokio::time::sleep_until(due.into()) => {
                tracing::info!(connected = c.connected, "the consultation call timed out");
                break End::Ours;
            }
        }
    };
    services.consultations.lock().remove(&tag);
    match end {
        End::HandedOver => {}
        End::PhoneBye | End::Ours => {
            if let Some(f) = c.far.take() {
                let _ = services.core.send(CoreMsg::EndLeg { tag: f.tag });
            }
            if let Some(key) = c.key {
                let msg = if c.connected {
                    AcdMsg::ConversationOver(key)
                } else {
                    AcdMsg::Leave(key, LeaveReason::Hangup)
                };
                let _ = services.acd.send(msg);
            }
        }
    }
    drop(port);
    if !matches!(end, End::HandedOver) {
        let _ = services.core.send(CoreMsg::Ended {
            tag,
            bye: !matches!(end, End::PhoneBye),
        });
    }
}

impl Consult {
    fn on_queue_event(&mut self, ev: QueueEvent) -> Option<End> {
        match ev {
            QueueEvent::Offer {
                agent,
                contact,
                conn,
                ..
            } => {
                if crate::agent_hub::agent_of(&contact.uri).is_some() {
                    // Offered to an agent on the browser console: a phone's consultation
                    // reaches SIP phones only (the console consults from the console).
                    tracing::info!(agent = %agent, "the target is on the agent console: the consultation ends");
                    return Some(End::Ours);
                }
                let peer = Peer {
                    addr: contact.addr,
                    proto: if contact.tcp { Proto::Tcp } else { Proto::Udp },
                    conn,
                };
                self.dial(&contact.uri, peer, agent);
            }
            QueueEvent::Cancel { agent } => {
                if self.far.as_ref().is_some_and(|f| f.agent == agent)
                    && let Some(f) = self.far.take()
                {
                    let _ = self.services.core.send(CoreMsg::EndLeg { tag: f.tag });
                    self.far_events = None;
                }
            }
            QueueEvent::Connected => {
                if self.far.as_ref().is_some_and(|f| f.side.is_some()) {
                    tracing::info!("the consultation is connected");
                    self.connected = true;
                }
            }
            QueueEvent::NoAgents => {
                tracing::info!("nobody can take the consultation call");
                return Some(End::Ours);
            }
            QueueEvent::PassOn { reply, .. } => {
                // The colleague cannot pass on a consultation: only the caller's call.
                let _ = reply.send(Err(PassRefusal::NotConnected));
            }
            QueueEvent::Consult { reply, .. } => {
                // Nor consult again from within a consultation.
                let _ = reply.send(Err(PassRefusal::NotConnected));
            }
            QueueEvent::Position(_) | QueueEvent::Passed(_) => {}
        }
        None
    }

    /// The ACD's answer to a decline, if the ACD has the call.
    fn declined(&self, why: Decline) {
        if let Some(key) = self.key {
            let _ = self.services.acd.send(AcdMsg::Declined(key, why));
        }
    }

    /// Dials `number` through the default trunk (the channel was taken at admission);
    /// false when it cannot be placed.
    async fn dial_number(&mut self, number: &str) -> bool {
        let deployment = self.services.live.current();
        let Some((_, trunk)) = default_trunk(&deployment.config) else {
            return false;
        };
        let target = trunk.target.uri_for(number);
        let (peer, _link) = match crate::call::resolve(&target, &self.services.sip).await {
            Ok(p) => p,
            Err(code) => {
                tracing::warn!(%target, code, "the trunk cannot be reached");
                return false;
            }
        };
        tracing::info!(%target, "the consultation dials a number through the trunk");
        // No screen pop to a carrier; the trunk's caller id and credentials.
        self.dial_with(
            &target,
            peer,
            number.to_string(),
            trunk.caller_id.clone(),
            Vec::new(),
            trunk.username.clone().zip(trunk.password.clone()),
        )
    }

    fn dial(&mut self, target: &str, peer: Peer, agent: String) {
        let (from, headers) = (self.agent.clone(), self.pop.headers());
        self.dial_with(target, peer, agent, from, headers, None);
    }

    fn dial_with(
        &mut self,
        target: &str,
        peer: Peer,
        agent: String,
        from_user: String,
        headers: Vec<(String, String)>,
        credentials: Option<(String, String)>,
    ) -> bool {
        if let Some(f) = self.far.take() {
            let _ = self.services.core.send(CoreMsg::EndLeg { tag: f.tag });
        }
        let Some(mut port) = self.services.ports.allocate() else {
            tracing::warn!("no free RTP port for the consultation");
            self.declined(Decline::Failed);
            return false;
        };
        let sock = port.take_socket().and_then(|s| {
            s.set_nonblocking(true).ok()?;
            tokio::net::UdpSocket::from_std(s).ok()
        });
        let Some(sock) = sock else {
            self.declined(Decline::Failed);
            return false;
        };
        let tag = ivr_sip::message::new_tag();
        let (tx, rx) = mpsc::unbounded_channel();
        tracing::info!(target, agent = %agent, "the consultation rings");
        let _ = self.services.core.send(CoreMsg::Dial(Box::new(Dial {
            tag: tag.clone(),
            target: target.to_string(),
            peer,
            from_user,
            headers,
            port: port.port(),
            events: tx,
            credentials,
        })));
        self.far = Some(Far {
            tag,
            agent,
            port,
            sock,
            remote: None,
            latch: Latch::new(None),
            side: None,
        });
        self.far_events = Some(rx);
        true
    }

    fn far_failed(&mut self, code: u16) {
        self.far = None;
        self.far_events = None;
        let why = match code {
            486 | 600 | 603 => Decline::Busy,
            408 | 480 | 487 => Decline::NoAnswer,
            _ => Decline::Failed,
        };
        self.declined(why);
    }

    fn on_far_event(&mut self, ev: LegEvent) -> Option<End> {
        match ev {
            LegEvent::Ringing => {}
            LegEvent::Answered(n) | LegEvent::Media(n) => {
                let first = self.far.as_ref().is_some_and(|f| f.side.is_none());
                let Some(f) = &mut self.far else { return None };
                f.remote = n.remote.filter(|_| n.direction.remote_receives());
                f.latch.relearn(n.remote);
                f.side = Some(Side {
                    law: n.law,
                    pt: n.pt,
                    event_pt: n.event_pt,
                });
                if first {
                    match self.key {
                        Some(call) => {
                            let _ = self.services.acd.send(AcdMsg::Answered {
                                call,
                                agent: f.agent.clone(),
                            });
                        }
                        // A number: no ACD to confirm the answer.
                        None => self.connected = true,
                    }
                }
            }
            LegEvent::Failed(code) => {
                tracing::info!(code, "the consultation's target did not answer");
                self.far_failed(code);
                if self.key.is_none() {
                    // A number is tried once.
                    return Some(End::Ours);
                }
            }
            LegEvent::Bye => {
                tracing::info!("the consultation's target hung up");
                self.far = None;
                self.far_events = None;
                return Some(End::Ours);
            }
            LegEvent::Dialog(_) => {}
            LegEvent::Refer(_) => {
                // Only the caller's call can be passed on.
                if let Some(f) = &self.far {
                    let _ = self.services.core.send(CoreMsg::ReferDone {
                        tag: f.tag.clone(),
                        code: 403,
                    });
                }
            }
        }
        None
    }

    /// An attended transfer asks for the far leg: handed over (true) when the agent who asks
    /// placed this call and the target answered; else refused, and the call goes on.
    fn hand_over(&mut self, h: Handover) -> bool {
        if h.by != self.agent {
            let _ = h.reply.send(Err(PassRefusal::NotYourDialog));
            return false;
        }
        let ready = self.connected
            && self.far_events.is_some()
            && self.far.as_ref().is_some_and(|f| f.side.is_some());
        if !ready {
            // The target has not answered yet: the consultation goes on as it was.
            let _ = h.reply.send(Err(PassRefusal::EarlyDialog));
            return false;
        }
        let (Some(f), Some(events)) = (self.far.take(), self.far_events.take()) else {
            return false;
        };
        let Some(side) = f.side else { return false };
        let taken = TakenLeg {
            tag: f.tag,
            agent: f.agent,
            port: f.port,
            sock: f.sock,
            events,
            remote: f.remote,
            latch: f.latch,
            side,
            key: self.key,
            trunk: self.trunk.take(),
            pop: self.pop.clone(),
            dialog: self.tag.clone(),
        };
        match h.reply.send(Ok(taken)) {
            Ok(()) => true,
            Err(Ok(back)) => {
                // The caller's call is gone meanwhile: keep the leg.
                self.far = Some(Far {
                    tag: back.tag,
                    agent: back.agent,
                    port: back.port,
                    sock: back.sock,
                    remote: back.remote,
                    latch: back.latch,
                    side: Some(back.side),
                });
                self.far_events = Some(back.events);
                self.trunk = back.trunk;
                false
            }
            Err(Err(_)) => false,
        }
    }

    fn relay_to_far(&mut self, data: &[u8], from: SocketAddr, out: &mut [u8]) {
        let Some(p) = rtp::parse(data) else { return };
        match self.latch.check(from, &p.header) {
            Verdict::Accept => {}
            Verdict::Latched(addr) => {
                if self.remote.is_some() {
                    self.remote = Some(addr);
                }
            }
            Verdict::Drop => return,
        }
        if !self.connected {
            return;
        }
        let Some(f) = &self.far else { return };
        let (Some(to), Some(remote)) = (f.side, f.remote) else {
            return;
        };
        if let Some(n) = bridge::relay(data, self.law_side, to, out) {
            let _ = f.sock.try_send_to(&out[..n], remote);
        }
    }

    fn relay_to_phone(
        &mut self,
        data: &[u8],
        from_addr: SocketAddr,
        sock: &tokio::net::UdpSocket,
        out: &mut [u8],
    ) {
        let connected = self.connected;
        let Some(f) = &mut self.far else { return };
        let (Some(from), true) = (f.side, connected) else {
            return;
        };
        let Some(p) = rtp::parse(data) else { return };
        match f.latch.check(from_addr, &p.header) {
            Verdict::Accept => {}
            Verdict::Latched(addr) => {
                if f.remote.is_some() {
                    f.remote = Some(addr);
                }
            }
            Verdict::Drop => return,
        }
        let Some(remote) = self.remote else { return };
        if let Some(n) = bridge::relay(data, from, self.law_side, out) {
            let _ = sock.try_send_to(&out[..n], remote);
        }
    }
}

async fn far_event(rx: &mut Option<mpsc::UnboundedReceiver<LegEvent>>) -> Option<LegEvent> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn far_packet(far: Option<&Far>, buf: &mut [u8]) -> std::io::Result<(usize, SocketAddr)> {
    match far {
        Some(f) => f.sock.recv_from(buf).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_configured_agents_and_queues() {
        let text = "[queues.billing]\n[agents.2002]\nname = \"李强\"\nha1 = \"00000000000000000000000000000000\"\n";
        let mut sources = ivr_dsl::SourceMap::new();
        let file = sources.add("ivr.toml", text.to_string());
        let (config, _) = Config::parse(file, std::path::Path::new("."), text);
        assert_eq!(
            Target::parse("2002", &config),
            Some(Target::Agent("2002".into()))
        );
        assert_eq!(
            Target::parse("queue.billing", &config),
            Some(Target::Queue("billing".into()))
        );
        assert_eq!(Target::parse("queue.nowhere", &config), None);
        assert_eq!(Target::parse("13800000001", &config), None);
    }
}
