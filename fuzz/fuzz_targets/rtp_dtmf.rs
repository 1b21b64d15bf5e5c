//! RTP as a call's port receives it: each packet goes through `ivr_media::rtp::parse`, the
//! call's `ivr_media::latch::Latch` (where media may come from), the RFC 4733
//! `ivr_media::dtmf::EventDetector` when its payload type is telephone-event's, and a transfer's
//! `ivr_media::bridge::relay` to the other leg.
//!
//! Input: two bytes of setup (telephone-event's payload type; the address the SDP gave: one of
//! the four sources or none; the bridge's laws), then records `[flags, length, packet...]`:
//! `flags & 3` picks the source address, `flags & 4` makes the latch learn again first
//! (a re-INVITE), `flags & 8` relays the packet the other way. A record cut short keeps what
//! is there.
//!
//! Must hold: no panic; what `parse` reads is what the bytes say (header fields, CSRCs,
//! extension and padding accounted for, the payload a part of the packet) and `Header::write`
//! writes it back; the latch follows its rules (the SDP address at once, another source only
//! after `PROBATION` packets in sequence, then nothing else); the detector reports a key exactly
//! when a 4-byte-or-longer payload comes with a new timestamp and a key's event code; what the
//! bridge relays parses again with the same header but the other side's payload type.
#![no_main]

use ivr_media::audio::Law;
use ivr_media::bridge::{self, Side};
use ivr_media::dtmf::{EventDetector, event_of_key, key_of_event};
use ivr_media::latch::{Latch, PROBATION, Verdict};
use ivr_media::rtp::{self, HEADER_LEN, Header};
use libfuzzer_sys::fuzz_target;
use std::net::SocketAddr;

const SOURCES: [&str; 4] = [
    "192.0.2.10:4000",
    "192.0.2.10:4002",
    "198.51.100.7:30000",
    "[2001:db8::7]:4000",
];

/// The latch's rules, written out: the state a correct latch is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Model {
    Learning(Option<(SocketAddr, u32, u16, u8)>),
    Locked(SocketAddr),
}

impl Model {
    fn check(&mut self, expected: Option<SocketAddr>, from: SocketAddr, h: &Header) -> Verdict {
        match self {
            Model::Locked(a) if *a == from => Verdict::Accept,
            Model::Locked(_) => Verdict::Drop,
            Model::Learning(_) if Some(from) == expected => {
                *self = Model::Locked(from);
                Verdict::Latched(from)
            }
            Model::Learning(c) => {
                let n = match *c {
                    Some((a, ssrc, seq, n))
                        if a == from && ssrc == h.ssrc && h.seq == seq.wrapping_add(1) =>
                    {
                        n.saturating_add(1)
                    }
                    _ => 1,
                };
                if n >= PROBATION {
                    *self = Model::Locked(from);
                    Verdict::Latched(from)
                } else {
                    *c = Some((from, h.ssrc, h.seq, n));
                    Verdict::Drop
                }
            }
        }
    }
}

/// What `rtp::parse` must find in `buf`, from the bytes.
fn check_parse(buf: &[u8]) {
    let Some(p) = rtp::parse(buf) else {
        return;
    };
    assert!(buf.len() >= HEADER_LEN && buf[0] >> 6 == 2, "{buf:?}");
    let h = p.header;
    assert_eq!(h.payload_type, buf[1] & 0x7f);
    assert_eq!(h.marker, buf[1] & 0x80 != 0);
    assert!(
        !(h.marker && (72..=76).contains(&h.payload_type)),
        "RTCP read as RTP"
    );
    assert_eq!(h.seq, u16::from_be_bytes([buf[2], buf[3]]));
    assert_eq!(
        h.timestamp,
        u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]])
    );
    assert_eq!(
        h.ssrc,
        u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]])
    );
    // The payload lies inside the packet, after the CSRCs and any extension.
    let start = p.payload.as_ptr() as usize - buf.as_ptr() as usize;
    let end = start + p.payload.len();
    assert!(end <= buf.len());
    let mut want_start = HEADER_LEN + 4 * usize::from(buf[0] & 0x0f);
    if buf[0] & 0x10 != 0 {
        let words = usize::from(u16::from_be_bytes([
            buf[want_start + 2],
            buf[want_start + 3],
        ]));
        want_start += 4 + 4 * words;
    }
    assert_eq!(start, want_start, "payload start");
    let pad = if buf[0] & 0x20 != 0 {
        usize::from(buf[buf.len() - 1])
    } else {
        0
    };
    assert_eq!(end, buf.len() - pad, "payload end");
    // Written back: the same fixed header, as version 2 without padding, extension or CSRCs.
    let mut out = [0u8; HEADER_LEN];
    h.write(&mut out);
    assert_eq!(out[0], 0x80);
    assert_eq!(out[1..], buf[1..HEADER_LEN]);
    let mut again = out.to_vec();
    again.extend_from_slice(p.payload);
    let q = rtp::parse(&again).expect("our header parses");
    assert_eq!((q.header, q.payload), (h, p.payload));
}

fuzz_target!(|data: &[u8]| {
    let [a, b, rest @ ..] = data else {
        return;
    };
    let event_pt = a & 0x7f;
    let sources: Vec<SocketAddr> = SOURCES.iter().map(|s| s.parse().expect("addr")).collect();
    let expected = sources.get(usize::from(b & 7)).copied();
    let law = |bit: u8| if b & bit != 0 { Law::Alaw } else { Law::Ulaw };
    let caller = Side {
        law: law(0x10),
        pt: if b & 0x10 != 0 { 8 } else { 0 },
        event_pt: (b & 0x40 == 0).then_some(event_pt),
    };
    let agent = Side {
        law: law(0x20),
        pt: if b & 0x20 != 0 { 8 } else { 0 },
        event_pt: (b & 0x80 == 0).then_some(101),
    };

    let mut latch = Latch::new(expected);
    let mut model = Model::Learning(None);
    let mut expected_now = expected;
    let mut detector = EventDetector::new();
    let mut last_event_ts: Option<u32> = None;
    let mut out = [0u8; 2048];

    let mut rest = rest;
    while let [flags, len, tail @ ..] = rest {
        let n = usize::from(*len).min(tail.len());
        let (pkt, next) = tail.split_at(n);
        rest = next;
        let from = sources[usize::from(flags & 3)];

        check_parse(pkt);

        if flags & 4 != 0 {
            expected_now = sources.get(usize::from(flags >> 4 & 7)).copied();
            latch.relearn(expected_now);
            model = Model::Learning(None);
        }
        if let Some(p) = rtp::parse(pkt) {
            let v = latch.check(from, &p.header);
            let want = model.check(expected_now, from, &p.header);
            assert_eq!(v, want, "latch verdict for {from} {:?}", p.header);
            match model {
                Model::Locked(a) => assert_eq!(latch.peer(), Some(a)),
                Model::Learning(_) => assert_eq!(latch.peer(), None),
            }

            if p.header.payload_type == event_pt {
                let k = detector.feed(p.header.timestamp, p.payload);
                let fresh = p.payload.len() >= 4 && last_event_ts != Some(p.header.timestamp);
                if p.payload.len() >= 4 {
                    last_event_ts = Some(p.header.timestamp);
                }
                let want = if fresh {
                    key_of_event(p.payload[0])
                } else {
                    None
                };
                assert_eq!(k, want, "key of {:?} at {}", p.payload, p.header.timestamp);
                if let Some(k) = k {
                    assert_eq!(event_of_key(k), Some(p.payload[0]));
                }
            }
        }

        let (src, dst) = if flags & 8 != 0 {
            (agent, caller)
        } else {
            (caller, agent)
        };
        if let Some(len) = bridge::relay(pkt, src, dst, &mut out) {
            let p = rtp::parse(pkt).expect("relayed what is RTP");
            let want_pt = if p.header.payload_type == src.pt {
                dst.pt
            } else {
                dst.event_pt
                    .expect("an event relayed to a side without events")
            };
            let sent = &out[..len];
            assert_eq!(sent[1] & 0x7f, want_pt);
            assert_eq!(sent[0] & 0x20, 0, "padding relayed");
            if let Some(q) = rtp::parse(sent) {
                assert_eq!(
                    q.header,
                    Header {
                        payload_type: want_pt,
                        ..p.header
                    }
                );
                assert_eq!(q.payload.len(), p.payload.len());
            } else {
                assert!(
                    p.header.marker && (72..=76).contains(&want_pt),
                    "the relayed packet does not parse: {sent:?}"
                );
            }
        }
    }
});
