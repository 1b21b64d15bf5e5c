//! Prompt audio: decoding every format at every rate, resampling without aliasing, G.711
//! against the reference values, the prompt store (bad files, reloads, built-in fragments),
//! shared playback, and the reference flows' prompts in both languages.
//!
//! Fixtures are made at test time: with hound, and with sox for MP3, OGG and FLAC (the tests
//! that need sox print a note and pass when it is missing; `scripts/test.sh` installs it).

use ivr_compiler::catalog::Catalogs;
use ivr_compiler::{CheckOptions, check};
use ivr_dsl::SourceMap;
use ivr_engine::say::{self, Language};
use ivr_engine::sim::PromptBook;
use ivr_media::audio::builtin::{self, BEEP_HZ};
use ivr_media::audio::decode::{DecodeError, decode_bytes, decode_file};
use ivr_media::audio::g711::{alaw_to_linear, linear_to_alaw, linear_to_ulaw, ulaw_to_linear};
use ivr_media::audio::render::{RenderError, SpokenError, render};
use ivr_media::audio::resample::resample;
use ivr_media::audio::{
    Audio, FRAME_SAMPLES, Law, Playback, ProblemKind, PromptSource, PromptStore, SAMPLE_RATE,
    file_to_audio,
};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

// ---------------------------------------------------------------------------------------------
// Helpers

/// A fresh scratch folder for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ivr-audio-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch folder");
    dir
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn have_sox() -> bool {
    Command::new("sox")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Runs sox; `false` (with a note) when sox or the output format is not available.
fn sox(args: &[&str]) -> bool {
    if !have_sox() {
        eprintln!(
            "note: sox is not installed; skipping this fixture (scripts/test.sh installs it)"
        );
        return false;
    }
    let out = Command::new("sox").args(args).output().expect("run sox");
    if !out.status.success() {
        eprintln!(
            "note: sox {args:?} failed ({}); skipping this fixture",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        return false;
    }
    true
}

/// Writes a 16-bit WAV with hound: `f(t)` per channel at `rate` for `seconds`.
fn write_tone_wav(
    path: &Path,
    rate: u32,
    channels: u16,
    samples: usize,
    f: impl Fn(u16, f64) -> f64,
) {
    let spec = hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).expect("create wav");
    for i in 0..samples {
        let t = i as f64 / f64::from(rate);
        for ch in 0..channels {
            w.write_sample((f(ch, t) * 32767.0).round() as i16)
                .expect("write sample");
        }
    }
    w.finalize().expect("finalize wav");
}

fn sine(freq: f64, amplitude: f64) -> impl Fn(f64) -> f64 {
    move |t| amplitude * (2.0 * std::f64::consts::PI * freq * t).sin()
}

/// The amplitude of the `freq` component of `x` (Goertzel), for a whole number of cycles.
fn goertzel(x: &[f32], rate: u32, freq: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * freq / f64::from(rate);
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &v in x {
        let s = f64::from(v) + coeff * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    2.0 * power.max(0.0).sqrt() / x.len() as f64
}

fn rms(x: &[f32]) -> f64 {
    (x.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>() / x.len() as f64).sqrt()
}

/// The middle `seconds` of 8 kHz audio as floats (away from the edges of the filter).
fn middle(pcm: &[i16], seconds: f64) -> Vec<f32> {
    let n = (seconds * f64::from(SAMPLE_RATE)) as usize;
    let start = (pcm.len() - n) / 2;
    pcm[start..start + n]
        .iter()
        .map(|&s| f32::from(s) / 32768.0)
        .collect()
}

/// What a caller hears from `audio` in μ-law, as floats.
fn heard(audio: &Audio) -> Vec<i16> {
    audio.decode(Law::Ulaw)
}

fn load_dir(dir: &Path) -> (Catalogs, PromptStore, ivr_media::audio::LoadReport) {
    let mut sources = SourceMap::new();
    let (catalogs, diags) = Catalogs::load(dir, &mut sources);
    assert!(diags.is_empty(), "{diags:?}");
    let (store, report) = PromptStore::load(&catalogs);
    (catalogs, store, report)
}

// ---------------------------------------------------------------------------------------------
// G.711

#[test]
fn g711_reference_values() {
    // μ-law (ITU-T G.711 / G.191): zero is 0xFF, -1 the negative zero 0x7F, full scale 0x80 /
    // 0x00.
    assert_eq!(linear_to_ulaw(0), 0xFF);
    assert_eq!(linear_to_ulaw(-1), 0x7F);
    assert_eq!(linear_to_ulaw(32767), 0x80);
    assert_eq!(linear_to_ulaw(-32768), 0x00);
    assert_eq!(linear_to_ulaw(1000), 0xCE);
    assert_eq!(linear_to_ulaw(-1000), 0x4E);
    // The decoding table of G.711 μ-law (the classic Sun/CCITT values).
    let ulaw_rows: [(u8, [i16; 4]); 5] = [
        (0x00, [-32124, -31100, -30076, -29052]),
        (0x0C, [-19836, -18812, -17788, -16764]),
        (0x10, [-15996, -15484, -14972, -14460]),
        (0x7C, [-24, -16, -8, 0]),
        (0x80, [32124, 31100, 30076, 29052]),
    ];
    for (first, values) in ulaw_rows {
        for (k, v) in values.iter().enumerate() {
            assert_eq!(
                ulaw_to_linear(first + k as u8),
                *v,
                "μ-law {:#04x}",
                first + k as u8
            );
        }
    }
    assert_eq!(ulaw_to_linear(0xFF), 0);

    // A-law: zero is 0xD5, -1 is 0x55, full scale 0xAA / 0x2A (even bits inverted).
    assert_eq!(linear_to_alaw(0), 0xD5);
    assert_eq!(linear_to_alaw(-1), 0x55);
    assert_eq!(linear_to_alaw(32767), 0xAA);
    assert_eq!(linear_to_alaw(-32768), 0x2A);
    assert_eq!(linear_to_alaw(1000), 0xFA);
    assert_eq!(linear_to_alaw(-1000), 0x7A);
    let alaw_values: [(u8, i16); 8] = [
        (0x00, -5504),
        (0x01, -5248),
        (0x2A, -32256),
        (0x55, -8),
        (0xD5, 8),
        (0xAA, 32256),
        (0x80, 5504),
        (0xD4, 24),
    ];
    for (code, v) in alaw_values {
        assert_eq!(alaw_to_linear(code), v, "A-law {code:#04x}");
    }
}

#[test]
fn g711_round_trips_within_the_quantisation_step() {
    // Every code decodes to a value that encodes back to it (μ-law's negative zero 0x7F
    // decodes to 0, which is 0xFF).
    for c in 0..=255u8 {
        let back = linear_to_ulaw(ulaw_to_linear(c));
        assert!(
            back == c || (c == 0x7F && back == 0xFF),
            "μ-law {c:#04x} -> {back:#04x}"
        );
        assert_eq!(linear_to_alaw(alaw_to_linear(c)), c, "A-law {c:#04x}");
    }
    // Every sample comes back within half a quantisation step of the code it was given
    // (plus the clipping above the largest code).
    for x in i16::MIN..=i16::MAX {
        let xi = i32::from(x);
        let code = linear_to_ulaw(x);
        let u = i32::from(ulaw_to_linear(code));
        let ustep = 8 << ((!code >> 4) & 7);
        let clip = (xi.abs() - 32124).max(0);
        assert!(
            (u - xi).abs() <= ustep / 2 + clip + 4,
            "μ-law {x} -> {code:#04x} -> {u} (step {ustep})"
        );
        let code = linear_to_alaw(x);
        let a = i32::from(alaw_to_linear(code));
        let seg = ((code ^ 0x55) & 0x7F) >> 4;
        let astep = if seg <= 1 { 16 } else { 16 << (seg - 1) };
        let aclip = (xi.abs() - 32256).max(0);
        assert!(
            (a - xi).abs() <= astep / 2 + aclip + 16,
            "A-law {x} -> {code:#04x} -> {a} (step {astep})"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Resampling

#[test]
fn resampling_44k1_to_8k_keeps_1khz_and_removes_5khz() {
    let rate = 44_100;
    let n = rate as usize * 2;
    let tone = |f: f64| -> Vec<f32> {
        (0..n)
            .map(|i| {
                (0.5 * (2.0 * std::f64::consts::PI * f * i as f64 / f64::from(rate)).sin()) as f32
            })
            .collect()
    };
    // 1 kHz is still 1 kHz, at the same level.
    let out = resample(&tone(1000.0), rate, SAMPLE_RATE).expect("resample");
    assert_eq!(out.len(), 16_000, "2 s at 8 kHz");
    let mid: Vec<f32> = out[4000..12_000].to_vec();
    let at_1k = goertzel(&mid, SAMPLE_RATE, 1000.0);
    assert!((at_1k - 0.5).abs() < 0.01, "1 kHz amplitude {at_1k}");
    for f in [500.0, 1500.0, 2000.0, 3000.0] {
        assert!(goertzel(&mid, SAMPLE_RATE, f) < 0.005, "leak at {f} Hz");
    }
    // 5 kHz is above the 4 kHz Nyquist frequency: filtered out, not folded to 3 kHz.
    let out = resample(&tone(5000.0), rate, SAMPLE_RATE).expect("resample");
    let mid: Vec<f32> = out[4000..12_000].to_vec();
    let alias = goertzel(&mid, SAMPLE_RATE, 3000.0);
    assert!(
        alias < 0.005,
        "5 kHz folded to 3 kHz with amplitude {alias}"
    );
    assert!(rms(&mid) < 0.005, "5 kHz left rms {}", rms(&mid));
    // Plain decimation would have folded it: check that the test can see aliasing at all.
    let step = 44_100.0 / 8000.0;
    let high = tone(5000.0);
    let naive: Vec<f32> = (0..8000)
        .map(|i| high[(f64::from(i) * step) as usize])
        .collect();
    assert!(goertzel(&naive, SAMPLE_RATE, 3000.0) > 0.2);
}

#[test]
fn resampling_keeps_lengths_exact() {
    for (rate, len, want) in [
        (44_100, 66_150, 12_000),
        (48_000, 96_000, 16_000),
        (16_000, 20_000, 10_000),
        (11_025, 11_025, 8000),
        (22_050, 100, 36),
        (8000, 1234, 1234),
    ] {
        let x = vec![0.0f32; len];
        assert_eq!(
            resample(&x, rate, SAMPLE_RATE).expect("resample").len(),
            want,
            "{rate}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Decoding every format

/// Checks that `path` decodes to exactly `samples_8k` samples at 8 kHz and sounds like a clean
/// 1 kHz tone: the 5 kHz tone mixed into the fixture is gone and has not folded to 3 kHz.
fn assert_clean_tone(path: &Path, samples_8k: usize, rate: u32, channels: usize) {
    let decoded = decode_file(path).expect("decode");
    assert_eq!(decoded.sample_rate, rate, "{}", path.display());
    assert_eq!(decoded.channels, channels, "{}", path.display());
    let audio = file_to_audio(path).expect("to 8 kHz");
    assert_eq!(
        audio.samples(),
        samples_8k,
        "{}: samples at 8 kHz",
        path.display()
    );
    assert_eq!(
        audio.duration_ms(),
        samples_8k as u64 / 8,
        "{}: duration",
        path.display()
    );
    assert_eq!(
        audio.frames(Law::Ulaw).len(),
        samples_8k.div_ceil(FRAME_SAMPLES)
    );
    assert_eq!(
        audio.frames(Law::Alaw).len(),
        samples_8k.div_ceil(FRAME_SAMPLES)
    );
    // Before G.711: the 1 kHz tone and nothing else (a 5 kHz tone folded by decimation
    // would show at 3 kHz).
    let resampled = resample(&decoded.samples, rate, SAMPLE_RATE).expect("resample");
    let n = resampled.len();
    let mid = &resampled[n / 2 - 2000..n / 2 + 2000];
    let at_1k = goertzel(mid, SAMPLE_RATE, 1000.0);
    let at_3k = goertzel(mid, SAMPLE_RATE, 3000.0);
    assert!(at_1k > 0.1, "{}: 1 kHz amplitude {at_1k}", path.display());
    assert!(
        at_3k < at_1k / 300.0,
        "{}: aliasing at 3 kHz {at_3k}",
        path.display()
    );
    // After G.711: still the tone, with only the quantisation noise of the law (about 35 dB
    // down for a full-scale tone).
    for law in [Law::Ulaw, Law::Alaw] {
        let mid = middle(&audio.decode(law), 0.5);
        let heard_1k = goertzel(&mid, SAMPLE_RATE, 1000.0);
        assert!(
            (heard_1k - at_1k).abs() < at_1k / 20.0,
            "{}: {law:?}",
            path.display()
        );
        let rest = (rms(&mid).powi(2) - (heard_1k * heard_1k) / 2.0)
            .max(0.0)
            .sqrt();
        assert!(
            rest < heard_1k / 20.0,
            "{}: {law:?} noise {rest}",
            path.display()
        );
    }
}

#[test]
fn wav_8k_mono_decodes_exactly() {
    let dir = scratch("wav8k");
    let path = dir.join("tone.wav");
    write_tone_wav(&path, 8000, 1, 8000, |_, t| sine(1000.0, 0.5)(t));
    assert_clean_tone(&path, 8000, 8000, 1);
    // At 8 kHz nothing is resampled: the samples are the file's, G.711-quantised.
    let audio = file_to_audio(&path).expect("decode");
    let reader = hound::WavReader::open(&path).expect("open");
    let original: Vec<i16> = reader
        .into_samples::<i16>()
        .map(|s| s.expect("sample"))
        .collect();
    for (a, b) in heard(&audio).iter().zip(&original) {
        assert!((i32::from(*a) - i32::from(*b)).abs() <= 512);
    }
}

#[test]
fn wav_44k1_stereo_decodes_and_mixes() {
    let dir = scratch("wav44");
    let path = dir.join("tone.wav");
    // Left 1 kHz, right 5 kHz: mixed to mono, then the 5 kHz half is filtered out.
    write_tone_wav(&path, 44_100, 2, 44_100, |ch, t| {
        if ch == 0 {
            sine(1000.0, 0.5)(t)
        } else {
            sine(5000.0, 0.5)(t)
        }
    });
    assert_clean_tone(&path, 8000, 44_100, 2);
}

#[test]
fn mp3_44k1_stereo_decodes() {
    let dir = scratch("mp3");
    let wav = dir.join("tone.wav");
    let path = dir.join("tone.mp3");
    // Left 1 kHz, right 5 kHz, 1.5 s, encoded by LAME (whose header states the encoder delay
    // and padding, which the decoder trims).
    write_tone_wav(&wav, 44_100, 2, 66_150, |ch, t| {
        if ch == 0 {
            sine(1000.0, 0.5)(t)
        } else {
            sine(5000.0, 0.5)(t)
        }
    });
    let lame = Command::new("lame")
        .args(["--quiet", "-b", "128"])
        .arg(&wav)
        .arg(&path)
        .output();
    if !lame.is_ok_and(|o| o.status.success()) {
        eprintln!(
            "note: lame is not installed; skipping the MP3 fixture (scripts/test.sh installs it)"
        );
        return;
    }
    // Exactly 1.5 s: 12000 samples at 8 kHz.
    assert_clean_tone(&path, 12_000, 44_100, 2);
}

#[test]
fn ogg_vorbis_16k_decodes() {
    let dir = scratch("ogg");
    let path = dir.join("tone.ogg");
    if !sox(&[
        "-n",
        "-r",
        "16000",
        "-c",
        "1",
        path.to_str().unwrap(),
        "synth",
        "1.25",
        "sine",
        "1000",
        "gain",
        "-6",
    ]) {
        return;
    }
    assert_clean_tone(&path, 10_000, 16_000, 1);
}

#[test]
fn flac_48k_decodes() {
    let dir = scratch("flac");
    let path = dir.join("tone.flac");
    if !sox(&[
        "-n",
        "-r",
        "48000",
        "-c",
        "2",
        "-b",
        "16",
        path.to_str().unwrap(),
        "synth",
        "2.0",
        "sine",
        "1000",
        "sine",
        "5000",
        "gain",
        "-6",
    ]) {
        return;
    }
    assert_clean_tone(&path, 16_000, 48_000, 2);
}

#[test]
fn garbage_and_empty_input_are_errors_not_panics() {
    assert!(matches!(
        decode_bytes(Vec::new(), Some("wav")),
        Err(DecodeError::Empty)
    ));
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    for ext in ["wav", "mp3", "ogg", "flac", "bin"] {
        assert!(decode_bytes(garbage.clone(), Some(ext)).is_err(), "{ext}");
    }
    // A WAV cut inside its header.
    let dir = scratch("cut");
    let path = dir.join("tone.wav");
    write_tone_wav(&path, 8000, 1, 800, |_, t| sine(1000.0, 0.5)(t));
    let bytes = std::fs::read(&path).expect("read");
    for cut in [4, 12, 30, 40] {
        assert!(
            decode_bytes(bytes[..cut].to_vec(), Some("wav")).is_err(),
            "cut at {cut}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The prompt store

/// A prompts folder with one language: good files in two formats, and bad ones.
fn bad_files_catalog(dir: &Path) {
    let lang = dir.join("en-US");
    std::fs::create_dir_all(&lang).expect("folder");
    write_tone_wav(&lang.join("good.wav"), 8000, 1, 4000, |_, t| {
        sine(1000.0, 0.5)(t)
    });
    write_tone_wav(&lang.join("also_good.wav"), 22_050, 1, 22_050, |_, t| {
        sine(1000.0, 0.5)(t)
    });
    std::fs::write(
        lang.join("garbage.wav"),
        b"this is not audio at all, just text".repeat(40),
    )
    .expect("write");
    std::fs::write(lang.join("empty.wav"), b"").expect("write");
    let good = std::fs::read(lang.join("good.wav")).expect("read");
    std::fs::write(lang.join("truncated.wav"), &good[..30]).expect("write");
    std::fs::write(
        lang.join("prompts.toml"),
        r#"
good      = { text = "good" }
also_good = { text = "also good" }
garbage   = { text = "garbage" }
empty     = { text = "empty" }
truncated = { text = "truncated" }
missing   = { text = "missing" }
_yuan     = { text = "yuan", file = "garbage.wav" }
"#,
    )
    .expect("write catalog");
}

#[test]
fn bad_files_are_reported_by_name_and_the_others_load() {
    let dir = scratch("bad");
    bad_files_catalog(&dir);
    let (_, store, report) = load_dir(&dir);
    let mut problems: Vec<(String, bool)> = report
        .problems
        .iter()
        .map(|p| (p.id.clone(), p.kind == ProblemKind::Missing))
        .collect();
    problems.sort();
    assert_eq!(
        problems,
        vec![
            ("_yuan".to_string(), false),
            ("empty".to_string(), false),
            ("garbage".to_string(), false),
            ("missing".to_string(), true),
            ("truncated".to_string(), false),
        ],
        "{:#?}",
        report.problems
    );
    for p in &report.problems {
        let line = p.to_string();
        assert!(
            line.contains(p.path.file_name().unwrap().to_str().unwrap()),
            "{line}"
        );
        assert!(line.contains(&format!("`{}`", p.id)), "{line}");
    }
    let empty = report.problems.iter().find(|p| p.id == "empty").unwrap();
    assert!(empty.to_string().contains("empty"), "{empty}");
    assert_eq!(report.decoded, 2, "two good files");
    assert_eq!(store.get("en-US", "good").unwrap().duration_ms(), 500);
    assert_eq!(store.get("en-US", "also_good").unwrap().duration_ms(), 1000);
    assert!(store.get("en-US", "garbage").is_none());
    // The reserved id whose file is bad keeps the built-in fragment.
    assert_eq!(
        store.get("en-US", "_yuan").unwrap().source,
        PromptSource::Builtin
    );
}

#[test]
fn catalog_entries_with_reserved_ids_replace_built_in_fragments() {
    let dir = scratch("override");
    let lang = dir.join("zh-CN");
    std::fs::create_dir_all(&lang).expect("folder");
    write_tone_wav(&lang.join("yuan.wav"), 16_000, 1, 12_000, |_, t| {
        sine(440.0, 0.3)(t)
    });
    std::fs::write(
        lang.join("prompts.toml"),
        "_yuan = { text = \"元\", file = \"yuan.wav\" }\n",
    )
    .expect("write");
    let (_, store, report) = load_dir(&dir);
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let yuan = store.get("zh-CN", "_yuan").unwrap();
    assert_eq!(yuan.source, PromptSource::File(lang.join("yuan.wav")));
    assert_eq!(yuan.duration_ms(), 750);
    // The other fragments stay built in.
    let five = store.get("zh-CN", "_5").unwrap();
    assert_eq!(five.source, PromptSource::Builtin);
    assert!(Arc::ptr_eq(
        five,
        builtin::builtin_prompt(Language::ZhCn, "_5").unwrap()
    ));
    // A language without a catalog still has the built-in fragments of its rules.
    assert!(store.get("fr-FR", "_jan").is_some());
}

#[test]
fn reloading_decodes_only_changed_files() {
    let dir = scratch("reload");
    let lang = dir.join("en-US");
    std::fs::create_dir_all(&lang).expect("folder");
    for (name, f) in [("a", 500.0), ("b", 700.0), ("c", 900.0)] {
        write_tone_wav(
            &lang.join(format!("{name}.wav")),
            16_000,
            1,
            16_000,
            |_, t| sine(f, 0.5)(t),
        );
    }
    let catalog = "a = { text = \"A\" }\nb = { text = \"B\" }\nc = { text = \"C\" }\n";
    std::fs::write(lang.join("prompts.toml"), catalog).expect("write");
    let (catalogs, first, report) = load_dir(&dir);
    assert_eq!((report.decoded, report.reused), (3, 0));

    // Nothing changed: nothing decoded, the very same audio and prompts.
    let (second, report) = first.reload(&catalogs);
    assert_eq!((report.decoded, report.reused), (0, 3));
    for id in ["a", "b", "c"] {
        assert!(Arc::ptr_eq(
            first.get("en-US", id).unwrap(),
            second.get("en-US", id).unwrap()
        ));
    }

    // `b` rewritten with new audio, `c` touched with the same content.
    write_tone_wav(&lang.join("b.wav"), 16_000, 1, 8000, |_, t| {
        sine(700.0, 0.5)(t)
    });
    let c = std::fs::File::options()
        .write(true)
        .open(lang.join("c.wav"))
        .expect("open");
    c.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(5))
        .expect("touch");
    drop(c);
    let mut sources = SourceMap::new();
    let (catalogs, _) = Catalogs::load(&dir, &mut sources);
    let (third, report) = second.reload(&catalogs);
    assert_eq!(
        (report.decoded, report.reused),
        (1, 2),
        "only b is decoded again"
    );
    assert_eq!(third.get("en-US", "b").unwrap().duration_ms(), 500);
    assert!(Arc::ptr_eq(
        &second.get("en-US", "a").unwrap().audio,
        &third.get("en-US", "a").unwrap().audio
    ));
    assert!(Arc::ptr_eq(
        &second.get("en-US", "c").unwrap().audio,
        &third.get("en-US", "c").unwrap().audio
    ));

    // A changed text with the same audio: a new prompt over the same frames.
    std::fs::write(
        lang.join("prompts.toml"),
        catalog.replace("\"A\"", "\"A2\""),
    )
    .expect("write");
    let (catalogs, _) = Catalogs::load(&dir, &mut sources);
    let (fourth, report) = third.reload(&catalogs);
    assert_eq!(report.decoded, 0);
    let (old, new) = (
        third.get("en-US", "a").unwrap(),
        fourth.get("en-US", "a").unwrap(),
    );
    assert_eq!(new.text, "A2");
    assert!(Arc::ptr_eq(&old.audio, &new.audio));
}

#[test]
fn playback_shares_the_stores_frames() {
    let dir = scratch("share");
    bad_files_catalog(&dir);
    let (_, store, _) = load_dir(&dir);
    let prompt = store.get("en-US", "good").unwrap().clone();
    let audio_refs = Arc::strong_count(&prompt.audio);
    let frames = prompt.frames(Law::Alaw);
    assert_eq!(frames.len(), 25);
    let mut calls: Vec<Playback> = (0..3).map(|_| Playback::new(Law::Alaw)).collect();
    for call in &mut calls {
        call.push(prompt.clone());
    }
    // The calls hold references to the one prompt, not audio of their own.
    assert_eq!(Arc::strong_count(&prompt), 5);
    assert_eq!(Arc::strong_count(&prompt.audio), audio_refs);
    for call in &mut calls {
        let mut n = 0;
        while let Some(frame) = call.next_frame() {
            // The very bytes of the store, not a copy.
            assert!(std::ptr::eq(frame, &frames[n]));
            n += 1;
        }
        assert_eq!(n, 25);
        assert!(call.is_idle());
    }
    assert_eq!(Arc::strong_count(&prompt), 2, "finished playbacks let go");
}

// ---------------------------------------------------------------------------------------------
// Built-in fragments

#[test]
fn every_built_in_fragment_has_audio_in_both_languages() {
    for lang in [Language::ZhCn, Language::EnUs] {
        let ids: Vec<&str> = say::builtin_fragments(lang)
            .iter()
            .map(|(id, _)| *id)
            .filter(|id| *id != "_beep")
            .collect();
        let embedded: Vec<&str> = builtin::embedded_ids(lang).collect();
        assert_eq!(
            embedded,
            ids,
            "{}: embedded files and say's fragments",
            lang.tag()
        );
        let prompts = builtin::builtin_prompts(lang);
        for (id, text) in say::builtin_fragments(lang) {
            let p = prompts
                .get(id)
                .unwrap_or_else(|| panic!("{}: {id}", lang.tag()));
            assert_eq!(p.text, *text);
            let ms = p.duration_ms();
            assert!(
                (100..3000).contains(&ms),
                "{}: {id} lasts {ms} ms",
                lang.tag()
            );
        }
    }
}

#[test]
fn built_in_catalogs_match_the_say_module() {
    // prompts/_builtin/<lang>/prompts.toml is what `ivr prompts generate` renders; it must list exactly
    // say's texts. `IVR_BLESS=1` rewrites it.
    for lang in [Language::ZhCn, Language::EnUs] {
        let path = repo().join(format!("prompts/_builtin/{}/prompts.toml", lang.tag()));
        let want = builtin::builtin_catalog_toml(lang);
        if std::env::var_os("IVR_BLESS").is_some() {
            std::fs::write(&path, &want).expect("bless");
        }
        let have = std::fs::read_to_string(&path).expect("read built-in catalog");
        assert_eq!(
            have,
            want,
            "{} is stale: run `IVR_BLESS=1 cargo test -p ivr-media --test audio built_in` then `ivr prompts generate --force`",
            path.display()
        );
    }
}

#[test]
fn the_beep_is_a_1khz_tone() {
    let beep = builtin::builtin_prompt(Language::ZhCn, "_beep").unwrap();
    assert_eq!(beep.duration_ms(), 400);
    let mid = middle(&beep.audio.decode(Law::Alaw), 0.25);
    assert!(goertzel(&mid, SAMPLE_RATE, f64::from(BEEP_HZ)) > 0.45);
    assert!(goertzel(&mid, SAMPLE_RATE, 2000.0) < 0.01);
}

// ---------------------------------------------------------------------------------------------
// The reference flows

#[test]
fn every_prompt_of_the_reference_flows_exists_in_both_languages_and_renders() {
    for config in ["ivr.toml", "examples/ivr.toml"] {
        let checked = check(&CheckOptions {
            config: Some(repo().join(config)),
            paths: Vec::new(),
        })
        .expect("check");
        let (store, report) = PromptStore::load(&checked.catalogs);
        assert!(
            report.problems.is_empty(),
            "{config}: {:#?}",
            report.problems
        );
        assert!(!checked.programs.is_empty());
        for (name, program) in &checked.programs {
            for tag in ["zh-CN", "en-US"] {
                for id in &program.prompts {
                    let p = store.get(tag, id).unwrap_or_else(|| {
                        panic!("{config}: {name}: `{id}` has no audio in {tag}")
                    });
                    assert!(matches!(p.source, PromptSource::File(_)), "{tag} {id}");
                    let r = render(&store, tag, id, Law::Ulaw).expect("render");
                    assert!(r.duration_ms() >= p.duration_ms());
                    assert!(
                        r.pcm.iter().any(|&s| s.abs() > 1000),
                        "{tag} {id} is silent"
                    );
                }
                for value in [
                    "money 58.30",
                    "number 105",
                    "digits 13800000001",
                    "date 2026-11-23",
                    "time 10:30",
                ] {
                    let r = render(&store, tag, value, Law::Alaw).expect("render value");
                    assert!(r.duration_ms() > 500, "{tag} {value}");
                }
            }
            // The simulator's clock uses the decoded durations.
            let book = PromptBook::with_store(program, &checked.catalogs, &store);
            for (lang, tag) in program.languages.iter().enumerate() {
                for (i, id) in program.prompts.iter().enumerate() {
                    let ms = store.get(tag, id).unwrap().duration_ms();
                    assert_eq!(book.prompt(lang as u8, i as u32).1, ms, "{tag} {id}");
                }
                let ids = say::money(Language::from_tag(tag), "58.30".parse().unwrap());
                let sum: u64 = ids
                    .iter()
                    .map(|id| store.get(tag, id).unwrap().duration_ms())
                    .sum();
                assert_eq!(book.say_ms(lang as u8, &ids), sum.max(300));
            }
        }
    }
}

#[test]
fn rendering_a_spoken_value_plays_its_fragments() {
    let store = PromptStore::default();
    let r = render(&store, "zh-CN", "money 58.30", Law::Ulaw).expect("render");
    let ids: Vec<&str> = r.parts.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, ["_5", "_10", "_8", "_yuan", "_3", "_jiao"]);
    let frames: usize = ids
        .iter()
        .map(|id| store.get("zh-CN", id).unwrap().frames(Law::Ulaw).len())
        .sum();
    assert_eq!(r.pcm.len(), frames * FRAME_SAMPLES);
    assert_eq!(
        render(&store, "zh-CN", "money lots", Law::Ulaw).unwrap_err(),
        RenderError::Spoken(SpokenError::Money("lots".into()))
    );
    let missing = render(&store, "zh-CN", "no_such_prompt", Law::Ulaw).unwrap_err();
    assert_eq!(
        missing.to_string(),
        "prompt `no_such_prompt` has no audio in zh-CN"
    );
    let r = render(&store, "en-US", "time 14:05", Law::Ulaw).expect("render");
    assert_eq!(
        r.parts.iter().map(|p| p.text.as_str()).collect::<Vec<_>>(),
        ["two", "oh", "five", "p.m."]
    );
}
