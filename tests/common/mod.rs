//! What the end-to-end tests of `ivr serve` share: starting the server on loopback ports of
//! its own, running SIPp (bounded), temporary folders, test tones. Agents' phones and
//! `GET /agents` are in [`agents`], a cluster on loopback in [`cluster`], scratch PostgreSQL
//! databases in [`postgres`].
//!
//! Every test file includes this module and uses a part of it: unused helpers are allowed.

#![allow(dead_code)]

pub mod agents;
pub mod cluster;
pub mod postgres;

use ivr_media::audio::{FRAME_SAMPLES, G711, Law};
use ivr_media::{dtmf, rtp};
use std::fs;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The calling number of SIPp's calls.
pub const CALLER: &str = "13800000001";

/// Whether `cmd arg` runs (the program is installed).
pub fn have(cmd: &str, arg: &str) -> bool {
    Command::new(cmd)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

pub fn have_sipp() -> bool {
    Command::new("sipp")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// Skips the test (saying so) when SIPp is not installed; under CI that fails it.
#[macro_export]
macro_rules! need_sipp {
    () => {
        if !have_sipp() {
            $crate::common::skip("sipp (Debian package sip-tester) is not installed: test skipped");
            return;
        }
    };
}

/// Says why a test does not run. Under CI (`CI` set) a test never passes silently for a
/// missing tool: it fails with the same words (scripts/test.sh installs every tool it needs).
pub fn skip(why: &str) {
    assert!(std::env::var_os("CI").is_none(), "CI: {why}");
    // Written past the test harness's capture, so the skip is seen.
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "note: {why}");
}

/// The release build of `ivr` that attack tests run against: `IVR_RELEASE_BIN`, which
/// scripts/test.sh sets after `cargo build --release`. Without it the test build is used and a
/// note says so; under CI (`CI` set) its absence fails the test, so CI never attacks only a
/// debug build (which checks overflow where a release build would not).
pub fn release_binary() -> PathBuf {
    match std::env::var_os("IVR_RELEASE_BIN") {
        Some(p) => {
            let p = PathBuf::from(p);
            assert!(p.exists(), "IVR_RELEASE_BIN={} does not exist", p.display());
            p
        }
        None => {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI is set but IVR_RELEASE_BIN is not: attacks must run against the release build"
            );
            eprintln!("note: IVR_RELEASE_BIN is not set; attacking the test build of ivr");
            PathBuf::from(env!("CARGO_BIN_EXE_ivr"))
        }
    }
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A range of RTP ports of its own for each server of this run.
/// The head of a test deployment's `ivr.toml`: folders, the server with the RTP ports `rtp`
/// and room for 100 calls, the embedded SQLite database.
pub fn config_head(rtp: (u16, u16)) -> String {
    format!(
        r#"[paths]
flows      = "flows"
prompts    = "prompts"
recordings = "recordings"

[server]
rtp_ports = "{}-{}"
max_calls = 100

[database]
url = "sqlite://ivr-data/ivr.db"

"#,
        rtp.0, rtp.1
    )
}

/// A range of `ports` (at most 40) RTP ports of its own for a test: below Linux's ephemeral
/// ports (32768 and up), so that no socket the system picks (SIPp's, a test's) falls inside.
/// Each test process has 1,000 ports of its own (25 ranges, reused in turn).
pub fn rtp_range(ports: u16) -> (u16, u16) {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let i = NEXT.fetch_add(1, Ordering::Relaxed) % 25;
    let base = 10_000 + (std::process::id() % 22) as u16 * 1_000 + i * 40;
    (base, base + ports.min(40) - 1)
}

pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ivr-serve-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("temp dir");
    dir
}

pub fn tone(hz: f32, ms: usize) -> Vec<i16> {
    (0..ms * 8)
        .map(|i| {
            let t = i as f32 / 8000.0;
            (8000.0 * (2.0 * std::f32::consts::PI * hz * t).sin()) as i16
        })
        .collect()
}

pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    pub out: PathBuf,
    pub err: PathBuf,
}

impl Server {
    /// Starts `ivr serve` without the file watcher (SIGHUP still reloads).
    pub fn start(config: &Path, extra: &[&str]) -> Server {
        Server::launch(config, false, extra)
    }

    /// Starts the release build of `ivr serve` (see [`release_binary`]): for the attacks of
    /// tests/security.rs, which must fail against what operators run.
    pub fn start_release(config: &Path, extra: &[&str]) -> Server {
        Server::launch_binary(&release_binary(), config, false, extra)
    }

    /// Starts `ivr serve`, watching the files when `watch`; HTTP on a free port of its own
    /// unless `extra` names `--http`.
    pub fn launch(config: &Path, watch: bool, extra: &[&str]) -> Server {
        Server::launch_binary(Path::new(env!("CARGO_BIN_EXE_ivr")), config, watch, extra)
    }

    /// [`Server::start`] with environment variables of its own for `ivr serve` (`TZ`, say).
    pub fn start_env(config: &Path, env: &[(&str, &str)], extra: &[&str]) -> Server {
        Server::launch_binary_env(
            Path::new(env!("CARGO_BIN_EXE_ivr")),
            config,
            false,
            env,
            extra,
        )
    }

    /// [`Server::launch`] with the `ivr` binary at `binary`.
    pub fn launch_binary(binary: &Path, config: &Path, watch: bool, extra: &[&str]) -> Server {
        Server::launch_binary_env(binary, config, watch, &[], extra)
    }

    /// [`Server::launch_binary`] with the environment variables `env` set for `ivr serve`.
    pub fn launch_binary_env(
        binary: &Path,
        config: &Path,
        watch: bool,
        env: &[(&str, &str)],
        extra: &[&str],
    ) -> Server {
        let dir = config.parent().expect("dir");
        for _ in 0..20 {
            let port = {
                let u = UdpSocket::bind("127.0.0.1:0").expect("udp");
                u.local_addr().expect("addr").port()
            };
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
            let out = dir.join(format!("serve-{port}.out"));
            let err = dir.join(format!("serve-{port}.err"));
            let child = Command::new(binary)
                .arg("--config")
                .arg(config)
                .args(["serve", "--sip", &addr.to_string()])
                .args(if watch { &[][..] } else { &["--no-watch"][..] })
                .args(if extra.contains(&"--http") {
                    &[][..]
                } else {
                    &["--http", "127.0.0.1:0"][..]
                })
                .args(extra)
                .env("IVR_LOG", "info")
                .envs(env.iter().copied())
                .stdin(Stdio::null())
                .stdout(fs::File::create(&out).expect("out"))
                .stderr(fs::File::create(&err).expect("err"))
                .spawn()
                .expect("ivr serve");
            let mut s = Server {
                child,
                addr,
                out,
                err,
            };
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(60) {
                if fs::read_to_string(&s.out)
                    .unwrap_or_default()
                    .contains("ivr serve: SIP on")
                {
                    return s;
                }
                if let Ok(Some(_)) = s.child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let log = s.log();
            if !log.contains("cannot listen") {
                panic!("ivr serve did not start:\n{log}");
            }
        }
        panic!("no free SIP port");
    }

    /// Where `GET /status` and `GET /metrics` are served.
    /// Waits (10 s at most, else panics) until `n` calls are in progress (`GET /metrics`).
    pub fn wait_calls_in_progress(&self, n: usize) {
        let started = Instant::now();
        let line = format!("ivr_calls_in_progress {n}");
        loop {
            let (_, _, metrics) = http_get(self.http(), "/metrics");
            if metrics.lines().any(|l| l == line) {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "not {n} calls in progress in 10 s:\n{metrics}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    pub fn http(&self) -> SocketAddr {
        let out = fs::read_to_string(&self.out).unwrap_or_default();
        let at = out.find("HTTP on ").expect("HTTP address") + "HTTP on ".len();
        out[at..]
            .split(';')
            .next()
            .and_then(|a| a.trim().parse().ok())
            .expect("HTTP address")
    }

    pub fn log(&self) -> String {
        format!(
            "{}{}",
            fs::read_to_string(&self.out).unwrap_or_default(),
            fs::read_to_string(&self.err).unwrap_or_default()
        )
    }

    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM and wait (bounded); the exit status.
    pub fn stop(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let started = Instant::now();
        while started.elapsed() < within {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.running() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs SIPp once (bounded); whether it succeeded, and what it said.
pub fn sipp(dir: &Path, server: SocketAddr, scenario: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new("sipp")
        .current_dir(dir)
        .arg("-sf")
        .arg(repo().join("tests/sipp").join(scenario))
        .args(["-s", "100"])
        .arg(server.to_string())
        .args(["-i", "127.0.0.1", "-mi", "127.0.0.1"])
        .args(["-nostdin", "-timeout", "25", "-timeout_error", "-trace_err"])
        // The test's own `-key caller` when it gives one (SIPp keeps the first).
        .args(
            ["-key", "caller", CALLER]
                .into_iter()
                .filter(|_| !args.windows(2).any(|w| w == ["-key", "caller"])),
        )
        .args(args)
        .output()
        .expect("sipp");
    let mut text = String::from_utf8_lossy(&out.stdout).to_string();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if name.ends_with("_errors.log") {
                text.push_str(&fs::read_to_string(e.path()).unwrap_or_default());
                let _ = fs::remove_file(e.path());
            }
        }
    }
    let tail: String = text
        .lines()
        .rev()
        .take(40)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<Vec<_>>()
        .join("\n");
    (out.status.success(), tail)
}

pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt")
        .block_on(f)
}

#[derive(Debug, Clone)]
pub struct Pkt {
    pub at: Instant,
    pub seq: u16,
    pub ts: u32,
    pub marker: bool,
    pub pt: u8,
    pub ssrc: u32,
    pub payload: Vec<u8>,
}

/// Something the caller's media endpoint does at a time after the first packet it receives.
#[derive(Debug, Clone)]
pub enum Act {
    /// An RFC 4733 key: 3 packets, then the end packet 3 times, one timestamp.
    Key(char),
    /// 20 ms PCMU frames of a tone for this long.
    Voice(u64),
    /// 20 ms frames of a tone of this frequency (Hz) for this long (ms).
    Tone(f32, u64),
}

/// The caller's RTP endpoint: receives (and keeps) every packet until stopped; acts at the
/// given times, sending to where the packets come from (symmetric RTP).
pub struct Endpoint {
    pub port: u16,
    stop: Arc<AtomicBool>,
    got: Arc<Mutex<Vec<Pkt>>>,
    sent_keys: Arc<Mutex<Vec<Instant>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Endpoint {
    /// A caller's endpoint: PCMU (payload type 0), SSRC 7.
    pub fn start(acts: Vec<(u64, Act)>) -> Endpoint {
        Endpoint::with(Law::Ulaw, 0, 7, acts)
    }

    /// An endpoint sending voice in `law` as payload type `pt` from SSRC `ssrc`.
    pub fn with(law: Law, pt: u8, ssrc: u32, acts: Vec<(u64, Act)>) -> Endpoint {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("rtp");
        sock.set_read_timeout(Some(Duration::from_millis(5)))
            .expect("timeout");
        let port = sock.local_addr().expect("addr").port();
        let stop = Arc::new(AtomicBool::new(false));
        let got = Arc::new(Mutex::new(Vec::new()));
        let sent_keys = Arc::new(Mutex::new(Vec::new()));
        let (s2, g2, k2) = (Arc::clone(&stop), Arc::clone(&got), Arc::clone(&sent_keys));
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            let mut first: Option<Instant> = None;
            let mut peer: Option<SocketAddr> = None;
            let mut acts = acts;
            let mut seq: u16 = 1000;
            let mut ts: u32 = 50_000;
            // Outgoing packets due: (when, bytes).
            let mut due: Vec<(Instant, Vec<u8>)> = Vec::new();
            while !s2.load(Ordering::Relaxed) {
                if let Ok((n, from)) = sock.recv_from(&mut buf) {
                    let now = Instant::now();
                    if let Some(p) = rtp::parse(&buf[..n]) {
                        first.get_or_insert(now);
                        peer = Some(from);
                        g2.lock().expect("lock").push(Pkt {
                            at: now,
                            seq: p.header.seq,
                            ts: p.header.timestamp,
                            marker: p.header.marker,
                            pt: p.header.payload_type,
                            ssrc: p.header.ssrc,
                            payload: p.payload.to_vec(),
                        });
                    }
                }
                let now = Instant::now();
                if let Some(t0) = first {
                    acts.retain(|(at_ms, act)| {
                        if now < t0 + Duration::from_millis(*at_ms) {
                            return true;
                        }
                        match act {
                            Act::Key(k) => {
                                let ev = dtmf::event_of_key(*k).expect("key");
                                ts = ts.wrapping_add(8000);
                                for i in 0..6u16 {
                                    let end = i >= 3;
                                    let mut pkt = vec![0u8; rtp::HEADER_LEN];
                                    let mut head = [0u8; rtp::HEADER_LEN];
                                    rtp::Header {
                                        payload_type: 101,
                                        marker: i == 0,
                                        seq,
                                        timestamp: ts,
                                        ssrc,
                                    }
                                    .write(&mut head);
                                    seq = seq.wrapping_add(1);
                                    pkt.copy_from_slice(&head);
                                    pkt.extend_from_slice(&dtmf::event_payload(
                                        ev,
                                        end,
                                        160 * (i.min(3) + 1),
                                    ));
                                    due.push((
                                        now + Duration::from_millis(u64::from(i.min(3)) * 20),
                                        pkt,
                                    ));
                                }
                                k2.lock().expect("lock").push(now);
                            }
                            Act::Voice(_) | Act::Tone(..) => {
                                let pcm = match act {
                                    Act::Tone(hz, ms) => tone(*hz, *ms as usize),
                                    Act::Voice(ms) => tone(300.0, *ms as usize),
                                    Act::Key(_) => Vec::new(),
                                };
                                for (i, chunk) in pcm.chunks(FRAME_SAMPLES).enumerate() {
                                    ts = ts.wrapping_add(160);
                                    let mut head = [0u8; rtp::HEADER_LEN];
                                    rtp::Header {
                                        payload_type: pt,
                                        marker: i == 0,
                                        seq,
                                        timestamp: ts,
                                        ssrc,
                                    }
                                    .write(&mut head);
                                    seq = seq.wrapping_add(1);
                                    let mut pkt = head.to_vec();
                                    pkt.extend(chunk.iter().map(|&s| law.encode(s)));
                                    due.push((now + Duration::from_millis(i as u64 * 20), pkt));
                                }
                            }
                        }
                        false
                    });
                }
                if let Some(to) = peer {
                    due.retain(|(at, pkt)| {
                        if now >= *at {
                            let _ = sock.send_to(pkt, to);
                            false
                        } else {
                            true
                        }
                    });
                }
            }
        });
        Endpoint {
            port,
            stop,
            got,
            sent_keys,
            thread: Some(thread),
        }
    }

    pub fn finish(mut self) -> (Vec<Pkt>, Vec<Instant>) {
        std::thread::sleep(Duration::from_millis(100));
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let got = self.got.lock().expect("lock").clone();
        let keys = self.sent_keys.lock().expect("lock").clone();
        (got, keys)
    }
}

/// An HTTP/1.1 request (bounded in time): the status code, the headers (lower-case names)
/// and the body.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Vec<(String, String)>, String) {
    use std::io::{Read, Write};
    let mut s =
        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(15)))
        .expect("timeout");
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).expect("request");
    s.write_all(body.as_bytes()).expect("body");
    let mut text = String::new();
    s.read_to_string(&mut text).expect("response");
    let (head, body) = text.split_once("\r\n\r\n").expect("a response");
    let mut lines = head.lines();
    let code = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .expect("status code");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (code, headers, body.to_string())
}

/// The value of header `name` (lower case) of a response of [`http`].
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// An HTTP/1.1 request (bounded in time): the status code, the content type and the body.
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    let (code, headers, body) = http(addr, method, path, headers, body);
    let kind = header(&headers, "content-type")
        .unwrap_or_default()
        .to_string();
    (code, kind, body)
}

/// `GET path`: the status code, the content type and the body.
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    http_request(addr, "GET", path, &[], "")
}

/// Writes a zh-CN prompt catalog under `dir/prompts/zh-CN/`: each prompt a tone of `hz` for
/// `ms` milliseconds (so the tests can tell prompts apart by ear), its text the given one.
pub fn write_prompts(dir: &Path, prompts: &[(&str, &str, f32, usize)]) {
    let folder = dir.join("prompts/zh-CN");
    fs::create_dir_all(&folder).expect("prompts folder");
    let mut catalog = String::new();
    for (id, text, hz, ms) in prompts {
        ivr_media::audio::write_wav(&folder.join(format!("{id}.wav")), &tone(*hz, *ms))
            .expect("wav");
        catalog.push_str(&format!("{id} = {{ text = \"{text}\" }}\n"));
    }
    fs::write(folder.join("prompts.toml"), catalog).expect("catalog");
}
