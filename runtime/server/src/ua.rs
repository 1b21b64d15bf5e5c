//! The user-agent core: one tokio task that owns every transaction and dialog, answers what
//! SIP itself decides (retransmissions, CANCEL, OPTIONS, 481, 405/501, Max-Forwards, limits)
//! and maps dialogs to calls through the [`Calls`] trait, which the serve layer implements
//! (route, SDP answer, RTP port, the call's task).
//!
//! One task and no locks: the transports parse messages on their own tasks and queue them
//! here; calls send [`CoreMsg`]s back. Timers are data ([`ServerTx::deadline`],
//! [`ClientTx::deadline`]) kept in a heap; the task sleeps until the earliest.
//!
//! Dialogs are keyed by our To-tag, which we make unique. In-dialog requests go to the address
//! the INVITE came from over the same transport (connection), which is right for callers
//! behind NAT and for proxies alike.

use crate::transport::{Inbound, Peer, Proto, Sender};

use ivr_sansio::{Clock, Machine, Millis};
use ivr_sip::dialog::Dialog;
use ivr_sip::message::{self, ALLOW, Extra, Facts};
use ivr_sip::outbound::{InviteParts, OutgoingInvite};
use ivr_sip::registrar::Registrar;
pub use ivr_sip::registrar::Registration;
use ivr_sip::sdp::{self, Negotiated};
use ivr_sip::transaction::{
    ClientTx, InviteClientTx, Response as TxResponse, ServerInput, ServerTx, State, Timers,
    TxOutput,
};
use rsip::headers::UntypedHeader;
use rsip::{Method, Request, Response, SipMessage};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;

/// What the core tells a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DialogEvent {
    /// The caller hung up (BYE, already answered).
    Bye,
    /// A key from SIP INFO.
    Key(char),
    /// New media parameters (re-INVITE: hold, resume, another address).
    Media(Negotiated),
    /// End the call now (shutdown deadline, no ACK); we send the BYE.
    Terminate,
}

/// What the core tells a call about a leg it placed ([`CoreMsg::Dial`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LegEvent {
    /// The callee's phone rings (180/183).
    Ringing,
    /// The callee answered with these media parameters (the ACK is sent).
    Answered(Negotiated),
    /// The call could not be placed or was refused: the final status (408 when nothing
    /// answered, 488 when the answer had no usable SDP).
    Failed(u16),
    /// The callee changed the media (re-INVITE: hold, resume).
    Media(Negotiated),
    /// The callee hung up.
    Bye,
}

/// A call to place as the UAC: to an agent's phone or a `transfer to` number.
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
}

/// What calls (and the server) tell the core.
#[derive(Debug)]
pub enum CoreMsg {
    /// Place a call ([`LegEvent`]s follow).
    Dial(Box<Dial>),
    /// End a leg: CANCEL while it rings (once it has answered anything), BYE once answered.
    EndLeg {
        /// The leg's tag.
        tag: String,
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
}

/// A call the serve layer agreed to take.
pub struct Admitted {
    /// The SDP of the 200 OK: our answer, or our offer when the INVITE had none.
    pub answer: String,
    /// What was negotiated (none: late offer, the ACK carries the caller's answer).
    pub negotiated: Option<Negotiated>,
    /// Our RTP port (for answers to re-INVITEs).
    pub port: u16,
    /// Where the call hears about its dialog.
    pub events: mpsc::UnboundedSender<DialogEvent>,
    /// Starts the call with the media parameters; run once the 200 OK is on its way (late
    /// offer: once the ACK's answer is negotiated). Dropping it (CANCEL) releases everything
    /// the call held.
    pub start: Box<dyn FnOnce(Negotiated) + Send>,
    /// Writes the record of a call that ends before it starts, with its outcome (`abandoned`:
    /// CANCEL or BYE before the ACK; `failed`: no ACK, no common codec, shutdown).
    pub unserved: Box<dyn FnOnce(&'static str) + Send>,
}

/// A late-offer call answered and waiting for the ACK's SDP answer to start.
struct AwaitingAck {
    start: Box<dyn FnOnce(Negotiated) + Send>,
    unserved: Box<dyn FnOnce(&'static str) + Send>,
}

/// A new INVITE as the serve layer sees it.
#[derive(Debug)]
pub struct NewCall<'a> {
    /// The request.
    pub request: &'a Request,
    /// Its facts.
    pub facts: &'a Facts,
    /// Where it came from.
    pub peer: Peer,
    /// Our address as the caller reaches it (for SDP).
    pub local_ip: IpAddr,
    /// Our To-tag.
    pub tag: &'a str,
    /// The SDP offer (none: late offer, we make it in the 200 OK).
    pub offer: Option<&'a sdp::Session>,
}

/// The serve layer's side of the core.
pub trait Calls: Send + 'static {
    /// Takes a new call or refuses it with a status code (404 no route, 488, 503, ...).
    fn admit(&mut self, call: NewCall<'_>) -> Result<Admitted, u16>;
}

/// Settings of the core.
#[derive(Debug, Clone)]
pub struct CoreOptions {
    /// Protocol timers.
    pub timers: Timers,
    /// Most calls at once (503 beyond), counting `elsewhere`'s too.
    pub max_calls: usize,
    /// Calls in progress on other channels (the browser's), which count against `max_calls`.
    pub elsewhere: Arc<AtomicUsize>,
    /// Ring this long (180 Ringing) before answering.
    pub answer_after: Duration,
    /// The address we listen on (its IP, when specified, goes into SDP and Contact).
    pub local: SocketAddr,
    /// Where agents' binding changes go (REGISTER); none: nobody listens.
    pub registrations: Option<mpsc::UnboundedSender<Registration>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct TxKey {
    branch: String,
    method: Method,
}

impl std::hash::Hash for TxKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.branch.hash(state);
        method_code(self.method).hash(state);
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKey {
    Server(String, u8),
    Client(String),
    Answer(String),
    Leg(String),
    /// A held REGISTER response (by branch) is due.
    Register(String),
}

enum Phase {
    Ringing {
        admitted: Option<Admitted>,
        answer: Vec<u8>,
    },
    Answered {
        events: mpsc::UnboundedSender<DialogEvent>,
    },
    Ending,
}

struct Entry {
    dialog: Dialog,
    peer: Peer,
    invite: TxKey,
    phase: Phase,
    port: u16,
    local_ip: IpAddr,
    sdp_version: u64,
    session_id: u64,
    /// Late offer: answered, the call starts at the ACK.
    awaiting_ack: Option<AwaitingAck>,
    /// The caller's re-INVITE answered with a 2xx and its CSeq: its ACK ends the 2xx's
    /// retransmissions.
    reinvite: Option<(TxKey, u32)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LegState {
    /// INVITE sent, no final response.
    Calling,
    /// 2xx received and acknowledged.
    Answered,
    /// A final error came (kept a while to acknowledge its retransmissions).
    Done,
}

/// A call we placed.
struct Leg {
    invite: OutgoingInvite,
    tx: InviteClientTx,
    peer: Peer,
    local_ip: IpAddr,
    port: u16,
    session_id: u64,
    sdp_version: u64,
    events: mpsc::UnboundedSender<LegEvent>,
    state: LegState,
    /// The call no longer wants the leg (CANCEL once provisional, BYE if it answers).
    cancel: bool,
    cancel_sent: bool,
    dialog: Option<Dialog>,
    /// The ACK we sent for the final response, sent again for its retransmissions.
    ack: Option<Arc<[u8]>>,
    /// The callee's re-INVITE waiting for its ACK.
    reinvite: Option<TxKey>,
}

/// The core's counters, shared with the server.
#[derive(Debug, Default)]
pub struct CoreStats {
    /// Dialogs now (ringing or answered).
    pub active: AtomicUsize,
    /// Calls answered since start.
    pub answered: AtomicUsize,
    /// INVITEs refused (any 4xx/5xx).
    pub refused: AtomicUsize,
}

/// The user-agent core.
pub struct Core<C: Calls> {
    calls: C,
    sender: Sender,
    opts: CoreOptions,
    server: HashMap<TxKey, (ServerTx, Peer)>,
    client: HashMap<String, (ClientTx, Peer)>,
    dialogs: HashMap<String, Entry>,
    legs: HashMap<String, Leg>,
    /// INVITE branch → leg tag.
    leg_branches: HashMap<String, String>,
    heap: BinaryHeap<Reverse<(Millis, TimerKey)>>,
    draining: bool,
    local_ips: HashMap<IpAddr, IpAddr>,
    stats: Arc<CoreStats>,
    /// Agents' REGISTERs.
    registrar: Registrar,
    /// REGISTER responses held back (repeated failures), by branch.
    held: HashMap<String, HeldReply>,
}

/// A REGISTER response waiting for its time.
struct HeldReply {
    key: TxKey,
    code: u16,
    bytes: Arc<[u8]>,
    registration: Option<Registration>,
}

/// Most REGISTER responses held back at once; REGISTERs beyond are dropped.
const MAX_HELD: usize = 10_000;

fn method_code(m: Method) -> u8 {
    match m {
        Method::Invite => 0,
        Method::Cancel => 1,
        Method::Bye => 2,
        Method::Options => 3,
        Method::Info => 4,
        Method::Register => 5,
        Method::Subscribe => 6,
        Method::Notify => 7,
        Method::Refer => 8,
        Method::Publish => 10,
        Method::PRack => 11,
        Method::Update => 12,
        Method::Ack => 13,
        Method::Message => 9,
    }
}

fn method_of(code: u8) -> Method {
    match code {
        0 => Method::Invite,
        1 => Method::Cancel,
        2 => Method::Bye,
        3 => Method::Options,
        4 => Method::Info,
        5 => Method::Register,
        6 => Method::Subscribe,
        7 => Method::Notify,
        8 => Method::Refer,
        10 => Method::Publish,
        11 => Method::PRack,
        12 => Method::Update,
        13 => Method::Ack,
        _ => Method::Message,
    }
}

impl<C: Calls> Core<C> {
    /// A core sending on `sender`.
    pub fn new(calls: C, sender: Sender, opts: CoreOptions) -> Core<C> {
        Core {
            calls,
            sender,
            opts,
            server: HashMap::new(),
            client: HashMap::new(),
            dialogs: HashMap::new(),
            legs: HashMap::new(),
            leg_branches: HashMap::new(),
            heap: BinaryHeap::new(),
            draining: false,
            local_ips: HashMap::new(),
            stats: Arc::new(CoreStats::default()),
            registrar: Registrar::new("ivr", HashMap::new()),
            held: HashMap::new(),
        }
    }

    /// The registrar of agents' REGISTERs (the default one knows no agent).
    pub fn with_registrar(mut self, registrar: Registrar) -> Core<C> {
        self.registrar = registrar;
        self
    }

    /// The counters.
    pub fn stats(&self) -> Arc<CoreStats> {
        Arc::clone(&self.stats)
    }

    /// Runs until both queues close.
    pub async fn run(
        mut self,
        mut inbound: mpsc::Receiver<Inbound>,
        mut msgs: mpsc::UnboundedReceiver<CoreMsg>,
    ) {
        let far = 3_600_000;
        let clock = Clock::new();
        loop {
            let next = self
                .heap
                .peek()
                .map(|Reverse((t, _))| *t)
                .unwrap_or_else(|| clock.now() + far);
            let next = clock.instant(next);
            tokio::select! {
                m = inbound.recv() => match m {
                    Some(m) => {
                        self.on_message(m, clock.now());
                        // Take whatever else is waiting before looking at timers again.
                        for _ in 0..64 {
                            match inbound.try_recv() {
                                Ok(m) => self.on_message(m, clock.now()),
                                Err(_) => break,
                            }
                        }
                    }
                    None => return,
                },
                m = msgs.recv() => match m {
                    Some(m) => self.on_core_msg(m, clock.now()),
                    None => return,
                },
                () = tokio::time::sleep_until(next.into()) => self.on_timers(clock.now()),
            }
        }
    }

    fn send(&self, peer: &Peer, data: Arc<[u8]>) {
        self.sender.send(peer, data);
    }

    fn arm(&mut self, at: Option<Millis>, key: TimerKey) {
        if let Some(at) = at {
            self.heap.push(Reverse((at, key)));
        }
    }

    fn local_ip(&mut self, peer: IpAddr) -> IpAddr {
        if !self.opts.local.ip().is_unspecified() {
            return self.opts.local.ip();
        }
        if let Some(ip) = self.local_ips.get(&peer) {
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
        if self.local_ips.len() > 10_000 {
            self.local_ips.clear();
        }
        self.local_ips.insert(peer, ip);
        ip
    }

    fn contact(&self, ip: IpAddr, proto: Proto) -> String {
        let host = match ip {
            IpAddr::V6(v6) => format!("[{v6}]"),
            IpAddr::V4(v4) => v4.to_string(),
        };
        match proto {
            Proto::Udp => format!("sip:ivr@{host}:{}", self.opts.local.port()),
            Proto::Tcp => format!("sip:ivr@{host}:{};transport=tcp", self.opts.local.port()),
        }
    }

    /// Sends a response on a server transaction (creating it when needed).
    fn respond(
        &mut self,
        req: &Request,
        peer: Peer,
        key: &TxKey,
        code: u16,
        extra: &Extra<'_>,
        now: Millis,
    ) {
        let bytes: Arc<[u8]> = Arc::from(message::response(req, peer.addr, code, extra));
        let target = match peer.proto {
            Proto::Udp => Peer {
                addr: message::response_target(&req.headers, peer.addr),
                ..peer
            },
            Proto::Tcp => peer,
        };
        let invite = key.method == Method::Invite;
        let (tx, _) = self.server.entry(key.clone()).or_insert_with(|| {
            (
                ServerTx::new(invite, peer.proto.reliable(), self.opts.timers),
                target,
            )
        });
        tx.handle_input(
            ServerInput::Respond {
                code,
                bytes: Arc::clone(&bytes),
            },
            now,
        );
        let deadline = tx.poll_timeout();
        self.send(&target, bytes);
        self.arm(
            deadline,
            TimerKey::Server(key.branch.clone(), method_code(key.method)),
        );
    }

    /// A stateless answer (no transaction kept): for requests we refuse outright.
    fn answer(&mut self, req: &Request, peer: Peer, key: &TxKey, code: u16, now: Millis) {
        let allow = [("Allow", ALLOW)];
        let extra = Extra {
            to_tag: Some("ivr-refused"),
            headers: if code == 405 || code == 501 {
                &allow
            } else {
                &[]
            },
            ..Extra::default()
        };
        self.respond(req, peer, key, code, &extra, now);
    }

    fn on_message(&mut self, m: Inbound, now: Millis) {
        match m.msg {
            SipMessage::Request(req) => self.on_request(req, m.peer, now),
            SipMessage::Response(resp) => self.on_response(&resp, now),
        }
    }

    fn on_response(&mut self, resp: &Response, now: Millis) {
        let Ok(f) = message::facts(&resp.headers) else {
            return;
        };
        let Some(branch) = f.branch else { return };
        if f.cseq_method == "INVITE" {
            if let Some(tag) = self.leg_branches.get(&branch).cloned() {
                self.on_leg_response(&tag, resp, now);
            }
            return;
        }
        // A CANCEL shares its INVITE's branch.
        let branch = if f.cseq_method == "CANCEL" {
            format!("{branch}|CANCEL")
        } else {
            branch
        };
        if let Some((tx, _)) = self.client.get_mut(&branch)
            && {
                tx.handle_input(TxResponse(resp.status_code.code()), now);
                tx.done()
            }
        {
            self.client.remove(&branch);
        }
    }

    fn on_request(&mut self, req: Request, peer: Peer, now: Millis) {
        let f = match message::facts(&req.headers) {
            Ok(f) => f,
            Err(why) => {
                tracing::debug!(peer = %peer.addr, %why, "bad request");
                if req.method != Method::Ack {
                    let key = TxKey {
                        branch: message::new_branch(),
                        method: req.method,
                    };
                    self.answer(&req, peer, &key, 400, now);
                }
                return;
            }
        };
        let branch = f
            .branch
            .clone()
            .filter(|b| b.starts_with("z9hG4bK"))
            .unwrap_or_else(|| {
                format!(
                    "{}|{}|{}|{}",
                    f.call_id,
                    f.cseq,
                    f.from_tag.as_deref().unwrap_or_default(),
                    f.branch.as_deref().unwrap_or_default()
                )
            });
        // ACK matches the INVITE's transaction (non-2xx) or the dialog (2xx).
        if req.method == Method::Ack {
            self.on_ack(&req, &f, &branch, now);
            return;
        }
        let key = TxKey {
            branch,
            method: req.method,
        };
        // A retransmitted request: answer again with the last response.
        if let Some((tx, target)) = self.server.get(&key) {
            if let Some(last) = tx.last_response() {
                let (last, target) = (Arc::clone(last), *target);
                self.send(&target, last);
            }
            return;
        }
        if let Some(mf) = f.max_forwards
            && mf == 0
            && req.method != Method::Options
        {
            self.answer(&req, peer, &key, 483, now);
            return;
        }
        match req.method {
            Method::Invite if f.to_tag.is_none() => self.on_invite(&req, &f, peer, key, now),
            Method::Invite => self.on_reinvite(&req, &f, peer, key, now),
            Method::Cancel => self.on_cancel(&req, peer, key, now),
            Method::Bye => self.on_bye(&req, &f, peer, key, now),
            Method::Options => {
                let headers = [
                    ("Allow", ALLOW),
                    (
                        "Accept",
                        "application/sdp, application/dtmf-relay, application/dtmf",
                    ),
                ];
                let extra = Extra {
                    to_tag: Some("ivr-options"),
                    headers: &headers,
                    ..Extra::default()
                };
                self.respond(&req, peer, &key, 200, &extra, now);
            }
            Method::Info => self.on_info(&req, &f, peer, key, now),
            Method::Register => self.on_register(&req, peer, key, now),
            Method::Subscribe
            | Method::Notify
            | Method::Message
            | Method::Refer
            | Method::Publish
            | Method::PRack
            | Method::Update => self.answer(&req, peer, &key, 405, now),
            Method::Ack => {}
        }
    }

    /// REGISTER: the registrar decides. Its answer may have to wait (repeated failures from
    /// that address); meanwhile the transaction, without a response yet, absorbs
    /// retransmissions.
    fn on_register(&mut self, req: &Request, peer: Peer, key: TxKey, now: Millis) {
        if self.held.len() >= MAX_HELD {
            tracing::debug!(peer = %peer.addr, "too many REGISTER answers held back; dropped");
            return;
        }
        let reply = self.registrar.handle(req, peer.addr.ip(), now);
        let held = HeldReply {
            key,
            code: reply.code,
            bytes: Arc::from(reply.response(req, peer.addr)),
            registration: reply.binding.map(|b| Registration {
                agent: b.agent,
                contact: b.contact,
                peer,
                expires: b.expires,
            }),
        };
        let target = match peer.proto {
            Proto::Udp => Peer {
                addr: message::response_target(&req.headers, peer.addr),
                ..peer
            },
            Proto::Tcp => peer,
        };
        let tx = ServerTx::new(false, peer.proto.reliable(), self.opts.timers);
        self.server.insert(held.key.clone(), (tx, target));
        if reply.delay <= 0 {
            self.send_held(held, now);
        } else {
            let branch = held.key.branch.clone();
            self.held.insert(branch.clone(), held);
            self.arm(Some(now + reply.delay), TimerKey::Register(branch));
        }
    }

    /// Sends a REGISTER response on its transaction and reports the binding change.
    fn send_held(&mut self, held: HeldReply, now: Millis) {
        if let Some((tx, target)) = self.server.get_mut(&held.key) {
            tx.handle_input(
                ServerInput::Respond {
                    code: held.code,
                    bytes: Arc::clone(&held.bytes),
                },
                now,
            );
            let (deadline, target) = (tx.poll_timeout(), *target);
            self.send(&target, held.bytes);
            self.arm(
                deadline,
                TimerKey::Server(held.key.branch, method_code(held.key.method)),
            );
        }
        if let (Some(r), Some(out)) = (held.registration, &self.opts.registrations) {
            let _ = out.send(r);
        }
    }

    fn on_invite(&mut self, req: &Request, f: &Facts, peer: Peer, key: TxKey, now: Millis) {
        let refuse = |core: &mut Self, code: u16| {
            core.stats.refused.fetch_add(1, Ordering::Relaxed);
            let retry = [("Retry-After", "5")];
            let extra = Extra {
                to_tag: Some(&message::new_tag()),
                headers: if code == 503 { &retry } else { &[] },
                ..Extra::default()
            };
            // `Extra` borrows a temporary tag; build it inside.
            let extra = Extra {
                to_tag: extra.to_tag,
                ..extra
            };
            core.respond(req, peer, &key, code, &extra, now);
        };
        let elsewhere = self.opts.elsewhere.load(Ordering::Relaxed);
        if self.draining || self.dialogs.len() + elsewhere >= self.opts.max_calls {
            refuse(self, 503);
            return;
        }
        let is_sdp = message::value(&req.headers, "Content-Type")
            .is_some_and(|c| c.trim().to_ascii_lowercase().starts_with("application/sdp"));
        // No body: a late offer (RFC 3261 13.2.1), we offer in the 200 and the ACK answers.
        let late = req.body.iter().all(u8::is_ascii_whitespace);
        let offer = match std::str::from_utf8(&req.body)
            .ok()
            .filter(|_| is_sdp && !late)
            .map(sdp::parse)
        {
            Some(Ok(o)) => Some(o),
            None if late => None,
            // A broken offer or not SDP.
            _ => {
                refuse(self, 488);
                return;
            }
        };
        let tag = message::new_tag();
        let local_ip = self.local_ip(peer.addr.ip());
        let trying = Extra::default();
        self.respond(req, peer, &key, 100, &trying, now);
        let admitted = match self.calls.admit(NewCall {
            request: req,
            facts: f,
            peer,
            local_ip,
            tag: &tag,
            offer: offer.as_ref(),
        }) {
            Ok(a) => a,
            Err(code) => {
                refuse(self, code);
                return;
            }
        };
        let dialog = Dialog::from_invite(req, f, &tag);
        let contact = self.contact(local_ip, peer.proto);
        let answer = message::response(
            req,
            peer.addr,
            200,
            &Extra {
                to_tag: Some(&tag),
                contact: Some(&contact),
                headers: &[("Allow", ALLOW), ("Supported", "")],
                body: Some(("application/sdp", admitted.answer.as_bytes())),
            },
        );
        let session_id = message::random_u64() >> 1;
        let port = admitted.port;
        self.dialogs.insert(
            tag.clone(),
            Entry {
                dialog,
                peer,
                invite: key.clone(),
                phase: Phase::Ringing {
                    admitted: Some(admitted),
                    answer,
                },
                port,
                local_ip,
                sdp_version: 1,
                session_id,
                awaiting_ack: None,
                reinvite: None,
            },
        );
        self.stats
            .active
            .store(self.dialogs.len(), Ordering::Relaxed);
        if self.opts.answer_after.is_zero() {
            self.answer_call(&tag, now);
        } else {
            let ringing = Extra {
                to_tag: Some(&tag),
                ..Extra::default()
            };
            self.respond(req, peer, &key, 180, &ringing, now);
            self.arm(
                Some(now + self.opts.answer_after.as_millis() as Millis),
                TimerKey::Answer(tag.clone()),
            );
        }
    }

    /// Sends the 200 OK of a ringing call and starts it.
    fn answer_call(&mut self, tag: &str, now: Millis) {
        let Some(e) = self.dialogs.get_mut(tag) else {
            return;
        };
        let Phase::Ringing { admitted, answer } = &mut e.phase else {
            return;
        };
        let Some(admitted) = admitted.take() else {
            return;
        };
        let bytes: Arc<[u8]> = Arc::from(std::mem::take(answer));
        let events = admitted.events.clone();
        e.phase = Phase::Answered { events };
        let key = e.invite.clone();
        let peer = e.peer;
        if let Some((tx, target)) = self.server.get_mut(&key) {
            tx.handle_input(
                ServerInput::Respond {
                    code: 200,
                    bytes: Arc::clone(&bytes),
                },
                now,
            );
            let (deadline, target) = (tx.poll_timeout(), *target);
            self.send(&target, bytes);
            self.arm(
                deadline,
                TimerKey::Server(key.branch.clone(), method_code(key.method)),
            );
        } else {
            self.send(&peer, bytes);
        }
        self.stats.answered.fetch_add(1, Ordering::Relaxed);
        match admitted.negotiated {
            Some(n) => (admitted.start)(n),
            None => {
                if let Some(e) = self.dialogs.get_mut(tag) {
                    e.awaiting_ack = Some(AwaitingAck {
                        start: admitted.start,
                        unserved: admitted.unserved,
                    });
                }
            }
        }
    }

    fn on_reinvite(&mut self, req: &Request, f: &Facts, peer: Peer, key: TxKey, now: Millis) {
        let tag = f.to_tag.clone().unwrap_or_default();
        if !self.dialogs.contains_key(&tag) && self.legs.contains_key(&tag) {
            self.on_leg_reinvite(&tag, req, f, peer, key, now);
            return;
        }
        let Some(e) = self.dialogs.get_mut(&tag).filter(|e| e.dialog.matches(f)) else {
            self.answer(req, peer, &key, 481, now);
            return;
        };
        if f.cseq <= e.dialog.remote_cseq {
            self.answer(req, peer, &key, 500, now);
            return;
        }
        e.dialog.remote_cseq = f.cseq;
        let offer = std::str::from_utf8(&req.body)
            .ok()
            .filter(|b| !b.trim().is_empty())
            .map(sdp::parse);
        let Some(Ok(offer)) = offer else {
            self.answer(req, peer, &key, 488, now);
            return;
        };
        let Ok(n) = sdp::negotiate(&offer) else {
            self.answer(req, peer, &key, 488, now);
            return;
        };
        e.sdp_version += 1;
        let body = sdp::answer(&offer, &n, e.local_ip, e.port, e.session_id, e.sdp_version);
        if let Phase::Answered { events } = &e.phase {
            let _ = events.send(DialogEvent::Media(n));
        }
        e.reinvite = Some((key.clone(), f.cseq));
        let (local_ip, tag) = (e.local_ip, e.dialog.local_tag.clone());
        let contact = self.contact(local_ip, peer.proto);
        self.respond(
            req,
            peer,
            &key,
            200,
            &Extra {
                to_tag: Some(&tag),
                contact: Some(&contact),
                headers: &[("Allow", ALLOW)],
                body: Some(("application/sdp", body.as_bytes())),
            },
            now,
        );
    }

    fn on_ack(&mut self, req: &Request, f: &Facts, branch: &str, now: Millis) {
        let key = TxKey {
            branch: branch.to_string(),
            method: Method::Invite,
        };
        if let Some((tx, _)) = self.server.get_mut(&key)
            && tx.state() == State::Completed
        {
            tx.handle_input(ServerInput::Ack, now);
            let d = tx.poll_timeout();
            self.arm(d, TimerKey::Server(key.branch, 0));
            return;
        }
        // The ACK of a 2xx: a new transaction, matched by the dialog.
        let tag = f.to_tag.clone().unwrap_or_default();
        if let Some(l) = self.legs.get_mut(&tag)
            && l.dialog.as_ref().is_some_and(|d| d.matches(f))
        {
            if let Some(key) = l.reinvite.take()
                && let Some((tx, _)) = self.server.get_mut(&key)
            {
                tx.handle_input(ServerInput::Ack, now);
                let d = tx.poll_timeout();
                self.arm(d, TimerKey::Server(key.branch, 0));
            }
            return;
        }
        let Some(e) = self.dialogs.get_mut(&tag).filter(|e| e.dialog.matches(f)) else {
            return;
        };
        // The ACK of the 2xx to the caller's re-INVITE (same CSeq number).
        if let Some((key, _)) = e.reinvite.take_if(|(_, cseq)| *cseq == f.cseq) {
            if let Some((tx, _)) = self.server.get_mut(&key) {
                tx.handle_input(ServerInput::Ack, now);
                let d = tx.poll_timeout();
                self.arm(d, TimerKey::Server(key.branch, 0));
            }
            return;
        }
        let key = e.invite.clone();
        let late = e.awaiting_ack.take();
        if let Some((tx, _)) = self.server.get_mut(&key) {
            tx.handle_input(ServerInput::Ack, now);
            let d = tx.poll_timeout();
            self.arm(d, TimerKey::Server(key.branch, 0));
        }
        // Late offer: the ACK carries the caller's answer; the call starts with it.
        let Some(late) = late else { return };
        let n = std::str::from_utf8(&req.body)
            .ok()
            .filter(|b| !b.trim().is_empty())
            .and_then(|b| sdp::parse(b).ok())
            .and_then(|a| sdp::negotiate(&a).ok());
        match n {
            Some(n) => (late.start)(n),
            None => {
                tracing::info!(call = %f.call_id, "no usable SDP answer in the ACK; ending the call");
                if let Some(e) = self.dialogs.remove(&tag) {
                    self.stats
                        .active
                        .store(self.dialogs.len(), Ordering::Relaxed);
                    self.send_bye(e, now);
                }
                (late.unserved)("failed");
            }
        }
    }

    fn on_cancel(&mut self, req: &Request, peer: Peer, key: TxKey, now: Millis) {
        let invite = TxKey {
            branch: key.branch.clone(),
            method: Method::Invite,
        };
        let Some((tx, _)) = self.server.get(&invite) else {
            self.answer(req, peer, &key, 481, now);
            return;
        };
        let pending = tx.state() == State::Proceeding;
        self.respond(req, peer, &key, 200, &Extra::default(), now);
        if !pending {
            return;
        }
        // Find the ringing dialog of that INVITE and end it with 487.
        let tag = self
            .dialogs
            .iter()
            .find(|(_, e)| e.invite == invite)
            .map(|(t, _)| t.clone());
        if let Some(tag) = tag
            && let Some(e) = self.dialogs.remove(&tag)
        {
            self.stats
                .active
                .store(self.dialogs.len(), Ordering::Relaxed);
            // Rebuild the 487 from the INVITE's own headers: the CANCEL shares them except
            // CSeq's method, which must say INVITE.
            let mut inv = req.clone();
            inv.method = Method::Invite;
            for h in inv.headers.iter_mut() {
                if let rsip::Header::CSeq(c) = h {
                    *c = rsip::headers::CSeq::new(format!("{} INVITE", e.dialog.remote_cseq));
                }
            }
            let extra = Extra {
                to_tag: Some(&tag),
                ..Extra::default()
            };
            self.respond(&inv, e.peer, &invite, 487, &extra, now);
            tracing::info!(call = %e.dialog.call_id, "cancelled before the answer");
            // Dropping the entry drops the admitted call: its port and channel go back. The
            // caller gave up: the call's record says so.
            if let Phase::Ringing {
                admitted: Some(a), ..
            } = e.phase
            {
                (a.unserved)("abandoned");
            }
        }
    }

    fn on_bye(&mut self, req: &Request, f: &Facts, peer: Peer, key: TxKey, now: Millis) {
        let tag = f.to_tag.clone().unwrap_or_default();
        let found = self.dialogs.get(&tag).is_some_and(|e| e.dialog.matches(f));
        if !found {
            let leg = self
                .legs
                .get(&tag)
                .is_some_and(|l| l.dialog.as_ref().is_some_and(|d| d.matches(f)));
            if leg {
                self.respond(req, peer, &key, 200, &Extra::default(), now);
                if let Some(l) = self.remove_leg(&tag) {
                    let _ = l.events.send(LegEvent::Bye);
                }
            } else {
                self.answer(req, peer, &key, 481, now);
            }
            return;
        }
        self.respond(req, peer, &key, 200, &Extra::default(), now);
        if let Some(e) = self.dialogs.remove(&tag) {
            self.stats
                .active
                .store(self.dialogs.len(), Ordering::Relaxed);
            if let Some(late) = e.awaiting_ack {
                // Hung up before the ACK: the call never started.
                (late.unserved)("abandoned");
            } else if let Phase::Answered { events } = &e.phase {
                let _ = events.send(DialogEvent::Bye);
            }
        }
    }

    fn on_info(&mut self, req: &Request, f: &Facts, peer: Peer, key: TxKey, now: Millis) {
        let tag = f.to_tag.clone().unwrap_or_default();
        let Some(e) = self.dialogs.get(&tag).filter(|e| e.dialog.matches(f)) else {
            let leg = self
                .legs
                .get(&tag)
                .is_some_and(|l| l.dialog.as_ref().is_some_and(|d| d.matches(f)));
            let code = if leg { 200 } else { 481 };
            self.answer(req, peer, &key, code, now);
            return;
        };
        let ctype = message::value(&req.headers, "Content-Type").unwrap_or_default();
        let body = String::from_utf8_lossy(&req.body);
        if let Some(k) = ivr_sip::info::key_of_info(ctype, &body)
            && let Phase::Answered { events } = &e.phase
        {
            let _ = events.send(DialogEvent::Key(k));
        }
        self.respond(req, peer, &key, 200, &Extra::default(), now);
    }

    fn send_bye(&mut self, mut e: Entry, now: Millis) {
        self.send_dialog_bye(&mut e.dialog, e.peer, e.local_ip, now);
    }

    /// Our sent-by for Via: `SIP/2.0/UDP host:port`.
    fn sent_by(&self, proto: Proto, ip: IpAddr) -> String {
        format!(
            "SIP/2.0/{} {}:{}",
            proto.as_str(),
            match ip {
                IpAddr::V6(v6) => format!("[{v6}]"),
                IpAddr::V4(v4) => v4.to_string(),
            },
            self.opts.local.port()
        )
    }

    fn send_dialog_bye(&mut self, dialog: &mut Dialog, peer: Peer, local_ip: IpAddr, now: Millis) {
        let via = self.sent_by(peer.proto, local_ip);
        let branch = message::new_branch();
        let bytes: Arc<[u8]> = Arc::from(dialog.request(Method::Bye, &via, &branch));
        let tx = ClientTx::new(
            Arc::clone(&bytes),
            peer.proto.reliable(),
            self.opts.timers,
            now,
        );
        let d = tx.poll_timeout();
        self.client.insert(branch.clone(), (tx, peer));
        self.send(&peer, bytes);
        self.arm(d, TimerKey::Client(branch));
    }

    /// Places a call ([`CoreMsg::Dial`]).
    fn dial(&mut self, d: Dial, now: Millis) {
        let local_ip = self.local_ip(d.peer.addr.ip());
        let sent_by = self.sent_by(d.peer.proto, local_ip);
        let contact = self.contact(local_ip, d.peer.proto);
        let host = match local_ip {
            IpAddr::V6(v6) => format!("[{v6}]"),
            IpAddr::V4(v4) => v4.to_string(),
        };
        let from_user: String = d
            .from_user
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || "+-_.*#".contains(*c))
            .take(64)
            .collect();
        let from_user = if from_user.is_empty() {
            "anonymous".to_string()
        } else {
            from_user
        };
        let from = format!("<sip:{from_user}@{host}>");
        let session_id = message::random_u64() >> 1;
        let offer = sdp::offer(local_ip, d.port, session_id, 1);
        let call_id = format!("{}-{}", message::new_tag(), message::new_tag());
        let built = OutgoingInvite::build(&InviteParts {
            target: &d.target,
            sent_by: &sent_by,
            from: &from,
            tag: &d.tag,
            call_id: &call_id,
            contact: &contact,
            headers: &d.headers,
            sdp: &offer,
        });
        let (invite, bytes) = match built {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(target = %d.target, error = %e, "cannot place the call");
                let _ = d.events.send(LegEvent::Failed(400));
                return;
            }
        };
        let bytes: Arc<[u8]> = Arc::from(bytes);
        let tx = InviteClientTx::new(
            Arc::clone(&bytes),
            d.peer.proto.reliable(),
            self.opts.timers,
            now,
        );
        let deadline = tx.poll_timeout();
        self.leg_branches
            .insert(invite.branch.clone(), d.tag.clone());
        self.legs.insert(
            d.tag.clone(),
            Leg {
                invite,
                tx,
                peer: d.peer,
                local_ip,
                port: d.port,
                session_id,
                sdp_version: 1,
                events: d.events,
                state: LegState::Calling,
                cancel: false,
                cancel_sent: false,
                dialog: None,
                ack: None,
                reinvite: None,
            },
        );
        self.send(&d.peer, bytes);
        self.arm(deadline, TimerKey::Leg(d.tag));
    }

    fn remove_leg(&mut self, tag: &str) -> Option<Leg> {
        let l = self.legs.remove(tag)?;
        self.leg_branches.remove(&l.invite.branch);
        Some(l)
    }

    fn send_cancel(&mut self, tag: &str, now: Millis) {
        let Some(l) = self.legs.get_mut(tag) else {
            return;
        };
        if l.cancel_sent {
            return;
        }
        l.cancel_sent = true;
        let bytes: Arc<[u8]> = Arc::from(l.invite.cancel());
        let peer = l.peer;
        let key = format!("{}|CANCEL", l.invite.branch);
        let tx = ClientTx::new(
            Arc::clone(&bytes),
            peer.proto.reliable(),
            self.opts.timers,
            now,
        );
        let d = tx.poll_timeout();
        self.client.insert(key.clone(), (tx, peer));
        self.send(&peer, bytes);
        self.arm(d, TimerKey::Client(key));
    }

    /// Ends a leg the call no longer wants ([`CoreMsg::EndLeg`]).
    fn end_leg(&mut self, tag: &str, now: Millis) {
        let Some(l) = self.legs.get_mut(tag) else {
            return;
        };
        match l.state {
            LegState::Calling => {
                l.cancel = true;
                // A CANCEL only once the callee answered something (RFC 3261 9.1).
                if l.tx.proceeding() {
                    self.send_cancel(tag, now);
                }
            }
            LegState::Answered => {
                if let Some(mut l) = self.remove_leg(tag)
                    && let Some(d) = l.dialog.as_mut()
                {
                    self.send_dialog_bye(d, l.peer, l.local_ip, now);
                }
            }
            LegState::Done => {}
        }
    }

    fn on_leg_response(&mut self, tag: &str, resp: &Response, now: Millis) {
        let code = resp.status_code.code();
        let Some(l) = self.legs.get_mut(tag) else {
            return;
        };
        if l.state != LegState::Calling {
            // A retransmitted final response: our ACK got lost.
            if code >= 200
                && let Some(a) = l.ack.clone()
            {
                let peer = l.peer;
                self.send(&peer, a);
            }
            return;
        }
        l.tx.handle_input(TxResponse(code), now);
        if !l.tx.done() {
            let (cancel, deadline) = (l.cancel, l.tx.poll_timeout());
            if cancel {
                self.send_cancel(tag, now);
            } else if code >= 180 {
                let _ = l.events.send(LegEvent::Ringing);
            }
            self.arm(deadline, TimerKey::Leg(tag.to_string()));
            return;
        }
        if code >= 300 {
            let to = message::value(&resp.headers, "To").unwrap_or_default();
            let ack: Arc<[u8]> = Arc::from(l.invite.ack_error(to));
            l.ack = Some(Arc::clone(&ack));
            l.state = LegState::Done;
            let _ = l.events.send(LegEvent::Failed(code));
            let (peer, linger) = (
                l.peer,
                if l.peer.proto.reliable() {
                    0
                } else {
                    self.opts.timers.t64()
                },
            );
            self.send(&peer, ack);
            self.arm(Some(now + linger), TimerKey::Leg(tag.to_string()));
            return;
        }
        // 2xx: the dialog; ACK it (even when we are about to hang up).
        let from = l.invite.from.clone();
        let mut dialog =
            Dialog::from_uac_response(&l.invite.call_id, &from, tag, l.invite.cseq, resp);
        let (peer, local_ip, cancel) = (l.peer, l.local_ip, l.cancel);
        let via = self.sent_by(peer.proto, local_ip);
        let ack: Arc<[u8]> = Arc::from(dialog.ack(&via, &message::new_branch()));
        self.send(&peer, Arc::clone(&ack));
        let n = std::str::from_utf8(&resp.body)
            .ok()
            .filter(|b| !b.trim().is_empty())
            .and_then(|b| sdp::parse(b).ok())
            .and_then(|a| sdp::negotiate(&a).ok());
        if cancel || n.is_none() {
            // Answered too late, or with nothing we can send: hang up at once.
            self.send_dialog_bye(&mut dialog, peer, local_ip, now);
            if let Some(l) = self.remove_leg(tag)
                && !cancel
            {
                tracing::info!(tag, "the callee answered without usable SDP");
                let _ = l.events.send(LegEvent::Failed(488));
            }
            return;
        }
        if let (Some(l), Some(n)) = (self.legs.get_mut(tag), n) {
            l.ack = Some(ack);
            l.dialog = Some(dialog);
            l.state = LegState::Answered;
            let _ = l.events.send(LegEvent::Answered(n));
        }
    }

    /// The callee of a leg re-INVITEs (hold, resume): answer from the leg's port.
    fn on_leg_reinvite(
        &mut self,
        tag: &str,
        req: &Request,
        f: &Facts,
        peer: Peer,
        key: TxKey,
        now: Millis,
    ) {
        let Some(l) = self
            .legs
            .get_mut(tag)
            .filter(|l| l.dialog.as_ref().is_some_and(|d| d.matches(f)))
        else {
            self.answer(req, peer, &key, 481, now);
            return;
        };
        let offer = std::str::from_utf8(&req.body)
            .ok()
            .filter(|b| !b.trim().is_empty())
            .and_then(|b| sdp::parse(b).ok());
        let Some((offer, n)) = offer.and_then(|o| sdp::negotiate(&o).ok().map(|n| (o, n))) else {
            self.answer(req, peer, &key, 488, now);
            return;
        };
        l.sdp_version += 1;
        let body = sdp::answer(&offer, &n, l.local_ip, l.port, l.session_id, l.sdp_version);
        let _ = l.events.send(LegEvent::Media(n));
        l.reinvite = Some(key.clone());
        let local_ip = l.local_ip;
        let contact = self.contact(local_ip, peer.proto);
        self.respond(
            req,
            peer,
            &key,
            200,
            &Extra {
                to_tag: Some(tag),
                contact: Some(&contact),
                headers: &[("Allow", ALLOW)],
                body: Some(("application/sdp", body.as_bytes())),
            },
            now,
        );
    }

    fn on_leg_timer(&mut self, tag: &str, now: Millis) {
        let Some(l) = self.legs.get_mut(tag) else {
            return;
        };
        if l.state == LegState::Done {
            self.remove_leg(tag);
            return;
        }
        if l.state != LegState::Calling || l.tx.poll_timeout().is_none_or(|d| d > now) {
            return;
        }
        match poll(&mut l.tx, now) {
            Poll::Retransmit(b) => {
                let (d, peer) = (l.tx.poll_timeout(), l.peer);
                self.send(&peer, b);
                self.arm(d, TimerKey::Leg(tag.to_string()));
            }
            Poll::Idle => {
                let d = l.tx.poll_timeout();
                self.arm(d, TimerKey::Leg(tag.to_string()));
            }
            Poll::TimedOut | Poll::Terminated => {
                if l.tx.proceeding() {
                    // Rang for timer C: give up with a CANCEL; its 487 ends the leg.
                    let _ = l.events.send(LegEvent::Failed(408));
                    l.cancel = true;
                    self.send_cancel(tag, now);
                    self.arm(
                        Some(now + self.opts.timers.t64()),
                        TimerKey::Leg(tag.to_string()),
                    );
                    if let Some(l) = self.legs.get_mut(tag) {
                        l.state = LegState::Done;
                    }
                } else if let Some(l) = self.remove_leg(tag) {
                    tracing::info!(target = %l.invite.uri, "no answer to the INVITE");
                    let _ = l.events.send(LegEvent::Failed(408));
                }
            }
        }
    }

    fn on_core_msg(&mut self, m: CoreMsg, now: Millis) {
        match m {
            CoreMsg::Ended { tag, bye } => {
                if let Some(e) = self.dialogs.remove(&tag) {
                    self.stats
                        .active
                        .store(self.dialogs.len(), Ordering::Relaxed);
                    if bye {
                        self.send_bye(e, now);
                    }
                }
            }
            CoreMsg::Dial(d) => self.dial(*d, now),
            CoreMsg::EndLeg { tag } => self.end_leg(&tag, now),
            CoreMsg::Credentials { realm, credentials } => {
                for agent in self.registrar.set_credentials(realm, credentials) {
                    tracing::info!(agent, "no longer configured: its registration is dropped");
                }
            }
            CoreMsg::Drain => self.draining = true,
            CoreMsg::TerminateAll => {
                self.draining = true;
                let tags: Vec<String> = self.dialogs.keys().cloned().collect();
                for tag in tags {
                    self.terminate(&tag, now);
                }
            }
        }
    }

    /// Ends an answered call from our side: the call feeds the engine a hang-up and reports
    /// back with `Ended { bye: true }`.
    fn terminate(&mut self, tag: &str, now: Millis) {
        // A late offer still waiting for its ACK: the call never started; we send the BYE.
        if self
            .dialogs
            .get(tag)
            .is_some_and(|e| e.awaiting_ack.is_some())
            && let Some(mut e) = self.dialogs.remove(tag)
        {
            self.stats
                .active
                .store(self.dialogs.len(), Ordering::Relaxed);
            if let Some(late) = e.awaiting_ack.take() {
                (late.unserved)("failed");
            }
            self.send_bye(e, now);
            return;
        }
        let ringing = match self.dialogs.get_mut(tag) {
            Some(e) => match &e.phase {
                Phase::Answered { events } => {
                    let _ = events.send(DialogEvent::Terminate);
                    e.phase = Phase::Ending;
                    false
                }
                Phase::Ringing { .. } => true,
                Phase::Ending => false,
            },
            None => false,
        };
        if ringing {
            if let Some(Entry {
                phase: Phase::Ringing {
                    admitted: Some(a), ..
                },
                ..
            }) = self.dialogs.remove(tag)
            {
                (a.unserved)("failed");
            }
            self.stats
                .active
                .store(self.dialogs.len(), Ordering::Relaxed);
        }
    }

    fn on_timers(&mut self, now: Millis) {
        while let Some(Reverse((at, _))) = self.heap.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((_, key))) = self.heap.pop() else {
                break;
            };
            match key {
                TimerKey::Answer(tag) => self.answer_call(&tag, now),
                TimerKey::Register(branch) => {
                    if let Some(held) = self.held.remove(&branch) {
                        self.send_held(held, now);
                    }
                }
                TimerKey::Leg(tag) => self.on_leg_timer(&tag, now),
                TimerKey::Client(branch) => {
                    let Some((tx, peer)) = self.client.get_mut(&branch) else {
                        continue;
                    };
                    if tx.poll_timeout().is_some_and(|d| d > now) {
                        continue;
                    }
                    match poll(tx, now) {
                        Poll::Retransmit(b) => {
                            let (d, peer) = (tx.poll_timeout(), *peer);
                            self.send(&peer, b);
                            self.arm(d, TimerKey::Client(branch));
                        }
                        Poll::Idle => {
                            let d = tx.poll_timeout();
                            self.arm(d, TimerKey::Client(branch));
                        }
                        Poll::TimedOut | Poll::Terminated => {
                            self.client.remove(&branch);
                        }
                    }
                }
                TimerKey::Server(branch, m) => {
                    let key = TxKey {
                        branch,
                        method: method_of(m),
                    };
                    let Some((tx, target)) = self.server.get_mut(&key) else {
                        continue;
                    };
                    if tx.poll_timeout().is_none_or(|d| d > now) {
                        continue;
                    }
                    match poll(tx, now) {
                        Poll::Retransmit(b) => {
                            let (d, target) = (tx.poll_timeout(), *target);
                            self.send(&target, b);
                            self.arm(d, TimerKey::Server(key.branch, m));
                        }
                        Poll::Idle => {
                            let d = tx.poll_timeout();
                            self.arm(d, TimerKey::Server(key.branch, m));
                        }
                        Poll::Terminated => {
                            self.server.remove(&key);
                        }
                        Poll::TimedOut => {
                            self.server.remove(&key);
                            if key.method == Method::Invite {
                                self.no_ack(&key, now);
                            }
                        }
                    }
                }
            }
        }
    }

    /// A 2xx was never acknowledged: end the call and send a BYE (RFC 3261 13.3.1.4).
    fn no_ack(&mut self, invite: &TxKey, now: Millis) {
        let tag = self
            .dialogs
            .iter()
            .find(|(_, e)| e.invite == *invite && matches!(e.phase, Phase::Answered { .. }))
            .map(|(t, _)| t.clone());
        if let Some(tag) = tag {
            tracing::warn!(tag = %tag, "no ACK for the 200 OK; ending the call");
            self.terminate(&tag, now);
        }
    }
}

/// What a transaction asks for once it handled the time `now`.
enum Poll {
    Idle,
    Retransmit(Arc<[u8]>),
    TimedOut,
    Terminated,
}

fn poll<M: Machine<Output = TxOutput>>(tx: &mut M, now: Millis) -> Poll {
    tx.handle_timeout(now);
    let mut p = Poll::Idle;
    while let Some(o) = tx.poll_output() {
        p = match o {
            TxOutput::Retransmit(b) => Poll::Retransmit(b),
            TxOutput::TimedOut => Poll::TimedOut,
            TxOutput::Terminated => Poll::Terminated,
        };
    }
    p
}

#[cfg(test)]
mod method_codes {
    use super::*;

    #[test]
    fn every_method_comes_back_from_its_code() {
        for m in Method::all() {
            assert_eq!(method_of(method_code(m)), m);
        }
    }
}
