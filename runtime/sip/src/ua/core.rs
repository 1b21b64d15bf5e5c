//! The core and its tables: server and client transactions, dialogs, legs, the timer heap,
//! the queue of outputs; the [`Machine`] implementation that routes inputs and due timers to
//! the other modules; the helpers every module sends with.

use super::legs::Leg;
use super::register::HeldReply;
use super::{Command, CoreOptions, DialogEvent, Host, Input, Output};
use crate::dialog::Dialog;
use crate::message::{self, ALLOW, Extra};
use crate::peer::{Peer, Proto};
use crate::registrar::Registrar;
use crate::sdp::Negotiated;
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
    heap: BinaryHeap<Reverse<(Millis, TimerKey)>>,
    pub(super) draining: bool,
    /// Agents' REGISTERs.
    pub(super) registrar: Registrar,
    /// REGISTER responses held back (repeated failures), by branch.
    pub(super) held: HashMap<String, HeldReply>,
    out: VecDeque<Output>,
    pub(super) answered: usize,
    pub(super) refused: usize,
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
            opts,
            server: HashMap::new(),
            client: HashMap::new(),
            dialogs: HashMap::new(),
            legs: HashMap::new(),
            leg_branches: HashMap::new(),
            heap: BinaryHeap::new(),
            draining: false,
            registrar: Registrar::new("ivr", HashMap::new()),
            held: HashMap::new(),
            out: VecDeque::new(),
            answered: 0,
            refused: 0,
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
        }
    }

    /// Our sent-by for Via: `SIP/2.0/UDP host:port`.
    pub(super) fn sent_by(&self, proto: Proto, ip: IpAddr) -> String {
        format!(
            "SIP/2.0/{} {}:{}",
            proto.as_str(),
            host_of(ip),
            self.opts.local.port()
        )
    }

    /// Where responses to `req` from `peer` go: over UDP the Via's `received`/`rport`.
    pub(super) fn response_target(req: &Request, peer: Peer) -> Peer {
        match peer.proto {
            Proto::Udp => Peer {
                addr: message::response_target(&req.headers, peer.addr),
                ..peer
            },
            Proto::Tcp => peer,
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

    /// A stateless answer (no transaction kept): for requests we refuse outright.
    pub(super) fn answer(
        &mut self,
        req: &Request,
        peer: Peer,
        key: &TxKey,
        code: u16,
        now: Millis,
    ) {
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
            Method::Options => self.on_options(&req, peer, key, now),
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
                }
            }
            Command::Dial(d) => self.dial(*d, now),
            Command::EndLeg { tag } => self.end_leg(&tag, now),
            Command::Credentials { realm, credentials } => {
                for agent in self.registrar.set_credentials(realm, credentials) {
                    tracing::info!(agent, "no longer configured: its registration is dropped");
                }
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
                    if let Some(held) = self.held.remove(&branch) {
                        self.send_held(held, now);
                    }
                }
                TimerKey::Leg(tag) => self.on_leg_timer(&tag, now),
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
