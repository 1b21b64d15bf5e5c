//! `ivr prompts` and `ivr prompts render` as users run them, on the repository's prompts.

use ivr_media::audio::decode::decode_file;
use std::path::PathBuf;
use std::process::{Command, Output};

fn ivr(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ivr"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("run ivr")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn out_file(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ivr-prompts-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir.join(name)
}

/// Checks that `path` is an 8 kHz mono 16-bit WAV and returns its length in ms.
fn wav_ms(path: &PathBuf) -> u64 {
    let bytes = std::fs::read(path).expect("read wav");
    assert_eq!(&bytes[0..4], b"RIFF");
    assert_eq!(&bytes[8..12], b"WAVE");
    assert_eq!(u16::from_le_bytes([bytes[34], bytes[35]]), 16, "16-bit");
    let decoded = decode_file(path).expect("decode wav");
    assert_eq!(decoded.sample_rate, 8000);
    assert_eq!(decoded.channels, 1);
    decoded.duration_ms()
}

#[test]
fn lists_every_prompt_with_its_duration() {
    let o = ivr(&["prompts"]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let text = stdout(&o);
    for want in [
        "zh-CN (",
        "en-US (",
        "welcome",
        "missing: none",
        "unused: none",
        "built-in fragments (zh-CN rules)",
    ] {
        assert!(text.contains(want), "no `{want}` in\n{text}");
    }
    // Durations in seconds.
    let welcome = text
        .lines()
        .find(|l| l.trim_start().starts_with("welcome "))
        .expect("welcome line");
    assert!(welcome.contains('s'), "{welcome}");

    let o = ivr(&["prompts", "--language", "en-US"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("en-US ("));
    assert!(!stdout(&o).contains("zh-CN ("));

    let o = ivr(&["prompts", "--language", "xx-XX"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("xx-XX"), "{}", stderr(&o));
}

#[test]
fn renders_a_spoken_value() {
    let path = out_file("money.wav");
    let o = ivr(&[
        "prompts",
        "render",
        "--language",
        "zh-CN",
        "money 58.30",
        "-o",
        path.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("五十八元三角"), "{}", stdout(&o));
    let ms = wav_ms(&path);
    assert!((1000..6000).contains(&ms), "{ms} ms");

    let path = out_file("date.wav");
    let o = ivr(&[
        "prompts",
        "--language",
        "en-US",
        "render",
        "date 2026-11-23",
        "-o",
        path.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("November twenty third twenty twenty six"),
        "{}",
        stdout(&o)
    );
    assert!(wav_ms(&path) > 1000);
}

#[test]
fn renders_a_prompt_by_id() {
    for lang in ["zh-CN", "en-US"] {
        let path = out_file(&format!("welcome-{lang}.wav"));
        let o = ivr(&[
            "prompts",
            "render",
            "--language",
            lang,
            "welcome",
            "-o",
            path.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(wav_ms(&path) > 1000);
    }
    // Without --language: the flows' language (zh-CN for the hotline).
    let path = out_file("goodbye.wav");
    let o = ivr(&["prompts", "render", "goodbye", "-o", path.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("zh-CN"), "{}", stdout(&o));
}

#[test]
fn render_errors_are_clear() {
    let path = out_file("none.wav");
    let o = ivr(&[
        "prompts",
        "render",
        "no_such_prompt",
        "-o",
        path.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("there is no prompt `no_such_prompt` in the zh-CN catalog"),
        "{}",
        stderr(&o)
    );
    let o = ivr(&["prompts", "render", "welcom", "-o", path.to_str().unwrap()]);
    assert!(
        stderr(&o).contains("did you mean `welcome`?"),
        "{}",
        stderr(&o)
    );
    let o = ivr(&[
        "prompts",
        "render",
        "money lots",
        "-o",
        path.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("lots"), "{}", stderr(&o));
    let o = ivr(&["prompts", "render", "welcome"]);
    assert!(!o.status.success(), "-o is required");
}
