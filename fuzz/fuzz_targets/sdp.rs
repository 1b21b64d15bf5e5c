//! SDP offer/answer: `ivr_sip::sdp::parse` of the input (as text, invalid UTF-8 replaced), then
//! `negotiate` and our `answer`; and the SIP INFO key of `ivr_sip::info::key_of_info` (first line
//! of the input: the Content-Type, the rest: the body).
//!
//! Must hold: no panic; what `negotiate` picks is an audio stream with a port, over RTP, with
//! valid RTP payload types (0-127) and its own codec; our answer parses again and negotiates to
//! the same codec, payload types and stream, at our address and port, in the answering
//! direction; an INFO key is one of 0-9, `*`, `#`. Under each SRTP policy: an SRTP stream is
//! taken only when the policy allows it and only with keys; our answer's one `a=crypto` line
//! reads back as our key with the offer's tag and suite.
#![no_main]

use ivr_sip::info::key_of_info;
use ivr_sip::sdp::{self, Law, Negotiated, SrtpPolicy};
use libfuzzer_sys::fuzz_target;
use std::net::{IpAddr, SocketAddr};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);

    if let Some((ctype, body)) = text.split_once('\n')
        && let Some(k) = key_of_info(ctype, body)
    {
        assert!("0123456789*#".contains(k), "key {k:?}");
    }

    let Ok(offer) = sdp::parse(&text) else {
        return;
    };
    assert!(!offer.media.is_empty());
    for m in &offer.media {
        for f in &m.formats {
            if let Ok(pt) = f.parse::<u8>() {
                let _ = m.encoding(pt);
            }
        }
    }
    for policy in [SrtpPolicy::None, SrtpPolicy::Optional, SrtpPolicy::Required] {
        check(&offer, policy);
    }
});

fn check(offer: &sdp::Session, policy: SrtpPolicy) {
    let Ok(n) = sdp::negotiate(offer, policy) else {
        return;
    };
    let m = &offer.media[n.index];
    match (policy, n.srtp) {
        (SrtpPolicy::None, Some(_)) => panic!("SRTP taken under the policy none"),
        (SrtpPolicy::Required, None) => panic!("plain RTP taken under the policy required"),
        (_, Some(k)) => {
            assert!(sdp::is_sdes_srtp(&m.proto), "{}", m.proto);
            assert!(m.crypto.iter().any(|c| c.key == k.remote && c.tag == k.tag));
        }
        (_, None) => assert!(sdp::is_plain_rtp(&m.proto), "{}", m.proto),
    }
    assert_eq!(m.kind, "audio");
    assert_ne!(m.port, 0);
    assert!(m.proto.to_ascii_uppercase().starts_with("RTP/"));
    assert!(
        n.pt < 128,
        "payload type {} is not an RTP payload type",
        n.pt
    );
    if let Some(e) = n.event_pt {
        assert!(
            e < 128,
            "telephone-event payload type {e} is not an RTP payload type"
        );
        assert_ne!(e, n.pt);
    }
    let want = match n.law {
        Law::Ulaw => "pcmu",
        Law::Alaw => "pcma",
    };
    assert_eq!(m.encoding(n.pt), Some((want.to_string(), 8000)));
    if let Some(r) = n.remote {
        assert_eq!(r.port(), m.port);
        assert!(!r.ip().is_unspecified());
    }

    // Our answer reads back as what we agreed on.
    for local in ["127.0.0.2", "2001:db8::2"] {
        let local: IpAddr = local.parse().expect("ip");
        let answer = sdp::answer(offer, &n, local, 40_000, 7, 1);
        let back = sdp::parse(&answer)
            .unwrap_or_else(|e| panic!("our answer does not parse ({e}): {answer:?}"));
        assert_eq!(back.media.len(), offer.media.len(), "{answer:?}");
        let again = sdp::negotiate(&back, policy)
            .unwrap_or_else(|_| panic!("our answer negotiates nothing: {answer:?}"));
        // Read back, our key is the peer's.
        let srtp = again.srtp.map(|k| (k.tag, k.suite, k.remote));
        assert_eq!(
            srtp,
            n.srtp.map(|k| (k.tag, k.suite, k.local)),
            "{answer:?}"
        );
        assert_eq!(
            again,
            Negotiated {
                remote: Some(SocketAddr::new(local, 40_000)),
                direction: n.direction.answer(),
                srtp: again.srtp,
                ..n
            },
            "{answer:?}"
        );
    }
}
