//! The nodes' messages to each other for the cluster-wide ACD, over PostgreSQL's
//! `LISTEN`/`NOTIFY` (no port of its own: the shared database authenticates every node).
//! Each node listens on its own channel ([`node_channel`]), on the leader's
//! ([`LEADER_CHANNEL`], which only the node that leads reads) and on [`CHANGED_CHANNEL`]
//! (the leader's ACD changed: pages ask again). A message is one compact JSON [`Envelope`]
//! of less than 8000 bytes (larger ones are refused and logged); one task sends them in
//! order. A question ([`Bus::ask`]) is answered by a [`Wire::Reply`] on the asker's channel,
//! or not at all within its timeout.

use crate::acd_task::{LeaveReason, TransferTo};
use crate::consult_request::ConsultAction;
use crate::screen_pop::ScreenPop;
use ivr_acd::{CallKey, Contact, Decline, Routing, TransferRefused};
use ivr_data::cluster::PgPool;
use ivr_data::cluster_acd::{self, MAX_PAYLOAD};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// The channel only the leader reads.
pub const LEADER_CHANNEL: &str = "ivr_acd_leader";

/// The channel every node reads: the leader's ACD changed.
pub const CHANGED_CHANNEL: &str = "ivr_acd_changed";

/// Messages waiting to be sent (more are refused and logged).
pub const OUT_QUEUE: usize = 16_384;

/// Questions waiting for their answer (more are refused at once).
pub const MAX_PENDING: usize = 4_096;

/// Messages received waiting for the front (more are dropped and logged).
pub const IN_QUEUE: usize = 16_384;

/// The channel of node `node` (names are letters, digits, `-` and `_`).
pub fn node_channel(node: &str) -> String {
    format!("ivr_acd_node_{}", node.to_ascii_lowercase())
}

/// One message: who sent it and what it says.
#[derive(Debug, Serialize, Deserialize)]
pub struct Envelope {
    /// The sending node.
    pub n: String,
    /// The message.
    pub w: Wire,
}

/// What nodes tell each other. To the leader: a call's or an agent's
/// [`crate::acd_task::AcdMsg`] without its channels; to a node: what the ACD says to one of
/// its calls, and questions about them; either way: answers.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum Wire {
    Enqueue {
        call: CallKey,
        queue: String,
        skills: Vec<String>,
        priority: i64,
        routing: Routing,
        pop: Box<ScreenPop>,
    },
    Transfer {
        from: CallKey,
        call: CallKey,
        target: TransferTo,
        pop: Box<ScreenPop>,
    },
    Consult {
        call: CallKey,
        target: TransferTo,
        pop: Box<ScreenPop>,
    },
    Redirect {
        call: CallKey,
    },
    /// A bridged call taken over by the sending node: talking with `agent` again.
    Resumed {
        call: CallKey,
        queue: String,
        agent: String,
        pop: Box<ScreenPop>,
    },
    Leave {
        call: CallKey,
        why: LeaveReason,
    },
    KeepCallback {
        call: CallKey,
    },
    Answered {
        call: CallKey,
        agent: String,
    },
    Declined {
        call: CallKey,
        why: Decline,
    },
    Over {
        call: CallKey,
    },
    Registration {
        agent: String,
        contact: Contact,
        expires_ms: u64,
    },
    AgentTransfer {
        id: u64,
        agent: String,
        target: String,
        note: String,
    },
    AgentConsult {
        id: u64,
        agent: String,
        action: ConsultAction,
    },
    PhoneConsult {
        id: u64,
        by: String,
        call: CallKey,
        target: TransferTo,
    },
    Away {
        id: u64,
        agent: String,
        away: bool,
    },
    /// To a node: an event of one of its calls.
    Event {
        call: CallKey,
        ev: WireEvent,
    },
    /// To a node: the agent talking with its call asks to pass it on.
    PassOn {
        id: u64,
        call: CallKey,
        by: String,
        target: String,
        note: String,
    },
    /// To a node: the agent talking with its call asks something of its consultation.
    AskConsult {
        id: u64,
        call: CallKey,
        by: String,
        action: ConsultAction,
    },
    /// The answer to question `id`.
    Reply {
        id: u64,
        a: Value,
    },
    /// The leader's ACD changed.
    Changed,
}

/// A [`crate::acd_task::QueueEvent`] without channels.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "e", rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum WireEvent {
    Offer {
        agent: String,
        contact: Contact,
        waited: Option<u64>,
    },
    Cancel {
        agent: String,
    },
    Position {
        n: u32,
    },
    NoAgents,
    Connected,
    Passed {
        r: Result<CallKey, TransferRefused>,
    },
}

/// This node's end of the bus: it sends in order (one task) and keeps the questions it asked.
#[derive(Debug)]
pub struct Bus {
    node: String,
    out: mpsc::Sender<(String, String)>,
    pending: Mutex<HashMap<u64, oneshot::Sender<Value>>>,
    next: AtomicU64,
}

impl Bus {
    /// Starts the sending task on `pool` for node `node`.
    pub fn start(pool: PgPool, node: String) -> std::sync::Arc<Bus> {
        let (out, mut rx) = mpsc::channel::<(String, String)>(OUT_QUEUE);
        tokio::spawn(async move {
            while let Some((channel, payload)) = rx.recv().await {
                if let Err(e) = cluster_acd::notify(&pool, &channel, &payload).await {
                    tracing::warn!(channel = %channel, error = %e, "ACD bus: a message was not sent");
                }
            }
        });
        std::sync::Arc::new(Bus {
            node,
            out,
            pending: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
        })
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Sends `w` on `channel`; `false` (logged) when it is too large or the queue is full.
    pub fn send(&self, channel: &str, w: Wire) -> bool {
        let env = Envelope {
            n: self.node.clone(),
            w,
        };
        let payload = match serde_json::to_string(&env) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "ACD bus: a message cannot be written");
                return false;
            }
        };
        if payload.len() >= MAX_PAYLOAD {
            tracing::warn!(
                bytes = payload.len(),
                channel,
                "ACD bus: a message over {MAX_PAYLOAD} bytes is refused"
            );
            return false;
        }
        if self.out.try_send((channel.to_string(), payload)).is_err() {
            tracing::warn!(
                channel,
                "ACD bus: the sending queue is full; a message is dropped"
            );
            return false;
        }
        true
    }

    /// Asks on `channel` the question `make(id)` builds and waits `within` for its answer.
    pub async fn ask(
        &self,
        channel: &str,
        make: impl FnOnce(u64) -> Wire,
        within: Duration,
    ) -> Option<Value> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        {
            let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            if p.len() >= MAX_PENDING {
                tracing::warn!("ACD bus: too many questions waiting; one refused");
                return None;
            }
            p.insert(id, tx);
        }
        let answer = if self.send(channel, make(id)) {
            tokio::time::timeout(within, rx)
                .await
                .ok()
                .and_then(Result::ok)
        } else {
            None
        };
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        answer
    }

    /// An answer came: to the question waiting for it, if any still does.
    pub fn answered(&self, id: u64, a: Value) {
        let tx = self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        if let Some(tx) = tx {
            let _ = tx.send(a);
        }
    }

    /// Answers question `id` of node `to`.
    pub fn reply(&self, to: &str, id: u64, a: impl Serialize) {
        let a = serde_json::to_value(a).unwrap_or(Value::Null);
        self.send(&node_channel(to), Wire::Reply { id, a });
    }
}

/// Listens for node `node` on its channel, the leader's and [`CHANGED_CHANNEL`], and hands
/// each message to `to` (reconnecting when the connection is lost; messages sent meanwhile
/// are lost).
pub async fn listen(url: String, node: String, to: mpsc::Sender<(String, Envelope)>) {
    let own = node_channel(&node);
    let mut failing = false;
    loop {
        let mut l = match ivr_data::cluster_acd::Listener::connect(
            &url,
            &[own.as_str(), LEADER_CHANNEL, CHANGED_CHANNEL],
        )
        .await
        {
            Ok(l) => l,
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "ACD bus: cannot listen");
                }
                failing = true;
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        failing = false;
        loop {
            match l.recv().await {
                Ok((channel, payload)) => {
                    if payload.len() >= MAX_PAYLOAD {
                        continue;
                    }
                    match serde_json::from_str::<Envelope>(&payload) {
                        Ok(env) => {
                            if to.try_send((channel, env)).is_err() {
                                if to.is_closed() {
                                    return;
                                }
                                tracing::warn!(
                                    "ACD bus: the front is behind; a message is dropped"
                                );
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "ACD bus: a message not understood"),
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "ACD bus: listening failed");
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A message of 8000 bytes or more is refused before it reaches PostgreSQL; a call key
    /// beyond JavaScript's integers and every event survive the JSON both ways.
    #[tokio::test]
    async fn oversized_messages_are_refused_and_keys_survive_the_wire() {
        let pool = PgPool::connect_lazy("postgres://nobody@127.0.0.1:1/none").expect("lazy pool");
        let bus = Bus::start(pool, "a".into());
        let pop = ScreenPop {
            caller: "9".repeat(MAX_PAYLOAD),
            ..ScreenPop::default()
        };
        let big = Wire::Enqueue {
            call: 1,
            queue: "general".into(),
            skills: Vec::new(),
            priority: 0,
            routing: Routing::default(),
            pop: Box::new(pop),
        };
        assert!(!bus.send(LEADER_CHANNEL, big));
        let small = Wire::Leave {
            call: u64::MAX,
            why: LeaveReason::Hangup,
        };
        assert!(bus.send(LEADER_CHANNEL, small));
        let env = Envelope {
            n: "b".into(),
            w: Wire::Event {
                call: u64::MAX - 1,
                ev: WireEvent::Passed {
                    r: Err(TransferRefused::NoAgents("general".into())),
                },
            },
        };
        let text = serde_json::to_string(&env).expect("json");
        let back: Envelope = serde_json::from_str(&text).expect("back");
        match back.w {
            Wire::Event {
                call,
                ev: WireEvent::Passed { r: Err(e) },
            } => {
                assert_eq!(call, u64::MAX - 1);
                assert_eq!(e, TransferRefused::NoAgents("general".into()));
            }
            other => panic!("{other:?}"),
        }
        // An answer nobody waits for is dropped.
        bus.answered(99, Value::Null);
        assert!(bus.pending.lock().expect("lock").is_empty());
    }
}
