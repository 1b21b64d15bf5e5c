//! Timers as data: one ordered set of (deadline, [`Timer`]), polled by the driver; what is due
//! is done here.

use super::queue::CallState;
use super::{Acd, AcdOut, Timer};
use ivr_engine::Millis;

impl Acd {
    /// The next time a timer is due, if any ([`Machine::poll_timeout`](ivr_sansio::Machine)).
    pub(crate) fn next_timer(&self) -> Option<Millis> {
        self.timers.first().map(|&(at, _)| at)
    }

    /// Does everything due at or before `now`: ring timeouts (the offer is cancelled and the
    /// call goes to the next agent), wrap-up ends, registration expiry, the end of retry
    /// pauses, and coalesced position updates.
    pub(crate) fn fire_timers(&mut self, now: Millis, out: &mut Vec<AcdOut>) {
        while let Some(&(at, timer)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.pop_first();
            match timer {
                Timer::Ring(call) => {
                    let ringing = self.calls.get(&call).and_then(|c| match c.state {
                        CallState::Ringing { agent, until } if until == at => Some(agent),
                        _ => None,
                    });
                    if let Some(agent) = ringing {
                        out.push(AcdOut::Cancel {
                            call,
                            agent: self.agents[agent].id.clone(),
                        });
                        self.offer_failed(call, agent, now, out);
                    }
                }
                Timer::Rest(call) => {
                    let resting = self
                        .calls
                        .get_mut(&call)
                        .filter(|c| matches!(c.state, CallState::Resting { until } if until == at));
                    if let Some(c) = resting {
                        c.state = CallState::Waiting;
                        self.dispatch_call(call, now, out);
                    }
                }
                Timer::WrapUp(agent) => {
                    if self.agents[agent].wrap_until == Some(at) {
                        self.agents[agent].wrap_until = None;
                        self.end_wrap_up(agent, now, out);
                    }
                }
                Timer::Expiry(agent) => {
                    if self.agents[agent].expires_at == Some(at) {
                        self.go_offline(agent, now, out);
                    }
                }
                Timer::Overflow(call) => self.overflow_due(call, at, now, out),
                Timer::Positions(q) => {
                    if self.queues[q].positions_due == Some(at) {
                        self.send_positions(q, now, out);
                    }
                }
            }
        }
    }
}
