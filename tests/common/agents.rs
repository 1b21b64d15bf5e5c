//! Agents' phones and what the tests read about agents: SIPp peers in the background (a UAS
//! that answers, a caller), an agent's registration with digest authentication, the agents'
//! states and queues of `GET /agents`, setting a state over HTTP, the callers a phone was
//! offered, and rows of a deployment's SQLite database.

use super::{Act, Endpoint, http_get, http_request, repo, sipp};
use std::fs;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `ivr.toml` part of the queue tests: `[queues.general]` (mandarin, ringing an agent
/// for `ring_timeout`, 1 s of wrap-up), agent 2001 (王芳, mandarin, password pw2001) and agent
/// 2002 (李强, mandarin and English, password pw2002).
pub fn general_queue_toml(ring_timeout: &str) -> String {
    format!(
        r#"[queues.general]
skills       = ["mandarin"]
ring_timeout = "{ring_timeout}"
wrap_up      = "1s"

[agents.2001]
name   = "王芳"
skills = ["mandarin"]
ha1    = "c77c65cb80b98f26c9ce22ff8c3ae0ca"   # pw2001

[agents.2002]
name   = "李强"
skills = ["mandarin", "english"]
ha1    = "cad561eaa6db436ad7848520ac0e9ba3"   # pw2002
"#
    )
}

/// The prompts of the queue tests' flows under `dir` (see [`super::write_prompts`]): hello,
/// hold (the music), rate_q (the survey's question), sorry and bye, each a tone of its own.
pub fn write_queue_prompts(dir: &Path) {
    super::write_prompts(
        dir,
        &[
            ("hello", "hello", 400.0, 300),
            ("hold", "hold", 500.0, 400),
            ("rate_q", "rate_q", 600.0, 500),
            ("sorry", "sorry", 700.0, 300),
            ("bye", "bye", 800.0, 300),
        ],
    );
}

/// A UDP port that was free a moment ago on 127.0.0.1 (for SIPp's `-p`, `-mp`, RTP keys).
pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("a free port")
        .port()
}

/// Polls `done` every 25 ms until it holds; fails the test naming `what` after `within`.
pub fn wait_until(what: &str, within: Duration, done: impl Fn() -> bool) {
    wait_until_else(what, within, done, String::new);
}

/// [`wait_until`] whose failure also says `why()` (a cluster's logs, a peer's messages) on
/// the lines after `what`.
pub fn wait_until_else(
    what: &str,
    within: Duration,
    done: impl Fn() -> bool,
    why: impl Fn() -> String,
) {
    let started = Instant::now();
    while !done() {
        if started.elapsed() >= within {
            let why = why();
            if why.is_empty() {
                panic!("{what}: not in {within:?}");
            }
            panic!("{what}: not in {within:?}\n{why}");
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// A SIPp running in the background (an agent's phone, a caller, a gateway), killed when
/// dropped. Its messages and errors are traced in a folder of its own.
pub struct Peer {
    child: Child,
    /// The scenario and a port number: what [`Peer::report`] heads its lines with.
    pub name: String,
    /// SIPp's working folder (its trace files).
    pub dir: PathBuf,
}

impl Peer {
    /// SIPp with `scenario` against `server`, its global timeout 40 s.
    pub fn spawn(dir: &Path, server: SocketAddr, scenario: &str, args: &[&str]) -> Peer {
        Peer::spawn_for(dir, Some(server), scenario, 40, args)
    }

    /// SIPp with `scenario` (against `server` when given: a UAC, or a UAS that also sends),
    /// on 127.0.0.1 with a media port of its own, ending with an error after `timeout_s`
    /// seconds (`-timeout_error`); `args` are the test's own.
    pub fn spawn_for(
        dir: &Path,
        server: Option<SocketAddr>,
        scenario: &str,
        timeout_s: u32,
        args: &[&str],
    ) -> Peer {
        let name = format!("{}-{}", scenario.trim_end_matches(".xml"), free_udp_port());
        let work = dir.join(&name);
        fs::create_dir_all(&work).expect("peer dir");
        let mut cmd = Command::new("sipp");
        cmd.current_dir(&work)
            .arg("-sf")
            .arg(repo().join("tests/sipp").join(scenario));
        if let Some(s) = server {
            cmd.arg(s.to_string());
        }
        let child = cmd
            .args(["-i", "127.0.0.1", "-mi", "127.0.0.1"])
            .args(["-mp", &free_udp_port().to_string()])
            .args([
                "-nostdin",
                "-timeout",
                &timeout_s.to_string(),
                "-timeout_error",
            ])
            .args(["-trace_err", "-trace_msg"])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sipp");
        Peer {
            child,
            name,
            dir: work,
        }
    }

    /// Waits (bounded) for SIPp to end; whether all its calls succeeded (killed when not
    /// done within `within`).
    pub fn wait(&mut self, within: Duration) -> bool {
        let started = Instant::now();
        while started.elapsed() < within {
            if let Ok(Some(s)) = self.child.try_wait() {
                return s.success();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        false
    }

    /// The messages SIPp traced (and its errors).
    pub fn messages(&self) -> String {
        let mut text = String::new();
        for e in fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            let n = e.file_name().to_string_lossy().to_string();
            if n.ends_with("_messages.log") || n.ends_with("_errors.log") {
                text.push_str(&fs::read_to_string(e.path()).unwrap_or_default());
            }
        }
        text
    }

    /// The last 60 lines of [`Peer::messages`], headed with the peer's name.
    pub fn report(&self) -> String {
        self.report_lines(60)
    }

    /// The last `n` lines of [`Peer::messages`], headed with the peer's name.
    pub fn report_lines(&self, n: usize) -> String {
        let m = self.messages();
        let tail: Vec<&str> = m.lines().rev().take(n).collect();
        format!(
            "--- {} ---\n{}",
            self.name,
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )
    }

    /// The callers (`X-IVR-Caller`) of the INVITEs this phone received, in order.
    pub fn offered_callers(&self) -> Vec<String> {
        self.messages()
            .lines()
            .filter_map(|l| l.strip_prefix("X-IVR-Caller: "))
            .map(|c| c.trim().to_string())
            .collect()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Registers agent `id` with `password` at `registrar` (tests/sipp/agent_register.xml, digest
/// authentication) for its phone on `contact_port`; fails the test (with `log()`) when the
/// registration does not succeed.
pub fn register_agent(
    dir: &Path,
    registrar: SocketAddr,
    id: &str,
    password: &str,
    contact_port: u16,
    log: impl FnOnce() -> String,
) {
    let (ok, out) = try_register_agent(dir, registrar, id, password, contact_port);
    assert!(ok, "agent {id} could not register:\n{out}\n{}", log());
}

/// [`register_agent`] that lets the caller judge: whether SIPp's REGISTER succeeded, and what
/// it said.
pub fn try_register_agent(
    dir: &Path,
    registrar: SocketAddr,
    id: &str,
    password: &str,
    contact_port: u16,
) -> (bool, String) {
    sipp(
        dir,
        registrar,
        "agent_register.xml",
        &[
            "-m",
            "1",
            "-key",
            "agent",
            id,
            "-key",
            "contactport",
            &contact_port.to_string(),
            "-au",
            id,
            "-ap",
            password,
        ],
    )
}

/// RTP that talks: an [`Endpoint`] sending PCMU voice from `ssrc` for `talk_ms` once it
/// hears anything (a phone's or a caller's media).
pub fn talking_media(ssrc: u32, talk_ms: u64) -> Endpoint {
    Endpoint::with(
        ivr_media::audio::Law::Ulaw,
        0,
        ssrc,
        vec![(0, Act::Voice(talk_ms))],
    )
}

/// An agent's phone: a UAS on a port of its own (`-p`) running `scenario` for `calls` calls
/// with the extra SIPp `args`, then agent `id`'s registration of it at `registrar` (which
/// must succeed, see [`register_agent`]). The caller waits for the ACD to see it.
pub fn agent_phone(
    dir: &Path,
    registrar: SocketAddr,
    (id, password): (&str, &str),
    (scenario, calls, timeout_s): (&str, u32, u32),
    args: &[&str],
    log: impl FnOnce() -> String,
) -> Peer {
    let port = free_udp_port();
    let (port_text, calls_text) = (port.to_string(), calls.to_string());
    let mut all = vec!["-p", &port_text, "-m", &calls_text];
    all.extend_from_slice(args);
    let phone = Peer::spawn_for(dir, Some(registrar), scenario, timeout_s, &all);
    register_agent(dir, registrar, id, password, port, log);
    phone
}

/// A phone that answers and talks: a UAS on a port of its own running `scenario` (one with
/// an `agentrtp` key, such as answers_until_bye.xml) for `calls` calls, its RTP an
/// [`Endpoint`] sending PCMU voice from `ssrc` for `talk_ms` once it hears anything. Not
/// registered: the phone, its media and its SIP port (for [`register_agent`]).
pub fn talking_phone(
    dir: &Path,
    at: SocketAddr,
    (scenario, calls, timeout_s): (&str, u32, u32),
    (ssrc, talk_ms): (u32, u64),
) -> (Peer, Endpoint, u16) {
    let port = free_udp_port();
    let (phone, media) =
        talking_phone_on(dir, at, port, (scenario, calls, timeout_s), (ssrc, talk_ms));
    (phone, media, port)
}

/// [`talking_phone`] on SIP port `port` (a phone answering again where it was registered):
/// the phone and its media.
pub fn talking_phone_on(
    dir: &Path,
    at: SocketAddr,
    port: u16,
    (scenario, calls, timeout_s): (&str, u32, u32),
    (ssrc, talk_ms): (u32, u64),
) -> (Peer, Endpoint) {
    let media = talking_media(ssrc, talk_ms);
    let phone = Peer::spawn_for(
        dir,
        Some(at),
        scenario,
        timeout_s,
        &[
            "-p",
            &port.to_string(),
            "-m",
            &calls.to_string(),
            "-key",
            "agentrtp",
            &media.port.to_string(),
        ],
    );
    (phone, media)
}

/// `GET /agents` of the server at `http`: its status code and body as JSON (`null` when it
/// is not JSON).
pub fn agents_json(http: SocketAddr) -> (u16, serde_json::Value, String) {
    let (code, _, body) = http_get(http, "/agents");
    let v = serde_json::from_str(&body).unwrap_or_default();
    (code, v, body)
}

fn state_in(v: &serde_json::Value, id: &str) -> String {
    v["agents"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["id"] == id))
        .and_then(|x| x["state"].as_str())
        .unwrap_or_default()
        .to_string()
}

/// The state of agent `id` in `GET /agents` (empty when the server does not answer or does
/// not list it).
pub fn agent_state(http: SocketAddr, id: &str) -> String {
    state_in(&agents_json(http).1, id)
}

/// [`agent_state`], failing the test unless `GET /agents` answers 200 with JSON.
pub fn agent_state_checked(http: SocketAddr, id: &str) -> String {
    let (code, _, body) = http_get(http, "/agents");
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    state_in(&v, id)
}

/// Callers waiting in queue `queue` (`GET /agents`; 0 when it does not answer).
pub fn queue_waiting(http: SocketAddr, queue: &str) -> u64 {
    agents_json(http).1["queues"]
        .as_array()
        .and_then(|q| q.iter().find(|x| x["name"] == queue))
        .and_then(|g| g["waiting"].as_u64())
        .unwrap_or(0)
}

/// The `Authorization` header of agent `id` whose password is `pw{id}` (the tests' agents).
pub fn agent_auth(id: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{id}:pw{id}"))
    )
}

/// Sets agent `id` (password `pw{id}`) `away` or `available` with `POST /agents/ID/state`;
/// the status code and body.
pub fn set_agent_state(http: SocketAddr, id: &str, state: &str) -> (u16, String) {
    let (code, _, body) = http_request(
        http,
        "POST",
        &format!("/agents/{id}/state"),
        &[("Authorization", &agent_auth(id))],
        state,
    );
    (code, body)
}

/// Rows of the deployment's SQLite database (`ivr-data/ivr.db` next to `config`) for `sql`,
/// once there are `n` of them (polled for the batching writer, 10 s at most: then what
/// there is).
pub fn sqlite_rows<T>(config: &Path, sql: &str, n: usize) -> Vec<T>
where
    T: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow> + Send + Unpin,
{
    let db = config.parent().expect("dir").join("ivr-data/ivr.db");
    super::block_on(async {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
            .await
            .expect("db");
        let started = Instant::now();
        loop {
            let rows: Vec<T> = sqlx::query_as(sql)
                .fetch_all(&pool)
                .await
                .unwrap_or_default();
            if rows.len() >= n || started.elapsed() > Duration::from_secs(10) {
                return rows;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}
