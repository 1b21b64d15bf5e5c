//! Agents who take calls in the browser (the agent console, [`crate::agent_console`]): the
//! place where a call's transfer leg meets an agent's page instead of a SIP phone.
//!
//! While an agent's console is connected (its WebSocket open) the agent is registered in the
//! ACD with the contact `webrtc:ID` ([`contact`]), refreshed while the socket lives and
//! removed when it closes. A call offered to such an agent places its leg here
//! ([`AgentHub::offer`], from `call/transfer.rs` where a SIP contact would go to the core):
//! the page gets `{"type":"offer","pop":{...}}`, the call hears [`LegEvent::Ringing`]. When
//! the agent answers, the page sends its SDP offer; it is answered like a browser caller's
//! ([`ivr_media::webrtc::Session`]), and a relay socket on loopback stands for the agent on the
//! leg's RTP socket, so the call's bridge relays caller and agent as with a SIP phone. Once
//! ICE and DTLS are up the call hears [`LegEvent::Answered`] with PCMU at the relay's address.
//! The agent hanging up is [`LegEvent::Bye`]; the call ending the leg (the caller hung up,
//! ring timeout, an answer the ACD did not take) comes as [`AgentHub::end_leg`] and reaches
//! the page as `cancelled` (before the answer) or `ended`.
//!
//! One binding per agent: a SIP phone that registers takes the agent over from its console
//! (the page hears `replaced` and the socket closes), and a console that connects takes over
//! from a SIP phone until the phone's next REGISTER. A second console of the same agent
//! replaces the first.
//!
//! A console may instead go with the agent's SIP phone ([`AgentHub::attach_phone`], the
//! page's "calls on my SIP phone"): it registers nothing, the phone's registrations go to the
//! ACD as they come, and the page follows the phone's calls (state, screen pop) to transfer
//! and consult; the audio is the phone's.

use crate::acd_task::{AcdHandle, AcdMsg};
use crate::screen_pop::ScreenPop;
use crate::sip_task::LegEvent;
use ivr_acd::Contact;
use ivr_media::audio::Law;
use ivr_media::webrtc::{self, Control, RelayEnd, Session};
use ivr_sip::sdp::{self, Direction, Negotiated};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// The scheme of a browser agent's contact.
pub const SCHEME: &str = "webrtc:";
/// How long a console's registration lasts in the ACD (refreshed at half of it).
pub const REGISTRATION: Duration = Duration::from_secs(120);
/// How long the agent's browser may take to connect its media after the answer.
const CONNECT: Duration = Duration::from_secs(20);

/// The ACD contact of agent `id`'s console.
pub fn contact(id: &str) -> Contact {
    Contact {
        uri: format!("{SCHEME}{id}"),
        addr: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
        tcp: false,
    }
}

/// The agent of a console contact (`webrtc:ID`), if `uri` is one.
pub fn agent_of(uri: &str) -> Option<&str> {
    uri.strip_prefix(SCHEME).filter(|a| !a.is_empty())
}

/// A transfer leg to place on an agent's console.
#[derive(Debug)]
pub struct BrowserLeg {
    /// The leg's tag (its key, as with the core).
    pub tag: String,
    /// The agent.
    pub agent: String,
    /// What the agent sees.
    pub pop: ScreenPop,
    /// The leg's RTP socket (the relay sends the agent's audio there).
    pub rtp: SocketAddr,
    /// Where the call hears about the leg.
    pub events: mpsc::UnboundedSender<LegEvent>,
}

/// What the hub tells a console page (JSON with `type`).
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToPage {
    /// The agent's state in the ACD changed (also sent once at the start).
    State {
        /// `offline`, `available`, `ringing`, `on_call`, `wrap_up`, `away`.
        state: ivr_acd::AgentState,
    },
    /// A call is offered: ring.
    Offer {
        /// The screen pop (boxed: the largest message by far).
        pop: Box<ScreenPop>,
    },
    /// The SDP answer to the page's offer.
    Answer {
        /// The SDP.
        sdp: String,
    },
    /// Media flows: the agent talks with the caller.
    Connected,
    /// The offer was withdrawn before the agent answered (the caller hung up, ring timeout).
    Cancelled,
    /// The conversation is over.
    Ended {
        /// `caller` (or the call moved on), `agent`, or `failed` (the media did not connect).
        by: &'static str,
    },
    /// The caller was passed on ([`FromPage::Transfer`]); the conversation ends for this
    /// agent.
    Transferred {
        /// Where to, as the agent asked.
        target: String,
    },
    /// How the agent's consultation goes: `ringing` (the target is called, the caller
    /// holds), `connected` (the agent talks with the target), `failed` (back with the caller;
    /// `message` says why), `cancelled` (back with the caller), `completed` (the caller is with
    /// the target; the conversation ends for this agent).
    Consult {
        /// The stage.
        stage: &'static str,
        /// The target as the agent named it.
        target: String,
        /// Why it failed, or empty.
        message: String,
    },
    /// A console that goes with the agent's SIP phone: the phone's call, as the agent's state
    /// changes (`ringing`, `on_call`, then anything else when it is over).
    Phone {
        /// The agent's state now.
        state: ivr_acd::AgentState,
        /// The screen pop of the call the phone rings for or talks with.
        pop: Option<ScreenPop>,
    },
    /// Another console or a SIP phone took this agent over: the socket closes.
    Replaced,
    /// Something the agent asked could not be done.
    Error {
        /// What.
        message: String,
    },
}

/// What a console page sends (JSON with `type`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FromPage {
    /// `available` or `away`.
    State {
        /// The state wanted.
        state: String,
    },
    /// Answer the offered call with this SDP offer (the page's microphone, PCMU).
    Answer {
        /// The SDP offer.
        sdp: String,
    },
    /// Decline the offered call, or hang up the conversation.
    Hangup,
    /// Log out: the console's token is forgotten and its socket closes.
    Logout,
    /// Consult `target` (`queue.NAME`, an agent id or a number) while the caller holds, with a
    /// note for the target agent.
    Consult {
        /// Where to.
        target: String,
        /// The note shown to the next agent.
        #[serde(default)]
        note: String,
    },
    /// Complete the consultation: the caller goes to the target.
    ConsultComplete,
    /// Cancel the consultation: back with the caller.
    ConsultCancel,
    /// Pass the caller on (blind transfer) to `target`: `queue.NAME`, an agent id or a
    /// number, with a note for the next agent.
    Transfer {
        /// Where to.
        target: String,
        /// The note shown to the next agent.
        #[serde(default)]
        note: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Ringing,
    /// The page's offer is being answered and its media connected.
    Answering,
    Connected,
}

struct LegSlot {
    tag: String,
    events: mpsc::UnboundedSender<LegEvent>,
    rtp: SocketAddr,
    stage: Stage,
    /// Dropped to stop the leg's media task (the call ended the leg).
    _end: Option<oneshot::Sender<()>>,
    /// The agent hangs up.
    control: Option<mpsc::UnboundedSender<Control>>,
}

struct Console {
    conn: u64,
    page: mpsc::UnboundedSender<ToPage>,
    leg: Option<LegSlot>,
    /// The state last told to the page.
    state: Option<ivr_acd::AgentState>,
    /// The agent takes its calls on a SIP phone: the console registers nothing.
    phone: bool,
}

/// The consoles connected now and their legs.
pub struct AgentHub {
    acd: AcdHandle,
    consoles: Mutex<HashMap<String, Console>>,
    next_conn: AtomicU64,
}

/// A console's connection to the hub: its messages, until the hub drops it (replaced).
pub struct Attached {
    /// Identifies this connection of the agent's.
    pub conn: u64,
    /// What to send to the page.
    pub rx: mpsc::UnboundedReceiver<ToPage>,
}

impl AgentHub {
    /// A hub whose consoles register with `acd`.
    pub fn new(acd: AcdHandle) -> Arc<AgentHub> {
        Arc::new(AgentHub {
            acd,
            consoles: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(1),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Console>> {
        self.consoles.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn register(&self, agent: &str, expires: Duration) {
        let _ = self.acd.send(AcdMsg::Registration {
            agent: agent.to_string(),
            contact: contact(agent),
            conn: 0,
            expires,
        });
    }

    /// A console of `agent` connected: it replaces any other, and the agent is registered.
    pub fn attach(&self, agent: &str) -> Attached {
        self.attach_as(agent, false)
    }

    /// A console of `agent` that goes with its SIP phone connected: it replaces any other
    /// console and registers nothing (the phone's registrations stand).
    pub fn attach_phone(&self, agent: &str) -> Attached {
        self.attach_as(agent, true)
    }

    /// Whether `agent`'s console goes with its SIP phone.
    pub fn with_phone(&self, agent: &str) -> bool {
        self.lock().get(agent).is_some_and(|c| c.phone)
    }

    fn attach_as(&self, agent: &str, phone: bool) -> Attached {
        let conn = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let (page, rx) = mpsc::unbounded_channel();
        let old = self.lock().insert(
            agent.to_string(),
            Console {
                conn,
                page,
                leg: None,
                state: None,
                phone,
            },
        );
        let was_browser = old.as_ref().is_some_and(|o| !o.phone);
        if let Some(old) = old {
            let _ = old.page.send(ToPage::Replaced);
            drop_leg(old.leg, "replaced");
        }
        tracing::info!(agent, phone, "agent console connected");
        if !phone {
            self.register(agent, REGISTRATION);
        } else if was_browser {
            // The browser's binding goes; the phone's next REGISTER brings the agent back.
            self.register(agent, Duration::ZERO);
        }
        Attached { conn, rx }
    }

    /// Whether `conn` is still `agent`'s console.
    pub fn current(&self, agent: &str, conn: u64) -> bool {
        self.lock().get(agent).is_some_and(|c| c.conn == conn)
    }

    /// Refreshes the registration of `agent`'s console `conn` (when it still is the one).
    pub fn refresh(&self, agent: &str, conn: u64) -> bool {
        let current = self.current(agent, conn);
        if current && !self.with_phone(agent) {
            self.register(agent, REGISTRATION);
        }
        current
    }

    /// The console `conn` closed: its leg ends and, when it was the agent's binding, the agent
    /// is unregistered.
    pub fn detach(&self, agent: &str, conn: u64) {
        let removed = {
            let mut c = self.lock();
            match c.get(agent) {
                Some(x) if x.conn == conn => c.remove(agent),
                _ => None,
            }
        };
        if let Some(console) = removed {
            tracing::info!(agent, "agent console closed");
            drop_leg(console.leg, "closed");
            if !console.phone {
                self.register(agent, Duration::ZERO);
            }
        }
    }

    /// A SIP registration of `agent` came (`registering`: added or refreshed; else removed):
    /// whether it goes to the ACD. A phone that registers takes the agent over from its
    /// console; a phone's unregistration leaves a console's binding alone.
    pub fn sip_registration(&self, agent: &str, registering: bool) -> bool {
        if self.with_phone(agent) {
            return true;
        }
        if !registering {
            return !self.lock().contains_key(agent);
        }
        let removed = self.lock().remove(agent);
        if let Some(console) = removed {
            tracing::info!(agent, "a SIP phone took over from the agent console");
            let _ = console.page.send(ToPage::Replaced);
            drop_leg(console.leg, "replaced");
        }
        true
    }

    /// Whether any console is connected.
    pub fn any(&self) -> bool {
        !self.lock().is_empty()
    }

    /// The agents' states in the ACD now: each console whose agent's state changed hears it.
    pub fn states<'a>(&self, states: impl Iterator<Item = (&'a str, ivr_acd::AgentState)>) {
        let mut consoles = self.lock();
        for (agent, state) in states {
            if let Some(c) = consoles.get_mut(agent)
                && c.state != Some(state)
            {
                c.state = Some(state);
                let _ = c.page.send(ToPage::State { state });
            }
        }
    }

    /// Tells `agent`'s console page `msg`.
    pub fn tell(&self, agent: &str, conn: u64, msg: ToPage) {
        if let Some(c) = self.lock().get(agent)
            && c.conn == conn
        {
            let _ = c.page.send(msg);
        }
    }

    /// Tells `agent`'s console page `msg`, whichever connection it is (a call's consultation
    /// tells its agent how it goes); nothing when no console of the agent is open.
    pub fn notify(&self, agent: &str, msg: ToPage) {
        if let Some(c) = self.lock().get(agent) {
            let _ = c.page.send(msg);
        }
    }

    /// Offers a call's leg to its agent's console (the call placed it on `webrtc:ID`).
    pub fn offer(&self, leg: BrowserLeg) {
        let mut consoles = self.lock();
        let Some(console) = consoles.get_mut(&leg.agent) else {
            tracing::info!(agent = %leg.agent, "the agent's console is not connected");
            let _ = leg.events.send(LegEvent::Failed(480));
            return;
        };
        if console.leg.is_some() {
            tracing::info!(agent = %leg.agent, "the agent's console has a call already");
            let _ = leg.events.send(LegEvent::Failed(486));
            return;
        }
        if console
            .page
            .send(ToPage::Offer {
                pop: Box::new(leg.pop),
            })
            .is_err()
        {
            let _ = leg.events.send(LegEvent::Failed(480));
            return;
        }
        let _ = leg.events.send(LegEvent::Ringing);
        console.leg = Some(LegSlot {
            tag: leg.tag,
            events: leg.events,
            rtp: leg.rtp,
            stage: Stage::Ringing,
            _end: None,
            control: None,
        });
    }

    /// The call ends its leg `tag` (CANCEL or BYE for a SIP phone).
    pub fn end_leg(&self, tag: &str) {
        let mut consoles = self.lock();
        for c in consoles.values_mut() {
            if c.leg.as_ref().is_some_and(|l| l.tag == tag) {
                if let Some(l) = c.leg.take() {
                    // A connected leg's media task says `ended` as it stops.
                    if l.stage != Stage::Connected {
                        let _ = c.page.send(ToPage::Cancelled);
                    }
                }
                return;
            }
        }
    }

    /// What the page of `agent`'s console `conn` asks.
    pub fn from_page(self: &Arc<Self>, agent: &str, conn: u64, msg: FromPage) {
        match msg {
            FromPage::State { state } => {
                let away = match state.as_str() {
                    "away" => true,
                    "available" => false,
                    other => {
                        let message = format!("the state is `away` or `available`, not `{other}`");
                        self.tell(agent, conn, ToPage::Error { message });
                        return;
                    }
                };
                let _ = self.acd.send(AcdMsg::Away {
                    agent: agent.to_string(),
                    away,
                    reply: None,
                });
            }
            FromPage::Answer { sdp } => self.answer(agent, conn, sdp),
            // The console's socket does it.
            FromPage::Logout
            | FromPage::Transfer { .. }
            | FromPage::Consult { .. }
            | FromPage::ConsultComplete
            | FromPage::ConsultCancel => {}
            FromPage::Hangup => {
                let mut consoles = self.lock();
                let Some(c) = consoles.get_mut(agent).filter(|c| c.conn == conn) else {
                    return;
                };
                match c.leg.as_ref().map(|l| l.stage) {
                    Some(Stage::Ringing) => {
                        if let Some(l) = c.leg.take() {
                            tracing::info!(agent, "the agent declined the call");
                            let _ = l.events.send(LegEvent::Failed(603));
                        }
                        let _ = c.page.send(ToPage::Ended { by: "agent" });
                    }
                    Some(Stage::Answering | Stage::Connected) => {
                        if let Some(ctl) = c.leg.as_ref().and_then(|l| l.control.as_ref()) {
                            let _ = ctl.send(Control::Hangup);
                        }
                    }
                    None => {}
                }
            }
        }
    }

    fn answer(self: &Arc<Self>, agent: &str, conn: u64, offer: String) {
        let mut consoles = self.lock();
        let Some(c) = consoles.get_mut(agent).filter(|c| c.conn == conn) else {
            return;
        };
        let Some(leg) = c.leg.as_mut().filter(|l| l.stage == Stage::Ringing) else {
            let message = "no call to answer".to_string();
            let _ = c.page.send(ToPage::Error { message });
            return;
        };
        let (end_tx, end_rx) = oneshot::channel();
        let (control_tx, control_rx) = mpsc::unbounded_channel();
        leg.stage = Stage::Answering;
        leg._end = Some(end_tx);
        leg.control = Some(control_tx.clone());
        let media = Media {
            _control: control_tx,
            hub: Arc::clone(self),
            agent: agent.to_string(),
            tag: leg.tag.clone(),
            rtp: leg.rtp,
            events: leg.events.clone(),
            page: c.page.clone(),
            end: end_rx,
            control: control_rx,
        };
        tokio::spawn(media.run(offer));
    }

    /// The leg's media is up.
    fn connected(&self, agent: &str, tag: &str) -> bool {
        let mut consoles = self.lock();
        match consoles
            .get_mut(agent)
            .and_then(|c| c.leg.as_mut())
            .filter(|l| l.tag == tag)
        {
            Some(l) => {
                l.stage = Stage::Connected;
                true
            }
            None => false,
        }
    }

    /// The leg `tag` of `agent` is over on the console's side.
    fn forget(&self, agent: &str, tag: &str) {
        if let Some(c) = self.lock().get_mut(agent)
            && c.leg.as_ref().is_some_and(|l| l.tag == tag)
        {
            c.leg = None;
        }
    }
}

/// The status a leg fails with when its console went away while it rang (410 Gone): the
/// call counts it as lost, not as the agent's refusal or a ring-out.
pub const GONE: u16 = 410;

/// A leg that goes because its console went: the call hears why.
fn drop_leg(leg: Option<LegSlot>, why: &str) {
    let Some(l) = leg else { return };
    // The media task, if any, stops as the slot is dropped.
    let ev = match l.stage {
        Stage::Ringing | Stage::Answering => LegEvent::Failed(GONE),
        Stage::Connected => LegEvent::Bye,
    };
    let _ = l.events.send(ev);
    tracing::debug!(why, "the console's leg ends");
}

/// One answered leg's media: the answer to the page's offer, the connection, the relay.
struct Media {
    hub: Arc<AgentHub>,
    agent: String,
    tag: String,
    rtp: SocketAddr,
    events: mpsc::UnboundedSender<LegEvent>,
    page: mpsc::UnboundedSender<ToPage>,
    end: oneshot::Receiver<()>,
    control: mpsc::UnboundedReceiver<Control>,
    /// Keeps `control` open when the slot goes: only `end` says the call ended the leg.
    _control: mpsc::UnboundedSender<Control>,
}

impl Media {
    async fn run(mut self, offer: String) {
        let answered = tokio::select! {
            s = Session::answer(&offer) => s,
            _ = &mut self.end => return,
        };
        let mut session = match answered {
            Ok(s) => s,
            Err(e) => {
                tracing::info!(error = %e, "the agent's offer was refused");
                let _ = self.page.send(ToPage::Error {
                    message: e.to_string(),
                });
                let _ = self.page.send(ToPage::Ended { by: "failed" });
                let _ = self.events.send(LegEvent::Failed(488));
                self.hub.forget(&self.agent, &self.tag);
                return;
            }
        };
        let _ = self.page.send(ToPage::Answer {
            sdp: session.answer.clone(),
        });
        let relay = webrtc::Relay::bind(self.rtp).await.ok();
        let relay_addr = relay.as_ref().and_then(|r| r.addr().ok());
        // Some(true): connected; Some(false): failed; None: the agent hung up meanwhile.
        let link = match (&relay, relay_addr) {
            (Some(_), Some(_)) => tokio::select! {
                ok = session.connected(CONNECT) => Ok(Some(ok)),
                _ = &mut self.end => Err(()),
                _ = self.control.recv() => Ok(None),
            },
            _ => Ok(Some(false)),
        };
        let Ok(link) = link else {
            // The call ended the leg meanwhile (the page heard `cancelled`).
            session.close().await;
            return;
        };
        let (Some(relay), Some(relay_addr), Some(true)) = (relay, relay_addr, link) else {
            session.close().await;
            let (by, code) = if link.is_none() {
                tracing::info!(agent = %self.agent, "the agent hung up before the media connected");
                ("agent", 603)
            } else {
                tracing::info!(agent = %self.agent, "the agent's media did not connect");
                ("failed", 408)
            };
            let _ = self.page.send(ToPage::Ended { by });
            let _ = self.events.send(LegEvent::Failed(code));
            self.hub.forget(&self.agent, &self.tag);
            return;
        };
        if !self.hub.connected(&self.agent, &self.tag) {
            // The call moved on while the media connected.
            session.close().await;
            return;
        }
        tracing::info!(agent = %self.agent, "the agent answered in the browser");
        let _ = self.events.send(LegEvent::Answered(Negotiated {
            index: 0,
            law: Law::Ulaw,
            pt: 0,
            event_pt: Some(sdp::DEFAULT_EVENT_PT),
            remote: Some(relay_addr),
            direction: Direction::SendRecv,
            srtp: None,
        }));
        let _ = self.page.send(ToPage::Connected);
        let end = &mut self.end;
        let stop = async move {
            let _ = end.await;
        };
        let how = webrtc::relay(&mut session, &relay, &mut self.control, stop).await;
        session.close().await;
        let by = match how {
            RelayEnd::CallOver => "caller",
            RelayEnd::Hangup | RelayEnd::Terminate => {
                tracing::info!(agent = %self.agent, "the agent hung up");
                let _ = self.events.send(LegEvent::Bye);
                "agent"
            }
        };
        let _ = self.page.send(ToPage::Ended { by });
        self.hub.forget(&self.agent, &self.tag);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub() -> (Arc<AgentHub>, mpsc::UnboundedReceiver<AcdMsg>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (AgentHub::new(tx), rx)
    }

    fn leg(tag: &str, agent: &str) -> (BrowserLeg, mpsc::UnboundedReceiver<LegEvent>) {
        let (events, rx) = mpsc::unbounded_channel();
        let pop = ScreenPop {
            caller: "13800000001".into(),
            queue: "general".into(),
            ..ScreenPop::default()
        };
        let leg = BrowserLeg {
            tag: tag.into(),
            agent: agent.into(),
            pop,
            rtp: "127.0.0.1:4000".parse().expect("addr"),
            events,
        };
        (leg, rx)
    }

    fn registrations(rx: &mut mpsc::UnboundedReceiver<AcdMsg>) -> Vec<(String, String, u64)> {
        let mut out = Vec::new();
        while let Ok(m) = rx.try_recv() {
            if let AcdMsg::Registration {
                agent,
                contact,
                expires,
                ..
            } = m
            {
                out.push((agent, contact.uri, expires.as_secs()));
            }
        }
        out
    }

    #[test]
    fn a_console_hears_its_agent_s_state_when_it_changes() {
        use ivr_acd::AgentState;
        let (hub, _acd) = hub();
        assert!(!hub.any());
        let mut a = hub.attach("2001");
        assert!(hub.any());
        hub.states([("2001", AgentState::Available), ("2002", AgentState::Away)].into_iter());
        assert_eq!(
            a.rx.try_recv().ok(),
            Some(ToPage::State {
                state: AgentState::Available
            })
        );
        hub.states([("2001", AgentState::Available)].into_iter());
        assert!(a.rx.try_recv().is_err());
        hub.states([("2001", AgentState::WrapUp)].into_iter());
        assert_eq!(
            a.rx.try_recv().ok(),
            Some(ToPage::State {
                state: AgentState::WrapUp
            })
        );
    }

    #[test]
    fn contacts_name_their_agent() {
        assert_eq!(contact("2001").uri, "webrtc:2001");
        assert_eq!(agent_of("webrtc:2001"), Some("2001"));
        assert_eq!(agent_of("webrtc:"), None);
        assert_eq!(agent_of("sip:2001@127.0.0.1"), None);
    }

    #[test]
    fn a_console_registers_while_connected_and_unregisters_when_closed() {
        let (hub, mut acd) = hub();
        let a = hub.attach("2001");
        assert_eq!(
            registrations(&mut acd),
            vec![("2001".into(), "webrtc:2001".into(), 120)]
        );
        assert!(hub.refresh("2001", a.conn));
        assert_eq!(registrations(&mut acd).len(), 1);
        hub.detach("2001", a.conn);
        assert_eq!(
            registrations(&mut acd),
            vec![("2001".into(), "webrtc:2001".into(), 0)]
        );
        assert!(!hub.refresh("2001", a.conn));
        assert!(registrations(&mut acd).is_empty());
    }

    #[test]
    fn a_console_with_a_sip_phone_registers_nothing_and_leaves_the_phone_alone() {
        let (hub, mut acd) = hub();
        let mut a = hub.attach_phone("2001");
        assert!(registrations(&mut acd).is_empty());
        assert!(hub.with_phone("2001"));
        assert!(hub.refresh("2001", a.conn));
        assert!(registrations(&mut acd).is_empty());
        // The phone's registrations go to the ACD and the console stays.
        assert!(hub.sip_registration("2001", true));
        assert!(hub.sip_registration("2001", false));
        assert!(a.rx.try_recv().is_err());
        assert!(hub.current("2001", a.conn));
        hub.notify("2001", ToPage::Connected);
        assert_eq!(a.rx.try_recv().ok(), Some(ToPage::Connected));
        hub.detach("2001", a.conn);
        assert!(registrations(&mut acd).is_empty());
        // A browser console replaced by a phone's console gives up its binding.
        let b = hub.attach("2002");
        let _ = registrations(&mut acd);
        let c = hub.attach_phone("2002");
        assert_ne!(b.conn, c.conn);
        assert_eq!(
            registrations(&mut acd),
            vec![("2002".into(), "webrtc:2002".into(), 0)]
        );
    }

    #[test]
    fn an_offer_rings_the_console_and_the_call_cancels_it() {
        let (hub, _acd) = hub();
        let mut a = hub.attach("2001");
        let (l, mut events) = leg("t1", "2001");
        hub.offer(l);
        assert_eq!(events.try_recv().ok(), Some(LegEvent::Ringing));
        match a.rx.try_recv() {
            Ok(ToPage::Offer { pop }) => assert_eq!(pop.caller, "13800000001"),
            other => panic!("{other:?}"),
        }
        // A second call while this one rings: busy.
        let (l2, mut events2) = leg("t2", "2001");
        hub.offer(l2);
        assert_eq!(events2.try_recv().ok(), Some(LegEvent::Failed(486)));
        // Another tag does not touch it; its own does.
        hub.end_leg("t2");
        assert!(a.rx.try_recv().is_err());
        hub.end_leg("t1");
        assert_eq!(a.rx.try_recv().ok(), Some(ToPage::Cancelled));
        // Free for the next one.
        let (l3, mut events3) = leg("t3", "2001");
        hub.offer(l3);
        assert_eq!(events3.try_recv().ok(), Some(LegEvent::Ringing));
    }

    #[test]
    fn an_offer_to_an_agent_without_a_console_fails() {
        let (hub, _acd) = hub();
        let (l, mut events) = leg("t1", "2002");
        hub.offer(l);
        assert_eq!(events.try_recv().ok(), Some(LegEvent::Failed(480)));
    }

    #[test]
    fn the_agent_declines_or_closes_the_console_while_it_rings() {
        let (hub, mut acd) = hub();
        let mut a = hub.attach("2001");
        let (l, mut events) = leg("t1", "2001");
        hub.offer(l);
        let _ = events.try_recv();
        let _ = a.rx.try_recv();
        hub.from_page("2001", a.conn, FromPage::Hangup);
        assert_eq!(events.try_recv().ok(), Some(LegEvent::Failed(603)));
        assert_eq!(a.rx.try_recv().ok(), Some(ToPage::Ended { by: "agent" }));

        let (l, mut events) = leg("t2", "2001");
        hub.offer(l);
        let _ = events.try_recv();
        let _ = registrations(&mut acd);
        hub.detach("2001", a.conn);
        assert_eq!(events.try_recv().ok(), Some(LegEvent::Failed(GONE)));
        assert_eq!(registrations(&mut acd).len(), 1);
    }

    #[test]
    fn answering_without_a_call_is_an_error_and_states_go_to_the_acd() {
        let (hub, mut acd) = hub();
        let mut a = hub.attach("2001");
        let _ = registrations(&mut acd);
        hub.from_page("2001", a.conn, FromPage::Answer { sdp: "v=0".into() });
        assert!(matches!(a.rx.try_recv(), Ok(ToPage::Error { .. })));
        hub.from_page(
            "2001",
            a.conn,
            FromPage::State {
                state: "away".into(),
            },
        );
        assert!(matches!(
            acd.try_recv(),
            Ok(AcdMsg::Away { agent, away: true, .. }) if agent == "2001"
        ));
        hub.from_page(
            "2001",
            a.conn,
            FromPage::State {
                state: "lunch".into(),
            },
        );
        assert!(matches!(a.rx.try_recv(), Ok(ToPage::Error { .. })));
    }

    #[test]
    fn a_second_console_or_a_sip_phone_takes_the_agent_over() {
        let (hub, mut acd) = hub();
        let mut first = hub.attach("2001");
        let (l, mut events) = leg("t1", "2001");
        hub.offer(l);
        let _ = events.try_recv();
        let _ = first.rx.try_recv();
        let mut second = hub.attach("2001");
        assert_eq!(first.rx.try_recv().ok(), Some(ToPage::Replaced));
        assert_eq!(events.try_recv().ok(), Some(LegEvent::Failed(GONE)));
        // The first one closing does not unregister the second.
        let _ = registrations(&mut acd);
        hub.detach("2001", first.conn);
        assert!(registrations(&mut acd).is_empty());
        assert!(!hub.refresh("2001", first.conn));
        // A phone's unregistration leaves the console alone; its registration takes over.
        assert!(!hub.sip_registration("2001", false));
        assert!(hub.current("2001", second.conn));
        assert!(hub.sip_registration("2001", true));
        assert_eq!(second.rx.try_recv().ok(), Some(ToPage::Replaced));
        assert!(!hub.current("2001", second.conn));
        assert!(hub.sip_registration("2001", false));
        hub.detach("2001", second.conn);
        assert!(registrations(&mut acd).is_empty());
    }
}
