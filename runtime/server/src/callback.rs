//! Kept callbacks in `ivr serve`: a caller who pressed 1 after a transfer's `callback after ...`
//! offer has hung up, but their place stays in the queue (the ACD keeps it with its time,
//! [`ivr_acd::AcdInput::KeepCallback`]). One task per kept callback ([`keep`]) takes the
//! queue's events for it from then on: when the place reaches an agent, the agent's phone (or
//! console) is rung with the screen pop (`X-IVR-Callback: true`, the wait); once the agent
//! answers, the caller's number is dialled through the queue's `trunk` (else the trunk
//! `default`), and when the caller answers the two legs are bridged (RTP relayed both ways,
//! recorded per `[recording]`: the caller left, the agent right) until either hangs up. A
//! caller who does not answer (no answer within [`CALLBACK_RING_MS`], busy, a failure) is
//! dialled again `callback_retry_after` later, the place queued again ahead of the flow's
//! calls, up to `callback_attempts` dials.
//!
//! Each callback is a row of `callbacks` (written when kept, updated at every dial, closed with
//! its result). Rows still pending when `ivr serve` stops are read back when it starts
//! ([`reload`]) and queued again (their place is taken anew, in the order they were kept).

use crate::acd_task::{AcdMsg, QueueEvent};
use crate::agent_hub::{self, BrowserLeg};
use crate::clock::local_now;
use crate::screen_pop::ScreenPop;
use crate::services::Services;
use crate::sip_target::resolve;
use crate::sip_task::{CoreMsg, Dial, LegEvent};
use crate::transport::{Peer, Proto, TcpLink};
use chrono::NaiveDateTime;
use ivr_acd::{CallKey, Decline};
use ivr_compiler::config::TrunkConfig;
use ivr_compiler::recording::RecordCalls;
use ivr_data::Pool;
use ivr_data::callbacks::{self as rows, CallbackResult};
use ivr_data::records::{Record, RecordingRow, timestamp};
use ivr_engine::Millis;
use ivr_media::bridge::{self, Side};
use ivr_media::latch::{Latch, Verdict};
use ivr_media::ports::RtpPort;
use ivr_media::recorder::{Leg as RecLeg, Recording, Tap};
use ivr_media::rtp;
use ivr_sip::message::random_u64;
use ivr_sip::sdp::Negotiated;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// How long the caller's phone rings at most at each dial of a callback.
pub const CALLBACK_RING_MS: u64 = 30_000;

/// How long a callback whose queue has nobody logged in waits before it is queued again.
pub const NO_AGENTS_PAUSE: Duration = Duration::from_secs(5);

/// A callback kept by a call, handed from its driver to [`keep`].
#[derive(Debug, Clone)]
pub struct Kept {
    /// The key the ACD knows the place by.
    pub key: CallKey,
    /// The call that kept it (`callbacks.call_id`).
    pub call_id: String,
    /// Its queue.
    pub queue: String,
    /// The number to dial back.
    pub phone: String,
    /// The transfer node's skills (the place is queued again with them after a failed dial).
    pub skills: Vec<String>,
    /// The least agent level asked for.
    pub level: u8,
    /// The screen pop of the transfer.
    pub pop: ScreenPop,
    /// Dials of the caller already made (a reloaded callback's).
    pub attempts: u32,
    /// The place is already in the ACD (kept by a live call); `false`: queue it first.
    pub queued: bool,
}

/// Takes over a kept place: writes its row, tells the ACD task to keep it and send its events
/// here, and serves it in a task of its own.
pub fn keep(services: &Services, kept: Kept) {
    let services = services.clone();
    let span = tracing::info_span!("callback", call = %kept.call_id, queue = %kept.queue);
    tokio::spawn(tracing::Instrument::instrument(
        async move {
            let pool = services.catalogs.pool();
            if let Some(pool) = &pool
                && kept.attempts == 0
                && kept.queued
            {
                let at = naive_of(local_now());
                let offer = serde_json::to_string(&Offer {
                    pop: kept.pop.clone(),
                    skills: kept.skills.clone(),
                    level: kept.level,
                })
                .ok();
                let (id, queue, phone) = (&kept.call_id, &kept.queue, &kept.phone);
                if let Err(e) = rows::keep(pool, id, queue, phone, at, offer.as_deref()).await {
                    tracing::warn!(error = %e, "callback row not written");
                }
            }
            Task {
                services,
                pool,
                kept,
            }
            .run()
            .await;
        },
        span,
    ));
}

/// Reads the callbacks a stop of the server left pending and serves each again (their places
/// queued anew, oldest first).
pub async fn reload(services: &Services) {
    let Some(pool) = services.catalogs.pool() else {
        return;
    };
    let pending = match rows::pending(&pool).await {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, "pending callbacks not read");
            return;
        }
    };
    if !pending.is_empty() {
        tracing::info!(callbacks = pending.len(), "pending callbacks queued again");
    }
    for p in pending {
        // The screen pop, skills and level it was kept with; a row without them (or unreadable)
        // is offered with the caller's number and queue only.
        let stored = p
            .offer
            .as_deref()
            .and_then(|o| serde_json::from_str::<Offer>(o).ok());
        let Offer {
            mut pop,
            skills,
            level,
        } = stored.unwrap_or_else(|| Offer {
            pop: ScreenPop {
                call_id: p.call_id.clone(),
                caller: p.phone.clone(),
                queue: p.queue.clone(),
                ..ScreenPop::default()
            },
            skills: Vec::new(),
            level: 0,
        });
        pop.callback = true;
        keep(
            services,
            Kept {
                key: random_u64(),
                call_id: p.call_id,
                queue: p.queue,
                phone: p.phone,
                skills,
                level,
                pop,
                attempts: p.attempts,
                queued: false,
            },
        );
    }
}

/// What a pending callback's row keeps to offer it again after a restart (`callbacks.offer`).
#[derive(serde::Serialize, serde::Deserialize)]
struct Offer {
    /// The screen pop of the transfer.
    pop: ScreenPop,
    /// The transfer node's skills.
    #[serde(default)]
    skills: Vec<String>,
    /// The least agent level asked for.
    #[serde(default)]
    level: u8,
}

/// Local wall-clock milliseconds as a stored time.
fn naive_of(ms: Millis) -> NaiveDateTime {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.naive_utc())
        .unwrap_or_default()
}

/// One leg we placed (the agent's or the caller's), with its media.
struct Leg {
    tag: String,
    sock: UdpSocket,
    _port: RtpPort,
    _link: Option<TcpLink>,
    events: mpsc::UnboundedReceiver<LegEvent>,
    remote: Option<SocketAddr>,
    side: Option<Side>,
    latch: Latch,
    console: bool,
}

impl Leg {
    fn answered(&mut self, n: &Negotiated) {
        self.remote = if n.direction.remote_receives() {
            n.remote
        } else {
            None
        };
        self.latch.relearn(n.remote);
        self.side = Some(Side {
            law: n.law,
            pt: n.pt,
            event_pt: n.event_pt,
        });
    }

    fn end(&self, services: &Services) {
        if self.console {
            services.consoles.end_leg(&self.tag);
        } else {
            let _ = services.core.send(CoreMsg::EndLeg {
                tag: self.tag.clone(),
            });
        }
    }
}

/// A leg to place ([`place`]).
struct Placing<'a> {
    /// The Request-URI.
    target: &'a str,
    /// Where to send the INVITE.
    peer: Peer,
    /// The user of our From.
    from_user: &'a str,
    /// Extra headers (the screen pop).
    headers: Vec<(String, String)>,
    /// A trunk's digest credentials.
    credentials: Option<(String, String)>,
    /// An agent's browser console instead of a SIP phone: its id and the screen pop.
    console: Option<(&'a str, &'a ScreenPop)>,
    /// The TCP connection opened for the leg, kept until it ends.
    link: Option<TcpLink>,
}

/// Places a leg from a port of its own; `None` when no port is free.
fn place(services: &Services, p: Placing<'_>) -> Option<Leg> {
    let Placing {
        target,
        peer,
        from_user,
        headers,
        credentials,
        console,
        link,
    } = p;
    let mut port = services.ports.allocate()?;
    let sock = port.take_socket().and_then(|s| {
        s.set_nonblocking(true).ok()?;
        UdpSocket::from_std(s).ok()
    })?;
    let tag = ivr_sip::message::new_tag();
    let (tx, rx) = mpsc::unbounded_channel();
    match console {
        Some((agent, pop)) => match sock.local_addr() {
            Ok(rtp) => services.consoles.offer(BrowserLeg {
                tag: tag.clone(),
                agent: agent.to_string(),
                pop: pop.clone(),
                rtp,
                events: tx,
            }),
            Err(_) => {
                let _ = tx.send(LegEvent::Failed(480));
            }
        },
        None => {
            let _ = services.core.send(CoreMsg::Dial(Box::new(Dial {
                tag: tag.clone(),
                target: target.to_string(),
                peer,
                from_user: from_user.to_string(),
                headers,
                port: port.port(),
                events: tx,
                credentials,
            })));
        }
    }
    Some(Leg {
        tag,
        sock,
        _port: port,
        _link: link,
        events: rx,
        remote: None,
        side: None,
        latch: Latch::new(None),
        console: console.is_some(),
    })
}

/// The recording of a bridged callback.
struct CallbackRecording {
    rec: Recording,
    started: Millis,
    agent: String,
}

/// How a dial of the caller went.
enum Dialled {
    /// Answered: the caller's leg.
    Answered(Box<Leg>),
    /// Not answered, busy or failed.
    Not(CallbackResult),
}

struct Task {
    services: Services,
    pool: Option<Pool>,
    kept: Kept,
}

impl Task {
    async fn close(&self, result: CallbackResult) {
        tracing::info!(result = result.as_str(), "callback over");
        if let Some(pool) = &self.pool
            && let Err(e) = rows::end(pool, &self.kept.call_id, result, naive_of(local_now())).await
        {
            tracing::warn!(error = %e, "callback result not written");
        }
    }

    /// Starts recording the bridged conversation when `[recording] calls` records transferred
    /// calls (`transferred` or `all`): the caller left, the agent right.
    fn start_recording(&self, agent: &str) -> Option<CallbackRecording> {
        let deployment = self.services.live.current();
        let config = &deployment.config.recording;
        if config.calls == RecordCalls::None {
            return None;
        }
        let safe: String = self
            .kept
            .call_id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .take(80)
            .collect();
        let now = chrono::Local::now();
        let path = config
            .folder
            .join(now.format("%Y-%m-%d").to_string())
            .join(format!(
                "{}-{safe}-callback-{:06}.wav",
                now.format("%H%M%S"),
                random_u64() % 1_000_000
            ));
        let rec = self.services.recorder.open(path);
        tracing::info!(file = %rec.path().display(), "recording the callback");
        Some(CallbackRecording {
            rec,
            started: local_now(),
            agent: agent.to_string(),
        })
    }

    /// Closes the recording; its `recordings` row (kind `call`, the callback's call id, the
    /// agent, the queue) is written once the file is final.
    fn finish_recording(&self, r: CallbackRecording) {
        let writer = self.services.writer.clone();
        let k = &self.kept;
        let (call_id, flow, phone, queue) = (
            k.call_id.clone(),
            k.pop.flow.clone(),
            k.phone.clone(),
            k.queue.clone(),
        );
        let answer = r.rec.finish();
        let (started, agent) = (r.started, r.agent);
        tokio::spawn(async move {
            match answer.await {
                Ok(Ok(done)) => {
                    tracing::info!(file = %done.path.display(), seconds = done.length_ms / 1000, "callback recording saved");
                    if let Some(w) = writer {
                        w.send(Record::Recording(RecordingRow {
                            call_id,
                            flow,
                            node: "callback".into(),
                            save_table: "calls".into(),
                            caller: phone,
                            file: Some(done.path.display().to_string()),
                            length_ms: i64::try_from(done.length_ms).unwrap_or(i64::MAX),
                            recorded_at: timestamp(started),
                            queue: Some(queue),
                            kind: "call".into(),
                            agent: Some(agent),
                            sha256: Some(done.sha256),
                        }));
                    }
                }
                Ok(Err(e)) => tracing::error!(error = %e, "callback recording not saved"),
                Err(_) => tracing::error!("callback recording not saved: the writer stopped"),
            }
        });
    }

    /// Queues the place (again): ahead of the flow's calls, kept.
    fn enqueue(&self, to: mpsc::UnboundedSender<QueueEvent>) {
        let k = &self.kept;
        let _ = self.services.acd.send(AcdMsg::Enqueue {
            call: k.key,
            queue: k.queue.clone(),
            skills: k.skills.clone(),
            priority: k.pop.priority,
            routing: ivr_acd::Routing {
                level: k.level,
                overflow: Vec::new(),
                transferred: true,
            },
            pop: Box::new(k.pop.clone()),
            to: to.clone(),
        });
        let _ = self
            .services
            .acd
            .send(AcdMsg::KeepCallback { call: k.key, to });
    }

    async fn run(self) {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let config = self.services.live.current().config.clone();
        let Some(queue) = config.queues.get(&self.kept.queue).cloned() else {
            tracing::warn!("the queue of the callback is gone");
            let _ = self.services.acd.send(AcdMsg::Leave(
                self.kept.key,
                crate::acd_task::LeaveReason::Hangup,
            ));
            self.close(CallbackResult::Cancelled).await;
            return;
        };
        let trunk = queue
            .callback_trunk(&config.trunks)
            .and_then(|t| config.trunks.get(t).map(|c| (t.to_string(), c.clone())));
        if self.kept.queued {
            let _ = self.services.acd.send(AcdMsg::KeepCallback {
                call: self.kept.key,
                to: tx.clone(),
            });
        } else {
            self.enqueue(tx.clone());
        }
        let mut attempt = self.kept.attempts;
        loop {
            let Some((agent, agent_leg)) = self.agent(&mut rx).await else {
                // Nobody who could take the place is logged in (a reloaded callback at start-up,
                // a retry after every agent left): it is queued again a little later, for as
                // long as its queue exists.
                let live = self.services.live.current();
                if !live.config.queues.contains_key(&self.kept.queue) {
                    tracing::warn!("the queue of the callback is gone");
                    self.close(CallbackResult::Cancelled).await;
                    return;
                }
                tokio::time::sleep(NO_AGENTS_PAUSE).await;
                while rx.try_recv().is_ok() {}
                self.enqueue(tx.clone());
                continue;
            };
            attempt += 1;
            tracing::info!(agent = %agent, attempt, phone = %self.kept.phone, "the agent answered: calling the caller back");
            if let Some(pool) = &self.pool
                && let Err(e) = rows::dialling(
                    pool,
                    &self.kept.call_id,
                    &agent,
                    attempt,
                    naive_of(local_now()),
                )
                .await
            {
                tracing::warn!(error = %e, "callback dial not written");
            }
            // The dial takes one of the trunk's channels (shared with campaigns and agents'
            // calls to numbers) for as long as the call lasts; a full trunk fails the attempt.
            let channel = trunk
                .as_ref()
                .and_then(|(name, t)| self.services.trunks.try_take(name, t.max_calls));
            let dialled = match (&trunk, &channel) {
                (Some((_, t)), Some(_)) => self.dial_caller(t).await,
                (Some((name, _)), None) => {
                    tracing::warn!(trunk = %name, "every channel of the trunk is in use");
                    Dialled::Not(CallbackResult::Failed)
                }
                (None, _) => {
                    tracing::warn!("no trunk to dial the caller through");
                    Dialled::Not(CallbackResult::Failed)
                }
            };
            match dialled {
                Dialled::Answered(caller) => {
                    if let Some(pool) = &self.pool
                        && let Err(e) =
                            rows::connected(pool, &self.kept.call_id, naive_of(local_now())).await
                    {
                        tracing::warn!(error = %e, "callback answer not written");
                    }
                    tracing::info!("the caller answered: bridged with the agent");
                    let mut agent_leg = agent_leg;
                    let mut caller = *caller;
                    let recording = self.start_recording(&agent);
                    bridge_legs(
                        &self.services,
                        &mut agent_leg,
                        &mut caller,
                        &mut rx,
                        recording.as_ref().map(|r| r.rec.tap()),
                    )
                    .await;
                    if let Some(r) = recording {
                        self.finish_recording(r);
                    }
                    let _ = self
                        .services
                        .acd
                        .send(AcdMsg::ConversationOver(self.kept.key));
                    self.close(CallbackResult::Connected).await;
                    return;
                }
                Dialled::Not(result) => {
                    drop(channel);
                    agent_leg.end(&self.services);
                    let _ = self
                        .services
                        .acd
                        .send(AcdMsg::ConversationOver(self.kept.key));
                    if attempt >= queue.callback_attempts() || trunk.is_none() {
                        self.close(result).await;
                        return;
                    }
                    let wait = queue.callback_retry_after();
                    tracing::info!(
                        attempt,
                        wait_ms = wait,
                        "the caller did not answer: dialled again later"
                    );
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                    // Events of the old round (a late position) are of no use now.
                    while rx.try_recv().is_ok() {}
                    self.enqueue(tx.clone());
                }
            }
        }
    }

    /// Waits until an agent took the place and answered: the agent's id and leg. `None`
    /// when the ACD let go of the place (nobody who could take it is logged in).
    async fn agent(&self, rx: &mut mpsc::UnboundedReceiver<QueueEvent>) -> Option<(String, Leg)> {
        let mut ringing: Option<(String, Leg)> = None;
        let mut answered = false;
        loop {
            let leg_event = async {
                match ringing.as_mut() {
                    Some((_, l)) => l.events.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                ev = rx.recv() => match ev? {
                    QueueEvent::Offer { agent, contact, conn, waited } => {
                        if let Some((_, old)) = ringing.take() {
                            old.end(&self.services);
                        }
                        answered = false;
                        let peer = Peer {
                            addr: contact.addr,
                            proto: if contact.tcp { Proto::Tcp } else { Proto::Udp },
                            conn,
                        };
                        let mut pop = self.kept.pop.clone();
                        pop.callback = true;
                        pop.waited = waited;
                        let console = agent_hub::agent_of(&contact.uri).is_some();
                        tracing::info!(agent = %agent, "callback offered to an agent");
                        let placing = Placing {
                            target: &contact.uri,
                            peer,
                            from_user: &self.kept.phone,
                            headers: pop.headers(),
                            credentials: None,
                            console: console.then_some((agent.as_str(), &pop)),
                            link: None,
                        };
                        match place(&self.services, placing) {
                            Some(leg) => ringing = Some((agent, leg)),
                            None => {
                                tracing::warn!("no free RTP port for the callback's agent");
                                let _ = self.services.acd.send(AcdMsg::Declined(self.kept.key, Decline::Failed));
                            }
                        }
                    }
                    QueueEvent::Cancel { agent } => {
                        if ringing.as_ref().is_some_and(|(a, _)| *a == agent)
                            && let Some((_, l)) = ringing.take()
                        {
                            l.end(&self.services);
                        }
                    }
                    QueueEvent::Connected => {
                        if answered && let Some(r) = ringing.take() {
                            return Some(r);
                        }
                    }
                    QueueEvent::NoAgents => return None,
                    QueueEvent::PassOn { reply, .. } => {
                        let _ = reply.send(Err(crate::pass_refusal::PassRefusal::NotConnected));
                    }
                    // A callback's agent does not consult from it either (like a transfer).
                    QueueEvent::Consult { reply, .. } => {
                        let _ = reply.send(Err(crate::pass_refusal::PassRefusal::NotConnected));
                    }
                    QueueEvent::Position(_) | QueueEvent::Passed(_) => {}
                },
                ev = leg_event => match ev {
                    Some(LegEvent::Answered(n)) | Some(LegEvent::Media(n)) => {
                        let first = !answered;
                        if let Some((agent, l)) = ringing.as_mut() {
                            l.answered(&n);
                            if first {
                                answered = true;
                                let _ = self.services.acd.send(AcdMsg::Answered { call: self.kept.key, agent: agent.clone() });
                            }
                        }
                    }
                    Some(LegEvent::Failed(code)) => {
                        ringing = None;
                        let why = match code {
                            486 | 600 | 603 => Decline::Busy,
                            408 | 480 | 487 => Decline::NoAnswer,
                            crate::agent_hub::GONE => Decline::Lost,
                            _ => Decline::Failed,
                        };
                        let _ = self.services.acd.send(AcdMsg::Declined(self.kept.key, why));
                    }
                    Some(LegEvent::Bye) | None => {
                        ringing = None;
                        if answered {
                            // The agent hung up before the ACD took the answer.
                            let _ = self.services.acd.send(AcdMsg::ConversationOver(self.kept.key));
                            self.enqueue_later(rx).await;
                        } else {
                            let _ = self.services.acd.send(AcdMsg::Declined(self.kept.key, Decline::Failed));
                        }
                        answered = false;
                    }
                    Some(LegEvent::Ringing) | Some(LegEvent::Refer(_)) | Some(LegEvent::Dialog(_)) => {}
                }
            }
        }
    }

    /// The place is queued again at once (an agent hung up before the call was connected).
    async fn enqueue_later(&self, rx: &mut mpsc::UnboundedReceiver<QueueEvent>) {
        let (tx, new_rx) = mpsc::unbounded_channel();
        *rx = new_rx;
        self.enqueue(tx);
    }

    /// Dials the caller through `trunk`; rings at most [`CALLBACK_RING_MS`].
    async fn dial_caller(&self, trunk: &TrunkConfig) -> Dialled {
        let target = trunk.target.uri_for(&self.kept.phone);
        let (peer, link) = match resolve(&target, &self.services.sip).await {
            Ok(p) => p,
            Err(code) => {
                tracing::warn!(%target, code, "trunk not reachable");
                return Dialled::Not(CallbackResult::Failed);
            }
        };
        let placing = Placing {
            target: &target,
            peer,
            from_user: &trunk.caller_id,
            headers: Vec::new(),
            credentials: trunk.username.clone().zip(trunk.password.clone()),
            console: None,
            link,
        };
        let Some(mut leg) = place(&self.services, placing) else {
            tracing::warn!("no free RTP port for the callback");
            return Dialled::Not(CallbackResult::Failed);
        };
        let ring = tokio::time::sleep(Duration::from_millis(CALLBACK_RING_MS));
        tokio::pin!(ring);
        loop {
            tokio::select! {
                ev = leg.events.recv() => match ev {
                    Some(LegEvent::Answered(n)) => {
                        leg.answered(&n);
                        return Dialled::Answered(Box::new(leg));
                    }
                    Some(LegEvent::Failed(code)) => {
                        tracing::info!(code, "the callback's dial failed");
                        return Dialled::Not(match code {
                            408 | 480 | 486 | 487 | 600 | 603 => CallbackResult::NoAnswer,
                            _ => CallbackResult::Failed,
                        });
                    }
                    Some(LegEvent::Ringing | LegEvent::Media(_) | LegEvent::Refer(_) | LegEvent::Dialog(_)) => {}
                    Some(LegEvent::Bye) | None => return Dialled::Not(CallbackResult::Failed),
                },
                () = &mut ring => {
                    leg.end(&self.services);
                    return Dialled::Not(CallbackResult::NoAnswer);
                }
            }
        }
    }
}

/// Relays RTP between the agent's and the caller's legs until either hangs up (the other is
/// then hung up too). An agent's transfer of a callback (console) is refused.
async fn bridge_legs(
    services: &Services,
    agent: &mut Leg,
    caller: &mut Leg,
    queue: &mut mpsc::UnboundedReceiver<QueueEvent>,
    tap: Option<&Tap>,
) {
    let mut a_buf = vec![0u8; 2048];
    let mut c_buf = vec![0u8; 2048];
    let mut out = vec![0u8; 2048];
    loop {
        tokio::select! {
            r = agent.sock.recv_from(&mut a_buf) => {
                if let Ok((n, from)) = r {
                    relay(agent, caller, &a_buf[..n], from, &mut out, tap.map(|t| (t, RecLeg::Other)));
                }
            }
            r = caller.sock.recv_from(&mut c_buf) => {
                if let Ok((n, from)) = r {
                    relay(caller, agent, &c_buf[..n], from, &mut out, tap.map(|t| (t, RecLeg::Caller)));
                }
            }
            ev = agent.events.recv() => match ev {
                Some(LegEvent::Media(n)) => agent.answered(&n),
                Some(LegEvent::Refer(_)) => {
                    // A callback is not passed on: the final NOTIFY says so, the call stays.
                    tracing::info!("REFER on a callback refused");
                    let _ = services.core.send(CoreMsg::ReferDone {
                        tag: agent.tag.clone(),
                        code: crate::pass_refusal::PassRefusal::NotConnected.code(),
                    });
                }
                Some(LegEvent::Bye) | None => {
                    tracing::info!("the agent hung up");
                    caller.end(services);
                    return;
                }
                _ => {}
            },
            Some(ev) = queue.recv() => {
                if let QueueEvent::PassOn { reply, .. } = ev {
                    let _ = reply.send(Err(crate::pass_refusal::PassRefusal::NotConnected));
                }
            }
            ev = caller.events.recv() => match ev {
                Some(LegEvent::Media(n)) => caller.answered(&n),
                Some(LegEvent::Bye) | None => {
                    tracing::info!("the caller hung up");
                    agent.end(services);
                    return;
                }
                _ => {}
            },
        }
    }
}

/// One packet of `from`'s, checked against its latch, relayed to `to` (and recorded on the
/// recording's channel of `from`, when the conversation is recorded).
fn relay(
    from: &mut Leg,
    to: &Leg,
    data: &[u8],
    addr: SocketAddr,
    out: &mut [u8],
    record: Option<(&Tap, RecLeg)>,
) {
    let Some(p) = rtp::parse(data) else { return };
    match from.latch.check(addr, &p.header) {
        Verdict::Accept => {}
        Verdict::Latched(a) => {
            if from.remote.is_some() {
                from.remote = Some(a);
            }
        }
        Verdict::Drop => return,
    }
    if let (Some((tap, leg)), Some(side)) = (record, from.side)
        && p.header.payload_type == side.pt
    {
        tap.push(leg, side.law, p.payload);
    }
    let (Some(f), Some(t), Some(remote)) = (from.side, to.side, to.remote) else {
        return;
    };
    if let Some(n) = bridge::relay(data, f, t, out) {
        let _ = to.sock.try_send_to(&out[..n], remote);
    }
}
