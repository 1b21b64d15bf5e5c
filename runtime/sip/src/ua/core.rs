//! The core and its tables: server and client transactions, dialogs, legs, the timer heap,
//! the queue of outputs; the [`Machine`] implementation that routes inputs and due timers to
//! the other modules; the helpers every module sends with.

use super::legs::Leg;
use super::register::HeldReply;
use super::{Command, CoreOptions, Counters, DialogEvent, Host, Input, Output};
use crate::dialog::Dialog;
use crate::edge::{Bucket, IN_DIALOG_BURST, IN_DIALOG_RATE, InviteLimiter};
use crate::message::{self, ALLOW, Extra};
use crate::peer::{Peer, Proto};
use crate::registrar::Registrar;
use crate::sdp::{Negotiated, Sdes};
use crate::transaction::{ClientTx, ServerInput, ServerTx, TxOutput};
use ivr_sansio::{Machine, Millis};
use rsip::{Method, Request, SipMessage};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;

/// A server transaction's key: the branch and the method (a CANCEL shares its INVITE's
/// branch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct TxKey {
    pub(super) branch: String,
    pub(super) method: Method,
}

impl std::hash::Hash for TxKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.branch.hash(state);
        method_code(self.method).hash(state);
    }
}

/// What a timer of the heap is for. Entries go stale (the transaction is gone or was
/// re-armed); a due entry only acts when its owner is really due.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum TimerKey {
    /// A server transaction (branch, method code).
    Server(String, u8),
    /// A client transaction (our BYE, our CANCEL).
    Client(String),
    /// The 200 OK of a ringing call (`answer_after`).
    Answer(String),
    /// A leg's INVITE transaction, or the linger of a failed leg.
    Leg(String),
    /// A held REGISTER response (by branch) is due.
    Register(String),
    /// The re-INVITE of a call taken over (by tag).
    Resume(String),
}

/// Where an incoming call's dialog is.
pub(super) enum Phase {
    /// Admitted, not answered yet (`answer_after`): the 200 OK waits.
    Ringing {
        /// What was negotiated (none: late offer).
        negotiated: Option<Negotiated>,
        /// The 200 OK.
        answer: Vec<u8>,
        /// The INVITE, for the final error response when the call ends before its 200.
        invite: Box<Request>,
    },
    /// Answered: the call hears [`DialogEvent`]s.
    Answered,
    /// We asked the call to end ([`DialogEvent::Terminate`]); waiting for its
    /// [`Command::Ended`].
    Ending,
}

/// A dialog of an incoming call.
pub(super) struct Entry {
    pub(super) dialog: Dialog,
    pub(super) peer: Peer,
    pub(super) invite: TxKey,
    pub(super) phase: Phase,
    pub(super) port: u16,
    pub(super) local_ip: IpAddr,
    pub(super) sdp_version: u64,
    pub(super) session_id: u64,
    /// Answered, waiting for the ACK: the call starts only then (no media is sent to an
    /// address before the caller's ACK has come, so a forged INVITE cannot aim our audio at
    /// a third party).
    pub(super) awaiting_ack: bool,
    /// What was negotiated from the INVITE's offer, for the call to start with at the ACK
    /// (none: a late offer, whose ACK carries the answer).
    pub(super) start_with: Option<Negotiated>,
    /// The caller's re-INVITE answered with a 2xx and its CSeq: its ACK ends the 2xx's
    /// retransmissions.
    pub(super) reinvite: Option<(TxKey, u32)>,
    /// The rate of the caller's requests within the dialog (INFO, re-INVITE).
    pub(super) bucket: Bucket,
    /// The SRTP keys of the call (none: plain RTP). A re-INVITE keeps the call's protection
    /// (an SRTP call's must offer `RTP/SAVP`, a plain call's `RTP/AVP`) and our key.
    pub(super) srtp: Option<Sdes>,
    /// A call taken over: the ACK of the 2xx to our re-INVITE, sent again for its
    /// retransmissions.
    pub(super) resumed_ack: Option<Arc<[u8]>>,
}

/// The user-agent core (see the module's documentation).
pub struct Core<H: Host> {
    pub(super) host: H,
    pub(super) opts: CoreOptions,
    pub(super) server: HashMap<TxKey, (ServerTx, Peer)>,
    pub(super) client: HashMap<String, (ClientTx, Peer)>,
    pub(super) dialogs: HashMap<String, Entry>,
    pub(super) legs: HashMap<String, Leg>,
    /// INVITE branch → leg tag.
    pub(super) leg_branches: HashMap<String, String>,
    /// Calls taken over whose re-INVITE is on its way, by tag.
    pub(super) resuming: HashMap<String, super::resume::Resuming>,
    /// re-INVITE branch → tag of a call taken over (kept while its dialog lasts).
    pub(super) resume_branches: HashMap<String, String>,
    heap: BinaryHeap<Reverse<(Millis, TimerKey)>>,
    pub(super) draining: bool,
    /// Agents' REGISTERs.
    pub(super) registrar: Registrar,
    /// REGISTER responses held back (repeated failures), by branch.
    pub(super) held: HashMap<String, HeldReply>,
    /// How many of `held` each source address (IPv6: /64) has.
    pub(super) held_per: HashMap<IpAddr, usize>,
    /// A token bucket per untrusted source address for INVITEs of new dialogs.
    pub(super) rate: InviteLimiter,
    out: VecDeque<Output>,
    pub(super) answered: usize,
    pub(super) refused: usize,
    pub(super) counters: Counters,
    /// The port of the SIP-over-TLS listener, for Contact and Via on TLS connections.
    pub(super) tls_port: Option<u16>,
}

impl<H: Host> std::fmt::Debug for Core<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("dialogs", &self.dialogs.len())
            .field("legs", &self.legs.len())
            .field("server", &self.server.len())
            .field("client", &self.client.len())
            .field("draining", &self.draining)
            .finish_non_exhaustive()
    }
}

pub(super) fn method_code(m: Method) -> u8 {
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

/// `ms` in whole seconds, rounded up (a `Retry-After`).
fn whole_seconds(ms: Millis) -> Millis {
    (ms.max(0) + 999) / 1_000
}

/// `host` for a URI: IPv6 in brackets.
pub(super) fn host_of(ip: IpAddr) -> String {
    match ip {
        IpAddr::V6(v6) => format!("[{v6}]"),
        IpAddr::V4(v4) => v4.to_string(),
    }
}

impl<H: Host> Core<H> {
    /// A core that admits calls through `host`. Its registrar knows no agent until
    /// [`Core::with_registrar`] or [`Command::Credentials`].
    pub fn new(host: H, opts: CoreOptions) -> Core<H> {
        Core {
            host,
            server: HashMap::new(),
            client: HashMap::new(),
            dialogs: HashMap::new(),
            legs: HashMap::new(),
            leg_branches: HashMap::new(),
            resuming: HashMap::new(),
            resume_branches: HashMap::new(),
            heap: BinaryHeap::new(),
            draining: false,
            registrar: Registrar::new("ivr", HashMap::new()),
            held: HashMap::new(),
            held_per: HashMap::new(),
            rate: InviteLimiter::with_capacity(opts.bounds.rate_sources),
            opts,
            out: VecDeque::new(),
            answered: 0,
            refused: 0,
            counters: Counters::default(),
            tls_port: None,
        }
    }

    /// Names `port` (the SIP-over-TLS listener's) in Contact and Via of messages sent over
    /// TLS connections.
    pub fn with_tls_port(mut self, port: u16) -> Core<H> {
        self.tls_port = Some(port);
        self
    }

    /// Our port for `proto`: the TLS listener's for TLS, else the one of `local`.
    fn port_for(&self, proto: Proto) -> u16 {
        match (proto, self.tls_port) {
            (Proto::Tls, Some(port)) => port,
            _ => self.opts.local.port(),
        }
    }

    /// The registrar of agents' REGISTERs (the default one knows no agent).
    pub fn with_registrar(mut self, registrar: Registrar) -> Core<H> {
        self.registrar = registrar;
        self
    }

    /// The application's side.
    pub fn host(&self) -> &H {
        &self.host
    }

    /// The application's side, to change.
    pub fn host_mut(&mut self) -> &mut H {
        &mut self.host
    }

    /// The settings.
    pub fn options(&self) -> &CoreOptions {
        &self.opts
    }

    /// Dialogs now (ringing or answered).
    pub fn active(&self) -> usize {
        self.dialogs.len()
    }

    /// Calls answered since start.
    pub fn answered(&self) -> usize {
        self.answered
    }

    /// INVITEs refused (any 4xx/5xx).
    pub fn refused(&self) -> usize {
        self.refused
    }

    /// What the core refused or dropped to protect itself, since start.
    pub fn counters(&self) -> Counters {
        Counters {
            registers_refused: self.registrar.refusals(),
            ..self.counters
        }
    }

    /// Server transactions now.
    pub fn server_transactions(&self) -> usize {
        self.server.len()
    }

    /// Client transactions now (our BYEs and CANCELs).
    pub fn client_transactions(&self) -> usize {
        self.client.len()
    }

    /// REGISTER answers held back now.
    pub fn held_registers(&self) -> usize {
        self.held.len()
    }

    /// Legs we placed that are not over.
    pub fn legs(&self) -> usize {
        self.legs.len()
    }

    /// Whether new INVITEs are refused ([`Command::Drain`]).
    pub fn draining(&self) -> bool {
        self.draining
    }

    /// Queues an output.
    pub(super) fn emit(&mut self, o: Output) {
        self.out.push_back(o);
    }

    /// Queues bytes for `peer`.
    pub(super) fn send(&mut self, peer: &Peer, bytes: Arc<[u8]>) {
        self.out.push_back(Output::Transmit { peer: *peer, bytes });
    }

    /// Queues an event for the call of dialog `tag`.
    pub(super) fn dialog_event(&mut self, tag: &str, event: DialogEvent) {
        self.emit(Output::Dialog {
            tag: tag.to_string(),
            event,
        });
    }

    /// Forgets dialog `tag`, telling the application.
    pub(super) fn remove_dialog(&mut self, tag: &str) -> Option<Entry> {
        let e = self.dialogs.remove(tag)?;
        if e.resumed_ack.is_some() {
            self.resume_branches.retain(|_, t| t != tag);
        }
        self.emit(Output::DialogClosed {
            tag: tag.to_string(),
        });
        Some(e)
    }

    pub(super) fn arm(&mut self, at: Option<Millis>, key: TimerKey) {
        if let Some(at) = at {
            self.heap.push(Reverse((at, key)));
        }
    }

    /// Arms the timer of server transaction `key` at its deadline.
    pub(super) fn arm_server(&mut self, key: &TxKey) {
        let at = self.server.get(key).and_then(|(tx, _)| tx.poll_timeout());
        self.arm(
            at,
            TimerKey::Server(key.branch.clone(), method_code(key.method)),
        );
    }

    /// Our address towards `peer`.
    pub(super) fn local_ip(&mut self, peer: IpAddr) -> IpAddr {
        if !self.opts.local.ip().is_unspecified() {
            return self.opts.local.ip();
        }
        self.host.local_ip(peer)
    }

    /// Our Contact URI.
    pub(super) fn contact(&self, ip: IpAddr, proto: Proto) -> String {
        let host = host_of(ip);
        match proto {
            Proto::Udp => format!("sip:ivr@{host}:{}", self.opts.local.port()),
            Proto::Tcp => format!("sip:ivr@{host}:{};transport=tcp", self.opts.local.port()),
            // RFC 5630: a SIPS URI says "reach me over TLS" (the port is the TLS listener's).
            Proto::Tls => format!("sips:ivr@{host}:{}", self.port_for(proto)),
        }
    }

    /// Our sent-by for Via: `SIP/2.0/UDP host:port`.
    pub(super) fn sent_by(&self, proto: Proto, ip: IpAddr) -> String {
        format!(
            "SIP/2.0/{} {}:{}",
            proto.as_str(),
            host_of(ip),
            self.port_for(proto)
        )
    }

    /// Where responses to `req` from `peer` go: over UDP the Via's `received`/`rport`.
    pub(super) fn response_target(req: &Request, peer: Peer) -> Peer {
        match peer.proto {
            Proto::Udp => Peer {
                addr: message::response_target(&req.headers, peer.addr),
                ..peer
            },
            Proto::Tcp | Proto::Tls => peer,
        }
    }

    /// Sends a response on a server transaction (creating it when needed).
    pub(super) fn respond(
        &mut self,
        req: &Request,
        peer: Peer,
        key: &TxKey,
        code: u16,
        extra: &Extra<'_>,
        now: Millis,
    ) {
        let bytes: Arc<[u8]> = Arc::from(message::response(req, peer.addr, code, extra));
        let target = Self::response_target(req, peer);
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
        self.send(&target, bytes);
        self.arm_server(key);
    }

    /// A response on an existing server transaction (the 200 of a ringing call, a held
    /// REGISTER answer); false when the transaction is gone.
    pub(super) fn respond_on(
        &mut self,
        key: &TxKey,
        code: u16,
        bytes: Arc<[u8]>,
        now: Millis,
    ) -> bool {
        let Some((tx, target)) = self.server.get_mut(key) else {
            return false;
        };
        tx.handle_input(
            ServerInput::Respond {
                code,
                bytes: Arc::clone(&bytes),
            },
            now,
        );
        let target = *target;
        self.send(&target, bytes);
        self.arm_server(key);
        true
    }

    /// The ACK of our final response on server transaction `key`.
    pub(super) fn ack_server(&mut self, key: &TxKey, now: Millis) {
        if let Some((tx, _)) = self.server.get_mut(key) {
            tx.handle_input(ServerInput::Ack, now);
            self.arm_server(key);
        }
    }

    /// A stateless answer: sent once, no transaction kept (a retransmitted request is
    /// answered again as if new). For requests we refuse outright: they match nothing, or a
    /// limit refuses them ([`Core::answer_stateless`], with `Retry-After`).
    pub(super) fn answer(&mut self, req: &Request, peer: Peer, code: u16) {
        self.answer_stateless(req, peer, code, None);
    }

    /// [`Core::answer`] with a `Retry-After` of `retry_after` seconds.
    pub(super) fn answer_stateless(
        &mut self,
        req: &Request,
        peer: Peer,
        code: u16,
        retry_after: Option<Millis>,
    ) {
        let allow = [("Allow", ALLOW)];
        let retry = retry_after.map(|s| s.max(1).to_string());
        let retry = [("Retry-After", retry.as_deref().unwrap_or_default())];
        let extra = Extra {
            to_tag: Some("ivr-refused"),
            headers: if code == 405 || code == 501 {
                &allow
            } else if retry_after.is_some() {
                &retry
            } else {
                &[]
            },
            ..Extra::default()
        };
        let bytes: Arc<[u8]> = Arc::from(message::response(req, peer.addr, code, &extra));
        let target = Self::response_target(req, peer);
        self.send(&target, bytes);
    }

    /// An answer on a transaction of its own, for refusals within a dialog that must answer
    /// a retransmitted request the same way (488 and 500 to a re-INVITE).
    pub(super) fn answer_on_tx(
        &mut self,
        req: &Request,
        peer: Peer,
        key: &TxKey,
        code: u16,
        now: Millis,
    ) {
        let extra = Extra {
            to_tag: Some("ivr-refused"),
            ..Extra::default()
        };
        self.respond(req, peer, key, code, &extra, now);
    }

    /// Takes a token of a dialog's or leg's request rate; when there is none, answers 503
    /// statelessly and counts it (false).
    pub(super) fn in_dialog_rate(
        &mut self,
        bucket: &mut Bucket,
        req: &Request,
        peer: Peer,
        now: Millis,
    ) -> bool {
        match bucket.take(IN_DIALOG_RATE, IN_DIALOG_BURST, now) {
            Ok(()) => true,
            Err(wait) => {
                self.counters.shed_in_dialog += 1;
                self.answer_stateless(req, peer, 503, Some(whole_seconds(wait)));
                false
            }
        }
    }

    /// Sends an in-dialog BYE on a client transaction of its own.
    pub(super) fn send_dialog_bye(
        &mut self,
        dialog: &mut Dialog,
        peer: Peer,
        local_ip: IpAddr,
        now: Millis,
    ) {
        let via = self.sent_by(peer.proto, local_ip);
        let branch = message::new_branch();
        let bytes: Arc<[u8]> = Arc::from(dialog.request(Method::Bye, &via, &branch));
        self.start_client(branch, bytes, peer, now);
    }

    /// Sends a request of ours on a new non-INVITE client transaction keyed `key`.
    pub(super) fn start_client(&mut self, key: String, bytes: Arc<[u8]>, peer: Peer, now: Millis) {
        if self.client.len() >= self.opts.bounds.client_transactions {
            // At the bound: sent once, without retransmissions.
            self.counters.shed_client_transactions += 1;
            self.send(&peer, bytes);
            return;
        }
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

    fn on_message(&mut self, msg: SipMessage, peer: Peer, now: Millis) {
        match msg {
            SipMessage::Request(req) => self.on_request(req, peer, now),
            SipMessage::Response(resp) => self.on_response(&resp, now),
        }
    }

    fn on_response(&mut self, resp: &rsip::Response, now: Millis) {
        let Ok(f) = message::facts(&resp.headers) else {
            return;
        };
        let Some(branch) = f.branch else { return };
        if f.cseq_method == "INVITE" {
            if let Some(tag) = self.leg_branches.get(&branch).cloned() {
                self.on_leg_response(&tag, resp, now);
            } else if let Some(tag) = self.resume_branches.get(&branch).cloned() {
                self.on_resume_response(&tag, resp, now);
            }
            return;
        }
        // A CANCEL shares its INVITE's branch.
        let branch = if f.cseq_method == "CANCEL" {
            format!("{branch}|CANCEL")
        } else {
            branch
        };
        if let Some((tx, _)) = self.client.get_mut(&branch) {
            tx.handle_input(crate::transaction::Response(resp.status_code.code()), now);
            if tx.done() {
                self.client.remove(&branch);
            }
        }
    }

    fn on_request(&mut self, req: Request, peer: Peer, now: Millis) {
        let f = match message::facts(&req.headers) {
            Ok(f) => f,
            Err(why) => {
                tracing::debug!(peer = %peer.addr, %why, "bad request");
                if req.method != Method::Ack {
                    self.answer(&req, peer, 400);
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
        let trusted = self.opts.edge.trusts(peer.addr.ip());
        // A new dialog's INVITE from an untrusted source: within its address's rate, or a
        // stateless 503 (nothing kept, nothing sent again).
        if req.method == Method::Invite && f.to_tag.is_none() && !trusted {
            let rate = self.opts.edge.invite_rate;
            if let Err(wait) = self.rate.admit(peer.addr.ip(), rate, now) {
                tracing::debug!(peer = %peer.addr, "INVITE beyond invite_rate: 503");
                self.counters.invites_rate_limited += 1;
                self.refused += 1;
                self.answer_stateless(&req, peer, 503, Some(whole_seconds(wait)));
                return;
            }
        }
        // Room for a new server transaction: untrusted sources may take three quarters.
        let bound = self.opts.bounds.server_transactions;
        let room = if trusted { bound } else { bound - bound / 4 };
        if self.server.len() >= room {
            tracing::debug!(peer = %peer.addr, "server transactions at their bound: 503");
            self.counters.shed_server_transactions += 1;
            if req.method == Method::Invite && f.to_tag.is_none() {
                self.refused += 1;
            }
            self.answer_stateless(&req, peer, 503, Some(5));
            return;
        }
        if let Some(mf) = f.max_forwards
            && mf == 0
            && req.method != Method::Options
        {
            self.answer(&req, peer, 483);
            return;
        }
        match req.method {
            Method::Invite if f.to_tag.is_none() => self.on_invite(&req, &f, peer, key, now),
            Method::Invite => self.on_reinvite(&req, &f, peer, key, now),
            Method::Cancel => self.on_cancel(&req, peer, key, now),
            Method::Bye => self.on_bye(&req, &f, peer, key, now),
            Method::Options => self.on_options(&req, peer, key, now),
            Method::Info => self.on_info(&req, &f, peer, key, now),
            Method::Register => self.on_register(&req, peer, key, now),
            Method::Refer => self.on_refer(&req, &f, peer, key, now),
            Method::Subscribe
            | Method::Notify
            | Method::Message
            | Method::Publish
            | Method::PRack
            | Method::Update => self.answer(&req, peer, 405),
            Method::Ack => {}
        }
    }

    fn on_command(&mut self, c: Command, now: Millis) {
        match c {
            Command::Ended { tag, bye } => {
                if let Some(mut e) = self.remove_dialog(&tag) {
                    // Still ringing: no dialog to say BYE in, its INVITE gets an answer.
                    if matches!(e.phase, Phase::Ringing { .. }) {
                        self.refuse_ringing(e, 480, now);
                    } else if bye {
                        self.send_dialog_bye(&mut e.dialog, e.peer, e.local_ip, now);
                    }
                } else {
                    // A call we placed whose flow ran (a campaign's): its leg ends.
                    self.end_leg(&tag, now);
                }
            }
            Command::Dial(d) => self.dial(*d, now),
            Command::Resume(r) => self.resume(*r, now),
            Command::ResumeLeg(r) => self.resume_leg(*r, now),
            Command::EndLeg { tag } => {
                if !self.cancel_resuming(&tag) {
                    self.end_leg(&tag, now);
                }
            }
            Command::DropLeg { tag } => self.drop_leg(&tag, now),
            Command::ReferDone { tag, code } => self.refer_done(&tag, code, now),
            Command::Credentials { realm, credentials } => {
                for agent in self.registrar.set_credentials(realm, credentials) {
                    tracing::info!(agent, "no longer configured: its registration is dropped");
                }
            }
            Command::Edge(policy) => {
                tracing::info!(
                    trusted = policy.trusted.len(),
                    invite_rate = policy.invite_rate,
                    "new limits for INVITEs"
                );
                self.opts.edge = policy;
            }
            Command::Drain => self.draining = true,
            Command::TerminateAll => {
                self.draining = true;
                let tags: Vec<String> = self.dialogs.keys().cloned().collect();
                for tag in tags {
                    self.terminate(&tag, now);
                }
            }
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
                    if let Some(held) = self.take_held(&branch) {
                        self.send_held(held, now);
                    }
                }
                TimerKey::Leg(tag) => self.on_leg_timer(&tag, now),
                TimerKey::Resume(tag) => self.on_resume_timer(&tag, now),
                TimerKey::Client(branch) => self.on_client_timer(branch, now),
                TimerKey::Server(branch, m) => self.on_server_timer(
                    TxKey {
                        branch,
                        method: method_of(m),
                    },
                    now,
                ),
            }
        }
    }

    fn on_client_timer(&mut self, branch: String, now: Millis) {
        let Some((tx, peer)) = self.client.get_mut(&branch) else {
            return;
        };
        if tx.poll_timeout().is_some_and(|d| d > now) {
            return;
        }
        let peer = *peer;
        tx.handle_timeout(now);
        let mut over = false;
        let mut resend = Vec::new();
        while let Some(o) = tx.poll_output() {
            match o {
                TxOutput::Retransmit(b) => resend.push(b),
                TxOutput::TimedOut | TxOutput::Terminated => over = true,
            }
        }
        let d = tx.poll_timeout();
        for b in resend {
            self.send(&peer, b);
        }
        if over {
            self.client.remove(&branch);
        } else {
            self.arm(d, TimerKey::Client(branch));
        }
    }

    fn on_server_timer(&mut self, key: TxKey, now: Millis) {
        let Some((tx, target)) = self.server.get_mut(&key) else {
            return;
        };
        if tx.poll_timeout().is_none_or(|d| d > now) {
            return;
        }
        let target = *target;
        tx.handle_timeout(now);
        let (mut over, mut timed_out) = (false, false);
        let mut resend = Vec::new();
        while let Some(o) = tx.poll_output() {
            match o {
                TxOutput::Retransmit(b) => resend.push(b),
                TxOutput::Terminated => over = true,
                TxOutput::TimedOut => (over, timed_out) = (true, true),
            }
        }
        for b in resend {
            self.send(&target, b);
        }
        if over {
            self.server.remove(&key);
            if timed_out && key.method == Method::Invite {
                self.no_ack(&key, now);
            }
        } else {
            self.arm_server(&key);
        }
    }
}

impl<H: Host> Machine for Core<H> {
    type Input = Input;
    type Output = Output;

    fn handle_input(&mut self, input: Input, now: Millis) {
        match input {
            Input::Received { msg, peer } => self.on_message(msg, peer, now),
            Input::Command(c) => self.on_command(c, now),
        }
    }

    fn poll_timeout(&self) -> Option<Millis> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    fn handle_timeout(&mut self, now: Millis) {
        self.on_timers(now);
    }

    fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }
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
