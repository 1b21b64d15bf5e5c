//! The call engine: one sans-IO state machine per call.
//!
//! A [`Call`] is a [`Machine`] (the one sans-IO style of `ivr_sansio`): it is handed
//! [`Event`]s (call started, key pressed, playback finished, query result, transfer progress,
//! recording finished, hang-up) with `handle_input(event, now)`, and its driver takes out
//! [`Command`]s (play, say, stop playback, run a query, transfer, record, save survey answers,
//! hang up, end with an outcome) with `poll_output()`. Its timers (a collecting node's first key
//! and next digit, a lookup's timeout, a queue's `max_wait` and position announcements) are its
//! own: `poll_timeout()` says when the next one is due and `handle_timeout(now)` fires it. It
//! does no I/O and reads no clock: the SIP runtime, the WebRTC runtime and the simulator all
//! drive this same machine.
//!
//! Playback is a queue owned by the driver: `Play`, `Say`, `Silence`, `Beep` and `Announce`
//! commands append to it, `StopPlayback` empties it, and the driver reports
//! [`Event::PlaybackDone`] with the sequence number of the last item when the queue drains.
//! Steps queue their prompts and go on at once (a lookup runs while the welcome plays); nodes
//! that need the line (menu, input, survey, transfer, record) and the flow's hang-up wait until
//! the queue has drained. Keys pressed while no node is collecting are type-ahead.

mod call;
pub mod contact;
mod eval;
pub mod resume;
pub mod say;
pub mod sim;
pub mod speak;
pub mod value;

pub use call::reads_masked;
pub use call::{Call, SERVED_MAX};

use crate::value::Value;
use indexmap::IndexMap;
use ivr_compiler::config::{Calendar, QueryDef};
use ivr_compiler::program::{NodeId, Program, PromptId};
use ivr_dsl::ast::SayKind;
use serde::Serialize;
use std::fmt;

pub use ivr_sansio::{Machine, Millis};

/// What a call runs: a compiled program with the parts of the configuration it reads.
#[derive(Debug, Clone)]
pub struct Flow {
    /// The compiled flow.
    pub program: Program,
    /// Business-hours calendars (`in_hours`).
    pub calendars: IndexMap<String, Calendar>,
    /// The data catalog (query fields, for rows).
    pub queries: IndexMap<String, QueryDef>,
    /// The list query of the campaign that runs this flow (`contact`'s fields), if any.
    pub contact_list: Option<String>,
}

impl Flow {
    /// The flow with the calendars and queries of a configuration.
    pub fn new(program: Program, config: &ivr_compiler::config::Config) -> Flow {
        let contact_list =
            ivr_compiler::config::CampaignConfig::of_flow(&config.campaigns, &program.name)
                .map(|(_, c)| c.list.clone());
        Flow {
            program,
            calendars: config.calendars.clone(),
            queries: config.queries.clone(),
            contact_list,
        }
    }
}

/// The channel a call arrived on (`call.channel`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    /// A SIP phone or trunk.
    Sip,
    /// A browser.
    Webrtc,
    /// A simulation or scenario test.
    Sim,
}

impl Channel {
    /// As `call.channel` reads.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Sip => "sip",
            Channel::Webrtc => "webrtc",
            Channel::Sim => "sim",
        }
    }
}

/// Facts about a call known when it starts.
#[derive(Debug, Clone)]
pub struct CallInfo {
    /// The call id (`call.id`).
    pub id: String,
    /// The calling number (`caller`).
    pub caller: String,
    /// The dialled number (`called`).
    pub called: String,
    /// The channel (`call.channel`).
    pub channel: Channel,
    /// `contact`: for a call a campaign placed, its list row (field name and value, the
    /// values typed as the list query declares them); empty for other calls. In such a call
    /// `caller` is the dialled number.
    pub contact: Vec<(String, Value)>,
}

/// A query's answer.
#[derive(Debug, Clone, PartialEq)]
pub enum QueryResult {
    /// At least one row; the first, fields in catalog order.
    Found(Vec<Value>),
    /// No row.
    Missing,
    /// Failure or refusal, with the reason (for logs).
    Error(String),
}

/// Progress of a transfer, reported by the ACD or the outbound leg.
#[derive(Debug, Clone, PartialEq)]
pub enum TransferUpdate {
    /// The caller's place in the queue (1 = next).
    Position(u32),
    /// An agent (or the called number) answered.
    Answered {
        /// The agent's id, for queue transfers.
        agent: Option<String>,
    },
    /// The called number is busy (for `to` transfers; a queue offers the call to another agent).
    Busy,
    /// No agent is logged in or the queue is closed; for `to`, the call could not be placed.
    NoAgents,
    /// The agent (or called party) hung up.
    AgentHungUp,
}

/// Something that happened to a call.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The call was answered: the flow starts at its entry.
    Start,
    /// A DTMF key `0`-`9`, `*`, `#`.
    Key(char),
    /// The playback queue drained; `seq` is the last item played.
    PlaybackDone {
        /// Sequence number of the last queued item.
        seq: u32,
    },
    /// The answer to [`Command::RunQuery`].
    QueryDone {
        /// The query's id.
        id: u32,
        /// The answer.
        result: QueryResult,
    },
    /// Transfer progress.
    Transfer(TransferUpdate),
    /// A recording ended (terminator, silence, length limit).
    RecordingDone {
        /// Length of the audio in milliseconds.
        length_ms: u64,
    },
    /// The caller hung up.
    Hangup,
    /// The platform ends the call at once: its media or network failed (`failure`: the
    /// outcome is `failed`), or the server shuts down. `ended_by` is `system`.
    Terminated {
        /// A media or network failure (no RTP, a broken transport), not a shutdown.
        failure: bool,
    },
}

/// How a call ended: the first of these that applies, in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// An agent (or the number of a `to` transfer) answered.
    Transferred,
    /// The caller kept a callback (key 1 after a transfer's `callback after ... -> NODE`
    /// offer): its place stays in the queue and an agent calls back.
    Callback,
    /// The caller hung up while waiting in a queue or while an agent's phone rang.
    Abandoned,
    /// A record node saved a message (the caller spoke after the beep, or hung up while
    /// recording: the audio is kept).
    Message,
    /// The call completed at least one self-service task (`served "TASK"`).
    SelfService,
    /// A fault the flow did not handle, a lookup's `error` path, or a media or network
    /// failure.
    Failed,
    /// None of the above: the caller hung up in a menu, or the flow ended the call without a
    /// task done.
    NotServed,
}

impl Outcome {
    /// Every outcome, in the order of precedence.
    pub const ALL: [Outcome; 7] = [
        Outcome::Transferred,
        Outcome::Callback,
        Outcome::Abandoned,
        Outcome::Message,
        Outcome::SelfService,
        Outcome::Failed,
        Outcome::NotServed,
    ];

    /// The name as scenarios and reports write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Transferred => "transferred",
            Outcome::Callback => "callback",
            Outcome::Abandoned => "abandoned",
            Outcome::Message => "message",
            Outcome::SelfService => "self_service",
            Outcome::Failed => "failed",
            Outcome::NotServed => "not_served",
        }
    }

    /// Parses the name.
    pub fn parse(s: &str) -> Option<Outcome> {
        Outcome::ALL.into_iter().find(|o| o.as_str() == s)
    }
}

/// Who ended a call (recorded apart from its [`Outcome`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EndedBy {
    /// The caller hung up.
    Caller,
    /// The flow hung up (`hangup`, `-> hangup`, the end of its path).
    Flow,
    /// The agent hung up and the flow had no `after` path.
    Agent,
    /// The platform: a fault, a media or network failure, a server shutting down.
    System,
}

impl EndedBy {
    /// Every value.
    pub const ALL: [EndedBy; 4] = [
        EndedBy::Caller,
        EndedBy::Flow,
        EndedBy::Agent,
        EndedBy::System,
    ];

    /// The name as records and reports write it.
    pub fn as_str(self) -> &'static str {
        match self {
            EndedBy::Caller => "caller",
            EndedBy::Flow => "flow",
            EndedBy::Agent => "agent",
            EndedBy::System => "system",
        }
    }

    /// Parses the name.
    pub fn parse(s: &str) -> Option<EndedBy> {
        EndedBy::ALL.into_iter().find(|o| o.as_str() == s)
    }
}

/// How a node was left (for node-visit records, reports and coverage).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case", tag = "by", content = "key")]
pub enum Exit {
    /// A menu key.
    Key(char),
    /// `next` of an input, survey or record.
    Next,
    /// An `if` that held.
    If,
    /// A step's `goto`.
    Goto,
    /// A lookup found a row.
    Found,
    /// A lookup found none.
    Missing,
    /// A lookup failed or timed out.
    Error,
    /// The attempts of a collecting node ran out.
    Attempts,
    /// `max_wait` passed in a queue.
    MaxWait,
    /// No agents (or busy / failed for `to`).
    NoAgents,
    /// The agent hung up first and the flow went on.
    After,
    /// The caller kept a callback (`callback after ... -> NODE`).
    Callback,
    /// The flow hung up.
    Hangup,
    /// The caller hung up here.
    CallerHangup,
    /// A fault the flow did not handle ended the call here.
    Fault,
    /// The platform ended the call here: a media or network failure, or a shutdown.
    System,
}

impl Exit {
    /// A short label (`key 1`, `found`, ...).
    pub fn label(self) -> String {
        match self {
            Exit::Key(c) => format!("key {c}"),
            other => serde_json::to_value(other)
                .ok()
                .and_then(|v| v.get("by").and_then(|b| b.as_str()).map(String::from))
                .unwrap_or_default(),
        }
    }
}

/// What the engine asks its driver to do.
#[derive(Clone, PartialEq)]
pub enum Command {
    /// The call entered a node (not a transcript entry).
    Enter {
        /// The node.
        node: NodeId,
    },
    /// The call left a node.
    Leave {
        /// The node.
        node: NodeId,
        /// How.
        by: Exit,
    },
    /// Queue a prompt.
    Play {
        /// The prompt.
        prompt: PromptId,
        /// Index into the program's `languages`.
        language: u8,
        /// Playback sequence number.
        seq: u32,
    },
    /// Queue a spoken value.
    Say {
        /// How to speak it.
        kind: SayKind,
        /// The value.
        value: Value,
        /// The value comes from masked digits: never to be logged or shown in a transcript.
        masked: bool,
        /// Index into the program's `languages`.
        language: u8,
        /// Playback sequence number.
        seq: u32,
    },
    /// Queue silence (`pause`).
    Silence {
        /// How long.
        millis: u64,
        /// Playback sequence number.
        seq: u32,
    },
    /// Queue the recording beep.
    Beep {
        /// Playback sequence number.
        seq: u32,
    },
    /// Queue a position announcement ("you are number N in line").
    Announce {
        /// The caller's position.
        position: u32,
        /// Index into the program's `languages`.
        language: u8,
        /// Playback sequence number.
        seq: u32,
    },
    /// Stop playback and drop everything queued.
    StopPlayback,
    /// Run the query of lookup `node` and answer with [`Event::QueryDone`].
    RunQuery {
        /// The query's id.
        id: u32,
        /// The lookup node (its `query` names the catalog entry).
        node: NodeId,
        /// Argument values in order.
        args: Vec<Value>,
        /// Bit `i` set when argument `i` holds masked digits (never to be logged).
        masked: u32,
    },
    /// Start transfer node `node`.
    Transfer {
        /// The transfer node.
        node: NodeId,
        /// The computed priority (0 when absent or its guard is false).
        priority: i64,
        /// The least agent level asked for (`level N [if EXPR]`; 0 when absent or its guard
        /// is false).
        level: u8,
        /// Attached call data, in the order of the node's `attach`.
        attach: Vec<Value>,
    },
    /// Give up a transfer in progress (max_wait passed).
    CancelTransfer,
    /// The caller pressed 1 after the callback offer: the transfer's place in `queue` is
    /// kept after this call ends, and when it reaches an agent the platform dials `phone`
    /// back. Sent instead of giving up the transfer; a transcript entry.
    KeepCallback {
        /// The transfer node.
        node: NodeId,
        /// The queue the place is kept in.
        queue: String,
        /// The number to call back (the caller's).
        phone: String,
    },
    /// Start recording for record node `node`; answer with [`Event::RecordingDone`].
    StartRecording {
        /// The record node.
        node: NodeId,
    },
    /// Stop the recording (terminator key).
    StopRecording,
    /// Store survey answers of survey node `node`, in question order (`Null` = no answer).
    SaveSurvey {
        /// The survey node.
        node: NodeId,
        /// The answers.
        answers: Vec<Value>,
    },
    /// The flow hangs up.
    Hangup,
    /// The call completed a self-service task (`served "TASK"`); a transcript entry.
    Served {
        /// The task's name.
        task: String,
    },
    /// Record the whole call from now to its end (`record call`): stereo, the caller left,
    /// the IVR or the agent right. Sent at most once per call.
    RecordCall,
    /// The call is over.
    End {
        /// How it ended.
        outcome: Outcome,
        /// Who ended it.
        ended_by: EndedBy,
    },
}

impl fmt::Debug for Command {
    /// Like a derived `Debug`, but masked query arguments print as `***`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::RunQuery {
                id,
                node,
                args,
                masked,
            } => {
                let shown: Vec<String> = args
                    .iter()
                    .enumerate()
                    .map(|(i, a)| {
                        if i < 32 && masked & (1 << i) != 0 {
                            "***".to_string()
                        } else {
                            format!("{a:?}")
                        }
                    })
                    .collect();
                write!(
                    f,
                    "RunQuery {{ id: {id}, node: {node}, args: [{}] }}",
                    shown.join(", ")
                )
            }
            Command::Enter { node } => write!(f, "Enter({node})"),
            Command::Leave { node, by } => write!(f, "Leave({node}, {by:?})"),
            Command::Play {
                prompt,
                language,
                seq,
            } => {
                write!(
                    f,
                    "Play {{ prompt: {prompt}, language: {language}, seq: {seq} }}"
                )
            }
            Command::Say {
                kind,
                value,
                masked,
                language,
                seq,
            } => {
                let value = if *masked {
                    "***".to_string()
                } else {
                    format!("{value:?}")
                };
                write!(
                    f,
                    "Say {{ {kind:?}, {value}, language: {language}, seq: {seq} }}"
                )
            }
            Command::Silence { millis, seq } => write!(f, "Silence {{ {millis}ms, seq: {seq} }}"),
            Command::Beep { seq } => write!(f, "Beep {{ seq: {seq} }}"),
            Command::Announce {
                position,
                language,
                seq,
            } => write!(
                f,
                "Announce {{ {position}, language: {language}, seq: {seq} }}"
            ),
            Command::StopPlayback => f.write_str("StopPlayback"),
            Command::Transfer {
                node,
                priority,
                level: 0,
                attach,
            } => write!(
                f,
                "Transfer {{ node: {node}, priority: {priority}, attach: {attach:?} }}"
            ),
            Command::Transfer {
                node,
                priority,
                level,
                attach,
            } => write!(
                f,
                "Transfer {{ node: {node}, priority: {priority}, level: {level}, attach: {attach:?} }}"
            ),
            Command::CancelTransfer => f.write_str("CancelTransfer"),
            Command::KeepCallback { node, queue, phone } => {
                write!(f, "KeepCallback({node}, {queue}, {phone})")
            }
            Command::StartRecording { node } => write!(f, "StartRecording({node})"),
            Command::StopRecording => f.write_str("StopRecording"),
            Command::SaveSurvey { node, answers } => write!(f, "SaveSurvey({node}, {answers:?})"),
            Command::Hangup => f.write_str("Hangup"),
            Command::Served { task } => write!(f, "Served({task})"),
            Command::RecordCall => f.write_str("RecordCall"),
            Command::End { outcome, ended_by } => write!(f, "End({outcome:?}, {ended_by:?})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_values_never_print() {
        let q = Command::RunQuery {
            id: 1,
            node: 2,
            args: vec![
                Value::Text("13800000001".into()),
                Value::Text("123456".into()),
            ],
            masked: 0b10,
        };
        let shown = format!("{q:?}");
        assert!(shown.contains("13800000001"), "{shown}");
        assert!(!shown.contains("123456\""), "{shown}");
        assert!(shown.contains("***"), "{shown}");
        let s = Command::Say {
            kind: SayKind::Digits,
            value: Value::Text("987654".into()),
            masked: true,
            language: 0,
            seq: 1,
        };
        assert!(!format!("{s:?}").contains("987654"));
    }

    #[test]
    fn exits_have_labels() {
        assert_eq!(Exit::Key('5').label(), "key 5");
        assert_eq!(Exit::Found.label(), "found");
        assert_eq!(Exit::CallerHangup.label(), "caller_hangup");
    }
}
