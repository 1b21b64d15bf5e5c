//! Whole-call recording's cost ([`ivr_media::recorder`]):
//!
//! - `tap_push`: what the media path pays per 20 ms frame it hands to a recording (a copy
//!   into the frame and a `try_send` on the bounded channel), the writer thread draining it
//!   on the other core. This is all the pacer and the bridge do for a recording.
//! - Before criterion, `writer`: 1,000 recordings open at once, each given 10 s of both legs
//!   (1,000 × 2 × 500 frames, times spaced 20 ms apart) as fast as the writer takes them, then
//!   closed (flushed, headers final, SHA-256 read back): frames per second the writer
//!   sustains and MB/s written. Real time for 1,000 calls is 100,000 frames/s and 32 MB/s.
//!
//!     cargo bench -p ivr-media --bench recorder

// criterion's macros write undocumented functions.
#![allow(missing_docs)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ivr_media::audio::{FRAME_SAMPLES, Law};
use ivr_media::recorder::{Leg, Recorder};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

fn folder(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("ivr-bench-rec-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn writer_run(calls: usize, seconds: usize) {
    let dir = folder("writer");
    let recorder = Recorder::start().expect("writer");
    let t0 = Instant::now();
    let recs: Vec<_> = (0..calls)
        .map(|i| recorder.open(dir.join(format!("c{i}.wav"))))
        .collect();
    let frame = [0x55u8; FRAME_SAMPLES];
    let started = Instant::now();
    for k in 0..seconds * 50 {
        let at = t0 + Duration::from_millis(20 * k as u64);
        for r in &recs {
            r.tap().push_at(Leg::Caller, Law::Alaw, &frame, at);
            r.tap().push_at(Leg::Other, Law::Alaw, &frame, at);
        }
        // The producer stays within the channel of the writer (a test of throughput, not of
        // dropping).
        let s = recorder.stats();
        while s.frames.load(Ordering::Relaxed) > s.received.load(Ordering::Relaxed) + 12_000 {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let answers: Vec<_> = recs.into_iter().map(|r| r.finish()).collect();
    let mut bytes = 0u64;
    rt.block_on(async {
        for a in answers {
            if let Ok(Ok(done)) = a.await {
                bytes += done.bytes;
            }
        }
    });
    let took = started.elapsed().as_secs_f64();
    let s = recorder.stats();
    let frames = s.frames.load(Ordering::Relaxed);
    println!(
        "writer: {calls} recordings x {seconds} s: {frames} frames in {took:.2} s = {:.0} frames/s, \
         {:.1} MB/s written ({:.1} MB), dropped {}, late {}",
        frames as f64 / took,
        bytes as f64 / took / 1e6,
        bytes as f64 / 1e6,
        s.dropped.load(Ordering::Relaxed),
        s.late.load(Ordering::Relaxed),
    );
    let _ = std::fs::remove_dir_all(dir);
}

fn bench(c: &mut Criterion) {
    writer_run(1000, 10);
    let dir = folder("tap");
    let recorder = Recorder::with_capacity(1 << 16).expect("writer");
    let rec = recorder.open(dir.join("tap.wav"));
    let frame = [0x55u8; FRAME_SAMPLES];
    let mut g = c.benchmark_group("recorder");
    g.throughput(Throughput::Elements(1));
    g.bench_function("tap_push", |b| {
        b.iter(|| rec.tap().push(Leg::Caller, Law::Alaw, &frame));
    });
    g.finish();
    let s = recorder.stats();
    println!(
        "tap_push: {} frames taken, {} dropped (channel full)",
        s.frames.load(Ordering::Relaxed),
        s.dropped.load(Ordering::Relaxed)
    );
    drop(rec);
    let _ = std::fs::remove_dir_all(dir);
}

criterion_group!(benches, bench);
criterion_main!(benches);
