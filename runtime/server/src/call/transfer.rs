//! A call's transfers: the queue's offers and the `to` target dialled as legs through the
//! core (or the browser-agent hub), the ACD's confirmation of an answer, and the media bridge
//! between the caller and whoever answered.

use super::*;

impl Driver {
    /// The screen pop of the transfer node `node` with its attached values.
    pub(super) fn screen_pop(
        &self,
        node: NodeId,
        priority: i64,
        attach: &[ivr_engine::value::Value],
    ) -> ScreenPop {
        let flow = self.call.flow();
        let info = self.call.info();
        let (queue, labels) = match flow.program.nodes.get(node as usize).map(|n| &n.body) {
            Some(Body::Transfer(t)) => (
                match &t.destination {
                    Destination::Queue(q) => q.clone(),
                    Destination::To(_) => String::new(),
                },
                t.attach
                    .iter()
                    .map(|(l, e)| (l.clone(), ivr_engine::reads_masked(e, flow)))
                    .collect::<Vec<_>>(),
            ),
            _ => (String::new(), Vec::new()),
        };
        ScreenPop {
            call_id: info.id.clone(),
            caller: info.caller.clone(),
            called: info.called.clone(),
            flow: flow.program.name.clone(),
            queue,
            priority,
            // Masked input (a PIN, a card number) never leaves in a screen pop.
            data: labels
                .into_iter()
                .zip(attach)
                .map(|((l, masked), v)| (l, if masked { "***".into() } else { v.to_string() }))
                .collect(),
            path: self
                .path
                .iter()
                .filter_map(|n| flow.program.nodes.get(*n as usize).map(|n| n.name.clone()))
                .collect(),
            transferred_by: None,
            note: None,
            callback: false,
            waited: None,
        }
    }

    pub(super) fn start_transfer(
        &mut self,
        node: NodeId,
        priority: i64,
        level: u8,
        attach: &[ivr_engine::value::Value],
    ) {
        if self.resuming_bridge() {
            // A bridged call taken over: its agent's leg is re-INVITEd already.
            if self.last_pop.is_none() {
                self.last_pop = Some(self.screen_pop(node, priority, attach));
            }
            return;
        }
        let flow = Arc::clone(self.call.flow());
        let Some(Body::Transfer(t)) = flow.program.nodes.get(node as usize).map(|n| &n.body) else {
            return;
        };
        let pop = self.screen_pop(node, priority, attach);
        self.last_pop = Some(pop.clone());
        match &t.destination {
            Destination::Queue(queue) => {
                let key = random_u64();
                // Whether it waits is the ACD's answer: `queued` (then a position) or `no_agents`.
                tracing::info!(queue = %queue, priority, level, "transfer to a queue: asking the ACD");
                self.transfer = Some(Transfer {
                    key: Some(key),
                    connected: false,
                    passed: false,
                });
                let _ = self.services.acd.send(AcdMsg::Enqueue {
                    call: key,
                    queue: queue.clone(),
                    skills: t.skills.clone(),
                    priority,
                    routing: ivr_acd::Routing {
                        level,
                        overflow: t
                            .overflow
                            .iter()
                            .map(|o| ivr_acd::OverflowRule {
                                queue: o.queue.clone(),
                                skills: o.skills.clone(),
                                when: match o.after_ms {
                                    Some(ms) => ivr_acd::OverflowWhen::After(
                                        i64::try_from(ms).unwrap_or(i64::MAX),
                                    ),
                                    None => ivr_acd::OverflowWhen::NoneIdle,
                                },
                            })
                            .collect(),
                        transferred: false,
                    },
                    pop: Box::new(pop),
                    to: self.queue_tx.clone(),
                });
            }
            Destination::To(target) => {
                self.transfer = Some(Transfer {
                    key: None,
                    connected: false,
                    passed: false,
                });
                let tx = self.internal.clone();
                if !target.contains(':') {
                    // A bare number goes back to whoever sent us the call (the PBX or trunk),
                    // on the same transport (over TCP, the same connection); a browser's call
                    // has no such place.
                    let Some(peer) = self.peer else {
                        tracing::info!(target = %target, "a bare number cannot be dialled from a browser");
                        self.transfer = None;
                        self.pending
                            .push_back(Event::Transfer(TransferUpdate::NoAgents));
                        return;
                    };
                    let host = match peer.addr {
                        SocketAddr::V4(a) => format!("{}:{}", a.ip(), a.port()),
                        SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
                    };
                    let transport = if peer.proto == Proto::Tcp {
                        ";transport=tcp"
                    } else {
                        ""
                    };
                    let target = format!("sip:{target}@{host}{transport}");
                    let _ = tx.send(Internal::Resolved {
                        target,
                        peer: Ok((peer, None)),
                    });
                    return;
                }
                let (target, sip) = (target.clone(), self.services.sip.clone());
                tokio::spawn(async move {
                    let peer = resolve(&target, &sip).await;
                    let _ = tx.send(Internal::Resolved { target, peer });
                });
            }
        }
    }

    /// Places the leg of a transfer: to `target` at `peer`, for `agent` (queue transfers).
    /// `link` is the TCP connection opened for it, kept until the leg ends.
    pub(super) fn dial(
        &mut self,
        target: &str,
        peer: Peer,
        agent: Option<String>,
        link: Option<TcpLink>,
    ) {
        self.hang_up_leg();
        let Some(mut port) = self.services.ports.allocate() else {
            tracing::warn!("no free RTP port for the transfer");
            self.leg_failed(503);
            return;
        };
        let sock = port.take_socket().and_then(|s| {
            s.set_nonblocking(true).ok()?;
            tokio::net::UdpSocket::from_std(s).ok()
        });
        let Some(sock) = sock else {
            self.leg_failed(503);
            return;
        };
        let headers = self
            .last_pop
            .as_ref()
            .map(ScreenPop::headers)
            .unwrap_or_default();
        let tag = ivr_sip::message::new_tag();
        let (tx, rx) = mpsc::unbounded_channel();
        tracing::info!(target, agent = agent.as_deref().unwrap_or("-"), "calling");
        let console = agent_hub::agent_of(target).is_some();
        if console {
            match sock.local_addr() {
                Ok(rtp) => self.services.consoles.offer(BrowserLeg {
                    tag: tag.clone(),
                    agent: agent.clone().unwrap_or_default(),
                    pop: self.last_pop.clone().unwrap_or_default(),
                    rtp,
                    events: tx,
                }),
                Err(_) => {
                    let _ = tx.send(LegEvent::Failed(480));
                }
            }
        } else {
            let _ = self.services.core.send(CoreMsg::Dial(Box::new(Dial {
                tag: tag.clone(),
                target: target.to_string(),
                peer,
                from_user: self.call.info().caller.clone(),
                headers,
                port: port.port(),
                events: tx,
                credentials: None,
            })));
        }
        self.leg = Some(Leg {
            tag,
            agent,
            _port: port,
            remote: None,
            latch: Latch::new(None),
            side: None,
            connected: false,
            console,
            _link: link,
            channel: None,
            dialog: None,
            answered_at: None,
        });
        self.leg_events = Some(rx);
        self.leg_sock = Some(sock);
    }

    /// The leg could not be placed or was refused with `code`.
    pub(super) fn leg_failed(&mut self, code: u16) {
        self.drop_leg();
        let Some(t) = &self.transfer else { return };
        match t.key {
            Some(key) => {
                let why = match code {
                    486 | 600 | 603 => Decline::Busy,
                    408 | 480 | 487 => Decline::NoAnswer,
                    crate::agent_hub::GONE => Decline::Lost,
                    _ => Decline::Failed,
                };
                let _ = self.services.acd.send(AcdMsg::Declined(key, why));
            }
            None => {
                let update = if matches!(code, 486 | 600 | 603) {
                    TransferUpdate::Busy
                } else {
                    TransferUpdate::NoAgents
                };
                self.transfer = None;
                self.pending.push_back(Event::Transfer(update));
                self.feed_pending();
            }
        }
    }

    pub(super) fn drop_leg(&mut self) {
        let was_bridged = self.bridged();
        // A supervisor on the bridge hears that it is over.
        self.supervisor = None;
        self.leg = None;
        self.leg_events = None;
        self.leg_sock = None;
        // The pacer speaks to the caller again.
        self.channel.set_remote(self.remote);
        if was_bridged {
            // The checkpoint no longer holds the agent's leg (the agent hung up, passed the
            // caller on); none once the call is over.
            self.save_checkpoint();
        }
    }

    /// Hangs up the leg, if any (CANCEL or BYE through the core).
    pub(super) fn hang_up_leg(&mut self) {
        if let Some(l) = &self.leg {
            if l.console {
                self.services.consoles.end_leg(&l.tag);
            } else {
                let _ = self
                    .services
                    .core
                    .send(CoreMsg::EndLeg { tag: l.tag.clone() });
            }
        }
        self.drop_leg();
    }

    /// The caller kept a callback (key 1 after the offer): the place stays in the ACD and a
    /// task of its own serves it from now on ([`crate::callback`]); this call is done with
    /// its transfer.
    pub(super) fn keep_callback(&mut self, node: NodeId, queue: &str, phone: &str) {
        let ringing = self.leg.is_some();
        // The agent's phone answered as the caller pressed 1: that agent is freed, and the
        // callback's task queues the place again (the ACD has let go of it).
        let answered = self.leg.as_ref().is_some_and(|l| l.side.is_some());
        self.hang_up_leg();
        let Some(t) = self.transfer.take() else {
            return;
        };
        let Some(key) = t.key else { return };
        if answered {
            let _ = self.services.acd.send(AcdMsg::ConversationOver(key));
        } else if ringing {
            // The agent whose phone rang for the caller is free again; the ACD moves on.
            let _ = self.services.acd.send(AcdMsg::Declined(key, Decline::Lost));
        }
        let flow = Arc::clone(self.call.flow());
        let (skills, level) = match flow.program.nodes.get(node as usize).map(|n| &n.body) {
            Some(Body::Transfer(t)) => (t.skills.clone(), t.level.as_ref().map_or(0, |l| l.0)),
            _ => (Vec::new(), 0),
        };
        let mut pop = self.last_pop.clone().unwrap_or_default();
        pop.callback = true;
        tracing::info!(queue, "callback kept: the caller will be called back");
        crate::callback::keep(
            &self.services,
            crate::callback::Kept {
                key,
                call_id: self.call.info().id.clone(),
                queue: queue.to_string(),
                phone: phone.to_string(),
                skills,
                level,
                pop,
                attempts: 0,
                queued: true,
            },
        );
    }

    /// The transfer is over on our side (max_wait, the caller hung up, the call ends).
    pub(super) fn end_transfer(&mut self, why: LeaveReason) {
        // The leg first: a console hears its offer withdrawn before the ACD frees its agent
        // (and its page hears "available").
        self.hang_up_leg();
        if let Some(t) = self.transfer.take()
            && let Some(key) = t.key
        {
            let msg = if t.connected {
                AcdMsg::ConversationOver(key)
            } else {
                AcdMsg::Leave(key, why)
            };
            let _ = self.services.acd.send(msg);
        }
    }

    /// Another node has taken the call over (this node was taken for dead): the agent's leg
    /// is let go without a BYE (the other node re-INVITEd it and bridges it now) and the ACD
    /// does not hear the conversation end (the other node told it the agent talks on); a
    /// queue place is left, since the call queues anew where it is now.
    pub(super) fn let_go_of_transfer(&mut self) {
        if let Some(l) = self.leg.take() {
            if l.console {
                self.services.consoles.end_leg(&l.tag);
            } else {
                let _ = self.services.core.send(CoreMsg::DropLeg { tag: l.tag });
            }
        }
        self.supervisor = None;
        self.leg_events = None;
        self.leg_sock = None;
        if let Some(t) = self.transfer.take()
            && let Some(key) = t.key
            && !t.connected
        {
            let _ = self
                .services
                .acd
                .send(AcdMsg::Leave(key, LeaveReason::Hangup));
        }
    }

    pub(super) fn on_queue_event(&mut self, ev: QueueEvent) {
        if self.transfer.is_none() {
            return;
        }
        match ev {
            QueueEvent::Offer {
                agent,
                contact,
                conn,
                ..
            } => {
                let peer = Peer {
                    addr: contact.addr,
                    proto: if contact.tcp { Proto::Tcp } else { Proto::Udp },
                    conn,
                };
                tracing::info!(agent = %agent, "offered to an agent");
                self.dial(&contact.uri, peer, Some(agent), None);
            }
            QueueEvent::Cancel { agent } => {
                // Only for the leg it was offered on (a newer offer may be ringing already).
                if self.leg.as_ref().and_then(|l| l.agent.as_deref()) == Some(agent.as_str()) {
                    tracing::info!(agent = %agent, "no answer in time; trying another agent");
                    self.hang_up_leg();
                }
            }
            QueueEvent::Connected => self.connect(),
            QueueEvent::Position(n) => self.feed(Event::Transfer(TransferUpdate::Position(n))),
            QueueEvent::NoAgents => {
                tracing::info!(
                    "no agent for this call: nobody who could take it is logged in (no_agents)"
                );
                let passed = self.transfer.take().is_some_and(|t| t.passed);
                self.hang_up_leg();
                // A call an agent passed on is past its node's `no_agents`: the conversation
                // is over as if the agent had hung up (the node's `after`, or the end).
                self.feed(Event::Transfer(if passed {
                    TransferUpdate::AgentHungUp
                } else {
                    TransferUpdate::NoAgents
                }));
            }
            QueueEvent::Passed(result) => self.on_passed(result),
            QueueEvent::Consult { by, action, reply } => {
                self.on_consult_request(&by, action, reply);
            }
            QueueEvent::PassOn {
                by,
                target,
                note,
                reply,
            } => self.on_pass_request(&by, &target, note, reply),
        }
    }

    pub(super) fn on_leg_event(&mut self, ev: LegEvent) {
        match ev {
            LegEvent::Ringing => tracing::debug!("the callee's phone rings"),
            LegEvent::Answered(n) | LegEvent::Media(n) => {
                let answered = matches!(self.leg.as_ref(), Some(l) if l.side.is_none());
                if let Some(l) = &mut self.leg {
                    l.remote = if n.direction.remote_receives() {
                        n.remote
                    } else {
                        None
                    };
                    l.latch.relearn(n.remote);
                    l.side = Some(Side {
                        law: n.law,
                        pt: n.pt,
                        event_pt: n.event_pt,
                    });
                }
                if !answered {
                    return;
                }
                if self.resumed_leg_answered() {
                    return;
                }
                if let Some(l) = &mut self.leg {
                    l.answered_at = Some(crate::clock::local_now());
                }
                let agent = self.leg.as_ref().and_then(|l| l.agent.clone());
                match (self.transfer.as_ref().and_then(|t| t.key), agent) {
                    // The ACD decides whether the answer counts (it may have moved on).
                    (Some(call), Some(agent)) => {
                        let _ = self.services.acd.send(AcdMsg::Answered { call, agent });
                    }
                    _ => self.connect(),
                }
            }
            LegEvent::Failed(code) => {
                if self.resumed_leg_failed(code) {
                    return;
                }
                tracing::info!(code, "the transfer's call failed");
                self.leg_failed(code);
            }
            LegEvent::Dialog(d) => {
                if let Some(l) = &mut self.leg {
                    l.dialog = Some(d);
                }
                if self.bridged() {
                    self.save_checkpoint();
                }
            }
            LegEvent::Refer(refer) => self.on_refer(refer),
            LegEvent::Bye => {
                tracing::info!("the agent hung up");
                self.drop_leg();
                if let Some(t) = self.transfer.take()
                    && let Some(key) = t.key
                {
                    let _ = self.services.acd.send(AcdMsg::ConversationOver(key));
                }
                self.feed(Event::Transfer(TransferUpdate::AgentHungUp));
            }
        }
    }

    /// The callee answered and the answer counts: bridge the media, tell the flow.
    pub(super) fn connect(&mut self) {
        let Some(l) = &mut self.leg else { return };
        if l.side.is_none() || l.connected {
            return;
        }
        l.connected = true;
        let agent = l.agent.clone();
        tracing::info!(agent = agent.as_deref().unwrap_or("-"), "connected");
        if let Some(t) = &mut self.transfer {
            t.connected = true;
        }
        // The bridge carries the audio now: the pacer stays quiet.
        self.channel.stop();
        self.channel.set_remote(None);
        self.start_call_recording(super::record_call::Why::AgentAnswer);
        self.recording_agent(agent.clone());
        self.feed(Event::Transfer(TransferUpdate::Answered { agent }));
        // The checkpoint holds the agent's leg from now on (a cluster's takeover bridges it
        // again).
        self.save_checkpoint();
    }

    /// A supervisor asks for the bridge's tap: given while the call is bridged and no other
    /// supervisor is on it.
    pub(super) fn on_tap_request(&mut self, r: TapRequest) {
        let answer = if !self.bridged() {
            Err(Refused::NotBridged)
        } else if self
            .supervisor
            .as_ref()
            .is_some_and(|t| !t.supervisor_gone())
        {
            Err(Refused::Busy)
        } else {
            let (tap, end) = supervise::pair(r.mode);
            tracing::info!(mode = r.mode.as_str(), "a supervisor is on the call");
            self.supervisor = Some(tap);
            Ok(end)
        };
        let _ = r.reply.send(answer);
    }

    /// Whether the caller and the callee are connected (RTP relayed both ways).
    pub(super) fn bridged(&self) -> bool {
        self.leg.as_ref().is_some_and(|l| l.connected)
    }

    /// Relays a packet of the caller's to the callee.
    pub(super) fn relay_to_leg(&mut self, data: &[u8], out: &mut [u8]) {
        self.last_rtp = Instant::now();
        self.heard_rtp = true;
        if std::mem::take(&mut self.priming) {
            // The caller's RTP reached this node: the bridge alone speaks to it now.
            self.channel.stop();
            self.channel.set_remote(None);
        }
        self.record_caller(data);
        let (Some(l), Some(sock)) = (&self.leg, &self.leg_sock) else {
            return;
        };
        let (Some(to), Some(remote)) = (l.side, l.remote) else {
            return;
        };
        let from = Side {
            law: self.law,
            pt: self.pt,
            event_pt: self.event_pt,
        };
        if let Some(n) = bridge::relay(data, from, to, out) {
            if let Some(t) = &mut self.supervisor {
                t.caller_to_agent(&mut out[..n], to.law, to.pt);
                if t.supervisor_gone() {
                    self.supervisor = None;
                }
            }
            let _ = sock.try_send_to(&out[..n], remote);
        }
    }

    /// Relays a packet of the callee's to the caller (over the caller's socket).
    pub(super) fn relay_to_caller(
        &mut self,
        data: &[u8],
        from_addr: SocketAddr,
        caller_sock: &tokio::net::UdpSocket,
        out: &mut [u8],
    ) {
        let Some(l) = &mut self.leg else { return };
        let (Some(from), true) = (l.side, l.connected) else {
            return;
        };
        // The callee's packets only, from its SDP address or the one learned after probation;
        // symmetric RTP: once learned, we send there.
        let Some(p) = rtp::parse(data) else { return };
        match l.latch.check(from_addr, &p.header) {
            Verdict::Accept => {}
            Verdict::Latched(addr) => {
                if l.remote.is_some() {
                    l.remote = Some(addr);
                }
            }
            Verdict::Drop => return,
        }
        self.record_agent(data, from.law, from.pt);
        let Some(remote) = self.remote else { return };
        let to = Side {
            law: self.law,
            pt: self.pt,
            event_pt: self.event_pt,
        };
        if let Some(n) = bridge::relay(data, from, to, out) {
            if let Some(t) = &mut self.supervisor {
                t.agent_to_caller(&mut out[..n], to.law, to.pt);
            }
            // An SRTP caller: the plain leg's packet is protected on its way.
            match &mut self.srtp {
                None => {
                    let _ = caller_sock.try_send_to(&out[..n], remote);
                }
                Some(s) => {
                    if let Ok(p) = s.bridge.protect(&out[..n], &[]) {
                        let _ = caller_sock.try_send_to(&p, remote);
                    }
                }
            }
        }
    }
}

/// Waits for the next event of the leg, if there is one.
pub(super) async fn leg_event(
    rx: &mut Option<mpsc::UnboundedReceiver<LegEvent>>,
) -> Option<LegEvent> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Waits for the next packet on the leg's socket, if there is one.
pub(super) async fn leg_packet(
    sock: &Option<tokio::net::UdpSocket>,
    buf: &mut [u8],
) -> std::io::Result<(usize, SocketAddr)> {
    match sock {
        Some(s) => s.recv_from(buf).await,
        None => std::future::pending().await,
    }
}
