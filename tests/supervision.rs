//! Supervision's media, end to end: a SIPp caller (its audio a 440 Hz tone, PCMU) is bridged
//! to a SIPp agent (1000 Hz, PCMA); a supervisor in headless Chromium
//! (tests/browser/supervise.mjs) logs in, listens and hears both sides, whispers (its fake
//! microphone plays a 1700 Hz tone) and only the agent receives it, then barges in and the
//! caller receives it too; the parties' streams stay the same throughout (nobody is told).
//! Each start and stop is a `supervisor_events` row. The media endpoint refuses anyone not
//! logged in.
//!
//! Needs SIPp, node, Chromium and playwright-core (skipped with a message without them;
//! scripts/test.sh installs them).

use std::fs;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

mod common;

use common::*;
use ivr_media::audio::{G711, Law};

const FLOW: &str = r##"
flow q {
    title    "supervised line"
    language zh-CN
    entry    hello
}

step hello {
    play hello
    goto queue
}

transfer queue {
    queue     general
    music     hold
    max_wait  20s -> bye
    no_agents -> bye
    after     -> rate
}

survey rate {
    question overall rate_q scale 1..5
    timeout  8s
    attempts 1
    save     surveys
    next     bye
}

step bye {
    play bye
    hangup
}
"##;

/// Supervisor 3001's password is `pw3001` (ha1 = MD5 of `3001:ivr:pw3001`).
fn deployment(name: &str) -> PathBuf {
    let dir = temp_dir(name);
    fs::create_dir_all(dir.join("flows")).expect("flows");
    fs::create_dir_all(dir.join("prompts/zh-CN")).expect("prompts");
    fs::write(dir.join("flows/q.flow"), FLOW).expect("flow");
    // Prompt tones away from the parties' and the supervisor's.
    write_prompts(
        &dir,
        &[
            ("hello", "hello", 600.0, 300),
            ("hold", "hold", 800.0, 400),
            ("rate_q", "rate_q", 1200.0, 500),
            ("bye", "bye", 1300.0, 300),
        ],
    );
    fs::write(
        dir.join("ivr.toml"),
        format!(
            r#"{}[queues.general]
ring_timeout = "5s"
wrap_up      = "1s"

[agents.2001]
name = "王芳"
ha1  = "c77c65cb80b98f26c9ce22ff8c3ae0ca"   # pw2001

[supervisors.3001]
name = "李主管"
ha1  = "34fbe6fdb6ed2092f785d6bc3f0a8cbf"   # pw3001

[routes]
"100" = "q"
"#,
            config_head(rtp_range(20))
        ),
    )
    .expect("config");
    dir.join("ivr.toml")
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("port")
        .port()
}

/// SIPp in the background (the agent's phone, the caller), killed when dropped.
struct Sipp(Child);

impl Sipp {
    fn spawn(dir: &Path, name: &str, server: SocketAddr, scenario: &str, args: &[&str]) -> Sipp {
        let work = dir.join(name);
        fs::create_dir_all(&work).expect("sipp dir");
        let child = Command::new("sipp")
            .current_dir(&work)
            .arg("-sf")
            .arg(repo().join("tests/sipp").join(scenario))
            .arg(server.to_string())
            .args(["-i", "127.0.0.1", "-mi", "127.0.0.1"])
            .args(["-mp", &free_udp_port().to_string()])
            .args(["-nostdin", "-timeout", "90", "-timeout_error", "-trace_err"])
            .args(["-m", "1"])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sipp");
        Sipp(child)
    }

    /// Waits (bounded) for SIPp to end: whether its call succeeded.
    fn wait(&mut self, within: Duration) -> bool {
        let started = Instant::now();
        while started.elapsed() < within {
            if let Ok(Some(s)) = self.0.try_wait() {
                return s.success();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }
}

impl Drop for Sipp {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn runs(name: &str) -> bool {
    Command::new(name)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Chromium, when it, node and playwright-core are installed (else a message: skipped).
fn chromium_and_playwright() -> Option<PathBuf> {
    if !runs("node") {
        skip("node is not installed: test skipped");
        return None;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let Some(chromium) = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .flat_map(|c| std::env::split_paths(&path).map(move |d| d.join(c)))
        .find(|c| c.is_file() && runs(&c.to_string_lossy()))
    else {
        skip("chromium is not installed: test skipped");
        return None;
    };
    if !repo()
        .join("tests/browser/node_modules/playwright-core")
        .is_dir()
    {
        skip("playwright-core is not installed (cd tests/browser && npm install): test skipped");
        return None;
    }
    Some(chromium)
}

/// The power of `hz` in `x` per sample (Goertzel).
fn tone_power(x: &[i16], hz: f32) -> f64 {
    let w = 2.0 * std::f64::consts::PI * f64::from(hz) / 8000.0;
    let c = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &v in x {
        let s = f64::from(v) + c * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    (s1 * s1 + s2 * s2 - c * s1 * s2) / (x.len().max(1) as f64).powi(2)
}

/// The audio of the packets (payload type `pt`, in `law`) received between `from` and `to`.
fn audio_between(got: &[Pkt], pt: u8, law: Law, from: Instant, to: Instant) -> Vec<i16> {
    got.iter()
        .filter(|p| p.pt == pt && p.at >= from && p.at < to)
        .flat_map(|p| p.payload.iter().map(move |&b| law.decode(b)))
        .collect()
}

/// A tone of `hz` (8000 amplitude) at 48 kHz for Chromium's fake microphone.
fn write_mic(path: &Path, hz: f32, seconds: u32) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 48_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).expect("wav");
    for i in 0..48_000 * seconds {
        let t = i as f32 / 48_000.0;
        w.write_sample((8000.0 * (std::f32::consts::TAU * hz * t).sin()) as i16)
            .expect("sample");
    }
    w.finalize().expect("wav");
}

/// The status of a WebSocket upgrade of `path` (with `Authorization: auth` when given) from a
/// page of `origin` (`http://HOST:PORT`).
fn upgrade_status(addr: SocketAddr, path: &str, auth: Option<&str>, origin: &str) -> u16 {
    use std::io::{BufRead, BufReader, Write};
    let mut s =
        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let auth = auth
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: {origin}\r\n{auth}\r\n"
    )
    .expect("request");
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).expect("status line");
    line.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not a status line: {line:?}"))
}

#[test]
fn the_media_endpoint_refuses_anyone_not_logged_in() {
    let config = deployment("supervise-refused");
    let server = Server::start(&config, &[]);
    let path = "/supervisor/calls/x/media?mode=listen";
    let own = format!("http://{}", server.http());
    let good = Some("Basic MzAwMTpwdzMwMDE="); // 3001:pw3001
    let code = upgrade_status(server.http(), path, None, &own);
    assert_eq!(code, 401, "{}", server.log());
    // A wrong password is no better (3001:nope).
    let code = upgrade_status(server.http(), path, Some("Basic MzAwMTpub3Bl"), &own);
    assert!(code == 401 || code == 429, "{code}");
    // Neither is the page's script.
    let (code, _, _) = http(server.http(), "GET", "/supervisor/supervise.js", &[], "");
    assert_eq!(code, 401);
    // A page of another site riding on the supervisor's login is refused.
    let code = upgrade_status(server.http(), path, good, "http://evil.example");
    assert_eq!(code, 403);
    // With the password the socket opens: the page hears after its offer that there is no
    // call `x` to supervise.
    let code = upgrade_status(server.http(), path, good, &own);
    assert_eq!(code, 101, "{}", server.log());
    let (code, _, body) = http(
        server.http(),
        "GET",
        "/supervisor/supervise.js",
        &[("Authorization", "Basic MzAwMTpwdzMwMDE=")],
        "",
    );
    assert_eq!(code, 200);
    assert!(body.contains("window.ivrSupervise"), "{body}");
}

#[test]
fn a_supervisor_listens_whispers_to_the_agent_only_and_barges_in() {
    need_sipp!();
    let Some(chromium) = chromium_and_playwright() else {
        return;
    };
    let config = deployment("supervise");
    let dir = config.parent().expect("dir").to_path_buf();
    let mic = dir.join("whisper.wav");
    write_mic(&mic, 1700.0, 20);
    let server = Server::start(&config, &[]);
    let url = format!("http://{}", server.http());

    // The supervisor's browser waits on the page for a call to supervise.
    let out = dir.join("supervise.out");
    let err = dir.join("supervise.err");
    let epoch = (SystemTime::now(), Instant::now());
    let mut page = Command::new("node")
        .current_dir(repo().join("tests/browser"))
        .arg("supervise.mjs")
        .args([url.as_str(), "3001", "pw3001"])
        .arg(&mic)
        .env("CHROMIUM", &chromium)
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out).expect("out"))
        .stderr(fs::File::create(&err).expect("err"))
        .spawn()
        .expect("node");

    // The agent's phone registers; its audio is 1000 Hz (PCMA), the caller's 440 Hz (PCMU).
    let agent_media = Endpoint::with(Law::Alaw, 8, 42, vec![(100, Act::Tone(1000.0, 28_000))]);
    let port = free_udp_port();
    // The agent talks 25 s: time for Chromium to start on a busy machine, see the call,
    // connect, and listen, whisper and barge (10 s).
    let _phone = Sipp::spawn(
        &dir,
        "agent-phone",
        server.addr,
        "agent_supervised.xml",
        &[
            "-p",
            &port.to_string(),
            "-d",
            "25000",
            "-key",
            "agentrtp",
            &agent_media.port.to_string(),
        ],
    );
    let (ok, text) = sipp(
        &dir,
        server.addr,
        "agent_register.xml",
        &[
            "-m",
            "1",
            "-key",
            "agent",
            "2001",
            "-key",
            "contactport",
            &port.to_string(),
            "-au",
            "2001",
            "-ap",
            "pw2001",
        ],
    );
    assert!(ok, "{text}");
    let caller_media = Endpoint::start(vec![(500, Act::Tone(440.0, 30_000))]);
    // The caller hangs up 30 s after the answer, during the survey that follows the agent.
    let mut caller = Sipp::spawn(
        &dir,
        "caller",
        server.addr,
        "call_bye.xml",
        &[
            "-s",
            "100",
            "-key",
            "caller",
            "13800000001",
            "-d",
            "30000",
            "-key",
            "rtpport",
            &caller_media.port.to_string(),
        ],
    );

    let started = Instant::now();
    let status = loop {
        if let Ok(Some(s)) = page.try_wait() {
            break Some(s);
        }
        if started.elapsed() > Duration::from_secs(100) {
            let _ = page.kill();
            let _ = page.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let caller_ok = caller.wait(Duration::from_secs(60));
    let (heard_by_agent, _) = agent_media.finish();
    let (heard_by_caller, _) = caller_media.finish();
    let text = fs::read_to_string(&out).unwrap_or_default();
    assert!(
        status.is_some_and(|s| s.success()),
        "supervise.mjs failed ({status:?}):\n{text}\n{}\n{}",
        fs::read_to_string(&err).unwrap_or_default(),
        server.log()
    );
    assert!(caller_ok, "the caller's SIPp failed\n{}", server.log());
    let result: serde_json::Value = text
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .expect("supervise.mjs JSON");

    // The supervisor heard both parties (dB of WebAudio's analyser), and not themself.
    let db = |hz: &str| result["heard"][hz].as_f64().unwrap_or(f64::NEG_INFINITY);
    let (caller_db, agent_db, own_db, none_db) = (db("440"), db("1000"), db("1700"), db("2500"));
    assert!(
        caller_db > none_db + 20.0 && agent_db > none_db + 20.0,
        "heard: {}",
        result["heard"]
    );
    assert!(own_db < caller_db - 20.0, "heard: {}", result["heard"]);

    // Times of the page (ms since the epoch) as instants of this process.
    let base_ms = epoch
        .0
        .duration_since(UNIX_EPOCH)
        .expect("time")
        .as_millis() as i64;
    let at = |v: &serde_json::Value| -> Instant {
        let ms = v.as_i64().expect("ms") - base_ms;
        epoch.1 + Duration::from_millis(ms.max(0) as u64)
    };
    let window = |name: &str, settle_ms: u64| -> (Instant, Instant) {
        (
            at(&result[name][0]) + Duration::from_millis(settle_ms),
            at(&result[name][1]),
        )
    };
    let (l0, l1) = window("listen", 0);
    let (w0, w1) = window("whisper", 600);
    let (b0, b1) = window("barge", 600);
    let agent = |from, to| audio_between(&heard_by_agent, 8, Law::Alaw, from, to);
    let caller = |from, to| audio_between(&heard_by_caller, 0, Law::Ulaw, from, to);
    let report = |x: &[i16]| {
        format!(
            "{} samples: 440 Hz {:.0}, 1000 Hz {:.0}, 1700 Hz {:.0}",
            x.len(),
            tone_power(x, 440.0),
            tone_power(x, 1000.0),
            tone_power(x, 1700.0)
        )
    };
    for (name, from, to) in [("listen", l0, l1), ("whisper", w0, w1), ("barge", b0, b1)] {
        eprintln!(
            "{name}: agent {}; caller {}",
            report(&agent(from, to)),
            report(&caller(from, to))
        );
    }
    eprintln!("the supervisor heard (dB): {}", result["heard"]);
    // Listening: nobody hears the supervisor.
    let a = agent(l0, l1);
    assert!(a.len() > 8000, "{}", report(&a));
    assert!(
        tone_power(&a, 1700.0) < tone_power(&a, 440.0) / 50.0,
        "agent, listen: {}",
        report(&a)
    );
    let c = caller(l0, l1);
    assert!(c.len() > 8000, "{}", report(&c));
    assert!(
        tone_power(&c, 1700.0) < tone_power(&c, 1000.0) / 50.0,
        "caller, listen: {}",
        report(&c)
    );
    // Whispering: the agent hears it, the caller does not.
    let a = agent(w0, w1);
    assert!(
        tone_power(&a, 1700.0) > 1_000.0,
        "agent, whisper: {}",
        report(&a)
    );
    let c = caller(w0, w1);
    assert!(c.len() > 8000, "{}", report(&c));
    assert!(
        tone_power(&c, 1700.0) < tone_power(&c, 1000.0) / 50.0,
        "caller, whisper: {}",
        report(&c)
    );
    // Barging in: both hear it.
    let a = agent(b0, b1);
    assert!(
        tone_power(&a, 1700.0) > 1_000.0,
        "agent, barge: {}",
        report(&a)
    );
    let c = caller(b0, b1);
    assert!(
        tone_power(&c, 1700.0) > 1_000.0,
        "caller, barge: {}",
        report(&c)
    );

    // Nobody is told: the streams the parties receive stay the other party's (same SSRC,
    // no new stream) from the first listen to the end of the barge.
    let ssrcs = |got: &[Pkt]| -> std::collections::BTreeSet<u32> {
        got.iter()
            .filter(|p| p.at >= l0 && p.at < b1)
            .map(|p| p.ssrc)
            .collect()
    };
    assert_eq!(ssrcs(&heard_by_agent), [7].into(), "the agent's streams");
    assert_eq!(ssrcs(&heard_by_caller), [42].into(), "the caller's streams");

    // Each start and stop is in supervisor_events, for this call.
    let call = result["call"].as_str().expect("call").to_string();
    let db_path = dir.join("ivr-data/ivr.db");
    let rows: Vec<(String, String, Option<String>)> = block_on(async {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db_path.display()))
            .await
            .expect("db");
        let started = Instant::now();
        loop {
            let rows: Vec<(String, String, Option<String>)> = sqlx::query_as(
                "SELECT supervisor, action, call_id FROM supervisor_events ORDER BY id",
            )
            .fetch_all(&pool)
            .await
            .unwrap_or_default();
            if rows.iter().any(|r| r.1 == "barge_stop")
                || started.elapsed() > Duration::from_secs(10)
            {
                return rows;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let media: Vec<&str> = rows
        .iter()
        .filter(|r| r.2.as_deref() == Some(call.as_str()))
        .map(|r| r.1.as_str())
        .collect();
    assert_eq!(
        media,
        [
            "listen_start",
            "listen_stop",
            "whisper_start",
            "whisper_stop",
            "barge_start",
            "barge_stop"
        ],
        "{rows:?}"
    );
    assert!(rows.iter().all(|r| r.0 == "3001"), "{rows:?}");
}
