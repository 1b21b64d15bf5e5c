//! `/supervisor` of `ivr serve`: supervisors (`[supervisors.ID]` with the `ha1` of their
//! password) log in with HTTP Basic or a session (`POST /supervisor/login`); nothing under
//! `/supervisor` is served without a login; every action is a row of `supervisor_events`
//! (checked in the real SQLite database the server writes, and in PostgreSQL when
//! `IVR_TEST_POSTGRES_URL` is set).

mod common;

use base64::Engine as _;
use common::*;
use std::fs;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

const SUPERVISOR: &str = "3001";
const PASSWORD: &str = "quality-Desk-9";
const REALM: &str = "callcenter.test";

/// The ha1, computed here rather than by the code under test.
fn ha1(id: &str, realm: &str, password: &str) -> String {
    use md5::{Digest, Md5};
    Md5::digest(format!("{id}:{realm}:{password}").as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn basic(id: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{id}:{password}"))
    )
}

const FLOW: &str = "flow t {\n    title    \"supervisor test\"\n    language zh-CN\n    entry    hello\n}\n\n\
                    step hello {\n    play hello\n    hangup\n}\n";

/// A deployment with one flow, one agent and the supervisor 3001, on the embedded SQLite
/// database (or `database`).
fn deployment(name: &str, database: &str) -> PathBuf {
    let dir = temp_dir(&format!("supervisor-{name}"));
    fs::create_dir_all(dir.join("flows")).expect("flows");
    fs::write(dir.join("flows/t.flow"), FLOW).expect("flow");
    write_prompts(&dir, &[("hello", "hello", 440.0, 300)]);
    let rtp = rtp_range(10);
    fs::write(
        dir.join("ivr.toml"),
        format!(
            "[paths]\nflows = \"flows\"\nprompts = \"prompts\"\nrecordings = \"recordings\"\n\n\
             [server]\nrtp_ports = \"{}-{}\"\nmax_calls = 20\nrealm = \"{REALM}\"\n\n\
             [database]\nurl = \"{database}\"\n\n\
             [agents.2001]\nname = \"Wang Fang\"\nha1 = \"{}\"\n\n\
             [supervisors.{SUPERVISOR}]\nname = \"Li Zhuguan\"\nha1 = \"{}\"\n\n\
             [routes]\ndefault = \"t\"\n",
            rtp.0,
            rtp.1,
            ha1("2001", REALM, "agent-pass"),
            ha1(SUPERVISOR, REALM, PASSWORD),
        ),
    )
    .expect("config");
    dir.join("ivr.toml")
}

/// One HTTP/1.1 request (bounded in time), the body as bytes: the status, the headers (lower
/// case names) and the body.
fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut s =
        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n"
    );
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).expect("request");
    let mut all = Vec::new();
    s.read_to_end(&mut all).expect("response");
    let at = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&all[..at]).to_string();
    let mut body = all[at + 4..].to_vec();
    let mut lines = head.lines();
    let code = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .expect("status code");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    if header(&headers, "transfer-encoding") == Some("chunked") {
        body = dechunk(&body);
    }
    (code, headers, body)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(at) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let n = usize::from_str_radix(String::from_utf8_lossy(&b[..at]).trim(), 16).unwrap_or(0);
        if n == 0 || b.len() < at + 2 + n {
            return out;
        }
        out.extend_from_slice(&b[at + 2..at + 2 + n]);
        b = &b[(at + 4 + n).min(b.len())..];
    }
}

/// The rows of `supervisor_events` (supervisor, action, call id) in the deployment's SQLite
/// database.
fn events(dir: &Path) -> Vec<(String, String, Option<String>)> {
    block_on(async {
        let url = format!("sqlite://{}", dir.join("ivr-data/ivr.db").display());
        let pool = sqlx::SqlitePool::connect(&url)
            .await
            .expect("open the database");
        let rows: Vec<(String, String, Option<String>)> =
            sqlx::query_as("SELECT supervisor, action, call_id FROM supervisor_events ORDER BY id")
                .fetch_all(&pool)
                .await
                .expect("supervisor_events");
        pool.close().await;
        rows
    })
}

#[test]
fn without_a_login_nothing_is_served() {
    let config = deployment("refused", "sqlite://ivr-data/ivr.db");
    let mut server = Server::start(&config, &[]);
    let addr = server.http();
    for path in [
        "/supervisor",
        "/supervisor/recordings",
        "/supervisor/recordings/1",
        "/supervisor/calls",
    ] {
        let (code, headers, _) = request(addr, "GET", path, &[]);
        assert_eq!(code, 401, "{path}");
        assert!(
            header(&headers, "www-authenticate").is_some_and(|v| v.starts_with("Basic ")),
            "{path}: {headers:?}"
        );
    }
    // A wrong password, an agent's password, a forged session: refused.
    let wrong = basic(SUPERVISOR, "guess");
    let agent = basic("2001", "agent-pass");
    let forged = format!("{}={}", "ivr_supervisor", "ab".repeat(24));
    for h in [
        ("Authorization", wrong.as_str()),
        ("Authorization", agent.as_str()),
        ("Cookie", forged.as_str()),
    ] {
        let (code, _, _) = request(addr, "GET", "/supervisor", &[h]);
        assert_eq!(code, 401, "{h:?}");
        let (code, _, _) = request(addr, "POST", "/supervisor/login", &[h]);
        assert_eq!(code, 401, "{h:?}");
    }
    // The dashboard and /metrics stay open.
    assert_eq!(request(addr, "GET", "/dashboard", &[]).0, 200);
    assert_eq!(request(addr, "GET", "/metrics", &[]).0, 200);
    assert!(events(config.parent().expect("dir")).is_empty());
    server.stop(Duration::from_secs(10));
}

#[test]
fn basic_and_session_logins_work_and_are_logged() {
    let config = deployment("login", "sqlite://ivr-data/ivr.db");
    let dir = config.parent().expect("dir").to_path_buf();
    let mut server = Server::start(&config, &[]);
    let addr = server.http();
    let auth = basic(SUPERVISOR, PASSWORD);
    // HTTP Basic.
    let (code, headers, body) = request(addr, "GET", "/supervisor", &[("Authorization", &auth)]);
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(header(&headers, "cache-control"), Some("no-store"));
    assert!(String::from_utf8_lossy(&body).contains("<html"));
    // A session: a token and a cookie.
    let (code, headers, body) = request(
        addr,
        "POST",
        "/supervisor/login",
        &[("Authorization", &auth)],
    );
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(v["supervisor"], SUPERVISOR);
    assert_eq!(v["name"], "Li Zhuguan");
    let token = v["token"].as_str().expect("token").to_string();
    let cookie = header(&headers, "set-cookie")
        .expect("a cookie")
        .to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().expect("cookie").to_string();
    assert_eq!(pair, format!("ivr_supervisor={token}"));
    assert_eq!(
        request(addr, "GET", "/supervisor", &[("Cookie", &pair)]).0,
        200
    );
    let bearer = format!("Bearer {token}");
    assert_eq!(
        request(addr, "GET", "/supervisor", &[("Authorization", &bearer)]).0,
        200
    );
    // Logged out: the token is dead.
    assert_eq!(
        request(addr, "POST", "/supervisor/logout", &[("Cookie", &pair)]).0,
        204
    );
    assert_eq!(
        request(addr, "GET", "/supervisor", &[("Cookie", &pair)]).0,
        401
    );
    let rows = events(&dir);
    let actions: Vec<&str> = rows.iter().map(|r| r.1.as_str()).collect();
    assert!(
        actions.contains(&"login") && actions.contains(&"logout"),
        "{rows:?}"
    );
    assert!(rows.iter().all(|r| r.0 == SUPERVISOR), "{rows:?}");
    server.stop(Duration::from_secs(10));
}
