//! The SIP task: the tokio driver of the sans-IO user-agent core ([`ivr_sip::ua::Core`]).
//!
//! One task and no locks. The transports ([`crate::transport`]) parse messages on their own
//! tasks and queue them here; calls (and the server) send [`CoreMsg`]s. The task hands each
//! to the core stamped with [`Clock::now`], sleeps until the core's
//! [`Machine::poll_timeout`], and carries out its outputs: bytes go to the transport's
//! [`Sender`], the start and the events of admitted calls to the application ([`Calls`]),
//! leg events to the channel of the call that placed the leg, agents' registrations to the
//! ACD's channel. The core's counters are mirrored into [`CoreStats`] for `/status`,
//! `/metrics` and the browser channel's `max_calls`.
//!
//! The channels and what bounds them, since peers drive most of what goes through them:
//!
//! - transports → task: bounded (`transport.rs`), a full queue drops what arrives;
//! - task → a call's dialog events and a leg's events (unbounded): the core emits them at
//!   most at the in-dialog rate of their dialog or leg (`ivr_sip::edge::IN_DIALOG_RATE`, 20
//!   a second after a burst of 40, 503 beyond), a BYE or an answer once, ringing once;
//! - task → the ACD's registrations: bounded ([`REGISTRATIONS_QUEUE`]); when the ACD falls
//!   that far behind, a binding change is dropped and counted (the phone refreshes it);
//! - calls and the server → task ([`CoreMsg`], unbounded): not driven by peers but by calls
//!   (at most `max_calls`), each sending a few messages in its life (its end, one dial and
//!   one end per transfer attempt) and by reloads.

use crate::transport::{Inbound, Peer, Sender};
use ivr_sansio::{Clock, Machine};
use ivr_sip::registrar::Registration;
use ivr_sip::sdp::Negotiated;
use ivr_sip::ua::{Command, Core, Counters, EdgePolicy, Host, Input, Output};
pub use ivr_sip::ua::{DialogEvent, LegEvent};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use tokio::sync::mpsc;

/// Binding changes waiting for the ACD task at most.
pub const REGISTRATIONS_QUEUE: usize = 1_024;

/// A call to place as the UAC ([`CoreMsg::Dial`]): the core's [`ivr_sip::ua::Dial`] and
/// where the leg's events go.
#[derive(Debug)]
pub struct Dial {
    /// Our From tag, unique: the leg's key (and its dialog's).
    pub tag: String,
    /// The Request-URI.
    pub target: String,
    /// Where to send it.
    pub peer: Peer,
    /// The user part of our From (the caller's number).
    pub from_user: String,
    /// Extra headers (the `X-IVR-*` screen pop).
    pub headers: Vec<(String, String)>,
    /// Our RTP port for the leg (goes into the SDP offer).
    pub port: u16,
    /// Where the leg's events go.
    pub events: mpsc::UnboundedSender<LegEvent>,
    /// Digest `(username, password)` for a gateway that challenges (a trunk's).
    pub credentials: Option<(String, String)>,
}

/// What the application keeps for a call taken over until the core starts it
/// ([`Calls::adopt`]); opaque to the SIP task.
pub struct Adopted(pub Box<dyn std::any::Any + Send>);

impl std::fmt::Debug for Adopted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Adopted")
    }
}

/// What calls (and the server) tell the SIP task.
#[derive(Debug)]
pub enum CoreMsg {
    /// Take over a dead node's call: the application adopts it ([`Calls::adopt`]) under
    /// the dialog's tag, then the core re-INVITEs the caller.
    Resume {
        /// The dialog, where to send the re-INVITE, our RTP port and codec.
        resume: Box<ivr_sip::ua::Resume>,
        /// What the application starts once the caller answers.
        adopted: Adopted,
    },
    /// Take over an agent's leg of a bridged call of a dead node: the core re-INVITEs the
    /// agent in the leg's dialog; [`LegEvent`]s follow on `events` as for a leg we placed.
    ResumeLeg {
        /// The leg's dialog (its `local_tag` is the leg's tag), where to send, port, codec.
        resume: Box<ivr_sip::ua::Resume>,
        /// Where the leg's events go.
        events: mpsc::UnboundedSender<LegEvent>,
    },
    /// Place a call ([`LegEvent`]s follow).
    Dial(Box<Dial>),
    /// End a leg: CANCEL while it rings (once it has answered anything), BYE once answered.
    EndLeg {
        /// The leg's tag.
        tag: String,
    },
    /// Let go of a leg another node has taken over: no BYE once answered
    /// ([`ivr_sip::ua::Command::DropLeg`]).
    DropLeg {
        /// The leg's tag.
        tag: String,
    },
    /// The final NOTIFY of leg `tag`'s REFER, with the transfer's status.
    ReferDone {
        /// The leg's tag.
        tag: String,
        /// The status (200: passed on).
        code: u16,
    },
    /// The call of dialog `tag` is over; `bye` when we must send a BYE (the flow hung up,
    /// no media, shutdown).
    Ended {
        /// Our To-tag.
        tag: String,
        /// Send a BYE.
        bye: bool,
    },
    /// Stop taking calls (503 for new INVITEs).
    Drain,
    /// End every call now.
    TerminateAll,
    /// New credentials for the registrar (hot reload of `[server] realm` and `[agents.*]`).
    Credentials {
        /// The digest realm.
        realm: String,
        /// Agent id → ha1 (32 hex digits).
        credentials: HashMap<String, String>,
    },
    /// New limits for INVITEs (hot reload of `[server] trusted` and `invite_rate`).
    Edge(EdgePolicy),
}

/// The core's counters, mirrored for the server after every step of the task.
#[derive(Debug, Default)]
pub struct CoreStats {
    /// Dialogs now (ringing or answered).
    pub active: AtomicUsize,
    /// Calls answered since start.
    pub answered: AtomicUsize,
    /// INVITEs refused (any 4xx/5xx).
    pub refused: AtomicUsize,
    /// What the core refused or dropped to protect itself.
    pub counters: Mutex<Counters>,
    /// Binding changes dropped because the ACD's queue was full.
    pub registrations_dropped: AtomicU64,
}

impl CoreStats {
    /// The `/metrics` series of the SIP edge: INVITEs over `invite_rate`, REGISTERs refused
    /// by reason, requests shed by table, binding changes dropped.
    pub fn metrics(&self, out: &mut String) {
        let c = *self
            .counters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let _ = write!(
            out,
            "# HELP ivr_sip_invites_rate_limited_total INVITEs of new calls from untrusted sources refused (503) beyond invite_rate.\n\
             # TYPE ivr_sip_invites_rate_limited_total counter\n\
             ivr_sip_invites_rate_limited_total {}\n\
             # HELP ivr_sip_registers_refused_total REGISTERs refused, by reason: failed (wrong credentials), address_locked and agent_locked (refused unchecked), held_full (dropped unanswered: too many answers held back for that address).\n\
             # TYPE ivr_sip_registers_refused_total counter\n",
            c.invites_rate_limited
        );
        let r = c.registers_refused;
        for (reason, n) in [
            ("failed", r.failed),
            ("address_locked", r.address_locked),
            ("agent_locked", r.agent_locked),
            ("held_full", c.registers_dropped),
        ] {
            let _ = writeln!(
                out,
                "ivr_sip_registers_refused_total{{reason=\"{reason}\"}} {n}"
            );
        }
        let _ = write!(
            out,
            "# HELP ivr_sip_requests_shed_total Requests refused (503) or sent without retransmissions because a table of the SIP core was at its bound, by table.\n\
             # TYPE ivr_sip_requests_shed_total counter\n"
        );
        for (table, n) in c.shed() {
            let _ = writeln!(out, "ivr_sip_requests_shed_total{{table=\"{table}\"}} {n}");
        }
        let _ = write!(
            out,
            "# HELP ivr_sip_registrations_dropped_total Agents' binding changes dropped because the ACD's queue was full.\n\
             # TYPE ivr_sip_registrations_dropped_total counter\n\
             ivr_sip_registrations_dropped_total {}\n",
            self.registrations_dropped.load(Ordering::Relaxed)
        );
    }
}

/// The server's side of the core: admission ([`Host`]) and what becomes of the calls it
/// admitted. Every admitted dialog hears [`Calls::start`] or [`Calls::unserved`] (or
/// neither, when the caller gives up silently), events, and last [`Calls::closed`].
pub trait Calls: Host + Send + 'static {
    /// The admitted call of dialog `tag` starts with these media parameters: run it.
    fn start(&mut self, tag: &str, media: Negotiated);

    /// The admitted call of dialog `tag` ended before it started: write its record.
    fn unserved(&mut self, tag: &str, outcome: &'static str);

    /// An event for the call of dialog `tag`.
    fn event(&mut self, tag: &str, event: DialogEvent);

    /// The core forgot dialog `tag`: drop what is still held for it (the call's channel, the
    /// RTP port of a call that never started).
    fn closed(&mut self, tag: &str);

    /// A call taken over from a dead node, under dialog `tag`: kept until the core says
    /// [`Calls::start`] (the caller answered the re-INVITE) or [`Calls::unserved`].
    fn adopt(&mut self, tag: &str, adopted: Adopted) {
        let _ = (tag, adopted);
    }
}

/// Where the task's outputs go besides the application.
#[derive(Debug, Clone)]
pub struct Outlets {
    /// The transports.
    pub sender: Sender,
    /// Agents' binding changes (REGISTER), at most [`REGISTRATIONS_QUEUE`] waiting; none:
    /// nobody listens.
    pub registrations: Option<mpsc::Sender<Registration>>,
    /// The counters to mirror the core's into.
    pub stats: Arc<CoreStats>,
}

/// Our address as a peer reaches us, from the routing table (a UDP socket "connected" to the
/// peer sends nothing and tells the source address the system would pick), remembered per
/// peer address.
#[derive(Debug, Default)]
pub struct LocalIps {
    known: HashMap<IpAddr, IpAddr>,
}

impl LocalIps {
    /// Nothing known yet.
    pub fn new() -> LocalIps {
        LocalIps::default()
    }

    /// Our address towards `peer` (the peer's own when the system cannot tell).
    pub fn towards(&mut self, peer: IpAddr) -> IpAddr {
        if let Some(ip) = self.known.get(&peer) {
            return *ip;
        }
        let ip = std::net::UdpSocket::bind(SocketAddr::new(
            if peer.is_ipv4() {
                IpAddr::from([0, 0, 0, 0])
            } else {
                IpAddr::from([0u16; 8])
            },
            0,
        ))
        .and_then(|s| {
            s.connect(SocketAddr::new(peer, 9))?;
            s.local_addr()
        })
        .map_or(peer, |a| a.ip());
        if self.known.len() > 10_000 {
            self.known.clear();
        }
        self.known.insert(peer, ip);
        ip
    }
}

/// The command of the core for a message of a call, with the leg's channel kept aside.
fn command(m: CoreMsg, legs: &mut HashMap<String, mpsc::UnboundedSender<LegEvent>>) -> Command {
    match m {
        CoreMsg::Resume { resume, .. } => Command::Resume(resume),
        CoreMsg::ResumeLeg { resume, events } => {
            legs.insert(resume.dialog.local_tag.clone(), events);
            Command::ResumeLeg(resume)
        }
        CoreMsg::Dial(d) => {
            let Dial {
                tag,
                target,
                peer,
                from_user,
                headers,
                port,
                events,
                credentials,
            } = *d;
            legs.insert(tag.clone(), events);
            Command::Dial(Box::new(ivr_sip::ua::Dial {
                tag,
                target,
                peer,
                from_user,
                headers,
                port,
                credentials,
            }))
        }
        CoreMsg::EndLeg { tag } => Command::EndLeg { tag },
        CoreMsg::DropLeg { tag } => Command::DropLeg { tag },
        CoreMsg::ReferDone { tag, code } => Command::ReferDone { tag, code },
        CoreMsg::Ended { tag, bye } => Command::Ended { tag, bye },
        CoreMsg::Drain => Command::Drain,
        CoreMsg::TerminateAll => Command::TerminateAll,
        CoreMsg::Credentials { realm, credentials } => Command::Credentials { realm, credentials },
        CoreMsg::Edge(policy) => Command::Edge(policy),
    }
}

/// Carries out everything the core asks for now.
fn dispatch<C: Calls>(
    core: &mut Core<C>,
    out: &Outlets,
    legs: &mut HashMap<String, mpsc::UnboundedSender<LegEvent>>,
) {
    while let Some(o) = core.poll_output() {
        match o {
            Output::Transmit { peer, bytes } => {
                crate::metrics::registry().count_sip_message(&bytes);
                out.sender.send(&peer, bytes);
            }
            Output::Start { tag, media } => core.host_mut().start(&tag, media),
            Output::Unserved { tag, outcome } => core.host_mut().unserved(&tag, outcome),
            Output::Dialog { tag, event } => core.host_mut().event(&tag, event),
            Output::DialogClosed { tag } => core.host_mut().closed(&tag),
            Output::Leg { tag, event } => {
                if let Some(tx) = legs.get(&tag) {
                    let _ = tx.send(event);
                }
            }
            Output::LegClosed { tag } => {
                legs.remove(&tag);
            }
            Output::Registration(r) => {
                if let Some(tx) = &out.registrations
                    && let Err(mpsc::error::TrySendError::Full(r)) = tx.try_send(r)
                {
                    tracing::warn!(agent = %r.agent, "the ACD is behind: binding change dropped");
                    out.stats
                        .registrations_dropped
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
    out.stats.active.store(core.active(), Ordering::Relaxed);
    out.stats.answered.store(core.answered(), Ordering::Relaxed);
    out.stats.refused.store(core.refused(), Ordering::Relaxed);
    *out.stats
        .counters
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = core.counters();
}

/// Runs the core until both queues close.
pub async fn run<C: Calls>(
    mut core: Core<C>,
    mut inbound: mpsc::Receiver<Inbound>,
    mut msgs: mpsc::UnboundedReceiver<CoreMsg>,
    out: Outlets,
) {
    let clock = Clock::new();
    let far = 3_600_000;
    // Where each leg's events go, by tag.
    let mut legs: HashMap<String, mpsc::UnboundedSender<LegEvent>> = HashMap::new();
    loop {
        let next = core.poll_timeout().unwrap_or_else(|| clock.now() + far);
        tokio::select! {
            m = inbound.recv() => match m {
                Some(m) => {
                    core.handle_input(Input::Received { msg: m.msg, peer: m.peer }, clock.now());
                    dispatch(&mut core, &out, &mut legs);
                    // Take whatever else is waiting before looking at timers again.
                    for _ in 0..64 {
                        match inbound.try_recv() {
                            Ok(m) => {
                                core.handle_input(
                                    Input::Received { msg: m.msg, peer: m.peer },
                                    clock.now(),
                                );
                                dispatch(&mut core, &out, &mut legs);
                            }
                            Err(_) => break,
                        }
                    }
                }
                None => return,
            },
            m = msgs.recv() => match m {
                Some(CoreMsg::Resume { resume, adopted }) => {
                    core.host_mut().adopt(&resume.dialog.local_tag, adopted);
                    core.handle_input(Input::Command(Command::Resume(resume)), clock.now());
                    dispatch(&mut core, &out, &mut legs);
                }
                Some(m) => {
                    core.handle_input(Input::Command(command(m, &mut legs)), clock.now());
                    dispatch(&mut core, &out, &mut legs);
                }
                None => return,
            },
            () = tokio::time::sleep_until(clock.instant(next).into()) => {
                core.handle_timeout(clock.now());
                dispatch(&mut core, &out, &mut legs);
            }
        }
    }
}
