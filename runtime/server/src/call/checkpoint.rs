//! A cluster node's call and its checkpoints (docs/cluster.md, "Calls taken over"): each time
//! the call enters a flow node, the driver hands the node's checkpoint writer
//! ([`crate::cluster::checkpoint::Checkpoints`]) where it is (the node, its variables without
//! masked ones, its language and tasks), its SIP dialog and media, and what its record needs;
//! when it ends, that it ended. A call taken over from a dead node starts from such a
//! checkpoint ([`Resumed`]): its engine resumes at the node and its record is continued.

use super::{Driver, Leg, Transfer};
use crate::acd_task::AcdMsg;
use crate::cluster::checkpoint::Checkpoints;
use crate::screen_pop::ScreenPop;
use crate::services::Services;
use crate::sip_task::{CoreMsg, LegEvent};
use ivr_acd::CallKey;
use ivr_data::checkpoints::{AgentLegFacts, Checkpoint, DialogFacts, MediaFacts};
use ivr_engine::Millis;
use ivr_engine::resume::{Saved, encode_variables};
use ivr_media::audio::Law;
use ivr_media::latch::Latch;
use ivr_media::ports::RtpPort;
use ivr_sip::dialog::Dialog;
use ivr_sip::sdp::Negotiated;
use tokio::sync::mpsc;

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
    /// A bridged call: its agent's leg, re-INVITEd by the takeover.
    pub leg: Option<ResumedLeg>,
}

/// The agent's leg of a bridged call taken over: re-INVITEd through the core
/// ([`CoreMsg::ResumeLeg`]), its events coming here as for a leg the call placed.
#[derive(Debug)]
pub struct ResumedLeg {
    /// The leg's tag (our From tag in its dialog).
    pub tag: String,
    /// The key the ACD knows the call by.
    pub key: CallKey,
    /// The agent.
    pub agent: String,
    /// The queue the call came through.
    pub queue: String,
    /// The screen pop the agent saw (none: made again from the transfer node).
    pub pop: Option<ScreenPop>,
    /// When the agent first answered (wall clock, ms).
    pub answered_at: Millis,
    /// The leg's RTP port (in the re-INVITE's offer).
    pub port: RtpPort,
    /// The leg's events from the core.
    pub events: mpsc::UnboundedReceiver<LegEvent>,
}

/// The playback sequence of the silence a bridge taken over sends the caller until the
/// caller's RTP reaches this node (its end is not the engine's).
pub(super) const PRIME_SEQ: u32 = u32::MAX - 2;

/// What the driver keeps of a resumed agent until the leg answers its re-INVITE.
#[derive(Debug)]
pub(super) struct ResumedAgent {
    agent: String,
    queue: String,
    answered_at: Millis,
}

/// A resumed leg whose call cannot go on: the leg is hung up (BYE once it answers) and the
/// ACD's agent is free after its wrap-up.
pub fn abandon_leg(services: &Services, leg: &ResumedLeg) {
    let _ = services.core.send(CoreMsg::EndLeg {
        tag: leg.tag.clone(),
    });
    let _ = services.acd.send(AcdMsg::ConversationOver(leg.key));
}

/// The screen pop kept in a checkpoint: its JSON when small enough.
fn pop_json(pop: Option<&ScreenPop>) -> Option<String> {
    let s = serde_json::to_string(pop?).ok()?;
    (s.len() <= ivr_data::checkpoints::MAX_POP_JSON).then_some(s)
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
            agent_leg: self.agent_leg_facts(),
        });
    }

    /// The agent's leg while the caller is bridged to an agent (a queue's transfer over SIP),
    /// for the checkpoint.
    fn agent_leg_facts(&self) -> Option<AgentLegFacts> {
        let l = self.leg.as_ref().filter(|l| l.connected && !l.console)?;
        let key = self.transfer.as_ref().and_then(|t| t.key)?;
        let agent = l.agent.clone()?;
        let dialog = l.dialog.as_deref()?;
        let side = l.side?;
        let pop = self.last_pop.as_ref();
        let queue = pop.map(|p| p.queue.clone()).filter(|q| !q.is_empty())?;
        Some(AgentLegFacts {
            key,
            agent,
            queue,
            dialog: dialog_facts(dialog),
            media: MediaFacts {
                remote: l.remote.map(|a| a.to_string()),
                codec: law_name(side.law).to_string(),
                pt: side.pt,
                event_pt: side.event_pt,
            },
            answered_at: l.answered_at.unwrap_or(self.arrived),
            pop: pop_json(pop),
        })
    }

    /// A bridged call taken over: the agent's leg (its re-INVITE on its way) becomes the
    /// call's leg, and the call's transfer the ACD's call `key`; once the leg answers, the
    /// bridge is made again and the ACD hears [`AcdMsg::Resumed`].
    pub(super) fn adopt_resumed_leg(&mut self, mut r: ResumedLeg) {
        let sock = r.port.take_socket().and_then(|s| {
            s.set_nonblocking(true).ok()?;
            tokio::net::UdpSocket::from_std(s).ok()
        });
        let Some(sock) = sock else {
            tracing::warn!("no RTP socket for the agent's leg taken over");
            abandon_leg(&self.services, &r);
            return;
        };
        tracing::info!(agent = %r.agent, "re-INVITE of the agent's leg of a call taken over");
        self.leg = Some(Leg {
            tag: r.tag,
            agent: Some(r.agent.clone()),
            _port: r.port,
            remote: None,
            latch: Latch::new(None),
            side: None,
            connected: false,
            console: false,
            _link: None,
            channel: None,
            dialog: None,
            answered_at: Some(r.answered_at),
        });
        self.leg_events = Some(r.events);
        self.leg_sock = Some(sock);
        self.transfer = Some(Transfer {
            key: Some(r.key),
            connected: false,
            passed: false,
        });
        self.last_pop = r.pop;
        self.resumed_agent = Some(ResumedAgent {
            agent: r.agent,
            queue: r.queue,
            answered_at: r.answered_at,
        });
    }

    /// Whether the call's transfer is a bridge taken over (the engine's transfer node,
    /// entered again, asks the ACD nothing).
    pub(super) fn resuming_bridge(&self) -> bool {
        self.resumed_agent.is_some() && self.transfer.is_some()
    }

    /// The agent's leg taken over answered its re-INVITE: the ACD holds the agent as talking
    /// with this call again, and the bridge is made. `false`: not such a leg.
    pub(super) fn resumed_leg_answered(&mut self) -> bool {
        let Some(r) = self.resumed_agent.take() else {
            return false;
        };
        let Some(key) = self.transfer.as_ref().and_then(|t| t.key) else {
            return false;
        };
        let pop = match &self.last_pop {
            Some(p) => p.clone(),
            None => ScreenPop {
                call_id: self.call.info().id.clone(),
                caller: self.call.info().caller.clone(),
                called: self.call.info().called.clone(),
                flow: self.call.flow().program.name.clone(),
                queue: r.queue.clone(),
                ..ScreenPop::default()
            },
        };
        self.last_pop = Some(pop.clone());
        if let Some(l) = &mut self.leg {
            l.answered_at = Some(r.answered_at);
        }
        let unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        tracing::info!(
            agent = %r.agent,
            unix_ms,
            "the agent's leg of a call taken over answered: bridged again"
        );
        let _ = self.services.acd.send(AcdMsg::Resumed {
            call: key,
            queue: r.queue,
            agent: r.agent,
            pop: Box::new(pop),
            to: self.queue_tx.clone(),
        });
        self.connect();
        // Silence to the caller (a second at most) until its RTP reaches this node: phones
        // that send where they last heard from (symmetric RTP, behind NAT) learn this node's
        // address; the caller's first packet relayed stops it.
        self.channel.set_remote(self.remote);
        self.channel
            .push(vec![std::sync::Arc::clone(super::silence()); 50], PRIME_SEQ);
        self.priming = true;
        true
    }

    /// The agent's leg taken over refused its re-INVITE (or did not answer): the agent is
    /// gone, so the call goes on as a bridge the agent dropped (the transfer node's `after`,
    /// else the end with a BYE to the caller). `false`: not such a leg.
    pub(super) fn resumed_leg_failed(&mut self, code: u16) -> bool {
        let Some(r) = self.resumed_agent.take() else {
            return false;
        };
        tracing::warn!(agent = %r.agent, code, "the agent's leg of a call taken over refused its re-INVITE: the bridge is dropped");
        self.drop_leg();
        if let Some(key) = self.transfer.take().and_then(|t| t.key) {
            let _ = self.services.acd.send(AcdMsg::ConversationOver(key));
        }
        self.feed(ivr_engine::Event::Transfer(
            ivr_engine::TransferUpdate::Answered {
                agent: Some(r.agent),
            },
        ));
        self.feed(ivr_engine::Event::Transfer(
            ivr_engine::TransferUpdate::AgentHungUp,
        ));
        true
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
