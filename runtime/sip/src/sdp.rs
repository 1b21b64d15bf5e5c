//! SDP offer/answer (RFC 3264) for one audio stream: PCMU, PCMA and telephone-event/8000.
//!
//! [`parse`] reads what we need of an offer (or answer): each `m=` line with its address, port,
//! payload types, `rtpmap`s and direction. [`answer`] picks the first offered G.711 codec and
//! telephone-event when offered; other streams are refused with port 0. Nothing in common is
//! [`NoCommonCodec`] (488 Not Acceptable Here).

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

/// Picks the stream and codecs of an offer: the first audio stream over plain RTP
/// ([`is_plain_rtp`]; an offer of SRTP only has no stream we take, so it is refused with 488)
/// with PCMU or PCMA (in the offerer's order of preference). Formats that are not RTP payload
/// types (0-127: the RTP header has 7 bits for it) are skipped.
pub fn negotiate(offer: &Session) -> Result<Negotiated, NoCommonCodec> {
    for (index, m) in offer.media.iter().enumerate() {
        if m.kind != "audio" || m.port == 0 || !is_plain_rtp(&m.proto) {
            continue;
        }
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
        let n = negotiate(&s).expect("common");
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
        let n = negotiate(&parse(&hold).expect("sdp")).expect("common");
        assert_eq!(n.remote, None);
        assert_eq!(n.direction, Direction::SendOnly);
        assert_eq!(n.direction.answer(), Direction::RecvOnly);
        let g729 =
            "v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 4000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n";
        assert_eq!(negotiate(&parse(g729).expect("sdp")), Err(NoCommonCodec));
        assert!(parse("hello").is_err());
    }

    /// An SRTP offer (`RTP/SAVP` with SDES `a=crypto`) is not answered as plain RTP.
    #[test]
    fn secure_profiles_are_not_taken_as_plain_rtp() {
        let savp = "v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 4000 RTP/SAVP 0 101\r\n\
            a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\n";
        assert_eq!(negotiate(&parse(savp).expect("sdp")), Err(NoCommonCodec));
        // Offered beside plain RTP, the plain stream is taken.
        let both = format!("{savp}m=audio 4002 RTP/AVP 0\r\n");
        let n = negotiate(&parse(&both).expect("sdp")).expect("RTP/AVP");
        assert_eq!(
            (n.index, n.remote),
            (1, Some("1.2.3.4:4002".parse().expect("addr")))
        );
        assert!(is_plain_rtp("rtp/avp") && is_plain_rtp("RTP/AVPF"));
        assert!(!is_plain_rtp("RTP/SAVPF") && !is_plain_rtp("UDP/TLS/RTP/SAVPF"));
    }

    /// An input the `sdp` fuzz target's check (negotiated payload types are RTP payload
    /// types) fails on: payload type 200 was taken, though RTP has 7 bits for it, so our packets
    /// went out as 72 and the caller's never matched.
    #[test]
    fn formats_that_are_not_rtp_payload_types_are_skipped() {
        let big =
            "v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 4000 RTP/AVP 200\r\na=rtpmap:200 PCMU/8000\r\n";
        assert_eq!(negotiate(&parse(big).expect("sdp")), Err(NoCommonCodec));
        let mixed = "v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 4000 RTP/AVP 200 8 228\r\n\
            a=rtpmap:200 PCMU/8000\r\na=rtpmap:228 telephone-event/8000\r\n\
            a=rtpmap:127 telephone-event/8000\r\n";
        let n = negotiate(&parse(mixed).expect("sdp")).expect("PCMA");
        assert_eq!((n.law, n.pt, n.event_pt), (Law::Alaw, 8, None));
        let top = mixed.replace(" 228\r\n", " 127\r\n");
        let n = negotiate(&parse(&top).expect("sdp")).expect("PCMA");
        assert_eq!((n.pt, n.event_pt), (8, Some(127)));
    }
}
