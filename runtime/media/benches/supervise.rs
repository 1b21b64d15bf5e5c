//! A supervisor's cost on the bridge ([`ivr_media::supervise`]), per 20 ms packet:
//!
//! - `tap_listen`: a packet relayed while a supervisor listens (the payload decoded into the
//!   ring the supervisor reads);
//! - `tap_whisper`: the same while the supervisor whispers (and the supervisor's voice mixed
//!   in, saturating, and the payload encoded again);
//! - `listen_both_ways`: a packet each way and the supervisor's 20 ms frame of both mixed.
//!
//!     cargo bench -p ivr-media --bench supervise

// criterion's macros write undocumented functions.
#![allow(missing_docs)]

use criterion::{Criterion, criterion_group, criterion_main};
use ivr_media::audio::{FRAME_SAMPLES, G711, Law};
use ivr_media::rtp;
use ivr_media::supervise::{Mode, pair};
use std::hint::black_box;

fn packet() -> Vec<u8> {
    let mut h = [0u8; rtp::HEADER_LEN];
    rtp::Header {
        payload_type: 0,
        marker: false,
        seq: 1,
        timestamp: 160,
        ssrc: 7,
    }
    .write(&mut h);
    let mut v = h.to_vec();
    v.extend((0..FRAME_SAMPLES).map(|i| Law::Ulaw.encode((i as i16 - 80) * 100)));
    v
}

fn bench(c: &mut Criterion) {
    let voice: Vec<i16> = (0..FRAME_SAMPLES).map(|i| (i as i16 - 80) * 50).collect();
    let original = packet();
    let mut p = original.clone();

    let (mut tap, mut end) = pair(Mode::Listen);
    let mut heard = [0i16; FRAME_SAMPLES];
    c.bench_function("supervise/tap_listen", |b| {
        b.iter(|| {
            p.copy_from_slice(&original);
            tap.caller_to_agent(black_box(&mut p), Law::Ulaw, 0);
            // The supervisor keeps up, as its 20 ms sender does.
            end.heard(&mut heard);
        })
    });

    let (mut tap, mut end) = pair(Mode::Whisper);
    c.bench_function("supervise/tap_whisper", |b| {
        b.iter(|| {
            end.speak(&voice);
            p.copy_from_slice(&original);
            tap.caller_to_agent(black_box(&mut p), Law::Ulaw, 0);
            end.heard(&mut heard);
        })
    });

    let (mut tap, mut end) = pair(Mode::Listen);
    let mut q = original.clone();
    c.bench_function("supervise/listen_both_ways", |b| {
        b.iter(|| {
            // Keep both rings fed outside what is measured as little as possible: one packet
            // each way, then the mix.
            tap.caller_to_agent(&mut p, Law::Ulaw, 0);
            tap.agent_to_caller(&mut q, Law::Ulaw, 0);
            end.heard(black_box(&mut heard));
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
