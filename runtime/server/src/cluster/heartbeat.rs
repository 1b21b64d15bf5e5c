//! This node's heartbeat: its row in `cluster_nodes` written every second with the versions
//! it serves, and every node's row read back for `/status`.

use super::Cluster;
use crate::live::Live;
use ivr_data::cluster::{self, NodeFacts};
use std::sync::Arc;
use std::time::Duration;

/// How often a node writes its heartbeat and reads the others'.
pub const EVERY: Duration = Duration::from_secs(1);

/// The most a heartbeat's queries may take before it counts as failed.
const TIMEOUT: Duration = Duration::from_secs(2);

/// Writes the heartbeat and reads the nodes every [`EVERY`], for as long as the node runs.
pub async fn run(cluster: Arc<Cluster>, mut facts: NodeFacts, live: Arc<Live>) {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut announced = false;
    let mut failing = false;
    loop {
        tick.tick().await;
        let deployment = live.current();
        facts.deployment = deployment.version.clone();
        facts.flow_versions = deployment.flow_versions();
        drop(deployment);
        let pool = &cluster.pool;
        let sent = std::time::Instant::now();
        let beat = async {
            if announced {
                cluster::heartbeat(pool, &facts).await?;
            } else {
                cluster::announce(pool, &facts).await?;
            }
            let nodes = cluster::nodes(pool).await?;
            let leader = cluster::leader(pool).await?;
            Ok::<_, ivr_data::DataError>((nodes, leader))
        };
        match tokio::time::timeout(TIMEOUT, beat).await {
            Ok(Ok((nodes, leader))) => {
                if failing {
                    tracing::info!("cluster heartbeat written again");
                }
                announced = true;
                failing = false;
                cluster.record(nodes, leader);
                // After a gap the others may have taken this node for dead: its calls are
                // checked (docs/cluster.md, "Fencing").
                let fence = &cluster.checkpoints.fence;
                fence.beat_written(sent);
                let _ = tokio::time::timeout(TIMEOUT, fence.check(pool)).await;
            }
            Ok(Err(e)) => {
                if !failing {
                    tracing::warn!(error = %e, "cluster heartbeat not written");
                }
                failing = true;
                cluster.failed(e.to_string());
            }
            Err(_) => {
                if !failing {
                    tracing::warn!("cluster heartbeat: the database did not answer within 2 s");
                }
                failing = true;
                cluster.failed("the database did not answer within 2 s".into());
            }
        }
    }
}
