//! The user-agent core, sans-IO: one [`Core`] owns every transaction and dialog, answers what
//! SIP itself decides (retransmissions, CANCEL, OPTIONS, 481, 405/501, Max-Forwards, limits),
//! admits new calls through the application's [`Host`], and places the legs the application
//! asks for. It is an [`ivr_sansio::Machine`]:
//!
//! - [`Input`]: a message a transport received, with its [`Peer`]; or a [`Command`] of the
//!   application (dial a leg, end a leg, a call is over, drain, end everything, new
//!   credentials, new limits for INVITEs);
//! - [`Output`]: bytes to transmit to a peer, the start (or unserved end) of an admitted call,
//!   [`DialogEvent`]s for a call, [`LegEvent`]s for a leg, agents' [`Registration`]s, and the
//!   news that the core forgot a dialog or a leg;
//! - timers as data: retransmissions and timeouts of the transactions, the delayed answer of
//!   `answer_after`, held REGISTER answers ([`ivr_sansio::Machine::poll_timeout`]).
//!
//! The core reads no clock, opens no socket and holds no channel. Its driver (the SIP task of
//! `ivr serve`, or the in-memory tests) feeds it, sleeps until its deadline and carries out
//! its outputs.
//!
//! What a peer can make the core hold is bounded ([`Bounds`]): INVITEs of new dialogs from
//! sources outside [`EdgePolicy::trusted`] are limited to [`EdgePolicy::invite_rate`] a second
//! per address ([`crate::edge`]); requests within a dialog or leg to
//! [`crate::edge::IN_DIALOG_RATE`] a second; server transactions, client transactions, dialogs
//! (`max_calls`), legs and held REGISTER answers each have a bound. What is refused for these
//! limits is answered statelessly (one 503 with `Retry-After`, never sent again, no state kept)
//! and counted ([`Counters`]). So the events the core emits for one dialog or leg come at most
//! at that rate, whatever its peer sends.
//!
//! Dialogs are keyed by our To-tag, which we make unique; legs by our From tag, which the
//! application chooses. In-dialog requests go to the address the INVITE came from over the
//! same transport (connection), which is right for callers behind NAT and for proxies alike.
//!
//! Files: `core.rs` (the core, its tables, timers and the sending helpers), `invite.rs`
//! (incoming INVITEs and admission), `in_dialog.rs` (ACK, BYE, CANCEL, re-INVITE, INFO,
//! OPTIONS), `legs.rs` (the legs we place: Dial, EndLeg, the client INVITE transaction), `refer.rs`
//! (REFER from a leg's callee, RFC 3515, and its NOTIFYs),
//! `register.rs` (REGISTER, answered by the [`crate::registrar::Registrar`]), `resume.rs` (a
//! call taken over from another node: its caller re-INVITEd, [`Command::Resume`]).

mod core;
mod in_dialog;
mod invite;
mod legs;
mod refer;
mod register;
mod resume;

pub use self::core::Core;
pub use self::refer::{Refer, Replaces, parse_refer_to, parse_replaces};
pub use self::resume::Resume;
pub use crate::edge::EdgePolicy;
use crate::message::Facts;
use crate::peer::Peer;
pub use crate::registrar::{Refusals, Registration};
use crate::sdp::{self, Negotiated};
use crate::transaction::Timers;
use ivr_sansio::Millis;
use rsip::{Request, SipMessage};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// What the core is told.
#[derive(Debug, Clone)]
pub enum Input {
    /// A message a transport received (and parsed).
    Received {
        /// The message.
        msg: SipMessage,
        /// Where it came from, and how to answer.
        peer: Peer,
    },
    /// A command of the application.
    Command(Command),
}

/// What the application tells the core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Place a call ([`LegEvent`]s follow, then [`Output::LegClosed`]).
    Dial(Box<Dial>),
    /// Take over the caller's dialog of a call another node answered (a cluster's node that
    /// died): re-INVITE the caller; [`Output::Start`] once it answers (the dialog is then
    /// this core's like any other), or [`Output::Unserved`] (`failed`) and
    /// [`Output::DialogClosed`] when it refuses or does not answer.
    Resume(Box<Resume>),
    /// Take over an agent's leg of a bridged call another node placed (we are its UAC):
    /// re-INVITE the agent in the leg's dialog (`dialog.local_tag` is the leg's tag, our From
    /// tag); [`LegEvent::Answered`] once it answers (the leg is then this core's like any
    /// other answered leg: BYE either way), or [`LegEvent::Failed`] and [`Output::LegClosed`].
    ResumeLeg(Box<Resume>),
    /// End a leg: CANCEL while it rings (once it has answered anything), BYE once answered.
    EndLeg {
        /// The leg's tag.
        tag: String,
    },
    /// Let go of a leg whose dialog another node has taken over (this node was taken for
    /// dead): an answered leg is forgotten without a BYE (the other node re-INVITEd it, and
    /// its CSeq is above ours); one still ringing is ended as by [`Command::EndLeg`].
    DropLeg {
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
    /// How leg `tag`'s REFER ended: the final NOTIFY carries `SIP/2.0 {code}` (200: the
    /// caller was passed on; 404, 480, 403...: refused, the caller stays).
    ReferDone {
        /// The leg's tag.
        tag: String,
        /// The status of the transfer.
        code: u16,
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

/// A call to place as the UAC: to an agent's phone or a `transfer to` number.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// Digest `(username, password)` for a gateway that challenges the INVITE (401/407): it
    /// is sent once more with the answer. None: a challenge fails the leg.
    pub credentials: Option<(String, String)>,
}

/// What the core tells a call about its dialog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DialogEvent {
    /// The caller hung up (BYE, already answered).
    Bye,
    /// A key from SIP INFO.
    Key(char),
    /// New media parameters (re-INVITE: hold, resume, another address).
    Media(Negotiated),
    /// End the call now (shutdown deadline, no ACK); the call answers with
    /// [`Command::Ended`] and we send the BYE.
    Terminate,
}

/// What the core tells a call about a leg it placed ([`Command::Dial`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LegEvent {
    /// The callee's phone rings (180/183).
    Ringing,
    /// The callee answered with these media parameters (the ACK is sent).
    Answered(Negotiated),
    /// The dialog of the answered leg as it stands after the answer (told right after
    /// [`LegEvent::Answered`]; a cluster's checkpoint keeps it to take the leg over).
    Dialog(Box<crate::dialog::Dialog>),
    /// The call could not be placed or was refused: the final status (408 when nothing
    /// answered, 488 when the answer had no usable SDP).
    Failed(u16),
    /// The callee changed the media (re-INVITE: hold, resume).
    Media(Negotiated),
    /// The callee hung up.
    Bye,
    /// The callee asks to pass the caller on (REFER, answered 202 with a first NOTIFY
    /// `100 Trying`); the application answers with [`Command::ReferDone`].
    Refer(Refer),
}

/// What the core asks its driver to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send these bytes to `peer` (over its transport and, for TCP, its connection).
    Transmit {
        /// Where to.
        peer: Peer,
        /// The whole message.
        bytes: Arc<[u8]>,
    },
    /// The admitted call of dialog `tag` starts with these media parameters: its 200 OK is
    /// on its way (late offer: the ACK brought the caller's answer).
    Start {
        /// Our To-tag.
        tag: String,
        /// What was negotiated.
        media: Negotiated,
    },
    /// The admitted call of dialog `tag` ended before it started: its record's outcome
    /// (`abandoned`: CANCEL or BYE before the ACK; `failed`: no ACK, no common codec,
    /// shutdown).
    Unserved {
        /// Our To-tag.
        tag: String,
        /// `abandoned` or `failed`.
        outcome: &'static str,
    },
    /// An event for the call of dialog `tag`.
    Dialog {
        /// Our To-tag.
        tag: String,
        /// What happened.
        event: DialogEvent,
    },
    /// The core forgot dialog `tag`: nothing more comes for it, and whatever the application
    /// still holds for it (an admitted call that never started) can go. Always the last
    /// output about a dialog.
    DialogClosed {
        /// Our To-tag.
        tag: String,
    },
    /// An event of leg `tag`.
    Leg {
        /// The leg's tag.
        tag: String,
        /// What happened.
        event: LegEvent,
    },
    /// The core forgot leg `tag`: nothing more comes for it. Always the last output about a
    /// leg.
    LegClosed {
        /// The leg's tag.
        tag: String,
    },
    /// An agent's binding changed (REGISTER).
    Registration(Registration),
}

/// A new INVITE as the application sees it ([`Host::admit`]).
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
    /// Our To-tag: the dialog's key in every later output.
    pub tag: &'a str,
    /// The SDP offer (none: late offer, we make it in the 200 OK).
    pub offer: Option<&'a sdp::Session>,
    /// The logged-in agent whose phone sent it, when the INVITE carried its digest
    /// credentials (a call an agent places). An application that takes such calls only from
    /// agents refuses one without with 401: the core then challenges it.
    pub agent: Option<&'a str>,
}

/// A call the application agreed to take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admitted {
    /// The SDP of the 200 OK: our answer, or our offer when the INVITE had none.
    pub answer: String,
    /// What was negotiated (none: late offer, the ACK carries the caller's answer).
    pub negotiated: Option<Negotiated>,
    /// Our RTP port (for answers to re-INVITEs).
    pub port: u16,
}

/// What the core asks of the application it runs in, synchronously and without I/O in the
/// core: whether to take a call, and two facts of its surroundings.
pub trait Host {
    /// Takes a new call (route, SDP answer, RTP port) or refuses it with a status code (404
    /// no route, 488, 503, ...). The call's own life follows in [`Output`]s under `call.tag`.
    fn admit(&mut self, call: NewCall<'_>) -> Result<Admitted, u16>;

    /// Calls in progress on other channels (the browser's), which count against
    /// [`CoreOptions::max_calls`].
    fn elsewhere(&self) -> usize {
        0
    }

    /// Our address as `peer` reaches us, asked only when [`CoreOptions::local`] is an
    /// unspecified address (the server asks the routing table).
    fn local_ip(&mut self, peer: IpAddr) -> IpAddr;
}

/// Settings of the core.
#[derive(Debug, Clone)]
pub struct CoreOptions {
    /// Protocol timers.
    pub timers: Timers,
    /// Most calls at once (503 beyond), counting [`Host::elsewhere`]'s too.
    pub max_calls: usize,
    /// Ring this long (180 Ringing) before answering (ms).
    pub answer_after: Millis,
    /// The address we listen on (its IP, when specified, goes into SDP and Contact).
    pub local: SocketAddr,
    /// Who may INVITE how often (`[server] trusted`, `invite_rate`); [`Command::Edge`]
    /// replaces it.
    pub edge: EdgePolicy,
    /// The bounds of the core's tables.
    pub bounds: Bounds,
}

/// The most entries each table of the core holds. Beyond a bound, a new request is answered
/// with 503 (statelessly) and counted in [`Counters`]; dialogs are bounded by
/// [`CoreOptions::max_calls`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// Server transactions (each request we answer lives in one for up to 32 s over UDP).
    /// Requests from untrusted sources may fill only three quarters of it: the rest is kept
    /// for trunks and proxies.
    pub server_transactions: usize,
    /// Our own requests' transactions (BYE, CANCEL); beyond, a request is sent once without
    /// one.
    pub client_transactions: usize,
    /// Legs we place (the application's `Dial`s beyond fail with 503).
    pub legs: usize,
    /// REGISTER answers held back (repeated failures), in all.
    pub held_registers: usize,
    /// REGISTER answers held back for one source address (IPv6: /64); its REGISTERs beyond
    /// are dropped unanswered, so that one address cannot take the room of every other.
    pub held_per_address: usize,
    /// Source addresses with an INVITE token bucket.
    pub rate_sources: usize,
}

impl Bounds {
    /// Most entries of the tables that grow with calls.
    const CAP: usize = 1 << 20;

    /// The bounds for `max_calls` calls at once: 16 server transactions a call and 4,096
    /// more; 4 client transactions and 4 legs a call and 1,024 more (each at most 2^20);
    /// 10,000 held REGISTER answers, 8 for one address; 10,000 source addresses.
    pub fn for_calls(max_calls: usize) -> Bounds {
        let calls = max_calls.max(1);
        let grow = |per: usize, more: usize| {
            calls
                .saturating_mul(per)
                .saturating_add(more)
                .min(Self::CAP)
        };
        Bounds {
            server_transactions: grow(16, 4_096),
            client_transactions: grow(4, 1_024),
            legs: grow(4, 1_024),
            held_registers: 10_000,
            held_per_address: 8,
            rate_sources: crate::edge::MAX_SOURCES,
        }
    }
}

/// What the core refused or dropped to protect itself, since start (for `/metrics`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// INVITEs of new dialogs from untrusted sources refused beyond `invite_rate` (503).
    pub invites_rate_limited: u64,
    /// New requests refused with 503: the server transactions were at their bound.
    pub shed_server_transactions: u64,
    /// Our requests sent once without a transaction: the client transactions were at their
    /// bound.
    pub shed_client_transactions: u64,
    /// New INVITEs refused with 503 at `max_calls` (the bound of dialogs).
    pub shed_dialogs: u64,
    /// Legs that failed with 503 at the bound of legs.
    pub shed_legs: u64,
    /// Requests within a dialog or leg refused with 503 beyond its rate.
    pub shed_in_dialog: u64,
    /// REGISTERs dropped unanswered: their address, or everyone, had the most answers held
    /// back already.
    pub registers_dropped: u64,
    /// REGISTERs the registrar refused, by reason.
    pub registers_refused: Refusals,
}

impl Counters {
    /// What was shed, by table (the `table` label of `ivr_sip_requests_shed_total`).
    pub fn shed(&self) -> [(&'static str, u64); 5] {
        [
            ("server_transactions", self.shed_server_transactions),
            ("client_transactions", self.shed_client_transactions),
            ("dialogs", self.shed_dialogs),
            ("legs", self.shed_legs),
            ("in_dialog", self.shed_in_dialog),
        ]
    }
}
