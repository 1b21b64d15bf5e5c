//! What the end-to-end tests of `ivr serve` share: starting the server on loopback ports of
//! its own, running SIPp (bounded), temporary folders, test tones.

#![allow(dead_code)]

use std::fs;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

/// The calling number of SIPp's calls.
pub const CALLER: &str = "13800000001";

pub fn have_sipp() -> bool {
    Command::new("sipp")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

#[macro_export]
macro_rules! need_sipp {
    () => {
        if !have_sipp() {
            eprintln!("sipp (Debian package sip-tester) is not installed: test skipped");
            return;
        }
    };
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A range of RTP ports of its own for each server of this run.
pub fn rtp_range(ports: u16) -> (u16, u16) {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let i = NEXT.fetch_add(1, Ordering::Relaxed);
    let base = 30_000 + (std::process::id() % 40) as u16 * 500 + i * 40;
    (base, base + ports - 1)
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

    /// Starts `ivr serve`, watching the files when `watch`; HTTP on a free port of its own
    /// unless `extra` names `--http`.
    pub fn launch(config: &Path, watch: bool, extra: &[&str]) -> Server {
        let dir = config.parent().expect("dir");
        for _ in 0..20 {
            let port = {
                let u = UdpSocket::bind("127.0.0.1:0").expect("udp");
                u.local_addr().expect("addr").port()
            };
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
            let out = dir.join(format!("serve-{port}.out"));
            let err = dir.join(format!("serve-{port}.err"));
            let child = Command::new(env!("CARGO_BIN_EXE_ivr"))
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
        .args(["-key", "caller", CALLER])
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
