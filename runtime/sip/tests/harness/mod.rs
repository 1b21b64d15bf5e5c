//! Two user-agent cores on a pretend network, in memory and in virtual time.
//!
//! The UAC core (at [`UAC`]) places legs with [`Command::Dial`]; the UAS core (at [`UAS`])
//! admits calls through a [`TestHost`]. [`Net`] moves the bytes one core transmits into the
//! other (or, for anything addressed elsewhere, only onto the [`Net::wire`] log, where a test
//! playing a phone at [`PHONE`] reads its answers), lets a [`Rule`] drop or duplicate
//! packets, and advances virtual time from deadline to deadline.

#![allow(dead_code)]

use ivr_sansio::{Machine, Millis};
use ivr_sip::message;
use ivr_sip::peer::{Peer, Proto};
use ivr_sip::registrar::Registrar;
use ivr_sip::sdp;
use ivr_sip::transaction::Timers;
use ivr_sip::ua::{
    Admitted, Bounds, Command, Core, CoreOptions, Dial, EdgePolicy, Host, Input, NewCall, Output,
};
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};

/// The UAC core's address.
pub const UAC: SocketAddr =
    SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1)), 5060);
/// The UAS core's address.
pub const UAS: SocketAddr =
    SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2)), 5060);
/// A phone the tests play by hand.
pub const PHONE: SocketAddr =
    SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 3)), 5070);
/// The UAS's RTP port in its answers.
pub const UAS_RTP: u16 = 40_000;
/// The UAC's RTP port in its legs' offers.
pub const UAC_RTP: u16 = 30_000;
/// The realm, agent and password of the UAS's registrar.
pub const REALM: &str = "ivr";
/// An agent of the UAS's registrar.
pub const AGENT: &str = "2001";
/// Its password.
pub const PASSWORD: &str = "s3cret";

/// The application of a test core: admits every call with an SDP answer from [`UAS_RTP`],
/// but refuses the called users of `refuse` with their status.
#[derive(Debug, Default)]
pub struct TestHost {
    /// Called user → status to refuse with.
    pub refuse: HashMap<String, u16>,
    /// The To-tags of the calls admitted, in order.
    pub admitted: Vec<String>,
}

impl Host for TestHost {
    fn admit(&mut self, c: NewCall<'_>) -> Result<Admitted, u16> {
        let uri = c.request.uri.to_string();
        if let Some(code) = self.refuse.get(message::user_of(&uri)) {
            return Err(*code);
        }
        let negotiated = match c.offer {
            Some(o) => Some(sdp::negotiate(o, sdp::SrtpPolicy::None).map_err(|_| 488u16)?),
            None => None,
        };
        let answer = match (c.offer, &negotiated) {
            (Some(o), Some(n)) => sdp::answer(o, n, c.local_ip, UAS_RTP, 7, 1),
            _ => sdp::offer(c.local_ip, UAS_RTP, 7, 1),
        };
        self.admitted.push(c.tag.to_string());
        Ok(Admitted {
            answer,
            negotiated,
            port: UAS_RTP,
        })
    }

    fn local_ip(&mut self, peer: IpAddr) -> IpAddr {
        panic!("the test cores listen on a specified address, not for {peer}")
    }
}

/// One of the two cores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The core that places legs.
    Uac,
    /// The core that admits calls.
    Uas,
}

impl Side {
    /// Its address.
    pub fn addr(self) -> SocketAddr {
        match self {
            Side::Uac => UAC,
            Side::Uas => UAS,
        }
    }
}

/// What becomes of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// It arrives.
    Deliver,
    /// It is lost.
    Drop,
    /// It arrives twice.
    Duplicate,
}

/// A packet on the wire.
#[derive(Debug, Clone)]
pub struct Packet {
    /// When it was sent.
    pub at: Millis,
    /// Who sent it.
    pub from: SocketAddr,
    /// Where it goes.
    pub to: SocketAddr,
    /// The message.
    pub text: String,
    /// What became of it.
    pub fate: Fate,
}

impl Packet {
    /// Whether it is a request of `method`.
    pub fn is_request(&self, method: &str) -> bool {
        self.text.starts_with(&format!("{method} "))
    }

    /// Whether it is a response with `code` to a request of `method` (CSeq).
    pub fn is_response(&self, code: u16, method: &str) -> bool {
        status(&self.text) == Some(code) && cseq_method(&self.text) == Some(method)
    }
}

/// Decides the fate of each packet.
pub type Rule = Box<dyn FnMut(&Packet) -> Fate>;

/// The two cores, the wire between them and virtual time.
pub struct Net {
    /// Virtual time now.
    pub now: Millis,
    /// The core that places legs.
    pub uac: Core<TestHost>,
    /// The core that admits calls.
    pub uas: Core<TestHost>,
    /// Every packet sent, in order.
    pub wire: Vec<Packet>,
    /// The UAC core's outputs other than bytes, with their time.
    pub uac_out: Vec<(Millis, Output)>,
    /// The UAS core's outputs other than bytes, with their time.
    pub uas_out: Vec<(Millis, Output)>,
    rule: Rule,
    queue: VecDeque<(SocketAddr, SocketAddr, String)>,
}

/// Settings of a core at `local` for the tests: default timers, 10 calls, `answer_after`,
/// loopback trusted (every address of the pretend network), the bounds of 10 calls.
pub fn options(local: SocketAddr, answer_after: Millis) -> CoreOptions {
    CoreOptions {
        timers: Timers::default(),
        max_calls: 10,
        answer_after,
        local,
        edge: EdgePolicy::default(),
        bounds: Bounds::for_calls(10),
    }
}

impl Net {
    /// Two cores; the UAS rings `answer_after` ms before it answers, and its registrar knows
    /// [`AGENT`].
    pub fn new(answer_after: Millis) -> Net {
        let mut host = TestHost::default();
        host.refuse.insert("busy".into(), 486);
        let mut creds = HashMap::new();
        creds.insert(
            AGENT.to_string(),
            ivr_sip::registrar::ha1(AGENT, REALM, PASSWORD),
        );
        Net {
            now: 1_000_000,
            uac: Core::new(TestHost::default(), options(UAC, 0)),
            uas: Core::new(host, options(UAS, answer_after))
                .with_registrar(Registrar::new(REALM, creds)),
            wire: Vec::new(),
            uac_out: Vec::new(),
            uas_out: Vec::new(),
            rule: Box::new(|_| Fate::Deliver),
            queue: VecDeque::new(),
        }
    }

    /// From now on, packets meet `rule`.
    pub fn rule(&mut self, rule: impl FnMut(&Packet) -> Fate + 'static) {
        self.rule = Box::new(rule);
    }

    fn core(&mut self, side: Side) -> &mut Core<TestHost> {
        match side {
            Side::Uac => &mut self.uac,
            Side::Uas => &mut self.uas,
        }
    }

    /// Gives `side` a command now, and lets the network settle.
    pub fn command(&mut self, side: Side, c: Command) {
        let now = self.now;
        self.core(side).handle_input(Input::Command(c), now);
        self.settle();
    }

    /// The UAC core places a leg to `user` at the UAS; its tag.
    pub fn dial(&mut self, user: &str) -> String {
        let tag = message::new_tag();
        self.command(
            Side::Uac,
            Command::Dial(Box::new(Dial {
                tag: tag.clone(),
                target: format!("sip:{user}@{UAS}"),
                peer: udp(UAS),
                from_user: "13800000001".into(),
                headers: vec![("X-IVR-Caller".into(), "13800000001".into())],
                port: UAC_RTP,
                credentials: None,
            })),
        );
        tag
    }

    /// A message the phone at `from` sends to `side` now (it is on the wire and arrives).
    pub fn inject(&mut self, side: Side, from: SocketAddr, text: &str) {
        self.wire.push(Packet {
            at: self.now,
            from,
            to: side.addr(),
            text: text.to_string(),
            fate: Fate::Deliver,
        });
        self.queue.push_back((from, side.addr(), text.to_string()));
        self.settle();
    }

    /// Carries out every output and delivers every packet until nothing moves.
    pub fn settle(&mut self) {
        loop {
            self.collect(Side::Uac);
            self.collect(Side::Uas);
            let Some((from, to, text)) = self.queue.pop_front() else {
                return;
            };
            let side = if to == UAC { Side::Uac } else { Side::Uas };
            let msg = message::parse(text.as_bytes()).expect("the cores send what they can read");
            let now = self.now;
            self.core(side).handle_input(
                Input::Received {
                    msg,
                    peer: udp(from),
                },
                now,
            );
        }
    }

    fn collect(&mut self, side: Side) {
        while let Some(o) = self.core(side).poll_output() {
            match o {
                Output::Transmit { peer, bytes } => {
                    let text = String::from_utf8(bytes.to_vec()).expect("text");
                    let mut p = Packet {
                        at: self.now,
                        from: side.addr(),
                        to: peer.addr,
                        text,
                        fate: Fate::Deliver,
                    };
                    p.fate = (self.rule)(&p);
                    let copies = match p.fate {
                        Fate::Deliver => 1,
                        Fate::Drop => 0,
                        Fate::Duplicate => 2,
                    };
                    if peer.addr == UAC || peer.addr == UAS {
                        for _ in 0..copies {
                            self.queue.push_back((p.from, p.to, p.text.clone()));
                        }
                    }
                    self.wire.push(p);
                }
                other => match side {
                    Side::Uac => self.uac_out.push((self.now, other)),
                    Side::Uas => self.uas_out.push((self.now, other)),
                },
            }
        }
    }

    /// Runs both cores' timers up to `until`.
    pub fn run_until(&mut self, until: Millis) {
        self.settle();
        loop {
            let next = [self.uac.poll_timeout(), self.uas.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            match next {
                Some(at) if at <= until => {
                    self.now = self.now.max(at);
                    let now = self.now;
                    for side in [Side::Uac, Side::Uas] {
                        if self.core(side).poll_timeout().is_some_and(|t| t <= now) {
                            self.core(side).handle_timeout(now);
                        }
                    }
                    self.settle();
                }
                _ => break,
            }
        }
        self.now = until;
    }

    /// Runs the timers for `ms` from now.
    pub fn advance(&mut self, ms: Millis) {
        self.run_until(self.now + ms);
    }

    /// The packets sent by `from` that `pick` picks.
    pub fn sent(&self, from: SocketAddr, pick: impl Fn(&Packet) -> bool) -> Vec<&Packet> {
        self.wire
            .iter()
            .filter(|p| p.from == from && pick(p))
            .collect()
    }

    /// The one packet sent by `from` that `pick` picks (panics unless exactly one).
    pub fn one(&self, from: SocketAddr, pick: impl Fn(&Packet) -> bool) -> &Packet {
        let found = self.sent(from, pick);
        assert_eq!(found.len(), 1, "{found:#?}");
        found[0]
    }

    /// The outputs of `side` other than bytes.
    pub fn outputs(&self, side: Side) -> Vec<Output> {
        let out = match side {
            Side::Uac => &self.uac_out,
            Side::Uas => &self.uas_out,
        };
        out.iter().map(|(_, o)| o.clone()).collect()
    }

    /// Takes the outputs of `side` other than bytes collected so far.
    pub fn take(&mut self, side: Side) -> Vec<Output> {
        let out = match side {
            Side::Uac => &mut self.uac_out,
            Side::Uas => &mut self.uas_out,
        };
        out.drain(..).map(|(_, o)| o).collect()
    }

    /// The To-tag of the last call the UAS admitted.
    pub fn uas_tag(&self) -> String {
        self.uas
            .host()
            .admitted
            .last()
            .cloned()
            .expect("a call was admitted")
    }
}

/// A UDP peer at `addr`.
pub fn udp(addr: SocketAddr) -> Peer {
    Peer {
        proto: Proto::Udp,
        addr,
        conn: 0,
    }
}

/// The status code of a response.
pub fn status(text: &str) -> Option<u16> {
    text.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok()
}

/// The first value of header `name`, as written.
pub fn header<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    let head = text.split("\r\n\r\n").next().unwrap_or_default();
    head.split("\r\n").skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// The body.
pub fn body(text: &str) -> &str {
    text.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

/// The method of the CSeq header.
pub fn cseq_method(text: &str) -> Option<&str> {
    header(text, "CSeq")?.split_whitespace().nth(1)
}

/// The number of the CSeq header.
pub fn cseq_number(text: &str) -> Option<u32> {
    header(text, "CSeq")?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The `branch` of the top Via.
pub fn branch(text: &str) -> Option<&str> {
    message::param(header(text, "Via")?, "branch")
}

/// The tag of a From or To value.
pub fn tag(value: &str) -> Option<&str> {
    message::param(value, "tag")
}

/// A request the phone sends: `head` is the request line and headers without the trailing
/// blank line; the body gets its Content-Type and Content-Length.
pub fn request(head: &str, content_type: &str, body: &str) -> String {
    let mut s = head
        .trim_end()
        .replace('\n', "\r\n")
        .replace("\r\r\n", "\r\n");
    if !body.is_empty() {
        s.push_str(&format!("\r\nContent-Type: {content_type}"));
    }
    s.push_str(&format!("\r\nContent-Length: {}\r\n\r\n{body}", body.len()));
    s
}

/// An SDP offer or answer from the phone: PCMA and telephone-event at [`PHONE`]'s port 50000,
/// with `direction`.
pub fn phone_sdp(direction: &str) -> String {
    format!(
        "v=0\r\no=phone 1 2 IN IP4 127.0.0.3\r\ns=-\r\nc=IN IP4 127.0.0.3\r\nt=0 0\r\n\
         m=audio 50000 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\na={direction}\r\n"
    )
}
