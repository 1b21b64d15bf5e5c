//! A node of a cluster (`[cluster]` of `ivr.toml`, `ivr serve --node`; docs/cluster.md): the
//! shared PostgreSQL database (call records and the platform's own tables go there), this
//! node's heartbeat and the other nodes' ([`heartbeat`]), and the ACD's leadership
//! ([`leadership`]); what `/status` says about them ([`Cluster::status`]); the writer of
//! calls' checkpoints ([`checkpoint`]; the takeover of a dead node's calls is
//! `crate::takeover`, above the calls it starts).

pub mod acd_front;
pub mod bus;
pub mod checkpoint;
pub mod fence;
pub mod heartbeat;
pub mod leadership;

use crate::live::Live;
use ivr_compiler::cluster_config::ClusterConfig;
use ivr_data::DataError;
use ivr_data::cluster::PgPool;
use ivr_data::cluster::{LeaderRow, NodeFacts, NodeRow};
use ivr_data::connect::{self, Pool, Target};
use leadership::Role;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// Connections of a node's pool on the shared database (records, heartbeats, pages).
pub const POOL_CONNECTIONS: u32 = 8;

/// This node of the cluster: its configuration, the shared database, and what it last read
/// of the other nodes.
#[derive(Debug)]
pub struct Cluster {
    /// `[cluster]` (with the command line's overrides).
    pub config: ClusterConfig,
    pool: PgPool,
    view: Mutex<View>,
    role: watch::Sender<Role>,
    /// The writer of this node's calls' checkpoints.
    pub checkpoints: checkpoint::Checkpoints,
}

/// What the heartbeat task last read.
#[derive(Debug, Default)]
struct View {
    nodes: Vec<NodeRow>,
    /// When `nodes` were read (their ages grow from then on).
    read_at: Option<std::time::Instant>,
    leader: Option<LeaderRow>,
    /// Why the last heartbeat or read failed (cleared by the next that works).
    error: Option<String>,
}

impl Cluster {
    /// Opens the shared database (migrating it) for this node; the pool is the platform's
    /// tables' from then on.
    pub async fn open(config: ClusterConfig) -> Result<(Arc<Cluster>, Pool), DataError> {
        let pool =
            connect::open(&Target::Postgres(config.database.clone()), POOL_CONNECTIONS).await?;
        let Pool::Postgres(pg) = &pool else {
            return Err(DataError::Config(
                "the cluster's database must be PostgreSQL".into(),
            ));
        };
        let (role, _) = watch::channel(Role::Follower);
        let checkpoints = checkpoint::Checkpoints::new(&config.node);
        let cluster = Arc::new(Cluster {
            checkpoints,
            config,
            pool: pg.clone(),
            view: Mutex::new(View::default()),
            role,
        });
        Ok((cluster, pool))
    }

    /// Starts the heartbeat and the leadership tasks: this node takes SIP at `sip` and HTTP at
    /// `http` (as its heartbeat says); its versions are read from `live` at each heartbeat.
    pub fn start(self: &Arc<Self>, sip: String, http: String, live: Arc<Live>) {
        let facts = NodeFacts {
            name: self.config.node.clone(),
            sip,
            http,
            deployment: String::new(),
            flow_versions: String::new(),
        };
        tokio::spawn(heartbeat::run(Arc::clone(self), facts, live));
        tokio::spawn(leadership::run(Arc::clone(self)));
        self.checkpoints.start(self.pool.clone());
    }

    /// The shared database.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// This node's part in the ACD's leadership now.
    pub fn role(&self) -> Role {
        *self.role.borrow()
    }

    /// Follows this node's role as it changes.
    pub fn watch_role(&self) -> watch::Receiver<Role> {
        self.role.subscribe()
    }

    fn view(&self) -> std::sync::MutexGuard<'_, View> {
        self.view.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The `cluster` part of `GET /status`: the nodes with their versions, up or down, which
    /// one leads the ACD, and the deployment version every node that is up serves (if one).
    pub fn status(&self, live_version: &str) -> Value {
        let view = self.view();
        // The rows as they are now: each heartbeat has aged since they were read.
        let since_read = view.read_at.map_or(0, |t| {
            i64::try_from(t.elapsed().as_millis()).unwrap_or(i64::MAX)
        });
        let rows: Vec<NodeRow> = view
            .nodes
            .iter()
            .map(|n| NodeRow {
                age_ms: n.age_ms.saturating_add(since_read),
                ..n.clone()
            })
            .collect();
        let up = |name: &str| rows.iter().any(|n| n.facts.name == name && n.up());
        // This node knows at once when it leads; the others are known from the database.
        let role = self.role();
        let leader: Option<(String, Option<String>)> = match role {
            Role::Leader { epoch } => Some((
                self.config.node.clone(),
                view.leader
                    .as_ref()
                    .filter(|l| l.epoch == epoch)
                    .map(|l| l.since.to_rfc3339()),
            )),
            Role::Follower => view
                .leader
                .as_ref()
                .filter(|l| l.node != self.config.node && up(&l.node))
                .map(|l| (l.node.clone(), Some(l.since.to_rfc3339()))),
        };
        let epoch = match role {
            Role::Leader { epoch } => Some(epoch),
            Role::Follower => view.leader.as_ref().map(|l| l.epoch),
        };
        let nodes: Vec<Value> = rows
            .iter()
            .map(|n| {
                json!({
                    "name": n.facts.name,
                    "sip": n.facts.sip,
                    "http": n.facts.http,
                    "deployment": n.facts.deployment,
                    "flow_versions": n.facts.flow_versions,
                    "started_at": n.started_at.to_rfc3339(),
                    "last_seen": n.last_seen.to_rfc3339(),
                    "seen_ms_ago": n.age_ms.max(0),
                    "up": n.up(),
                    "acd_leader": leader.as_ref().is_some_and(|l| l.0 == n.facts.name),
                })
            })
            .collect();
        let versions = live_everywhere(&rows);
        json!({
            "node": self.config.node,
            "sip_via": self.config.sip_via,
            "acd": {
                "leader": leader.as_ref().map(|l| l.0.clone()),
                "epoch": epoch,
                "since": leader.as_ref().and_then(|l| l.1.clone()),
                "this_node_leads": role.leads(),
            },
            "nodes": nodes,
            "live_everywhere": versions,
            "this_version_live_everywhere": versions.as_deref() == Some(live_version),
            "error": view.error,
            "checkpoints": self.checkpoints.status(),
        })
    }

    /// Whether node `name`'s heartbeat is recent (as last read); `None` before any read or
    /// for a node the cluster does not list.
    pub fn node_up(&self, name: &str) -> Option<bool> {
        let view = self.view();
        let since_read = view.read_at?.elapsed().as_millis();
        let n = view.nodes.iter().find(|n| n.facts.name == name)?;
        let age = u128::try_from(n.age_ms.max(0)).unwrap_or(0) + since_read;
        Some(age < ivr_data::cluster::DOWN_AFTER.as_millis())
    }

    fn record(&self, nodes: Vec<NodeRow>, leader: Option<LeaderRow>) {
        let mut view = self.view();
        view.nodes = nodes;
        view.read_at = Some(std::time::Instant::now());
        view.leader = leader;
        view.error = None;
    }

    fn failed(&self, error: String) {
        self.view().error = Some(error);
    }
}

/// The address of the proxy `sip:HOST:PORT` (an IP address; 5060 when no port is given).
pub fn proxy_address(uri: &str) -> Option<std::net::SocketAddr> {
    let rest = uri.strip_prefix("sip:").unwrap_or(uri);
    let rest = rest.split(';').next().unwrap_or(rest);
    rest.parse().ok().or_else(|| {
        rest.parse::<std::net::IpAddr>()
            .ok()
            .map(|ip| (ip, 5060).into())
    })
}

/// The deployment version every node that is up serves, when they all serve the same one
/// (`None` while a reload is going round, or when no node is up).
pub fn live_everywhere(nodes: &[NodeRow]) -> Option<String> {
    let mut up = nodes.iter().filter(|n| n.up()).map(|n| &n.facts.deployment);
    let first = up.next()?;
    up.all(|v| v == first).then(|| first.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn node(name: &str, version: &str, age_ms: i64) -> NodeRow {
        NodeRow {
            facts: NodeFacts {
                name: name.into(),
                sip: String::new(),
                http: String::new(),
                deployment: version.into(),
                flow_versions: String::new(),
            },
            started_at: Utc::now(),
            last_seen: Utc::now(),
            age_ms,
        }
    }

    #[test]
    fn a_version_is_live_everywhere_when_every_node_that_is_up_has_it() {
        assert_eq!(live_everywhere(&[]), None);
        let both = [node("a", "v2", 100), node("b", "v2", 900)];
        assert_eq!(live_everywhere(&both).as_deref(), Some("v2"));
        let mixed = [node("a", "v2", 100), node("b", "v1", 900)];
        assert_eq!(live_everywhere(&mixed), None);
        // A node that is down does not hold a version back.
        let down = [node("a", "v2", 100), node("b", "v1", 6_000)];
        assert_eq!(live_everywhere(&down).as_deref(), Some("v2"));
    }
}
