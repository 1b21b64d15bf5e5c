use super::*;
use crate::audio::FRAME_SAMPLES;

fn tone(hz: f32, from: usize, n: usize) -> Vec<i16> {
    (from..from + n)
        .map(|i| {
            (8000.0 * (2.0 * std::f32::consts::PI * hz * i as f32 / SAMPLE_RATE as f32).sin())
                as i16
        })
        .collect()
}

/// The power of `hz` in `x` (Goertzel), per sample.
fn power(x: &[i16], hz: f32) -> f64 {
    let w = 2.0 * std::f64::consts::PI * f64::from(hz) / f64::from(SAMPLE_RATE);
    let c = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &v in x {
        let s = f64::from(v) + c * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    (s1 * s1 + s2 * s2 - c * s1 * s2) / (x.len() as f64).powi(2)
}

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ivr-rec-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn read(path: &Path) -> (Vec<i16>, Vec<i16>) {
    let mut r = hound::WavReader::open(path).expect("a readable WAV");
    let spec = r.spec();
    assert_eq!(
        (spec.channels, spec.sample_rate, spec.bits_per_sample),
        (2, 8000, 16)
    );
    let all: Vec<i16> = r.samples::<i16>().map(|s| s.expect("sample")).collect();
    let left = all.iter().step_by(2).copied().collect();
    let right = all.iter().skip(1).step_by(2).copied().collect();
    (left, right)
}

fn finish(rec: Recording) -> Finished {
    rec.finish()
        .blocking_recv()
        .expect("an answer")
        .expect("a file")
}

#[test]
fn the_caller_is_left_and_the_other_side_right() {
    let d = dir("stereo");
    let recorder = Recorder::start().expect("writer");
    let path = d.join("2026-12-06/call.wav");
    let rec = recorder.open(path.clone());
    let t0 = Instant::now();
    // One second: the caller says 440 Hz, the agent 1000 Hz (in μ-law and A-law).
    for k in 0..50 {
        let at = t0 + Duration::from_millis(20 * k as u64);
        let c: Vec<u8> = tone(440.0, k * FRAME_SAMPLES, FRAME_SAMPLES)
            .iter()
            .map(|&s| Law::Ulaw.encode(s))
            .collect();
        let a: Vec<u8> = tone(1000.0, k * FRAME_SAMPLES, FRAME_SAMPLES)
            .iter()
            .map(|&s| Law::Alaw.encode(s))
            .collect();
        rec.tap().push_at(Leg::Caller, Law::Ulaw, &c, at);
        rec.tap().push_at(Leg::Other, Law::Alaw, &a, at);
    }
    let done = finish(rec);
    assert_eq!(done.path, path);
    assert!((990..=1010).contains(&done.length_ms), "{done:?}");
    assert_eq!(done.sha256, sha256_file(&path).expect("hash"));
    assert_eq!(done.bytes, std::fs::metadata(&path).expect("file").len());
    let (left, right) = read(&path);
    assert!(power(&left, 440.0) > 100.0 * power(&left, 1000.0));
    assert!(power(&right, 1000.0) > 100.0 * power(&right, 440.0));
    assert!(power(&left, 440.0) > 1e5, "{}", power(&left, 440.0));
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn a_quiet_leg_is_silence_and_gaps_keep_their_time() {
    let d = dir("gaps");
    let recorder = Recorder::start().expect("writer");
    let path = d.join("call.wav");
    let rec = recorder.open(path.clone());
    let t0 = Instant::now();
    let frame: Vec<u8> = tone(440.0, 0, FRAME_SAMPLES)
        .iter()
        .map(|&s| Law::Ulaw.encode(s))
        .collect();
    // 200 ms of the caller, 600 ms of nothing, 200 ms again: one second in the file.
    for k in (0..10).chain(40..50) {
        rec.tap().push_at(
            Leg::Caller,
            Law::Ulaw,
            &frame,
            t0 + Duration::from_millis(20 * k),
        );
    }
    let done = finish(rec);
    let (left, right) = read(&path);
    assert!(
        (7900..=8100).contains(&left.len()),
        "{} {done:?}",
        left.len()
    );
    assert!(right.iter().all(|&s| s == 0));
    assert!(
        left[2000..3200].iter().all(|&s| s == 0),
        "the gap is silence"
    );
    assert!(left[3300..].iter().any(|&s| s != 0));
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn the_header_follows_the_file_while_it_is_written() {
    let d = dir("fixup");
    let recorder = Recorder::start().expect("writer");
    let path = d.join("call.wav");
    let rec = recorder.open(path.clone());
    let frame = [0x55u8; FRAME_SAMPLES];
    let t0 = Instant::now();
    // Real time: 1.6 s of caller audio as it comes.
    for k in 0..80u32 {
        let due = t0 + Duration::from_millis(20 * u64::from(k));
        if let Some(w) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(w);
        }
        rec.tap().push(Leg::Caller, Law::Alaw, &frame);
    }
    std::thread::sleep(FIXUP_EVERY + FLUSH_EVERY);
    // Still open: what is on disk is a playable WAV whose header is at most a second behind.
    let len = std::fs::metadata(&path).expect("file").len();
    let bytes = std::fs::read(&path).expect("read");
    let declared = u64::from(u32::from_le_bytes([
        bytes[40], bytes[41], bytes[42], bytes[43],
    ]));
    assert!(declared > 0, "the header was fixed up while open");
    assert!(
        len - HEADER_LEN - declared <= BYTES_PER_SECOND,
        "{len} {declared}"
    );
    assert!(
        len - HEADER_LEN >= BYTES_PER_SECOND,
        "written as the call goes: {len}"
    );
    let (left, _) = read(&path);
    assert!(!left.is_empty());
    finish(rec);
    assert!(
        !repair_file(&path).expect("repair"),
        "a closed file needs no repair"
    );
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn a_file_left_open_is_repaired() {
    let d = dir("repair");
    let day = d.join("2026-12-06");
    std::fs::create_dir_all(&day).expect("dir");
    let path = day.join("crashed.wav");
    // A header that says 0 bytes, then 1.5 s of audio and half a sample frame.
    let mut bytes = wav_header(0).to_vec();
    bytes.extend(std::iter::repeat_n(7u8, 12_000 * 4 + 2));
    std::fs::write(&path, &bytes).expect("write");
    std::fs::write(day.join("notes.txt"), b"not a wav").expect("write");
    assert_eq!(repair_folder(&d), 1);
    let (left, right) = read(&path);
    assert_eq!((left.len(), right.len()), (12_000, 12_000));
    assert_eq!(repair_folder(&d), 0, "once is enough");
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn a_file_that_cannot_be_created_is_an_error_not_a_hang() {
    let d = dir("error");
    std::fs::create_dir_all(&d).expect("dir");
    std::fs::write(d.join("file"), b"x").expect("write");
    let recorder = Recorder::start().expect("writer");
    let rec = recorder.open(d.join("file/below/a/file.wav"));
    rec.tap().push(Leg::Caller, Law::Ulaw, &[0u8; 160]);
    let got = rec.finish().blocking_recv().expect("an answer");
    assert!(matches!(got, Err(RecordError::Io { .. })), "{got:?}");
    assert!(recorder.stats().errors.load(Ordering::Relaxed) >= 1);
    let _ = std::fs::remove_dir_all(d);
}
