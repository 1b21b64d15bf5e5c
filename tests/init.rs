//! `ivr prompts generate`, `ivr prompts stamp`, the stale-audio warning of `ivr check`, and
//! `ivr init`: run through the real binary, with the real espeak-ng (skipped, saying so, when
//! it is not installed; under CI that fails).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;

use common::*;

fn ivr(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ivr"))
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run ivr")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn have_espeak() -> bool {
    Command::new("espeak-ng")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

macro_rules! need_espeak {
    () => {
        if !have_espeak() {
            skip("espeak-ng (Debian package espeak-ng) is not installed: test skipped");
            return;
        }
    };
}

const FLOW: &str = r#"
flow p {
    title    "prompts"
    language en-US
    entry    hi
}

step hi {
    play hello
    served "greeting"
    play bye
    hangup
}
"#;

/// A project with one flow and two en-US prompts without audio.
fn project(name: &str) -> PathBuf {
    let dir = temp_dir(name);
    fs::create_dir_all(dir.join("flows")).expect("flows");
    fs::create_dir_all(dir.join("prompts/en-US")).expect("prompts");
    fs::write(dir.join("flows/p.flow"), FLOW).expect("flow");
    fs::write(
        dir.join("prompts/en-US/prompts.toml"),
        "hello = { text = \"Hello and welcome.\" }\nbye = { text = \"Goodbye.\" }\n",
    )
    .expect("catalog");
    fs::write(dir.join("ivr.toml"), "[paths]\nflows = \"flows\"\n").expect("config");
    dir
}

/// A WAV file's rate, channels, bits and samples.
fn wav(path: &Path) -> (hound::WavSpec, Vec<i16>) {
    let mut r = hound::WavReader::open(path).expect("a valid WAV file");
    let spec = r.spec();
    let samples = r.samples::<i16>().map(|s| s.expect("sample")).collect();
    (spec, samples)
}

fn rms(s: &[i16]) -> f64 {
    (s.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / s.len().max(1) as f64).sqrt()
}

#[test]
fn generated_audio_is_checked_against_its_text() {
    need_espeak!();
    let dir = project("generate");
    let check = ivr(&dir, &["check"]);
    assert!(
        text(&check).contains("has no audio file"),
        "{}",
        text(&check)
    );

    let out = ivr(&dir, &["prompts", "generate"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("generated 2, kept 0"), "{}", text(&out));
    let (spec, samples) = wav(&dir.join("prompts/en-US/hello.wav"));
    assert_eq!(
        (spec.sample_rate, spec.channels, spec.bits_per_sample),
        (8000, 1, 16)
    );
    assert!(
        samples.len() > 8000 / 2,
        "{} samples: under half a second",
        samples.len()
    );
    assert!(rms(&samples) > 1000.0, "silent: rms {}", rms(&samples));
    let record = fs::read_to_string(dir.join("prompts/en-US/audio.toml")).expect("audio.toml");
    assert!(
        record.contains("[hello]") && record.contains("made_by = \"espeak-ng en-us\""),
        "{record}"
    );

    // Current audio: no warning at all.
    let check = ivr(&dir, &["check"]);
    assert!(check.status.success(), "{}", text(&check));
    assert!(
        text(&check).contains("0 errors, 0 warnings"),
        "{}",
        text(&check)
    );

    // The text changes: callers would hear the old words.
    fs::write(
        dir.join("prompts/en-US/prompts.toml"),
        "hello = { text = \"Hello, and welcome to the new service.\" }\nbye = { text = \"Goodbye.\" }\n",
    )
    .expect("catalog");
    let check = ivr(&dir, &["check"]);
    let said = text(&check);
    assert!(check.status.success(), "a warning only: {said}");
    assert!(
        said.contains("prompt `hello` (en-US) text changed after its audio"),
        "{said}"
    );
    assert!(said.contains("prompts.toml:1"), "the catalog line: {said}");
    assert!(said.contains("ivr prompts generate"), "the fix: {said}");
    assert!(!said.contains("`bye`"), "bye is current: {said}");

    // Generated again: only the stale one, and the warning is gone.
    let before = fs::read(dir.join("prompts/en-US/bye.wav")).expect("bye");
    let out = ivr(&dir, &["prompts", "generate"]);
    assert!(
        text(&out).contains("hello.wav (its text changed)"),
        "{}",
        text(&out)
    );
    assert!(text(&out).contains("generated 1, kept 1"), "{}", text(&out));
    assert_eq!(
        fs::read(dir.join("prompts/en-US/bye.wav")).expect("bye"),
        before
    );
    let check = ivr(&dir, &["check"]);
    assert!(
        text(&check).contains("0 errors, 0 warnings"),
        "{}",
        text(&check)
    );

    // A studio recording over the generated file: its record no longer speaks for it, so a
    // text change is not warned about, and `generate` keeps it.
    ivr_media::audio::write_wav(&dir.join("prompts/en-US/bye.wav"), &tone(440.0, 500))
        .expect("studio");
    fs::write(
        dir.join("prompts/en-US/prompts.toml"),
        "hello = { text = \"Hello, and welcome to the new service.\" }\nbye = { text = \"Goodbye, and thanks.\" }\n",
    )
    .expect("catalog");
    let check = ivr(&dir, &["check"]);
    assert!(text(&check).contains("0 warnings"), "{}", text(&check));
    let studio = fs::read(dir.join("prompts/en-US/bye.wav")).expect("bye");
    let out = ivr(&dir, &["prompts", "generate"]);
    assert!(text(&out).contains("generated 0, kept 2"), "{}", text(&out));
    assert_eq!(
        fs::read(dir.join("prompts/en-US/bye.wav")).expect("bye"),
        studio
    );

    // Stamped, the recording is checked too; the hint says to record it again.
    let out = ivr(&dir, &["prompts", "stamp", "bye"]);
    assert!(out.status.success(), "{}", text(&out));
    fs::write(
        dir.join("prompts/en-US/prompts.toml"),
        "hello = { text = \"Hello, and welcome to the new service.\" }\nbye = { text = \"Bye.\" }\n",
    )
    .expect("catalog");
    let said = text(&ivr(&dir, &["check"]));
    assert!(said.contains("prompt `bye` (en-US) text changed"), "{said}");
    assert!(said.contains("(recorded)"), "{said}");
    assert!(said.contains("ivr prompts stamp bye"), "{said}");

    // --force makes every file again, the studio one included.
    let out = ivr(
        &dir,
        &["prompts", "generate", "--force", "--language", "en-US"],
    );
    assert!(text(&out).contains("generated 2, kept 0"), "{}", text(&out));
    assert!(text(&ivr(&dir, &["check"])).contains("0 warnings"));
}

#[test]
fn generate_without_espeak_names_the_package() {
    let dir = project("no-espeak");
    let empty = dir.join("empty-path");
    fs::create_dir_all(&empty).expect("dir");
    let out = Command::new(env!("CARGO_BIN_EXE_ivr"))
        .current_dir(&dir)
        .env("PATH", &empty)
        .args(["prompts", "generate"])
        .output()
        .expect("run ivr");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let said = text(&out);
    assert!(
        said.contains("`espeak-ng` is not installed") && said.contains("espeak-ng` package"),
        "{said}"
    );
    assert!(!dir.join("prompts/en-US/hello.wav").exists());
}

#[test]
fn an_unknown_voice_is_named() {
    need_espeak!();
    let dir = project("bad-voice");
    let out = ivr(&dir, &["prompts", "generate", "--voice", "xx-nonesuch"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("voice `xx-nonesuch`"), "{}", text(&out));
}

#[test]
fn init_makes_a_project_that_checks_tests_and_serves() {
    need_espeak!();
    let base = temp_dir("init");
    let dir = base.join("hotline");
    let out = ivr(&base, &["init", "hotline"]);
    assert!(out.status.success(), "{}", text(&out));
    let said = text(&out);
    assert!(said.contains("password"), "{said}");
    for f in [
        "ivr.toml",
        "flows/hotline.flow",
        "flows/hotline.scenario",
        "prompts/en-US/prompts.toml",
        "prompts/en-US/audio.toml",
        "prompts/en-US/welcome.wav",
        "data/ivr.db",
    ] {
        assert!(dir.join(f).is_file(), "{f} is missing");
    }
    let config = dir.join("ivr.toml");
    let config_arg = config.to_str().expect("path");
    // From another folder, through --config.
    let check = ivr(&base, &["--config", config_arg, "check"]);
    assert!(check.status.success(), "{}", text(&check));
    assert!(
        text(&check).contains("checked 1 flow: 0 errors, 0 warnings"),
        "{}",
        text(&check)
    );
    let test = ivr(&base, &["--config", config_arg, "test"]);
    assert!(test.status.success(), "{}", text(&test));
    assert!(
        text(&test).contains("5 passed, 0 failed"),
        "{}",
        text(&test)
    );
    // Every prompt has audio (no warning above); the balance comes from the database.
    let sim = ivr(
        &dir,
        &[
            "simulate",
            "hotline",
            "--caller",
            "13800000001",
            "--script",
            "1",
        ],
    );
    assert!(text(&sim).contains("Your balance is"), "{}", text(&sim));
    // A message left without a transfer belongs to the flow's first transfer queue.
    let sim = ivr(
        &dir,
        &[
            "simulate",
            "hotline",
            "--caller",
            "13800000002",
            "--live-data",
            "--script",
            "9 wait:2s #",
        ],
    );
    assert!(text(&sim).contains("message_saved"), "{}", text(&sim));
    let rows: Vec<(String, Option<String>)> = block_on(async {
        let pool =
            sqlx::SqlitePool::connect(&format!("sqlite://{}", dir.join("data/ivr.db").display()))
                .await
                .expect("db");
        sqlx::query_as("SELECT caller, queue FROM recordings")
            .fetch_all(&pool)
            .await
            .expect("recordings")
    });
    assert_eq!(
        rows,
        vec![("13800000002".to_string(), Some("support".to_string()))]
    );

    let mut server = Server::start(&config, &[]);
    let (code, _, page) = http_get(server.http(), "/agent");
    assert_eq!(code, 200);
    assert!(page.contains("Voice mail"));
    let (code, _, status) = http_get(server.http(), "/status");
    assert_eq!(code, 200, "{status}");
    assert!(status.contains("hotline"), "{status}");
    server.stop(std::time::Duration::from_secs(10));
}

#[test]
fn init_refuses_a_folder_that_is_not_empty() {
    let base = temp_dir("init-refuse");
    let dir = base.join("taken");
    fs::create_dir_all(&dir).expect("dir");
    fs::write(dir.join("notes.txt"), "mine").expect("file");
    let out = ivr(&base, &["init", "taken"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("is not empty"), "{}", text(&out));
    assert_eq!(
        fs::read_dir(&dir).expect("dir").count(),
        1,
        "nothing was written"
    );
    assert_eq!(
        fs::read_to_string(dir.join("notes.txt")).expect("file"),
        "mine"
    );
}
