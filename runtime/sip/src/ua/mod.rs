//! The user-agent core, sans-IO: one [`Core`] owns every transaction and dialog, answers what
//! SIP itself decides (retransmissions, CANCEL, OPTIONS, 481, 405/501, Max-Forwards, limits),
//! admits new calls through the application's [`Host`], and places the legs the application
//! asks for. It is an [`ivr_sansio::Machine`]:
//!
//! - [`Input`]: a message a transport received, with its [`Peer`]; or a [`Command`] of the
//!   application (dial a leg, end a leg, a call is over, drain, end everything, new
//!   credentials);
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
//! Dialogs are keyed by our To-tag, which we make unique; legs by our From tag, which the
//! application chooses. In-dialog requests go to the address the INVITE came from over the
//! same transport (connection), which is right for callers behind NAT and for proxies alike.
//!
//! Files: `core.rs` (the core, its tables, timers and the sending helpers), `invite.rs`
//! (incoming INVITEs and admission), `in_dialog.rs` (ACK, BYE, CANCEL, re-INVITE, INFO,
//! OPTIONS), `legs.rs` (the legs we place: Dial, EndLeg, the client INVITE transaction),
//! `register.rs` (REGISTER, answered by the [`crate::registrar::Registrar`]).

mod core;
mod in_dialog;
mod invite;
mod legs;
mod register;

pub use self::core::Core;
use crate::message::Facts;
use crate::peer::Peer;
pub use crate::registrar::Registration;
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
    /// The call could not be placed or was refused: the final status (408 when nothing
    /// answered, 488 when the answer had no usable SDP).
    Failed(u16),
    /// The callee changed the media (re-INVITE: hold, resume).
    Media(Negotiated),
    /// The callee hung up.
    Bye,
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
}
