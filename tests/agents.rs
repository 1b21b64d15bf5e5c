//! Agents register with `ivr serve` the way a softphone does, with SIPp (Debian package
//! sip-tester) as the phone: REGISTER, a digest challenge (401), the answer, 200 with the
//! granted lifetime, or 403 for a wrong password or an unknown agent; repeated failures from
//! one address are answered later and later.
//!
//! Every server listens on 127.0.0.1 only, every run is bounded (`-m`, `-timeout`), and the
//! tests skip themselves (with a message) when `sipp` is not installed.

mod common;

use common::{Server, have_sipp, repo};
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const AGENT: &str = "2001";
const PASSWORD: &str = "a-long-Passw0rd";
const REALM: &str = "callcenter.test";

/// The agent's ha1, computed here rather than by the code under test.
fn ha1(agent: &str, realm: &str, password: &str) -> String {
    use md5::{Digest, Md5};
    Md5::digest(format!("{agent}:{realm}:{password}").as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn ha1_of_the_rfc_2617_example() {
    assert_eq!(
        ha1("Mufasa", "testrealm@host.com", "Circle Of Life"),
        "939e7578ed9e3c518a452acee763bce9"
    );
}

/// A deployment with one flow and the agent 2001 in a temporary folder.
fn deployment(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ivr-agents-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(dir.join("flows")).expect("flows");
    fs::create_dir_all(dir.join("prompts/zh-CN")).expect("prompts");
    fs::write(
        dir.join("flows/t.flow"),
        "flow t {\n    title    \"agents test\"\n    language zh-CN\n    entry    hello\n}\n\n\
         step hello {\n    play hello\n    hangup\n}\n",
    )
    .expect("flow");
    let tone: Vec<i16> = (0..1600).map(|i| ((i % 20) as i16 - 10) * 500).collect();
    ivr_media::audio::write_wav(&dir.join("prompts/zh-CN/hello.wav"), &tone).expect("wav");
    fs::write(
        dir.join("prompts/zh-CN/prompts.toml"),
        "hello = { text = \"hello\" }\n",
    )
    .expect("catalog");
    let base = 40_000 + (std::process::id() % 50) as u16 * 100 + name.len() as u16 * 10;
    fs::write(
        dir.join("ivr.toml"),
        format!(
            "[server]\nrtp_ports = \"{}-{}\"\nrealm = \"{REALM}\"\n\n\
             [agents.{AGENT}]\nname = \"Wang Fang\"\nha1 = \"{}\"\n\n\
             [routes]\ndefault = \"t\"\n",
            base,
            base + 9,
            ha1(AGENT, REALM, PASSWORD)
        ),
    )
    .expect("config");
    dir.join("ivr.toml")
}

/// Runs one SIPp phone (bounded) as agent `agent` with `password`; whether the scenario
/// passed, what SIPp said, and how long it took.
fn phone(
    dir: &Path,
    server: SocketAddr,
    scenario: &str,
    agent: &str,
    password: &str,
    extra: &[&str],
) -> (bool, String, Duration) {
    let started = Instant::now();
    let out = Command::new("sipp")
        .current_dir(dir)
        .arg("-sf")
        .arg(repo().join("tests/sipp").join(scenario))
        .args(["-s", agent, "-au", agent, "-ap", password])
        .arg(server.to_string())
        .args(["-i", "127.0.0.1", "-m", "1"])
        .args(["-nostdin", "-timeout", "20", "-timeout_error", "-trace_err"])
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .expect("sipp");
    let took = started.elapsed();
    let mut text = String::from_utf8_lossy(&out.stdout).to_string();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().ends_with("_errors.log") {
                text.push_str(&fs::read_to_string(e.path()).unwrap_or_default());
                let _ = fs::remove_file(e.path());
            }
        }
    }
    let tail: Vec<&str> = text.lines().rev().take(30).collect();
    let tail = tail.into_iter().rev().collect::<Vec<_>>().join("\n");
    (out.status.success(), tail, took)
}

#[test]
fn an_agent_registers_with_digest_authentication() {
    need_sipp!();
    let config = deployment("ok");
    let dir = config.parent().expect("dir");
    let server = Server::start(&config, &[]);
    for transport in ["u1", "t1"] {
        let (ok, out, _) = phone(
            dir,
            server.addr,
            "register.xml",
            AGENT,
            PASSWORD,
            &["-t", transport],
        );
        assert!(ok, "register over {transport}:\n{out}\n{}", server.log());
    }
    // A REGISTER taken is logged (info) with the agent and its contact, no password.
    let registered = Instant::now();
    let log = loop {
        let log = server.log();
        if log.contains("agent registered") || registered.elapsed() > Duration::from_secs(5) {
            break log;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let line = log
        .lines()
        .find(|l| l.contains("agent registered"))
        .unwrap_or_else(|| panic!("a REGISTER taken is not logged:\n{log}"));
    assert!(
        line.contains("INFO") && line.contains(AGENT) && line.contains("contact=sip:"),
        "{line}"
    );
    assert!(!line.contains(PASSWORD), "{line}");
    // The same phone with a wrong password is refused.
    let (ok, out, took) = phone(
        dir,
        server.addr,
        "register_refused.xml",
        AGENT,
        "wrong-password",
        &[],
    );
    assert!(ok, "wrong password:\n{out}\n{}", server.log());
    assert!(
        took < Duration::from_millis(1500),
        "one failure is not slowed down: {took:?}"
    );
    // The scenario that expects 200 fails when the password is wrong: the test can fail.
    let (ok, _, _) = phone(
        dir,
        server.addr,
        "register.xml",
        AGENT,
        "wrong-password",
        &["-timeout", "5"],
    );
    assert!(!ok, "register.xml passed with a wrong password");
    let log = server.log();
    assert!(
        log.contains("REGISTER refused") && log.contains("2001"),
        "failures are logged with the agent:\n{log}"
    );
    assert!(
        !log.contains("response="),
        "the digest is never logged:\n{log}"
    );
}

#[test]
fn repeated_failures_from_one_address_are_slowed_down() {
    need_sipp!();
    let config = deployment("slow");
    let dir = config.parent().expect("dir");
    let server = Server::start(&config, &[]);
    // Five failed attempts in a row from 127.0.0.1: wrong passwords and an unknown agent
    // (both 403, not told apart). Each attempt is two REGISTERs (challenge, answer); after
    // three failures both are held back 1 s, after four 2 s.
    let attempts = [
        (AGENT, "guess-1"),
        ("2999", PASSWORD),
        (AGENT, "guess-2"),
        (AGENT, "guess-3"),
        (AGENT, "guess-4"),
    ];
    let mut took = Vec::new();
    for (agent, password) in attempts {
        let (ok, out, t) = phone(
            dir,
            server.addr,
            "register_refused.xml",
            agent,
            password,
            &[],
        );
        assert!(ok, "{agent}/{password}:\n{out}\n{}", server.log());
        took.push(t);
    }
    let ms: Vec<u128> = took.iter().map(Duration::as_millis).collect();
    for t in &ms[..3] {
        assert!(*t < 1_500, "the first three are answered at once: {ms:?}");
    }
    assert!(
        (1_900..4_000).contains(&ms[3]),
        "the fourth is held back 2 × 1 s: {ms:?}"
    );
    assert!(
        (3_900..8_000).contains(&ms[4]),
        "the fifth is held back 2 × 2 s: {ms:?}"
    );
    assert!(
        server.log().contains("slowed down"),
        "the slowing down is logged:\n{}",
        server.log()
    );
}
