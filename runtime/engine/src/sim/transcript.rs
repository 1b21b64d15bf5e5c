//! The transcript: what a flow does that the caller or the outside world observes.

use crate::value::Value;
use ivr_compiler::program::Destination;
use ivr_dsl::ast::SayKind;
use std::fmt;

/// One observable thing a flow did.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    /// A prompt started playing.
    Play {
        /// The prompt id.
        prompt: String,
        /// Its text in the language it played in.
        text: String,
    },
    /// A value started being spoken.
    Say {
        /// How.
        kind: SayKind,
        /// The value.
        value: Value,
        /// What the caller hears, as text (`***` for masked digits).
        text: String,
        /// The value comes from a `mask` input: it is compared as any value, and shown as
        /// `***` wherever the transcript is written out.
        masked: bool,
    },
    /// "You are number N in line".
    Announce {
        /// The position.
        position: u32,
    },
    /// The caller was handed to a queue or number.
    Transfer {
        /// Where.
        destination: Destination,
        /// With what priority.
        priority: i64,
        /// Agents of at least this level asked for (0: any).
        level: u8,
    },
    /// Recording started.
    Record {
        /// The record node.
        node: String,
        /// Its `save` table.
        table: String,
    },
    /// Data was stored (survey answers, a recording's row).
    Saved {
        /// The table.
        table: String,
        /// Field names and values.
        fields: Vec<(String, Value)>,
    },
    /// The flow hung up.
    Hangup,
    /// The call completed a self-service task (`served "TASK"`).
    Served {
        /// The task's name.
        task: String,
    },
    /// Whole-call recording started (`record call`).
    RecordCall,
    /// The caller kept a callback: its place in the queue stays after the call.
    Callback {
        /// The queue.
        queue: String,
    },
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Entry::Play { prompt, .. } => write!(f, "play {prompt}"),
            Entry::Say { kind, masked, .. } if *masked => write!(f, "say {} ***", kind.keyword()),
            Entry::Say { kind, value, .. } => {
                write!(f, "say {} {}", kind.keyword(), spoken(*kind, value))
            }
            Entry::Announce { position } => write!(f, "announce position {position}"),
            Entry::Transfer {
                destination,
                priority,
                level,
            } => match destination {
                Destination::Queue(q) if *level > 0 => {
                    write!(f, "transfer queue {q} priority {priority} level {level}")
                }
                Destination::Queue(q) => write!(f, "transfer queue {q} priority {priority}"),
                Destination::To(uri) => write!(f, "transfer to \"{uri}\""),
            },
            Entry::Record { node, .. } => write!(f, "record {node}"),
            Entry::Saved { table, fields } => {
                write!(f, "saved {table} {{ ")?;
                for (i, (k, v)) in fields.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    match v {
                        Value::Text(t) => write!(f, "{k}: \"{t}\"")?,
                        other => write!(f, "{k}: {other}")?,
                    }
                }
                f.write_str(" }")
            }
            Entry::Hangup => f.write_str("hangup"),
            Entry::Served { task } => write!(f, "served {task}"),
            Entry::RecordCall => f.write_str("record call"),
            Entry::Callback { queue } => write!(f, "callback queue {queue}"),
        }
    }
}

/// The value a `say` speaks: `say date` of a date and time (`now()`) speaks its date, `say time`
/// its time of day; everything else as it is.
pub fn spoken(kind: SayKind, value: &Value) -> Value {
    match (kind, value) {
        (SayKind::Date, Value::DateTime(t)) => Value::Date(t.date()),
        (SayKind::Time, Value::DateTime(t)) => Value::Time(t.time()),
        (_, v) => v.clone(),
    }
}

/// A lookup that took `error`, and why: shown with the transcript (`ivr simulate`, a failing
/// scenario of `ivr test`), never matched by expectations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupFailure {
    /// How many transcript entries came before it.
    pub entry: usize,
    /// The lookup node.
    pub node: String,
    /// The reason its query gave (the database's error, a timeout, `mocked error`).
    pub reason: String,
}

impl fmt::Display for LookupFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "lookup {} failed: {}", self.node, self.reason)
    }
}
