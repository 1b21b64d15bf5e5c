//! Taking over the calls of a node that died (docs/cluster.md, "Calls taken over"). Every
//! node watches `call_checkpoints` every [`POLL`]: rows whose owner is not up (its heartbeat
//! in `cluster_nodes` older than 5 s) are split between the nodes that are up — each claims
//! its share by a hash of the Call-ID, and after [`SHARE_FOR`] anyone claims what is left —
//! with `FOR UPDATE SKIP LOCKED`, so that no call is claimed twice
//! ([`ivr_data::checkpoints::claim`]). For each call claimed: an RTP port, a re-INVITE of the
//! caller in its dialog through the proxy ([`CoreMsg::Resume`]), and once the caller answers,
//! an ordinary call task whose engine resumes at the checkpoint's node with its variables
//! ([`crate::call::checkpoint::Resumed`]), its record continued. A caller who refuses the
//! re-INVITE (or never answers it) ends its record as failed. A call bridged to an agent's
//! SIP phone (its checkpoint holds the agent's leg) has that leg re-INVITEd too
//! ([`CoreMsg::ResumeLeg`], in the dialog the dead node placed) and bridged again by the call
//! task, which tells the ACD that the agent talks with it ([`AcdMsg::Resumed`]).
//!
//! A node starting gives up the checkpoints its earlier run left ([`checkpoints::release`]):
//! those calls are taken over like a dead node's.

use crate::Adoption;
use crate::acd_task::AcdMsg;
use crate::call::{self, checkpoint};
use crate::clock::local_now;
use crate::cluster::Cluster;
use crate::screen_pop::ScreenPop;
use crate::services::Services;
use crate::sip_task::{Adopted, CoreMsg};
use crate::transport::{Peer, Proto};
use ivr_data::checkpoints::{self, AgentLegFacts, Checkpoint};
use ivr_data::records::CallRecorder;
use ivr_engine::resume::{Saved, decode_variables};
use ivr_engine::{CallInfo, Channel, Flow};
use ivr_sip::sdp;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// How often a node looks for calls to take over.
pub const POLL: Duration = Duration::from_millis(250);

/// How long the live nodes keep to their shares before any of them takes what is left.
pub const SHARE_FOR: Duration = Duration::from_secs(2);

/// How far above the dead node's CSeq the re-INVITE's is (that node may have sent requests
/// in the dialog after its last checkpoint).
pub const CSEQ_STEP: u32 = 1_000;

/// Starts the takeover task of this node (its SIP at `sip`).
pub fn start(services: Services, cluster: Arc<Cluster>, sip: SocketAddr) {
    tokio::spawn(run(services, cluster, sip));
}

async fn run(services: Services, cluster: Arc<Cluster>, sip: SocketAddr) {
    let me = cluster.config.node.clone();
    let pool = cluster.pool().clone();
    match checkpoints::release(&pool, &me).await {
        Ok(0) => {}
        Ok(n) => tracing::warn!(
            calls = n,
            "calls of this node's last run are given up to the cluster to take over"
        ),
        Err(e) => tracing::warn!(error = %e, "cannot give up the last run's checkpoints"),
    }
    let mut seen: Option<Instant> = None;
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let orphans = match checkpoints::orphaned(&pool).await {
            Ok(n) => n,
            Err(e) => {
                tracing::debug!(error = %e, "cannot look for calls to take over");
                continue;
            }
        };
        if orphans == 0 {
            seen = None;
            continue;
        }
        let since = *seen.get_or_insert_with(Instant::now);
        let live = match checkpoints::live_nodes(&pool).await {
            Ok(l) => l,
            Err(_) => continue,
        };
        // A node that is not up itself (its heartbeats fail) takes nothing.
        let Some(i) = live.iter().position(|n| *n == me) else {
            continue;
        };
        let (part, parts) = if since.elapsed() >= SHARE_FOR {
            (0, 1)
        } else {
            (i, live.len())
        };
        let running = services.running.load(Ordering::Relaxed);
        let room = services.max_calls.saturating_sub(running);
        if room == 0 {
            continue;
        }
        let limit = i64::try_from(room).unwrap_or(checkpoints::MAX_CLAIM);
        let parts = i64::try_from(parts).unwrap_or(1);
        let part = i64::try_from(part).unwrap_or(0);
        match checkpoints::claim(&pool, &me, part, parts, limit).await {
            Ok((claimed, bad)) => {
                if bad > 0 {
                    tracing::warn!(rows = bad, "checkpoints that do not read were dropped");
                }
                if !claimed.is_empty() {
                    tracing::info!(
                        calls = claimed.len(),
                        orphans,
                        share = format!("{}/{parts}", part + 1),
                        "taking calls over from nodes that are down"
                    );
                }
                for c in claimed {
                    let (services, cluster) = (services.clone(), Arc::clone(&cluster));
                    tokio::spawn(async move { take_over(services, cluster, c, sip).await });
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot claim calls to take over"),
        }
    }
}

/// `HOST:PORT` of a SIP URI (`<sip:10.0.0.5:5060;lr>`, `sip:proxy`): 5060 without a port;
/// `None` when the host is not an IP address.
pub fn uri_addr(uri: &str) -> Option<SocketAddr> {
    let u = uri.trim().trim_start_matches('<');
    let u = u
        .strip_prefix("sip:")
        .or_else(|| u.strip_prefix("SIP:"))
        .unwrap_or(u);
    let u = u.rsplit_once('@').map_or(u, |(_, h)| h);
    let host = u.split([';', '>', '?']).next().unwrap_or("");
    if let Ok(a) = host.parse::<SocketAddr>() {
        return Some(a);
    }
    host.parse::<std::net::IpAddr>()
        .ok()
        .map(|ip| SocketAddr::new(ip, 5060))
}

/// Ends a claimed call that cannot be taken over: its record as failed (continued, so that
/// its `calls_in_progress` row goes), its checkpoint forgotten.
async fn give_up(
    services: &Services,
    cluster: &Cluster,
    c: &Checkpoint,
    flow: Option<Arc<Flow>>,
    why: &str,
) {
    tracing::warn!(call = %c.call_id, why, "a call of a dead node cannot be taken over: its record ends as failed");
    if let Some(a) = &c.agent_leg {
        // Its agent is free again (after its wrap-up).
        let _ = services.acd.send(AcdMsg::ConversationOver(a.key));
    }
    cluster
        .checkpoints
        .not_taken_over
        .fetch_add(1, Ordering::Relaxed);
    if let (Some(w), Some(flow)) = (services.writer.clone(), flow) {
        let info = info_of(c);
        CallRecorder::continued(w, flow, &info, c.started_at, c.answered_at, c.visit_seq)
            .unserved("failed", local_now());
    }
    let _ = checkpoints::forget(cluster.pool(), &c.sip_call_id).await;
}

fn info_of(c: &Checkpoint) -> CallInfo {
    CallInfo {
        id: c.call_id.clone(),
        caller: c.caller.clone(),
        called: c.called.clone(),
        channel: Channel::Sip,
        contact: Vec::new(),
    }
}

/// The agent's leg of a bridged call, ready to be re-INVITEd: what the call keeps, and the
/// core's command with the leg's events.
fn prepare_leg(
    services: &Services,
    cluster: &Cluster,
    a: &AgentLegFacts,
    sip: SocketAddr,
) -> Result<(checkpoint::ResumedLeg, CoreMsg), &'static str> {
    let law = checkpoint::law_of(&a.media.codec).ok_or("its codec is unknown")?;
    let addr = a
        .dialog
        .route_set
        .first()
        .and_then(|r| uri_addr(r))
        .or_else(|| cluster.config.sip_via.as_deref().and_then(uri_addr))
        .or_else(|| uri_addr(&a.dialog.remote_target))
        .ok_or("no address for the agent's phone")?;
    if addr.is_ipv4() != sip.is_ipv4() {
        return Err("its proxy's address family differs");
    }
    let port = services.ports.allocate().ok_or("no free RTP port")?;
    let mut dialog = checkpoint::dialog_of(&a.dialog);
    dialog.local_cseq = dialog.local_cseq.saturating_add(CSEQ_STEP);
    let peer = Peer {
        proto: Proto::Udp,
        addr,
        conn: 0,
    };
    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let resume = ivr_sip::ua::Resume {
        dialog,
        peer,
        port: port.port(),
        codec: (law, a.media.pt, a.media.event_pt),
    };
    let pop = a
        .pop
        .as_deref()
        .and_then(|p| serde_json::from_str::<ScreenPop>(p).ok());
    Ok((
        checkpoint::ResumedLeg {
            tag: a.dialog.local_tag.clone(),
            key: a.key,
            agent: a.agent.clone(),
            queue: a.queue.clone(),
            pop,
            answered_at: a.answered_at,
            port,
            events: events_rx,
        },
        CoreMsg::ResumeLeg {
            resume: Box::new(resume),
            events: events_tx,
        },
    ))
}

/// Takes one claimed call over.
async fn take_over(services: Services, cluster: Arc<Cluster>, c: Checkpoint, sip: SocketAddr) {
    if checkpoints::recorded(cluster.pool(), &c.call_id, c.started_at)
        .await
        .unwrap_or(false)
    {
        // Ended on its node after all (the row's deletion was lost with the node).
        let _ = checkpoints::forget(cluster.pool(), &c.sip_call_id).await;
        return;
    }
    let deployment = services.live.current();
    // The same-named flow of the live version (the dead node may have run another version).
    let flow = deployment.flows.get(&c.flow).cloned();
    let Some(flow) = flow else {
        return give_up(&services, &cluster, &c, None, "its flow is not served here").await;
    };
    if flow.program.version != c.flow_version {
        tracing::info!(call = %c.call_id, flow = %c.flow, "taken over on another version of its flow");
    }
    let Some(law) = checkpoint::law_of(&c.media.codec) else {
        return give_up(&services, &cluster, &c, Some(flow), "its codec is unknown").await;
    };
    let peer = c
        .dialog
        .route_set
        .first()
        .and_then(|r| uri_addr(r))
        .or_else(|| cluster.config.sip_via.as_deref().and_then(uri_addr))
        .or_else(|| uri_addr(&c.dialog.remote_target));
    let Some(addr) = peer else {
        return give_up(
            &services,
            &cluster,
            &c,
            Some(flow),
            "no address for its caller",
        )
        .await;
    };
    if addr.is_ipv4() != sip.is_ipv4() {
        return give_up(
            &services,
            &cluster,
            &c,
            Some(flow),
            "its proxy's address family differs",
        )
        .await;
    }
    let Some(port) = services.ports.allocate() else {
        return give_up(&services, &cluster, &c, Some(flow), "no free RTP port").await;
    };
    let peer = Peer {
        proto: Proto::Udp,
        addr,
        conn: 0,
    };
    let mut dialog = checkpoint::dialog_of(&c.dialog);
    dialog.local_cseq = dialog.local_cseq.saturating_add(CSEQ_STEP);
    let mut facts = c.dialog.clone();
    // The re-INVITE takes the next CSeq; a later takeover goes above it again.
    facts.local_cseq = dialog.local_cseq.saturating_add(1);
    // A bridged call: its agent's leg is re-INVITEd too (else the caller queues again).
    let (leg, leg_msg) = match c
        .agent_leg
        .as_ref()
        .map(|a| prepare_leg(&services, &cluster, a, sip))
    {
        Some(Ok((leg, msg))) => (Some(leg), Some(msg)),
        Some(Err(why)) => {
            tracing::warn!(call = %c.call_id, why, "the agent's leg of a call taken over cannot be: the caller queues again");
            if let Some(a) = &c.agent_leg {
                let _ = services.acd.send(AcdMsg::ConversationOver(a.key));
            }
            (None, None)
        }
        None => (None, None),
    };
    let leg_end = leg.as_ref().map(|l| (l.tag.clone(), l.key));
    let agent = leg.as_ref().map_or("-", |l| l.agent.as_str()).to_string();
    let info = info_of(&c);
    let variables = serde_json::from_str(&c.variables)
        .map(|j| decode_variables(&j))
        .unwrap_or_default();
    let nodes = if c.nodes.is_empty() {
        cluster.config.node.clone()
    } else {
        c.nodes.clone()
    };
    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let span = tracing::info_span!("call", id = %info.id);
    let port_no = port.port();
    let unserved = {
        let failed = Arc::clone(&cluster.checkpoints.not_taken_over);
        let (writer, flow, info, pool) = (
            services.writer.clone(),
            Arc::clone(&flow),
            info.clone(),
            cluster.pool().clone(),
        );
        let (started, answered, seq, key) = (
            c.started_at,
            c.answered_at,
            c.visit_seq,
            c.sip_call_id.clone(),
        );
        let (core, acd) = (services.core.clone(), services.acd.clone());
        move |outcome: &'static str| {
            failed.fetch_add(1, Ordering::Relaxed);
            // The caller is gone: the agent's leg is hung up and the agent wraps up.
            if let Some((tag, key)) = leg_end {
                let _ = core.send(CoreMsg::EndLeg { tag });
                let _ = acd.send(AcdMsg::ConversationOver(key));
            }
            if let Some(w) = writer {
                CallRecorder::continued(w, flow, &info, started, answered, seq)
                    .unserved(outcome, local_now());
            }
            tokio::spawn(async move {
                let _ = checkpoints::forget(&pool, &key).await;
            });
        }
    };
    tracing::info!(
        call = %c.call_id,
        node = %c.node,
        nodes = %nodes,
        from = %c.owner,
        agent = %agent,
        "re-INVITE of a call taken over"
    );
    let incoming = call::Incoming {
        info,
        flow,
        deployment,
        port,
        // Replaced by the caller's answer.
        negotiated: sdp::Negotiated {
            index: 0,
            law,
            pt: c.media.pt,
            event_pt: c.media.event_pt,
            remote: None,
            direction: sdp::Direction::SendRecv,
            srtp: None,
        },
        events: events_rx,
        tag: dialog.local_tag.clone(),
        peer: Some(peer),
        notes: None,
        cluster: Some(Box::new(checkpoint::Clustered {
            sip_call_id: c.sip_call_id.clone(),
            dialog: facts,
            nodes,
            resume: Some(checkpoint::Resumed {
                saved: Saved {
                    node: c.node.clone(),
                    language: c.language.clone(),
                    variables,
                    served: c.served.clone(),
                },
                started_at: c.started_at,
                answered_at: c.answered_at,
                visit_seq: c.visit_seq,
                leg,
            }),
        })),
    };
    let adopted = Adopted(Box::new(Adoption {
        incoming: Box::new(incoming),
        events: events_tx,
        span,
        unserved: Box::new(unserved),
    }));
    let _ = services.core.send(CoreMsg::Resume {
        resume: Box::new(ivr_sip::ua::Resume {
            dialog,
            peer,
            port: port_no,
            codec: (law, c.media.pt, c.media.event_pt),
        }),
        adopted,
    });
    if let Some(m) = leg_msg {
        let _ = services.core.send(m);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_of_uris() {
        let a = |s: &str| uri_addr(s).map(|a| a.to_string());
        assert_eq!(
            a("<sip:127.0.0.1:35060;lr;ftag=x>").as_deref(),
            Some("127.0.0.1:35060")
        );
        assert_eq!(a("sip:10.0.0.5").as_deref(), Some("10.0.0.5:5060"));
        assert_eq!(
            a("sip:alice@10.0.0.5:5070;transport=udp").as_deref(),
            Some("10.0.0.5:5070")
        );
        assert_eq!(a("sip:proxy.example.com"), None);
        assert_eq!(a("<sip:[::1]:5060;lr>").as_deref(), Some("[::1]:5060"));
    }
}
