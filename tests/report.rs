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
        // An agent answers; after the conversation the survey: 5 and "solved". (Not a VIP:
        // 13800000001 would go to the VIP queue.)
        ("13800000002", "0 agent:answers agent:hangs_up 4 1"),
        // Another caller gives up in the queue: abandoned.
        ("13800000002", "0 hangup"),
        // A guest leaves a complaint (a recording and a ticket), then hangs up: a message.
        ("13900000000", "2 wait:10s hangup"),
    ];
    for (caller, script) in calls {
        let o = ivr(
            &config,
            &[
                "simulate",
                "hotline",
                "--live-data",
                "--caller",
                caller,
                "--script",
                script,
            ],
        );
        assert!(o.status.success(), "{}", out(&o));
        assert!(out(&o).contains("recorded as call sim-"), "{}", out(&o));
    }
    assert!(
        dir.join("ivr-data/ivr.db").exists(),
        "the embedded database is created on first run"
    );
    // The second redemption of the same card in a new call is refused: writes persist. The
    // caller completed no task: not served.
    let o = ivr(
        &config,
        &[
            "simulate",
            "hotline",
            "--live-data",
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
    assert_eq!(oc["self_service"], 2, "{r:#}");
    assert_eq!(oc["transferred"], 1);
    assert_eq!(oc["abandoned"], 1);
    assert_eq!(oc["message"], 1);
    assert_eq!(oc["not_served"], 1);
    assert_eq!(oc["callback"], 0);
    assert_eq!(oc["failed"], 0);
    assert!((oc["self_service_rate"].as_f64().expect("rate") - 2.0 / 6.0).abs() < 1e-9);
    assert_eq!(oc["ended_by"]["caller"], 5, "{r:#}");
    assert_eq!(
        oc["ended_by"]["flow"], 1,
        "after the survey the flow says goodbye"
    );
    // Completions per task (the complaint's caller completed one too; its call is a message).
    let tasks: Vec<(String, u64)> = r["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .map(|t| {
            (
                t["task"].as_str().unwrap_or_default().to_string(),
                t["completions"].as_u64().unwrap_or_default(),
            )
        })
        .collect();
    let mut want: Vec<(String, u64)> = ["bill_inquiry", "complaint", "topup"]
        .iter()
        .map(|t| (t.to_string(), 1))
        .collect();
    want.sort();
    let mut got = tasks.clone();
    got.sort();
    assert_eq!(got, want, "{r:#}");
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

    // CSV: each section a wide table (a header row, one row per item).
    let o = ivr(&config, &["report", "--format", "csv", "--flow", "hotline"]);
    assert!(o.status.success(), "{}", out(&o));
    let csv = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        csv.starts_with("section,outcome,calls,share_of_ended\n"),
        "{csv}"
    );
    assert!(csv.contains("\noutcomes,transferred,1,0.1667\n"), "{csv}");
    assert!(csv.contains("\noutcomes,not_served,1,"), "{csv}");
    assert!(csv.contains("\noutcomes,(ended by caller),5,\n"), "{csv}");
    assert!(csv.contains("\ntasks,hotline,topup,1\n"), "{csv}");
    let cell = |section: &str, key: &[&str], column: &str| -> String {
        let header: Vec<&str> = csv
            .lines()
            .find(|l| l.starts_with("section,") && csv_section_follows(&csv, l, section))
            .unwrap_or_else(|| panic!("no {section} table: {csv}"))
            .split(',')
            .collect();
        let i = header
            .iter()
            .position(|c| *c == column)
            .unwrap_or_else(|| panic!("no column {column} in {header:?}"));
        let prefix = format!("{section},{},", key.join(","));
        let row = csv
            .lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("no row {prefix}: {csv}"));
        row.split(',').nth(i).unwrap_or_default().to_string()
    };
    assert_eq!(cell("nodes", &["hotline", "main_menu"], "exit key 0"), "2");
    assert_eq!(cell("service_level", &["general"], "queued"), "2");
    assert_eq!(
        cell("surveys", &["general", "sim-agent"], "average"),
        "4.0000"
    );
    // The yes/no question: the share of yes, and how many.
    assert!(
        csv.contains("\nsurveys,general,sim-agent,,solved,1,1,0,,1,1.0000\n"),
        "{csv}"
    );
    // --csv DIR: the same tables, one file each.
    let folder = dir.join("csv");
    let o = ivr(
        &config,
        &[
            "report",
            "--flow",
            "hotline",
            "--csv",
            &folder.to_string_lossy(),
        ],
    );
    assert!(o.status.success(), "{}", out(&o));
    for section in [
        "outcomes",
        "tasks",
        "versions",
        "nodes",
        "service_level",
        "queues",
        "agents",
        "surveys",
    ] {
        let file = std::fs::read_to_string(folder.join(format!("{section}.csv")))
            .unwrap_or_else(|e| panic!("{section}.csv: {e}"));
        assert!(file.starts_with("section,"), "{file}");
        assert!(csv.contains(&file), "{section}.csv differs:\n{file}");
    }

    // Table
    let o = ivr(&config, &["report", "--since", "2026-11-23"]);
    assert!(o.status.success(), "{}", out(&o));
    let table = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(table.contains("6 call(s), 6 ended"), "{table}");
    for part in [
        "Outcomes",
        "not_served",
        "Self-service tasks",
        "bill_inquiry",
        "Service level",
        "target 85%",
        "IVR node traffic",
        "Surveys",
        "satisfaction",
        // The yes/no question: the share of yes, not `-`.
        "100.0% yes (1 of 1)",
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
    let o = ivr(&config, &["report", "--since", "last week"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(out(&o).contains("YYYY-MM-DD"), "{}", out(&o));
    // Period words; every time printed carries its UTC offset.
    for args in [
        &["report", "--since", "yesterday", "--format", "json"][..],
        &["report", "7d", "--format", "json"][..],
        &["report", "30d", "--format", "json"][..],
        &[
            "report",
            "--since",
            "2026-01-01",
            "--until",
            "today",
            "--format",
            "json",
        ][..],
    ] {
        let o = ivr(&config, args);
        assert!(o.status.success(), "{args:?}: {}", out(&o));
        let r: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
        for key in ["since", "generated_at"] {
            let t = r[key].as_str().unwrap_or_else(|| panic!("{key}: {r:#}"));
            assert!(
                chrono::DateTime::parse_from_rfc3339(t).is_ok(),
                "{key} {t} is not RFC 3339 with an offset"
            );
        }
    }
    // Before the first call: nothing.
    let o = ivr(
        &config,
        &["report", "--until", "2020-01-01", "--format", "json"],
    );
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(r["outcomes"]["calls"], 0, "{r:#}");
    let o = ivr(&config, &["report", "today", "--since", "2026-01-01"]);
    assert_eq!(o.status.code(), Some(2), "{}", out(&o));
    // Unknown flows and versions are errors that name what exists.
    let o = ivr(&config, &["report", "--flow", "hotlin"]);
    assert_eq!(o.status.code(), Some(2), "{}", out(&o));
    assert!(out(&o).contains("did you mean `hotline`?"), "{}", out(&o));
    let o = ivr(&config, &["report", "--flow", "nosuch"]);
    assert_eq!(o.status.code(), Some(2), "{}", out(&o));
    assert!(out(&o).contains("there is no flow `nosuch`"), "{}", out(&o));
    assert!(out(&o).contains("hotline"), "{}", out(&o));
    let o = ivr(&config, &["report", "--flow-version", "abc"]);
    assert_eq!(o.status.code(), Some(2), "{}", out(&o));
    let version = hotline_version(&config);
    assert!(
        out(&o).contains("no call ran a flow version starting with `abc`")
            && out(&o).contains(&format!("hotline {version}")),
        "{}",
        out(&o)
    );

    let _ = std::fs::remove_dir_all(dir);
}

// ---------------------------------------------------------------------------------------------
// Queue events of the ACD, written through the RecordWriter as `ivr serve` writes them.

use ivr_data::connect::{self, Pool, Target};
use ivr_data::records::{
    CallRow, QueueEventKind, QueueEventRow, Record, RecordWriter, WriterOptions,
};
use ivr_data::report::{self, ReportOptions};

/// 2026-11-24 10:00:00 on the records' clock; the `vip` call is on 2026-11-20.
const DAY: i64 = 1_795_514_400_000;
const EARLIER: i64 = DAY - 4 * 86_400_000;

/// Each call of the fixture: id, queue, flow, start, and its events (offset from entering the
/// queue in ms, event, agent, detail).
type Fixture = (
    &'static str,
    &'static str,
    &'static str,
    i64,
    &'static [(
        i64,
        QueueEventKind,
        Option<&'static str>,
        Option<&'static str>,
    )],
);

fn fixture() -> Vec<Fixture> {
    use QueueEventKind::*;
    vec![
        // Answered by the first agent rung after 5 s.
        (
            "g1",
            "general",
            "hotline",
            DAY,
            &[
                (0, Queued, None, None),
                (0, Offered, Some("2001"), None),
                (5_000, Answered, Some("2001"), None),
            ],
        ),
        // 2001 lets it ring out; 2002 answers at 18 s.
        (
            "g2",
            "general",
            "hotline",
            DAY + 60_000,
            &[
                (0, Queued, None, None),
                (0, Offered, Some("2001"), None),
                (15_000, RingTimeout, Some("2001"), None),
                (15_000, Offered, Some("2002"), None),
                (18_000, Answered, Some("2002"), None),
            ],
        ),
        // Busy, ring timeout, then answered at 30 s: outside the service level.
        (
            "g3",
            "general",
            "hotline",
            DAY + 120_000,
            &[
                (0, Queued, None, None),
                (0, Offered, Some("2002"), None),
                (1_000, Declined, Some("2002"), Some("busy")),
                (1_000, Offered, Some("2001"), None),
                (16_000, RingTimeout, Some("2001"), None),
                (17_000, Offered, Some("2002"), None),
                (30_000, Answered, Some("2002"), None),
            ],
        ),
        // The caller hangs up while 2001 rings.
        (
            "g4",
            "general",
            "hotline",
            DAY + 180_000,
            &[
                (0, Queued, None, None),
                (0, Offered, Some("2001"), None),
                (8_000, Abandoned, Some("2001"), None),
            ],
        ),
        // max_wait.
        (
            "g5",
            "general",
            "hotline",
            DAY + 240_000,
            &[
                (0, Queued, None, None),
                (60_000, Left, None, Some("max_wait")),
            ],
        ),
        // Nobody logged in.
        (
            "g6",
            "general",
            "hotline",
            DAY + 400_000,
            &[(0, NoAgents, None, None)],
        ),
        // Another flow, another queue, another day.
        (
            "v1",
            "vip",
            "vip_line",
            EARLIER,
            &[
                (0, Queued, None, None),
                (0, Offered, Some("2002"), None),
                (3_000, Answered, Some("2002"), None),
            ],
        ),
    ]
}

/// Writes the fixture through a RecordWriter: the queue events, and each call's record as
/// the call's recorder would (queue, queued at, agent answered at, wait).
async fn write_fixture(pool: &Pool) {
    let writer = RecordWriter::start(
        pool.clone(),
        WriterOptions::default(),
        &tokio::runtime::Handle::current(),
    );
    let ts = ivr_data::records::timestamp;
    for (id, queue, flow, start, events) in fixture() {
        let queued_at = start + 10_000;
        let mut answer = None;
        for &(offset, event, agent, detail) in events {
            if event == QueueEventKind::Answered {
                answer = Some((offset, agent));
            }
            assert!(writer.send(Record::QueueEvent(QueueEventRow {
                at: ts(queued_at + offset),
                queue: queue.into(),
                call_id: id.into(),
                event,
                agent: agent.map(String::from),
                wait_ms: (event != QueueEventKind::NoAgents).then_some(offset),
                detail: detail.map(String::from),
            })));
        }
        let end = queued_at + events.last().map_or(0, |e| e.0);
        assert!(
            writer.send(Record::Call(CallRow {
                call_id: id.into(),
                caller: "13800000001".into(),
                called: "10010".into(),
                flow: flow.into(),
                flow_version: "v1".into(),
                channel: "sip".into(),
                started_at: ts(start),
                answered_at: Some(ts(start)),
                ended_at: Some(ts(end + 60_000)),
                outcome: Some(
                    match (answer, events.last().map(|e| e.1)) {
                        (Some(_), _) => "transferred",
                        (None, Some(QueueEventKind::Abandoned)) => "abandoned",
                        _ => "not_served",
                    }
                    .into(),
                ),
                ended_by: Some("caller".into()),
                served: Vec::new(),
                queue: Some(queue.into()),
                agent: answer.and_then(|(_, a)| a.map(String::from)),
                queued_at: Some(ts(queued_at)),
                agent_answered_at: answer.map(|(o, _)| ts(queued_at + o)),
                wait_ms: Some(answer.map_or(end - queued_at, |(o, _)| o)),
            }))
        );
    }
    let stats = writer.shutdown().await;
    assert_eq!((stats.rejected, stats.failed), (0, 0), "{stats:?}");
}

fn close(a: &serde_json::Value, b: f64) -> bool {
    a.as_f64().is_some_and(|a| (a - b).abs() < 1e-9)
}

/// The figures of the fixture, all records (both queues, both days).
/// Every flow of the fixture ran version `v1`: one entry each, with its calls, the first and
/// the last call's start (the same form on both engines).
fn check_versions(r: &serde_json::Value) {
    let versions = r["versions"].as_array().expect("versions");
    let mut flows: Vec<&str> = fixture().iter().map(|f| f.2).collect();
    flows.sort_unstable();
    flows.dedup();
    assert_eq!(versions.len(), flows.len(), "{versions:#?}");
    for flow in flows {
        let v = versions
            .iter()
            .find(|v| v["flow"] == flow)
            .unwrap_or_else(|| panic!("no version of {flow}: {versions:#?}"));
        assert_eq!(v["version"], "v1");
        let calls = fixture().iter().filter(|f| f.2 == flow).count();
        assert_eq!(v["calls"].as_u64(), Some(calls as u64), "{v}");
        let (first, last) = (
            v["first_call"].as_str().expect("first"),
            v["last_call"].as_str().expect("last"),
        );
        // RFC 3339 with the server's UTC offset.
        for t in [first, last] {
            assert!(chrono::DateTime::parse_from_rfc3339(t).is_ok(), "{v}");
        }
        assert!(first.starts_with("2026-") && first <= last, "{v}");
        if calls > 1 {
            assert!(first < last, "{v}");
        }
    }
}

fn check_queue_figures(r: &serde_json::Value) {
    check_versions(r);
    let queues = r["queues"].as_array().expect("queues");
    assert_eq!(queues.len(), 3, "general, vip, all: {r:#}");
    let general = &queues[0];
    assert_eq!(general["queue"], "general");
    assert_eq!(general["queued"], 5, "{general:#}");
    assert_eq!(general["answered"], 3);
    assert_eq!(general["abandoned"], 1);
    assert_eq!(general["left"], 1);
    assert_eq!(general["no_agents"], 1);
    assert_eq!(general["answered_within"], 2);
    assert!(close(&general["level"], 0.4), "{general:#}");
    assert_eq!(general["meets_target"], false);
    assert!(close(&general["average_wait_ms"], 53_000.0 / 3.0));
    assert_eq!(general["p90_wait_ms"], 30_000);
    assert_eq!(general["offers"], 7);
    assert!(
        close(&general["offers_per_answer"], 2.0),
        "6 offers to the 3 answered calls"
    );
    assert_eq!(general["declined"], 1);
    assert_eq!(general["ring_timeouts"], 2);
    let vip = &queues[1];
    assert_eq!(vip["queue"], "vip");
    assert_eq!(
        (vip["queued"].clone(), vip["answered"].clone()),
        (1.into(), 1.into())
    );
    assert!(close(&vip["level"], 1.0));
    assert_eq!(vip["meets_target"], true);
    assert_eq!(vip["p90_wait_ms"], 3_000);
    assert!(close(&vip["offers_per_answer"], 1.0));
    let all = &queues[2];
    assert_eq!(all["queue"], serde_json::Value::Null);
    assert_eq!(all["queued"], 6);
    assert_eq!(all["answered"], 4);
    assert_eq!(all["answered_within"], 3);
    assert!(close(&all["level"], 0.5));
    assert!(close(&all["average_wait_ms"], 14_000.0));
    assert_eq!(all["p90_wait_ms"], 30_000);
    assert!(close(&all["offers_per_answer"], 1.75));
    let agents = r["agents"].as_array().expect("agents");
    let agent = |id: &str| {
        agents
            .iter()
            .find(|a| a["agent"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("no agent {id}: {r:#}"))
    };
    let a = agent("2001");
    assert_eq!(
        (
            &a["offers"],
            &a["answered"],
            &a["declined"],
            &a["ring_timeouts"]
        ),
        (&4.into(), &1.into(), &0.into(), &2.into()),
        "{a:#}"
    );
    let b = agent("2002");
    assert_eq!(
        (
            &b["offers"],
            &b["answered"],
            &b["declined"],
            &b["ring_timeouts"]
        ),
        (&4.into(), &3.into(), &1.into(), &0.into()),
        "{b:#}"
    );
    // The call records' service level, per queue too (the no-agents call was put in the
    // queue by its flow, so it counts there).
    let sl = r["service_level"].as_array().expect("service level");
    let general = sl
        .iter()
        .find(|s| s["queue"] == "general")
        .expect("general");
    assert_eq!(
        (
            &general["queued"],
            &general["answered"],
            &general["answered_within"]
        ),
        (&6.into(), &3.into(), &2.into()),
        "{general:#}"
    );
}

#[test]
fn report_of_queue_events() {
    let (dir, config) = deployment("queues");
    let rt = ivr_data::source::runtime().expect("runtime");
    rt.block_on(async {
        let pool = connect::open(&Target::SqliteFile(dir.join("ivr-data/ivr.db")), 4)
            .await
            .expect("open");
        write_fixture(&pool).await;
        pool.close().await;
    });

    // JSON
    let o = ivr(&config, &["report", "--format", "json"]);
    assert!(o.status.success(), "{}", out(&o));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    check_queue_figures(&r);

    // CSV
    let o = ivr(&config, &["report", "--format", "csv"]);
    assert!(o.status.success(), "{}", out(&o));
    let csv = String::from_utf8_lossy(&o.stdout).into_owned();
    for line in [
        "section,queue,queued,answered,abandoned,left,no_agents,answered_within,level,\
         meets_target,average_wait_ms,p90_wait_ms,offers,offers_per_answer,declined,lost,\
         ring_timeouts",
        "queues,general,5,3,1,1,1,2,0.4000,false,17666.6667,30000,7,2.0000,1,0,2",
        "queues,vip,1,1,0,0,0,1,1.0000,true,3000.0000,3000,1,1.0000,0,0,0",
        "queues,*,6,4,1,1,1,3,0.5000,false,14000.0000,30000,8,1.7500,1,0,2",
        "section,agent,name,offers,answered,declined,lost,ring_timeouts",
        "agents,2001,王芳,4,1,0,0,2",
        "agents,2002,李强,4,3,1,0,0",
    ] {
        assert!(csv.contains(&format!("\n{line}\n")), "{line}: {csv}");
    }

    // Table
    let o = ivr(&config, &["report"]);
    assert!(o.status.success(), "{}", out(&o));
    let table = String::from_utf8_lossy(&o.stdout).into_owned();
    let row = |first: &str| {
        table
            .lines()
            .find(|l| l.split_whitespace().next() == Some(first))
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .unwrap_or_else(|| panic!("no row {first}: {table}"))
    };
    assert!(table.contains("Queues (ACD events"), "{table}");
    assert_eq!(
        row("general"),
        "general 6 3 2 0 0 0 33.3% BELOW",
        "the call records' service level"
    );
    let queues = &table[table.find("Queues (ACD events").expect("queues")..];
    let qrow = |first: &str| {
        queues
            .lines()
            .find(|l| l.split_whitespace().next() == Some(first))
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .unwrap_or_else(|| panic!("no row {first}: {table}"))
    };
    assert_eq!(
        qrow("general"),
        "general 5 3 1 1 1 2 40.0% BELOW 17.7 s 30.0 s 2.00"
    );
    assert_eq!(qrow("vip"), "vip 1 1 0 0 0 1 100.0% met 3.0 s 3.0 s 1.00");
    // Agents by name, with their id.
    assert_eq!(qrow("王芳"), "王芳 (2001) 4 1 0 0 2");
    assert_eq!(qrow("李强"), "李强 (2002) 4 3 1 0 0");

    // --since leaves out the vip call (an earlier day), --flow keeps one flow's calls.
    for args in [&["--since", "2026-11-22"][..], &["--flow", "hotline"][..]] {
        let mut a = vec!["report", "--format", "json"];
        a.extend_from_slice(args);
        let o = ivr(&config, &a);
        assert!(o.status.success(), "{}", out(&o));
        let r: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
        let queues = r["queues"].as_array().expect("queues");
        assert_eq!(queues.len(), 2, "{args:?}: {r:#}");
        assert_eq!(queues[0]["queue"], "general");
        assert_eq!(queues[1]["queued"], 5);
        assert_eq!(queues[1]["answered"], 3);
    }
    let o = ivr(
        &config,
        &["report", "--flow", "vip_line", "--format", "json"],
    );
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(r["queues"][0]["queue"], "vip", "{r:#}");
    assert_eq!(r["agents"].as_array().map(Vec::len), Some(1), "{r:#}");

    let _ = std::fs::remove_dir_all(dir);
}

/// The same figures on PostgreSQL (`IVR_TEST_POSTGRES_URL`; scripts/test.sh sets it).
#[test]
fn report_of_queue_events_postgres() {
    let Ok(admin) = std::env::var("IVR_TEST_POSTGRES_URL") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but IVR_TEST_POSTGRES_URL is not: the PostgreSQL report test cannot run"
        );
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr(),
            "note: IVR_TEST_POSTGRES_URL is not set; PostgreSQL report test skipped"
        );
        return;
    };
    let rt = ivr_data::source::runtime().expect("runtime");
    rt.block_on(async {
        let name = format!("ivr_test_report_{}", std::process::id());
        let (prefix, _) = admin.rsplit_once('/').expect("a database url");
        let server = sqlx::PgPool::connect(&admin).await.expect("connect");
        for sql in [
            format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            format!("CREATE DATABASE {name}"),
        ] {
            sqlx::query(&sql)
                .execute(&server)
                .await
                .expect("scratch db");
        }
        let pool = connect::open(&Target::Postgres(format!("{prefix}/{name}")), 4)
            .await
            .expect("open");
        write_fixture(&pool).await;
        let all = report::build(&pool, &ReportOptions::default())
            .await
            .expect("report");
        check_queue_figures(&serde_json::to_value(&all).expect("json"));
        let since = ReportOptions {
            since: Some(
                report::parse_date("2026-11-22")
                    .expect("date")
                    .and_time(chrono::NaiveTime::MIN),
            ),
            until: None,
            flow: Some("hotline".into()),
            flow_version: Some("v".into()),
        };
        let r = report::build(&pool, &since).await.expect("report");
        assert_eq!(r.queues.len(), 2);
        assert_eq!((r.queues[1].queued, r.queues[1].answered), (5, 3));
        pool.close().await;
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&server)
            .await;
        server.close().await;
    });
}

/// Whether the CSV table whose header is `header` is the `section` one (its first row, or the
/// line after the header, names it).
fn csv_section_follows(csv: &str, header: &str, section: &str) -> bool {
    let mut lines = csv.lines().skip_while(|l| *l != header);
    lines.next();
    lines
        .next()
        .is_some_and(|l| l.starts_with(&format!("{section},")))
}

/// The version `ivr compile` gives the hotline of `config` now.
fn hotline_version(config: &Path) -> String {
    let o = ivr(config, &["compile", "hotline"]);
    assert!(o.status.success(), "{}", out(&o));
    let program: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    program["version"].as_str().expect("version").to_string()
}

#[test]
fn report_compares_the_versions_of_a_flow() {
    let (dir, config) = deployment("versions");
    // A flows folder of its own, so that the hotline can be edited.
    let flows = dir.join("flows");
    std::fs::create_dir_all(&flows).expect("flows");
    for name in ["hotline.flow", "common.flow", "arrears_notice.flow"] {
        std::fs::copy(root().join("flows").join(name), flows.join(name)).expect("copy");
    }
    let text = std::fs::read_to_string(&config).expect("config");
    let text = text.replace(&root().join("flows").display().to_string(), "flows");
    std::fs::write(&config, text).expect("config");
    let simulate = |caller: &str, script: &str| {
        let o = ivr(
            &config,
            &[
                "simulate",
                "hotline",
                "--live-data",
                "--caller",
                caller,
                "--script",
                script,
            ],
        );
        assert!(o.status.success(), "{}", out(&o));
    };
    // Before the change: one self-service call, one caller who gives up in the queue.
    let before = hotline_version(&config);
    simulate("13800000001", "1 123456 # hangup");
    simulate("13800000002", "0 hangup");
    // The analyst gives callers more time in the main menu: a new version.
    let flow = flows.join("hotline.flow");
    let source = std::fs::read_to_string(&flow).expect("flow");
    let edited = source.replacen(
        "menu main_menu {\n    prompt   main_menu\n    timeout  5s",
        "menu main_menu {\n    prompt   main_menu\n    timeout  6s",
        1,
    );
    assert_ne!(edited, source, "the edit applies");
    std::fs::write(&flow, edited).expect("edit");
    let after = hotline_version(&config);
    assert_ne!(before, after);
    simulate("13800000001", "1 123456 # hangup");

    let o = ivr(&config, &["report", "--format", "json"]);
    assert!(o.status.success(), "{}", out(&o));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let version = |v: &str| {
        r["versions"]
            .as_array()
            .and_then(|a| {
                a.iter()
                    .find(|x| x["flow"] == "hotline" && x["version"] == v)
            })
            .cloned()
            .unwrap_or_else(|| panic!("no version {v}: {r:#}"))
    };
    let (old, new) = (version(&before), version(&after));
    assert_eq!(
        (old["calls"].as_u64(), new["calls"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(old["self_service_rate"].as_f64(), Some(0.5), "{old}");
    assert_eq!(old["abandon_rate"].as_f64(), Some(0.5), "{old}");
    assert_eq!(new["self_service_rate"].as_f64(), Some(1.0), "{new}");
    assert!(old["first_call"].is_string() && new["last_call"].is_string());

    // One version alone (by the start of its hash): its calls and its node traffic.
    let o = ivr(
        &config,
        &["report", "--format", "json", "--flow-version", &before[..8]],
    );
    assert!(o.status.success(), "{}", out(&o));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(r["outcomes"]["calls"], 2, "{r:#}");
    assert_eq!(r["outcomes"]["abandoned"], 1);
    assert_eq!(r["versions"].as_array().map(Vec::len), Some(1));
    let entries = r["nodes"]
        .as_array()
        .and_then(|n| n.iter().find(|x| x["node"] == "identify"))
        .map(|x| x["entries"].clone());
    assert_eq!(entries, Some(serde_json::json!(2)), "{r:#}");
    // The table and the CSV show the versions too.
    let o = ivr(&config, &["report", "--flow-version", &after]);
    let table = out(&o);
    assert!(
        table.contains("version ") && table.contains(&after) && !table.contains(&before),
        "{table}"
    );
    let o = ivr(&config, &["report", "--format", "csv"]);
    let csv = out(&o);
    let row = csv
        .lines()
        .find(|l| l.starts_with(&format!("versions,hotline,{before},")))
        .unwrap_or_else(|| panic!("no version {before}: {csv}"));
    // section, flow, version, first call, last call, calls
    assert_eq!(row.split(',').nth(5), Some("2"), "{row}");
    // Something that is no version is refused with a clear message.
    let o = ivr(&config, &["report", "--flow-version", "v2; DROP"]);
    assert!(!o.status.success());
    assert!(out(&o).contains("is not a version"), "{}", out(&o));
}

/// A caller refused on arrival (nobody logged in: the flow's `no_agents` path) was never put
/// in the queue: it does not count in the service level.
#[test]
fn a_call_refused_for_no_agents_is_not_queued() {
    let (_dir, config) = deployment("no-agents");
    let o = ivr(
        &config,
        &[
            "simulate",
            "hotline",
            "--live-data",
            "--caller",
            "13800000001",
            "--script",
            "0 agent:none hangup",
        ],
    );
    assert!(o.status.success(), "{}", out(&o));
    assert!(out(&o).contains("agents_busy"), "{}", out(&o));
    let o = ivr(&config, &["report", "--format", "json"]);
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(r["outcomes"]["calls"], 1, "{r:#}");
    let all = r["service_level"]
        .as_array()
        .and_then(|l| l.iter().find(|x| x["queue"].is_null()))
        .cloned()
        .unwrap_or_default();
    assert_eq!(all["queued"], 0, "{r:#}");
}

/// An offer lost when the agent's console went away counts as `lost`, not `declined`;
/// yes/no survey questions get the share of yes; `until` bounds the period; times carry
/// their UTC offset.
#[test]
fn lost_offers_yes_shares_and_the_end_of_a_period() {
    use ivr_data::records::SurveyRow;
    let rt = ivr_data::source::runtime().expect("runtime");
    rt.block_on(async {
        let pool = connect::open(&Target::SqliteMemory, 1).await.expect("open");
        let writer = RecordWriter::start(
            pool.clone(),
            WriterOptions::default(),
            &tokio::runtime::Handle::current(),
        );
        let ts = ivr_data::records::timestamp;
        // Call c1 today: 2001's console closes while it rings, 2002 answers. Call c2 the next
        // day (outside `until`).
        for (id, start) in [("c1", DAY), ("c2", DAY + 86_400_000)] {
            for (offset, event, agent, detail) in [
                (0, QueueEventKind::Queued, None, None),
                (0, QueueEventKind::Offered, Some("2001"), None),
                (2_000, QueueEventKind::Lost, Some("2001"), Some("gone")),
                (2_000, QueueEventKind::Offered, Some("2002"), None),
                (5_000, QueueEventKind::Answered, Some("2002"), None),
            ] {
                assert!(writer.send(Record::QueueEvent(QueueEventRow {
                    at: ts(start + offset),
                    queue: "general".into(),
                    call_id: id.into(),
                    event,
                    agent: agent.map(String::from),
                    wait_ms: Some(offset),
                    detail: detail.map(String::from),
                })));
            }
            for (question, answer, score) in [
                ("overall", "4", Some(4.0)),
                ("solved", if id == "c1" { "yes" } else { "no" }, None),
            ] {
                assert!(writer.send(Record::Survey(SurveyRow {
                    call_id: id.into(),
                    flow: "hotline".into(),
                    flow_version: "v1".into(),
                    survey: "satisfaction".into(),
                    save_table: "surveys".into(),
                    question: question.into(),
                    answer: Some(answer.into()),
                    score,
                    agent: Some("2002".into()),
                    queue: Some("general".into()),
                    saved_at: ts(start + 60_000),
                })));
            }
        }
        let stats = writer.shutdown().await;
        assert_eq!((stats.rejected, stats.failed), (0, 0), "{stats:?}");

        let all = report::build(&pool, &ReportOptions::default())
            .await
            .expect("report");
        let general = &all.queues[0];
        assert_eq!((general.lost, general.declined), (2, 0), "{general:?}");
        let a = all.agents.iter().find(|a| a.agent == "2001").expect("2001");
        assert_eq!((a.offers, a.lost, a.declined), (2, 2, 0), "{a:?}");
        let solved = |r: &report::Report| {
            r.surveys
                .iter()
                .find(|s| s.question == "solved" && s.agent.is_some() && s.queue.is_some())
                .cloned()
                .expect("solved")
        };
        let s = solved(&all);
        assert_eq!((s.answered, s.yes), (2, 1), "{s:?}");
        assert!(s.yes_share.is_some_and(|x| (x - 0.5).abs() < 1e-9), "{s:?}");
        let overall = all
            .surveys
            .iter()
            .find(|s| s.question == "overall")
            .expect("overall");
        assert_eq!(overall.yes_share, None, "a scale has no share of yes");

        // Until the start of the next day: c2 is left out.
        let day_end = ts(DAY).date().and_time(chrono::NaiveTime::MIN) + chrono::Duration::days(1);
        let until = report::build(
            &pool,
            &ReportOptions {
                until: Some(day_end),
                ..ReportOptions::default()
            },
        )
        .await
        .expect("report");
        assert_eq!(until.queues[0].lost, 1, "{:?}", until.queues);
        let s = solved(&until);
        assert_eq!((s.answered, s.yes), (1, 1), "{s:?}");
        let until_text = until.until.expect("until");
        let t = chrono::DateTime::parse_from_rfc3339(&until_text).expect("RFC 3339");
        assert_eq!(t.naive_local(), day_end, "{until_text}");
        assert!(chrono::DateTime::parse_from_rfc3339(&until.generated_at).is_ok());
        pool.close().await;
    });
}

/// Callbacks are counted apart in the service level: a kept callback whose caller answered
/// within 20 s of the agent's answer is served in time, one answered later or never is not.
#[test]
fn callbacks_count_apart_in_the_service_level() {
    use ivr_data::callbacks::{self as cb, CallbackResult};
    let (dir, config) = deployment("callbacks");
    let rt = ivr_data::source::runtime().expect("runtime");
    rt.block_on(async {
        let pool = connect::open(&Target::SqliteFile(dir.join("ivr-data/ivr.db")), 4)
            .await
            .expect("open");
        let writer = RecordWriter::start(
            pool.clone(),
            WriterOptions::default(),
            &tokio::runtime::Handle::current(),
        );
        let ts = ivr_data::records::timestamp;
        // One call answered by an agent in 5 s, three that kept a callback after 60 s.
        for (i, (id, outcome)) in [
            ("a1", "transferred"),
            ("c1", "callback"),
            ("c2", "callback"),
            ("c3", "callback"),
        ]
        .into_iter()
        .enumerate()
        {
            let start = DAY + i as i64 * 600_000;
            let answered = outcome == "transferred";
            assert!(writer.send(Record::Call(CallRow {
                call_id: id.into(),
                caller: "13800000001".into(),
                called: "10010".into(),
                flow: "hotline".into(),
                flow_version: "v1".into(),
                channel: "sip".into(),
                started_at: ts(start),
                answered_at: Some(ts(start)),
                ended_at: Some(ts(start + 120_000)),
                outcome: Some(outcome.into()),
                ended_by: Some(if answered { "caller" } else { "flow" }.into()),
                served: Vec::new(),
                queue: Some("general".into()),
                agent: answered.then(|| "2001".to_string()),
                queued_at: Some(ts(start + 1_000)),
                agent_answered_at: answered.then(|| ts(start + 6_000)),
                wait_ms: Some(if answered { 5_000 } else { 60_000 }),
            })));
        }
        let stats = writer.shutdown().await;
        assert_eq!((stats.rejected, stats.failed), (0, 0), "{stats:?}");
        let at = |ms: i64| {
            chrono::DateTime::from_timestamp_millis(DAY + ms)
                .expect("time")
                .naive_utc()
        };
        for (id, from) in [("c1", 600_000), ("c2", 1_200_000), ("c3", 1_800_000)] {
            assert!(
                cb::keep(&pool, id, "general", "13800000001", at(from + 61_000), None)
                    .await
                    .expect("keep")
            );
        }
        // c1: the caller answers 8 s after the agent; c2: 30 s after; c3: never.
        cb::dialling(&pool, "c1", "2001", 1, at(900_000))
            .await
            .expect("dial");
        cb::connected(&pool, "c1", at(908_000))
            .await
            .expect("connected");
        cb::end(&pool, "c1", CallbackResult::Connected, at(990_000))
            .await
            .expect("end");
        cb::dialling(&pool, "c2", "2001", 1, at(1_500_000))
            .await
            .expect("dial");
        cb::connected(&pool, "c2", at(1_530_000))
            .await
            .expect("connected");
        cb::dialling(&pool, "c3", "2001", 2, at(2_100_000))
            .await
            .expect("dial");
        cb::end(&pool, "c3", CallbackResult::NoAnswer, at(2_130_000))
            .await
            .expect("end");
        pool.close().await;
    });
    let o = ivr(&config, &["report", "--format", "json"]);
    assert!(o.status.success(), "{}", out(&o));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(r["outcomes"]["callback"], 3, "{r:#}");
    let general = r["service_level"]
        .as_array()
        .and_then(|l| l.iter().find(|x| x["queue"] == "general"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(general["queued"], 4, "{r:#}");
    assert_eq!(general["answered"], 1, "{r:#}");
    assert_eq!(general["answered_within"], 1, "{r:#}");
    assert_eq!(general["callbacks"], 3, "{r:#}");
    assert_eq!(general["callbacks_connected"], 2, "{r:#}");
    assert_eq!(general["callbacks_within"], 1, "{r:#}");
    assert!(close(&general["level"], 0.5), "{r:#}");
    let o = ivr(&config, &["report", "--format", "csv"]);
    let csv = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        csv.contains("\nservice_level,general,4,1,1,3,2,1,0.5000,false\n"),
        "{csv}"
    );
    let _ = std::fs::remove_dir_all(dir);
}
