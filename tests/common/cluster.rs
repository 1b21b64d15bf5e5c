//! A cluster on loopback for the tests: [`Cluster`] runs `scripts/cluster.sh up N` (PostgreSQL,
//! Kamailio, N `ivr serve` nodes) on ports of its own, reads the lines it prints, and runs
//! `down` when dropped; a node's `/status` and `/metrics`; the tools a cluster needs.

use super::{have, http_get, repo, skip};
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Whether PostgreSQL's server programs (Debian's postgresql) are installed.
pub fn have_postgres() -> bool {
    fs::read_dir("/usr/lib/postgresql").is_ok_and(|d| {
        d.flatten()
            .any(|v| v.path().join("bin/initdb").exists() && v.path().join("bin/pg_ctl").exists())
    })
}

/// Whether Kamailio, SIPp and PostgreSQL are installed; when one is not, says so ("... is not
/// installed: `what` skipped", see [`skip`]) and is false.
pub fn cluster_tools(what: &str) -> bool {
    cluster_tools_for(what, false)
}

/// [`cluster_tools`] for a cluster on a PostgreSQL of the test's own (`own_database`, see
/// [`Start::database`]): then PostgreSQL's server programs need not be installed.
pub fn cluster_tools_for(what: &str, own_database: bool) -> bool {
    for (cmd, arg, pkg) in [("kamailio", "-v", "kamailio"), ("sipp", "-v", "sip-tester")] {
        if !have(cmd, arg) {
            skip(&format!(
                "{cmd} (Debian package {pkg}) is not installed: {what} skipped"
            ));
            return false;
        }
    }
    if !own_database && !have_postgres() {
        skip(&format!(
            "PostgreSQL (Debian package postgresql) is not installed: {what} skipped"
        ));
        return false;
    }
    true
}

/// One node of the cluster as `up` printed it.
#[derive(Debug)]
pub struct Node {
    /// a, b, c ...
    pub name: String,
    /// Where it takes SIP (behind the proxy).
    pub sip: SocketAddr,
    /// Where it serves HTTP (`/status`, `/metrics`, `/agents`).
    pub http: SocketAddr,
    /// Its process.
    pub pid: u32,
}

impl Node {
    /// Kills the node's process with SIGKILL (what a crash does: no goodbye to the cluster).
    pub fn kill(&self) {
        let _ = Command::new("kill")
            .args(["-9", &self.pid.to_string()])
            .status();
    }

    /// Freezes the node's process with SIGSTOP (a node hung, or cut off by the network: it
    /// neither answers nor beats, and the cluster takes it for dead); [`Node::thaw`] lets it
    /// run on.
    pub fn freeze(&self) {
        let _ = Command::new("kill")
            .args(["-STOP", &self.pid.to_string()])
            .status();
    }

    /// Lets a node [`Node::freeze`] stopped run on with SIGCONT.
    pub fn thaw(&self) {
        let _ = Command::new("kill")
            .args(["-CONT", &self.pid.to_string()])
            .status();
    }
}

/// The ports a test file's clusters take: the proxy's SIP port is `sip + 4 * slot` and the
/// nodes' HTTP ports start above `http + 4 * slot`, for a slot (0..200) of the process id.
/// Each test file has bases of its own, so that files running at once do not meet.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    /// The base of the proxy's SIP port.
    pub sip: u32,
    /// The base of the nodes' HTTP ports.
    pub http: u32,
}

/// How [`Cluster::up_with`] starts a cluster beyond its ports.
#[derive(Debug, Clone, Copy, Default)]
pub struct Start<'a> {
    /// A PostgreSQL of the test's own for the nodes (`IVR_CLUSTER_DATABASE`, e.g. a scratch
    /// database) instead of the throwaway server `up` starts.
    pub database: Option<&'a str>,
    /// Whether a part that did not start (a Kamailio of the previous cluster still closing on
    /// its port) is tried again on other ports a second later, as a port taken is.
    pub retry_unstarted: bool,
}

/// One cluster at a time in a test process (each starts its own PostgreSQL and Kamailio: two
/// at once race for ports and share 2 cores).
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The cluster `up` started; `down` when dropped (also when a test fails).
pub struct Cluster {
    /// The run folder (pid files, logs, PostgreSQL's data).
    pub run: PathBuf,
    env: Vec<(String, String)>,
    /// Kamailio's address.
    pub proxy: SocketAddr,
    /// The nodes, a first.
    pub nodes: Vec<Node>,
    stopped: bool,
    _one_at_a_time: MutexGuard<'static, ()>,
}

/// `scripts/cluster.sh ARGS` with `env` (bounded: `up` waits at most 60 s for a node and
/// 10 s for Kamailio).
fn script(env: &[(String, String)], args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new("bash");
    cmd.arg(repo().join("scripts/cluster.sh")).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::null()).output().expect("cluster.sh")
}

fn addr(text: &str, scheme: &str) -> SocketAddr {
    text.strip_prefix(scheme)
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("`{text}` is not {scheme}HOST:PORT"))
}

impl Cluster {
    /// `scripts/cluster.sh up n folder` on `ports` of this test process (another slot when
    /// one is taken, 5 tries); the lines it printed checked one by one. Waits for any other
    /// cluster of this process to be down first.
    pub fn up(n: usize, folder: &Path, ports: Ports) -> Cluster {
        Cluster::up_with(n, folder, ports, Start::default())
    }

    /// [`Cluster::up`] started as `start` says (its database, its retries).
    pub fn up_with(n: usize, folder: &Path, ports: Ports, start: Start) -> Cluster {
        let guard = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let run = folder.join("run");
        let pid = std::process::id();
        let mut last = String::new();
        // A cluster after a first one in the same process takes other ports (the first's may
        // linger in TIME_WAIT).
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let mine = NEXT.fetch_add(1, Ordering::Relaxed);
        for attempt in 0..5u32 {
            let slot = (pid + mine * 11 + attempt * 37) % 200;
            let mut env = vec![
                ("IVR_CLUSTER_DIR".to_string(), run.display().to_string()),
                (
                    "IVR_CLUSTER_SIP_PORT".into(),
                    (ports.sip + slot * 4).to_string(),
                ),
                (
                    "IVR_CLUSTER_HTTP_PORT".into(),
                    (ports.http + slot * 4).to_string(),
                ),
                ("IVR_BIN".into(), env!("CARGO_BIN_EXE_ivr").to_string()),
                ("IVR_LOG".into(), "info".into()),
            ];
            if let Some(db) = start.database {
                env.push(("IVR_CLUSTER_DATABASE".into(), db.to_string()));
            }
            let out = script(&env, &["up", &n.to_string(), &folder.display().to_string()]);
            let stdout = String::from_utf8_lossy(&out.stdout).to_string();
            let stderr = String::from_utf8_lossy(&out.stderr).to_string();
            if !out.status.success() {
                last = format!("{stdout}{stderr}");
                if stderr.contains("is taken") {
                    continue;
                }
                if start.retry_unstarted && stderr.contains("did not start") {
                    std::thread::sleep(Duration::from_secs(1));
                    continue;
                }
                panic!("cluster.sh up {n} failed:\n{last}");
            }
            let lines: Vec<&str> = stdout.lines().collect();
            assert_eq!(lines.len(), n + 1, "one line per part:\n{stdout}");
            let proxy: Vec<&str> = lines[0].split(' ').collect();
            assert_eq!(proxy.len(), 2, "{}", lines[0]);
            assert_eq!(proxy[0], "proxy", "{}", lines[0]);
            let proxy = addr(proxy[1], "sip:");
            let mut nodes = Vec::new();
            for (i, line) in lines[1..].iter().enumerate() {
                let w: Vec<&str> = line.split(' ').collect();
                assert_eq!(w.len(), 6, "node NAME sip:.. http://.. pid PID: {line}");
                assert_eq!((w[0], w[4]), ("node", "pid"), "{line}");
                assert_eq!(w[1], ["a", "b", "c"][i], "{line}");
                nodes.push(Node {
                    name: w[1].to_string(),
                    sip: addr(w[2], "sip:"),
                    http: addr(w[3], "http://"),
                    pid: w[5].parse().expect("pid"),
                });
            }
            return Cluster {
                run,
                env,
                proxy,
                nodes,
                stopped: false,
                _one_at_a_time: guard,
            };
        }
        panic!("no free ports for the cluster:\n{last}");
    }

    /// The node named `name`.
    pub fn node(&self, name: &str) -> &Node {
        self.nodes.iter().find(|n| n.name == name).expect("node")
    }

    /// The PostgreSQL URL the nodes share (written by `up` in the run folder).
    pub fn database(&self) -> String {
        fs::read_to_string(self.run.join("database"))
            .expect("database")
            .trim()
            .to_string()
    }

    /// Node `name`'s whole log (empty when it has none yet).
    pub fn log(&self, name: &str) -> String {
        fs::read_to_string(self.run.join(format!("node-{name}.log"))).unwrap_or_default()
    }

    /// The last 40 lines of each node's log and of Kamailio's.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        let files = self
            .nodes
            .iter()
            .map(|n| format!("node-{}.log", n.name))
            .chain(["kamailio.log".to_string()]);
        for f in files {
            let text = fs::read_to_string(self.run.join(&f)).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            out.push_str(&format!("--- {f}\n"));
            for l in tail.into_iter().rev() {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }

    /// `scripts/cluster.sh down` now (not again when dropped); what it said.
    pub fn down(&mut self) -> std::process::Output {
        self.stopped = true;
        script(&self.env, &["down"])
    }

    /// Calls the IVR answered, by node.
    pub fn answered(&self) -> Vec<u64> {
        self.nodes.iter().map(answered).collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if !self.stopped {
            let _ = script(&self.env, &["down"]);
        }
    }
}

/// A node's `/status` `cluster` part (`None` when it does not answer).
pub fn cluster_status(node: &Node) -> Option<serde_json::Value> {
    let (code, _, body) = http_get(node.http, "/status");
    if code != 200 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    v.get("cluster").cloned()
}

/// Polls `node`'s status every 100 ms until `ok` holds (at most `within`); how long it took.
pub fn wait_for(
    node: &Node,
    within: Duration,
    ok: impl Fn(&serde_json::Value) -> bool,
) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < within {
        if cluster_status(node).is_some_and(|s| ok(&s)) {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

/// A counter of a node's `/metrics` (`None` when it does not show).
pub fn metric(node: &Node, name: &str) -> Option<u64> {
    let (_, _, body) = http_get(node.http, "/metrics");
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// Calls answered by a node since it started (`ivr_calls_answered_total`; 0 when it does not
/// answer).
pub fn answered(node: &Node) -> u64 {
    metric(node, "ivr_calls_answered_total").unwrap_or(0)
}
