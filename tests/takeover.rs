//! Calls survive the node they are on (docs/cluster.md, "Calls taken over"): two nodes behind
//! Kamailio with PostgreSQL (`scripts/cluster.sh up 2`), 50 SIPp calls through the proxy
//! into a flow that asks a masked PIN (SIP INFO keys), then plays a long prompt and waits for
//! key 1. While the calls wait, the checkpoints in `call_checkpoints` have the calls'
//! variables but never the PIN. The node holding calls is killed (SIGKILL): the other node
//! re-INVITEs their callers through the proxy, the SIPp callers answer, hear the menu again
//! and press 1 (an RFC 4733 event from a capture), and the flow finishes (served, the node's
//! BYE). At least 95% of the dead node's calls finish their flow, new calls succeed within
//! 5 s of the kill, and every call has one `calls` row (none lost, none doubled), with
//! `calls_in_progress` and `call_checkpoints` empty at the end. It prints the takeover time
//! distribution (kill -> each re-INVITE answered).
//!
//! PostgreSQL: a scratch database on `IVR_TEST_POSTGRES_URL` when it is set, else the
//! throwaway server `cluster.sh` starts.

mod common;

use common::agents::{
    Peer, agent_state, free_udp_port, queue_waiting, register_agent, talking_media, talking_phone,
    talking_phone_on, wait_until_else,
};
use common::cluster::{Cluster, Node, Ports, Start, cluster_status, cluster_tools_for, metric};
use common::postgres::Scratch;
use common::{CALLER, Endpoint, config_head, http_get, repo, skip, temp_dir, tone};
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The PIN the callers type (masked): it must never reach `call_checkpoints`.
const PIN: &str = "907531";

/// How many calls.
const CALLS: u32 = 50;

const FLOW: &str = r##"
flow t {
    title    "takeover test"
    language zh-CN
    entry    pin
}

input pin {
    prompt   short
    digits   6
    timeout  10s
    attempts 1 -> choose
    mask
    into     pin
    next     remember
}

step remember {
    set got_pin = true
    set who     = caller
    goto choose
}

menu choose {
    prompt   long
    timeout  30s
    attempts 1 -> missed
    key 1 -> done
}

step done {
    served "takeover"
    play short
    hangup
}

step missed {
    hangup
}
"##;

/// The ports of this file's clusters (docs: takeover 35060.., 38080..).
const PORTS: Ports = Ports {
    sip: 35_060,
    http: 38_080,
};

/// The PostgreSQL server of `IVR_TEST_POSTGRES_URL`, when it is set.
fn postgres_url() -> Option<String> {
    std::env::var("IVR_TEST_POSTGRES_URL").ok()
}

/// Whether the tools of a cluster test are installed (PostgreSQL's server programs only
/// without `IVR_TEST_POSTGRES_URL`); when one is not, says so (see [`skip`]).
fn cluster_tools() -> bool {
    cluster_tools_for("takeover test", postgres_url().is_some())
}

/// SIPp's RTP capture of key 1 that the callers send (RFC 4733); `None` (said, see [`skip`])
/// when it is missing.
fn dtmf_capture() -> Option<&'static Path> {
    let capture = Path::new("/usr/share/sip-tester/dtmf_2833_1.pcap");
    if capture.exists() {
        return Some(capture);
    }
    skip(&format!(
        "{} is missing: takeover test skipped",
        capture.display()
    ));
    None
}

/// A scratch database `takeover_TAG` on `IVR_TEST_POSTGRES_URL`'s server when it is set
/// (else the cluster's throwaway server is used).
fn scratch(tag: &str) -> Option<Scratch> {
    postgres_url().map(|u| Scratch::new(&u, &format!("takeover_{tag}")))
}

/// Two nodes on the deployment `dir` (on `scratch` when there is one; a Kamailio still
/// closing is tried again on other ports).
fn two_nodes(dir: &Path, scratch: Option<&Scratch>) -> Cluster {
    Cluster::up_with(
        2,
        dir,
        PORTS,
        Start {
            database: scratch.map(|s| s.url.as_str()),
            retry_unstarted: true,
        },
    )
}

/// Waits (15 s at most) until `node` shows both nodes up.
fn both_up(cluster: &Cluster, node: &Node) {
    let up = |s: &serde_json::Value| {
        s["nodes"]
            .as_array()
            .map_or(0, |n| n.iter().filter(|n| n["up"] == true).count())
    };
    let seen = common::cluster::wait_for(node, Duration::from_secs(15), |s| up(s) >= 2);
    assert!(
        seen.is_some(),
        "nodes not up: {:?}\n{}",
        cluster_status(node),
        cluster.logs()
    );
}

/// RTP ports for both nodes (they share the folder): 200 of them, above the other tests'.
fn rtp_ports() -> (u16, u16) {
    let base = 32_100 + (std::process::id() % 3) as u16 * 200;
    (base, base + 199)
}

fn deployment(name: &str) -> PathBuf {
    let dir = temp_dir(name);
    fs::create_dir_all(dir.join("flows")).expect("flows");
    fs::create_dir_all(dir.join("prompts/zh-CN")).expect("prompts");
    fs::write(dir.join("flows/t.flow"), FLOW).expect("flow");
    ivr_media::audio::write_wav(&dir.join("prompts/zh-CN/short.wav"), &tone(500.0, 500))
        .expect("wav");
    ivr_media::audio::write_wav(&dir.join("prompts/zh-CN/long.wav"), &tone(400.0, 8_000))
        .expect("wav");
    fs::write(
        dir.join("prompts/zh-CN/prompts.toml"),
        "short = { text = \"short\" }\nlong = { text = \"long\" }\n",
    )
    .expect("catalog");
    fs::write(
        dir.join("ivr.toml"),
        format!(
            "{}[routes]\ndefault = \"t\"\n",
            config_head(rtp_ports()).replace("max_calls = 100", "max_calls = 200")
        ),
    )
    .expect("config");
    dir
}

/// A query's numbers from the cluster's database.
fn db_i64(url: &str, sql: &str) -> i64 {
    let (url, sql) = (url.to_string(), sql.to_string());
    common::block_on(async move {
        let pool = ivr_data::cluster::PgPool::connect(&url)
            .await
            .expect("connect");
        let n: i64 = sqlx::query_scalar(&sql)
            .fetch_one(&pool)
            .await
            .expect("query");
        pool.close().await;
        n
    })
}

fn db_texts(url: &str, sql: &str) -> Vec<String> {
    let (url, sql) = (url.to_string(), sql.to_string());
    common::block_on(async move {
        let pool = ivr_data::cluster::PgPool::connect(&url)
            .await
            .expect("connect");
        let v: Vec<String> = sqlx::query_scalar(&sql)
            .fetch_all(&pool)
            .await
            .expect("query");
        pool.close().await;
        v
    })
}

/// Calls in progress on a node (`ivr_calls_in_progress` of `/metrics`).
fn in_progress(node: &Node) -> Option<u64> {
    metric(node, "ivr_calls_in_progress")
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(0))
}

/// SIPp with this test's own ports: `local` for SIP, `media` for RTP.
fn sipp(
    dir: &Path,
    proxy: SocketAddr,
    scenario: &str,
    local: u16,
    media: u16,
    args: &[&str],
) -> std::process::Child {
    Command::new("sipp")
        .current_dir(dir)
        .arg("-sf")
        .arg(repo().join("tests/sipp").join(scenario))
        .args(["-s", "100"])
        .arg(proxy.to_string())
        .args(["-i", "127.0.0.1", "-mi", "127.0.0.1"])
        .args(["-p", &local.to_string(), "-mp", &media.to_string()])
        .args(["-nostdin", "-timeout", "90", "-timeout_error", "-trace_err"])
        .args(["-key", "caller", CALLER])
        .args(["-key", "rtpport", &media.to_string()])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sipp")
}

fn finished(child: std::process::Child, dir: &Path) -> (bool, String) {
    let out = child.wait_with_output().expect("sipp");
    let mut text = String::from_utf8_lossy(&out.stdout).to_string();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().ends_with("_errors.log") {
                text.push_str(&fs::read_to_string(e.path()).unwrap_or_default());
                let _ = fs::remove_file(e.path());
            }
        }
    }
    let tail: Vec<&str> = text.lines().rev().take(40).collect();
    (
        out.status.success(),
        tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
    )
}

/// A node's `/status` (`null` when it does not answer).
fn status(node: &Node) -> serde_json::Value {
    let (_, _, body) = http_get(node.http, "/status");
    serde_json::from_str(&body).unwrap_or_default()
}

/// `n` callers through the proxy, 10 a second (takeover_caller.xml from `dir`, SIP port
/// `port`, RTP `port + 2`), all waiting at the menu (20 s at most); their SIPp and how many
/// of them node a holds (at least 2).
fn callers_at_the_menu(
    cluster: &Cluster,
    dir: &Path,
    port: u16,
    n: u32,
) -> (std::process::Child, i64) {
    let db = cluster.database();
    let callers = sipp(
        dir,
        cluster.proxy,
        "takeover_caller.xml",
        port,
        port + 2,
        &["-m", &n.to_string(), "-r", "10", "-l", &n.to_string()],
    );
    let start = Instant::now();
    while db_i64(
        &db,
        "SELECT count(*) FROM call_checkpoints WHERE node = 'choose'",
    ) < i64::from(n)
    {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{}",
            cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let on_a = db_i64(
        &db,
        "SELECT count(*) FROM call_checkpoints WHERE owner = 'a'",
    );
    assert!(on_a >= 2, "a holds {on_a} calls\n{}", cluster.logs());
    (callers, on_a)
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[test]
fn calls_of_a_killed_node_are_taken_over_and_finish_their_flow() {
    if !cluster_tools() {
        return;
    }
    let Some(capture) = dtmf_capture() else {
        return;
    };
    let scratch = scratch("calls");
    let dir = deployment("takeover");
    let calls_dir = dir.join("callers");
    let late_dir = dir.join("late");
    for d in [&calls_dir, &late_dir] {
        fs::create_dir_all(d).expect("dir");
        fs::copy(capture, d.join("dtmf.pcap")).expect("pcap");
    }
    let cluster = two_nodes(&dir, scratch.as_ref());
    let db = cluster.database();
    let a = cluster.node("a");
    both_up(&cluster, a);

    // 50 callers through the proxy, 10 a second.
    let port = 36_000 + (std::process::id() % 200) as u16 * 8;
    let callers = sipp(
        &calls_dir,
        cluster.proxy,
        "takeover_caller.xml",
        port,
        port + 2,
        &[
            "-m",
            &CALLS.to_string(),
            "-r",
            "10",
            "-l",
            &CALLS.to_string(),
        ],
    );
    // Every call answered and at the menu (the PIN typed), on both nodes.
    let start = Instant::now();
    loop {
        let on: Vec<u64> = cluster
            .nodes
            .iter()
            .map(|n| in_progress(n).unwrap_or(0))
            .collect();
        let at_menu = db_i64(
            &db,
            "SELECT count(*) FROM call_checkpoints WHERE node = 'choose'",
        );
        if on.iter().sum::<u64>() == u64::from(CALLS) && at_menu == i64::from(CALLS) {
            break;
        }
        if start.elapsed() > Duration::from_secs(30) {
            let nodes = db_texts(
                &db,
                "SELECT owner || ' ' || node || ' ' || count(*) FROM call_checkpoints
                  GROUP BY owner, node",
            );
            let mut callers = callers;
            let _ = callers.kill();
            let (_, out) = finished(callers, &calls_dir);
            panic!(
                "calls in progress {on:?}, at the menu {at_menu}, checkpoints {nodes:?}\n\
                 sipp:\n{out}\n{}",
                cluster.logs()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // The checkpoints hold the calls' variables, never the masked PIN.
    let rows = db_texts(&db, "SELECT row_to_json(c)::text FROM call_checkpoints c");
    assert_eq!(rows.len(), CALLS as usize);
    for r in &rows {
        assert!(!r.contains(PIN), "the masked PIN reached the table: {r}");
        assert!(r.contains("got_pin"), "the variables are saved: {r}");
    }
    let on_a = db_i64(
        &db,
        "SELECT count(*) FROM call_checkpoints WHERE owner = 'a'",
    );
    assert!(on_a >= 10, "a holds {on_a} calls\n{}", cluster.logs());
    let on_b = i64::from(CALLS) - on_a;

    // a dies.
    let killed_ms = unix_ms();
    let killed = Instant::now();
    a.kill();

    // New calls through the proxy succeed within 5 s of the kill.
    let mut first_ok = None;
    let mut tries = 0u16;
    while killed.elapsed() < Duration::from_secs(5) && first_ok.is_none() {
        tries += 1;
        let late = sipp(
            &late_dir,
            cluster.proxy,
            "call_bye.xml",
            port + 4 + (tries % 2),
            port + 6,
            &["-m", "1", "-d", "200"],
        );
        let (ok, _) = finished(late, &late_dir);
        if ok {
            first_ok = Some(killed.elapsed());
        }
    }
    let Some(first_ok) = first_ok else {
        panic!(
            "no new call succeeded within 5 s of the kill\n{}",
            cluster.logs()
        );
    };

    let (ok, out) = finished(callers, &calls_dir);
    let b_log = cluster.log("b");
    let taken: Vec<i64> = b_log
        .lines()
        .filter(|l| l.contains("call taken over: the caller answered the re-INVITE"))
        .filter_map(|l| {
            let i = l.find("unix_ms=")? + "unix_ms=".len();
            l[i..]
                .split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .map(|t: i64| t - killed_ms)
        .collect();
    let mut times = taken.clone();
    times.sort_unstable();
    eprintln!(
        "takeover: {} of {on_a} calls of the killed node re-INVITEd and answered; kill -> \
         re-INVITE answered: min {} ms, median {} ms, p95 {} ms, max {} ms; first new call \
         succeeded {} ms after the kill",
        times.len(),
        times.first().copied().unwrap_or(0),
        percentile(&times, 0.5),
        percentile(&times, 0.95),
        times.last().copied().unwrap_or(0),
        first_ok.as_millis()
    );

    // Every call ends (the flow's BYE); records are complete.
    let start = Instant::now();
    while db_i64(&db, "SELECT count(*) FROM calls_in_progress") > 0
        && start.elapsed() < Duration::from_secs(30)
    {
        std::thread::sleep(Duration::from_millis(300));
    }
    std::thread::sleep(Duration::from_millis(1_500));
    let late_calls = i64::from(tries);
    let rows = db_i64(&db, "SELECT count(*) FROM calls");
    let distinct = db_i64(&db, "SELECT count(DISTINCT call_id) FROM calls");
    let served = db_i64(
        &db,
        "SELECT count(*) FROM calls WHERE outcome = 'self_service' AND flow = 't'",
    );
    let in_progress_left = db_i64(&db, "SELECT count(*) FROM calls_in_progress");
    let checkpoints_left = db_i64(&db, "SELECT count(*) FROM call_checkpoints");
    let summary = format!(
        "calls rows {rows} (distinct {distinct}), self_service {served}, in progress {in_progress_left}, \
         checkpoints {checkpoints_left}, on a {on_a}, on b {on_b}, late calls {late_calls}\n\
         sipp ok {ok}:\n{out}\n{}",
        cluster.logs()
    );
    assert_eq!(rows, distinct, "a call record doubled: {summary}");
    // Every caller's call has its row (the late calls tried may have failed on the dead node).
    assert!(
        rows >= i64::from(CALLS) && rows <= i64::from(CALLS) + late_calls,
        "call records lost: {summary}"
    );
    assert_eq!(in_progress_left, 0, "{summary}");
    assert_eq!(checkpoints_left, 0, "{summary}");
    // b's own calls all finish; at least 95% of a's do, on b.
    let needed = on_b + (on_a * 95 + 99) / 100;
    assert!(
        served >= needed,
        "flows finished: {served} < {needed}: {summary}"
    );
    assert!(
        taken.len() as i64 * 100 >= on_a * 95,
        "re-INVITEs answered: {} of {on_a}: {summary}",
        taken.len()
    );
    // b's /status counts the calls it took over.
    let (_, _, body) = http_get(cluster.node("b").http, "/status");
    let status: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    assert_eq!(
        status["cluster"]["checkpoints"]["taken_over"].as_u64(),
        Some(taken.len() as u64),
        "{body}"
    );
    // A taken-over call's record is the one it started with: its arrival is the first node's
    // (every finished flow lasted from before the kill to after the takeover), and its node
    // visits go on numbered after the dead node's.
    let short = db_i64(
        &db,
        "SELECT count(*) FROM calls WHERE outcome = 'self_service'
            AND ended_at - started_at < interval '12 seconds'",
    );
    assert_eq!(short, 0, "a finished flow's record restarted: {summary}");
    let twice = db_i64(
        &db,
        "SELECT count(*) FROM (SELECT call_id, seq FROM node_visits
            GROUP BY call_id, seq HAVING count(*) > 1) d",
    );
    assert_eq!(twice, 0, "node visits numbered twice: {summary}");
    let resumed_visits = db_i64(
        &db,
        "SELECT count(DISTINCT call_id) FROM node_visits WHERE node = 'choose' AND seq > 3",
    );
    assert!(
        resumed_visits >= taken.len() as i64,
        "visits of the resumed menu: {resumed_visits}: {summary}"
    );
    assert!(
        times.iter().all(|t| *t < 7_000),
        "takeover times {times:?}: {summary}"
    );
    drop(cluster);
    drop(scratch);
    let _ = fs::remove_dir_all(&dir);
}

/// A checkpoint of `owner`'s call `id` (as a node writes it).
fn checkpoint(owner: &str, id: &str) -> ivr_data::checkpoints::Checkpoint {
    use ivr_data::checkpoints::{Checkpoint, DialogFacts, MediaFacts};
    Checkpoint {
        sip_call_id: id.into(),
        call_id: id.into(),
        owner: owner.into(),
        nodes: owner.into(),
        flow: "t".into(),
        flow_version: "v1".into(),
        node: "choose".into(),
        language: "zh-CN".into(),
        variables: r#"{"got_pin":["b",true]}"#.into(),
        served: Vec::new(),
        dialog: DialogFacts {
            call_id: id.into(),
            local_tag: format!("tag-{id}"),
            remote_tag: "r".into(),
            local: "<sip:10010@127.0.0.1>".into(),
            remote: "<sip:13800000001@127.0.0.1>;tag=r".into(),
            remote_target: "sip:13800000001@127.0.0.1:5070".into(),
            route_set: vec!["<sip:127.0.0.1:5060;lr>".into()],
            local_cseq: 0,
            remote_cseq: 1,
        },
        media: MediaFacts {
            remote: Some("127.0.0.1:6000".into()),
            codec: "pcmu".into(),
            pt: 0,
            event_pt: Some(101),
        },
        caller: "13800000001".into(),
        called: "10010".into(),
        channel: "sip".into(),
        started_at: 1_000,
        answered_at: Some(1_000),
        visit_seq: 3,
        agent_leg: None,
    }
}

/// The claim on the data layer (PostgreSQL of `IVR_TEST_POSTGRES_URL`): the live nodes split a
/// dead node's calls by shares, concurrent claims never take one call twice, a live node's
/// calls are not taken, a row that does not read is dropped, and a node starting gives its
/// last run's calls up.
#[test]
fn a_dead_nodes_calls_are_split_and_never_claimed_twice() {
    use ivr_data::checkpoints::{self, claim};
    let Ok(url) = std::env::var("IVR_TEST_POSTGRES_URL") else {
        skip("IVR_TEST_POSTGRES_URL is not set: the claim test is skipped");
        return;
    };
    let scratch = Scratch::new(&url, "takeover_claim");
    common::block_on(async {
        let pool = ivr_data::connect::open(&ivr_data::Target::Postgres(scratch.url.clone()), 8)
            .await
            .expect("open and migrate");
        let ivr_data::Pool::Postgres(pool) = pool else {
            panic!("not PostgreSQL")
        };
        for (name, age) in [("a", 10), ("b", 0), ("c", 0), ("d", 0), ("e", 30)] {
            sqlx::query(
                "INSERT INTO cluster_nodes (name, sip, http, deployment, flow_versions,
                     started_at, last_seen)
                 VALUES ($1, '', '', '', '', now(), now() - make_interval(secs => $2))",
            )
            .bind(name)
            .bind(f64::from(age))
            .execute(&pool)
            .await
            .expect("node");
        }
        let dead: Vec<_> = (0..90).map(|i| checkpoint("a", &format!("a{i}"))).collect();
        let live: Vec<_> = (0..5).map(|i| checkpoint("b", &format!("b{i}"))).collect();
        checkpoints::write(&pool, &dead).await.expect("write");
        checkpoints::write(&pool, &live).await.expect("write");
        assert_eq!(checkpoints::orphaned(&pool).await.expect("count"), 90);
        assert_eq!(
            checkpoints::live_nodes(&pool).await.expect("live"),
            ["b", "c", "d"]
        );
        // A node that is not the owner cannot overwrite a row (a late write of a dead node's
        // call once another took it).
        let mut stale = checkpoint("z", "a0");
        stale.node = "elsewhere".into();
        checkpoints::write(&pool, &[stale]).await.expect("write");
        // Three live nodes claim their shares at once.
        let (b, c, d) = tokio::join!(
            claim(&pool, "b", 0, 3, 1_000),
            claim(&pool, "c", 1, 3, 1_000),
            claim(&pool, "d", 2, 3, 1_000)
        );
        let shares: Vec<Vec<String>> = [b, c, d]
            .into_iter()
            .map(|r| {
                let (rows, bad) = r.expect("claim");
                assert_eq!(bad, 0);
                rows.into_iter().map(|c| c.sip_call_id).collect()
            })
            .collect();
        let mut all: Vec<&String> = shares.iter().flatten().collect();
        let n = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), n, "a call claimed twice: {shares:?}");
        assert_eq!(n, 90, "every call of the dead node claimed");
        for s in &shares {
            assert!(
                (15..=45).contains(&s.len()),
                "shares {:?}",
                shares.iter().map(Vec::len).collect::<Vec<_>>()
            );
            assert!(s.iter().all(|id| id.starts_with('a')), "{s:?}");
        }
        let row = sqlx::query_as::<_, (String, String, String)>(
            "SELECT owner, nodes, node FROM call_checkpoints WHERE sip_call_id = 'a0'",
        )
        .fetch_one(&pool)
        .await
        .expect("a0");
        assert_eq!(row.2, "choose", "the stale write was refused");
        assert!(
            row.1.starts_with("a,") && row.1.ends_with(&row.0),
            "{row:?}"
        );
        // Anyone's claim (a share of 1) from three nodes at once: still never twice.
        let more: Vec<_> = (0..60).map(|i| checkpoint("e", &format!("e{i}"))).collect();
        checkpoints::write(&pool, &more).await.expect("write");
        let (b, c, d) = tokio::join!(
            claim(&pool, "b", 0, 1, 25),
            claim(&pool, "c", 0, 1, 25),
            claim(&pool, "d", 0, 1, 25)
        );
        let mut ids: Vec<String> = [b, c, d]
            .into_iter()
            .flat_map(|r| r.expect("claim").0.into_iter().map(|c| c.sip_call_id))
            .collect();
        let n = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), n, "a call claimed twice");
        assert_eq!(n, 60);
        assert_eq!(checkpoints::orphaned(&pool).await.expect("count"), 0);
        // The live node's calls were not touched; a row that does not read is dropped.
        assert_eq!(
            checkpoints::delete(&pool, "b", &["b0".to_string()])
                .await
                .expect("delete"),
            1
        );
        sqlx::query(
            "UPDATE call_checkpoints SET owner = 'a', dialog = '{\"call_id\": 5}'
              WHERE sip_call_id = 'b1'",
        )
        .execute(&pool)
        .await
        .expect("spoil");
        sqlx::query(
            "UPDATE call_checkpoints SET owner = 'a', dialog = $1 WHERE sip_call_id = 'b2'",
        )
        .bind("x".repeat(ivr_data::checkpoints::MAX_FACTS_JSON + 1))
        .execute(&pool)
        .await
        .expect("spoil");
        // A dialog whose From would add a header of its own to the re-INVITE.
        let mut injected = checkpoint("a", "b3");
        injected.dialog.remote = "<sip:x@127.0.0.1>;tag=r\r\nX-Injected: 1".into();
        sqlx::query(
            "UPDATE call_checkpoints SET owner = 'a', dialog = $1 WHERE sip_call_id = 'b3'",
        )
        .bind(serde_json::to_string(&injected.dialog).expect("json"))
        .execute(&pool)
        .await
        .expect("spoil");
        let (rows, bad) = claim(&pool, "c", 0, 1, 100).await.expect("claim");
        assert_eq!((rows.len(), bad), (0, 3));
        assert_eq!(checkpoints::count(&pool).await.expect("count"), 150 + 1);
        // b starts again: its last run's calls are given up to the cluster.
        let owned: i64 =
            sqlx::query_scalar("SELECT count(*) FROM call_checkpoints WHERE owner = 'b'")
                .fetch_one(&pool)
                .await
                .expect("count");
        assert!(owned > 2, "b's own and those it claimed: {owned}");
        let released = checkpoints::release(&pool, "b").await.expect("release");
        assert_eq!(i64::try_from(released).ok(), Some(owned));
        assert_eq!(checkpoints::orphaned(&pool).await.expect("count"), owned);
        let (rows, _) = claim(&pool, "d", 0, 1, 1_000).await.expect("claim");
        assert_eq!(rows.len() as i64, owned);
        assert_eq!(rows[0].variables, r#"{"got_pin":["b",true]}"#);
        assert_eq!(rows[0].visit_seq, 3);
        pool.close().await;
    });
    drop(scratch);
}

/// Fencing on the data layer (PostgreSQL of `IVR_TEST_POSTGRES_URL`): the old node's
/// checkpoint write of a call another node claimed is refused and said so, as is one of a
/// call whose record is written (it ended elsewhere: no row is made again); `taken_from`
/// names who has each call (`""`: its record is written), and leaves the node's own calls
/// and the calls not checkpointed yet out.
#[test]
fn the_old_nodes_writes_for_calls_taken_from_it_are_refused() {
    use ivr_data::checkpoints::{self, claim, taken_from};
    let Ok(url) = std::env::var("IVR_TEST_POSTGRES_URL") else {
        skip("IVR_TEST_POSTGRES_URL is not set: the fencing data test is skipped");
        return;
    };
    let scratch = Scratch::new(&url, "takeover_fence");
    common::block_on(async {
        let pool = ivr_data::connect::open(&ivr_data::Target::Postgres(scratch.url.clone()), 4)
            .await
            .expect("open and migrate");
        let ivr_data::Pool::Postgres(pool) = pool else {
            panic!("not PostgreSQL")
        };
        for (name, age) in [("a", 10), ("b", 0)] {
            sqlx::query(
                "INSERT INTO cluster_nodes (name, sip, http, deployment, flow_versions,
                     started_at, last_seen)
                 VALUES ($1, '', '', '', '', now(), now() - make_interval(secs => $2))",
            )
            .bind(name)
            .bind(f64::from(age))
            .execute(&pool)
            .await
            .expect("node");
        }
        let calls: Vec<_> = (0..3).map(|i| checkpoint("a", &format!("f{i}"))).collect();
        let refused = checkpoints::write(&pool, &calls).await.expect("write");
        assert!(refused.is_empty(), "{refused:?}");
        let (claimed, _) = claim(&pool, "b", 0, 1, 2).await.expect("claim");
        assert_eq!(claimed.len(), 2);
        let taken_id = claimed[0].sip_call_id.clone();
        let ended_id = claimed[1].sip_call_id.clone();
        let kept = calls
            .iter()
            .find(|c| c.sip_call_id != taken_id && c.sip_call_id != ended_id)
            .expect("one left")
            .clone();
        // An earlier call that used the same Call-ID (another arrival) is another call.
        for (id, started) in [(&kept.call_id, 5_000_i64), (&ended_id, 1_000)] {
            // b ends one of them: its record written (its arrival as the checkpoint's),
            // its checkpoint gone.
            sqlx::query(
                "INSERT INTO calls (call_id, caller, called, flow, flow_version, channel,
                     started_at) VALUES ($1, '', '', 't', 'v1', 'sip', $2)",
            )
            .bind(id)
            .bind(ivr_data::records::timestamp(started))
            .execute(&pool)
            .await
            .expect("record");
        }
        assert_eq!(
            checkpoints::delete(&pool, "b", std::slice::from_ref(&ended_id))
                .await
                .expect("delete"),
            1
        );
        // a runs on: its writes for both are refused, its own call's is taken.
        let refused = checkpoints::write(&pool, &calls).await.expect("write");
        let mut expected = vec![taken_id.clone(), ended_id.clone()];
        expected.sort();
        let mut got = refused.clone();
        got.sort();
        assert_eq!(got, expected);
        assert_eq!(checkpoints::count(&pool).await.expect("count"), 2);
        let mut asked: Vec<(String, String, i64)> = calls
            .iter()
            .map(|c| (c.sip_call_id.clone(), c.call_id.clone(), c.started_at))
            .collect();
        asked.push(("new".into(), "new".into(), 1_000));
        let mut taken = taken_from(&pool, "a", &asked).await.expect("taken");
        taken.sort();
        let mut expected = vec![(taken_id, "b".to_string()), (ended_id, String::new())];
        expected.sort();
        assert_eq!(taken, expected, "{kept:?}");
        pool.close().await;
    });
    drop(scratch);
}

/// The node taking over serves a newer version of the flow, which has no node of the name the
/// calls were in: each caller is re-INVITEd, then the call ends at once (BYE) and its record
/// as `failed` (ended by the system), one row per call, nothing left in progress. The other
/// node's own calls go on in the version they started with.
#[test]
fn a_call_whose_node_is_gone_from_the_live_version_ends_cleanly() {
    if !cluster_tools() {
        return;
    }
    let Some(capture) = dtmf_capture() else {
        return;
    };
    const N: u32 = 10;
    let scratch = scratch("gone");
    let dir = deployment("takeover-gone");
    let calls_dir = dir.join("callers");
    fs::create_dir_all(&calls_dir).expect("dir");
    fs::copy(capture, calls_dir.join("dtmf.pcap")).expect("pcap");
    let cluster = two_nodes(&dir, scratch.as_ref());
    let db = cluster.database();
    let (a, b) = (cluster.node("a"), cluster.node("b"));
    both_up(&cluster, a);
    let port = 36_000 + (std::process::id() % 200) as u16 * 8 + 1_700;
    let (callers, on_a) = callers_at_the_menu(&cluster, &calls_dir, port, N);
    // A new version without `choose` goes live on both nodes (they watch the same folder).
    let before = status(b)["version"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    fs::write(
        dir.join("flows/t.flow"),
        FLOW.replace("menu choose {", "menu pick {")
            .replace("-> choose", "-> pick")
            .replace("goto choose", "goto pick"),
    )
    .expect("edit");
    let start = Instant::now();
    while [a, b]
        .iter()
        .any(|n| status(n)["version"].as_str().unwrap_or(&before) == before)
    {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the edit is not live: {}",
            cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    a.kill();
    // The dead node's calls end as failed; b's own finish their flow.
    let start = Instant::now();
    while db_i64(&db, "SELECT count(*) FROM calls_in_progress") > 0
        || db_i64(&db, "SELECT count(*) FROM call_checkpoints") > 0
    {
        if start.elapsed() > Duration::from_secs(40) {
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let (_, out) = finished(callers, &calls_dir);
    std::thread::sleep(Duration::from_millis(1_500));
    let summary = format!("on a {on_a}\nsipp:\n{out}\n{}", cluster.logs());
    assert_eq!(
        db_i64(&db, "SELECT count(*) FROM calls_in_progress"),
        0,
        "{summary}"
    );
    assert_eq!(
        db_i64(&db, "SELECT count(*) FROM call_checkpoints"),
        0,
        "{summary}"
    );
    assert_eq!(
        db_i64(&db, "SELECT count(*) FROM calls"),
        i64::from(N),
        "{summary}"
    );
    assert_eq!(
        db_i64(&db, "SELECT count(DISTINCT call_id) FROM calls"),
        i64::from(N),
        "{summary}"
    );
    assert_eq!(
        db_i64(
            &db,
            "SELECT count(*) FROM calls WHERE outcome = 'failed' AND ended_by = 'system'"
        ),
        on_a,
        "{summary}"
    );
    assert_eq!(
        db_i64(
            &db,
            "SELECT count(*) FROM calls WHERE outcome = 'self_service'"
        ),
        i64::from(N) - on_a,
        "{summary}"
    );
    let b_log = cluster.log("b");
    assert_eq!(
        b_log.matches("a call taken over cannot go on").count() as i64,
        on_a,
        "{summary}"
    );
    drop(cluster);
    drop(scratch);
    let _ = fs::remove_dir_all(&dir);
}

/// A queue with agents: callers of the bridged-call test talk with one of them.
const BRIDGE_FLOW: &str = r##"
flow q {
    title    "bridged takeover"
    language zh-CN
    entry    hello
}

step hello {
    play short
    goto queue
}

transfer queue {
    queue     general
    attach    caller
    music     short
    max_wait  60s -> sorry
    no_agents -> sorry
}

step sorry {
    play short
    hangup
}
"##;

/// 200: a short call that only hears a prompt (to move Kamailio's round-robin on).
const SHORT_FLOW: &str = r##"
flow s {
    title    "short"
    language zh-CN
    entry    bye
}

step bye {
    play short
    hangup
}
"##;

/// The agents of the bridged-call test (passwords `pwID`, realm `ivr`).
const AGENTS: [(&str, &str); 3] = [
    ("2001", "c77c65cb80b98f26c9ce22ff8c3ae0ca"),
    ("2002", "cad561eaa6db436ad7848520ac0e9ba3"),
    ("2003", "3055c33baac7b219655f18e98fddaba4"),
];

fn bridge_deployment(name: &str) -> PathBuf {
    let dir = temp_dir(name);
    fs::create_dir_all(dir.join("flows")).expect("flows");
    fs::create_dir_all(dir.join("prompts/zh-CN")).expect("prompts");
    fs::write(dir.join("flows/q.flow"), BRIDGE_FLOW).expect("flow q");
    fs::write(dir.join("flows/s.flow"), SHORT_FLOW).expect("flow s");
    ivr_media::audio::write_wav(&dir.join("prompts/zh-CN/short.wav"), &tone(500.0, 300))
        .expect("wav");
    fs::write(
        dir.join("prompts/zh-CN/prompts.toml"),
        "short = { text = \"short\" }\n",
    )
    .expect("catalog");
    let mut agents = String::new();
    for (id, ha1) in AGENTS {
        agents.push_str(&format!(
            "[agents.{id}]\nname = \"agent {id}\"\nha1 = \"{ha1}\"\n\n"
        ));
    }
    fs::write(
        dir.join("ivr.toml"),
        format!(
            "{}[queues.general]\nring_timeout = \"5s\"\nwrap_up = \"2s\"\n\n{agents}\
             [routes]\n\"200\" = \"s\"\ndefault = \"q\"\n",
            config_head(rtp_ports())
        ),
    )
    .expect("config");
    dir
}

/// A SIPp of these tests in the background against the proxy (90 s at most).
fn peer(dir: &Path, proxy: SocketAddr, scenario: &str, args: &[&str]) -> Peer {
    Peer::spawn_for(dir, Some(proxy), scenario, 90, args)
}

/// A caller `caller` of 10010 through the proxy running `scenario` with the extra SIPp
/// `args`, its RTP an [`Endpoint`] sending PCMU voice from `ssrc` for `talk_ms` once it
/// hears anything: the caller and its media.
fn talking_caller(
    dir: &Path,
    proxy: SocketAddr,
    (scenario, args): (&str, &[&str]),
    caller: &str,
    (ssrc, talk_ms): (u32, u64),
) -> (Peer, Endpoint) {
    let media = talking_media(ssrc, talk_ms);
    let (sip, rtp) = (free_udp_port().to_string(), media.port.to_string());
    let mut all = vec![
        "-p", &sip, "-m", "1", "-s", "10010", "-key", "caller", caller, "-key", "rtpport", &rtp,
    ];
    all.extend_from_slice(args);
    (peer(dir, proxy, scenario, &all), media)
}

/// What a failing test shows of a peer: its last 40 lines.
fn report(peer: &Peer) -> String {
    peer.report_lines(40)
}

/// Which node leads the ACD once both are up (within 15 s).
fn leader(cluster: &Cluster) -> String {
    let started = Instant::now();
    loop {
        for n in &cluster.nodes {
            let v = cluster_status(n).unwrap_or_default();
            let up = v["nodes"]
                .as_array()
                .map_or(0, |n| n.iter().filter(|n| n["up"] == true).count());
            if up == cluster.nodes.len()
                && let Some(l) = v["acd"]["leader"].as_str()
            {
                return l.to_string();
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "no leader\n{}",
            cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Short calls through the proxy until the next one goes to node `to`.
fn next_call_to(cluster: &Cluster, dir: &Path, to: &str) {
    for _ in 0..3 {
        let before = cluster.answered();
        let mut short = peer(
            dir,
            cluster.proxy,
            "flow_hangs_up.xml",
            &[
                "-p",
                &free_udp_port().to_string(),
                "-m",
                "1",
                "-s",
                "200",
                "-key",
                "caller",
                "13800000999",
                "-key",
                "rtpport",
                &free_udp_port().to_string(),
            ],
        );
        assert!(
            short.wait(Duration::from_secs(20)),
            "a short call:\n{}\n{}",
            report(&short),
            cluster.logs()
        );
        let after = cluster.answered();
        let took = (0..cluster.nodes.len())
            .find(|&i| after[i] > before[i])
            .map(|i| cluster.nodes[i].name.clone())
            .expect("a node answered");
        if took != to {
            return;
        }
    }
    panic!(
        "Kamailio's round-robin did not alternate\n{}",
        cluster.logs()
    );
}

/// Registers agent `id` (password `pwID`) through the proxy for its phone on `port`; waits
/// until every node shows it logged in.
fn register(cluster: &Cluster, dir: &Path, id: &str, port: u16) {
    register_agent(dir, cluster.proxy, id, &format!("pw{id}"), port, || {
        cluster.logs()
    });
    for n in &cluster.nodes {
        wait_until_else(
            &format!("node {} shows {id} logged in", n.name),
            Duration::from_secs(10),
            || !matches!(agent_state(n.http, id).as_str(), "offline" | ""),
            || cluster.logs(),
        );
    }
}

/// A bridged call survives its node (docs/cluster.md, "Calls taken over"): three SIPp
/// callers through Kamailio talk with three SIPp agents' phones (registered through the
/// proxy) on the node that does not lead the ACD, which is then killed (SIGKILL). The other
/// node re-INVITEs both legs of each call through the proxy (the agent's in the dialog the dead
/// node placed), bridges them again and tells the ACD, whose agents stay talking: a fourth
/// caller waits meanwhile. RTP flows both ways after the takeover (counted at both ends); each
/// caller's BYE ends its agent's leg; each call has one `calls` row with its agent; after its
/// wrap-up an agent takes the fourth caller. Prints kill -> both legs re-INVITEd and bridged.
#[test]
fn bridged_calls_of_a_killed_node_are_bridged_again_on_the_other() {
    bridged_takeover(false);
}

/// As above, the callers on the node that leads the ACD, which is killed: the other node
/// leads, rebuilds the ACD with the agents talking (the dead leader's talking calls are kept
/// for the takeover), and takes the calls over.
#[test]
fn bridged_calls_of_the_killed_leader_are_bridged_again_and_its_agents_stay_talking() {
    bridged_takeover(true);
}

fn bridged_takeover(kill_leader: bool) {
    if !cluster_tools() {
        return;
    }
    let scratch = scratch(if kill_leader { "bridged_l" } else { "bridged" });
    let dir = bridge_deployment(if kill_leader {
        "takeover-bridged-leader"
    } else {
        "takeover-bridged"
    });
    let cluster = two_nodes(&dir, scratch.as_ref());
    let db = cluster.database();
    let leader = leader(&cluster);
    let other = if leader == "a" { "b" } else { "a" };
    // The callers go to the node that is killed.
    let (victim, kept) = if kill_leader {
        (leader.as_str(), other)
    } else {
        (other, leader.as_str())
    };
    let survivor = cluster.node(kept);
    eprintln!("the ACD leads on {leader}; the callers go to {victim}, which is killed");

    // Three agents' phones, each with its RTP endpoint (SSRC 100 + i).
    let mut phones = Vec::new();
    for (i, (id, _)) in AGENTS.iter().enumerate() {
        let (phone, media, port) = talking_phone(
            &dir,
            cluster.proxy,
            ("cluster_agent_reinvited.xml", 1, 90),
            (100 + i as u32, 40_000),
        );
        register(&cluster, &dir, id, port);
        phones.push((phone, media, port));
    }
    // Three callers on the victim, each bridged to an agent (SSRC 10 + i).
    let mut callers = Vec::new();
    for i in 0..3u32 {
        next_call_to(&cluster, &dir, victim);
        callers.push(talking_caller(
            &dir,
            cluster.proxy,
            ("takeover_bridged_caller.xml", &["-d", "6000"]),
            &format!("1380000010{i}"),
            (10 + i, 40_000),
        ));
        let want = i64::from(i) + 1;
        wait_until_else(
            &format!("{want} callers bridged to agents on {victim}"),
            Duration::from_secs(20),
            || {
                db_i64(
                    &db,
                    &format!(
                        "SELECT count(*) FROM call_checkpoints
                          WHERE owner = '{victim}' AND agent_leg IS NOT NULL"
                    ),
                ) == want
            },
            || cluster.logs(),
        );
    }
    // The checkpoints hold each agent's leg: its agent, queue and dialog.
    let legs = db_texts(&db, "SELECT agent_leg FROM call_checkpoints");
    for l in &legs {
        let v: serde_json::Value = serde_json::from_str(l).expect("agent leg JSON");
        assert_eq!(v["queue"], "general", "{l}");
        assert!(
            v["agent"].as_str().is_some_and(|a| a.starts_with("200")),
            "{l}"
        );
        assert!(
            v["dialog"]["remote_tag"]
                .as_str()
                .is_some_and(|t| !t.is_empty()),
            "{l}"
        );
        assert!(
            !v["dialog"]["route_set"]
                .as_array()
                .is_none_or(Vec::is_empty),
            "{l}"
        );
    }
    std::thread::sleep(Duration::from_millis(1_000));

    // The victim dies.
    let killed_ms = unix_ms();
    let killed = Instant::now();
    cluster.node(victim).kill();
    // Both legs of every call re-INVITEd and bridged again by the survivor.
    let bridged_again = || {
        cluster
            .log(kept)
            .lines()
            .filter(|l| l.contains("the agent's leg of a call taken over answered: bridged again"))
            .filter_map(|l| {
                let i = l.find("unix_ms=")? + "unix_ms=".len();
                l[i..]
                    .split(|c: char| !c.is_ascii_digit())
                    .next()?
                    .parse::<i64>()
                    .ok()
            })
            .map(|t| t - killed_ms)
            .collect::<Vec<i64>>()
    };
    wait_until_else(
        "three calls bridged again",
        Duration::from_secs(20),
        || bridged_again().len() == 3,
        || cluster.logs(),
    );
    let mut times = bridged_again();
    times.sort_unstable();
    let rebridged =
        killed + Duration::from_millis(times.last().copied().unwrap_or(0).max(0) as u64);
    eprintln!(
        "bridged takeover (the leader killed: {kill_leader}): kill -> both legs re-INVITEd and \
         bridged again: {times:?} ms (min {}, max {})",
        times.first().copied().unwrap_or(0),
        times.last().copied().unwrap_or(0)
    );
    // The agents still talk (the leader held them for the takeover): a fourth caller waits.
    for (id, _) in AGENTS {
        assert_eq!(
            agent_state(survivor.http, id),
            "on_call",
            "{}",
            cluster.logs()
        );
    }
    let (mut fourth, fourth_media) = talking_caller(
        &dir,
        cluster.proxy,
        ("call_bye.xml", &["-d", "16000"]),
        "13800000200",
        (20, 30_000),
    );
    wait_until_else(
        "the fourth caller waits",
        Duration::from_secs(10),
        || queue_waiting(survivor.http, "general") == 1,
        || cluster.logs(),
    );
    for (id, _) in AGENTS {
        assert_eq!(
            agent_state(survivor.http, id),
            "on_call",
            "an agent talking with a call taken over was offered another\n{}",
            cluster.logs()
        );
    }
    // The callers hang up (6 s after the re-INVITE): their BYE ends the agents' legs, and each
    // phone, free again, answers whatever comes next on the same port.
    let mut next_phones = Vec::new();
    let mut heard = Vec::new();
    for (i, ((mut caller, caller_media), (mut phone, agent_media, port))) in
        callers.into_iter().zip(phones).enumerate()
    {
        let c = caller.wait(Duration::from_secs(30));
        let p = phone.wait(Duration::from_secs(10));
        assert!(
            c && p,
            "caller {i}: {c}, its agent's phone: {p}\n{}\n{}\n{}",
            report(&caller),
            report(&phone),
            cluster.logs()
        );
        next_phones.push(talking_phone_on(
            &dir,
            cluster.proxy,
            port,
            ("cluster_answers_until_bye.xml", 1, 90),
            (200 + i as u32, 20_000),
        ));
        let (at_caller, _) = caller_media.finish();
        let (at_agent, _) = agent_media.finish();
        // After the takeover: the caller hears its agent, the agent its caller.
        let after = |got: &[common::Pkt], ssrc: u32| {
            got.iter()
                .filter(|p| p.ssrc == ssrc && p.at > rebridged)
                .count()
        };
        let (to_caller, to_agent) = (
            after(&at_caller, 100 + i as u32),
            after(&at_agent, 10 + i as u32),
        );
        heard.push((to_caller, to_agent));
        // Whose agent is whose is the ACD's choice: any agent's SSRC counts for the caller.
        let to_caller_any: usize = (0..3).map(|j| after(&at_caller, 100 + j)).sum();
        let to_agent_any: usize = (0..3).map(|j| after(&at_agent, 10 + j)).sum();
        assert!(
            to_caller_any >= 25 && to_agent_any >= 25,
            "RTP after the takeover: caller {i} heard {to_caller_any} packets of an agent, \
             its agent {to_agent_any} of a caller\n{}",
            cluster.logs()
        );
    }
    eprintln!("bridged takeover: RTP after the takeover (to caller, to agent): {heard:?}");
    // The fourth caller is answered by an agent once its call (and wrap-up) is over.
    let f = fourth.wait(Duration::from_secs(40));
    let (at_fourth, _) = fourth_media.finish();
    assert!(
        f,
        "the fourth caller\n{}\n{}",
        report(&fourth),
        cluster.logs()
    );
    let from_agent: usize = (0..3)
        .map(|j| at_fourth.iter().filter(|p| p.ssrc == 200 + j).count())
        .sum();
    assert!(
        from_agent >= 25,
        "the fourth caller heard an agent: {from_agent}"
    );
    drop(next_phones);

    // Records: one row per call, the bridged calls' with their agent.
    wait_until_else(
        "records written",
        Duration::from_secs(15),
        || db_i64(&db, "SELECT count(*) FROM calls_in_progress") == 0,
        || cluster.logs(),
    );
    std::thread::sleep(Duration::from_millis(1_500));
    let rows = db_texts(
        &db,
        "SELECT caller || ' ' || coalesce(outcome, '-') || ' ' || coalesce(agent, '-')
           FROM calls WHERE flow = 'q' ORDER BY id",
    );
    let summary = format!("{rows:?}\n{}", cluster.logs());
    assert_eq!(
        db_i64(&db, "SELECT count(*) FROM calls"),
        db_i64(&db, "SELECT count(DISTINCT call_id) FROM calls"),
        "a record doubled: {summary}"
    );
    for i in 0..3 {
        let mine: Vec<&String> = rows
            .iter()
            .filter(|r| r.starts_with(&format!("1380000010{i} ")))
            .collect();
        assert_eq!(mine.len(), 1, "caller {i}: {summary}");
        assert!(
            mine[0].contains(" transferred 200"),
            "caller {i} with its agent: {summary}"
        );
    }
    assert!(
        rows.iter()
            .any(|r| r.starts_with("13800000200 transferred 200")),
        "the fourth caller with an agent: {summary}"
    );
    assert_eq!(
        db_i64(&db, "SELECT count(*) FROM call_checkpoints"),
        0,
        "{summary}"
    );
    assert!(
        times.iter().all(|t| *t < 10_000),
        "takeover times {times:?}: {summary}"
    );
    drop(cluster);
    drop(scratch);
    let _ = fs::remove_dir_all(&dir);
}

/// A bridged call whose agent's phone refuses the re-INVITE of the node taking the call over
/// (481: it forgot the call): the bridge is dropped as if the agent had hung up; the flow has
/// no `after`, so the new node ends the caller's call with a BYE; the agent is free again
/// (after its wrap-up), and the call's one record says `transferred` with the agent, ended by
/// the agent.
#[test]
fn a_bridged_call_whose_agent_refuses_the_reinvite_ends_as_a_dropped_bridge() {
    if !cluster_tools() {
        return;
    }
    let scratch = scratch("refused");
    let dir = bridge_deployment("takeover-refused");
    let cluster = two_nodes(&dir, scratch.as_ref());
    let db = cluster.database();
    let leader = leader(&cluster);
    let victim = if leader == "a" { "b" } else { "a" };
    let survivor = cluster.node(&leader);
    let (mut phone, agent_media, port) = talking_phone(
        &dir,
        cluster.proxy,
        ("cluster_agent_refuses_reinvite.xml", 1, 90),
        (100, 30_000),
    );
    register(&cluster, &dir, "2001", port);
    next_call_to(&cluster, &dir, victim);
    let (mut caller, caller_media) = talking_caller(
        &dir,
        cluster.proxy,
        ("takeover_bridged_caller_dropped.xml", &[]),
        "13800000300",
        (10, 30_000),
    );
    wait_until_else(
        "the caller bridged to 2001",
        Duration::from_secs(20),
        || {
            db_i64(
                &db,
                &format!(
                    "SELECT count(*) FROM call_checkpoints
                      WHERE owner = '{victim}' AND agent_leg IS NOT NULL"
                ),
            ) == 1
        },
        || cluster.logs(),
    );
    std::thread::sleep(Duration::from_millis(500));
    cluster.node(victim).kill();
    let c = caller.wait(Duration::from_secs(30));
    let p = phone.wait(Duration::from_secs(10));
    let _ = (caller_media.finish(), agent_media.finish());
    assert!(
        c && p,
        "caller {c}, phone {p}\n{}\n{}\n{}",
        report(&caller),
        report(&phone),
        cluster.logs()
    );
    assert!(
        cluster
            .log(&leader)
            .contains("refused its re-INVITE: the bridge is dropped"),
        "{}",
        cluster.logs()
    );
    // The agent is free again once its wrap-up is over.
    wait_until_else(
        "2001 available again",
        Duration::from_secs(10),
        || agent_state(survivor.http, "2001") == "available",
        || cluster.logs(),
    );
    wait_until_else(
        "records written",
        Duration::from_secs(15),
        || db_i64(&db, "SELECT count(*) FROM calls_in_progress") == 0,
        || cluster.logs(),
    );
    std::thread::sleep(Duration::from_millis(1_000));
    let rows = db_texts(
        &db,
        "SELECT coalesce(outcome, '-') || ' ' || coalesce(agent, '-') || ' ' || ended_by
           FROM calls WHERE caller = '13800000300'",
    );
    assert_eq!(rows, ["transferred 2001 agent"], "{}", cluster.logs());
    assert_eq!(db_i64(&db, "SELECT count(*) FROM call_checkpoints"), 0);
    drop(cluster);
    drop(scratch);
    let _ = fs::remove_dir_all(&dir);
}

/// A node taken for dead that runs on (docs/cluster.md, "Fencing"): 10 callers at the long
/// menu, the node holding some of them frozen (SIGSTOP) for 8 s, so that the other node takes
/// them over (re-INVITE), then thawed (SIGCONT). The callers finish their flow with the node
/// that took them (key 1, its BYE: SIPp fails a call on anything else in its flow); the
/// thawed node stops those calls quietly (`taken over by node b`, counted in /metrics), with
/// no BYE and no record: exactly one `calls` row per call, `calls_in_progress` and
/// `call_checkpoints` empty. Without fencing the thawed node's calls run on until their RTP
/// times out and write a second record each. The thawed node then serves new calls.
#[test]
fn a_frozen_node_stops_the_calls_taken_over_while_it_was_frozen() {
    if !cluster_tools() {
        return;
    }
    let Some(capture) = dtmf_capture() else {
        return;
    };
    const N: u32 = 10;
    let scratch = scratch("frozen");
    let dir = deployment("takeover-frozen");
    let calls_dir = dir.join("callers");
    let late_dir = dir.join("late");
    for d in [&calls_dir, &late_dir] {
        fs::create_dir_all(d).expect("dir");
        fs::copy(capture, d.join("dtmf.pcap")).expect("pcap");
    }
    let cluster = two_nodes(&dir, scratch.as_ref());
    let db = cluster.database();
    let (a, b) = (cluster.node("a"), cluster.node("b"));
    both_up(&cluster, a);
    let port = 40_000 + (std::process::id() % 200) as u16 * 8;
    let (callers, on_a) = callers_at_the_menu(&cluster, &calls_dir, port, N);
    // a freezes for 8 s: b takes its calls over (a is down 5 s after its last heartbeat).
    a.freeze();
    std::thread::sleep(Duration::from_secs(8));
    let owned_by_b_while_frozen = db_i64(
        &db,
        "SELECT count(*) FROM call_checkpoints WHERE owner = 'b'",
    );
    a.thaw();
    let (ok, out) = finished(callers, &calls_dir);
    // a's calls stop (quietly, or without fencing at their RTP timeout, 30 s after they began).
    let start = Instant::now();
    while in_progress(a).is_none_or(|n| n > 0) && start.elapsed() < Duration::from_secs(40) {
        std::thread::sleep(Duration::from_millis(300));
    }
    let start = Instant::now();
    while (db_i64(&db, "SELECT count(*) FROM calls_in_progress") > 0
        || db_i64(&db, "SELECT count(*) FROM call_checkpoints") > 0)
        && start.elapsed() < Duration::from_secs(20)
    {
        std::thread::sleep(Duration::from_millis(300));
    }
    std::thread::sleep(Duration::from_millis(1_500));
    let rows = db_i64(&db, "SELECT count(*) FROM calls");
    let distinct = db_i64(&db, "SELECT count(DISTINCT call_id) FROM calls");
    let served = db_i64(
        &db,
        "SELECT count(*) FROM calls WHERE outcome = 'self_service'",
    );
    let a_log = cluster.log("a");
    let stopped = a_log.matches("taken over by node b").count() as i64;
    let summary = format!(
        "on a {on_a}, owned by b while a was frozen {owned_by_b_while_frozen}, calls rows \
         {rows} (distinct {distinct}), self_service {served}, stopped quietly on a {stopped}\n\
         sipp ok {ok}:\n{out}\n{}",
        cluster.logs()
    );
    assert!(owned_by_b_while_frozen >= on_a, "{summary}");
    assert!(ok, "a caller did not finish its flow: {summary}");
    assert_eq!(rows, distinct, "a call record doubled: {summary}");
    assert_eq!(rows, i64::from(N), "{summary}");
    assert_eq!(served, i64::from(N), "{summary}");
    assert_eq!(
        db_i64(&db, "SELECT count(*) FROM calls_in_progress"),
        0,
        "{summary}"
    );
    assert_eq!(
        db_i64(&db, "SELECT count(*) FROM call_checkpoints"),
        0,
        "{summary}"
    );
    assert_eq!(stopped, on_a, "{summary}");
    // Every call of a was taken over: no flow ended there (a flow's end, or its media's
    // timeout, is where the node's BYE would come from).
    let ended_on_a = a_log
        .lines()
        .filter(|l| {
            (l.contains("call ended") && l.contains("ended_by=")) || l.contains("no RTP for")
        })
        .count();
    assert_eq!(ended_on_a, 0, "{summary}");
    let (_, _, metrics) = http_get(a.http, "/metrics");
    assert!(
        metrics.contains(&format!("ivr_cluster_fenced_calls_total {on_a}\n")),
        "{summary}\n{metrics}"
    );
    assert_eq!(
        status(b)["cluster"]["checkpoints"]["taken_over"].as_i64(),
        Some(on_a),
        "{summary}"
    );
    // The thawed node serves new calls again (once the proxy has it back).
    let answered = |log: &str| log.matches("call answered").count();
    let before = answered(&a_log);
    let start = Instant::now();
    let mut tries = 0u16;
    while answered(&cluster.log("a")) == before {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the thawed node takes no new call: {}",
            cluster.logs()
        );
        tries += 1;
        let late = sipp(
            &late_dir,
            cluster.proxy,
            "call_bye.xml",
            port + 4 + (tries % 2),
            port + 6,
            &["-m", "1", "-d", "200"],
        );
        let _ = finished(late, &late_dir);
        std::thread::sleep(Duration::from_millis(300));
    }
    drop(cluster);
    drop(scratch);
    let _ = fs::remove_dir_all(&dir);
}
