//! A cluster on loopback (docs/cluster.md): `scripts/cluster.sh up 2` starts PostgreSQL,
//! Kamailio and two `ivr serve` nodes; SIPp calls through Kamailio reach both nodes; the ACD's
//! leader killed with SIGKILL is replaced within 5 s; the dead node shows down and new calls
//! succeed again; `down` leaves no process behind. Also the leadership's epoch and a deposed
//! leader, on the data layer (PostgreSQL of `IVR_TEST_POSTGRES_URL`).

mod common;

use common::cluster::{
    Cluster, Node, Ports, answered, cluster_status, cluster_tools, metric, wait_for,
};
use common::postgres::{drop_database, scratch_database};
use common::{config_head, have, http_get, rtp_range, skip, temp_dir, tone};
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A flow that keeps the line until the caller hangs up (or 20 s go by).
const FLOW: &str = r##"
flow t {
    title    "cluster test"
    language zh-CN
    entry    hello
}

step hello {
    play hello
    goto choose
}

menu choose {
    prompt   hello
    timeout  10s
    attempts 2 -> bye
    key 1 -> bye
}

step bye {
    play hello
    hangup
}
"##;

/// The deployment every node serves: the flow above, one prompt, the embedded demo database.
fn deployment(name: &str) -> PathBuf {
    let dir = temp_dir(name);
    fs::create_dir_all(dir.join("flows")).expect("flows");
    fs::create_dir_all(dir.join("prompts/zh-CN")).expect("prompts");
    fs::write(dir.join("flows/t.flow"), FLOW).expect("flow");
    ivr_media::audio::write_wav(&dir.join("prompts/zh-CN/hello.wav"), &tone(500.0, 400))
        .expect("wav");
    fs::write(
        dir.join("prompts/zh-CN/prompts.toml"),
        "hello = { text = \"hello\" }\n",
    )
    .expect("catalog");
    fs::write(
        dir.join("ivr.toml"),
        format!("{}[routes]\ndefault = \"t\"\n", config_head(rtp_range(40))),
    )
    .expect("config");
    dir
}

/// This file's cluster ports (see [`Ports`]).
const PORTS: Ports = Ports {
    sip: 6000,
    http: 7000,
};

fn leader(status: &serde_json::Value) -> Option<String> {
    status["acd"]["leader"].as_str().map(str::to_string)
}

fn up_nodes(status: &serde_json::Value) -> Vec<String> {
    status["nodes"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|n| n["up"] == true)
                .filter_map(|n| n["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// `calls` SIPp calls through the proxy (each held `hold_ms`, then BYE); whether all worked.
fn calls(dir: &Path, proxy: SocketAddr, calls: u32, hold_ms: u32) -> (bool, String) {
    common::sipp(
        dir,
        proxy,
        "call_bye.xml",
        &[
            "-m",
            &calls.to_string(),
            "-r",
            "10",
            "-l",
            "10",
            "-d",
            &hold_ms.to_string(),
            "-key",
            "rtpport",
            "9",
        ],
    )
}

/// Calls in progress on a node (`ivr_calls_in_progress` of `/metrics`).
fn in_progress(node: &Node) -> Option<u64> {
    metric(node, "ivr_calls_in_progress")
}

/// baresip (headless, a WAV file as its microphone) dials the proxy, talks 4 s and quits.
fn softphone_call(dir: &Path, cluster: &Cluster) {
    if !have("baresip", "-h") {
        skip("baresip is not installed: the softphone part of the cluster test is skipped");
        return;
    }
    let phone = dir.join("baresip");
    fs::create_dir_all(&phone).expect("dir");
    ivr_media::audio::write_wav(&phone.join("mic.wav"), &tone(300.0, 6000)).expect("mic");
    // baresip also binds TLS on the next port: a free pair.
    let port = (0..50)
        .map(|i| 43_000 + (std::process::id() % 500) as u16 * 4 + i * 2)
        .find(|p| {
            std::net::UdpSocket::bind(("127.0.0.1", *p)).is_ok()
                && std::net::UdpSocket::bind(("127.0.0.1", p + 1)).is_ok()
        })
        .expect("free port");
    fs::write(
        phone.join("config"),
        format!(
            "poll_method epoll\nsip_listen 127.0.0.1:{port}\naudio_player aubridge,x\n\
             audio_source aufile,{mic}\naudio_alert aubridge,y\n\
             module_path /usr/lib/baresip/modules\nmodule g711.so\nmodule aufile.so\n\
             module aubridge.so\nmodule_app account.so\nmodule_app menu.so\n",
            mic = phone.join("mic.wav").display(),
        ),
    )
    .expect("config");
    fs::write(
        phone.join("accounts"),
        format!(
            "<sip:{}@127.0.0.1>;regint=0;audio_codecs=PCMU\n",
            common::CALLER
        ),
    )
    .expect("accounts");
    let before: u64 = cluster.nodes.iter().map(answered).sum();
    let out = Command::new("timeout")
        .args(["20", "baresip", "-f"])
        .arg(&phone)
        .args(["-e", &format!("/dial sip:100@{}", cluster.proxy), "-t", "4"])
        .output()
        .expect("baresip");
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        said.contains("Call established"),
        "baresip:\n{said}\n{}",
        cluster.logs()
    );
    let after: u64 = cluster.nodes.iter().map(answered).sum();
    assert_eq!(after, before + 1, "one node answered the softphone");
    // Its BYE ended the call on the node (no call left in progress anywhere).
    let start = Instant::now();
    while cluster.nodes.iter().any(|n| in_progress(n) != Some(0)) {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the softphone's BYE did not end its call:\n{said}\n{}",
            cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|s| s.split(' ').nth(2).is_none_or(|state| state != "Z"))
}

#[test]
fn two_nodes_behind_kamailio_share_calls_and_survive_a_node() {
    if !cluster_tools("cluster test") {
        return;
    }
    let dir = deployment("cluster");
    let mut cluster = Cluster::up(2, &dir, PORTS);
    let (a, b) = (cluster.node("a"), cluster.node("b"));
    let kamailio_pid: u32 = fs::read_to_string(cluster.run.join("kamailio.pid"))
        .ok()
        .and_then(|p| p.trim().parse().ok())
        .expect("kamailio.pid");

    // Both nodes see each other up, and one of them leads the ACD.
    let both = wait_for(a, Duration::from_secs(10), |s| {
        up_nodes(s).len() == 2 && leader(s).is_some() && s["this_version_live_everywhere"] == true
    });
    assert!(
        both.is_some(),
        "{:?}\n{}",
        cluster_status(a),
        cluster.logs()
    );
    // b reads the nodes once a second too.
    let seen_by_b = wait_for(b, Duration::from_secs(3), |s| up_nodes(s).len() == 2);
    assert!(seen_by_b.is_some(), "{:?}", cluster_status(b));
    let status = cluster_status(b).expect("status of b");
    assert_eq!(up_nodes(&status), ["a", "b"], "{status}");
    // Each node on its own SIP port above the proxy's, as its heartbeat says.
    for (i, n) in cluster.nodes.iter().enumerate() {
        assert_eq!(n.sip.port(), cluster.proxy.port() + 1 + i as u16, "{n:?}");
        assert_eq!(
            status["nodes"][i]["sip"],
            format!("sip:{}", n.sip),
            "{status}"
        );
        assert_eq!(
            status["nodes"][i]["http"],
            format!("http://{}", n.http),
            "{status}"
        );
    }
    let first_leader = leader(&status).expect("a leader");
    let epoch = status["acd"]["epoch"].as_i64().expect("epoch");
    assert!(epoch >= 1, "{status}");

    // The dashboard lists the nodes (from `/status`, which has them on a cluster node).
    let (code, _, page) = http_get(a.http, "/dashboard");
    assert_eq!(code, 200);
    assert!(page.contains("id=\"nodes\"") && page.contains("fetch(\"/status\")"));

    // Calls through Kamailio are spread over both nodes.
    let (ok, out) = calls(&dir, cluster.proxy, 10, 500);
    assert!(ok, "calls through the proxy:\n{out}\n{}", cluster.logs());
    let (on_a, on_b) = (answered(a), answered(b));
    assert_eq!(on_a + on_b, 10, "a {on_a}, b {on_b}");
    assert!(on_a >= 3 && on_b >= 3, "spread: a {on_a}, b {on_b}");

    // A softphone through the proxy: baresip's call is answered by one of the nodes, and its
    // BYE (when it quits) reaches that node through Kamailio (record-routing).
    softphone_call(&dir, &cluster);

    // Hot reload stays per node: each watches the shared folder, and a version is live
    // cluster-wide once every node that is up serves it.
    let before = status["live_everywhere"]
        .as_str()
        .expect("a version")
        .to_string();
    fs::write(
        dir.join("flows/t.flow"),
        FLOW.replace("\"cluster test\"", "\"cluster test, edited\""),
    )
    .expect("edit the flow");
    let everywhere = wait_for(a, Duration::from_secs(15), |s| {
        s["live_everywhere"].as_str().is_some_and(|v| v != before)
            && s["this_version_live_everywhere"] == true
            && s["nodes"]
                .as_array()
                .is_some_and(|n| n.iter().all(|n| n["deployment"] == s["live_everywhere"]))
    });
    assert!(
        everywhere.is_some(),
        "the edited flow is not live on both nodes: {:?}\n{}",
        cluster_status(a),
        cluster.logs()
    );

    // The leader dies (SIGKILL): the other node leads within 5 s.
    let (dead, survivor) = if first_leader == "a" { (a, b) } else { (b, a) };
    let killed = Instant::now();
    dead.kill();
    let took = wait_for(survivor, Duration::from_secs(5), |s| {
        leader(s).as_deref() == Some(survivor.name.as_str()) && s["acd"]["this_node_leads"] == true
    });
    let Some(took) = took else {
        panic!(
            "no new leader within 5 s: {:?}\n{}",
            cluster_status(survivor),
            cluster.logs()
        );
    };
    let status = cluster_status(survivor).expect("status");
    assert!(
        status["acd"]["epoch"].as_i64().expect("epoch") > epoch,
        "the takeover moved the epoch on: {status}"
    );
    eprintln!(
        "ACD leader taken over {} ms after the kill",
        took.as_millis()
    );

    // New calls through Kamailio succeed within 5 s of the kill (the proxy tries the next
    // node when the dead one does not answer, and takes it out after 2 missed pings).
    let mut first_ok = None;
    while killed.elapsed() < Duration::from_secs(5) {
        let (ok, _) = calls(&dir, cluster.proxy, 1, 200);
        if ok {
            first_ok = Some(killed.elapsed());
            break;
        }
    }
    assert!(
        first_ok.is_some(),
        "no call succeeded within 5 s of the kill\n{}",
        cluster.logs()
    );

    // The dead node shows down within about 6 s (5 s without a heartbeat).
    let since_kill = killed.elapsed();
    let down = wait_for(
        survivor,
        Duration::from_millis(6_500).saturating_sub(since_kill),
        |s| up_nodes(s) == [survivor.name.clone()],
    );
    assert!(
        down.is_some(),
        "{} still up 6.5 s after its kill: {:?}",
        dead.name,
        cluster_status(survivor)
    );
    eprintln!(
        "{} shown down {} ms after the kill",
        dead.name,
        (since_kill + down.unwrap_or_default()).as_millis()
    );
    // Every call now goes to the survivor, and succeeds.
    let before = answered(survivor);
    let (ok, out) = calls(&dir, cluster.proxy, 4, 300);
    assert!(ok, "calls after the node died:\n{out}\n{}", cluster.logs());
    assert!(answered(survivor) >= before + 4);

    // `down` stops everything it started.
    let survivor_pid = survivor.pid;
    let out = cluster.down();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for pid in [survivor_pid, kamailio_pid] {
        assert!(!alive(pid), "process {pid} is still running after down");
    }
    assert!(!cluster.run.exists(), "the run folder is left");
    let leftover = Command::new("pgrep")
        .args(["-f", &cluster.run.display().to_string()])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    assert!(leftover.is_empty(), "processes left: {leftover}");
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn leadership_moves_its_epoch_and_a_deposed_leader_notices() {
    use ivr_data::cluster::{self, Candidate, NodeFacts};
    let Ok(url) = std::env::var("IVR_TEST_POSTGRES_URL") else {
        skip("IVR_TEST_POSTGRES_URL is not set: leadership test skipped");
        return;
    };
    common::block_on(async {
        let Some((pool, scratch)) = scratch_database(&url, "cluster_lead").await else {
            panic!("not PostgreSQL");
        };
        // One leader at a time: a takes the lock (epoch 1), b cannot.
        let a = Candidate::connect(&scratch).await.expect("a connects");
        let b = Candidate::connect(&scratch).await.expect("b connects");
        let mut a = a.try_lead("a").await.expect("try").expect("a leads");
        assert_eq!(a.epoch(), 1);
        let b = b
            .try_lead("b")
            .await
            .expect("try")
            .expect_err("b does not lead");
        assert!(a.still_leads().await.expect("a's connection"));
        let row = cluster::leader(&pool)
            .await
            .expect("read")
            .expect("a leader");
        assert_eq!((row.node.as_str(), row.epoch), ("a", 1));

        // a's connection is cut (what a node's death does): the lock is free, b takes it
        // over with the next epoch, and a, deposed, finds out.
        sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_locks
              WHERE locktype = 'advisory' AND granted
                AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        )
        .execute(&pool)
        .await
        .expect("terminate a");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            a.still_leads().await.is_err(),
            "a's lost connection is seen"
        );
        let mut b = b.try_lead("b").await.expect("try").expect("b leads");
        assert_eq!(b.epoch(), 2);
        let row = cluster::leader(&pool)
            .await
            .expect("read")
            .expect("a leader");
        assert_eq!((row.node.as_str(), row.epoch), ("b", 2));

        // The epoch moved by someone else: b is deposed though its connection lives.
        sqlx::query("UPDATE acd_leadership SET epoch = epoch + 1, node = 'c' WHERE id = 1")
            .execute(&pool)
            .await
            .expect("move the epoch");
        assert!(!b.still_leads().await.expect("b's connection"));
        b.resign().await;

        // Heartbeats: a node is up while its row is fresh, with its versions.
        let facts = NodeFacts {
            name: "a".into(),
            sip: "sip:127.0.0.1:5071".into(),
            http: "http://127.0.0.1:8081".into(),
            deployment: "v1".into(),
            flow_versions: "t 1".into(),
        };
        cluster::announce(&pool, &facts).await.expect("announce");
        let v2 = NodeFacts {
            deployment: "v2".into(),
            ..facts.clone()
        };
        cluster::heartbeat(&pool, &v2).await.expect("heartbeat");
        let nodes = cluster::nodes(&pool).await.expect("nodes");
        assert_eq!(nodes.len(), 1);
        assert_eq!(nodes[0].facts, v2);
        assert!(nodes[0].up(), "{:?}", nodes[0]);
        sqlx::query("UPDATE cluster_nodes SET last_seen = now() - interval '6 seconds'")
            .execute(&pool)
            .await
            .expect("age the row");
        let nodes = cluster::nodes(&pool).await.expect("nodes");
        assert!(
            !nodes[0].up(),
            "6 s without a heartbeat is down: {:?}",
            nodes[0]
        );
        drop_database(&url, pool, &scratch).await;
    });
}
