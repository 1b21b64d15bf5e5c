//! The ACD's leadership: every node tries PostgreSQL's advisory lock once a second on a
//! connection of its own; the one that gets it leads, moves `acd_leadership.epoch` on by one
//! and checks every second that its connection answers and the epoch is still its own. A
//! leader whose connection is lost (the database let the lock go) or whose epoch moved is
//! deposed: it stops leading and becomes a candidate again. A node that dies loses its
//! connection, so its lock goes with it and another node leads within about a second.

use super::Cluster;
use ivr_data::cluster::{Candidate, Leader};
use std::sync::Arc;
use std::time::Duration;

/// How often a candidate tries the lock and a leader checks that it still leads.
pub const EVERY: Duration = Duration::from_secs(1);

/// This node's part in the ACD's leadership.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Another node leads (or none yet).
    Follower,
    /// This node leads since the takeover of this epoch.
    Leader {
        /// The epoch of its takeover.
        epoch: i64,
    },
}

impl Role {
    /// This node leads.
    pub fn leads(self) -> bool {
        matches!(self, Role::Leader { .. })
    }
}

/// Tries for the leadership, holds it while it lasts, and tries again after losing it, for
/// as long as the node runs.
pub async fn run(cluster: Arc<Cluster>) {
    let node = cluster.config.node.clone();
    loop {
        let leader = candidate(&cluster, &node).await;
        let epoch = leader.epoch();
        cluster.role.send_replace(Role::Leader { epoch });
        tracing::info!(node = %node, epoch, "this node leads the ACD");
        let why = hold(leader).await;
        cluster.role.send_replace(Role::Follower);
        tracing::warn!(node = %node, epoch, "this node no longer leads the ACD: {why}");
    }
}

/// Waits until this node gets the lock.
async fn candidate(cluster: &Cluster, node: &str) -> Leader {
    let mut failing = false;
    loop {
        let mut c = match Candidate::connect(&cluster.config.database).await {
            Ok(c) => c,
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "ACD leadership: cannot connect to the database");
                }
                failing = true;
                tokio::time::sleep(EVERY).await;
                continue;
            }
        };
        failing = false;
        loop {
            match c.try_lead(node).await {
                Ok(Ok(leader)) => return leader,
                Ok(Err(back)) => c = back,
                Err(e) => {
                    tracing::warn!(error = %e, "ACD leadership: connection lost");
                    break;
                }
            }
            tokio::time::sleep(EVERY).await;
        }
        tokio::time::sleep(EVERY).await;
    }
}

/// Holds the leadership while it lasts; says why it ended.
async fn hold(mut leader: Leader) -> String {
    loop {
        tokio::time::sleep(EVERY).await;
        match leader.still_leads().await {
            Ok(true) => {}
            Ok(false) => {
                // Another node took the lock over (this one's was let go): step down.
                leader.resign().await;
                return "another node took over (the epoch moved)".into();
            }
            Err(e) => return format!("its database connection was lost ({e})"),
        }
    }
}
