//! The cluster-wide ACD (docs/cluster.md) on loopback: `scripts/cluster.sh up 2` starts
//! PostgreSQL, Kamailio and two nodes; SIPp agents register through Kamailio (which picks
//! their node), SIPp callers call through it (round-robin); the ACD of the node that leads
//! serves every node's callers with every node's agents. Also the leader's state writes
//! against PostgreSQL (`IVR_TEST_POSTGRES_URL`): a deposed leader's late write is refused.

mod common;

use common::agents::{
    Peer, agent_auth, agent_state, free_udp_port, general_queue_toml, queue_waiting,
    register_agent, set_agent_state, talking_phone, wait_until, write_queue_prompts,
};
use common::cluster::{Cluster, Node, Ports, cluster_status, cluster_tools};
use common::postgres::{drop_database, scratch_database};
use common::*;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const VIP: &str = "13900000009";

const QUEUE_FLOW: &str = r##"
flow q {
    title    "queue test"
    language zh-CN
    entry    hello
}

step hello {
    play hello
    goto queue
}

transfer queue {
    queue     general
    priority  10 if caller == "13900000009"
    attach    caller, call.channel
    music     hold
    max_wait  30s -> sorry
    no_agents -> sorry
    after     -> rate
}

survey rate {
    question overall rate_q scale 1..5
    timeout  6s
    attempts 1
    save     surveys
    next     bye
}

step sorry {
    play sorry
    hangup
}

step bye {
    play bye
    hangup
}
"##;

/// Callers of 10086 need an agent who speaks English.
const ENGLISH_FLOW: &str = r##"
flow e {
    title    "english line"
    language zh-CN
    entry    queue
}

transfer queue {
    queue     general
    skills    "english"
    music     hold
    max_wait  30s -> bye
    no_agents -> bye
    after     -> bye
}

step bye {
    play bye
    hangup
}
"##;

/// 100: a short call that only hears a prompt (to move Kamailio's round-robin on).
const SHORT_FLOW: &str = r##"
flow s {
    title    "short"
    language zh-CN
    entry    bye
}

step bye {
    play bye
    hangup
}
"##;

/// A two-node cluster serving a deployment of its own (folder `name`), once one of its
/// nodes leads the ACD: the folder, the cluster and the leader's name. `None` (the test
/// skipped, see [`cluster_tools`]) without Kamailio, SIPp or PostgreSQL.
fn started(name: &str) -> Option<(PathBuf, Cluster, String)> {
    if !cluster_tools("cluster ACD test") {
        return None;
    }
    let dir = deployment(name);
    let cluster = Cluster::up(2, &dir, PORTS);
    let leader = cluster.leader(Duration::from_secs(15));
    Some((dir, cluster, leader))
}

/// The name of the node of the two that is not `name`.
fn other_node(name: &str) -> &'static str {
    if name == "a" { "b" } else { "a" }
}

/// This file's cluster ports (see [`Ports`]).
const PORTS: Ports = Ports {
    sip: 25060,
    http: 28080,
};

fn deployment(name: &str) -> PathBuf {
    let dir = temp_dir(name);
    fs::create_dir_all(dir.join("flows")).expect("flows");
    fs::write(dir.join("flows/q.flow"), QUEUE_FLOW).expect("flow q");
    fs::write(dir.join("flows/e.flow"), ENGLISH_FLOW).expect("flow e");
    fs::write(dir.join("flows/s.flow"), SHORT_FLOW).expect("flow s");
    write_queue_prompts(&dir);
    fs::write(
        dir.join("ivr.toml"),
        format!(
            r#"{}{}
[routes]
"100"   = "s"
"10086" = "e"
default = "q"
"#,
            config_head(rtp_range(40)),
            general_queue_toml("4s")
        ),
    )
    .expect("config");
    dir
}

/// What these tests ask of a two-node cluster beyond [`Cluster`]'s own.
trait ClusterAcd {
    fn leader(&self, within: Duration) -> String;
    /// Which node took agent `id`'s registration (from the shared table).
    fn registered_via(&self, id: &str) -> String;
    /// The call records: (call_id, outcome, agent, caller) once there are `n` (10 s at most).
    fn calls(&self, n: usize) -> Vec<(String, Option<String>, Option<String>, String)>;
    /// Sends short calls through the proxy until the next one goes to node `to`; how many.
    fn next_call_to(&self, dir: &Path, to: &str) -> usize;
}

impl ClusterAcd for Cluster {
    /// Waits until both nodes are up and one leads; its name.
    fn leader(&self, within: Duration) -> String {
        let start = Instant::now();
        loop {
            for n in &self.nodes {
                if let Some(s) = cluster_status(n)
                    && s["acd"]["this_node_leads"] == true
                    && s["nodes"]
                        .as_array()
                        .is_some_and(|a| a.iter().filter(|n| n["up"] == true).count() == 2)
                {
                    return n.name.clone();
                }
            }
            assert!(
                start.elapsed() < within,
                "no leader in time\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn registered_via(&self, id: &str) -> String {
        let url = self.database();
        let id = id.to_string();
        block_on(async move {
            let pool = sqlx::PgPool::connect(&url).await.expect("postgres");
            let node: String = sqlx::query_scalar(
                "SELECT node FROM acd_registrations WHERE agent = $1 AND expires_at > now()
                  ORDER BY registered_at DESC LIMIT 1",
            )
            .bind(&id)
            .fetch_one(&pool)
            .await
            .expect("a registration row");
            pool.close().await;
            node
        })
    }

    fn calls(&self, n: usize) -> Vec<(String, Option<String>, Option<String>, String)> {
        let url = self.database();
        block_on(async move {
            let pool = sqlx::PgPool::connect(&url).await.expect("postgres");
            let started = Instant::now();
            loop {
                let rows: Vec<(String, Option<String>, Option<String>, String)> =
                    sqlx::query_as("SELECT call_id, outcome, agent, caller FROM calls ORDER BY id")
                        .fetch_all(&pool)
                        .await
                        .unwrap_or_default();
                if rows.len() >= n || started.elapsed() > Duration::from_secs(10) {
                    pool.close().await;
                    return rows;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    }

    fn next_call_to(&self, dir: &Path, to: &str) -> usize {
        for made in 1..=3 {
            let before = self.answered();
            let (ok, out) = sipp(
                dir,
                self.proxy,
                "flow_hangs_up.xml",
                &[
                    "-m",
                    "1",
                    "-s",
                    "100",
                    "-key",
                    "rtpport",
                    &free_udp_port().to_string(),
                ],
            );
            assert!(ok, "a short call:\n{out}\n{}", self.logs());
            let after = self.answered();
            let took = (0..self.nodes.len())
                .find(|&i| after[i] > before[i])
                .map(|i| self.nodes[i].name.clone())
                .expect("a node answered");
            if took != to {
                return made;
            }
        }
        panic!("Kamailio's round-robin did not alternate\n{}", self.logs());
    }
}

/// Registers agent `id` (password `pwID`) through the proxy for its phone on `port`; waits
/// until every node shows it logged in.
fn register(dir: &Path, cluster: &Cluster, id: &str, port: u16) {
    register_agent(dir, cluster.proxy, id, &format!("pw{id}"), port, || {
        cluster.logs()
    });
    for n in &cluster.nodes {
        wait_until(
            &format!("node {} shows {id} logged in", n.name),
            Duration::from_secs(10),
            || !matches!(agent_state(n.http, id).as_str(), "offline" | ""),
        );
    }
}

/// An agent's phone running `scenario` for `calls` calls, registered through the proxy.
fn agent(dir: &Path, cluster: &Cluster, id: &str, scenario: &str, calls: u32) -> Peer {
    let port = free_udp_port();
    let phone = peer(
        dir,
        cluster.proxy,
        scenario,
        &["-p", &port.to_string(), "-m", &calls.to_string()],
    );
    register(dir, cluster, id, port);
    phone
}

/// A SIPp of these tests in the background (60 s at most).
fn peer(dir: &Path, proxy: SocketAddr, scenario: &str, args: &[&str]) -> Peer {
    Peer::spawn_for(dir, Some(proxy), scenario, 60, args)
}

/// A caller of 10086 (who needs an agent who speaks English) through the proxy, in the
/// background; the flow hangs up after the agent.
fn english_caller(dir: &Path, cluster: &Cluster) -> Peer {
    let rtp = free_udp_port().to_string();
    peer(
        dir,
        cluster.proxy,
        "flow_hangs_up.xml",
        &[
            "-m", "1", "-s", "10086", "-key", "rtpport", &rtp, "-key", "caller", CALLER,
        ],
    )
}

/// The callers waiting in queue `general` of `node`.
fn waiting(node: &Node) -> u64 {
    queue_waiting(node.http, "general")
}

/// Sets agent `id` away or available on `node`; the status code.
fn set_state(node: &Node, id: &str, state: &str) -> u16 {
    set_agent_state(node.http, id, state).0
}

fn heard(got: &[Pkt], ssrc: u32) -> usize {
    got.iter().filter(|p| p.ssrc == ssrc).count()
}

/// (a) An agent's phone registers through Kamailio and lands on one node (the leader, when
/// one of the two agents' addresses hashes there); a caller through Kamailio that lands on
/// the other node is offered to it, the agent answers and the two hear each other (RTP both
/// ways). Without the cluster-wide ACD the other node has no agent logged in.
#[test]
fn a_caller_on_one_node_talks_with_an_agent_registered_via_the_other() {
    let Some((dir, cluster, leader)) = started("cacd-cross") else {
        return;
    };
    let (mut phone, media, port) = talking_phone(
        &dir,
        cluster.proxy,
        ("cluster_answers_until_bye.xml", 1, 60),
        (42, 20_000),
    );
    register(&dir, &cluster, "2001", port);
    let mut id = "2001";
    let mut via = cluster.registered_via(id);
    if via != leader {
        // The phone as 2002 too, which Kamailio may give to the leader (2001 away): then the
        // caller's node does not lead and every queue operation and event crosses nodes.
        register(&dir, &cluster, "2002", port);
        if cluster.registered_via("2002") == leader {
            assert_eq!(set_state(cluster.node(&leader), "2001", "away"), 204);
            id = "2002";
            via = leader.clone();
        } else {
            assert_eq!(set_state(cluster.node(&leader), "2002", "away"), 204);
        }
    }
    let other = other_node(&via);
    eprintln!(
        "{id} registered via node {via}; the ACD leads on {leader}; the caller goes to {other}"
    );
    let short = cluster.next_call_to(&dir, other);
    let before = cluster.answered();
    let caller_media = Endpoint::start(vec![(0, Act::Voice(4_000))]);
    let mut caller = peer(
        &dir,
        cluster.proxy,
        "call_bye.xml",
        &[
            "-m",
            "1",
            "-d",
            "4000",
            "-key",
            "caller",
            "13800000001",
            "-key",
            "rtpport",
            &caller_media.port.to_string(),
        ],
    );
    let n_other = cluster.node(other);
    wait_until("the agent talks", Duration::from_secs(15), || {
        agent_state(n_other.http, id) == "on_call"
    });
    let c = caller.wait(Duration::from_secs(30));
    let p = phone.wait(Duration::from_secs(10));
    let (at_caller, _) = caller_media.finish();
    let (at_agent, _) = media.finish();
    assert!(
        c && p,
        "caller {c}, agent {p}\n{}\n{}\n{}",
        caller.report(),
        phone.report(),
        cluster.logs()
    );
    let after = cluster.answered();
    let i = cluster
        .nodes
        .iter()
        .position(|n| n.name == other)
        .expect("node");
    assert_eq!(after[i], before[i] + 1, "the caller went to node {other}");
    let (to_caller, to_agent) = (heard(&at_caller, 42), heard(&at_agent, 7));
    eprintln!(
        "RTP: the caller heard {to_caller} packets of the agent, the agent {to_agent} of the caller"
    );
    assert!(to_caller >= 25, "the caller heard the agent: {to_caller}");
    assert!(to_agent >= 25, "the agent heard the caller: {to_agent}");
    // The INVITE came through the proxy (Record-Route of Kamailio).
    let invite = phone.messages();
    assert!(invite.contains("Record-Route:"), "{invite}");
    let rows = assert_records(&cluster, short + 1);
    assert!(
        rows.iter()
            .any(|r| r.1.as_deref() == Some("transferred") && r.2.as_deref() == Some(id)),
        "{rows:?}"
    );
}

/// Every SIPp call made left exactly one call record: `n` rows, no call id twice.
fn assert_records(
    cluster: &Cluster,
    n: usize,
) -> Vec<(String, Option<String>, Option<String>, String)> {
    let rows = cluster.calls(n);
    // A late second row would show within the writer's batching time.
    std::thread::sleep(Duration::from_millis(1500));
    let again = cluster.calls(n);
    assert_eq!(rows.len(), again.len(), "{again:?}");
    let mut ids: Vec<&String> = again.iter().map(|r| &r.0).collect();
    ids.sort();
    ids.dedup();
    eprintln!(
        "call records: {} rows, {} call ids, {n} calls made",
        again.len(),
        ids.len()
    );
    assert_eq!(again.len(), n, "one record per call: {again:?}");
    assert_eq!(ids.len(), n, "no call recorded twice: {again:?}");
    again
}

/// (b) Priority across nodes: one agent talks with a first caller; a second caller waits (on
/// the next node: Kamailio alternates), then a VIP (on the first node again): the VIP is
/// offered the agent before the caller who came earlier on the other node. (d) one record
/// per call.
#[test]
fn a_vip_on_one_node_goes_before_a_caller_waiting_on_the_other() {
    let Some((dir, cluster, leader)) = started("cacd-vip") else {
        return;
    };
    let mut phone = agent(&dir, &cluster, "2001", "cluster_agent_answers.xml", 3);
    eprintln!(
        "2001 registered via node {}; the ACD leads on {leader}",
        cluster.registered_via("2001")
    );
    let (a, b) = (cluster.node("a"), cluster.node("b"));
    let before = cluster.answered();
    let mut first = peer(
        &dir,
        cluster.proxy,
        "caller_rates.xml",
        &[
            "-m", "1", "-key", "caller", CALLER, "-s", "10010", "-key", "score", "3",
        ],
    );
    wait_until(
        "the first caller reaches the agent",
        Duration::from_secs(10),
        || agent_state(a.http, "2001") == "on_call",
    );
    let mut second = peer(
        &dir,
        cluster.proxy,
        "caller_rates.xml",
        &[
            "-m",
            "1",
            "-key",
            "caller",
            "13800000002",
            "-s",
            "10010",
            "-key",
            "score",
            "4",
        ],
    );
    wait_until("the second caller waits", Duration::from_secs(10), || {
        waiting(b) == 1
    });
    let mut vip = peer(
        &dir,
        cluster.proxy,
        "caller_rates.xml",
        &[
            "-m", "1", "-key", "caller", VIP, "-s", "10010", "-key", "score", "5",
        ],
    );
    let ok: Vec<bool> = [&mut first, &mut second, &mut vip]
        .into_iter()
        .map(|c| c.wait(Duration::from_secs(60)))
        .collect();
    let p = phone.wait(Duration::from_secs(10));
    assert!(
        ok.iter().all(|o| *o) && p,
        "callers {ok:?}, agent {p}\n{}\n{}\n{}\n{}\n{}",
        first.report(),
        second.report(),
        vip.report(),
        phone.report(),
        cluster.logs()
    );
    let after = cluster.answered();
    let spread: Vec<u64> = after.iter().zip(&before).map(|(x, y)| x - y).collect();
    eprintln!("callers by node: a {}, b {}", spread[0], spread[1]);
    assert!(
        spread.iter().all(|n| *n >= 1),
        "callers on both nodes: {spread:?}"
    );
    assert_eq!(
        phone.offered_callers(),
        vec![
            CALLER.to_string(),
            VIP.to_string(),
            "13800000002".to_string()
        ]
    );
    let rows = assert_records(&cluster, 3);
    assert!(
        rows.iter()
            .all(|r| r.1.as_deref() == Some("transferred") && r.2.as_deref() == Some("2001")),
        "{rows:?}"
    );
}

/// (b) Skills across nodes: two callers who need English (one on each node) both go to
/// 2002, who speaks it, never to 2001 (idle longer, no English), wherever each registered.
#[test]
fn callers_on_both_nodes_who_need_a_skill_go_to_the_agent_who_has_it() {
    let Some((dir, cluster, leader)) = started("cacd-skills") else {
        return;
    };
    let other = agent(&dir, &cluster, "2001", "cluster_agent_answers.xml", 1);
    std::thread::sleep(Duration::from_millis(200));
    let mut phone = agent(&dir, &cluster, "2002", "cluster_agent_answers.xml", 2);
    eprintln!(
        "2001 registered via {}, 2002 via {}; the ACD leads on {leader}",
        cluster.registered_via("2001"),
        cluster.registered_via("2002")
    );
    let before = cluster.answered();
    for _ in 0..2 {
        let rtp = free_udp_port().to_string();
        let (ok, out) = sipp(
            &dir,
            cluster.proxy,
            "flow_hangs_up.xml",
            &["-m", "1", "-s", "10086", "-key", "rtpport", &rtp],
        );
        assert!(ok, "{out}\n{}\n{}", phone.report(), cluster.logs());
    }
    assert!(phone.wait(Duration::from_secs(10)), "{}", phone.report());
    let after = cluster.answered();
    assert_eq!(
        (after[0] - before[0], after[1] - before[1]),
        (1, 1),
        "one caller on each node"
    );
    assert!(
        !other.messages().contains("INVITE sip:"),
        "{}",
        other.report()
    );
    let rows = assert_records(&cluster, 2);
    assert!(
        rows.iter().all(|r| r.2.as_deref() == Some("2002")),
        "{rows:?}"
    );
}

/// (c) The ACD's leader dies (SIGKILL) while a caller of the other node waits for an agent
/// who is away: the other node leads, rebuilds the ACD from the database (the agent's
/// registration, the waiting call), and once the agent is back its phone rings with that
/// call within 10 s of the kill. (d) one record per call, none lost or doubled.
#[test]
fn after_the_leader_is_killed_a_waiting_caller_still_reaches_the_agent() {
    let Some((dir, cluster, leader)) = started("cacd-kill") else {
        return;
    };
    let survivor_name = other_node(&leader);
    let (dead, survivor) = (cluster.node(&leader), cluster.node(survivor_name));
    let mut phone = agent(&dir, &cluster, "2002", "cluster_agent_answers.xml", 1);
    eprintln!(
        "2002 registered via {}; the ACD leads on {leader}",
        cluster.registered_via("2002")
    );
    assert_eq!(set_state(survivor, "2002", "away"), 204);
    wait_until("2002 is away", Duration::from_secs(5), || {
        agent_state(survivor.http, "2002") == "away"
    });
    let short = cluster.next_call_to(&dir, survivor_name);
    let mut caller = english_caller(&dir, &cluster);
    let started = Instant::now();
    while waiting(survivor) != 1 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the caller does not wait\n{}\n{}",
            caller.report(),
            cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(25));
    }
    // The leader's state write follows its change within a few ms.
    std::thread::sleep(Duration::from_millis(300));
    let killed = Instant::now();
    dead.kill();
    // The agent comes back as soon as the other node leads (its `/status` says so).
    while cluster_status(survivor).is_none_or(|s| s["acd"]["this_node_leads"] != true) {
        assert!(
            killed.elapsed() < Duration::from_secs(10),
            "no new leader within 10 s\n{}",
            cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(25));
    }
    let leads = killed.elapsed();
    while set_state(survivor, "2002", "available") != 204 {
        assert!(
            killed.elapsed() < Duration::from_secs(10),
            "no leader took 2002 back within 10 s\n{}",
            cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let back = killed.elapsed();
    wait_until(
        "2002's phone rings with the waiting caller",
        Duration::from_secs(10).saturating_sub(back),
        || {
            matches!(
                agent_state(survivor.http, "2002").as_str(),
                "ringing" | "on_call"
            )
        },
    );
    let offered = killed.elapsed();
    eprintln!(
        "leader killed: {survivor_name} leads {} ms after, 2002 set back {} ms after, \
         offered the waiting call {} ms after",
        leads.as_millis(),
        back.as_millis(),
        offered.as_millis()
    );
    assert!(offered < Duration::from_secs(10));
    let c = caller.wait(Duration::from_secs(30));
    let p = phone.wait(Duration::from_secs(10));
    assert!(
        c && p,
        "caller {c}, agent {p}\n{}\n{}\n{}",
        caller.report(),
        phone.report(),
        cluster.logs()
    );
    assert_eq!(phone.offered_callers().len(), 1, "{}", phone.report());
    // The short calls that moved the round-robin on, and the caller.
    let rows = assert_records(&cluster, short + 1);
    assert!(
        rows.iter()
            .any(|r| r.1.as_deref() == Some("transferred") && r.2.as_deref() == Some("2002")),
        "{rows:?}"
    );
}

/// The leader's writes carry its epoch: once another node has taken the leadership, a
/// deposed leader's late write changes nothing; the new leader's goes through.
#[test]
fn a_deposed_leaders_late_state_write_is_refused() {
    let Ok(url) = std::env::var("IVR_TEST_POSTGRES_URL") else {
        skip("IVR_TEST_POSTGRES_URL is not set: epoch test skipped");
        return;
    };
    block_on(async move {
        use ivr_data::cluster::Candidate;
        use ivr_data::cluster_acd::{read_state, write_state};
        let Some((pg, scratch)) = scratch_database(&url, "cacd_epoch").await else {
            panic!("postgres");
        };
        let a = Candidate::connect(&scratch)
            .await
            .expect("a")
            .try_lead("a")
            .await
            .expect("query")
            .expect("a leads");
        let old = a.epoch();
        assert!(
            write_state(&pg, old, "a", "{\"s\":1}", "{}")
                .await
                .expect("write")
        );
        // a's connection is lost (the database lets the lock go); b takes over.
        drop(a);
        let mut b = None;
        for _ in 0..50 {
            let c = Candidate::connect(&scratch).await.expect("b");
            if let Ok(Ok(l)) = c.try_lead("b").await {
                b = Some(l);
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let b = b.expect("b leads");
        assert!(b.epoch() > old);
        // a's late write: refused, the state is still a's last.
        let late = write_state(&pg, old, "a", "{\"s\":2}", "{}")
            .await
            .expect("write");
        assert!(!late, "a deposed leader's write went through");
        let row = read_state(&pg).await.expect("read").expect("row");
        assert_eq!(
            (row.epoch, row.node.as_str(), row.snapshot.as_str()),
            (old, "a", "{\"s\":1}")
        );
        // b's write goes through.
        assert!(
            write_state(&pg, b.epoch(), "b", "{\"s\":3}", "{}")
                .await
                .expect("write")
        );
        let row = read_state(&pg).await.expect("read").expect("row");
        assert_eq!((row.epoch, row.node.as_str()), (b.epoch(), "b"));
        b.resign().await;
        drop_database(&url, pg, &scratch).await;
    });
}

/// (c) The leader dies while an agent talks with a caller of the other node and a second
/// caller of that node waits: the new leader puts the agent back on its call (the waiting
/// caller is not offered to it) and, once that conversation is over, the agent gets the
/// waiting caller. (d) one record per call.
#[test]
fn after_the_leader_is_killed_an_agent_talking_is_offered_the_next_caller_only_when_free() {
    let Some((dir, cluster, leader)) = started("cacd-talking") else {
        return;
    };
    let survivor_name = other_node(&leader);
    let (dead, survivor) = (cluster.node(&leader), cluster.node(survivor_name));
    let (mut phone, media, port) = talking_phone(
        &dir,
        cluster.proxy,
        ("cluster_answers_until_bye.xml", 2, 60),
        (42, 30_000),
    );
    register(&dir, &cluster, "2002", port);
    let caller = |hold_ms: u32| {
        peer(
            &dir,
            cluster.proxy,
            "call_bye.xml",
            &[
                "-m",
                "1",
                "-s",
                "10086",
                "-d",
                &hold_ms.to_string(),
                "-key",
                "caller",
                CALLER,
                "-key",
                "rtpport",
                &free_udp_port().to_string(),
            ],
        )
    };
    let mut short = cluster.next_call_to(&dir, survivor_name);
    let mut first = caller(8_000);
    wait_until(
        "2002 talks with the first caller",
        Duration::from_secs(10),
        || agent_state(survivor.http, "2002") == "on_call",
    );
    short += cluster.next_call_to(&dir, survivor_name);
    let mut second = caller(20_000);
    wait_until("the second caller waits", Duration::from_secs(10), || {
        waiting(survivor) == 1
    });
    std::thread::sleep(Duration::from_millis(300));
    let killed = Instant::now();
    dead.kill();
    wait_until("the other node leads", Duration::from_secs(5), || {
        cluster_status(survivor).is_some_and(|s| s["acd"]["this_node_leads"] == true)
    });
    eprintln!(
        "{survivor_name} leads {} ms after the kill",
        killed.elapsed().as_millis()
    );
    // Rebuilt: 2002 on its call, the second caller waiting, until the first call ends.
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(1500) {
        assert_eq!(agent_state(survivor.http, "2002"), "on_call");
        assert_eq!(waiting(survivor), 1, "the second caller waits");
        std::thread::sleep(Duration::from_millis(100));
    }
    let f = first.wait(Duration::from_secs(20));
    wait_until(
        "2002 gets the second caller once free",
        Duration::from_secs(10),
        || waiting(survivor) == 0 && agent_state(survivor.http, "2002") == "on_call",
    );
    let s = second.wait(Duration::from_secs(30));
    let p = phone.wait(Duration::from_secs(10));
    let _ = media.finish();
    assert!(
        f && s && p,
        "callers {f} {s}, agent {p}\n{}\n{}\n{}\n{}",
        first.report(),
        second.report(),
        phone.report(),
        cluster.logs()
    );
    let rows = assert_records(&cluster, short + 2);
    assert_eq!(
        rows.iter()
            .filter(|r| r.1.as_deref() == Some("transferred") && r.2.as_deref() == Some("2002"))
            .count(),
        2,
        "{rows:?}"
    );
}

/// An agent's blind transfer asked over HTTP of the node that holds the caller, which does not
/// lead: the question goes to the leader, the leader asks the caller's node to pass the call
/// on, and the answer comes back; the caller then waits in the queue and the next agent (whose
/// phone registered wherever Kamailio put it) takes it.
#[test]
fn an_agents_transfer_asked_on_a_node_that_does_not_lead_goes_through_the_leader() {
    let Some((dir, cluster, leader)) = started("cacd-transfer") else {
        return;
    };
    let follower_name = other_node(&leader);
    let follower = cluster.node(follower_name);
    // 2002 (English) talks until the node hangs up its leg; 2001 takes the transferred call.
    let (mut first, media, port) = talking_phone(
        &dir,
        cluster.proxy,
        ("cluster_answers_until_bye.xml", 1, 60),
        (42, 30_000),
    );
    register(&dir, &cluster, "2002", port);
    let mut second = agent(&dir, &cluster, "2001", "cluster_agent_answers.xml", 1);
    assert_eq!(set_state(follower, "2001", "away"), 204);
    eprintln!(
        "2002 registered via {}, 2001 via {}; the ACD leads on {leader}; the caller goes to {follower_name}",
        cluster.registered_via("2002"),
        cluster.registered_via("2001")
    );
    let short = cluster.next_call_to(&dir, follower_name);
    let mut caller = english_caller(&dir, &cluster);
    wait_until("2002 talks", Duration::from_secs(10), || {
        agent_state(follower.http, "2002") == "on_call"
    });
    assert_eq!(set_state(follower, "2001", "available"), 204);
    let auth = agent_auth("2002");
    let (code, _, body) = http_request(
        follower.http,
        "POST",
        "/agents/2002/transfer",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        r#"{"target": "queue.general", "note": "across nodes"}"#,
    );
    assert_eq!(code, 204, "{body}\n{}", cluster.logs());
    let c = caller.wait(Duration::from_secs(30));
    let p1 = first.wait(Duration::from_secs(10));
    let p2 = second.wait(Duration::from_secs(10));
    let _ = media.finish();
    assert!(
        c && p1 && p2,
        "caller {c}, agents {p1} {p2}\n{}\n{}\n{}\n{}",
        caller.report(),
        first.report(),
        second.report(),
        cluster.logs()
    );
    let pop = second.messages();
    for h in ["X-IVR-Transferred-By: 2002", "X-IVR-Note: across nodes"] {
        assert!(pop.contains(h), "no `{h}` in:\n{pop}");
    }
    let rows = assert_records(&cluster, short + 1);
    assert!(
        rows.iter().any(|r| r.1.as_deref() == Some("transferred")),
        "{rows:?}"
    );
}
