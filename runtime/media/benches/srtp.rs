//! The per-packet cost of SRTP on a SIP call's 20 ms G.711 packet (12-byte header, 160 bytes
//! of audio): what the pacer adds to protect a prompt frame ([`Protect::protect`]: the copy
//! into the channel's buffer, AES-CM-128, HMAC-SHA1-80 and the packet `rtc-srtp` allocates),
//! what the call task adds to unprotect the caller's packet ([`Unprotect::unprotect`]), and,
//! for scale, the plain path's header write. `cargo bench -p ivr-media --bench srtp`.
#![allow(missing_docs)]

use criterion::{Criterion, criterion_group, criterion_main};
use ivr_media::rtp::{HEADER_LEN, Header};
use ivr_media::srtp::{Protect, Unprotect};
use ivr_sip::sdp::{CryptoSuite, Sdes};
use std::hint::black_box;

fn keys(suite: CryptoSuite) -> (Sdes, Sdes) {
    let ours = Sdes {
        tag: 1,
        suite,
        remote: [7; 30],
        local: [9; 30],
    };
    let theirs = Sdes {
        remote: ours.local,
        local: ours.remote,
        ..ours
    };
    (ours, theirs)
}

fn head(seq: u16) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    Header {
        payload_type: 0,
        marker: false,
        seq,
        timestamp: u32::from(seq).wrapping_mul(160),
        ssrc: 0x1234_5678,
    }
    .write(&mut h);
    h
}

fn bench(c: &mut Criterion) {
    let frame = [0x55u8; 160];
    for (name, suite) in [
        ("80", CryptoSuite::AesCm128HmacSha1_80),
        ("32", CryptoSuite::AesCm128HmacSha1_32),
    ] {
        let (ours, theirs) = keys(suite);
        let mut send = Protect::new(&ours).expect("context");
        let mut seq: u16 = 0;
        c.bench_function(&format!("srtp_protect_20ms_pcmu_sha1_{name}"), |b| {
            b.iter(|| {
                seq = seq.wrapping_add(1);
                black_box(
                    send.protect(&head(seq), black_box(&frame))
                        .expect("protect"),
                )
            })
        });
        // Unprotect: packets protected ahead, each checked once (the replay window
        // refuses a second look), so the context is renewed per batch.
        // A fresh sender: the one above has wrapped its sequence numbers many times.
        let mut fresh = Protect::new(&ours).expect("context");
        let packets: Vec<Vec<u8>> = (1..=64u16)
            .map(|s| fresh.protect(&head(s), &frame).expect("protect").to_vec())
            .collect();
        c.bench_function(&format!("srtp_unprotect_20ms_pcmu_sha1_{name}"), |b| {
            b.iter_batched_ref(
                || Unprotect::new(&theirs).expect("context"),
                |recv| {
                    for p in &packets {
                        black_box(recv.unprotect(p).expect("unprotect"));
                    }
                },
                criterion::BatchSize::SmallInput,
            )
        });
    }
    let mut seq: u16 = 0;
    c.bench_function("plain_rtp_header_20ms", |b| {
        b.iter(|| {
            seq = seq.wrapping_add(1);
            black_box(head(seq))
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
