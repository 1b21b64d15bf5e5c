//! The supervisor's view of `ivr serve`, end to end: a SIPp call shows in `/metrics` and on
//! `GET /dashboard/state` under its flow and node, then in the counters of ended calls; queues,
//! agents and the pacer's late frames are there too; and the dashboard page in headless
//! Chromium (tests/browser/dashboard.mjs with playwright-core) sees the call come and go over
//! its WebSocket and shows a failed reload after a flow file is broken.
//!
//! The flow map (`/flows`, `/flows/NAME` and its SVG, JSON and live counts) is followed
//! through a call too: the SVG draws every node, the JSON gives each node's source lines, the
//! node the call is in counts it, its visits today come from the records after it ends, and
//! no caller data is anywhere; in Chromium (tests/browser/flow_map.mjs) the node turns from
//! idle to busy and back.
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
        "ivr_queue_overflowed_total{queue=\"general\"} 0",
        "ivr_queue_overflow_answered_total{queue=\"general\"} 0",
        "ivr_agents{state=\"offline\"} 1",
        "ivr_agents{state=\"available\"} 0",
        "ivr_reloads_total{result=\"failed\"} 0",
        "ivr_recording_frames_written_total 0",
        "ivr_recording_frames_dropped_total 0",
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

fn json(server: &Server, path: &str) -> serde_json::Value {
    let (code, kind, body) = http_get(server.http(), path);
    assert_eq!(code, 200, "{path}: {body}");
    assert!(kind.starts_with("application/json"), "{path}: {kind}");
    assert!(
        !body.contains(CALLER),
        "{path} shows the caller's number: {body}"
    );
    serde_json::from_str(&body).expect("JSON")
}

#[test]
fn the_flow_map_draws_the_flow_and_counts_calls_and_visits() {
    need_sipp!();
    let config = deployment("dashboard-flow-map");
    let dir = config.parent().expect("dir").to_path_buf();
    let server = Server::start(&config, &[]);

    let (code, kind, list) = http_get(server.http(), "/flows");
    assert_eq!(code, 200);
    assert!(kind.starts_with("text/html"), "{kind}");
    assert!(list.contains("<a href=\"/flows/t\">t</a>"), "{list}");
    assert!(list.contains("dashboard test"), "{list}");
    let (code, kind, page) = http_get(server.http(), "/flows/t");
    assert_eq!(code, 200);
    assert!(kind.starts_with("text/html"), "{kind}");
    assert!(page.contains("/dashboard/ws?flow="), "{page}");
    for missing in [
        "/flows/nope",
        "/flows/nope/map.svg",
        "/flows/nope/map.json",
        "/flows/nope/live",
    ] {
        assert_eq!(http_get(server.http(), missing).0, 404, "{missing}");
    }

    // The drawing: every node, every exit with its label, escaped, nothing else.
    let (code, kind, svg) = http_get(server.http(), "/flows/t/map.svg");
    assert_eq!(code, 200);
    assert!(kind.starts_with("image/svg+xml"), "{kind}");
    for node in ["hello", "choose", "bye"] {
        assert!(
            svg.contains(&format!("data-node=\"{node}\"")),
            "{node}: {svg}"
        );
    }
    for (from, label, to) in [
        ("hello", "goto", "choose"),
        ("choose", "key 1", "bye"),
        ("choose", "attempts", "bye"),
        ("bye", "hangup", "hangup"),
    ] {
        let edge = format!("data-from=\"{from}\" data-to=\"{to}\" data-label=\"{label}\"");
        assert!(svg.contains(&edge), "{edge}: {svg}");
    }
    assert_eq!(svg.matches("<g class=\"node ").count(), 3, "{svg}");

    // What the page reads besides the drawing: kinds, files, source lines, exits.
    let map = json(&server, "/flows/t/map.json");
    assert_eq!(map["flow"], "t", "{map}");
    assert_eq!(map["entry"], "hello", "{map}");
    let choose = map["nodes"]
        .as_array()
        .and_then(|n| n.iter().find(|n| n["name"] == "choose"))
        .cloned()
        .expect("choose");
    assert_eq!(choose["kind"], "menu");
    assert_eq!(choose["file"], "flows/t.flow");
    let first = FLOW
        .lines()
        .position(|l| l.starts_with("menu choose"))
        .expect("line")
        + 1;
    assert_eq!(choose["line"], first, "{choose}");
    assert_eq!(choose["end_line"], first + 5, "{choose}");
    let source = choose["source"].as_str().unwrap_or_default();
    assert!(
        source.starts_with("menu choose {") && source.contains("key 1 -> bye"),
        "{source}"
    );
    assert!(
        map["exits"].as_array().is_some_and(|e| e
            .iter()
            .any(|e| e["from"] == "choose" && e["label"] == "key 1" && e["to"] == "bye")),
        "{map}"
    );
    assert!(map["svg"]["layout_ms"].is_number(), "{map}");

    let live = json(&server, "/flows/t/live");
    assert_eq!(live["live"], true, "{live}");
    assert_eq!(live["visits"], "records", "{live}");
    assert_eq!(live["nodes"], serde_json::json!({}), "{live}");

    // A call in the menu: the node counts it, here and on the WebSocket's messages.
    let sipp = call_in_thread(&server, dir);
    let (body, seen) = get_until(&server, "/flows/t/live", Duration::from_secs(10), |b| {
        serde_json::from_str::<serde_json::Value>(b)
            .is_ok_and(|v| v["nodes"]["choose"]["calls"] == 1)
    });
    assert!(
        seen,
        "the map does not show the call in the menu: {body}\n{}",
        server.log()
    );
    assert!(!body.contains(CALLER), "{body}");
    let (ok, out) = sipp.join().expect("sipp thread");
    assert!(ok, "sipp failed:\n{out}\n{}", server.log());

    // Once it ended, today's visits from the records (read at most every 10 s).
    let (body, seen) = get_until(&server, "/flows/t/live", Duration::from_secs(25), |b| {
        serde_json::from_str::<serde_json::Value>(b).is_ok_and(|v| {
            v["nodes"]["choose"]["calls"] == 0
                && v["nodes"]["hello"]["visits_today"] == 1
                && v["nodes"]["choose"]["visits_today"] == 1
        })
    });
    assert!(
        seen,
        "no visits today from the records: {body}\n{}",
        server.log()
    );

    // The charts' series: at least the first sample.
    let history = json(&server, "/dashboard/history");
    assert!(
        history["calls"]["points"]
            .as_array()
            .is_some_and(|p| !p.is_empty()),
        "{history}"
    );
    assert_eq!(history["calls"]["every_s"], 10, "{history}");
    assert!(
        history["queues"]["by_queue"]["general"].is_array(),
        "{history}"
    );
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
    // The deployment and each flow's version, labelled apart (as /status has them).
    let (_, _, body) = http_get(server.http(), "/status");
    let status: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let version = status["flows"][0]["version"].as_str().expect("version");
    let deployment = status["deployment"].as_str().expect("deployment");
    assert!(
        text.contains(&format!("Live deployment {deployment}")),
        "{text}"
    );
    assert!(text.contains(&format!("t {version}")), "{text}");
    assert!(text.contains("Wang Fang (2001)"), "{text}");
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

/// A library flow `lib` that `t` imports (its `bye` is `t`'s key 2): checked and run inside
/// `t`, routed by no number.
fn deployment_with_library(name: &str) -> PathBuf {
    let config = deployment(name);
    let dir = config.parent().expect("dir").to_path_buf();
    fs::write(
        dir.join("flows/t.flow"),
        FLOW.replace("flow t {", "import lib\n\nflow t {")
            .replace("key 1 -> bye", "key 1 -> bye\n    key 2 -> lib.bye"),
    )
    .expect("flow");
    fs::write(
        dir.join("flows/lib.flow"),
        "flow lib {\n    title    \"library\"\n    language zh-CN\n    entry    bye\n}\n\n\
         step bye {\n    play bye\n    hangup\n}\n",
    )
    .expect("library");
    config
}

/// One version per flow wherever it is shown (`ivr compile`, the start-up line, `/status`,
/// the dashboard, `/metrics`), the deployment's identity labelled apart; an agent offline
/// since the start has no `for_ms`; the phone page offers no library flow.
#[test]
fn versions_are_one_per_flow_and_the_deployment_is_labelled_apart() {
    let config = deployment_with_library("dashboard-versions");
    let server = Server::start(&config, &[]);
    let compiled = Command::new(env!("CARGO_BIN_EXE_ivr"))
        .args(["--config", &config.to_string_lossy(), "compile", "t"])
        .output()
        .expect("ivr compile");
    assert!(compiled.status.success(), "{compiled:?}");
    let program: serde_json::Value = serde_json::from_slice(&compiled.stdout).expect("JSON");
    let version = program["version"].as_str().expect("version").to_string();

    let (_, _, body) = http_get(server.http(), "/status");
    let status: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let deployment = status["deployment"]
        .as_str()
        .expect("deployment")
        .to_string();
    assert_eq!(status["version"], deployment.as_str(), "{status}");
    assert_ne!(deployment, version, "{status}");
    let flows = status["flows"].as_array().expect("flows");
    let t = flows.iter().find(|f| f["name"] == "t").expect("t");
    assert_eq!(t["version"], version.as_str(), "{status}");
    assert_eq!(t["library"], false, "{status}");
    let lib = flows.iter().find(|f| f["name"] == "lib").expect("lib");
    assert_eq!(lib["library"], true, "{status}");

    let log = server.log();
    assert!(
        log.contains(&format!("deployment {deployment}; flow versions: ")),
        "{log}"
    );
    assert!(log.contains(&format!("t {version}")), "{log}");
    assert!(log.contains(" (library)"), "{log}");

    let (_, _, body) = http_get(server.http(), "/dashboard/state");
    let state: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(state["live"]["deployment"], deployment.as_str(), "{state}");
    assert!(
        state["live"]["flows"]
            .as_array()
            .is_some_and(|f| f.iter().any(|f| f["version"] == version.as_str())),
        "{state}"
    );
    // Offline since the server started: since when is unknown, never a since-1970 figure.
    assert_eq!(state["agents"]["list"][0]["state"], "offline", "{state}");
    assert!(state["agents"]["list"][0]["for_ms"].is_null(), "{state}");

    let (_, _, metrics) = http_get(server.http(), "/metrics");
    assert!(
        has_line(
            &metrics,
            &format!("ivr_flow_version_info{{flow=\"t\",version=\"{version}\"}} 1")
        ),
        "{metrics}"
    );

    let (code, _, routes) = http_get(server.http(), "/routes");
    assert_eq!(code, 200, "{routes}");
    assert!(routes.contains("\"route\":\"t\""), "{routes}");
    assert!(
        !routes.contains("\"lib\""),
        "a library flow is offered: {routes}"
    );
}

#[test]
fn the_flow_map_in_chromium_turns_the_node_of_a_call_busy() {
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
    let config = deployment("dashboard-flow-map-chromium");
    let dir = config.parent().expect("dir").to_path_buf();
    let server = Server::launch(&config, true, &[]);
    let url = format!("http://{}/flows/t", server.http());
    let err_path = dir.join("flow_map.err");
    let mut child = Command::new("node")
        .current_dir(&browser_dir)
        .args(["flow_map.mjs", &url, "choose", "extra"])
        .env("CHROMIUM", chromium)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(fs::File::create(&err_path).expect("err"))
        .spawn()
        .expect("node");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stdout = child.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let next = |what: &str, within: Duration| -> serde_json::Value {
        match rx.recv_timeout(within) {
            Ok(line) if line.starts_with(what) => {
                serde_json::from_str(line[what.len()..].trim()).expect("JSON")
            }
            other => {
                let err = fs::read_to_string(&err_path).unwrap_or_default();
                panic!(
                    "expected `{what}` from flow_map.mjs, got {other:?}\n{err}\n{}",
                    server.log()
                )
            }
        }
    };
    let ready = next("ready", Duration::from_secs(60));
    assert_eq!(ready["class"], "node idle kind-menu", "{ready}");
    assert_eq!(ready["nodes"], 3, "{ready}");
    let sipp = call_in_thread(&server, dir.clone());
    let busy = next("busy", Duration::from_secs(30));
    assert!(
        busy["class"].as_str().is_some_and(|c| c.contains("busy")),
        "{busy}"
    );
    assert!(
        busy["stats"]
            .as_str()
            .is_some_and(|s| s.starts_with("1 now")),
        "{busy}"
    );
    let source = busy["source"].as_str().unwrap_or_default();
    assert!(source.starts_with("menu choose {"), "{busy}");
    let text = busy["text"].as_str().unwrap_or_default();
    assert!(
        !text.contains(CALLER),
        "the caller's number is on the flow map: {text}"
    );
    let (ok, out) = sipp.join().expect("sipp thread");
    assert!(ok, "sipp failed:\n{out}\n{}", server.log());
    let idle = next("idle", Duration::from_secs(30));
    assert!(
        idle["class"].as_str().is_some_and(|c| c.contains("idle")),
        "{idle}"
    );

    // A new version goes live (the watcher reloads it): the map draws it again.
    let before = ready["version"].clone();
    fs::write(
        dir.join("flows/t.flow"),
        FLOW.replace("key 1 -> bye", "key 1 -> bye\n    key 2 -> extra")
            + "\nstep extra {\n    play bye\n    hangup\n}\n",
    )
    .expect("edit");
    let redrawn = next("redrawn", Duration::from_secs(40));
    assert_eq!(redrawn["nodes"], 4, "{redrawn}");
    assert_ne!(redrawn["version"], before, "{redrawn}");
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
        "flow_map.mjs: {status:?}"
    );
}
