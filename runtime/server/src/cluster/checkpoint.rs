//! The checkpoint writer of a cluster node: calls hand it their latest checkpoint each time
//! they enter a flow node, and their end; one task writes them to `call_checkpoints`
//! ([`ivr_data::checkpoints`]). A call never waits for the database: what it hands over goes
//! into a map keyed by the call's SIP Call-ID, where a newer checkpoint replaces an older one
//! not yet written (the latest wins), and the map is bounded: a checkpoint of a call that has
//! no entry yet when the map is full is dropped and counted ([`Checkpoints::dropped`]). A
//! call's end always finds room (it replaces the call's entry, or it is one of at most as
//! many calls as are running).

use super::fence::Fence;
use ivr_data::checkpoints::{self, Checkpoint};
use ivr_data::cluster::PgPool;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// Most checkpoints waiting for the writer (calls with one not yet written).
pub const QUEUE: usize = 4_096;

/// How long the writer gathers before it writes (checkpoints of a call entering several
/// nodes in a row coalesce).
const GATHER: Duration = Duration::from_millis(20);

/// What waits for the writer, by SIP Call-ID: the latest checkpoint, or `None` (the call
/// ended: delete its row).
#[derive(Debug, Default)]
struct Waiting {
    map: HashMap<String, Option<Box<Checkpoint>>>,
}

/// The handle calls hand their checkpoints to (cheap to clone).
#[derive(Debug, Clone)]
pub struct Checkpoints {
    node: String,
    waiting: Arc<Mutex<Waiting>>,
    wake: Arc<Notify>,
    dropped: Arc<AtomicU64>,
    written: Arc<AtomicU64>,
    /// Calls of dead nodes this node took over (their callers answered the re-INVITE).
    pub taken_over: Arc<AtomicU64>,
    /// Calls of dead nodes this node claimed but could not take over.
    pub not_taken_over: Arc<AtomicU64>,
    /// Which of this node's calls another node has now ([`Fence`]).
    pub fence: Fence,
}

impl Checkpoints {
    /// The writer's handle for node `node` (its task starts with [`Checkpoints::start`]).
    pub fn new(node: &str) -> Checkpoints {
        Checkpoints {
            node: node.to_string(),
            waiting: Arc::default(),
            wake: Arc::new(Notify::new()),
            dropped: Arc::default(),
            written: Arc::default(),
            taken_over: Arc::default(),
            not_taken_over: Arc::default(),
            fence: Fence::new(node),
        }
    }

    /// This node's name (the owner of its checkpoints).
    pub fn node(&self) -> &str {
        &self.node
    }

    fn waiting(&self) -> std::sync::MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A call's latest checkpoint (never blocks; dropped and counted when the queue is full).
    pub fn save(&self, c: Checkpoint) {
        {
            let mut w = self.waiting();
            if w.map.len() >= QUEUE && !w.map.contains_key(&c.sip_call_id) {
                drop(w);
                self.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            w.map.insert(c.sip_call_id.clone(), Some(Box::new(c)));
        }
        self.wake.notify_one();
    }

    /// A call with a checkpoint ended: its row goes.
    pub fn ended(&self, sip_call_id: &str) {
        self.waiting().map.insert(sip_call_id.to_string(), None);
        self.wake.notify_one();
    }

    /// Checkpoints dropped because the queue was full, since start.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Checkpoints written, since start.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// The `checkpoints` part of the cluster's `/status`: checkpoints written and dropped,
    /// calls taken over and not.
    pub fn status(&self) -> serde_json::Value {
        serde_json::json!({
            "written": self.written(),
            "dropped": self.dropped(),
            "taken_over": self.taken_over.load(Ordering::Relaxed),
            "not_taken_over": self.not_taken_over.load(Ordering::Relaxed),
            "fenced": self.fence.fenced(),
        })
    }

    /// The `/metrics` series of a cluster node's checkpoints and takeovers.
    pub fn metrics(&self, out: &mut String) {
        use std::fmt::Write as _;
        let _ = write!(
            out,
            "# HELP ivr_cluster_checkpoints_written_total Checkpoints of this node's calls written to call_checkpoints.\n\
             # TYPE ivr_cluster_checkpoints_written_total counter\n\
             ivr_cluster_checkpoints_written_total {}\n\
             # HELP ivr_cluster_checkpoints_dropped_total Checkpoints dropped because the writer's queue was full.\n\
             # TYPE ivr_cluster_checkpoints_dropped_total counter\n\
             ivr_cluster_checkpoints_dropped_total {}\n\
             # HELP ivr_cluster_takeovers_total Calls of dead nodes this node claimed, by result (taken_over: the caller answered the re-INVITE).\n\
             # TYPE ivr_cluster_takeovers_total counter\n\
             ivr_cluster_takeovers_total{{result=\"taken_over\"}} {}\n\
             ivr_cluster_takeovers_total{{result=\"not_taken_over\"}} {}\n\
             # HELP ivr_cluster_fenced_calls_total Calls this node stopped quietly because another node had taken them over (this node was taken for dead).\n\
             # TYPE ivr_cluster_fenced_calls_total counter\n\
             ivr_cluster_fenced_calls_total {}\n",
            self.written(),
            self.dropped(),
            self.taken_over.load(Ordering::Relaxed),
            self.not_taken_over.load(Ordering::Relaxed),
            self.fence.fenced(),
        );
    }

    /// Starts the writer task on `pool`.
    pub fn start(&self, pool: PgPool) {
        let me = self.clone();
        tokio::spawn(async move { me.run(pool).await });
    }

    async fn run(self, pool: PgPool) {
        loop {
            self.wake.notified().await;
            tokio::time::sleep(GATHER).await;
            let batch = std::mem::take(&mut self.waiting().map);
            if batch.is_empty() {
                continue;
            }
            let mut rows = Vec::new();
            let mut gone = Vec::new();
            for (id, c) in batch {
                match c {
                    Some(c) => rows.push(*c),
                    None => gone.push(id),
                }
            }
            if !rows.is_empty() {
                match checkpoints::write(&pool, &rows).await {
                    Ok(refused) => {
                        let n = rows.len() - refused.len();
                        self.written.fetch_add(n as u64, Ordering::Relaxed);
                        if !refused.is_empty() {
                            self.refused(&pool, &rows, &refused).await;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, rows = rows.len(), "checkpoints not written")
                    }
                }
            }
            if !gone.is_empty()
                && let Err(e) = checkpoints::delete(&pool, &self.node, &gone).await
            {
                tracing::warn!(error = %e, "ended calls' checkpoints not deleted");
            }
        }
    }
}

impl Checkpoints {
    /// Checkpoints the database refused: their calls are another node's now (or ended
    /// there); each call's task is told who has it.
    async fn refused(&self, pool: &PgPool, rows: &[Checkpoint], refused: &[String]) {
        let asked: Vec<(String, String, i64)> = rows
            .iter()
            .filter(|c| refused.contains(&c.sip_call_id))
            .map(|c| (c.sip_call_id.clone(), c.call_id.clone(), c.started_at))
            .collect();
        match checkpoints::taken_from(pool, &self.node, &asked).await {
            Ok(taken) => {
                for (sip, owner) in taken {
                    self.fence.taken(&sip, &owner);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "refused checkpoints: cannot read who has their calls")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(id: &str, node: &str) -> Checkpoint {
        Checkpoint {
            sip_call_id: id.into(),
            node: node.into(),
            ..Checkpoint::default()
        }
    }

    #[test]
    fn the_latest_checkpoint_of_a_call_wins_and_the_queue_is_bounded() {
        let w = Checkpoints::new("a");
        w.save(c("x", "menu"));
        w.save(c("x", "input"));
        {
            let waiting = w.waiting();
            assert_eq!(waiting.map.len(), 1);
            assert_eq!(
                waiting.map["x"].as_ref().map(|c| c.node.as_str()),
                Some("input")
            );
        }
        for i in 1..QUEUE {
            w.save(c(&format!("call{i}"), "menu"));
        }
        assert_eq!(w.dropped(), 0);
        // Full: a new call's checkpoint is dropped and counted; a known call's replaces its
        // own; an end always finds room.
        w.save(c("new", "menu"));
        assert_eq!(w.dropped(), 1);
        w.save(c("x", "lookup"));
        assert_eq!(w.dropped(), 1);
        w.ended("other");
        w.ended("x");
        let waiting = w.waiting();
        assert_eq!(waiting.map.len(), QUEUE + 1);
        assert!(waiting.map["x"].is_none());
        assert!(!waiting.map.contains_key("new"));
        drop(waiting);
        let mut m = String::new();
        w.metrics(&mut m);
        assert!(
            m.contains("ivr_cluster_checkpoints_dropped_total 1\n"),
            "{m}"
        );
        assert!(
            m.contains("ivr_cluster_takeovers_total{result=\"taken_over\"} 0\n"),
            "{m}"
        );
    }
}
