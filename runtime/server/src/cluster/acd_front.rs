//! The ACD of a cluster node (docs/cluster.md): calls and agents talk to an [`AcdHandle`] as
//! on a single server, and this front decides where it goes. On the node that leads, to the
//! node's own [`crate::acd_task::AcdTask`], the only live ACD of the cluster, which also takes
//! the other nodes' messages from the bus and sends their calls' events back. On the others,
//! over the bus ([`super::bus`]) to the leader; the events of this node's calls come back by
//! their key (keys are random 64-bit numbers, unique in the cluster for all practical
//! purposes) and go to the call's channel kept here; questions (an agent's transfer, away, a
//! consultation) are answered within a timeout. The leader writes its ACD's state after every
//! change with its epoch ([`ivr_data::cluster_acd::write_state`]); a node that becomes leader
//! rebuilds its ACD from it and the registrations; pages of a node that does not lead read it.
//! Nothing here is on the media path: only queue operations cross nodes.

use super::Cluster;
use super::bus::{self, Bus, CHANGED_CHANNEL, Envelope, LEADER_CHANNEL, Wire, WireEvent};
use super::leadership::Role;
use crate::acd_task::{
    AcdChanges, AcdExport, AcdHandle, AcdMsg, AcdSnapshot, QueueEvent, Rebuild, TransferTo,
};
use crate::pass_refusal::PassRefusal;
use ivr_acd::{AcdError, CallKey, Contact, TransferRefused};
use ivr_data::cluster::PgPool;
use ivr_data::cluster_acd::{self, RegistrationRow};
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

/// How long an agent's transfer or consultation may take to be decided across nodes (a
/// transfer to a number rings up to 30 s).
pub const SLOW_ANSWER: Duration = Duration::from_secs(40);

/// How long other questions may take.
pub const QUICK_ANSWER: Duration = Duration::from_secs(3);

/// The most calls of this node known to the front (beyond: refused as without agents).
pub const MAX_CALLS: usize = 100_000;

/// How often the front forgets ended calls and, leading, the calls of nodes that are down.
const PRUNE_EVERY: Duration = Duration::from_secs(2);

/// How long the writes after a change are held back, so that a burst is written once.
const WRITE_PAUSE: Duration = Duration::from_millis(30);

/// Registrations waiting to be written (more are logged and dropped).
const REGISTRATION_QUEUE: usize = 4_096;

type Origins = Arc<Mutex<HashMap<CallKey, String>>>;

/// While leading: the calls talking with an agent, as of the last state written.
type Talking = Arc<Mutex<std::collections::HashSet<CallKey>>>;

/// How long the leader keeps a call talking with an agent after the call's node is shown
/// down, so that the node taking the call over finds its agent still talking with it
/// ([`AcdMsg::Resumed`]): the takeover's claim, then up to 32 s for the re-INVITEs.
pub const TALKING_GRACE: Duration = Duration::from_secs(45);

/// On a node that does not lead: the leader's snapshot as last read (none: read it when asked).
type Cached = Arc<Mutex<Option<(std::time::Instant, AcdSnapshot)>>>;

/// A snapshot older than this is read again when asked (a "changed" message may be lost while
/// the listening connection is re-established).
const CACHE_FOR: Duration = Duration::from_secs(5);

/// Starts the front of node `cluster` before its `local` ACD task: the handle and the
/// changes every part of the node uses from then on.
pub fn start(
    cluster: Arc<Cluster>,
    local: AcdHandle,
    local_changes: AcdChanges,
) -> (AcdHandle, AcdChanges) {
    let pool = cluster.pool.clone();
    let node = cluster.config.node.clone();
    let bus = Bus::start(pool.clone(), node.clone());
    let (in_tx, in_rx) = mpsc::channel(bus::IN_QUEUE);
    tokio::spawn(bus::listen(
        cluster.config.database.clone(),
        node.clone(),
        in_tx,
    ));
    let (tx, rx) = mpsc::unbounded_channel();
    let (changes, changes_rx) = watch::channel(0u64);
    let origins: Origins = Arc::default();
    let talking: Talking = Arc::default();
    let cached: Cached = Arc::default();
    let (reread, reread_rx) = watch::channel(());
    tokio::spawn(read_snapshots(
        pool.clone(),
        Arc::clone(&cached),
        reread_rx,
        changes.clone(),
    ));
    let (reg_tx, reg_rx) = mpsc::channel(REGISTRATION_QUEUE);
    tokio::spawn(write_registrations(pool.clone(), node.clone(), reg_rx));
    tokio::spawn(write_state(
        Arc::clone(&cluster),
        Arc::clone(&bus),
        local.clone(),
        local_changes,
        changes.clone(),
        Arc::clone(&origins),
        Arc::clone(&talking),
    ));
    let front = Front {
        own: bus::node_channel(&node),
        node,
        cluster,
        bus,
        pool,
        local,
        epoch: None,
        calls: HashMap::new(),
        origins,
        talking,
        held: HashMap::new(),
        cached,
        reread,
        registrations: reg_tx,
    };
    tokio::spawn(front.run(rx, in_rx));
    (tx, changes_rx)
}

struct Front {
    node: String,
    own: String,
    cluster: Arc<Cluster>,
    bus: Arc<Bus>,
    pool: PgPool,
    local: AcdHandle,
    /// The epoch this node leads with, if it leads.
    epoch: Option<i64>,
    /// Where the events of this node's calls go.
    calls: HashMap<CallKey, mpsc::UnboundedSender<QueueEvent>>,
    /// While leading: the node of each other node's call.
    origins: Origins,
    /// While leading: the calls talking with an agent.
    talking: Talking,
    /// While leading: calls talking with an agent whose node is down, since when (kept
    /// [`TALKING_GRACE`] for a takeover).
    held: HashMap<CallKey, std::time::Instant>,
    /// Not leading: the leader's last snapshot, read again after each of its changes.
    cached: Cached,
    /// Asks for the snapshot to be read again.
    reread: watch::Sender<()>,
    registrations: mpsc::Sender<(String, Contact, Duration)>,
}

impl Front {
    async fn run(
        mut self,
        mut rx: mpsc::UnboundedReceiver<AcdMsg>,
        mut inbox: mpsc::Receiver<(String, Envelope)>,
    ) {
        let mut role = self.cluster.watch_role();
        let mut prune = tokio::time::interval(PRUNE_EVERY);
        let first = *role.borrow_and_update();
        self.on_role(first).await;
        loop {
            tokio::select! {
                m = rx.recv() => match m {
                    Some(m) => self.on_local(m),
                    None => return,
                },
                Some((channel, env)) = inbox.recv() => self.on_bus(&channel, env),
                r = role.changed() => {
                    if r.is_err() {
                        return;
                    }
                    let now = *role.borrow_and_update();
                    self.on_role(now).await;
                }
                _ = prune.tick() => self.prune(),
            }
        }
    }

    /// This node starts or stops leading.
    async fn on_role(&mut self, role: Role) {
        match role {
            Role::Leader { epoch } if self.epoch != Some(epoch) => {
                self.epoch = Some(epoch);
                let started = std::time::Instant::now();
                let rebuild = self.rebuild().await;
                let n = rebuild.calls.len();
                let _ = self.local.send(AcdMsg::Rebuild(Box::new(rebuild)));
                tracing::info!(
                    epoch,
                    calls = n,
                    ms = started.elapsed().as_millis() as u64,
                    "leading the cluster's ACD: rebuilt from the database"
                );
            }
            Role::Leader { .. } => {}
            Role::Follower => {
                *self.cached.lock().unwrap_or_else(|e| e.into_inner()) = None;
                if self.epoch.take().is_some() {
                    // A deposed leader's ACD forgets everything: the new one has it.
                    let _ = self.local.send(AcdMsg::Rebuild(Box::default()));
                    self.origins
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .clear();
                }
            }
        }
    }

    /// What the new leader's ACD starts from: the registrations that hold, the last leader's
    /// calls (but those of the last leader itself: they died with it) and away agents.
    async fn rebuild(&mut self) -> Rebuild {
        let within = Duration::from_secs(3);
        let regs = tokio::time::timeout(within, cluster_acd::registrations(&self.pool)).await;
        let registrations = match regs {
            Ok(Ok(rows)) => rows.into_iter().filter_map(registration_of).collect(),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "rebuilding the ACD: registrations not read");
                Vec::new()
            }
            Err(_) => Vec::new(),
        };
        let state = match tokio::time::timeout(within, cluster_acd::read_state(&self.pool)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "rebuilding the ACD: its state not read");
                None
            }
            Err(_) => None,
        };
        let mut rebuild = Rebuild {
            registrations,
            ..Rebuild::default()
        };
        let Some(state) = state else { return rebuild };
        let export: AcdExport = match serde_json::from_str(&state.state) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, "rebuilding the ACD: its state not understood");
                return rebuild;
            }
        };
        rebuild.away = export.away;
        rebuild.wrap_up = export.wrap_up;
        let mut dropped = 0usize;
        for c in export.calls {
            let to = if c.node == self.node {
                self.calls.get(&c.key).cloned()
            } else if c.node.is_empty() || (c.node == state.node && c.talking.is_none()) {
                None
            } else {
                // A call of the last leader's talking with an agent stays (held like any call
                // of a node that is down): the node that takes it over says so.
                if c.talking.is_some() {
                    self.talking
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(c.key);
                }
                self.origins
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(c.key, c.node.clone());
                Some(forwarder(Arc::clone(&self.bus), c.node.clone(), c.key))
            };
            match to {
                Some(to) => rebuild.calls.push((c, to)),
                None => dropped += 1,
            }
        }
        if dropped > 0 {
            tracing::info!(
                dropped,
                node = %state.node,
                "rebuilding the ACD: the calls of the last leader are gone"
            );
        }
        rebuild
    }

    /// Forgets this node's calls that ended; while leading, takes the calls of nodes that are
    /// down out of the ACD (their callers are gone with them: offering them would only ring
    /// agents for nobody).
    fn prune(&mut self) {
        self.calls.retain(|_, to| !to.is_closed());
        if !self.leads() {
            return;
        }
        let gone: Vec<CallKey> = {
            // Origins first, then talking: the order `write_state` takes them in.
            let mut o = self.origins.lock().unwrap_or_else(|e| e.into_inner());
            let talking = self.talking.lock().unwrap_or_else(|e| e.into_inner());
            let down: Vec<CallKey> = o
                .iter()
                .filter(|(_, node)| self.cluster.node_up(node) == Some(false))
                .map(|(k, _)| *k)
                .collect();
            self.held.retain(|k, _| down.contains(k));
            let mut gone = Vec::with_capacity(down.len());
            for k in down {
                // A call talking with an agent may be taken over by another node: its agent
                // stays with it a while.
                if talking.contains(&k) {
                    let since = *self.held.entry(k).or_insert_with(std::time::Instant::now);
                    if since.elapsed() < TALKING_GRACE {
                        continue;
                    }
                }
                self.held.remove(&k);
                o.remove(&k);
                gone.push(k);
            }
            gone
        };
        if !gone.is_empty() {
            tracing::warn!(
                calls = gone.len(),
                "calls of a node that is down leave the ACD"
            );
        }
        for call in gone {
            let _ = self
                .local
                .send(AcdMsg::Leave(call, crate::acd_task::LeaveReason::Hangup));
        }
    }

    fn leads(&self) -> bool {
        self.epoch.is_some()
    }

    fn keep(&mut self, call: CallKey, to: &mpsc::UnboundedSender<QueueEvent>) -> bool {
        if self.calls.len() >= MAX_CALLS && !self.calls.contains_key(&call) {
            tracing::warn!("ACD front: too many calls; one refused");
            return false;
        }
        self.calls.insert(call, to.clone());
        true
    }

    /// A message of this node's calls, agents or pages.
    fn on_local(&mut self, m: AcdMsg) {
        match &m {
            AcdMsg::Enqueue { call, to, .. }
            | AcdMsg::Transfer { call, to, .. }
            | AcdMsg::Consult { call, to, .. }
            | AcdMsg::PhoneConsult { call, to, .. }
            | AcdMsg::Redirect { call, to }
            | AcdMsg::KeepCallback { call, to }
            | AcdMsg::Resumed { call, to, .. }
                if !self.keep(*call, to) =>
            {
                let _ = to.send(QueueEvent::NoAgents);
                return;
            }
            AcdMsg::Leave(call, _) | AcdMsg::ConversationOver(call) => {
                self.calls.remove(call);
            }
            AcdMsg::Registration {
                agent,
                contact,
                expires,
                ..
            } => {
                let r = (agent.clone(), contact.clone(), *expires);
                if self.registrations.try_send(r).is_err() {
                    tracing::warn!(agent = %agent, "ACD front: a registration was not written");
                }
            }
            _ => {}
        }
        if let AcdMsg::Transfer { from, .. } = &m {
            self.calls.remove(from);
        }
        if let AcdMsg::Resumed { call, .. } = &m {
            // Taken over by this node: no longer a call of a node that is down.
            self.origins
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(call);
            self.held.remove(call);
        }
        match m {
            m @ (AcdMsg::Reconfigure(_) | AcdMsg::Export(_) | AcdMsg::Rebuild(_)) => {
                let _ = self.local.send(m);
            }
            AcdMsg::Status(reply) if !self.leads() => {
                let cached = self
                    .cached
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .as_ref()
                    .filter(|(at, _)| at.elapsed() < CACHE_FOR)
                    .map(|(_, s)| s.clone());
                if let Some(snapshot) = cached {
                    let _ = reply.send(snapshot);
                    return;
                }
                let pool = self.pool.clone();
                let local = self.local.clone();
                tokio::spawn(async move { status_of_leader(pool, local, reply).await });
            }
            m if self.leads() => {
                let _ = self.local.send(m);
            }
            m => self.forward_to_leader(m),
        }
    }

    /// A message of this node's for the leader, over the bus.
    fn forward_to_leader(&mut self, m: AcdMsg) {
        let bus = Arc::clone(&self.bus);
        let send = |w: Wire| bus.send(LEADER_CHANNEL, w);
        match m {
            AcdMsg::Enqueue {
                call,
                queue,
                skills,
                priority,
                routing,
                pop,
                to,
            } => {
                let w = Wire::Enqueue {
                    call,
                    queue,
                    skills,
                    priority,
                    routing,
                    pop,
                };
                if !send(w) {
                    self.calls.remove(&call);
                    let _ = to.send(QueueEvent::NoAgents);
                }
            }
            AcdMsg::Transfer {
                from,
                call,
                target,
                pop,
                to,
            } => {
                let refused = refusal(&target);
                if !send(Wire::Transfer {
                    from,
                    call,
                    target,
                    pop,
                }) {
                    self.calls.remove(&call);
                    let _ = to.send(QueueEvent::Passed(Err(refused)));
                }
            }
            AcdMsg::Consult {
                call,
                target,
                pop,
                to,
            } => {
                let refused = refusal(&target);
                if !send(Wire::Consult { call, target, pop }) {
                    self.calls.remove(&call);
                    let _ = to.send(QueueEvent::Passed(Err(refused)));
                }
            }
            AcdMsg::Redirect { call, .. } => {
                send(Wire::Redirect { call });
            }
            AcdMsg::Resumed {
                call,
                queue,
                agent,
                pop,
                ..
            } => {
                send(Wire::Resumed {
                    call,
                    queue,
                    agent,
                    pop,
                });
            }
            AcdMsg::KeepCallback { call, .. } => {
                send(Wire::KeepCallback { call });
            }
            AcdMsg::Leave(call, why) => {
                send(Wire::Leave { call, why });
            }
            AcdMsg::Answered { call, agent } => {
                send(Wire::Answered { call, agent });
            }
            AcdMsg::Declined(call, why) => {
                send(Wire::Declined { call, why });
            }
            AcdMsg::ConversationOver(call) => {
                send(Wire::Over { call });
            }
            AcdMsg::Registration {
                agent,
                contact,
                expires,
                ..
            } => {
                send(Wire::Registration {
                    agent,
                    contact,
                    expires_ms: u64::try_from(expires.as_millis()).unwrap_or(u64::MAX),
                });
            }
            AcdMsg::AgentTransfer {
                agent,
                target,
                note,
                reply,
            } => {
                tokio::spawn(async move {
                    let a = bus
                        .ask(
                            LEADER_CHANNEL,
                            |id| Wire::AgentTransfer {
                                id,
                                agent,
                                target,
                                note,
                            },
                            SLOW_ANSWER,
                        )
                        .await;
                    let _ = reply.send(decode(a).unwrap_or(Err(PassRefusal::Unanswered)));
                });
            }
            AcdMsg::AgentConsult {
                agent,
                action,
                reply,
            } => {
                tokio::spawn(async move {
                    let a = bus
                        .ask(
                            LEADER_CHANNEL,
                            |id| Wire::AgentConsult { id, agent, action },
                            SLOW_ANSWER,
                        )
                        .await;
                    let _ = reply.send(decode(a).unwrap_or(Err(PassRefusal::Unanswered)));
                });
            }
            AcdMsg::PhoneConsult {
                by,
                call,
                target,
                reply,
                ..
            } => {
                let refused = refusal(&target);
                tokio::spawn(async move {
                    let a = bus
                        .ask(
                            LEADER_CHANNEL,
                            |id| Wire::PhoneConsult {
                                id,
                                by,
                                call,
                                target,
                            },
                            QUICK_ANSWER,
                        )
                        .await;
                    let _ = reply.send(decode(a).unwrap_or(Err(refused)));
                });
            }
            AcdMsg::Away { agent, away, reply } => {
                tokio::spawn(async move {
                    let who = agent.clone();
                    let a = bus
                        .ask(
                            LEADER_CHANNEL,
                            |id| Wire::Away { id, agent, away },
                            QUICK_ANSWER,
                        )
                        .await;
                    if let Some(reply) = reply {
                        let _ = reply.send(decode(a).unwrap_or(Err(AcdError::NotLoggedIn(who))));
                    }
                });
            }
            // Answered locally (`on_local`).
            AcdMsg::Status(_) | AcdMsg::Reconfigure(_) | AcdMsg::Export(_) | AcdMsg::Rebuild(_) => {
            }
        }
    }

    /// A message from the bus.
    fn on_bus(&mut self, channel: &str, env: Envelope) {
        if channel == LEADER_CHANNEL {
            if self.leads() {
                self.take_from_node(env.n, env.w);
            }
            return;
        }
        if channel == CHANGED_CHANNEL {
            // The pages hear of it once the new snapshot is read.
            if !self.leads() {
                self.reread.send_replace(());
            }
            return;
        }
        if channel != self.own {
            return;
        }
        let from = env.n;
        match env.w {
            Wire::Reply { id, a } => self.bus.answered(id, a),
            Wire::Event { call, ev } => {
                let Some(to) = self.calls.get(&call) else {
                    // A call this node no longer has (it ended, or the node restarted): the
                    // leader's ACD lets it go.
                    if !matches!(ev, WireEvent::NoAgents | WireEvent::Cancel { .. }) {
                        self.bus.send(
                            LEADER_CHANNEL,
                            Wire::Leave {
                                call,
                                why: crate::acd_task::LeaveReason::Hangup,
                            },
                        );
                    }
                    return;
                };
                let ev = match ev {
                    WireEvent::Offer {
                        agent,
                        contact,
                        waited,
                    } => QueueEvent::Offer {
                        agent,
                        contact,
                        conn: 0,
                        waited,
                    },
                    WireEvent::Cancel { agent } => QueueEvent::Cancel { agent },
                    WireEvent::Position { n } => QueueEvent::Position(n),
                    WireEvent::NoAgents => QueueEvent::NoAgents,
                    WireEvent::Connected => QueueEvent::Connected,
                    WireEvent::Passed { r } => QueueEvent::Passed(r),
                };
                let gone = matches!(ev, QueueEvent::NoAgents);
                let _ = to.send(ev);
                if gone {
                    self.calls.remove(&call);
                }
            }
            Wire::PassOn {
                id,
                call,
                by,
                target,
                note,
            } => {
                let (reply, rx) = oneshot::channel();
                let ask = QueueEvent::PassOn {
                    by,
                    target,
                    note,
                    reply,
                };
                self.ask_call(call, ask, rx, from, id);
            }
            Wire::AskConsult {
                id,
                call,
                by,
                action,
            } => {
                let (reply, rx) = oneshot::channel();
                let ask = QueueEvent::Consult { by, action, reply };
                self.ask_call(call, ask, rx, from, id);
            }
            _ => {}
        }
    }

    /// Hands a question to this node's call and its answer back to node `to`.
    fn ask_call(
        &self,
        call: CallKey,
        ask: QueueEvent,
        rx: oneshot::Receiver<Result<(), PassRefusal>>,
        to: String,
        id: u64,
    ) {
        let sent = self.calls.get(&call).is_some_and(|c| c.send(ask).is_ok());
        let bus = Arc::clone(&self.bus);
        if !sent {
            bus.reply(&to, id, Err::<(), _>(PassRefusal::NotConnected));
            return;
        }
        tokio::spawn(async move {
            let a = tokio::time::timeout(SLOW_ANSWER, rx)
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or(Err(PassRefusal::Unanswered));
            bus.reply(&to, id, a);
        });
    }

    /// The leader takes a message of node `node`'s.
    fn take_from_node(&mut self, node: String, w: Wire) {
        let fwd = |call: CallKey| forwarder(Arc::clone(&self.bus), node.clone(), call);
        let remember = |call: CallKey| {
            self.origins
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(call, node.clone());
        };
        let msg = match w {
            Wire::Enqueue {
                call,
                queue,
                skills,
                priority,
                routing,
                pop,
            } => {
                remember(call);
                AcdMsg::Enqueue {
                    call,
                    queue,
                    skills,
                    priority,
                    routing,
                    pop,
                    to: fwd(call),
                }
            }
            Wire::Transfer {
                from,
                call,
                target,
                pop,
            } => {
                remember(call);
                AcdMsg::Transfer {
                    from,
                    call,
                    target,
                    pop,
                    to: fwd(call),
                }
            }
            Wire::Consult { call, target, pop } => {
                remember(call);
                AcdMsg::Consult {
                    call,
                    target,
                    pop,
                    to: fwd(call),
                }
            }
            Wire::Redirect { call } => AcdMsg::Redirect {
                call,
                to: fwd(call),
            },
            Wire::Resumed {
                call,
                queue,
                agent,
                pop,
            } => {
                // The call is this node's now: no longer one of a node that is down.
                remember(call);
                AcdMsg::Resumed {
                    call,
                    queue,
                    agent,
                    pop,
                    to: fwd(call),
                }
            }
            Wire::KeepCallback { call } => AcdMsg::KeepCallback {
                call,
                to: fwd(call),
            },
            Wire::Leave { call, why } => AcdMsg::Leave(call, why),
            Wire::Answered { call, agent } => AcdMsg::Answered { call, agent },
            Wire::Declined { call, why } => AcdMsg::Declined(call, why),
            Wire::Over { call } => AcdMsg::ConversationOver(call),
            Wire::Registration {
                agent,
                contact,
                expires_ms,
            } => AcdMsg::Registration {
                agent,
                contact,
                conn: 0,
                // The registrar grants an hour at most; a day bounds what a node may say.
                expires: Duration::from_millis(expires_ms.min(86_400_000)),
            },
            Wire::AgentTransfer {
                id,
                agent,
                target,
                note,
            } => {
                let (reply, rx) = oneshot::channel();
                self.answer(node.clone(), id, rx, SLOW_ANSWER, PassRefusal::Unanswered);
                AcdMsg::AgentTransfer {
                    agent,
                    target,
                    note,
                    reply,
                }
            }
            Wire::AgentConsult { id, agent, action } => {
                let (reply, rx) = oneshot::channel();
                self.answer(node.clone(), id, rx, SLOW_ANSWER, PassRefusal::Unanswered);
                AcdMsg::AgentConsult {
                    agent,
                    action,
                    reply,
                }
            }
            Wire::PhoneConsult {
                id,
                by,
                call,
                target,
            } => {
                remember(call);
                let (reply, rx) = oneshot::channel();
                self.answer(node.clone(), id, rx, QUICK_ANSWER, refusal(&target));
                AcdMsg::PhoneConsult {
                    by,
                    call,
                    target,
                    to: fwd(call),
                    reply,
                }
            }
            Wire::Away { id, agent, away } => {
                let (reply, rx) = oneshot::channel();
                let who = AcdError::NotLoggedIn(agent.clone());
                self.answer(node.clone(), id, rx, QUICK_ANSWER, who);
                AcdMsg::Away {
                    agent,
                    away,
                    reply: Some(reply),
                }
            }
            _ => return,
        };
        let _ = self.local.send(msg);
    }

    /// Sends the answer of the leader's ACD to question `id` of node `to`.
    fn answer<T, E>(
        &self,
        to: String,
        id: u64,
        rx: oneshot::Receiver<Result<T, E>>,
        within: Duration,
        otherwise: E,
    ) where
        T: serde::Serialize + Send + 'static,
        E: serde::Serialize + Send + 'static,
    {
        let bus = Arc::clone(&self.bus);
        tokio::spawn(async move {
            let a = tokio::time::timeout(within, rx)
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or(Err(otherwise));
            bus.reply(&to, id, a);
        });
    }
}

/// The refusal a question about `target` gets when the leader does not answer.
fn refusal(target: &TransferTo) -> TransferRefused {
    match target {
        TransferTo::Queue(q) => TransferRefused::NoAgents(q.clone()),
        TransferTo::Agent(a) => TransferRefused::AgentOffline(a.clone()),
    }
}

fn decode<T: DeserializeOwned>(a: Option<serde_json::Value>) -> Option<T> {
    a.and_then(|v| serde_json::from_value(v).ok())
}

fn registration_of(r: RegistrationRow) -> Option<(String, Contact, Duration)> {
    let addr = r.addr.parse().ok()?;
    let left = Duration::from_millis(u64::try_from(r.remaining_ms).ok()?.min(86_400_000));
    Some((
        r.agent,
        Contact {
            uri: r.contact,
            addr,
            tcp: r.transport == "tcp",
        },
        left,
    ))
}

/// The leader's channel for the events of `node`'s call `call`: each event goes over the
/// bus; a question waits for the node's answer.
fn forwarder(bus: Arc<Bus>, node: String, call: CallKey) -> mpsc::UnboundedSender<QueueEvent> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let channel = bus::node_channel(&node);
        while let Some(ev) = rx.recv().await {
            let ev = match ev {
                QueueEvent::Offer {
                    agent,
                    contact,
                    waited,
                    ..
                } => WireEvent::Offer {
                    agent,
                    contact,
                    waited,
                },
                QueueEvent::Cancel { agent } => WireEvent::Cancel { agent },
                QueueEvent::Position(n) => WireEvent::Position { n },
                QueueEvent::NoAgents => WireEvent::NoAgents,
                QueueEvent::Connected => WireEvent::Connected,
                QueueEvent::Passed(r) => WireEvent::Passed { r },
                QueueEvent::PassOn {
                    by,
                    target,
                    note,
                    reply,
                } => {
                    let bus = Arc::clone(&bus);
                    let channel = channel.clone();
                    tokio::spawn(async move {
                        let a = bus
                            .ask(
                                &channel,
                                |id| Wire::PassOn {
                                    id,
                                    call,
                                    by,
                                    target,
                                    note,
                                },
                                SLOW_ANSWER,
                            )
                            .await;
                        let _ = reply.send(decode(a).unwrap_or(Err(PassRefusal::Unanswered)));
                    });
                    continue;
                }
                QueueEvent::Consult { by, action, reply } => {
                    let bus = Arc::clone(&bus);
                    let channel = channel.clone();
                    tokio::spawn(async move {
                        let a = bus
                            .ask(
                                &channel,
                                |id| Wire::AskConsult {
                                    id,
                                    call,
                                    by,
                                    action,
                                },
                                SLOW_ANSWER,
                            )
                            .await;
                        let _ = reply.send(decode(a).unwrap_or(Err(PassRefusal::Unanswered)));
                    });
                    continue;
                }
            };
            bus.send(&channel, Wire::Event { call, ev });
        }
    });
    tx
}

/// Writes this node's agents' registrations to the shared table, in order.
async fn write_registrations(
    pool: PgPool,
    node: String,
    mut rx: mpsc::Receiver<(String, Contact, Duration)>,
) {
    while let Some((agent, contact, expires)) = rx.recv().await {
        let done = if expires.is_zero() {
            cluster_acd::unregister(&pool, &agent, &contact.uri).await
        } else {
            let row = RegistrationRow {
                agent: agent.clone(),
                contact: contact.uri.clone(),
                addr: contact.addr.to_string(),
                transport: if contact.tcp { "tcp" } else { "udp" }.into(),
                node: node.clone(),
                remaining_ms: 0,
            };
            cluster_acd::register(&pool, &row, expires).await
        };
        if let Err(e) = done {
            tracing::warn!(agent = %agent, error = %e, "the registration was not written to the shared database");
        }
    }
}

/// While this node leads: after each change of its ACD, writes its state (with the epoch,
/// refused once another node leads) and tells the other nodes' pages; always: tells this
/// node's pages.
async fn write_state(
    cluster: Arc<Cluster>,
    bus: Arc<Bus>,
    local: AcdHandle,
    mut local_changes: AcdChanges,
    changes: watch::Sender<u64>,
    origins: Origins,
    talking: Talking,
) {
    let node = cluster.config.node.clone();
    while local_changes.changed().await.is_ok() {
        let Role::Leader { epoch } = cluster.role() else {
            changes.send_modify(|n| *n = n.wrapping_add(1));
            continue;
        };
        tokio::time::sleep(WRITE_PAUSE).await;
        local_changes.borrow_and_update();
        let (etx, erx) = oneshot::channel();
        let (stx, srx) = oneshot::channel();
        if local.send(AcdMsg::Export(etx)).is_err() || local.send(AcdMsg::Status(stx)).is_err() {
            return;
        }
        let (Ok(mut export), Ok(snapshot)) = (erx.await, srx.await) else {
            return;
        };
        {
            let mut o = origins.lock().unwrap_or_else(|e| e.into_inner());
            for c in &mut export.calls {
                c.node = o.get(&c.key).cloned().unwrap_or_else(|| node.clone());
            }
            let live: std::collections::HashSet<CallKey> =
                export.calls.iter().map(|c| c.key).collect();
            o.retain(|k, _| live.contains(k));
            *talking.lock().unwrap_or_else(|e| e.into_inner()) = export
                .calls
                .iter()
                .filter(|c| c.talking.is_some())
                .map(|c| c.key)
                .collect();
        }
        changes.send_modify(|n| *n = n.wrapping_add(1));
        let (Ok(s), Ok(e)) = (
            serde_json::to_string(&snapshot),
            serde_json::to_string(&export),
        ) else {
            continue;
        };
        match cluster_acd::write_state(&cluster.pool, epoch, &node, &s, &e).await {
            Ok(true) => {
                bus.send(CHANGED_CHANNEL, Wire::Changed);
            }
            Ok(false) => tracing::warn!(
                epoch,
                "the ACD's state was not written: this node no longer leads"
            ),
            Err(e) => tracing::warn!(error = %e, "the ACD's state was not written"),
        }
    }
}

/// On a node that does not lead: reads the leader's snapshot after each of its changes (a
/// burst read once), keeps it for the pages, and tells them.
async fn read_snapshots(
    pool: PgPool,
    cached: Cached,
    mut reread: watch::Receiver<()>,
    changes: watch::Sender<u64>,
) {
    while reread.changed().await.is_ok() {
        let read = tokio::time::timeout(QUICK_ANSWER, cluster_acd::read_state(&pool)).await;
        let snapshot = match read {
            Ok(Ok(Some(row))) => serde_json::from_str::<AcdSnapshot>(&row.snapshot).ok(),
            _ => None,
        };
        *cached.lock().unwrap_or_else(|e| e.into_inner()) =
            snapshot.map(|s| (std::time::Instant::now(), s));
        changes.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// A page of a node that does not lead: the leader's ACD as it last wrote it (this node's own,
/// empty, ACD when there is none yet).
async fn status_of_leader(pool: PgPool, local: AcdHandle, reply: oneshot::Sender<AcdSnapshot>) {
    let read = tokio::time::timeout(QUICK_ANSWER, cluster_acd::read_state(&pool)).await;
    if let Ok(Ok(Some(row))) = read {
        match serde_json::from_str::<AcdSnapshot>(&row.snapshot) {
            Ok(s) => {
                let _ = reply.send(s);
                return;
            }
            Err(e) => tracing::warn!(error = %e, "the leader's ACD state not understood"),
        }
    }
    let _ = local.send(AcdMsg::Status(reply));
}
