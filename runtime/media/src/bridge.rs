//! The media bridge of a transfer: RTP from one leg relayed to the other, as it comes — the
//! payload type rewritten to what the other side negotiated, G.711 transcoded between μ-law
//! and A-law when the two sides chose differently, telephone-event (DTMF) passed through or
//! dropped when the other side has none. No allocation: packets are rewritten into the
//! caller's buffer.

use super::rtp;
use crate::audio::{G711, Law};

/// What one side of the bridge negotiated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Side {
    /// Its G.711 law.
    pub law: Law,
    /// The payload type of its audio.
    pub pt: u8,
    /// The payload type of its telephone-event, when it has one.
    pub event_pt: Option<u8>,
}

/// Rewrites packet `data` from side `from` for side `to` into `out`; the length to send, or
/// `None` for what the other side cannot take (unknown payload types, events it has no
/// payload type for, packets that are not RTP or do not fit).
pub fn relay(data: &[u8], from: Side, to: Side, out: &mut [u8]) -> Option<usize> {
    let p = rtp::parse(data)?;
    let header_len = data
        .len()
        .checked_sub(p.payload.len() + padding_len(data))?;
    let len = header_len + p.payload.len();
    if len > out.len() || header_len < rtp::HEADER_LEN {
        return None;
    }
    let pt = p.header.payload_type;
    let (out_pt, transcode) = if pt == from.pt {
        (to.pt, from.law != to.law)
    } else if Some(pt) == from.event_pt {
        (to.event_pt?, false)
    } else {
        return None;
    };
    out[..header_len].copy_from_slice(&data[..header_len]);
    // No padding in what we send; keep the marker bit.
    out[0] &= !0x20;
    out[1] = (data[1] & 0x80) | (out_pt & 0x7f);
    let body = &mut out[header_len..len];
    if transcode {
        for (o, &b) in body.iter_mut().zip(p.payload) {
            *o = to.law.encode(from.law.decode(b));
        }
    } else {
        body.copy_from_slice(p.payload);
    }
    Some(len)
}

fn padding_len(data: &[u8]) -> usize {
    if data.first().is_some_and(|b| b & 0x20 != 0) {
        data.last().map_or(0, |&n| usize::from(n))
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(pt: u8, marker: bool, payload: &[u8]) -> Vec<u8> {
        let mut h = [0u8; rtp::HEADER_LEN];
        rtp::Header {
            payload_type: pt,
            marker,
            seq: 7,
            timestamp: 160,
            ssrc: 99,
        }
        .write(&mut h);
        let mut v = h.to_vec();
        v.extend_from_slice(payload);
        v
    }

    const ULAW: Side = Side {
        law: Law::Ulaw,
        pt: 0,
        event_pt: Some(101),
    };
    const ALAW: Side = Side {
        law: Law::Alaw,
        pt: 8,
        event_pt: Some(96),
    };

    #[test]
    fn audio_is_passed_with_the_same_law() {
        let data = packet(0, false, &[1, 2, 3]);
        let mut out = [0u8; 1500];
        let n = relay(&data, ULAW, ULAW, &mut out).expect("relayed");
        assert_eq!(&out[..n], &data[..]);
    }

    #[test]
    fn audio_is_transcoded_between_laws() {
        let samples: Vec<i16> = vec![0, 1000, -1000, 8000];
        let ulaw: Vec<u8> = samples.iter().map(|&s| Law::Ulaw.encode(s)).collect();
        let data = packet(0, true, &ulaw);
        let mut out = [0u8; 1500];
        let n = relay(&data, ULAW, ALAW, &mut out).expect("relayed");
        let p = rtp::parse(&out[..n]).expect("rtp");
        assert_eq!(p.header.payload_type, 8);
        assert!(p.header.marker);
        assert_eq!(p.header.ssrc, 99);
        for (&a, &s) in p.payload.iter().zip(&samples) {
            let back = Law::Alaw.decode(a);
            assert!(
                (i32::from(back) - i32::from(s)).abs() < 600,
                "{back} vs {s}"
            );
        }
    }

    #[test]
    fn dtmf_events_follow_the_other_sides_payload_type() {
        let data = packet(101, true, &[5, 0x80, 0, 160]);
        let mut out = [0u8; 1500];
        let n = relay(&data, ULAW, ALAW, &mut out).expect("relayed");
        let p = rtp::parse(&out[..n]).expect("rtp");
        assert_eq!(p.header.payload_type, 96);
        assert_eq!(p.payload, &[5, 0x80, 0, 160]);
        let none = Side {
            event_pt: None,
            ..ALAW
        };
        assert_eq!(relay(&data, ULAW, none, &mut out), None);
        // Unknown payload types are not relayed.
        assert_eq!(relay(&packet(13, false, &[0]), ULAW, ALAW, &mut out), None);
    }
}
