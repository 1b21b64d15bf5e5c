//! The ACD task of `ivr serve`: one tokio task that owns the sans-IO [`Acd`], takes agent
//! registrations from the SIP core and queue operations from calls, runs its timers (ring
//! timeouts, wrap-up, expiry, position updates), and hands each output to the call it is
//! for. It also keeps the screen pop of every call in a queue, for the agent page.

use crate::acd::{Acd, AcdOut, AcdStatus, CallKey, Contact, Decline};
use crate::engine::Millis;
use crate::serve::call::local_now;
use ivr_compiler::config::Config;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// What a call waiting in a queue hears from the ACD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueEvent {
    /// Ring this agent.
    Offer {
        /// The agent's id.
        agent: String,
        /// Where the agent's phone is.
        contact: Contact,
        /// The TCP connection it registered over (0 for UDP).
        conn: u64,
    },
    /// Stop ringing that agent (ring timeout: the ACD moved on).
    Cancel {
        /// The agent's id.
        agent: String,
    },
    /// The caller's place in line.
    Position(u32),
    /// Nobody who could take the call is logged in.
    NoAgents,
}

/// The call data an agent sees (screen pop), as JSON for the agent page and as `X-IVR-*`
/// headers on the INVITE.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct ScreenPop {
    /// The call id.
    pub call_id: String,
    /// The calling number.
    pub caller: String,
    /// The dialled number.
    pub called: String,
    /// The flow.
    pub flow: String,
    /// The queue.
    pub queue: String,
    /// The priority it waits with.
    pub priority: i64,
    /// The attached call data: label (as written in the flow) and value.
    pub data: Vec<(String, String)>,
    /// The nodes the caller went through, in order (the last ones).
    pub path: Vec<String>,
}

impl ScreenPop {
    /// The `X-IVR-*` headers of the INVITE to the agent.
    pub fn headers(&self) -> Vec<(String, String)> {
        use crate::sip::outbound::header_name;
        let mut h = vec![
            ("X-IVR-Call-Id".to_string(), self.call_id.clone()),
            ("X-IVR-Caller".to_string(), self.caller.clone()),
            ("X-IVR-Called".to_string(), self.called.clone()),
            ("X-IVR-Flow".to_string(), self.flow.clone()),
        ];
        if !self.queue.is_empty() {
            h.push(("X-IVR-Queue".to_string(), self.queue.clone()));
            h.push(("X-IVR-Priority".to_string(), self.priority.to_string()));
        }
        for (label, value) in &self.data {
            let name = format!("X-IVR-{}", header_name(label));
            // `attach caller` says what X-IVR-Caller already does.
            if name.len() > 6 && !h.iter().any(|(n, _)| n.eq_ignore_ascii_case(&name)) {
                h.push((name, value.clone()));
            }
        }
        if !self.path.is_empty() {
            h.push(("X-IVR-Path".to_string(), self.path.join(",")));
        }
        h
    }
}

/// What calls and the server tell the ACD task.
#[derive(Debug)]
pub enum AcdMsg {
    /// Put a call in a queue.
    Enqueue {
        /// The call's key.
        call: CallKey,
        /// The queue.
        queue: String,
        /// The node's `skills`.
        skills: Vec<String>,
        /// Its priority.
        priority: i64,
        /// What the agent sees.
        pop: Box<ScreenPop>,
        /// Where the call hears back.
        to: mpsc::UnboundedSender<QueueEvent>,
    },
    /// The caller left the queue (hung up, `max_wait`).
    Leave(CallKey),
    /// The offered agent answered.
    Answered(CallKey),
    /// The offer failed.
    Declined(CallKey, Decline),
    /// The conversation is over (either side hung up).
    ConversationOver(CallKey),
    /// An agent registered, refreshed (`expires` > 0) or removed its registration.
    Registration {
        /// The agent's id.
        agent: String,
        /// Where its phone is.
        contact: Contact,
        /// The TCP connection it registered over (0 for UDP).
        conn: u64,
        /// For how long.
        expires: Duration,
    },
    /// A new configuration went live.
    Reconfigure(Arc<Config>),
    /// An agent sets itself away or back.
    Away {
        /// The agent's id.
        agent: String,
        /// Away (true) or available (false).
        away: bool,
    },
    /// The ACD's state and the screen pops of calls with agents.
    Status(oneshot::Sender<AcdSnapshot>),
}

/// The ACD's state as the HTTP interface shows it.
#[derive(Debug, Clone, Serialize)]
pub struct AcdSnapshot {
    /// Agents and queues.
    #[serde(flatten)]
    pub status: AcdStatus,
    /// The screen pop of each call offered to or talking with an agent, by agent id.
    pub screen_pops: HashMap<String, ScreenPop>,
}

/// Where calls to a registered agent go: over UDP to the host and port of its Contact (the
/// source of the REGISTER when the Contact names no IP address); over TCP back through the
/// connection it registered on.
pub fn contact_of(r: &crate::sip::registrar::Registration) -> Contact {
    use crate::sip::transport::Proto;
    let tcp = r.peer.proto == Proto::Tcp;
    let from_uri = rsip::Uri::try_from(crate::sip::message::uri_of(&r.contact))
        .ok()
        .and_then(|u| {
            let ip: std::net::IpAddr = u
                .host_with_port
                .host
                .to_string()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse()
                .ok()?;
            let port = u.host_with_port.port.map_or(5060, |p| *p.value());
            Some(std::net::SocketAddr::new(ip, port))
        });
    Contact {
        uri: crate::sip::message::uri_of(&r.contact).to_string(),
        addr: if tcp {
            r.peer.addr
        } else {
            from_uri.unwrap_or(r.peer.addr)
        },
        tcp,
    }
}

/// The handle calls use.
pub type AcdHandle = mpsc::UnboundedSender<AcdMsg>;

/// Starts the ACD task for a configuration.
pub fn start(config: &Config) -> AcdHandle {
    let (tx, rx) = mpsc::unbounded_channel();
    let acd = Acd::new(config);
    tokio::spawn(run(acd, rx));
    tx
}

struct Waiting {
    to: mpsc::UnboundedSender<QueueEvent>,
    pop: ScreenPop,
}

/// The task's state beside the [`Acd`].
#[derive(Default)]
struct Book {
    calls: HashMap<CallKey, Waiting>,
    /// Agent id → the TCP connection of its registration.
    conns: HashMap<String, u64>,
}

async fn run(mut acd: Acd, mut rx: mpsc::UnboundedReceiver<AcdMsg>) {
    let mut book = Book::default();
    let mut out: Vec<AcdOut> = Vec::with_capacity(64);
    loop {
        let now = local_now();
        let wait = acd.poll_timeout().map_or(Duration::from_secs(3600), |at| {
            Duration::from_millis((at - now).max(0) as u64)
        });
        let msg = tokio::select! {
            m = rx.recv() => match m {
                Some(m) => Some(m),
                None => return,
            },
            () = tokio::time::sleep(wait) => None,
        };
        let now = local_now();
        out.clear();
        match msg {
            None => acd.handle_timeout(now, &mut out),
            Some(m) => on_msg(&mut acd, &mut book, m, now, &mut out),
        }
        for o in out.drain(..) {
            dispatch(&mut book, o);
        }
    }
}

fn on_msg(acd: &mut Acd, book: &mut Book, m: AcdMsg, now: Millis, out: &mut Vec<AcdOut>) {
    match m {
        AcdMsg::Enqueue {
            call,
            queue,
            skills,
            priority,
            pop,
            to,
        } => {
            book.calls.insert(call, Waiting { to, pop: *pop });
            acd.enqueue(call, &queue, &skills, priority, now, out);
        }
        AcdMsg::Leave(call) => {
            book.calls.remove(&call);
            acd.leave(call, now, out);
        }
        AcdMsg::Answered(call) => acd.answered(call, now, out),
        AcdMsg::Declined(call, why) => acd.declined(call, why, now, out),
        AcdMsg::ConversationOver(call) => {
            book.calls.remove(&call);
            acd.conversation_over(call, now, out);
        }
        AcdMsg::Registration {
            agent,
            contact,
            conn,
            expires,
        } => {
            book.conns.insert(agent.clone(), conn);
            if expires.is_zero() {
                tracing::info!(agent = %agent, "agent unregistered");
                acd.unregister(&agent, now, out);
            } else {
                let uri = contact.uri.clone();
                let expires_at = now + expires.as_millis() as Millis;
                match acd.register(&agent, contact, expires_at, now, out) {
                    Ok(()) => tracing::debug!(agent = %agent, contact = %uri, "agent registered"),
                    Err(e) => tracing::warn!(agent = %agent, error = %e, "registration not taken"),
                }
            }
        }
        AcdMsg::Reconfigure(config) => acd.reconfigure(&config, now, out),
        AcdMsg::Away { agent, away } => {
            if let Err(e) = acd.set_away(&agent, away, now, out) {
                tracing::info!(agent = %agent, error = %e, "away refused");
            }
        }
        AcdMsg::Status(reply) => {
            let screen_pops = book
                .calls
                .iter()
                .filter_map(|(k, w)| acd.agent_of(*k).map(|a| (a.to_string(), w.pop.clone())))
                .collect();
            let _ = reply.send(AcdSnapshot {
                status: acd.status(now),
                screen_pops,
            });
        }
    }
}

fn dispatch(book: &mut Book, o: AcdOut) {
    let calls = &mut book.calls;
    let (call, ev) = match o {
        AcdOut::Offer {
            call,
            agent,
            contact,
        } => {
            let conn = book.conns.get(&agent).copied().unwrap_or(0);
            (
                call,
                QueueEvent::Offer {
                    agent,
                    contact,
                    conn,
                },
            )
        }
        AcdOut::Cancel { call, agent } => (call, QueueEvent::Cancel { agent }),
        AcdOut::Position { call, position } => (call, QueueEvent::Position(position)),
        AcdOut::NoAgents { call } => {
            if let Some(w) = calls.remove(&call) {
                let _ = w.to.send(QueueEvent::NoAgents);
            }
            return;
        }
    };
    if let Some(w) = calls.get(&call) {
        let _ = w.to.send(ev);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_screen_pop_goes_into_headers() {
        let pop = ScreenPop {
            call_id: "c1".into(),
            caller: "13800000001".into(),
            called: "10010".into(),
            flow: "hotline".into(),
            queue: "general".into(),
            priority: 10,
            data: vec![
                ("customer.id".into(), "42".into()),
                ("customer.name".into(), "王芳".into()),
            ],
            path: vec!["welcome".into(), "main_menu".into()],
        };
        let h = pop.headers();
        let get = |n: &str| h.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
        assert_eq!(get("X-IVR-Caller"), Some("13800000001"));
        assert_eq!(get("X-IVR-Customer-Id"), Some("42"));
        assert_eq!(get("X-IVR-Customer-Name"), Some("王芳"));
        assert_eq!(get("X-IVR-Queue"), Some("general"));
        assert_eq!(get("X-IVR-Priority"), Some("10"));
        assert_eq!(get("X-IVR-Path"), Some("welcome,main_menu"));
    }
}
