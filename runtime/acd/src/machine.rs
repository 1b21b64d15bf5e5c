//! The ACD in the one sans-IO style of `ivr_sansio`: operations are handed in with
//! [`Machine::handle_input`], timers fire in [`Machine::handle_timeout`], and what the driver
//! must do comes out of [`Machine::poll_output`].

use crate::{Acd, AcdOut, CallKey, Contact, Decline, Routing};
use ivr_compiler::config::Config;
use ivr_sansio::{Machine, Millis};
use std::sync::Arc;

/// What the ACD is told.
#[derive(Debug, Clone)]
pub enum AcdInput {
    /// Queue `call` in `queue` for an agent with the queue's skills and `skills` (the transfer
    /// node's), at `priority` (higher first), with `routing`. See [`Acd::enqueue`].
    Enqueue {
        /// The call.
        call: CallKey,
        /// The queue's name.
        queue: String,
        /// The transfer node's skills.
        skills: Vec<String>,
        /// Higher is served first.
        priority: i64,
        /// Level, overflow rules, transferred in.
        routing: Routing,
    },
    /// [`AcdInput::Enqueue`] of a call that entered its queue at `queued_at` (a new leader
    /// rebuilding the ACD puts the waiting calls back in their order of arrival: each keeps
    /// its place behind those put back before it, and its time for overflows and waits).
    Restore {
        /// The call.
        call: CallKey,
        /// The queue's name.
        queue: String,
        /// The transfer node's skills.
        skills: Vec<String>,
        /// Higher is served first.
        priority: i64,
        /// Level, overflow rules, transferred in.
        routing: Routing,
        /// When it entered the queue (the ACD's clock; at most now).
        queued_at: Millis,
    },
    /// A new leader rebuilding the ACD: `agent` (registered) talks with `call` of `queue`;
    /// it is offered nothing until the call's [`AcdInput::ConversationOver`]. Ignored when
    /// the agent is unknown, not logged in or busy, or the queue unknown.
    Talking {
        /// The call.
        call: CallKey,
        /// The agent's id.
        agent: String,
        /// The queue it came through (its `wrap_up` follows the call).
        queue: String,
    },
    /// A new leader rebuilding the ACD: `agent` (registered) wraps up until `until`. Ignored
    /// when the agent is unknown, not logged in or busy, or `until` has passed.
    WrappingUp {
        /// The agent's id.
        agent: String,
        /// When its wrap-up ends (the ACD's clock).
        until: Millis,
    },
    /// The caller left (hung up, or its flow gave up waiting).
    Leave(CallKey),
    /// The caller kept a callback: the call stays in its queue with its place and time after
    /// the caller hung up, and stays even while nobody who could take it is logged in.
    KeepCallback(CallKey),
    /// The agent offered the call answered.
    Answered(CallKey),
    /// The offer failed.
    Declined {
        /// The call.
        call: CallKey,
        /// Why.
        why: Decline,
    },
    /// The agent's conversation with the call is over (wrap-up starts).
    ConversationOver(CallKey),
    /// An agent's phone registered or refreshed its registration until `expires_at`. An
    /// agent not in the configuration is refused ([`AcdOut::Refused`]).
    Register {
        /// The agent's id.
        agent: String,
        /// Where its phone is.
        contact: Contact,
        /// When the registration ends.
        expires_at: Millis,
    },
    /// An agent's phone unregistered.
    Unregister {
        /// The agent's id.
        agent: String,
    },
    /// An agent goes away (`true`) or comes back; refused ([`AcdOut::Refused`]) for an
    /// unknown agent or one not logged in.
    SetAway {
        /// The agent's id.
        agent: String,
        /// Away or back.
        away: bool,
    },
    /// A new configuration (hot reload): queues and agents added, changed or removed.
    Reconfigure(Arc<Config>),
}

impl Machine for Acd {
    type Input = AcdInput;
    type Output = AcdOut;

    fn handle_input(&mut self, input: AcdInput, now: Millis) {
        let mut out = std::mem::take(&mut self.scratch);
        match input {
            AcdInput::Enqueue {
                call,
                queue,
                skills,
                priority,
                routing,
            } => self.enqueue(
                call, &queue, &skills, priority, &routing, now, now, &mut out,
            ),
            AcdInput::Restore {
                call,
                queue,
                skills,
                priority,
                routing,
                queued_at,
            } => self.enqueue(
                call, &queue, &skills, priority, &routing, queued_at, now, &mut out,
            ),
            AcdInput::Talking { call, agent, queue } => {
                self.restore_talking(call, &agent, &queue, now);
            }
            AcdInput::WrappingUp { agent, until } => {
                self.restore_wrap_up(&agent, until, now);
            }
            AcdInput::Leave(call) => self.leave(call, now, &mut out),
            AcdInput::KeepCallback(call) => {
                self.keep_callback(call);
            }
            AcdInput::Answered(call) => self.answered(call, now, &mut out),
            AcdInput::Declined { call, why } => self.declined(call, why, now, &mut out),
            AcdInput::ConversationOver(call) => self.conversation_over(call, now, &mut out),
            AcdInput::Register {
                agent,
                contact,
                expires_at,
            } => {
                if let Err(error) = self.register(&agent, contact, expires_at, now, &mut out) {
                    out.push(AcdOut::Refused { agent, error });
                }
            }
            AcdInput::Unregister { agent } => self.unregister(&agent, now, &mut out),
            AcdInput::SetAway { agent, away } => {
                if let Err(error) = self.set_away(&agent, away, now, &mut out) {
                    out.push(AcdOut::Refused { agent, error });
                }
            }
            AcdInput::Reconfigure(config) => self.reconfigure(&config, now, &mut out),
        }
        self.pending.extend(out.drain(..));
        self.scratch = out;
    }

    fn poll_timeout(&self) -> Option<Millis> {
        self.next_timer()
    }

    fn handle_timeout(&mut self, now: Millis) {
        let mut out = std::mem::take(&mut self.scratch);
        self.fire_timers(now, &mut out);
        self.pending.extend(out.drain(..));
        self.scratch = out;
    }

    fn poll_output(&mut self) -> Option<AcdOut> {
        self.pending.pop_front()
    }
}
