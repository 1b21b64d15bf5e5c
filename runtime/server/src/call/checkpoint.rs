//! A cluster node's call and its checkpoints (docs/cluster.md, "Calls taken over"): each time
//! the call enters a flow node, the driver hands the node's checkpoint writer
//! ([`crate::cluster::checkpoint::Checkpoints`]) where it is (the node, its variables without
//! masked ones, its language and tasks), its SIP dialog and media, and what its record needs;
//! when it ends, that it ended. A call taken over from a dead node starts from such a
//! checkpoint ([`Resumed`]): its engine resumes at the node and its record is continued.

use super::Driver;
use crate::cluster::checkpoint::Checkpoints;
use ivr_data::checkpoints::{Checkpoint, DialogFacts, MediaFacts};
use ivr_engine::Millis;
use ivr_engine::resume::{Saved, encode_variables};
use ivr_media::audio::Law;
use ivr_sip::dialog::Dialog;
use ivr_sip::sdp::Negotiated;

/// What a call of a cluster node knows for its checkpoints.
#[derive(Debug)]
pub struct Clustered {
    /// The SIP Call-ID of the caller's dialog (the checkpoint's key).
    pub sip_call_id: String,
    /// The caller's dialog as this node knows it.
    pub dialog: DialogFacts,
    /// The nodes that served the call so far, this one last (`a,b`).
    pub nodes: String,
    /// A call taken over: where it resumes.
    pub resume: Option<Resumed>,
}

/// A call taken over: where its flow resumes and how its record goes on.
#[derive(Debug)]
pub struct Resumed {
    /// The node, variables, language and tasks of its checkpoint.
    pub saved: Saved,
    /// When the call arrived (on the first node).
    pub started_at: Millis,
    /// When its flow first started.
    pub answered_at: Option<Millis>,
    /// Node visits recorded so far.
    pub visit_seq: i64,
}

/// The dialog facts of an INVITE we answer as `tag` (as [`Dialog::from_invite`] has them).
pub fn dialog_facts(d: &Dialog) -> DialogFacts {
    DialogFacts {
        call_id: d.call_id.clone(),
        local_tag: d.local_tag.clone(),
        remote_tag: d.remote_tag.clone(),
        local: d.local.clone(),
        remote: d.remote.clone(),
        remote_target: d.remote_target.clone(),
        route_set: d
            .route_set
            .iter()
            .take(ivr_data::checkpoints::MAX_ROUTES)
            .cloned()
            .collect(),
        local_cseq: d.local_cseq,
        remote_cseq: d.remote_cseq,
    }
}

/// The dialog of a checkpoint, for the core.
pub fn dialog_of(f: &DialogFacts) -> Dialog {
    Dialog {
        call_id: f.call_id.clone(),
        local_tag: f.local_tag.clone(),
        remote_tag: f.remote_tag.clone(),
        local: f.local.clone(),
        remote: f.remote.clone(),
        remote_target: f.remote_target.clone(),
        route_set: f.route_set.clone(),
        local_cseq: f.local_cseq,
        remote_cseq: f.remote_cseq,
    }
}

/// The media facts of what was negotiated.
pub fn media_facts(n: &Negotiated) -> MediaFacts {
    MediaFacts {
        remote: n.remote.map(|a| a.to_string()),
        codec: law_name(n.law).to_string(),
        pt: n.pt,
        event_pt: n.event_pt,
    }
}

/// `pcmu` or `pcma`.
pub fn law_name(law: Law) -> &'static str {
    match law {
        Law::Ulaw => "pcmu",
        Law::Alaw => "pcma",
    }
}

/// The law of a checkpoint's codec name (`None`: not one we speak).
pub fn law_of(name: &str) -> Option<Law> {
    match name {
        "pcmu" => Some(Law::Ulaw),
        "pcma" => Some(Law::Alaw),
        _ => None,
    }
}

/// The driver's part in checkpoints: where they go and what stays the same between them.
pub(super) struct Keeper {
    pub(super) writer: Checkpoints,
    pub(super) clustered: Box<Clustered>,
    pub(super) media: MediaFacts,
    /// Says which node took the call over, if one does ([`crate::cluster::fence`]).
    pub(super) taken: Option<tokio::sync::oneshot::Receiver<String>>,
}

/// The node that took the call over, once this node hears of it (pending until then, and
/// for calls without checkpoints).
pub(super) async fn taken_by(keeper: &mut Option<Keeper>) -> String {
    let Some(k) = keeper.as_mut() else {
        return std::future::pending().await;
    };
    let Some(rx) = k.taken.as_mut() else {
        return std::future::pending().await;
    };
    let heard = rx.await;
    k.taken = None;
    match heard {
        Ok(owner) => owner,
        Err(_) => std::future::pending().await,
    }
}

impl Driver {
    /// Hands the call's checkpoint to the writer (after the engine entered a node).
    pub(super) fn save_checkpoint(&self) {
        let Some(k) = &self.checkpoint else {
            return;
        };
        if self.call.is_ended() {
            return;
        }
        let saved = self.call.saved();
        let info = self.call.info();
        let flow = &self.call.flow().program;
        let (started_at, answered_at, visit_seq) = match &self.recorder {
            Some(r) => (r.started_ms(), r.answered_ms(), r.visit_seq()),
            None => (self.arrived, Some(self.arrived), 0),
        };
        k.writer.save(Checkpoint {
            sip_call_id: k.clustered.sip_call_id.clone(),
            call_id: info.id.clone(),
            owner: k.writer.node().to_string(),
            nodes: k.clustered.nodes.clone(),
            flow: flow.name.clone(),
            flow_version: flow.version.clone(),
            node: saved.node,
            language: saved.language,
            variables: encode_variables(&saved.variables).to_string(),
            served: saved.served,
            dialog: k.clustered.dialog.clone(),
            media: k.media.clone(),
            caller: info.caller.clone(),
            called: info.called.clone(),
            channel: info.channel.as_str().to_string(),
            started_at,
            answered_at,
            visit_seq,
        });
    }

    /// The call's media changed (a re-INVITE of the caller's): its checkpoint says so (the
    /// variables are those the node was entered with: nodes change them only as they leave).
    pub(super) fn checkpoint_media(&mut self, n: &Negotiated) {
        if let Some(k) = &mut self.checkpoint {
            k.media = media_facts(n);
            self.save_checkpoint();
        }
    }

    /// The call is over: its checkpoint goes.
    pub(super) fn checkpoint_ended(&self) {
        if let Some(k) = &self.checkpoint {
            k.writer.fence.unregister(&k.clustered.sip_call_id);
            k.writer.ended(&k.clustered.sip_call_id);
        }
    }

    /// Whether the call that ends is still this node's: asked of the database when this node
    /// may have been taken for dead (docs/cluster.md, "Fencing"); the node that has it if not.
    pub(super) fn still_ours(
        &self,
    ) -> impl std::future::Future<Output = Option<String>> + Send + 'static {
        let asked = self
            .checkpoint
            .as_ref()
            .zip(self.services.cluster.as_ref())
            .map(|(k, c)| {
                (
                    k.writer.fence.clone(),
                    c.pool().clone(),
                    k.clustered.sip_call_id.clone(),
                    self.call.info().id.clone(),
                    self.recorder
                        .as_ref()
                        .map_or(self.arrived, |r| r.started_ms()),
                )
            });
        async move {
            let (fence, pool, sip_call_id, call_id, started) = asked?;
            match fence.confirm(&pool, &sip_call_id, &call_id, started).await {
                crate::cluster::fence::Ownership::Ours => None,
                crate::cluster::fence::Ownership::Taken(owner) => Some(owner),
            }
        }
    }

    /// Another node has the call now (it took this node for dead): the call stops here
    /// quietly: no record (its final one, its open node visits and a message being recorded
    /// are dropped), its checkpoint left to the new owner; the caller gets no BYE from here
    /// (the driver's end) and its media stops with the call.
    pub(super) fn stop_taken(&mut self, owner: &str) {
        if owner.is_empty() {
            tracing::warn!(
                "taken over by another node, which has written its record: the call stops \
                 here quietly (no BYE, no record)"
            );
        } else {
            tracing::warn!(
                owner = %owner,
                "taken over by node {owner}: the call stops here quietly (no BYE, no record)"
            );
        }
        self.recording = None;
        if let Some(r) = &mut self.recorder {
            r.abandon();
        }
        if let Some(k) = &self.checkpoint {
            k.writer.fence.unregister(&k.clustered.sip_call_id);
            k.writer.fence.stopped();
        }
    }
}
