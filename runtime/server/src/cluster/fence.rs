//! Fencing of a node taken for dead that runs on (docs/cluster.md, "Fencing"): cut off from
//! the database, or frozen (a paused VM, SIGSTOP, a long stall) for longer than the cluster's
//! down threshold, its calls were taken over by another node while it still holds them. The
//! database rows that decide ownership decide here too, with no consensus of our own: a call
//! is this node's while its `call_checkpoints` row names this node.
//!
//! This node learns that a call is no longer its own when the checkpoint writer's write for
//! it is refused (another owner, or its record already written), or when a check of all its
//! calls finds another owner ([`Fence::check`], run once the heartbeat comes back after a gap
//! long enough for the others to have taken the node for dead). The call's task hears it on
//! the channel it registered ([`Fence::register`]) and stops quietly: no BYE, no record, its
//! media stopped (the call's driver). A call that ends while this node may have been taken
//! for dead asks first ([`Fence::confirm`]). Its final record is guarded by the database in
//! any case ([`ivr_data::records::OwnedCall`]).

use ivr_data::checkpoints;
use ivr_data::cluster::PgPool;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// A gap between two heartbeats written this long (or more) makes the node suspect that its
/// calls were taken: half the cluster's down threshold, so that a slow write never lets a
/// real takeover go unnoticed.
pub const SUSPECT_AFTER: Duration = Duration::from_millis(2_500);

/// How many checks of every call follow a gap (a claim that started before the heartbeat
/// came back may commit just after the first check).
const CHECKS_AFTER_GAP: u32 = 3;

/// How long a call that ends while the node is suspect waits for the database's answer.
pub const CONFIRM_WITHIN: Duration = Duration::from_secs(2);

/// Most calls asked about in one check.
const CHECK_BATCH: usize = 5_000;

/// A registered call: its record's id and who to tell.
#[derive(Debug)]
struct Registered {
    call_id: String,
    started_at: i64,
    tell: oneshot::Sender<String>,
}

#[derive(Debug, Default)]
struct Inner {
    calls: Mutex<HashMap<String, Registered>>,
    /// When the last heartbeat that was written was sent.
    last_beat: Mutex<Option<Instant>>,
    /// Checks of every call still to run after a gap.
    checks_left: AtomicU32,
    /// Calls this node stopped because another node has them.
    fenced: AtomicU64,
}

/// This node's fence (cheap to clone).
#[derive(Debug, Clone, Default)]
pub struct Fence {
    node: String,
    inner: Arc<Inner>,
}

/// What a call that ends asks: is it still this node's?
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ownership {
    /// This node's (or the database could not say within [`CONFIRM_WITHIN`]).
    Ours,
    /// Another node's: its name (`""`: its record was written elsewhere).
    Taken(String),
}

impl Fence {
    /// The fence of node `node`.
    pub fn new(node: &str) -> Fence {
        Fence {
            node: node.to_string(),
            inner: Arc::default(),
        }
    }

    fn calls(&self) -> std::sync::MutexGuard<'_, HashMap<String, Registered>> {
        self.inner.calls.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A call with a checkpoint starts (its record `call_id`, arrived at `started_at`, local
    /// wall-clock milliseconds): the receiver hears the node that took it over.
    pub fn register(
        &self,
        sip_call_id: &str,
        call_id: &str,
        started_at: i64,
    ) -> oneshot::Receiver<String> {
        let (tell, rx) = oneshot::channel();
        self.calls().insert(
            sip_call_id.to_string(),
            Registered {
                call_id: call_id.to_string(),
                started_at,
                tell,
            },
        );
        rx
    }

    /// The call ended (or stopped).
    pub fn unregister(&self, sip_call_id: &str) {
        self.calls().remove(sip_call_id);
    }

    /// Call `sip_call_id` is `owner`'s now: its task is told (once).
    pub fn taken(&self, sip_call_id: &str, owner: &str) {
        if let Some(r) = self.calls().remove(sip_call_id) {
            let _ = r.tell.send(owner.to_string());
        }
    }

    /// A call stopped quietly because another node has it (counted).
    pub fn stopped(&self) {
        self.inner.fenced.fetch_add(1, Ordering::Relaxed);
    }

    /// Calls stopped because another node has them, since start.
    pub fn fenced(&self) -> u64 {
        self.inner.fenced.load(Ordering::Relaxed)
    }

    /// A heartbeat sent at `sent` was written: after a gap of [`SUSPECT_AFTER`] or more since
    /// the last one, every call is checked.
    pub fn beat_written(&self, sent: Instant) {
        let mut last = self
            .inner
            .last_beat
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if last.is_some_and(|t| sent.saturating_duration_since(t) >= SUSPECT_AFTER) {
            self.inner
                .checks_left
                .store(CHECKS_AFTER_GAP, Ordering::Relaxed);
        }
        *last = Some(sent);
    }

    /// Whether this node may have been taken for dead (its heartbeat not written for
    /// [`SUSPECT_AFTER`] now, or a gap whose checks are not done yet).
    pub fn suspect(&self) -> bool {
        let stale = self
            .inner
            .last_beat
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|t| t.elapsed() >= SUSPECT_AFTER);
        stale || self.inner.checks_left.load(Ordering::Relaxed) > 0
    }

    /// Checks every call of this node against the database when a gap asks for it; each
    /// call another node has is told. Run once a heartbeat is written.
    pub async fn check(&self, pool: &PgPool) {
        if self.inner.checks_left.load(Ordering::Relaxed) == 0 {
            return;
        }
        let asked: Vec<(String, String, i64)> = self
            .calls()
            .iter()
            .take(CHECK_BATCH)
            .map(|(sip, r)| (sip.clone(), r.call_id.clone(), r.started_at))
            .collect();
        match checkpoints::taken_from(pool, &self.node, &asked).await {
            Ok(taken) => {
                for (sip, owner) in taken {
                    self.taken(&sip, &owner);
                }
                let _ = self.inner.checks_left.fetch_update(
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                    |n| n.checked_sub(1),
                );
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot check whether this node's calls were taken over")
            }
        }
    }

    /// Whether call `sip_call_id` (record `call_id`, arrived at `started_at`) is still this node's, asked of the
    /// database when this node may have been taken for dead ([`Fence::suspect`]); `Ours` at
    /// once otherwise, or when the database does not answer within [`CONFIRM_WITHIN`].
    pub async fn confirm(
        &self,
        pool: &PgPool,
        sip_call_id: &str,
        call_id: &str,
        started_at: i64,
    ) -> Ownership {
        if !self.suspect() {
            return Ownership::Ours;
        }
        let asked = [(sip_call_id.to_string(), call_id.to_string(), started_at)];
        match tokio::time::timeout(
            CONFIRM_WITHIN,
            checkpoints::taken_from(pool, &self.node, &asked),
        )
        .await
        {
            Ok(Ok(taken)) => match taken.into_iter().next() {
                Some((_, owner)) => Ownership::Taken(owner),
                None => Ownership::Ours,
            },
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot check whether the call was taken over: it ends as this node's");
                Ownership::Ours
            }
            Err(_) => {
                tracing::warn!(
                    "the database did not say within 2 s whether the call was taken over: it ends as this node's"
                );
                Ownership::Ours
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gap_between_heartbeats_makes_the_node_suspect() {
        let f = Fence::new("a");
        assert!(!f.suspect());
        let t0 = Instant::now();
        f.beat_written(t0);
        f.beat_written(t0 + Duration::from_secs(1));
        assert!(!f.suspect());
        f.beat_written(t0 + Duration::from_secs(9));
        assert!(f.suspect());
        // Told once; an unknown call is nobody's business.
        let mut rx = f.register("x", "call-x", 0);
        f.taken("x", "b");
        f.taken("x", "c");
        f.taken("y", "b");
        assert_eq!(rx.try_recv().ok().as_deref(), Some("b"));
    }
}
