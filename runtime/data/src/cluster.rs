//! The shared state of a cluster of nodes in PostgreSQL (docs/cluster.md): each node's
//! heartbeat row in `cluster_nodes`, and the ACD's leadership, held by whichever node holds
//! a session advisory lock on a connection of its own, with the `acd_leadership.epoch` that
//! every takeover moves on.
//!
//! Time is the database's (`now()`), so that nodes whose clocks differ agree on who is up.

use crate::DataError;
use chrono::{DateTime, Utc};
/// The shared database's pool (sqlx's), for the nodes' own use.
pub use sqlx::PgPool;
use sqlx::{Connection, PgConnection, Row};
use std::str::FromStr;
use std::time::Duration;

/// A node whose heartbeat is older than this is down.
pub const DOWN_AFTER: Duration = Duration::from_secs(5);

/// The calls of a node whose heartbeat is older than this are taken over by the others
/// (`call_checkpoints`): a second before it is shown down, so that a dead node's calls are
/// taken over within 5 s of its death (heartbeats come every second, so the last one is up
/// to a second older than the death).
pub const TAKEOVER_AFTER: Duration = Duration::from_secs(4);

/// The key of the ACD's advisory lock (any constant the platform does not use elsewhere).
pub const ACD_LOCK_KEY: i64 = 0x0069_7672_5f61_6364; // "ivr_acd" in ASCII

/// The most nodes listed (a cluster has a handful).
pub const MAX_NODES: i64 = 256;

/// How long a query of the leadership may take before its connection counts as lost.
const LEADER_QUERY_TIMEOUT: Duration = Duration::from_secs(3);

/// What a node says about itself in its heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeFacts {
    /// Its name (`[cluster] node`).
    pub name: String,
    /// Where it takes SIP (`sip:HOST:PORT`).
    pub sip: String,
    /// Its HTTP interface (`http://HOST:PORT`).
    pub http: String,
    /// The version of the deployment it serves.
    pub deployment: String,
    /// Each flow's version.
    pub flow_versions: String,
}

/// A node's row as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRow {
    /// What it said.
    pub facts: NodeFacts,
    /// When it started (its first heartbeat of this run).
    pub started_at: DateTime<Utc>,
    /// Its last heartbeat.
    pub last_seen: DateTime<Utc>,
    /// How old its last heartbeat is, by the database's clock, in milliseconds.
    pub age_ms: i64,
}

impl NodeRow {
    /// Its heartbeat is recent enough.
    pub fn up(&self) -> bool {
        u64::try_from(self.age_ms).unwrap_or(0) < DOWN_AFTER.as_millis() as u64
    }
}

/// A node starting: its row (new, or the one of an earlier run) with `started_at` now.
pub async fn announce(pool: &PgPool, n: &NodeFacts) -> Result<(), DataError> {
    sqlx::query(
        "INSERT INTO cluster_nodes (name, sip, http, deployment, flow_versions, started_at, last_seen)
         VALUES ($1, $2, $3, $4, $5, now(), now())
         ON CONFLICT (name) DO UPDATE SET sip = $2, http = $3, deployment = $4,
             flow_versions = $5, started_at = now(), last_seen = now()",
    )
    .bind(&n.name)
    .bind(&n.sip)
    .bind(&n.http)
    .bind(&n.deployment)
    .bind(&n.flow_versions)
    .execute(pool)
    .await?;
    Ok(())
}

/// A heartbeat: `last_seen` now, with the versions the node serves now (its row written
/// again if someone deleted it).
pub async fn heartbeat(pool: &PgPool, n: &NodeFacts) -> Result<(), DataError> {
    let done = sqlx::query(
        "UPDATE cluster_nodes SET sip = $2, http = $3, deployment = $4, flow_versions = $5,
             last_seen = now()
         WHERE name = $1",
    )
    .bind(&n.name)
    .bind(&n.sip)
    .bind(&n.http)
    .bind(&n.deployment)
    .bind(&n.flow_versions)
    .execute(pool)
    .await?;
    if done.rows_affected() == 0 {
        announce(pool, n).await?;
    }
    Ok(())
}

/// Every node's row, by name.
pub async fn nodes(pool: &PgPool) -> Result<Vec<NodeRow>, DataError> {
    let rows = sqlx::query(
        "SELECT name, sip, http, deployment, flow_versions, started_at, last_seen,
                CAST(EXTRACT(EPOCH FROM (now() - last_seen)) * 1000 AS BIGINT) AS age_ms
           FROM cluster_nodes ORDER BY name LIMIT $1",
    )
    .bind(MAX_NODES)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(NodeRow {
                facts: NodeFacts {
                    name: r.try_get("name")?,
                    sip: r.try_get("sip")?,
                    http: r.try_get("http")?,
                    deployment: r.try_get("deployment")?,
                    flow_versions: r.try_get("flow_versions")?,
                },
                started_at: r.try_get("started_at")?,
                last_seen: r.try_get("last_seen")?,
                age_ms: r.try_get("age_ms")?,
            })
        })
        .collect()
}

/// The leadership as the database records it: the last node to take it and its epoch
/// (`None` before any node took it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderRow {
    /// The node.
    pub node: String,
    /// The epoch of its takeover.
    pub epoch: i64,
    /// When it took over.
    pub since: DateTime<Utc>,
}

/// Who took the leadership last.
pub async fn leader(pool: &PgPool) -> Result<Option<LeaderRow>, DataError> {
    let row = sqlx::query("SELECT node, epoch, since FROM acd_leadership WHERE id = 1")
        .fetch_optional(pool)
        .await?;
    let Some(r) = row else { return Ok(None) };
    let node: Option<String> = r.try_get("node")?;
    let since: Option<DateTime<Utc>> = r.try_get("since")?;
    Ok(match (node, since) {
        (Some(node), Some(since)) => Some(LeaderRow {
            node,
            epoch: r.try_get("epoch")?,
            since,
        }),
        _ => None,
    })
}

/// A node that wants the leadership: a connection of its own, on which it tries the lock.
pub struct Candidate {
    conn: PgConnection,
}

/// The node that holds the leadership: the connection that holds the lock, and the epoch of
/// its takeover. Dropping it closes the connection, which lets the lock go.
pub struct Leader {
    conn: PgConnection,
    epoch: i64,
}

impl std::fmt::Debug for Candidate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Candidate")
    }
}

impl std::fmt::Debug for Leader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Leader(epoch {})", self.epoch)
    }
}

async fn bounded<T>(
    what: impl std::future::Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, DataError> {
    match tokio::time::timeout(LEADER_QUERY_TIMEOUT, what).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(DataError::Connect(format!(
            "no answer within {} s",
            LEADER_QUERY_TIMEOUT.as_secs()
        ))),
    }
}

impl Candidate {
    /// Opens the candidate's own connection to `url`.
    pub async fn connect(url: &str) -> Result<Candidate, DataError> {
        let opts = sqlx::postgres::PgConnectOptions::from_str(url)
            .map_err(|e| DataError::Connect(format!("{}: {e}", crate::connect::redact_url(url))))?;
        let conn = bounded(PgConnection::connect_with(&opts)).await?;
        Ok(Candidate { conn })
    }

    /// Tries the lock once: the leader (the epoch moved on by one, `node` recorded) when it
    /// was free, else the candidate back.
    pub async fn try_lead(mut self, node: &str) -> Result<Result<Leader, Candidate>, DataError> {
        let got: bool = bounded(
            sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                .bind(ACD_LOCK_KEY)
                .fetch_one(&mut self.conn),
        )
        .await?;
        if !got {
            return Ok(Err(self));
        }
        let epoch: i64 = bounded(
            sqlx::query_scalar(
                "UPDATE acd_leadership SET epoch = epoch + 1, node = $1, since = now()
                  WHERE id = 1 RETURNING epoch",
            )
            .bind(node)
            .fetch_one(&mut self.conn),
        )
        .await?;
        Ok(Ok(Leader {
            conn: self.conn,
            epoch,
        }))
    }
}

impl Leader {
    /// The epoch of this leader's takeover.
    pub fn epoch(&self) -> i64 {
        self.epoch
    }

    /// Whether it still leads: its connection answers (the lock lives as long as it) and the
    /// epoch is still its own. `Err` when the connection is lost.
    pub async fn still_leads(&mut self) -> Result<bool, DataError> {
        let epoch: i64 = bounded(
            sqlx::query_scalar("SELECT epoch FROM acd_leadership WHERE id = 1")
                .fetch_one(&mut self.conn),
        )
        .await?;
        Ok(epoch == self.epoch)
    }

    /// Gives the leadership up: the lock released, the connection closed.
    pub async fn resign(mut self) {
        let _ = bounded(
            sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(ACD_LOCK_KEY)
                .execute(&mut self.conn),
        )
        .await;
        let _ = self.conn.close().await;
    }
}
