//! The supervisor's view of `ivr serve`, end to end: a SIPp call shows in `/metrics` and on
//! `GET /dashboard/state` under its flow and node, then in the counters of ended calls; queues,
//! agents and the pacer's late frames are there too; and the dashboard page in headless
//! Chromium (tests/browser/dashboard.mjs with playwright-core) sees the call come and go over
//! its WebSocket and shows a failed reload after a flow file is broken.
//!
//! The tests skip themselves (with a message) when `sipp`, `node`, `chromium` or
//! playwright-core is missing (scripts/test.sh installs them).

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::*;

const FLOW: &str = r##"
flow t {
    title    "dashboard test"
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

/// A deployment of the test flow with a queue and an agent (who never registers).
fn deployment(name: &str) -> PathBuf {
    let dir = temp_dir(name);
    fs::create_dir_all(dir.join("flows")).expect("flows");
    fs::create_dir_all(dir.join("prompts/zh-CN")).expect("prompts");
    fs::write(dir.join("flows/t.flow"), FLOW).expect("flow");
    write_prompts(
        &dir,
        &[
            ("hello", "hello", 440.0, 300),
            ("options", "options", 660.0, 300),
            ("bye", "bye", 880.0, 300),
        ],
    );
    let rtp = rtp_range(20);
    fs::write(
        dir.join("ivr.toml"),
        format!(
            r#"{}[queues.general]
skills = []

[agents.2001]
name = "Wang Fang"
ha1  = "bf715e98225da5507a0ec09b14207408"

[routes]
default = "t"
"#,
            config_head(rtp)
        ),
    )
    .expect("config");
    dir.join("ivr.toml")
}

/// Polls `GET path` until `ok` holds for the body (at most `within`): the last body, and
/// whether it held.
fn get_until(
    server: &Server,
    path: &str,
    within: Duration,
    ok: impl Fn(&str) -> bool,
) -> (String, bool) {
    let started = Instant::now();
    loop {
        let (code, _, body) = http_get(server.http(), path);
        assert_eq!(code, 200, "{path}: {body}");
        if ok(&body) {
            return (body, true);
        }
        if started.elapsed() > within {
            return (body, false);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn has_line(metrics: &str, line: &str) -> bool {
    metrics.lines().any(|l| l == line)
}

/// A call held in the menu for 4 s, placed by SIPp in a thread of its own.
fn call_in_thread(server: &Server, dir: PathBuf) -> std::thread::JoinHandle<(bool, String)> {
    let addr = server.addr;
    std::thread::spawn(move || {
        let media = Endpoint::start(Vec::new());
        let port = media.port.to_string();
        let r = sipp(
            &dir,
            addr,
            "call_bye.xml",
            &["-m", "1", "-d", "4000", "-key", "rtpport", &port],
        );
        media.finish();
        r
    })
}

#[test]
fn metrics_and_state_show_calls_by_flow_and_node_queues_agents_and_late_frames() {
    need_sipp!();
    let config = deployment("dashboard-metrics");
    let dir = config.parent().expect("dir").to_path_buf();
    let server = Server::start(&config, &[]);

    let (metrics, _) = get_until(&server, "/metrics", Duration::ZERO, |_| true);
    for line in [
        "ivr_calls_in_progress 0",
        "ivr_calls_started_total 0",
        "ivr_calls_ended_total{flow=\"t\",outcome=\"not_served\"} 0",
        "ivr_queue_waiting{queue=\"general\"} 0",
        "ivr_agents{state=\"offline\"} 1",
        "ivr_agents{state=\"available\"} 0",
        "ivr_reloads_total{result=\"failed\"} 0",
        // (How late the pacer is depends on the machine's load: only that they are there.)
        "# TYPE ivr_rtp_late_ticks_total counter",
        "# TYPE ivr_rtp_late_packets_total counter",
    ] {
        assert!(has_line(&metrics, line), "{line}:\n{metrics}");
    }

    let sipp = call_in_thread(&server, dir);
    let (metrics, seen) = get_until(&server, "/metrics", Duration::from_secs(10), |m| {
        has_line(m, "ivr_calls_in_node{flow=\"t\",node=\"choose\"} 1")
    });
    assert!(
        seen,
        "the call is not in the menu:\n{metrics}\n{}",
        server.log()
    );
    assert!(has_line(&metrics, "ivr_calls_in_progress 1"), "{metrics}");
    assert!(has_line(&metrics, "ivr_calls_started_total 1"), "{metrics}");
    // The family's samples stay together, after its HELP and TYPE.
    let family: Vec<&str> = metrics
        .lines()
        .skip_while(|l| !l.starts_with("# TYPE ivr_calls_in_node "))
        .skip(1)
        .take_while(|l| !l.starts_with('#'))
        .collect();
    assert_eq!(family, ["ivr_calls_in_node{flow=\"t\",node=\"choose\"} 1"]);

    let (code, kind, body) = http_get(server.http(), "/dashboard/state");
    assert_eq!(code, 200);
    assert!(kind.starts_with("application/json"), "{kind}");
    let state: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(state["calls"]["in_progress"], 1, "{state}");
    assert_eq!(state["calls"]["by_channel"]["sip"], 1, "{state}");
    assert_eq!(state["calls"]["by_node"][0]["flow"], "t", "{state}");
    assert_eq!(state["calls"]["by_node"][0]["node"], "choose", "{state}");
    assert_eq!(state["queues"][0]["name"], "general", "{state}");
    assert_eq!(state["queues"][0]["waiting"], 0, "{state}");
    assert_eq!(state["agents"]["by_state"]["offline"], 1, "{state}");
    assert_eq!(state["agents"]["list"][0]["id"], "2001", "{state}");
    assert!(state["live"]["version"].is_string(), "{state}");
    assert!(state["media"]["late_packets"].is_u64(), "{state}");
    assert!(
        !body.contains(CALLER),
        "the caller's number is on the dashboard: {body}"
    );

    let (ok, out) = sipp.join().expect("sipp thread");
    assert!(ok, "sipp failed:\n{out}\n{}", server.log());
    let (metrics, ended) = get_until(&server, "/metrics", Duration::from_secs(10), |m| {
        has_line(m, "ivr_calls_in_progress 0")
            && m.lines()
                .filter_map(|l| l.strip_prefix("ivr_calls_ended_total{"))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
                .sum::<u64>()
                == 1
    });
    assert!(ended, "the call did not end:\n{metrics}");
    assert!(
        !metrics.contains("ivr_calls_in_node{"),
        "a node still counts the call:\n{metrics}"
    );
    let (_, _, body) = http_get(server.http(), "/dashboard/state");
    let state: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(state["calls"]["started"], 1, "{state}");
    assert_eq!(state["calls"]["by_node"], serde_json::json!([]), "{state}");
    // The one call ended in flow t, with one of the seven outcomes; every outcome is listed.
    let by_flow = &state["calls"]["ended_by_flow"]["t"];
    assert_eq!(by_flow.as_object().map(|o| o.len()), Some(7), "{state}");
    assert_eq!(
        by_flow
            .as_object()
            .map(|o| o.values().filter_map(|v| v.as_u64()).sum::<u64>()),
        Some(1),
        "{state}"
    );
    // One call started within the last 10 s (it may have slipped out of the window by now).
    assert!(state["calls"]["per_second"].as_f64().is_some(), "{state}");
}

#[test]
fn the_dashboard_page_is_served() {
    let config = deployment("dashboard-page");
    let server = Server::start(&config, &[]);
    let (code, kind, body) = http_get(server.http(), "/dashboard");
    assert_eq!(code, 200);
    assert!(kind.starts_with("text/html"), "{kind}");
    assert!(body.contains("/dashboard/ws"), "{body}");
}

/// The command that runs `name --version`, if it does.
fn runs(name: &str) -> bool {
    Command::new(name)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Chromium on the PATH, if any.
fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .flat_map(|c| std::env::split_paths(&path).map(move |d| d.join(c)))
        .find(|c| c.is_file() && runs(&c.to_string_lossy()))
}

#[test]
fn the_dashboard_in_chromium_follows_a_call_and_shows_a_failed_reload() {
    need_sipp!();
    let browser_dir = repo().join("tests/browser");
    if !runs("node") {
        skip("node is not installed: test skipped");
        return;
    }
    let Some(chromium) = chromium() else {
        skip("chromium is not installed: test skipped");
        return;
    };
    if !browser_dir.join("node_modules/playwright-core").is_dir() {
        skip(
            "playwright-core is not installed (cd tests/browser && npm install --no-save \
             playwright-core): test skipped",
        );
        return;
    }
    let config = deployment("dashboard-chromium");
    let dir = config.parent().expect("dir").to_path_buf();
    let server = Server::launch(&config, true, &[]);
    let url = format!("http://{}/dashboard", server.http());
    let err_path = dir.join("dashboard.err");
    let mut child = Command::new("node")
        .current_dir(&browser_dir)
        .args(["dashboard.mjs", &url, "t", "choose"])
        .env("CHROMIUM", chromium)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(fs::File::create(&err_path).expect("err"))
        .spawn()
        .expect("node");
    // The script's lines, read in a thread (so that a stuck script cannot block the test).
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stdout = child.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let next = |what: &str, within: Duration| -> String {
        match rx.recv_timeout(within) {
            Ok(line) if line.starts_with(what) => line[what.len()..].trim().to_string(),
            other => {
                let err = fs::read_to_string(&err_path).unwrap_or_default();
                panic!(
                    "expected `{what}` from dashboard.mjs, got {other:?}\n{err}\n{}",
                    server.log()
                )
            }
        }
    };
    next("ready", Duration::from_secs(60));
    let sipp = call_in_thread(&server, dir.clone());
    let call: serde_json::Value =
        serde_json::from_str(&next("call", Duration::from_secs(30))).expect("JSON");
    assert_eq!(call["calls"], "1", "{call}");
    assert_eq!(call["in_progress"], "1", "{call}");
    let text = call["text"].as_str().unwrap_or_default();
    assert!(
        !text.contains(CALLER),
        "the caller's number is on the dashboard: {text}"
    );
    let (ok, out) = sipp.join().expect("sipp thread");
    assert!(ok, "sipp failed:\n{out}\n{}", server.log());
    let gone: serde_json::Value =
        serde_json::from_str(&next("gone", Duration::from_secs(30))).expect("JSON");
    assert_eq!(gone["in_progress"], "0", "{gone}");

    // A broken edit: the watcher reloads, the reload fails, the dashboard says so.
    fs::write(
        dir.join("flows/t.flow"),
        FLOW.replace("key 1 -> bye", "key 1 -> nowhere"),
    )
    .expect("edit");
    let reload: serde_json::Value =
        serde_json::from_str(&next("reload", Duration::from_secs(30))).expect("JSON");
    let said = reload["text"].as_str().unwrap_or_default();
    assert!(said.starts_with("failed at"), "{reload}");
    assert!(said.contains("1 error(s)"), "{reload}");
    assert!(
        reload["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("nowhere"),
        "{reload}"
    );
    let started = Instant::now();
    let status = loop {
        if let Ok(Some(s)) = child.try_wait() {
            break Some(s);
        }
        if started.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        status.is_some_and(|s| s.success()),
        "dashboard.mjs: {status:?}"
    );
}
