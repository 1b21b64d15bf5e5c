//! Legs beside the caller's bridge, and moving the bridge: a leg placed with its own RTP port
//! that is not (yet) the one the caller talks with ([`LegParts`], [`Driver::place_leg`]), RTP
//! relayed between two legs (an agent and the target of its consultation, [`relay_between`]),
//! the caller's bridge moved to such a leg once it answered ([`Driver::bridge_caller_to`]),
//! and a leg ended ([`Driver::end_parts`]). Consultations use them (`consult.rs`); so may any
//! other way of handing the caller to a new leg (attended transfer).

use super::*;

/// A leg with what drives it: the leg, its events, its RTP socket.
pub(super) struct LegParts {
    /// The leg (its tag, agent, port, media, latch).
    pub(super) leg: Leg,
    /// Its events (ringing, answered, failed, bye).
    pub(super) events: mpsc::UnboundedReceiver<LegEvent>,
    /// Its RTP socket.
    pub(super) sock: tokio::net::UdpSocket,
}

/// What a leg is placed with besides its target.
pub(super) struct LegSpec {
    /// Where the callee is (SIP), ignored for a console's `webrtc:` target.
    pub(super) peer: Peer,
    /// The agent it rings (queue offers), if any.
    pub(super) agent: Option<String>,
    /// The screen pop: `X-IVR-*` headers, or the console's card.
    pub(super) pop: Option<ScreenPop>,
    /// The From user.
    pub(super) from_user: String,
    /// Digest credentials of a trunk that may challenge.
    pub(super) credentials: Option<(String, String)>,
    /// The TCP connection opened for the leg, kept until it ends.
    pub(super) link: Option<TcpLink>,
}

impl Driver {
    /// Places a leg to `target` (through the core, or on an agent's console for `webrtc:ID`)
    /// from an RTP port of its own. `Err`: the status it fails with (503: no port or socket).
    pub(super) fn place_leg(&self, target: &str, spec: LegSpec) -> Result<LegParts, u16> {
        let Some(mut port) = self.services.ports.allocate() else {
            tracing::warn!("no free RTP port for a leg");
            return Err(503);
        };
        let sock = port
            .take_socket()
            .and_then(|s| {
                s.set_nonblocking(true).ok()?;
                tokio::net::UdpSocket::from_std(s).ok()
            })
            .ok_or(503u16)?;
        let tag = ivr_sip::message::new_tag();
        let (tx, rx) = mpsc::unbounded_channel();
        tracing::info!(
            target,
            agent = spec.agent.as_deref().unwrap_or("-"),
            "calling (leg beside the caller's)"
        );
        let console = agent_hub::agent_of(target).is_some();
        if console {
            let rtp = sock.local_addr().map_err(|_| 503u16)?;
            self.services.consoles.offer(BrowserLeg {
                tag: tag.clone(),
                agent: spec.agent.clone().unwrap_or_default(),
                pop: spec.pop.clone().unwrap_or_default(),
                rtp,
                events: tx,
            });
        } else {
            let _ = self.services.core.send(CoreMsg::Dial(Box::new(Dial {
                tag: tag.clone(),
                target: target.to_string(),
                peer: spec.peer,
                from_user: spec.from_user,
                headers: spec
                    .pop
                    .as_ref()
                    .map(ScreenPop::headers)
                    .unwrap_or_default(),
                port: port.port(),
                events: tx,
                credentials: spec.credentials,
            })));
        }
        Ok(LegParts {
            leg: Leg {
                tag,
                agent: spec.agent,
                _port: port,
                remote: None,
                latch: Latch::new(None),
                side: None,
                connected: false,
                console,
                _link: spec.link,
                channel: None,
                dialog: None,
                answered_at: None,
            },
            events: rx,
            sock,
        })
    }

    /// Ends a leg that is not the caller's bridge (CANCEL or BYE through the core, or the
    /// console's end).
    pub(super) fn end_parts(&self, parts: LegParts) {
        if parts.leg.console {
            self.services.consoles.end_leg(&parts.leg.tag);
        } else {
            let _ = self.services.core.send(CoreMsg::EndLeg {
                tag: parts.leg.tag.clone(),
            });
        }
    }

    /// Moves the caller's bridge to `parts` (answered: its media known): from now on the
    /// caller's RTP goes there and its RTP to the caller, the pacer quiet. The leg the caller
    /// was bridged to, if any, is handed back for the caller to end (or keep).
    pub(super) fn bridge_caller_to(&mut self, mut parts: LegParts) -> Option<LegParts> {
        parts.leg.connected = true;
        let old = match (
            self.leg.take(),
            self.leg_events.take(),
            self.leg_sock.take(),
        ) {
            (Some(leg), Some(events), Some(sock)) => Some(LegParts { leg, events, sock }),
            _ => None,
        };
        self.leg = Some(parts.leg);
        self.leg_events = Some(parts.events);
        self.leg_sock = Some(parts.sock);
        self.channel.stop();
        self.channel.set_remote(None);
        old
    }
}

/// Relays a packet that leg `src` sent (from `from_addr`) to leg `dst` over `dst_sock`: the
/// source's address checked by its latch (learned after probation), payload types rewritten
/// and G.711 transcoded as the caller's bridge does.
pub(super) fn relay_between(
    data: &[u8],
    from_addr: SocketAddr,
    src: &mut Leg,
    dst: &Leg,
    dst_sock: &tokio::net::UdpSocket,
    out: &mut [u8],
) {
    let (Some(from), Some(to), Some(remote)) = (src.side, dst.side, dst.remote) else {
        return;
    };
    let Some(p) = rtp::parse(data) else { return };
    match src.latch.check(from_addr, &p.header) {
        Verdict::Accept => {}
        Verdict::Latched(addr) => {
            if src.remote.is_some() {
                src.remote = Some(addr);
            }
        }
        Verdict::Drop => return,
    }
    if let Some(n) = bridge::relay(data, from, to, out) {
        let _ = dst_sock.try_send_to(&out[..n], remote);
    }
}
