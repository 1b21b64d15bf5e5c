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

const FLOW: &str = r##"
flow t {
    title    "supervisor test"
    language zh-CN
    entry    hello
}

step hello {
    play hello
    goto choose
}

menu choose {
    prompt   options
    timeout  20s
    attempts 1 -> bye
    key 1 -> bye
}

step bye {
    play bye
    hangup
}
"##;

/// A caller queued for an agent (`10020`).
const QUEUE_FLOW: &str = r##"
flow q {
    title    "supervisor queue test"
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
    after     -> bye
}

step bye {
    play bye
    hangup
}
"##;

/// A deployment with one flow, one agent and the supervisor 3001, on the embedded SQLite
/// database (or `database`).
fn deployment(name: &str, database: &str) -> PathBuf {
    let dir = temp_dir(&format!("supervisor-{name}"));
    fs::create_dir_all(dir.join("flows")).expect("flows");
    fs::write(dir.join("flows/t.flow"), FLOW).expect("flow");
    fs::write(dir.join("flows/q.flow"), QUEUE_FLOW).expect("flow");
    write_prompts(
        &dir,
        &[
            ("hello", "hello", 440.0, 300),
            ("options", "options", 660.0, 300),
            ("bye", "bye", 880.0, 300),
            ("hold", "hold", 550.0, 2000),
        ],
    );
    let rtp = rtp_range(10);
    fs::write(
        dir.join("ivr.toml"),
        format!(
            "[paths]\nflows = \"flows\"\nprompts = \"prompts\"\nrecordings = \"recordings\"\n\n\
             [server]\nrtp_ports = \"{}-{}\"\nmax_calls = 20\nrealm = \"{REALM}\"\n\n\
             [database]\nurl = \"{database}\"\n\n\
             [queues.general]\nskills = []\n\n\
             [agents.2001]\nname = \"Wang Fang\"\nha1 = \"{}\"\n\n\
             [supervisors.{SUPERVISOR}]\nname = \"Li Zhuguan\"\nha1 = \"{}\"\n\n\
             [routes]\n\"10020\" = \"q\"\ndefault = \"t\"\n",
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

/// A recordings row: call id, caller, agent, queue, kind, started at (the server's local
/// time), file.
type Row<'a> = (
    &'a str,
    &'a str,
    Option<&'a str>,
    Option<&'a str>,
    &'a str,
    &'a str,
    Option<String>,
);

/// Adds recordings rows to the deployment's SQLite database.
fn add_recordings(dir: &Path, rows: &[Row]) {
    block_on(async {
        let url = format!("sqlite://{}", dir.join("ivr-data/ivr.db").display());
        let pool = sqlx::SqlitePool::connect(&url)
            .await
            .expect("open the database");
        for (call, caller, agent, queue, kind, at, file) in rows {
            sqlx::query(
                "INSERT INTO recordings (call_id, flow, node, save_table, caller, file, length_ms, \
                 recorded_at, queue, kind, agent, sha256) VALUES ($1, 't', 'n', 'calls', $2, $3, 1000, $4, $5, $6, $7, NULL)",
            )
            .bind(*call)
            .bind(*caller)
            .bind(file.clone())
            .bind(*at)
            .bind(*queue)
            .bind(*kind)
            .bind(*agent)
            .execute(&pool)
            .await
            .expect("insert a recording");
        }
        pool.close().await;
    })
}

/// The call ids of a search's answer, in order.
fn found(addr: SocketAddr, auth: &str, query: &str) -> Vec<String> {
    let (code, _, body) = request(
        addr,
        "GET",
        &format!("/supervisor/recordings?{query}"),
        &[("Authorization", auth)],
    );
    assert_eq!(code, 200, "{query}: {}", String::from_utf8_lossy(&body));
    let v: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
    v["recordings"]
        .as_array()
        .expect("recordings")
        .iter()
        .map(|r| {
            assert!(r.get("file").is_none(), "no paths are given out: {r}");
            r["call_id"].as_str().unwrap_or_default().to_string()
        })
        .collect()
}

fn recording_id(addr: SocketAddr, auth: &str, call: &str) -> u64 {
    let (_, _, body) = request(
        addr,
        "GET",
        "/supervisor/recordings?limit=200",
        &[("Authorization", auth)],
    );
    let v: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
    v["recordings"]
        .as_array()
        .expect("recordings")
        .iter()
        .find(|r| r["call_id"] == call)
        .and_then(|r| r["id"].as_u64())
        .expect("the recording's id")
}

/// The server's local day of now in Asia/Shanghai (UTC+8 all year round), and that local time.
fn shanghai_now() -> chrono::NaiveDateTime {
    (chrono::Utc::now() + chrono::Duration::hours(8)).naive_utc()
}

/// On a server in UTC+8, recordings (kept in the server's local time, as every table) are
/// found by the server's local day, and shown as stored; an instant with `Z` is turned into
/// the server's time; `supervisor_events.at` is the server's local time too.
#[test]
fn a_servers_local_day_finds_its_recordings() {
    let config = deployment("local-day", "sqlite://ivr-data/ivr.db");
    let dir = config.parent().expect("dir").to_path_buf();
    let mut server = Server::start_env(&config, &[("TZ", "Asia/Shanghai")], &[]);
    let addr = server.http();
    let auth = basic(SUPERVISOR, PASSWORD);
    let now = shanghai_now();
    let today = now.date();
    let yesterday = today.pred_opt().expect("yesterday");
    let at = |d: chrono::NaiveDate, t: &str| format!("{} {t}", d.format("%Y-%m-%d"));
    let (y, t1, t2) = (
        at(yesterday, "20:00:00"),
        at(today, "00:30:00"),
        at(today, "20:00:00"),
    );
    add_recordings(
        &dir,
        &[
            ("y", "13900000001", None, None, "call", &y, None),
            ("t1", "13900000002", None, None, "call", &t1, None),
            ("t2", "13900000003", None, None, "call", &t2, None),
        ],
    );
    let day = today.format("%Y-%m-%d").to_string();
    assert_eq!(
        found(addr, &auth, &format!("since={day}&until={day}")),
        ["t2", "t1"]
    );
    // The server's local midnight as a UTC instant (16:00 the day before).
    let midnight_utc = format!("{}T16:00:00Z", yesterday.format("%Y-%m-%d"));
    assert_eq!(
        found(addr, &auth, &format!("since={midnight_utc}&until={day}")),
        ["t2", "t1"]
    );
    assert_eq!(
        found(
            addr,
            &auth,
            &format!("since={day}T00:00:00%2B08:00&until={day}T12:00")
        ),
        ["t1"]
    );
    // Shown as stored.
    let (_, _, body) = request(
        addr,
        "GET",
        &format!("/supervisor/recordings?since={day}"),
        &[("Authorization", &auth)],
    );
    let v: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(v["recordings"][0]["recorded_at"], t2.as_str(), "{v}");
    // The searches' rows are in the server's local time, within a minute of now.
    let ats: Vec<String> = block_on(async {
        let url = format!("sqlite://{}", dir.join("ivr-data/ivr.db").display());
        let pool = sqlx::SqlitePool::connect(&url).await.expect("database");
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT CAST(at AS TEXT) FROM supervisor_events WHERE action = 'search'",
        )
        .fetch_all(&pool)
        .await
        .expect("supervisor_events");
        pool.close().await;
        rows.into_iter().map(|r| r.0).collect()
    });
    assert!(!ats.is_empty());
    for a in &ats {
        let t = chrono::NaiveDateTime::parse_from_str(&a[..19.min(a.len())], "%Y-%m-%d %H:%M:%S")
            .expect("a time");
        assert!(
            (t - now).num_seconds().abs() < 120,
            "{a} is not the server's local time (now {now})"
        );
    }
    server.stop(Duration::from_secs(10));
}

#[test]
fn recordings_are_searched_and_played_with_ranges() {
    let config = deployment("recordings", "sqlite://ivr-data/ivr.db");
    let dir = config.parent().expect("dir").to_path_buf();
    let mut server = Server::start(&config, &[]);
    let addr = server.http();
    let auth = basic(SUPERVISOR, PASSWORD);
    // A real stereo WAV below [recording] folder, a file outside every recordings folder, and
    // a link inside the folder that points outside.
    let calls = dir.join("recordings/calls/2026-12-01");
    fs::create_dir_all(&calls).expect("folder");
    let wav = calls.join("c1.wav");
    {
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 8000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(&wav, spec).expect("wav");
        for i in 0..8000i32 {
            w.write_sample((i % 300) as i16).expect("sample");
            w.write_sample(-((i % 200) as i16)).expect("sample");
        }
        w.finalize().expect("wav");
    }
    let bytes = fs::read(&wav).expect("wav bytes");
    let outside = dir.join("secret.txt");
    fs::write(&outside, "not a recording").expect("outside");
    let link = calls.join("link.wav");
    std::os::unix::fs::symlink(&outside, &link).expect("symlink");
    add_recordings(
        &dir,
        &[
            (
                "c1",
                "13900000001",
                Some("2001"),
                Some("billing"),
                "call",
                "2026-12-01 10:00:00",
                Some(wav.display().to_string()),
            ),
            (
                "c2",
                "13900000002",
                Some("2002"),
                Some("billing"),
                "call",
                "2026-12-02 10:00:00",
                None,
            ),
            (
                "m3",
                "8613911112222",
                None,
                Some("general"),
                "message",
                "2026-12-03 10:00:00",
                None,
            ),
            (
                "c4",
                "13900000004",
                Some("2001"),
                Some("vip"),
                "call",
                "2026-12-04 23:59:59",
                Some(outside.display().to_string()),
            ),
            (
                "c5",
                "13900000005",
                Some("2001"),
                Some("vip"),
                "call",
                "2026-12-05 00:00:00",
                Some(link.display().to_string()),
            ),
            (
                "c6",
                "139_0%",
                None,
                None,
                "call",
                "2026-12-05 01:00:00",
                Some("../../../../etc/passwd".into()),
            ),
        ],
    );
    // Filters, each alone and together; newest first.
    assert_eq!(found(addr, &auth, ""), ["c6", "c5", "c4", "m3", "c2", "c1"]);
    assert_eq!(
        found(addr, &auth, "caller=0000000"),
        ["c5", "c4", "c2", "c1"]
    );
    assert_eq!(found(addr, &auth, "caller=1111"), ["m3"]);
    assert_eq!(
        found(addr, &auth, "caller=_"),
        ["c6"],
        "wildcards are plain characters"
    );
    assert_eq!(found(addr, &auth, "agent=2001"), ["c5", "c4", "c1"]);
    assert_eq!(found(addr, &auth, "queue=billing"), ["c2", "c1"]);
    assert_eq!(found(addr, &auth, "kind=message"), ["m3"]);
    assert_eq!(
        found(addr, &auth, "since=2026-12-02&until=2026-12-04"),
        ["c4", "m3", "c2"]
    );
    assert_eq!(
        found(
            addr,
            &auth,
            "since=2026-12-04T23:59:59&until=2026-12-05T00:30"
        ),
        ["c5", "c4"]
    );
    assert_eq!(
        found(addr, &auth, "agent=2001&queue=vip&until=2026-12-04"),
        ["c4"]
    );
    assert_eq!(found(addr, &auth, "limit=2&offset=1"), ["c5", "c4"]);
    for bad in ["kind=video", "since=yesterday", "limit=100000"] {
        let (code, _, _) = request(
            addr,
            "GET",
            &format!("/supervisor/recordings?{bad}"),
            &[("Authorization", &auth)],
        );
        assert_eq!(code, 400, "{bad}");
    }
    // The whole file, a range of it, the end of it, and ranges that cannot be served.
    let id = recording_id(addr, &auth, "c1");
    let path = format!("/supervisor/recordings/{id}");
    let (code, headers, body) = request(addr, "GET", &path, &[("Authorization", &auth)]);
    assert_eq!(code, 200);
    assert_eq!(header(&headers, "content-type"), Some("audio/wav"));
    assert_eq!(header(&headers, "accept-ranges"), Some("bytes"));
    assert_eq!(body, bytes);
    let (code, headers, body) = request(
        addr,
        "GET",
        &path,
        &[("Authorization", &auth), ("Range", "bytes=100-1123")],
    );
    assert_eq!(code, 206);
    assert_eq!(
        header(&headers, "content-range"),
        Some(format!("bytes 100-1123/{}", bytes.len()).as_str())
    );
    assert_eq!(body, &bytes[100..=1123]);
    let (code, _, body) = request(
        addr,
        "GET",
        &path,
        &[("Authorization", &auth), ("Range", "bytes=-44")],
    );
    assert_eq!(code, 206);
    assert_eq!(body, &bytes[bytes.len() - 44..]);
    let past = format!("bytes={}-", bytes.len());
    for bad in [
        past.as_str(),
        "bytes=9-3",
        "bytes=0-1,5-6",
        "lines=0-1",
        "bytes=99999999999999999999-",
    ] {
        let (code, headers, body) = request(
            addr,
            "GET",
            &path,
            &[("Authorization", &auth), ("Range", bad)],
        );
        assert_eq!(code, 416, "{bad}");
        assert_eq!(
            header(&headers, "content-range"),
            Some(format!("bytes */{}", bytes.len()).as_str()),
            "{bad}"
        );
        assert!(body.is_empty());
    }
    // Rows whose file is missing, outside the folders, a link out of them, or a relative
    // climb: nothing served.
    for call in ["c2", "c4", "c5", "c6"] {
        let id = recording_id(addr, &auth, call);
        let (code, _, body) = request(
            addr,
            "GET",
            &format!("/supervisor/recordings/{id}"),
            &[("Authorization", &auth)],
        );
        assert_eq!(code, 410, "{call}: {}", String::from_utf8_lossy(&body));
    }
    for path in [
        "/supervisor/recordings/999999",
        "/supervisor/recordings/..%2F..%2Fsecret.txt",
        "/supervisor/recordings/-1",
    ] {
        assert_eq!(
            request(addr, "GET", path, &[("Authorization", &auth)]).0,
            404,
            "{path}"
        );
    }
    // Without a login: neither the search nor the file.
    assert_eq!(
        request(addr, "GET", "/supervisor/recordings?caller=139", &[]).0,
        401
    );
    assert_eq!(
        request(addr, "GET", &path, &[("Range", "bytes=0-10")]).0,
        401
    );
    // Every search is a row, every playback from its start too (with its call); seeks are not.
    let rows = events(&dir);
    let searches = rows.iter().filter(|r| r.1 == "search").count();
    assert_eq!(searches, 11 + 1 + 4, "{rows:?}");
    let plays: Vec<_> = rows.iter().filter(|r| r.1 == "play").collect();
    assert_eq!(plays.len(), 1, "{rows:?}");
    assert_eq!(plays[0].2.as_deref(), Some("c1"));
    assert!(rows.iter().all(|r| r.0 == SUPERVISOR));
    server.stop(Duration::from_secs(10));
}

#[test]
fn live_calls_show_flow_node_caller_and_duration() {
    need_sipp!();
    let config = deployment("live", "sqlite://ivr-data/ivr.db");
    let dir = config.parent().expect("dir").to_path_buf();
    let mut server = Server::start(&config, &[]);
    let addr = server.http();
    let auth = basic(SUPERVISOR, PASSWORD);
    assert_eq!(request(addr, "GET", "/supervisor/calls", &[]).0, 401);
    let (code, _, body) = request(
        addr,
        "GET",
        "/supervisor/calls",
        &[("Authorization", &auth)],
    );
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(v["calls"].as_array().map(Vec::len), Some(0));
    // A call held in the menu for 4 s.
    let sip = server.addr;
    let caller = std::thread::spawn(move || {
        let media = Endpoint::start(Vec::new());
        let port = media.port.to_string();
        let r = sipp(
            &dir,
            sip,
            "call_bye.xml",
            &["-m", "1", "-d", "4000", "-key", "rtpport", &port],
        );
        media.finish();
        r
    });
    let started = std::time::Instant::now();
    let mut seen = None;
    while started.elapsed() < Duration::from_secs(10) {
        let (_, _, body) = request(
            addr,
            "GET",
            "/supervisor/calls",
            &[("Authorization", &auth)],
        );
        let v: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        if let Some(c) = v["calls"].as_array().and_then(|a| a.first())
            && c["node"] == "choose"
            && c["duration_ms"].as_u64().unwrap_or(0) > 500
        {
            seen = Some(c.clone());
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let c = seen.unwrap_or_else(|| panic!("the call in the menu is not listed\n{}", server.log()));
    assert_eq!(c["caller"], CALLER, "{c}");
    assert_eq!(c["flow"], "t");
    assert_eq!(c["channel"], "sip");
    assert!(
        c["call_id"].as_str().is_some_and(|id| !id.is_empty()),
        "{c}"
    );
    assert!(c["agent"].is_null() && c["queue"].is_null(), "{c}");
    let (ok, out) = caller.join().expect("sipp thread");
    assert!(ok, "{out}");
    server.stop(Duration::from_secs(10));
}

/// SIPp in the background (an agent's phone), killed when dropped.
struct Background(std::process::Child);

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("port")
        .port()
}

#[test]
fn a_call_talking_with_an_agent_shows_its_queue_and_agent() {
    need_sipp!();
    let config = deployment("agent", "sqlite://ivr-data/ivr.db");
    let dir = config.parent().expect("dir").to_path_buf();
    let mut server = Server::start(&config, &[]);
    let addr = server.http();
    let auth = basic(SUPERVISOR, PASSWORD);
    // Agent 2001's phone: answers and talks 3 s (its audio from a test endpoint).
    let agent_media = Endpoint::start(Vec::new());
    let port = free_udp_port();
    let work = dir.join("phone");
    fs::create_dir_all(&work).expect("phone dir");
    let phone = Background(
        std::process::Command::new("sipp")
            .current_dir(&work)
            .arg("-sf")
            .arg(repo().join("tests/sipp/agent_talks.xml"))
            .arg(server.addr.to_string())
            .args([
                "-i",
                "127.0.0.1",
                "-mi",
                "127.0.0.1",
                "-mp",
                &free_udp_port().to_string(),
            ])
            .args([
                "-p",
                &port.to_string(),
                "-m",
                "1",
                "-key",
                "agentrtp",
                &agent_media.port.to_string(),
            ])
            .args(["-nostdin", "-timeout", "30", "-timeout_error"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("sipp"),
    );
    let (ok, out) = sipp(
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
            "agent-pass",
        ],
    );
    assert!(ok, "the agent did not register:\n{out}\n{}", server.log());
    // A caller of 10020, queued, then talking with 2001.
    let sip = server.addr;
    let call_dir = dir.clone();
    let caller = std::thread::spawn(move || {
        let media = Endpoint::start(Vec::new());
        let port = media.port.to_string();
        let r = sipp(
            &call_dir,
            sip,
            "call_bye.xml",
            &[
                "-m", "1", "-s", "10020", "-d", "6000", "-key", "rtpport", &port,
            ],
        );
        media.finish();
        r
    });
    let started = std::time::Instant::now();
    let mut seen = None;
    let mut last = serde_json::Value::Null;
    while started.elapsed() < Duration::from_secs(15) {
        let (_, _, body) = request(
            addr,
            "GET",
            "/supervisor/calls",
            &[("Authorization", &auth)],
        );
        last = serde_json::from_slice(&body).expect("JSON");
        if let Some(c) = last["calls"].as_array().and_then(|a| {
            a.iter()
                .find(|c| c["agent"] == "2001" && c["agent_state"] == "on_call")
        }) {
            seen = Some(c.clone());
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let c =
        seen.unwrap_or_else(|| panic!("no call with agent 2001 on call: {last}\n{}", server.log()));
    assert_eq!(c["queue"], "general", "{c}");
    assert_eq!(c["flow"], "q", "{c}");
    assert_eq!(c["caller"], CALLER, "{c}");
    drop(phone);
    let _ = caller.join();
    agent_media.finish();
    server.stop(Duration::from_secs(10));
}
