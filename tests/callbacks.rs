//! Callbacks from queues end to end, with real peers: a SIPp caller waits in a queue whose only
//! agent is away, hears the callback offer, presses 1 (RFC 4733) and is hung up on after the
//! confirmation; the agent comes back and its SIPp phone answers the offer (screen pop with
//! `X-IVR-Callback: true`); `ivr serve` then dials the caller's number through the queue's
//! trunk, whose gateway is SIPp with the caller's audio behind it, and bridges the two: RTP
//! flows both ways. A second case: the first dial finds the caller busy, the second (after
//! `callback_retry_after`) reaches them. Every callback is a row of `callbacks`.

mod common;

use common::agents::{
    self, Peer, agent_state_checked, free_udp_port, register_agent, set_agent_state,
    try_register_agent,
};
use common::*;
use std::fs;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PHONE: &str = "13800000001";

const FLOW: &str = r#"
flow q {
    title    "callback test"
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
    callback  after 2s -> saved
    max_wait  30s -> sorry
    no_agents -> sorry
}

step saved {
    play bye
    hangup
}

step sorry {
    play sorry
    hangup
}
"#;

/// A deployment whose queue `general` dials callbacks through a trunk at `gateway`.
fn deployment(name: &str, gateway: u16, attempts: u32) -> PathBuf {
    let dir = temp_dir(name);
    fs::create_dir_all(dir.join("flows")).expect("flows");
    fs::write(dir.join("flows/q.flow"), FLOW).expect("flow");
    write_prompts(
        &dir,
        &[
            ("hello", "hello", 400.0, 300),
            ("hold", "hold", 500.0, 400),
            ("callback_offer", "press 1", 450.0, 1000),
            ("callback_confirm", "kept", 550.0, 300),
            ("sorry", "sorry", 700.0, 300),
            ("bye", "bye", 800.0, 300),
        ],
    );
    let mut toml = config_head(rtp_range(40));
    toml.push_str(&format!(
        r#"
[queues.general]
ring_timeout         = "5s"
wrap_up              = "0s"
trunk                = "carrier"
callback_attempts    = {attempts}
callback_retry_after = "1s"

[agents.2001]
name = "王芳"
ha1  = "c77c65cb80b98f26c9ce22ff8c3ae0ca"   # pw2001

[recording]
calls  = "transferred"
folder = "recordings/calls"

[routes]
default = "q"

[trunks.carrier]
uri       = "sip:127.0.0.1:{gateway}"
caller_id = "10010"
max_calls = 4
"#
    ));
    fs::write(dir.join("ivr.toml"), toml).expect("ivr.toml");
    dir.join("ivr.toml")
}

/// A SIPp of these tests in the background (40 s at most; against `server` when given).
fn peer(dir: &Path, server: Option<SocketAddr>, scenario: &str, args: &[&str]) -> Peer {
    Peer::spawn_for(dir, server, scenario, 40, args)
}

/// The agent's audio: sends 20 ms PCMA frames of a tone from SSRC [`TALKER_SSRC`] to the
/// address it is given (ours, from the INVITE's SDP), and keeps the SSRCs of what it receives.
struct Talker {
    port: u16,
    to: Arc<Mutex<Option<SocketAddr>>>,
    heard: Arc<Mutex<Vec<u32>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

const TALKER_SSRC: u32 = 4242;
const CALLER_SSRC: u32 = 77;

impl Talker {
    fn start() -> Talker {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("rtp");
        sock.set_read_timeout(Some(Duration::from_millis(5)))
            .expect("timeout");
        let port = sock.local_addr().expect("addr").port();
        let to: Arc<Mutex<Option<SocketAddr>>> = Arc::new(Mutex::new(None));
        let heard = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (t2, h2, s2) = (Arc::clone(&to), Arc::clone(&heard), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            let mut next = Instant::now();
            let (mut seq, mut ts) = (1u16, 1000u32);
            let pcm = tone(600.0, 20);
            while !s2.load(Ordering::Relaxed) {
                if let Ok((n, _)) = sock.recv_from(&mut buf)
                    && let Some(p) = ivr_media::rtp::parse(&buf[..n])
                {
                    h2.lock().expect("lock").push(p.header.ssrc);
                }
                let target = *t2.lock().expect("lock");
                if let Some(to) = target
                    && Instant::now() >= next
                {
                    next += Duration::from_millis(20);
                    let mut head = [0u8; ivr_media::rtp::HEADER_LEN];
                    ivr_media::rtp::Header {
                        payload_type: 8,
                        marker: seq == 1,
                        seq,
                        timestamp: ts,
                        ssrc: TALKER_SSRC,
                    }
                    .write(&mut head);
                    seq = seq.wrapping_add(1);
                    ts = ts.wrapping_add(160);
                    let mut pkt = head.to_vec();
                    use ivr_media::audio::G711;
                    pkt.extend(pcm.iter().map(|&s| ivr_media::audio::Law::Alaw.encode(s)));
                    let _ = sock.send_to(&pkt, to);
                }
            }
        });
        Talker {
            port,
            to,
            heard,
            stop,
            thread: Some(thread),
        }
    }

    fn talk_to(&self, addr: SocketAddr) {
        *self.to.lock().expect("lock") = Some(addr);
    }

    fn finish(mut self) -> Vec<u32> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.heard.lock().expect("lock").clone()
    }
}

/// The RTP address of the SDP offer in the first INVITE the agent's phone received.
fn offered_rtp(phone: &Peer) -> Option<SocketAddr> {
    let text = phone.messages();
    let invite = text.find("INVITE sip:")?;
    let rest = &text[invite..];
    let port: u16 = rest
        .split("m=audio ")
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(SocketAddr::from(([127, 0, 0, 1], port)))
}

/// Registers agent 2001 whose phone runs `agent_talks.xml` with its audio at `rtp`.
fn agent_phone(dir: &Path, server: &Server, rtp: u16) -> Peer {
    let port = free_udp_port();
    let phone = peer(
        dir,
        Some(server.addr),
        "agent_talks.xml",
        &[
            "-p",
            &port.to_string(),
            "-m",
            "1",
            "-key",
            "agentrtp",
            &rtp.to_string(),
        ],
    );
    register_agent(dir, server.addr, "2001", "pw2001", port, || server.log());
    wait_until("the registration reaches the ACD", || {
        agent_state(server, "2001") != "offline"
    });
    phone
}

fn agent_state(server: &Server, id: &str) -> String {
    agent_state_checked(server.http(), id)
}

/// Sets agent `id` (password `pw{id}`) away or available over HTTP.
fn set_state(server: &Server, id: &str, state: &str) {
    let (code, body) = set_agent_state(server.http(), id, state);
    assert_eq!(code, 204, "{body}");
}

/// Polls `done` until it holds (20 s at most).
fn wait_until(what: &str, done: impl Fn() -> bool) {
    agents::wait_until(what, Duration::from_secs(20), done);
}

/// A `callbacks` row: phone, queue, attempts, agent, connected, result.
type CallbackRow = (String, String, i64, Option<String>, bool, Option<String>);

/// The columns as stored (`connected_at` as text).
type StoredRow = (
    String,
    String,
    i64,
    Option<String>,
    Option<String>,
    Option<String>,
);

fn callbacks(config: &Path) -> Vec<CallbackRow> {
    let db = config.parent().expect("dir").join("ivr-data/ivr.db");
    block_on(async {
        let Ok(pool) = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display())).await
        else {
            return Vec::new();
        };
        let rows: Vec<StoredRow> = sqlx::query_as(
            "SELECT phone, queue, attempts, agent, connected_at, result FROM callbacks ORDER BY id",
        )
        .fetch_all(&pool)
        .await
        .unwrap_or_default();
        pool.close().await;
        rows.into_iter()
            .map(|(p, q, a, ag, c, r)| (p, q, a, ag, c.is_some(), r))
            .collect()
    })
}

/// The outcome of the first call in `calls`.
fn first_outcome(config: &Path) -> Option<String> {
    let db = config.parent().expect("dir").join("ivr-data/ivr.db");
    block_on(async {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
            .await
            .ok()?;
        let started = Instant::now();
        loop {
            let row: Option<(Option<String>,)> =
                sqlx::query_as("SELECT outcome FROM calls ORDER BY id LIMIT 1")
                    .fetch_optional(&pool)
                    .await
                    .ok()
                    .flatten();
            if let Some((o,)) = row {
                return o;
            }
            if started.elapsed() > Duration::from_secs(10) {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

/// The caller waits, hears the offer, presses 1 and is hung up on; the row is pending.
fn keep_a_callback(dir: &Path, server: &Server, config: &Path) {
    // The caller's audio: it presses 1 2.8 s after the first packet (hello 0.3 s, the wait of
    // 2 s, then the offer of 1 s plays).
    let media = Endpoint::start(vec![(2800, Act::Key('1'))]);
    let mut caller = peer(
        dir,
        Some(server.addr),
        "flow_hangs_up.xml",
        &[
            "-m",
            "1",
            "-s",
            "10010",
            "-key",
            "caller",
            PHONE,
            "-key",
            "rtpport",
            &media.port.to_string(),
        ],
    );
    assert!(
        caller.wait(Duration::from_secs(20)),
        "the caller's call failed:\n{}\n{}",
        caller.messages(),
        server.log()
    );
    let (_, keys) = media.finish();
    assert_eq!(keys.len(), 1, "the caller pressed 1");
    assert_eq!(first_outcome(config).as_deref(), Some("callback"));
    wait_until("the callback's row", || callbacks(config).len() == 1);
    let rows = callbacks(config);
    assert_eq!(
        rows[0],
        (PHONE.into(), "general".into(), 0, None, false, None),
        "{rows:?}"
    );
}

#[test]
fn a_kept_callback_rings_the_agent_then_dials_the_caller_and_bridges_them() {
    need_sipp!();
    let gw = free_udp_port();
    let config = deployment("callback", gw, 2);
    let dir = config.parent().expect("dir").to_path_buf();
    let server = Server::start(&config, &[]);
    // The caller's phone behind the gateway: it answers and speaks once it hears the agent.
    let callee = Endpoint::with(
        ivr_media::audio::Law::Ulaw,
        0,
        CALLER_SSRC,
        vec![(100, Act::Voice(1000))],
    );
    let mut gateway = peer(
        &dir,
        None,
        "campaign_gateway.xml",
        &[
            "-p",
            &gw.to_string(),
            "-m",
            "1",
            "-key",
            "rtpport",
            &callee.port.to_string(),
        ],
    );
    let talker = Talker::start();
    let mut phone = agent_phone(&dir, &server, talker.port);
    set_state(&server, "2001", "away");
    keep_a_callback(&dir, &server, &config);
    // The agent comes back: the kept place is offered, answered, the caller dialled.
    set_state(&server, "2001", "available");
    wait_until("the agent's phone is offered the callback", || {
        offered_rtp(&phone).is_some()
    });
    let messages = phone.messages();
    assert!(messages.contains("X-IVR-Callback: true"), "{messages}");
    assert!(
        messages.contains(&format!("X-IVR-Caller: {PHONE}")),
        "{messages}"
    );
    // The place has waited since the caller was queued (about 3 s before the offer).
    let waited: u64 = messages
        .split("X-IVR-Waited: ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|w| w.parse().ok())
        .expect("X-IVR-Waited");
    assert!((2..=20).contains(&waited), "waited {waited} s");
    talker.talk_to(offered_rtp(&phone).expect("offer"));
    let phone_ok = phone.wait(Duration::from_secs(20));
    let gateway_ok = gateway.wait(Duration::from_secs(10));
    let heard_by_agent = talker.finish();
    let (heard_by_caller, _) = callee.finish();
    assert!(
        phone_ok && gateway_ok,
        "{}\n{}\n{}",
        phone.messages(),
        gateway.messages(),
        server.log()
    );
    // RTP both ways: the caller heard the agent, the agent heard the caller.
    let from_agent = heard_by_caller
        .iter()
        .filter(|p| p.ssrc == TALKER_SSRC)
        .count();
    let from_caller = heard_by_agent.iter().filter(|&&s| s == CALLER_SSRC).count();
    assert!(from_agent >= 25, "{from_agent} packets from the agent");
    assert!(from_caller >= 25, "{from_caller} packets from the caller");
    wait_until("the callback's result", || {
        callbacks(&config).first().is_some_and(|r| r.5.is_some())
    });
    let rows = callbacks(&config);
    assert_eq!(
        rows[0],
        (
            PHONE.into(),
            "general".into(),
            1,
            Some("2001".into()),
            true,
            Some("connected".into())
        ),
        "{rows:?}"
    );
    check_recording(&dir);
}

/// The power of `hz` in `x` per sample (Goertzel).
fn tone_power(x: &[i16], hz: f32) -> f64 {
    let w = 2.0 * std::f64::consts::PI * f64::from(hz) / 8000.0;
    let c = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &v in x {
        let s0 = f64::from(v) + c * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    (s1 * s1 + s2 * s2 - c * s1 * s2) / x.len().max(1) as f64
}

/// The bridged conversation was recorded (`[recording] calls = "transferred"`): a row of kind
/// `call` with the agent and queue, a stereo WAV with the caller (300 Hz) left and the agent
/// (600 Hz) right.
fn check_recording(dir: &Path) {
    let db = dir.join("ivr-data/ivr.db");
    type Rec = (
        String,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
    );
    let rec: Vec<Rec> = block_on(async {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
            .await
            .expect("db");
        let started = Instant::now();
        loop {
            let rows: Vec<Rec> = sqlx::query_as(
                "SELECT kind, agent, queue, file, sha256 FROM recordings ORDER BY id",
            )
            .fetch_all(&pool)
            .await
            .unwrap_or_default();
            if !rows.is_empty() || started.elapsed() > Duration::from_secs(10) {
                return rows;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    assert_eq!(rec.len(), 1, "{rec:?}");
    let (kind, agent, queue, file, sha) = rec[0].clone();
    assert_eq!(kind, "call");
    assert_eq!(agent.as_deref(), Some("2001"));
    assert_eq!(queue.as_deref(), Some("general"));
    let file = PathBuf::from(file.expect("a file"));
    let bytes = fs::read(&file).expect("the WAV");
    use sha2::Digest;
    let hex: String = sha2::Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(sha.as_deref(), Some(hex.as_str()));
    let mut r = hound::WavReader::open(&file).expect("a WAV");
    assert_eq!(r.spec().channels, 2);
    let all: Vec<i16> = r.samples::<i16>().map(|s| s.expect("sample")).collect();
    let left: Vec<i16> = all.iter().step_by(2).copied().collect();
    let right: Vec<i16> = all.iter().skip(1).step_by(2).copied().collect();
    let (l300, l600) = (tone_power(&left, 300.0), tone_power(&left, 600.0));
    let (r300, r600) = (tone_power(&right, 300.0), tone_power(&right, 600.0));
    assert!(
        l300 > 1_000.0 && l300 > 20.0 * l600,
        "left: 300 Hz {l300}, 600 Hz {l600}"
    );
    assert!(
        r600 > 1_000.0 && r600 > 20.0 * r300,
        "right: 300 Hz {r300}, 600 Hz {r600}"
    );
}

#[test]
fn a_caller_who_is_busy_is_dialled_again_after_the_retry_wait() {
    need_sipp!();
    let gw = free_udp_port();
    let config = deployment("callback-retry", gw, 2);
    let dir = config.parent().expect("dir").to_path_buf();
    let server = Server::start(&config, &[]);
    let callee = Endpoint::with(
        ivr_media::audio::Law::Ulaw,
        0,
        CALLER_SSRC,
        vec![(100, Act::Voice(1000))],
    );
    // First the gateway finds the caller busy ...
    let mut busy = peer(
        &dir,
        None,
        "gateway_busy.xml",
        &["-p", &gw.to_string(), "-m", "1"],
    );
    let talker = Talker::start();
    // The agent's phone takes two offers: one per dial of the caller.
    let port = free_udp_port();
    let mut phone = peer(
        &dir,
        Some(server.addr),
        "agent_talks.xml",
        &[
            "-p",
            &port.to_string(),
            "-m",
            "2",
            "-key",
            "agentrtp",
            &talker.port.to_string(),
        ],
    );
    let (ok, out) = try_register_agent(&dir, server.addr, "2001", "pw2001", port);
    assert!(ok, "{out}");
    wait_until("the registration reaches the ACD", || {
        agent_state(&server, "2001") != "offline"
    });
    set_state(&server, "2001", "away");
    keep_a_callback(&dir, &server, &config);
    set_state(&server, "2001", "available");
    assert!(
        busy.wait(Duration::from_secs(15)),
        "the busy gateway got no call:\n{}\n{}",
        busy.messages(),
        server.log()
    );
    // ... then it answers: the retry comes 1 s later.
    let mut gateway = peer(
        &dir,
        None,
        "campaign_gateway.xml",
        &[
            "-p",
            &gw.to_string(),
            "-m",
            "1",
            "-key",
            "rtpport",
            &callee.port.to_string(),
        ],
    );
    wait_until("the first dial is written", || {
        callbacks(&config).first().is_some_and(|r| r.2 == 1)
    });
    wait_until("the second offer reaches the agent's phone", || {
        phone.messages().matches("INVITE sip:").count() >= 2
    });
    let text = phone.messages();
    let second = text.rfind("INVITE sip:").expect("second INVITE");
    let port: u16 = text[second..]
        .split("m=audio ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .expect("the second offer's port");
    talker.talk_to(SocketAddr::from(([127, 0, 0, 1], port)));
    // The phone's first call ends with our BYE while its script waits to hang up itself
    // (SIPp counts it failed): only its end is waited for.
    let _ = phone.wait(Duration::from_secs(20));
    let gateway_ok = gateway.wait(Duration::from_secs(10));
    let heard_by_agent = talker.finish();
    let (heard_by_caller, _) = callee.finish();
    assert!(
        gateway_ok,
        "{}\n{}\n{}",
        phone.messages(),
        gateway.messages(),
        server.log()
    );
    assert!(
        heard_by_caller
            .iter()
            .filter(|p| p.ssrc == TALKER_SSRC)
            .count()
            >= 25
    );
    assert!(heard_by_agent.iter().filter(|&&s| s == CALLER_SSRC).count() >= 25);
    wait_until("the callback's result", || {
        callbacks(&config).first().is_some_and(|r| r.5.is_some())
    });
    let rows = callbacks(&config);
    assert_eq!(
        rows[0],
        (
            PHONE.into(),
            "general".into(),
            2,
            Some("2001".into()),
            true,
            Some("connected".into())
        ),
        "{rows:?}"
    );
}

#[test]
fn a_pending_callback_survives_a_restart_of_the_server() {
    need_sipp!();
    let gw = free_udp_port();
    let config = deployment("callback-restart", gw, 2);
    let dir = config.parent().expect("dir").to_path_buf();
    let mut server = Server::start(&config, &[]);
    let talker = Talker::start();
    {
        // An agent is logged in but away while the caller keeps the callback.
        let _phone = agent_phone(&dir, &server, talker.port);
        set_state(&server, "2001", "away");
        keep_a_callback(&dir, &server, &config);
    }
    assert!(
        server.stop(Duration::from_secs(10)).is_some(),
        "the server did not stop"
    );
    // The row is still pending; the new server queues it again and the agent who logs in
    // afterwards gets it.
    assert_eq!(callbacks(&config)[0].5, None);
    let server = Server::start(&config, &[]);
    let callee = Endpoint::with(
        ivr_media::audio::Law::Ulaw,
        0,
        CALLER_SSRC,
        vec![(100, Act::Voice(1000))],
    );
    let mut gateway = peer(
        &dir,
        None,
        "campaign_gateway.xml",
        &[
            "-p",
            &gw.to_string(),
            "-m",
            "1",
            "-key",
            "rtpport",
            &callee.port.to_string(),
        ],
    );
    let mut phone = agent_phone(&dir, &server, talker.port);
    wait_until("the agent's phone is offered the callback", || {
        offered_rtp(&phone).is_some()
    });
    // The screen pop the callback was kept with (its path through the flow) is offered again.
    let messages = phone.messages();
    assert!(messages.contains("X-IVR-Callback: true"), "{messages}");
    assert!(messages.contains("X-IVR-Path: hello,queue"), "{messages}");
    assert!(messages.contains("X-IVR-Flow: q"), "{messages}");
    talker.talk_to(offered_rtp(&phone).expect("offer"));
    let phone_ok = phone.wait(Duration::from_secs(20));
    let gateway_ok = gateway.wait(Duration::from_secs(10));
    let heard_by_agent = talker.finish();
    let (heard_by_caller, _) = callee.finish();
    assert!(
        phone_ok && gateway_ok,
        "{}\n{}\n{}",
        phone.messages(),
        gateway.messages(),
        server.log()
    );
    assert!(
        heard_by_caller
            .iter()
            .filter(|p| p.ssrc == TALKER_SSRC)
            .count()
            >= 25
    );
    assert!(heard_by_agent.iter().filter(|&&s| s == CALLER_SSRC).count() >= 25);
    wait_until("the callback's result", || {
        callbacks(&config).first().is_some_and(|r| r.5.is_some())
    });
    let rows = callbacks(&config);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].2, 1, "{rows:?}");
    assert_eq!(rows[0].5.as_deref(), Some("connected"), "{rows:?}");
}
