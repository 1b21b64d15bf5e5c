//! Outcomes a supervisor can trust, end to end: SIPp callers on the reference hotline under
//! `ivr serve`. Callers who hang up in a menu after 3 s, and one who asks for an agent when
//! nobody is logged in and is sent to voice mail, are `not_served` and `message` in the call
//! records, in `ivr report` and in `/metrics` (never `self_service`). `/metrics` is then
//! checked as a Prometheus text exposition (HELP and TYPE before the samples of each family,
//! counters ending in `_total`, cumulative histogram buckets ending in `+Inf`) and for the
//! contact-centre series Grafana reads.

mod common;

use common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The reference deployment with its own database and RTP ports, agents "on duty" around the
/// clock (so `in_hours(agents)` holds whenever the test runs) and no agent logged in.
fn deployment(name: &str, rtp: (u16, u16)) -> PathBuf {
    let dir = temp_dir(name);
    let text = fs::read_to_string(repo().join("ivr.toml")).expect("ivr.toml");
    let mut out = String::new();
    for line in text.lines() {
        let key = line.split('=').next().unwrap_or_default().trim();
        let line = match key {
            "flows" => format!("flows = {:?}", repo().join("flows").display().to_string()),
            "prompts" => format!(
                "prompts = {:?}",
                repo().join("prompts").display().to_string()
            ),
            "recordings" => "recordings = \"recordings\"".to_string(),
            "rtp_ports" => format!("rtp_ports = \"{}-{}\"", rtp.0, rtp.1),
            "\"mon-fri\"" | "\"sat-sun\"" => format!("{key} = \"00:00-24:00\""),
            _ => line.to_string(),
        };
        out.push_str(&line);
        out.push('\n');
    }
    fs::write(dir.join("ivr.toml"), out).expect("config");
    dir.join("ivr.toml")
}

/// (outcome, ended_by) of every call, waiting for `n` rows.
fn outcomes(config: &Path, n: usize) -> Vec<(Option<String>, Option<String>)> {
    let db = config.parent().expect("dir").join("ivr-data/ivr.db");
    block_on(async {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
            .await
            .expect("db");
        let started = Instant::now();
        loop {
            let rows: Vec<(Option<String>, Option<String>)> =
                sqlx::query_as("SELECT outcome, ended_by FROM calls ORDER BY id")
                    .fetch_all(&pool)
                    .await
                    .expect("calls");
            if rows.len() >= n || started.elapsed() > Duration::from_secs(10) {
                return rows;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

/// One sample line: its family's name (without `_bucket`, `_sum`, `_count` for histograms is
/// up to the caller), its labels and its value.
fn sample(line: &str) -> (String, BTreeMap<String, String>, f64) {
    let (head, value) = line.rsplit_once(' ').expect("name and value");
    let value: f64 = match value {
        "+Inf" => f64::INFINITY,
        v => v.parse().unwrap_or_else(|_| panic!("value of {line}")),
    };
    let (name, labels) = match head.split_once('{') {
        Some((n, rest)) => (n, rest.strip_suffix('}').expect("closing brace")),
        None => (head, ""),
    };
    assert!(
        !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
            && !name.starts_with(|c: char| c.is_ascii_digit()),
        "metric name {name:?}"
    );
    let mut map = BTreeMap::new();
    let mut rest = labels;
    while !rest.is_empty() {
        let (k, v) = rest.split_once("=\"").expect("label=\"value\"");
        // The value ends at the first quote not escaped.
        let mut end = None;
        let mut escaped = false;
        for (i, c) in v.char_indices() {
            match c {
                '\\' if !escaped => escaped = true,
                '"' if !escaped => {
                    end = Some(i);
                    break;
                }
                _ => escaped = false,
            }
        }
        let end = end.expect("closing quote");
        map.insert(k.to_string(), v[..end].to_string());
        rest = v[end + 1..].trim_start_matches(',');
    }
    (name.to_string(), map, value)
}

/// Checks the text exposition format and returns the samples and each family's type.
#[allow(clippy::type_complexity)]
fn parse_exposition(
    text: &str,
) -> (
    Vec<(String, BTreeMap<String, String>, f64)>,
    BTreeMap<String, String>,
) {
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut helps: BTreeSet<String> = BTreeSet::new();
    let mut samples = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap_or_default();
            assert!(helps.insert(name.to_string()), "two HELP lines for {name}");
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, ty) = rest.split_once(' ').expect("TYPE name type");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&ty),
                "{line}"
            );
            assert!(helps.contains(name), "TYPE before HELP for {name}");
            assert!(
                types.insert(name.to_string(), ty.to_string()).is_none(),
                "two TYPE lines for {name}"
            );
            if ty == "counter" {
                assert!(name.ends_with("_total"), "counter {name} ends in _total");
            }
        } else {
            assert!(!line.starts_with('#'), "{line}");
            let (name, labels, value) = sample(line);
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| {
                    name.strip_suffix(s)
                        .filter(|f| types.get(*f).is_some_and(|t| t == "histogram"))
                })
                .unwrap_or(&name)
                .to_string();
            assert!(
                types.contains_key(&family),
                "sample before its TYPE: {line}"
            );
            if types[&family] == "counter" {
                assert!(value >= 0.0, "{line}");
            }
            samples.push((name, labels, value));
        }
    }
    // Histogram buckets: cumulative, ending in +Inf equal to _count.
    for (family, ty) in &types {
        if ty != "histogram" {
            continue;
        }
        let mut series: BTreeMap<Vec<(String, String)>, Vec<(f64, f64)>> = BTreeMap::new();
        for (name, labels, value) in &samples {
            if *name == format!("{family}_bucket") {
                let le = labels.get("le").expect("le");
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().expect("le number")
                };
                let key: Vec<(String, String)> = labels
                    .iter()
                    .filter(|(k, _)| *k != "le")
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                series.entry(key).or_default().push((le, *value));
            }
        }
        for (key, buckets) in series {
            assert!(
                buckets
                    .windows(2)
                    .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1),
                "{family} {key:?}: buckets not cumulative"
            );
            let last = buckets.last().expect("a bucket");
            assert!(last.0.is_infinite(), "{family} {key:?} ends in +Inf");
            let count = samples
                .iter()
                .find(|(n, l, _)| {
                    *n == format!("{family}_count")
                        && l.iter()
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect::<Vec<_>>()
                            == key
                })
                .map(|s| s.2);
            assert_eq!(count, Some(last.1), "{family} {key:?}: +Inf == _count");
        }
    }
    (samples, types)
}

/// `promtool check metrics` (Debian package prometheus) accepts the exposition: its parser
/// and its lint of the naming conventions (units, `_total`, HELP).
fn promtool_check(text: &str) {
    use std::io::Write as _;
    if Command::new("promtool").arg("--version").output().is_err() {
        skip(
            "promtool (Debian package prometheus) is not installed: /metrics checked by the parser here only",
        );
        return;
    }
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let o = child.wait_with_output().expect("promtool");
    assert!(
        o.status.success(),
        "promtool check metrics:\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

fn value(
    samples: &[(String, BTreeMap<String, String>, f64)],
    name: &str,
    labels: &[(&str, &str)],
) -> Option<f64> {
    samples
        .iter()
        .find(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(v))
        })
        .map(|s| s.2)
}

#[test]
fn callers_who_hang_up_in_a_menu_are_not_served_and_voice_mail_is_a_message() {
    need_sipp!();
    let config = deployment("outcomes-sipp", rtp_range(20));
    let dir = config.parent().expect("dir").to_path_buf();
    let server = Server::start(&config, &[]);
    // Three guests (a number that is no customer: the guest menu) hang up after 3 s.
    let (ok, out) = sipp(
        &dir,
        server.addr,
        "call_bye.xml",
        &[
            "-m",
            "3",
            "-l",
            "3",
            "-d",
            "3000",
            "-key",
            "caller",
            "13900000000",
            "-key",
            "rtpport",
            "9",
        ],
    );
    assert!(ok, "sipp failed:\n{out}\n{}", server.log());
    // One asks for an agent (0 in the guest menu, after the welcome and the menu), nobody is
    // logged in: "all agents busy", the voice mail, and the caller speaks before hanging up.
    // (Its own SIPp run: the call lasts 26 s, longer than the shared helper's timeout.)
    let o = Command::new("sipp")
        .current_dir(&dir)
        .arg("-sf")
        .arg(repo().join("tests/sipp/key_then_stay.xml"))
        .args(["-s", "100"])
        .arg(server.addr.to_string())
        .args(["-i", "127.0.0.1", "-mi", "127.0.0.1"])
        .args(["-nostdin", "-timeout", "60", "-timeout_error", "-trace_err"])
        .args(["-m", "1", "-d", "1500", "-key", "caller", "13900000000"])
        .args(["-key", "key", "0", "-key", "rtpport", "9"])
        .output()
        .expect("sipp");
    assert!(
        o.status.success(),
        "sipp failed:\n{}{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
        server.log()
    );

    let rows = outcomes(&config, 4);
    let count = |o: &str, by: &str| {
        rows.iter()
            .filter(|(a, b)| a.as_deref() == Some(o) && b.as_deref() == Some(by))
            .count()
    };
    assert_eq!(rows.len(), 4, "{rows:?}\n{}", server.log());
    assert_eq!(count("not_served", "caller"), 3, "{rows:?}");
    assert_eq!(count("message", "caller"), 1, "{rows:?}\n{}", server.log());
    assert!(!rows.iter().any(|r| r.0.as_deref() == Some("self_service")));

    // `/metrics`: a valid exposition with the series Grafana reads.
    let (status, _, text) = http_get(server.http(), "/metrics");
    assert_eq!(status, 200);
    let (samples, types) = parse_exposition(&text);
    promtool_check(&text);
    let ended = |o: &str| {
        value(
            &samples,
            "ivr_calls_ended_total",
            &[("flow", "hotline"), ("outcome", o)],
        )
    };
    assert_eq!(ended("not_served"), Some(3.0), "{text}");
    assert_eq!(ended("message"), Some(1.0), "{text}");
    assert_eq!(ended("self_service"), Some(0.0), "{text}");
    assert_eq!(
        value(
            &samples,
            "ivr_calls_ended_total",
            &[("flow", "common"), ("outcome", "transferred")]
        ),
        Some(0.0),
        "every live flow has its series"
    );
    assert_eq!(
        types.get("ivr_queue_wait_seconds").map(String::as_str),
        Some("histogram")
    );
    assert_eq!(
        types.get("ivr_lookup_duration_seconds").map(String::as_str),
        Some("histogram")
    );
    // The guest was refused by the general queue at once (nobody logged in).
    assert_eq!(
        value(
            &samples,
            "ivr_queue_calls_no_agents_total",
            &[("queue", "general")]
        ),
        Some(1.0),
        "{text}"
    );
    for q in ["general", "billing"] {
        for f in [
            "ivr_queue_calls_offered_total",
            "ivr_queue_calls_answered_total",
            "ivr_queue_calls_abandoned_total",
            "ivr_queue_waiting",
        ] {
            assert!(
                value(&samples, f, &[("queue", q)]).is_some(),
                "{f} {q}:\n{text}"
            );
        }
        assert!(
            value(
                &samples,
                "ivr_queue_wait_seconds_count",
                &[("queue", q), ("result", "answered")]
            )
            .is_some(),
            "{q}:\n{text}"
        );
    }
    // Every caller was looked up once (customer_by_phone: missing for the guest number).
    assert_eq!(
        value(
            &samples,
            "ivr_lookups_total",
            &[("query", "customer_by_phone"), ("result", "missing")]
        ),
        Some(4.0),
        "{text}"
    );
    assert_eq!(
        value(
            &samples,
            "ivr_lookup_duration_seconds_count",
            &[("query", "customer_by_phone")]
        ),
        Some(4.0)
    );
    assert_eq!(
        value(&samples, "ivr_db_errors_total", &[("operation", "lookup")]),
        Some(0.0)
    );
    // 100 Trying / 200 OK of each INVITE, 200 of each BYE and INFO at least.
    assert!(
        value(&samples, "ivr_sip_responses_sent_total", &[("code", "200")]).unwrap_or(0.0) >= 9.0,
        "{text}"
    );
    assert!(value(&samples, "ivr_build_info", &[]).is_some(), "{text}");

    // `ivr report` says the same.
    let o = Command::new(env!("CARGO_BIN_EXE_ivr"))
        .args([
            "--config",
            config.to_str().unwrap_or_default(),
            "report",
            "--format",
            "json",
        ])
        .env("NO_COLOR", "1")
        .output()
        .expect("ivr report");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let oc = &r["outcomes"];
    assert_eq!(oc["not_served"], 3, "{r:#}");
    assert_eq!(oc["message"], 1, "{r:#}");
    assert_eq!(oc["self_service"], 0, "{r:#}");
    assert_eq!(oc["ended_by"]["caller"], 4, "{r:#}");
    let o = Command::new(env!("CARGO_BIN_EXE_ivr"))
        .args(["--config", config.to_str().unwrap_or_default(), "report"])
        .env("NO_COLOR", "1")
        .output()
        .expect("ivr report");
    let table = String::from_utf8_lossy(&o.stdout).into_owned();
    let line = |name: &str| {
        table
            .lines()
            .find(|l| l.trim_start().starts_with(name))
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .unwrap_or_default()
    };
    assert_eq!(line("not_served").get(1).copied(), Some("3"), "{table}");
    assert_eq!(line("message").get(1).copied(), Some("1"), "{table}");
    assert_eq!(line("self_service").get(1).copied(), Some("0"), "{table}");
}

/// Every metric the Grafana dashboard (deploy/grafana/ivr.json) queries is one `/metrics`
/// exports, and the JSON is a dashboard.
#[test]
fn the_grafana_dashboard_uses_only_exported_series() {
    let text = fs::read_to_string(repo().join("deploy/grafana/ivr.json")).expect("dashboard");
    let d: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    assert!(
        d["title"].is_string() && d["panels"].is_array(),
        "a dashboard"
    );
    let mut exprs = Vec::new();
    for p in d["panels"].as_array().into_iter().flatten() {
        for t in p["targets"].as_array().into_iter().flatten() {
            if let Some(e) = t["expr"].as_str() {
                exprs.push(e.to_string());
            }
        }
    }
    assert!(exprs.len() >= 8, "{exprs:?}");
    // The names the server writes (HELP lines) in its sources.
    let mut exported = BTreeSet::new();
    for dir in ["runtime/server/src", "runtime/server/src/call"] {
        for e in fs::read_dir(repo().join(dir)).expect("sources").flatten() {
            let src = fs::read_to_string(e.path()).unwrap_or_default();
            for part in src.split("# HELP ").skip(1) {
                let name: String = part
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if name.starts_with("ivr_") {
                    exported.insert(name);
                }
            }
        }
    }
    exported.insert("ivr_queue_calls_offered_total".into());
    exported.insert("ivr_queue_calls_answered_total".into());
    exported.insert("ivr_queue_calls_abandoned_total".into());
    exported.insert("ivr_queue_calls_no_agents_total".into());
    for e in &exprs {
        let mut rest = e.as_str();
        while let Some(i) = rest.find("ivr_") {
            let name: String = rest[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|f| exported.contains(*f)))
                .unwrap_or(&name);
            assert!(exported.contains(family), "{name} in {e} is not exported");
            rest = &rest[i + name.len()..];
        }
    }
}
