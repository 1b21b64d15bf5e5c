//! The sans-IO user-agent core (`ivr_sip::ua::Core`) driven by a script of received messages,
//! application commands and time advances, as `ivr serve`'s SIP task drives it.
//!
//! Input: chunks separated by NUL bytes. A chunk's first byte says what it is:
//!
//! | chunk | what |
//! |---|---|
//! | `R<p><message>` | `<message>` arrives from peer `p` (`0`-`3`: UDP, UDP, TCP, UDP over IPv6) |
//! | `T<ms>` | time goes on `ms` milliseconds (decimal, at most 9 digits), timers fire in order |
//! | `J<ms>` | time jumps `ms` milliseconds at once (a starved driver), then timers fire |
//! | `D<p>` | the application dials a leg to peer `p` (`D5`..: to the last registered Contact) |
//! | `E<i>` | the application ends its `i`-th open leg |
//! | `X<i><b>` | the application ends the call of its `i`-th open dialog (`b` odd: with a BYE) |
//! | `N` / `K` / `C` | drain / terminate every call / reload the credentials |
//! | `O<a><l><m>` | (first chunk only) answer after `a`·500 ms, local address unspecified when `l` is odd, at most `m` calls |
//! | anything else | the whole chunk arrives as a message from peer 0 |
//!
//! In a message, `$T` is replaced with the To-tag of the last call the core admitted, `$L` with
//! the tag of the last leg dialed, `$B`/`$C` with the branch/Call-ID of the last INVITE the core
//! sent, `$b`/`$c` with those of the last other request it sent, `$N` with the last nonce of a
//! challenge, and `$A` with an Authorization value answering it for agent 2001 (password
//! `s3cret`, realm `ivr`, next `nc`): so a fuzzed phone can follow the dialogs and challenges of
//! the core, whose tags and nonces are random.
//!
//! Must hold: no panic; every message the core sends reads back with `message::parse` with its
//! facts, and no bare CR/LF in its head; the outputs keep their contract (a call starts or ends
//! unserved at most once, and only an admitted one; one of the two before its `DialogClosed`
//! unless the application ended the call itself; nothing about a dialog or a leg after its
//! `DialogClosed` / `LegClosed`); at most `max_calls` dialogs; after `handle_timeout(now)`, no
//! timer is due at `now` (a driver would spin); and at the end, once the application has ended
//! every call and leg and an hour has passed, the core has forgotten everything: no dialog, leg,
//! transaction or timer left, and every admitted call and dialed leg was closed.
#![no_main]

mod common;

use ivr_sansio::{Machine, Millis};
use ivr_sip::message;
use ivr_sip::peer::{Peer, Proto};
use ivr_sip::registrar::{Registrar, ha1};
use ivr_sip::sdp;
use ivr_sip::transaction::Timers;
use ivr_sip::ua::{Admitted, Command, Core, CoreOptions, Dial, Host, Input, NewCall, Output};
use libfuzzer_sys::fuzz_target;
use md5::{Digest, Md5};
use rsip::SipMessage;
use rsip::message::HasHeaders;
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

const START: Millis = 1_700_000_000_000;
const AGENT: &str = "2001";
const REALM: &str = "ivr";
const PASSWORD: &str = "s3cret";

fn peers() -> [Peer; 4] {
    let p = |proto, addr: &str, conn| Peer {
        proto,
        addr: addr.parse().expect("address"),
        conn,
    };
    [
        p(Proto::Udp, "192.0.2.5:5060", 0),
        p(Proto::Udp, "192.0.2.6:5070", 0),
        p(Proto::Tcp, "192.0.2.5:40000", 7),
        p(Proto::Udp, "[2001:db8::5]:5060", 0),
    ]
}

/// The application: admits every call with an answer (or an offer) from port 40000, except
/// the called users `busy` (486) and `nobody` (404).
#[derive(Default)]
struct App {
    admitted: Vec<String>,
}

impl Host for App {
    fn admit(&mut self, c: NewCall<'_>) -> Result<Admitted, u16> {
        assert!(!c.tag.is_empty());
        let uri = c.request.uri.to_string();
        match message::user_of(&uri) {
            "busy" => return Err(486),
            "nobody" => return Err(404),
            _ => {}
        }
        let negotiated = match c.offer {
            Some(o) => Some(sdp::negotiate(o, sdp::SrtpPolicy::None).map_err(|_| 488u16)?),
            None => None,
        };
        let answer = match (c.offer, &negotiated) {
            (Some(o), Some(n)) => sdp::answer(o, n, c.local_ip, 40_000, 7, 1),
            _ => sdp::offer(c.local_ip, 40_000, 7, 1),
        };
        self.admitted.push(c.tag.to_string());
        Ok(Admitted {
            answer,
            negotiated,
            port: 40_000,
        })
    }

    fn local_ip(&mut self, peer: IpAddr) -> IpAddr {
        if peer.is_ipv6() {
            "2001:db8::2".parse().expect("ip")
        } else {
            "127.0.0.2".parse().expect("ip")
        }
    }
}

/// The dialogs, legs and their outputs as the application sees them.
#[derive(Default)]
struct World {
    now: Millis,
    /// Admitted calls not closed yet, in order.
    open: Vec<String>,
    /// Calls that started or ended unserved.
    settled: HashSet<String>,
    closed: HashSet<String>,
    /// Calls the application ended itself (`Command::Ended`).
    ended: HashSet<String>,
    /// Legs dialed and not closed, in order.
    legs: Vec<String>,
    legs_closed: HashSet<String>,
    dialed: usize,
    last_leg: String,
    /// The last Contact an agent registered.
    contact: Option<String>,
    invite: (String, String),
    other: (String, String),
    nonce: String,
    nc: u32,
    received_requests: usize,
}

fn status_line_code(msg: &SipMessage) -> Option<u16> {
    match msg {
        SipMessage::Response(r) => Some(r.status_code.code()),
        SipMessage::Request(_) => None,
    }
}

impl World {
    /// Takes and checks every output of the core.
    fn collect(&mut self, core: &mut Core<App>) {
        // New admissions first: their outputs follow.
        for t in &core.host().admitted[self.open.len() + self.closed.len()..] {
            self.open.push(t.clone());
        }
        while let Some(o) = core.poll_output() {
            if trace() {
                match &o {
                    Output::Transmit { peer, bytes } => eprintln!(
                        "{} core -> {}: {}",
                        self.now,
                        peer.addr,
                        String::from_utf8_lossy(bytes)
                    ),
                    other => eprintln!("{} core: {other:?}", self.now),
                }
            }
            match o {
                Output::Transmit { bytes, .. } => self.sent(&bytes),
                Output::Start { tag, .. } | Output::Unserved { tag, .. } => {
                    assert!(
                        self.open.contains(&tag),
                        "start/unserved of {tag}: not open"
                    );
                    assert!(
                        self.settled.insert(tag.clone()),
                        "{tag} started or ended twice"
                    );
                }
                Output::Dialog { tag, .. } => {
                    assert!(self.open.contains(&tag), "event for {tag}: not open");
                }
                Output::DialogClosed { tag } => {
                    assert!(self.open.contains(&tag), "{tag} closed: not open");
                    // The application learns how its call ended, unless it ended it itself.
                    assert!(
                        self.settled.contains(&tag) || self.ended.contains(&tag),
                        "{tag} closed without Start or Unserved"
                    );
                    self.open.retain(|t| *t != tag);
                    self.closed.insert(tag);
                }
                Output::Leg { tag, .. } => {
                    assert!(self.legs.contains(&tag), "event for leg {tag}: not open");
                }
                Output::LegClosed { tag } => {
                    assert!(self.legs.contains(&tag), "leg {tag} closed: not open");
                    self.legs.retain(|t| *t != tag);
                    self.legs_closed.insert(tag);
                }
                Output::Registration(r) => {
                    assert_eq!(r.agent, AGENT);
                    if r.expires > 0 {
                        self.contact = Some(r.contact);
                    }
                }
            }
        }
        assert!(
            core.active() <= core.options().max_calls,
            "{} dialogs, max_calls {}",
            core.active(),
            core.options().max_calls
        );
        assert_eq!(
            core.active(),
            self.open.len(),
            "dialogs the application knows"
        );
        let (_, _, server, _) = sizes(core);
        assert!(
            server <= self.received_requests,
            "{server} server transactions for {} requests",
            self.received_requests
        );
    }

    /// A message the core sends: it must read back; remember what a phone needs from it.
    fn sent(&mut self, bytes: &[u8]) {
        let msg = common::check_wire(bytes, "sent by the core");
        // A response has what the request had (a 400 to a request without Call-ID has none).
        if status_line_code(&msg).is_some() {
            let text = String::from_utf8_lossy(bytes);
            if let Some(n) = text
                .split("\r\nWWW-Authenticate: ")
                .nth(1)
                .and_then(|v| v.split("nonce=\"").nth(1))
                .and_then(|v| v.split('"').next())
            {
                self.nonce = n.to_string();
            }
            return;
        }
        // A request of ours is complete.
        let f = message::facts(msg.headers()).unwrap_or_else(|e| {
            panic!(
                "{e} in a request the core sent: {:?}",
                String::from_utf8_lossy(bytes)
            )
        });
        let ids = (f.branch.unwrap_or_default(), f.call_id);
        if f.cseq_method == "INVITE" {
            self.invite = ids;
        } else {
            self.other = ids;
        }
    }

    /// `$X` placeholders of a message filled in.
    fn fill(&mut self, msg: &[u8]) -> Vec<u8> {
        if !msg.contains(&b'$') {
            return msg.to_vec();
        }
        let mut out = Vec::with_capacity(msg.len() + 64);
        let mut i = 0;
        while i < msg.len() {
            if msg[i] == b'$' && i + 1 < msg.len() {
                let v = match msg[i + 1] {
                    b'T' => self.open.last().cloned().unwrap_or_default(),
                    b'L' => self.last_leg.clone(),
                    b'B' => self.invite.0.clone(),
                    b'C' => self.invite.1.clone(),
                    b'b' => self.other.0.clone(),
                    b'c' => self.other.1.clone(),
                    b'N' => self.nonce.clone(),
                    b'A' => self.authorization(),
                    _ => {
                        out.push(b'$');
                        i += 1;
                        continue;
                    }
                };
                out.extend_from_slice(v.as_bytes());
                i += 2;
            } else {
                out.push(msg[i]);
                i += 1;
            }
        }
        out
    }

    fn authorization(&mut self) -> String {
        self.nc += 1;
        let nc = format!("{:08x}", self.nc);
        let uri = "sip:127.0.0.2";
        let md5 = |s: String| {
            Md5::digest(s.as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        };
        let a1 = ha1(AGENT, REALM, PASSWORD);
        let a2 = md5(format!("REGISTER:{uri}"));
        let response = md5(format!("{a1}:{}:{nc}:fuzz:auth:{a2}", self.nonce));
        format!(
            "Digest username=\"{AGENT}\", realm=\"{REALM}\", nonce=\"{}\", uri=\"{uri}\", \
             response=\"{response}\", algorithm=MD5, qop=auth, nc={nc}, cnonce=\"fuzz\"",
            self.nonce
        )
    }
}

/// With `IVR_FUZZ_TRACE` set, every step, message and output is printed (to read what an
/// input does: run the target's binary on that one file).
fn trace() -> bool {
    static TRACE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *TRACE.get_or_init(|| std::env::var_os("IVR_FUZZ_TRACE").is_some())
}

/// Dialogs, legs, server and client transactions, from the core's `Debug`.
fn sizes(core: &Core<App>) -> (usize, usize, usize, usize) {
    let text = format!("{core:?}");
    let field = |name: &str| -> usize {
        text.split(&format!("{name}: "))
            .nth(1)
            .and_then(|r| r.split([',', ' ', '}']).next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {text}"))
    };
    (
        field("dialogs"),
        field("legs"),
        field("server"),
        field("client"),
    )
}

/// Time goes on to `until`, with every timer due on the way firing at its time.
fn run_until(core: &mut Core<App>, w: &mut World, until: Millis) {
    for _ in 0..100_000 {
        match core.poll_timeout() {
            Some(at) if at <= until => {
                w.now = w.now.max(at);
                core.handle_timeout(w.now);
                if let Some(next) = core.poll_timeout() {
                    assert!(next > w.now, "a timer at {next} is still due at {}", w.now);
                }
                w.collect(core);
            }
            _ => {
                w.now = w.now.max(until);
                return;
            }
        }
    }
    panic!("timers keep firing before {until}");
}

fn digits(b: &[u8]) -> Millis {
    b.iter()
        .take_while(|c| c.is_ascii_digit())
        .take(9)
        .fold(0, |n, c| n * 10 + Millis::from(c - b'0'))
}

fn credentials() -> HashMap<String, String> {
    let mut c = HashMap::new();
    c.insert(AGENT.to_string(), ha1(AGENT, REALM, PASSWORD));
    c
}

fuzz_target!(init: common::install_hook(), |data: &[u8]| {
    let peers = peers();
    let mut chunks = data.split(|&b| b == 0).peekable();
    let mut opts = CoreOptions {
        timers: Timers::default(),
        max_calls: 4,
        answer_after: 0,
        local: "127.0.0.2:5060".parse().expect("address"),
    };
    if let Some(c) = chunks.peek()
        && c.first() == Some(&b'O')
    {
        let d = |i: usize| c.get(i).map_or(0, |b| b.wrapping_sub(b'0') % 10);
        opts.answer_after = Millis::from(d(1)) * 500;
        if d(2) % 2 == 1 {
            opts.local = "0.0.0.0:5060".parse().expect("address");
        }
        opts.max_calls = usize::from(d(3)).max(1);
        chunks.next();
    }
    let mut core = Core::new(App::default(), opts)
        .with_registrar(Registrar::new(REALM, credentials()));
    let mut w = World {
        now: START,
        ..World::default()
    };
    let mut reload = false;

    for chunk in chunks.take(200) {
        let now = w.now;
        let Some((&op, arg)) = chunk.split_first() else {
            continue;
        };
        let arg0 = arg.first().map_or(0, |b| b.wrapping_sub(b'0'));
        if trace() {
            eprintln!("{now} step: {}", String::from_utf8_lossy(&chunk[..chunk.len().min(60)]));
        }
        match op {
            b'R' => {
                let peer = peers[usize::from(arg0 % 4)];
                let msg = w.fill(arg.get(1..).unwrap_or_default());
                if trace() {
                    eprintln!("{now} phone -> core: {}", String::from_utf8_lossy(&msg));
                }
                let parsed = common::parse(&msg);
                if trace()
                    && let Err(e) = &parsed
                {
                    eprintln!("{now} not parsed: {e}");
                }
                if let Ok(msg) = parsed {
                    if matches!(msg, SipMessage::Request(_)) {
                        w.received_requests += 1;
                    }
                    core.handle_input(Input::Received { msg, peer }, now);
                }
            }
            b'T' => run_until(&mut core, &mut w, now + digits(arg)),
            b'J' => {
                w.now = now + digits(arg);
                let at = w.now;
                run_until(&mut core, &mut w, at);
            }
            b'D' => {
                let i = usize::from(arg0);
                let peer = peers[i % 4];
                let target = match (&w.contact, i) {
                    (Some(c), 5..) => c.clone(),
                    _ => format!("sip:{AGENT}@{}", peer.addr),
                };
                w.dialed += 1;
                let tag = format!("leg{}", w.dialed);
                w.legs.push(tag.clone());
                w.last_leg = tag.clone();
                let dial = Dial {
                    tag,
                    target,
                    peer,
                    from_user: "13800000001".into(),
                    headers: vec![("X-IVR-Caller".into(), "13800000001".into())],
                    port: 30_000,
                };
                core.handle_input(Input::Command(Command::Dial(Box::new(dial))), now);
            }
            b'E' => {
                if !w.legs.is_empty() {
                    let tag = w.legs[usize::from(arg0) % w.legs.len()].clone();
                    core.handle_input(Input::Command(Command::EndLeg { tag }), now);
                }
            }
            b'X' => {
                if !w.open.is_empty() {
                    let tag = w.open[usize::from(arg0) % w.open.len()].clone();
                    let bye = arg.get(1).is_some_and(|b| b % 2 == 1);
                    w.ended.insert(tag.clone());
                    core.handle_input(Input::Command(Command::Ended { tag, bye }), now);
                }
            }
            b'N' => core.handle_input(Input::Command(Command::Drain), now),
            b'K' => core.handle_input(Input::Command(Command::TerminateAll), now),
            b'C' => {
                reload = !reload;
                let credentials = if reload { HashMap::new() } else { credentials() };
                core.handle_input(
                    Input::Command(Command::Credentials {
                        realm: REALM.into(),
                        credentials,
                    }),
                    now,
                );
            }
            _ => {
                if let Ok(msg) = common::parse(&w.fill(chunk)) {
                    if matches!(msg, SipMessage::Request(_)) {
                        w.received_requests += 1;
                    }
                    core.handle_input(Input::Received { msg, peer: peers[0] }, now);
                }
            }
        }
        w.collect(&mut core);
        // What is due now fires now (the driver's loop).
        let at = w.now;
        run_until(&mut core, &mut w, at);
    }

    // The application ends every call and leg; an hour later nothing may be left.
    for tag in w.open.clone() {
        w.ended.insert(tag.clone());
        core.handle_input(Input::Command(Command::Ended { tag, bye: true }), w.now);
    }
    for tag in w.legs.clone() {
        core.handle_input(Input::Command(Command::EndLeg { tag }), w.now);
    }
    w.collect(&mut core);
    let until = w.now + 3_600_000;
    run_until(&mut core, &mut w, until);
    assert_eq!(sizes(&core), (0, 0, 0, 0), "left after an hour: {core:?}");
    assert_eq!(core.poll_timeout(), None, "a timer left after an hour");
    assert!(w.open.is_empty(), "calls never closed: {:?}", w.open);
    assert!(w.legs.is_empty(), "legs never closed: {:?}", w.legs);
    assert_eq!(w.legs_closed.len(), w.dialed);
    assert_eq!(w.closed.len(), core.host().admitted.len());
});
