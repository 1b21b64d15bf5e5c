//! `ivr report` on records written by real simulated calls: `ivr simulate` runs the reference
//! hotline against a fresh embedded demo database (created with its folder on first run) and
//! records each call; the report reads them back as a table, CSV and JSON.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn ivr(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ivr"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("IVR_SECRET")
        .output()
        .expect("run ivr")
}

fn out(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A deployment in a scratch folder: the reference flows, prompts and catalog, and the
/// embedded default database (`ivr-data/ivr.db` below the folder, not there yet).
fn deployment(name: &str) -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("ivr-report-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch folder");
    let reference = std::fs::read_to_string(root().join("ivr.toml")).expect("ivr.toml");
    let root = root();
    let text = reference
        .replace(
            "flows      = \"flows\"",
            &format!("flows      = \"{}\"", root.join("flows").display()),
        )
        .replace(
            "prompts    = \"prompts\"",
            &format!("prompts    = \"{}\"", root.join("prompts").display()),
        );
    assert!(text.contains(&root.join("flows").display().to_string()));
    let config = dir.join("ivr.toml");
    std::fs::write(&config, text).expect("write config");
    (dir, config)
}

#[test]
fn report_from_simulated_calls() {
    let (dir, config) = deployment("calls");
    let calls: &[(&str, &str)] = &[
        // Bill inquiry with the service password, then the caller hangs up: self-service.
        ("13800000001", "1 123456 # hangup"),
        // Top-up with a card, then hang up: self-service; the card is now used.
        ("13800000001", "2 1 100000000000000002 hangup"),
        // An agent answers; after the conversation the survey: 5 and "solved".
        ("13800000001", "0 agent:answers agent:hangs_up 4 1"),
        // Another caller gives up in the queue: abandoned.
        ("13800000002", "0 hangup"),
        // A guest leaves a complaint (a recording and a ticket), then hangs up.
        ("13900000000", "2 wait:10s hangup"),
    ];
    for (caller, script) in calls {
        let o = ivr(
            &config,
            &[
                "simulate", "hotline", "--caller", caller, "--script", script,
            ],
        );
        assert!(o.status.success(), "{}", out(&o));
        assert!(out(&o).contains("recorded as call sim-"), "{}", out(&o));
    }
    assert!(
        dir.join("ivr-data/ivr.db").exists(),
        "the embedded database is created on first run"
    );
    // The second redemption of the same card in a new call is refused: writes persist.
    let o = ivr(
        &config,
        &[
            "simulate",
            "hotline",
            "--script",
            "2 1 100000000000000002 hangup",
        ],
    );
    assert!(out(&o).contains("card_rejected"), "{}", out(&o));

    // JSON
    let o = ivr(&config, &["report", "--format", "json"]);
    assert!(o.status.success(), "{}", out(&o));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let oc = &r["outcomes"];
    assert_eq!(oc["calls"], 6, "{r:#}");
    assert_eq!(oc["ended"], 6);
    assert_eq!(oc["self_service"], 4);
    assert_eq!(oc["transferred"], 1);
    assert_eq!(oc["abandoned"], 1);
    assert_eq!(oc["failed"], 0);
    assert!((oc["self_service_rate"].as_f64().expect("rate") - 4.0 / 6.0).abs() < 1e-9);
    let node = |name: &str| {
        r["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .find(|n| n["node"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no node {name}: {r:#}"))
    };
    assert_eq!(node("identify")["entries"], 6);
    assert_eq!(node("identify")["exits"]["found"], 5);
    assert_eq!(node("identify")["exits"]["missing"], 1);
    assert_eq!(node("main_menu")["exits"]["key 0"], 2);
    assert_eq!(node("main_menu")["exits"]["key 2"], 2);
    assert_eq!(node("redeem")["exits"]["found"], 1);
    assert_eq!(node("redeem")["exits"]["missing"], 1);
    assert_eq!(
        node("agent")["hangups"],
        1,
        "the abandoned caller hung up in the queue"
    );
    assert_eq!(node("agent")["exits"]["after"], 1);
    // Masked input is never written: the password node is left by `next`, nothing more.
    assert_eq!(node("ask_password")["exits"]["next"], 1);
    let sl = r["service_level"].as_array().expect("service level");
    let all = sl.last().expect("all queues");
    assert_eq!(all["queue"], serde_json::Value::Null);
    assert_eq!(all["queued"], 2);
    assert_eq!(all["answered"], 1);
    let general = sl
        .iter()
        .find(|s| s["queue"] == "general")
        .expect("general");
    assert_eq!(general["queued"], 2);
    let survey = r["surveys"]
        .as_array()
        .expect("surveys")
        .iter()
        .find(|s| {
            s["queue"] == "general" && s["agent"] == "sim-agent" && s["question"] == "overall"
        })
        .cloned()
        .expect("a survey figure per queue and agent");
    assert_eq!(survey["average"], 4.0);
    assert_eq!(survey["answered"], 1);

    // The call records hold no masked digits (the password typed was 123456).
    let mut bytes = std::fs::read(dir.join("ivr-data/ivr.db")).expect("db");
    bytes.extend(std::fs::read(dir.join("ivr-data/ivr.db-wal")).unwrap_or_default());
    assert!(
        !bytes.windows(6).any(|w| w == b"123456"),
        "a plain password was written"
    );

    // CSV
    let o = ivr(&config, &["report", "--format", "csv", "--flow", "hotline"]);
    assert!(o.status.success(), "{}", out(&o));
    let csv = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        csv.starts_with("section,flow,node,queue,agent,question,metric,value\n"),
        "{csv}"
    );
    assert!(csv.contains("\noutcomes,,,,,,transferred,1\n"), "{csv}");
    assert!(
        csv.contains("\nnodes,hotline,main_menu,,,,exit key 0,2\n"),
        "{csv}"
    );
    assert!(
        csv.contains("\nservice_level,,,general,,,queued,2\n"),
        "{csv}"
    );
    assert!(
        csv.contains("\nsurveys,,,general,sim-agent,overall,average,4.0000\n"),
        "{csv}"
    );

    // Table
    let o = ivr(&config, &["report", "--since", "2026-11-23"]);
    assert!(o.status.success(), "{}", out(&o));
    let table = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(table.contains("6 call(s), 6 ended"), "{table}");
    for part in [
        "Outcomes",
        "Service level",
        "target 85%",
        "IVR node traffic",
        "Surveys",
        "satisfaction",
    ] {
        assert!(table.contains(part), "{part}: {table}");
    }

    // Filters.
    let o = ivr(
        &config,
        &["report", "--since", "2030-01-01", "--format", "json"],
    );
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(r["outcomes"]["calls"], 0);
    let o = ivr(&config, &["report", "--flow", "common", "--format", "json"]);
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(r["outcomes"]["calls"], 0);
    let o = ivr(&config, &["report", "--since", "yesterday"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(out(&o).contains("YYYY-MM-DD"), "{}", out(&o));

    let _ = std::fs::remove_dir_all(dir);
}
