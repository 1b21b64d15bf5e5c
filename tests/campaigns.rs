//! Campaigns end to end: `ivr serve` dials a list through a trunk whose gateway is SIPp
//! (tests/sipp/campaign_gateway.xml), with three customers behind it: one answers (its audio
//! goes to the test's RTP endpoint, which hears the flow's prompt and presses 1), one is busy,
//! one never answers. Attempts and retries follow the campaign's settings (short times),
//! pause holds new calls, and every attempt is a row of `campaign_attempts`.

mod common;

use common::*;
use std::fs;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const FLOW: &str = r#"
flow notice {
    title    "arrears notice"
    language zh-CN
    entry    ask
}

menu ask {
    prompt   amount
    timeout  5s
    attempts 2 -> bye
    key 1 -> confirm
}

step confirm {
    play thanks
    served "confirmed"
    hangup
}

step bye {
    play thanks
    hangup
}
"#;

/// A deployment whose campaign `arrears` dials three numbers through a trunk at `gateway`.
fn deployment(name: &str, gateway: u16, attempts: u32, retry_after: &str) -> PathBuf {
    let dir = temp_dir(name);
    fs::create_dir_all(dir.join("flows")).expect("flows");
    fs::write(dir.join("flows/notice.flow"), FLOW).expect("flow");
    write_prompts(
        &dir,
        &[
            ("amount", "您的欠费是", 440.0, 800),
            ("thanks", "谢谢", 660.0, 300),
        ],
    );
    let mut toml = config_head(rtp_range(20));
    toml.push_str(&format!(
        r#"
[queries.arrears_due]
sql    = "SELECT '13800000001' AS phone UNION ALL SELECT '13800000002' UNION ALL SELECT '13800000003'"
fields = {{ phone = "text" }}

[trunks.carrier]
uri       = "sip:127.0.0.1:{gateway}"
caller_id = "10010"
max_calls = 10

[campaigns.arrears]
flow         = "notice"
list         = "arrears_due"
trunk        = "carrier"
max_calls    = 5
rate         = 20
attempts     = {attempts}
retry_after  = "{retry_after}"
ring_timeout = "1500ms"
"#
    ));
    fs::write(dir.join("ivr.toml"), toml).expect("ivr.toml");
    dir.join("ivr.toml")
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// SIPp as the gateway, for `calls` INVITEs.
fn gateway(dir: &Path, port: u16, rtp: u16, calls: usize) -> Child {
    gateway_with("campaign_gateway.xml", dir, port, rtp, calls)
}

/// SIPp as the gateway with `scenario`, for `calls` calls.
fn gateway_with(scenario: &str, dir: &Path, port: u16, rtp: u16, calls: usize) -> Child {
    Command::new("sipp")
        .current_dir(dir)
        .arg("-sf")
        .arg(repo().join("tests/sipp").join(scenario))
        .args([
            "-i",
            "127.0.0.1",
            "-mi",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        .args([
            "-m",
            &calls.to_string(),
            "-key",
            "rtpport",
            &rtp.to_string(),
        ])
        .args([
            "-nostdin",
            "-timeout",
            "60",
            "-timeout_error",
            "-trace_err",
            "-trace_logs",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sipp")
}

fn status(http: SocketAddr) -> serde_json::Value {
    let (code, _, body) = http_get(http, "/campaigns/arrears");
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).expect("JSON")
}

fn post(http: SocketAddr, what: &str) -> serde_json::Value {
    let (code, _, body) =
        http_request(http, "POST", &format!("/campaigns/arrears/{what}"), &[], "");
    assert!(code == 200 || code == 202, "{code} {body}");
    serde_json::from_str(&body).expect("JSON")
}

fn wait_for(
    server: &Server,
    what: &str,
    test: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let started = Instant::now();
    loop {
        let s = status(server.http());
        if test(&s) {
            return s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "not {what} in 30 s: {s}\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The rows of `campaign_attempts`: (phone, attempt, result, outcome).
fn attempts(dir: &Path) -> Vec<(String, u32, Option<String>, Option<String>)> {
    block_on(async {
        let pool = ivr_data::connect::open(
            &ivr_data::Target::SqliteFile(dir.join("ivr-data/ivr.db")),
            1,
        )
        .await
        .expect("open the database");
        let rows = ivr_data::campaigns::attempts(&pool, "arrears")
            .await
            .expect("attempts");
        pool.close().await;
        rows.into_iter()
            .map(|r| (r.phone, r.attempt, r.result, r.outcome))
            .collect()
    })
}

fn sipp_done(mut child: Child, dir: &Path) {
    let started = Instant::now();
    loop {
        if let Ok(Some(s)) = child.try_wait() {
            let mut errors = String::new();
            for e in fs::read_dir(dir).into_iter().flatten().flatten() {
                if e.file_name().to_string_lossy().ends_with("_errors.log") {
                    errors.push_str(&fs::read_to_string(e.path()).unwrap_or_default());
                }
            }
            assert!(s.success(), "the gateway failed: {errors}");
            return;
        }
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("the gateway did not get its calls");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn three_customers_answered_busy_and_no_answer_with_retries_and_pause() {
    if !have_sipp() {
        return skip("sipp is not installed");
    }
    let gw = free_udp_port();
    let config = deployment("campaign", gw, 2, "1s");
    let dir = config.parent().expect("dir").to_path_buf();
    let callee = Endpoint::start(vec![(1_500, Act::Key('1'))]);
    // 5 INVITEs: the answered number once, the busy one and the silent one twice each.
    let sipp = gateway(&dir, gw, callee.port, 5);
    let server = Server::start(&config, &[]);

    // Not started: nobody is called.
    std::thread::sleep(Duration::from_millis(1_500));
    let s = status(server.http());
    assert_eq!(s["running"], false, "{s}");
    assert_eq!(s["attempts"], 0, "{s}");
    assert_eq!(s["total"], 3, "the list is read: {s}");

    let s = post(server.http(), "start");
    assert_eq!(s["running"], true, "{s}");
    // The first round, then a pause before the retries (1 s after the busy one ended).
    wait_for(&server, "the first round", |s| s["attempts"] == 3);
    // Paused with the command line, through the server's HTTP address.
    let http = server.http().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_ivr"))
        .args(["campaign", "pause", "arrears", "--http", &http])
        .output()
        .expect("ivr campaign");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("campaign arrears: paused"), "{text}");
    assert!(text.contains("numbers      3"), "{text}");
    std::thread::sleep(Duration::from_millis(2_500));
    let s = status(server.http());
    assert_eq!(s["attempts"], 3, "no new call while paused: {s}");
    assert_eq!(s["in_progress"], 0, "{s}");
    assert_eq!(s["answered"], 1, "{s}");

    post(server.http(), "start");
    let s = wait_for(&server, "finished", |s| s["finished"] == true);
    assert_eq!(
        (
            s["total"].clone(),
            s["done"].clone(),
            s["answered"].clone(),
            s["attempts"].clone()
        ),
        (3.into(), 3.into(), 1.into(), 5.into()),
        "{s}"
    );
    sipp_done(sipp, &dir);
    let out = Command::new(env!("CARGO_BIN_EXE_ivr"))
        .args(["campaign", "status", "arrears", "--http", &http])
        .output()
        .expect("ivr campaign");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.contains("campaign arrears: finished"), "{text}");
    assert!(text.contains("answered     1"), "{text}");
    let out = Command::new(env!("CARGO_BIN_EXE_ivr"))
        .args(["campaign", "start", "nosuch", "--http", &http])
        .output()
        .expect("ivr campaign");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("404"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The dashboard shows the campaign's progress.
    let (code, _, body) = http_get(server.http(), "/dashboard/state");
    assert_eq!(code, 200);
    let d: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let c = &d["campaigns"][0];
    assert_eq!(
        (c["name"].clone(), c["done"].clone()),
        ("arrears".into(), 3.into()),
        "{d}"
    );
    let (_, _, page) = http_get(server.http(), "/dashboard");
    assert!(page.contains("id=\"campaigns\""));

    // The answered customer heard the prompt and pressed 1.
    let (got, keys) = callee.finish();
    assert!(got.len() >= 30, "RTP of the prompt: {} packets", got.len());
    assert_eq!(keys.len(), 1);

    let mut rows = attempts(&dir);
    rows.sort();
    let s = |x: &str| Some(x.to_string());
    assert_eq!(
        rows,
        vec![
            ("13800000001".into(), 1, s("answered"), s("self_service")),
            ("13800000002".into(), 1, s("busy"), None),
            ("13800000002".into(), 2, s("busy"), None),
            ("13800000003".into(), 1, s("no_answer"), None),
            ("13800000003".into(), 2, s("no_answer"), None),
        ],
        "{}",
        server.log()
    );

    // ivr report's campaign section.
    let out = Command::new(env!("CARGO_BIN_EXE_ivr"))
        .arg("--config")
        .arg(&config)
        .args(["report", "--format", "json"])
        .output()
        .expect("ivr report");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let c = &r["campaigns"][0];
    assert_eq!(c["campaign"], "arrears", "{r}");
    assert_eq!(
        (
            c["numbers"].clone(),
            c["reached"].clone(),
            c["attempts"].clone()
        ),
        (3.into(), 1.into(), 5.into()),
        "{c}"
    );
    assert_eq!(
        (c["busy"].clone(), c["no_answer"].clone()),
        (2.into(), 2.into()),
        "{c}"
    );
    assert_eq!(c["attempts_per_reach"], 1.0, "{c}");
    assert_eq!(c["outcomes"]["self_service"], 1, "{c}");
    let out = Command::new(env!("CARGO_BIN_EXE_ivr"))
        .arg("--config")
        .arg(&config)
        .arg("report")
        .output()
        .expect("ivr report");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("Campaigns (attempts started in the period)"),
        "{table}"
    );
}

#[test]
fn a_restart_mid_campaign_goes_on_from_its_rows_and_calls_nobody_twice() {
    if !have_sipp() {
        return skip("sipp is not installed");
    }
    let gw = free_udp_port();
    let config = deployment("campaign-restart", gw, 2, "5s");
    let dir = config.parent().expect("dir").to_path_buf();
    let callee = Endpoint::start(vec![(1_500, Act::Key('1'))]);
    let sipp = gateway(&dir, gw, callee.port, 5);
    let mut server = Server::start(&config, &[]);
    post(server.http(), "start");
    // The first round is over (the answered call too); the retries are 5 s away.
    wait_for(&server, "the first round over", |s| {
        s["attempts"] == 3 && s["in_progress"] == 0
    });
    assert!(
        server.stop(Duration::from_secs(10)).is_some(),
        "ivr serve stops"
    );
    drop(server);

    // Started again: the campaign was left started and goes on from its rows.
    let server = Server::start(&config, &[]);
    let s = wait_for(&server, "finished after the restart", |s| {
        s["finished"] == true
    });
    assert_eq!(s["running"], true, "{s}");
    assert_eq!(
        (
            s["done"].clone(),
            s["answered"].clone(),
            s["attempts"].clone()
        ),
        (3.into(), 1.into(), 5.into()),
        "{s}"
    );
    sipp_done(sipp, &dir);
    let _ = callee.finish();
    let mut rows = attempts(&dir);
    rows.sort();
    let numbers: Vec<(String, u32)> = rows.iter().map(|r| (r.0.clone(), r.1)).collect();
    assert_eq!(
        numbers,
        vec![
            ("13800000001".into(), 1),
            ("13800000002".into(), 1),
            ("13800000002".into(), 2),
            ("13800000003".into(), 1),
            ("13800000003".into(), 2),
        ],
        "each number once per attempt: {rows:?}"
    );
}

#[test]
fn a_gateway_that_challenges_gets_the_trunks_digest_credentials() {
    if !have_sipp() {
        return skip("sipp is not installed");
    }
    let gw = free_udp_port();
    let config = deployment("campaign-digest", gw, 1, "1s");
    let text = fs::read_to_string(&config).expect("ivr.toml");
    let text = text
        .replace(
            "max_calls = 10\n",
            "max_calls = 10\nusername  = \"ivr\"\npassword  = \"s3cret\"\n",
        )
        .replace(
            " UNION ALL SELECT '13800000002' UNION ALL SELECT '13800000003'",
            "",
        );
    fs::write(&config, text).expect("ivr.toml");
    let dir = config.parent().expect("dir").to_path_buf();
    let sipp = gateway_with("campaign_digest_gateway.xml", &dir, gw, 9, 1);
    let server = Server::start(&config, &[]);
    post(server.http(), "start");
    let s = wait_for(&server, "finished", |s| s["finished"] == true);
    assert_eq!(s["attempts"], 1, "{s}");
    sipp_done(sipp, &dir);
    let rows = attempts(&dir);
    assert_eq!(
        rows,
        vec![("13800000001".into(), 1, Some("busy".into()), None)],
        "486 after the credentials were accepted (403 would be failed): {}",
        server.log()
    );
}

#[test]
fn a_reload_of_ivr_toml_changes_a_running_campaign_and_a_removed_one_pauses() {
    // No call is placed: the campaign is never started, so no gateway is needed.
    let config = deployment("campaign-reload", 9, 1, "1s");
    let one = fs::read_to_string(&config).expect("ivr.toml").replace(
        " UNION ALL SELECT '13800000002' UNION ALL SELECT '13800000003'",
        "",
    );
    fs::write(&config, &one).expect("ivr.toml");
    let server = Server::launch(&config, true, &[]);
    wait_for(&server, "one number listed", |s| s["total"] == 1);

    // The list query's SQL is edited: the campaign reads the new list at once (it is not
    // started, so nothing else would read it again).
    let three = one.replace(
        "SELECT '13800000001' AS phone",
        "SELECT '13800000001' AS phone UNION ALL SELECT '13800000002' UNION ALL SELECT '13800000003'",
    );
    fs::write(&config, &three).expect("ivr.toml");
    let s = wait_for(&server, "three numbers listed after the reload", |s| {
        s["total"] == 3
    });
    assert!(s["error"].is_null(), "{s}");

    // The campaign is taken out of ivr.toml: it pauses and says why; its rows are kept.
    let cut = three.find("[campaigns.arrears]").expect("the campaign");
    fs::write(&config, &three[..cut]).expect("ivr.toml");
    let s = wait_for(&server, "paused after its removal", |s| {
        !s["error"].is_null()
    });
    assert_eq!(s["running"], false, "{s}");
    assert!(
        s["error"]
            .as_str()
            .is_some_and(|e| e.contains("no longer in ivr.toml")),
        "{s}"
    );
}

#[test]
fn a_campaign_added_by_a_reload_starts_paused_with_its_list() {
    // No call is placed: the campaign is never started, so no gateway is needed.
    let config = deployment("campaign-added", 9, 1, "1s");
    let full = fs::read_to_string(&config).expect("ivr.toml");
    let cut = full.find("[campaigns.arrears]").expect("the campaign");
    fs::write(&config, &full[..cut]).expect("ivr.toml");
    let server = Server::launch(&config, true, &[]);
    let (code, _, body) = http_get(server.http(), "/campaigns/arrears");
    assert_eq!(code, 404, "{body}");

    // The campaign is added to ivr.toml: the reload starts its task, which reads its list.
    fs::write(&config, &full).expect("ivr.toml");
    let started = Instant::now();
    let s = loop {
        let (code, _, body) = http_get(server.http(), "/campaigns/arrears");
        if code == 200 {
            let s: serde_json::Value = serde_json::from_str(&body).expect("JSON");
            if s["total"] == 3 {
                break s;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the added campaign has not read its list in 30 s: {code} {body}\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(s["running"], false, "{s}");
    assert!(s["error"].is_null(), "{s}");
    // It is steered like the others.
    let (code, _, body) = http_get(server.http(), "/campaigns");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"arrears\""), "{body}");
}
