//! SDP offer/answer (RFC 3264) for one audio stream: PCMU, PCMA and telephone-event/8000.
//!
//! [`parse`] reads what we need of an offer (or answer): each `m=` line with its address, port,
//! payload types, `rtpmap`s and direction. [`answer`] picks the first offered G.711 codec and
//! telephone-event when offered; other streams are refused with port 0. Nothing in common is
//! [`NoCommonCodec`] (488 Not Acceptable Here).
//!
//! SRTP with SDES keys (RFC 4568): an `RTP/SAVP` (or `RTP/SAVPF`) stream carries `a=crypto`
//! lines, each a suite and the offerer's master key and salt. What is taken depends on the
//! [`SrtpPolicy`]; an answer to an SRTP stream carries one `a=crypto` line of our own, with the
//! offer's tag and suite and a fresh key ([`Sdes`]).

use base64::Engine as _;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

/// The two G.711 laws.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Law {
    /// μ-law (PCMU, RTP payload type 0): North America and Japan.
    Ulaw,
    /// A-law (PCMA, RTP payload type 8): Europe, China and most of the world.
    Alaw,
}

/// The payload type we offer for telephone-event when we make the offer.
pub const DEFAULT_EVENT_PT: u8 = 101;

/// Media direction (`a=sendrecv`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    /// Both ways (the default).
    #[default]
    SendRecv,
    /// The offerer only sends (it puts us on hold when it is the other side's view).
    SendOnly,
    /// The offerer only receives.
    RecvOnly,
    /// No media either way.
    Inactive,
}

impl Direction {
    fn parse(attr: &str) -> Option<Direction> {
        match attr {
            "sendrecv" => Some(Direction::SendRecv),
            "sendonly" => Some(Direction::SendOnly),
            "recvonly" => Some(Direction::RecvOnly),
            "inactive" => Some(Direction::Inactive),
            _ => None,
        }
    }

    /// The direction an answer takes for this offered direction.
    pub fn answer(self) -> Direction {
        match self {
            Direction::SendRecv => Direction::SendRecv,
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            Direction::Inactive => Direction::Inactive,
        }
    }

    /// The attribute's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// Whether the remote side wants to receive our audio.
    pub fn remote_receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }

    /// Whether the remote side sends audio.
    pub fn remote_sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }
}

/// One `m=` line of a session description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaDesc {
    /// `audio`, `video`, ...
    pub kind: String,
    /// The port (0: refused).
    pub port: u16,
    /// `RTP/AVP`, ...
    pub proto: String,
    /// Payload types in order of preference.
    pub formats: Vec<String>,
    /// `a=rtpmap`: payload type, encoding name, clock rate.
    pub rtpmap: Vec<(u8, String, u32)>,
    /// The connection address (media-level `c=`, else session-level).
    pub addr: Option<IpAddr>,
    /// The direction (media-level, else session-level, else sendrecv).
    pub direction: Direction,
    /// The `a=crypto` lines we can use (a known suite, one inline key of the right length,
    /// no MKI, no session parameters), in the offerer's order; at most [`MAX_CRYPTO`].
    pub crypto: Vec<Crypto>,
}

/// Most `a=crypto` lines kept per `m=` line; more are skipped.
pub const MAX_CRYPTO: usize = 8;

/// Longest `a=crypto` value read (`tag suite inline:key|lifetime|mki` and session
/// parameters); a longer one is skipped.
pub const MAX_CRYPTO_LEN: usize = 256;

/// Master key (16 bytes) and master salt (14 bytes) of the AES-CM-128 suites.
pub const KEY_SALT_LEN: usize = 30;

/// What to do with SRTP offers (`[server] srtp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SrtpPolicy {
    /// Plain RTP only: `RTP/SAVP` streams are not taken (an offer of only those gets 488).
    #[default]
    None,
    /// `RTP/SAVP` with a usable `a=crypto` line, or plain `RTP/AVP`: whichever stream comes
    /// first.
    Optional,
    /// `RTP/SAVP` only: a plain offer gets 488.
    Required,
}

/// The SDES crypto suites we speak (RFC 4568 section 6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CryptoSuite {
    /// `AES_CM_128_HMAC_SHA1_80`: AES-128 counter mode, an 80-bit HMAC-SHA1 tag.
    AesCm128HmacSha1_80,
    /// `AES_CM_128_HMAC_SHA1_32`: the same with a 32-bit tag.
    AesCm128HmacSha1_32,
}

impl CryptoSuite {
    /// Its name in `a=crypto`.
    pub fn as_str(self) -> &'static str {
        match self {
            CryptoSuite::AesCm128HmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
            CryptoSuite::AesCm128HmacSha1_32 => "AES_CM_128_HMAC_SHA1_32",
        }
    }

    fn parse(name: &str) -> Option<CryptoSuite> {
        match name {
            "AES_CM_128_HMAC_SHA1_80" => Some(CryptoSuite::AesCm128HmacSha1_80),
            "AES_CM_128_HMAC_SHA1_32" => Some(CryptoSuite::AesCm128HmacSha1_32),
            _ => None,
        }
    }
}

/// One usable `a=crypto` line of an offer or answer.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Crypto {
    /// The tag (up to 9 digits).
    pub tag: u32,
    /// The suite.
    pub suite: CryptoSuite,
    /// Master key and salt.
    pub key: [u8; KEY_SALT_LEN],
}

impl std::fmt::Debug for Crypto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key stays out of logs.
        write!(f, "Crypto({} {:?})", self.tag, self.suite)
    }
}

impl Crypto {
    /// Reads the value of an `a=crypto` attribute (after `crypto:`):
    /// `TAG SUITE inline:BASE64[|LIFETIME]`. `None` for anything we cannot use: an unknown
    /// suite, a key that is not 30 bytes, more than one key, an MKI, session parameters.
    pub fn parse(value: &str) -> Option<Crypto> {
        if value.len() > MAX_CRYPTO_LEN {
            return None;
        }
        let mut parts = value.split_ascii_whitespace();
        let tag = parts.next()?;
        if tag.is_empty() || tag.len() > 9 || !tag.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let tag = tag.parse::<u32>().ok()?;
        let suite = CryptoSuite::parse(parts.next()?)?;
        let params = parts.next()?;
        if parts.next().is_some() {
            // Session parameters (UNENCRYPTED_SRTP, KDR, ...): not supported.
            return None;
        }
        if params.contains(';') {
            // Several keys (an MKI each): not supported.
            return None;
        }
        let inline = params.strip_prefix("inline:")?;
        let mut fields = inline.split('|');
        let key_text = fields.next()?;
        if let Some(lifetime) = fields.next()
            && !valid_lifetime(lifetime)
        {
            return None;
        }
        if fields.next().is_some() {
            // An MKI: not supported.
            return None;
        }
        if key_text.len() > 64 {
            return None;
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(key_text)
            .ok()?;
        let key: [u8; KEY_SALT_LEN] = bytes.try_into().ok()?;
        Some(Crypto { tag, suite, key })
    }
}

/// `2^N` (N up to 48, RFC 4568's SRTP limit) or a decimal number of packets.
fn valid_lifetime(text: &str) -> bool {
    if let Some(exp) = text.strip_prefix("2^") {
        return !exp.is_empty()
            && exp.len() <= 2
            && exp.bytes().all(|b| b.is_ascii_digit())
            && exp.parse::<u32>().is_ok_and(|e| e <= 48);
    }
    !text.is_empty() && text.len() <= 15 && text.bytes().all(|b| b.is_ascii_digit())
}

/// The SDES keys of an SRTP stream: the peer's (to unprotect what it sends) and ours (to
/// protect what we send), with the suite and tag both sides agreed on.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Sdes {
    /// The tag of the offer's `a=crypto` line we took.
    pub tag: u32,
    /// The suite.
    pub suite: CryptoSuite,
    /// The peer's master key and salt (it protects its packets with it).
    pub remote: [u8; KEY_SALT_LEN],
    /// Ours (we protect our packets with it; sent in our `a=crypto`).
    pub local: [u8; KEY_SALT_LEN],
}

impl std::fmt::Debug for Sdes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The keys stay out of logs.
        write!(f, "Sdes({} {:?})", self.tag, self.suite)
    }
}

/// Whether `proto` is an SRTP profile keyed by SDES: `RTP/SAVP` or `RTP/SAVPF`
/// (`UDP/TLS/RTP/SAVPF` is keyed by DTLS, which SIP calls do not speak).
pub fn is_sdes_srtp(proto: &str) -> bool {
    proto.eq_ignore_ascii_case("RTP/SAVP") || proto.eq_ignore_ascii_case("RTP/SAVPF")
}

impl MediaDesc {
    /// The encoding of payload type `pt`: its `rtpmap`, else the static assignment.
    pub fn encoding(&self, pt: u8) -> Option<(String, u32)> {
        if let Some((_, name, rate)) = self.rtpmap.iter().find(|(p, _, _)| *p == pt) {
            return Some((name.to_ascii_lowercase(), *rate));
        }
        match pt {
            0 => Some(("pcmu".into(), 8000)),
            8 => Some(("pcma".into(), 8000)),
            _ => None,
        }
    }
}

/// A session description as far as we read it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Session {
    /// Session-level `c=` address.
    pub addr: Option<IpAddr>,
    /// The `m=` lines.
    pub media: Vec<MediaDesc>,
}

/// Text that is not a session description with media.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotSdp {
    /// No `v=` line or no `m=` line.
    #[error("not a session description with media")]
    NoMedia,
    /// An `m=` line without a port.
    #[error("bad m= line: {0}")]
    BadMedia(String),
}

/// Reads a session description. Unknown lines are skipped; `Err` for text that is not SDP
/// at all (no `v=` line or no `m=` line).
pub fn parse(text: &str) -> Result<Session, NotSdp> {
    let mut session = Session::default();
    let mut session_dir = None;
    let mut media_dirs: Vec<Option<Direction>> = Vec::new();
    let mut media_addr: Vec<Option<IpAddr>> = Vec::new();
    let mut saw_v = false;
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        let Some((kind, value)) = line.split_once('=') else {
            continue;
        };
        match kind {
            "v" => saw_v = true,
            "c" => {
                // c=IN IP4 192.0.2.1[/ttl]
                let addr = value
                    .split_whitespace()
                    .nth(2)
                    .and_then(|a| a.split('/').next())
                    .and_then(|a| a.parse::<IpAddr>().ok());
                match media_addr.last_mut() {
                    Some(m) => *m = addr,
                    None => session.addr = addr,
                }
            }
            "m" => {
                let mut parts = value.split_whitespace();
                let kind = parts.next().unwrap_or_default().to_string();
                let port = parts
                    .next()
                    .and_then(|p| p.split('/').next())
                    .and_then(|p| p.parse::<u16>().ok())
                    .ok_or_else(|| NotSdp::BadMedia(value.to_string()))?;
                let proto = parts.next().unwrap_or_default().to_string();
                let formats = parts.map(String::from).collect();
                session.media.push(MediaDesc {
                    kind,
                    port,
                    proto,
                    formats,
                    rtpmap: Vec::new(),
                    addr: None,
                    direction: Direction::SendRecv,
                    crypto: Vec::new(),
                });
                media_dirs.push(None);
                media_addr.push(None);
            }
            "a" => {
                let (name, arg) = value.split_once(':').unwrap_or((value, ""));
                if let Some(d) = Direction::parse(name) {
                    match media_dirs.last_mut() {
                        Some(m) => *m = Some(d),
                        None => session_dir = Some(d),
                    }
                } else if name == "rtpmap"
                    && let Some(m) = session.media.last_mut()
                {
                    // a=rtpmap:101 telephone-event/8000[/1]
                    let mut it = arg.split_whitespace();
                    let pt = it.next().and_then(|p| p.parse::<u8>().ok());
                    let enc = it.next().unwrap_or_default();
                    let mut enc_parts = enc.split('/');
                    let name = enc_parts.next().unwrap_or_default().to_string();
                    let rate = enc_parts
                        .next()
                        .and_then(|r| r.parse::<u32>().ok())
                        .unwrap_or(8000);
                    if let Some(pt) = pt {
                        m.rtpmap.push((pt, name, rate));
                    }
                } else if name == "crypto"
                    && let Some(m) = session.media.last_mut()
                    && m.crypto.len() < MAX_CRYPTO
                    && let Some(c) = Crypto::parse(arg)
                {
                    m.crypto.push(c);
                }
            }
            _ => {}
        }
    }
    if !saw_v || session.media.is_empty() {
        return Err(NotSdp::NoMedia);
    }
    for (i, m) in session.media.iter_mut().enumerate() {
        m.direction = media_dirs[i].or(session_dir).unwrap_or(Direction::SendRecv);
        m.addr = media_addr[i].or(session.addr);
    }
    Ok(session)
}

/// What an answer settled for the one audio stream we use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Negotiated {
    /// Index of the accepted `m=` line.
    pub index: usize,
    /// The codec.
    pub law: Law,
    /// Its payload type.
    pub pt: u8,
    /// telephone-event's payload type, when the peer offered it.
    pub event_pt: Option<u8>,
    /// Where the peer wants our audio (none: on hold with `c=0.0.0.0` or port 0).
    pub remote: Option<SocketAddr>,
    /// The peer's direction.
    pub direction: Direction,
    /// SRTP keys when the stream is `RTP/SAVP` (none: plain RTP).
    pub srtp: Option<Sdes>,
}

/// The offer and our answer have no codec in common.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoCommonCodec;

/// Whether `proto` (of an `m=` line) is plain RTP: `RTP/AVP` (or `RTP/AVPF`). Secure
/// profiles (`RTP/SAVP`, `RTP/SAVPF`, `UDP/TLS/RTP/SAVPF`) are not: their media is SRTP, which
/// this side does not speak over SIP, so answering them as plain RTP would be wrong.
pub fn is_plain_rtp(proto: &str) -> bool {
    proto.eq_ignore_ascii_case("RTP/AVP") || proto.eq_ignore_ascii_case("RTP/AVPF")
}

/// Picks the stream and codecs of an offer: the first audio stream the policy takes with
/// PCMU or PCMA (in the offerer's order of preference). Plain RTP ([`is_plain_rtp`]) unless
/// the policy is [`SrtpPolicy::Required`]; `RTP/SAVP` ([`is_sdes_srtp`]) with a usable
/// `a=crypto` line (the first, in the offerer's order) unless it is [`SrtpPolicy::None`], with a
/// fresh key of ours (from the operating system's random source). Nothing taken: 488. Formats
/// that are not RTP payload types (0-127: the RTP header has 7 bits for it) are skipped.
///
/// This reads an answer too (to an offer of ours, which is plain): pass [`SrtpPolicy::None`].
pub fn negotiate(offer: &Session, policy: SrtpPolicy) -> Result<Negotiated, NoCommonCodec> {
    for (index, m) in offer.media.iter().enumerate() {
        if m.kind != "audio" || m.port == 0 {
            continue;
        }
        let srtp = if is_plain_rtp(&m.proto) {
            if policy == SrtpPolicy::Required {
                continue;
            }
            None
        } else if is_sdes_srtp(&m.proto) && policy != SrtpPolicy::None {
            let Some(c) = m.crypto.first() else {
                continue;
            };
            let mut local = [0u8; KEY_SALT_LEN];
            if getrandom::fill(&mut local).is_err() {
                continue;
            }
            Some(Sdes {
                tag: c.tag,
                suite: c.suite,
                remote: c.key,
                local,
            })
        } else {
            continue;
        };
        let mut law = None;
        let mut event_pt = None;
        for f in &m.formats {
            let Some(pt) = f.parse::<u8>().ok().filter(|pt| *pt < 128) else {
                continue;
            };
            match m.encoding(pt) {
                Some((name, 8000)) if name == "pcmu" && law.is_none() => {
                    law = Some((Law::Ulaw, pt));
                }
                Some((name, 8000)) if name == "pcma" && law.is_none() => {
                    law = Some((Law::Alaw, pt));
                }
                Some((name, 8000)) if name == "telephone-event" && event_pt.is_none() => {
                    event_pt = Some(pt);
                }
                _ => {}
            }
        }
        if let Some((law, pt)) = law {
            let remote = m
                .addr
                .filter(|a| !a.is_unspecified())
                .map(|a| SocketAddr::new(a, m.port));
            return Ok(Negotiated {
                index,
                law,
                pt,
                event_pt,
                remote,
                direction: m.direction,
                srtp,
            });
        }
    }
    Err(NoCommonCodec)
}

/// Builds our answer to `offer` given what was negotiated: our address and RTP port, the codec,
/// telephone-event when offered, and the mirrored direction; other streams refused (port 0).
pub fn answer(
    offer: &Session,
    n: &Negotiated,
    local: IpAddr,
    port: u16,
    session_id: u64,
    version: u64,
) -> String {
    let mut s = header(local, session_id, version);
    for (i, m) in offer.media.iter().enumerate() {
        if i != n.index {
            let _ = write!(
                s,
                "m={} 0 {} {}\r\n",
                m.kind,
                m.proto,
                m.formats.first().map_or("0", String::as_str)
            );
            continue;
        }
        let _ = write!(s, "m=audio {port} {} {}", m.proto, n.pt);
        if let Some(e) = n.event_pt {
            let _ = write!(s, " {e}");
        }
        s.push_str("\r\n");
        let name = match n.law {
            Law::Ulaw => "PCMU",
            Law::Alaw => "PCMA",
        };
        let _ = write!(s, "a=rtpmap:{} {name}/8000\r\n", n.pt);
        if let Some(e) = n.event_pt {
            let _ = write!(
                s,
                "a=rtpmap:{e} telephone-event/8000\r\na=fmtp:{e} 0-15\r\n"
            );
        }
        if let Some(k) = &n.srtp {
            let _ = write!(
                s,
                "a=crypto:{} {} inline:{}\r\n",
                k.tag,
                k.suite.as_str(),
                base64::engine::general_purpose::STANDARD.encode(k.local)
            );
        }
        let _ = write!(s, "a=ptime:20\r\na={}\r\n", n.direction.answer().as_str());
    }
    s
}

/// Our offer (for an INVITE that came without one): PCMU, PCMA and telephone-event.
pub fn offer(local: IpAddr, port: u16, session_id: u64, version: u64) -> String {
    let mut s = header(local, session_id, version);
    let _ = write!(
        s,
        "m=audio {port} RTP/AVP 0 8 {e}\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
         a=rtpmap:{e} telephone-event/8000\r\na=fmtp:{e} 0-15\r\na=ptime:20\r\na=sendrecv\r\n",
        e = DEFAULT_EVENT_PT
    );
    s
}

/// Our offer of one codec (a call taken over keeps the codec it had): `law` on payload type
/// `pt`, telephone-event on `event_pt` when the call had it.
pub fn offer_codec(
    local: IpAddr,
    port: u16,
    session_id: u64,
    version: u64,
    (law, pt, event_pt): (Law, u8, Option<u8>),
) -> String {
    let mut s = header(local, session_id, version);
    let name = match law {
        Law::Ulaw => "PCMU",
        Law::Alaw => "PCMA",
    };
    let _ = write!(s, "m=audio {port} RTP/AVP {pt}");
    if let Some(e) = event_pt {
        let _ = write!(s, " {e}");
    }
    let _ = write!(s, "\r\na=rtpmap:{pt} {name}/8000\r\n");
    if let Some(e) = event_pt {
        let _ = write!(
            s,
            "a=rtpmap:{e} telephone-event/8000\r\na=fmtp:{e} 0-15\r\n"
        );
    }
    s.push_str("a=ptime:20\r\na=sendrecv\r\n");
    s
}

fn header(local: IpAddr, session_id: u64, version: u64) -> String {
    let family = if local.is_ipv6() { "IP6" } else { "IP4" };
    format!(
        "v=0\r\no=ivr {session_id} {version} IN {family} {local}\r\ns=ivr\r\n\
         c=IN {family} {local}\r\nt=0 0\r\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
        m=audio 4000 RTP/AVP 18 8 0 101\r\na=rtpmap:18 G729/8000\r\na=rtpmap:8 PCMA/8000\r\n\
        a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=sendrecv\r\n\
        m=video 5000 RTP/AVP 96\r\n";

    #[test]
    fn picks_the_first_g711_and_events() {
        let s = parse(OFFER).expect("sdp");
        let n = negotiate(&s, SrtpPolicy::None).expect("common");
        assert_eq!(n.law, Law::Alaw);
        assert_eq!(n.pt, 8);
        assert_eq!(n.event_pt, Some(101));
        assert_eq!(n.remote, Some("10.0.0.1:4000".parse().expect("addr")));
        let a = answer(&s, &n, "127.0.0.1".parse().expect("ip"), 20000, 7, 1);
        assert!(a.contains("m=audio 20000 RTP/AVP 8 101\r\n"), "{a}");
        assert!(a.contains("a=rtpmap:101 telephone-event/8000"), "{a}");
        assert!(a.contains("m=video 0 RTP/AVP 96"), "{a}");
        assert!(a.contains("a=sendrecv"), "{a}");
    }

    #[test]
    fn hold_and_no_codec() {
        let hold = OFFER
            .replace("c=IN IP4 10.0.0.1", "c=IN IP4 0.0.0.0")
            .replace("a=sendrecv", "a=sendonly");
        let n = negotiate(&parse(&hold).expect("sdp"), SrtpPolicy::None).expect("common");
        assert_eq!(n.remote, None);
        assert_eq!(n.direction, Direction::SendOnly);
        assert_eq!(n.direction.answer(), Direction::RecvOnly);
        let g729 =
            "v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 4000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n";
        assert_eq!(
            negotiate(&parse(g729).expect("sdp"), SrtpPolicy::None),
            Err(NoCommonCodec)
        );
        assert!(parse("hello").is_err());
    }

    const KEY: &str = "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz";

    fn savp(crypto: &str) -> String {
        format!(
            "v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 4000 RTP/SAVP 0 101\r\n\
             a=rtpmap:101 telephone-event/8000\r\na=crypto:{crypto}\r\n"
        )
    }

    /// The policies: `none` takes plain RTP only, `optional` both, `required` SRTP only.
    #[test]
    fn srtp_offers_follow_the_policy() {
        let offer = savp(&format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}"));
        let s = parse(&offer).expect("sdp");
        assert_eq!(negotiate(&s, SrtpPolicy::None), Err(NoCommonCodec));
        for policy in [SrtpPolicy::Optional, SrtpPolicy::Required] {
            let n = negotiate(&s, policy).expect("SRTP taken");
            let k = n.srtp.expect("keys");
            assert_eq!((k.tag, k.suite), (1, CryptoSuite::AesCm128HmacSha1_80));
            assert_eq!(
                base64::engine::general_purpose::STANDARD.encode(k.remote),
                KEY
            );
            assert_ne!(k.local, k.remote);
            assert_ne!(k.local, [0; KEY_SALT_LEN]);
            let a = answer(&s, &n, "127.0.0.1".parse().expect("ip"), 20000, 7, 1);
            assert!(a.contains("m=audio 20000 RTP/SAVP 0 101\r\n"), "{a}");
            let ours = format!(
                "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{}\r\n",
                base64::engine::general_purpose::STANDARD.encode(k.local)
            );
            assert!(a.contains(&ours), "{a}");
            assert_eq!(a.matches("a=crypto").count(), 1, "{a}");
            // Our answer reads back with our key.
            let back = parse(&a).expect("answer");
            assert_eq!(back.media[0].crypto[0].key, k.local);
        }
        // Two offers draw two keys.
        let a = negotiate(&s, SrtpPolicy::Optional).expect("srtp").srtp;
        let b = negotiate(&s, SrtpPolicy::Optional).expect("srtp").srtp;
        assert_ne!(a.map(|k| k.local), b.map(|k| k.local));
        // A plain offer: refused when SRTP is required.
        let plain = offer.replace("RTP/SAVP", "RTP/AVP");
        let p = parse(&plain).expect("sdp");
        assert_eq!(negotiate(&p, SrtpPolicy::Required), Err(NoCommonCodec));
        for policy in [SrtpPolicy::None, SrtpPolicy::Optional] {
            let n = negotiate(&p, policy).expect("plain");
            assert_eq!(n.srtp, None);
            let a = answer(&p, &n, "127.0.0.1".parse().expect("ip"), 20000, 7, 1);
            assert!(!a.contains("a=crypto"), "{a}");
        }
        // SAVP beside AVP: the first stream the policy takes.
        let both = format!("{offer}m=audio 4002 RTP/AVP 0\r\n");
        let b = parse(&both).expect("sdp");
        let n = negotiate(&b, SrtpPolicy::None).expect("plain");
        assert_eq!((n.index, n.srtp), (1, None));
        let n = negotiate(&b, SrtpPolicy::Optional).expect("srtp");
        assert!(n.index == 0 && n.srtp.is_some());
        // The 32-bit tag suite, a lifetime; DTLS-SRTP's profile is never taken.
        let s32 = savp(&format!("7 AES_CM_128_HMAC_SHA1_32 inline:{KEY}|2^31"));
        let n = negotiate(&parse(&s32).expect("sdp"), SrtpPolicy::Required).expect("32");
        let k = n.srtp.expect("keys");
        assert_eq!((k.tag, k.suite), (7, CryptoSuite::AesCm128HmacSha1_32));
        let dtls = offer.replace("RTP/SAVP", "UDP/TLS/RTP/SAVPF");
        assert_eq!(
            negotiate(&parse(&dtls).expect("sdp"), SrtpPolicy::Optional),
            Err(NoCommonCodec)
        );
        assert!(is_plain_rtp("rtp/avp") && is_plain_rtp("RTP/AVPF"));
        assert!(!is_plain_rtp("RTP/SAVPF") && !is_plain_rtp("UDP/TLS/RTP/SAVPF"));
        assert!(is_sdes_srtp("RTP/SAVPF") && !is_sdes_srtp("UDP/TLS/RTP/SAVPF"));
    }

    /// `a=crypto` lines we cannot use are skipped, and an SRTP stream without a usable one is
    /// not taken; the first usable line is, whatever comes before it.
    #[test]
    fn malformed_crypto_lines_are_skipped() {
        let bad = [
            String::new(),
            "1".into(),
            "1 AES_CM_128_HMAC_SHA1_80".into(),
            format!("x AES_CM_128_HMAC_SHA1_80 inline:{KEY}"),
            format!("-1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}"),
            format!("1234567890 AES_CM_128_HMAC_SHA1_80 inline:{KEY}"),
            format!("1 AES_256_CM_HMAC_SHA1_80 inline:{KEY}"),
            format!("1 F8_128_HMAC_SHA1_80 inline:{KEY}"),
            format!("1 AES_CM_128_HMAC_SHA1_80 {KEY}"),
            format!("1 AES_CM_128_HMAC_SHA1_80 inline:{}", &KEY[..36]),
            format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}AAAA"),
            "1 AES_CM_128_HMAC_SHA1_80 inline:!!!!".into(),
            format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|2^20|1:4"),
            format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|2^99"),
            format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|forever"),
            format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|"),
            format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY};inline:{KEY}"),
            format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY} UNENCRYPTED_SRTP"),
            format!("1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}{}", "A".repeat(300)),
            format!("1 AES_CM_128_HMAC_SHA1_80 inline:{}", "A".repeat(200)),
        ];
        for b in &bad {
            assert_eq!(Crypto::parse(b), None, "{b}");
            let s = parse(&savp(b)).expect("sdp");
            assert!(s.media[0].crypto.is_empty(), "{b}");
            assert_eq!(
                negotiate(&s, SrtpPolicy::Optional),
                Err(NoCommonCodec),
                "{b}"
            );
        }
        // The usable line after bad ones is taken; the number kept is bounded.
        let mut offer = savp(&bad[6]);
        for t in 2..40 {
            let _ = write!(
                offer,
                "a=crypto:{t} AES_CM_128_HMAC_SHA1_80 inline:{KEY}|1048576\r\n"
            );
        }
        let s = parse(&offer).expect("sdp");
        assert_eq!(s.media[0].crypto.len(), MAX_CRYPTO);
        let n = negotiate(&s, SrtpPolicy::Required).expect("srtp");
        assert_eq!(n.srtp.map(|k| k.tag), Some(2));
        // No key in debug output.
        assert!(!format!("{n:?}").contains(KEY), "{n:?}");
    }

    /// An input the `sdp` fuzz target's check (negotiated payload types are RTP payload
    /// types) fails on: payload type 200 was taken, though RTP has 7 bits for it, so our packets
    /// went out as 72 and the caller's never matched.
    #[test]
    fn formats_that_are_not_rtp_payload_types_are_skipped() {
        let big =
            "v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 4000 RTP/AVP 200\r\na=rtpmap:200 PCMU/8000\r\n";
        assert_eq!(
            negotiate(&parse(big).expect("sdp"), SrtpPolicy::None),
            Err(NoCommonCodec)
        );
        let mixed = "v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 4000 RTP/AVP 200 8 228\r\n\
            a=rtpmap:200 PCMU/8000\r\na=rtpmap:228 telephone-event/8000\r\n\
            a=rtpmap:127 telephone-event/8000\r\n";
        let n = negotiate(&parse(mixed).expect("sdp"), SrtpPolicy::None).expect("PCMA");
        assert_eq!((n.law, n.pt, n.event_pt), (Law::Alaw, 8, None));
        let top = mixed.replace(" 228\r\n", " 127\r\n");
        let n = negotiate(&parse(&top).expect("sdp"), SrtpPolicy::None).expect("PCMA");
        assert_eq!((n.pt, n.event_pt), (8, Some(127)));
    }
}
