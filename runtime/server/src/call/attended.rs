//! Attended transfer on the caller's side (RFC 3891 with RFC 3515): the agent talking with
//! the caller has called the target from its phone (the consultation,
//! [`crate::agent_call`]) and sends REFER on the caller's leg with `Refer-To:
//! <sip:TARGET@ivr?Replaces=CALLID;to-tag=X;from-tag=Y>` naming that consultation's dialog. The
//! consultation hands its far leg over (the target's SIP leg, its RTP socket and its ACD key);
//! the caller is bridged to it, the final NOTIFY says `200 OK`, and both of the first agent's
//! legs end (this call's BYE on its leg, the consultation's on its dialog). A Replaces that
//! names no consultation (481), another agent's (403), or one whose target has not answered
//! yet (480) is refused in the NOTIFY, and the caller stays with the agent.

use super::*;
use crate::acd_task::PassOrigin;
use crate::consultations::{Handover, TakenLeg};
use crate::pass_refusal::PassRefusal;

/// How long the consultation call may take to hand its leg over.
const HANDOVER_WAIT: Duration = Duration::from_secs(3);

impl Driver {
    /// The agent's phone sent REFER with Replaces on our leg.
    pub(super) fn attended(&mut self, replaces: Option<&str>, origin: PassOrigin) {
        let Some(replaces) = replaces.and_then(ivr_sip::ua::parse_replaces) else {
            return self.pass_refused(origin, &PassRefusal::NoSuchDialog);
        };
        let agent = self
            .leg
            .as_ref()
            .filter(|l| l.connected)
            .and_then(|l| l.agent.clone());
        let talking = self.transfer.as_ref().is_some_and(|t| t.connected);
        let (Some(agent), true, None) = (agent, talking, self.passing.as_ref()) else {
            return self.pass_refused(origin, &PassRefusal::NotConnected);
        };
        let consultation = match self.services.consultations.find(&replaces, &agent) {
            Ok(tx) => tx,
            Err(why) => return self.pass_refused(origin, &why),
        };
        let (reply, answer) = tokio::sync::oneshot::channel();
        if consultation
            .send(Handover {
                by: agent.clone(),
                reply,
            })
            .is_err()
        {
            return self.pass_refused(origin, &PassRefusal::NoSuchDialog);
        }
        tracing::info!(agent = %agent, "attended transfer: taking over the consultation's call");
        let (tx, services) = (self.internal.clone(), self.services.clone());
        tokio::spawn(async move {
            let result = match tokio::time::timeout(HANDOVER_WAIT, answer).await {
                Ok(Ok(r)) => r,
                _ => Err(PassRefusal::Unanswered),
            };
            if let Err(e) = tx.send(Internal::Replaced {
                origin,
                result: Box::new(result),
            }) && let Internal::Replaced { result, .. } = e.0
                && let Ok(leg) = *result
            {
                // The caller's call is gone: nobody takes the leg, end it.
                let _ = services.core.send(CoreMsg::EndLeg { tag: leg.tag });
                if let Some(key) = leg.key {
                    let _ = services.acd.send(AcdMsg::ConversationOver(key));
                }
                let _ = services.core.send(CoreMsg::Ended {
                    tag: leg.dialog,
                    bye: true,
                });
            }
        });
    }

    /// The consultation's answer: bridge the caller to its far leg, or refuse.
    pub(super) fn on_replaced(
        &mut self,
        origin: PassOrigin,
        result: Result<TakenLeg, PassRefusal>,
    ) {
        let taken = match result {
            Ok(t) => t,
            Err(why) => return self.pass_refused(origin, &why),
        };
        let still = self.leg.as_ref().is_some_and(|l| l.connected)
            && self.transfer.as_ref().is_some_and(|t| t.connected)
            && !self.call.is_ended();
        if !still {
            // The conversation ended meanwhile: the target's leg has nobody to talk to.
            let _ = self.services.core.send(CoreMsg::EndLeg { tag: taken.tag });
            if let Some(key) = taken.key {
                let _ = self.services.acd.send(AcdMsg::ConversationOver(key));
            }
            let _ = self.services.core.send(CoreMsg::Ended {
                tag: taken.dialog,
                bye: true,
            });
            return self.pass_refused(origin, &PassRefusal::NotConnected);
        }
        let TakenLeg {
            tag,
            agent,
            port,
            sock,
            events,
            remote,
            latch,
            side,
            key,
            trunk,
            pop,
            dialog,
        } = taken;
        tracing::info!(agent = %agent, by = pop.transferred_by.as_deref().unwrap_or("-"),
            "attended transfer complete: the caller talks with the consultation's target");
        // The final NOTIFY (200) goes out before the BYE of the first agent's leg.
        self.pass_done(origin, Ok(()));
        let first = self.transfer.as_ref().and_then(|t| t.key);
        self.hang_up_leg();
        // Then the consultation's dialog: both of the first agent's legs end.
        let _ = self.services.core.send(CoreMsg::Ended {
            tag: dialog,
            bye: true,
        });
        if let Some(first) = first {
            let _ = self.services.acd.send(AcdMsg::ConversationOver(first));
        }
        if let Some(call) = key {
            let _ = self.services.acd.send(AcdMsg::Redirect {
                call,
                to: self.queue_tx.clone(),
            });
        }
        self.leg = Some(Leg {
            tag,
            agent: Some(agent.clone()),
            _port: port,
            remote,
            latch,
            side: Some(side),
            connected: true,
            console: false,
            _link: None,
            channel: trunk,
            dialog: None,
            answered_at: None,
        });
        self.leg_events = Some(events);
        self.leg_sock = Some(sock);
        self.transfer = Some(Transfer {
            key,
            connected: true,
            passed: false,
        });
        self.last_pop = Some(pop);
        // The bridge carries the audio, not the pacer.
        self.channel.stop();
        self.channel.set_remote(None);
        self.recording_agent(Some(agent.clone()));
        // The record names the agent the caller talks with now.
        self.feed(Event::Transfer(TransferUpdate::Answered {
            agent: Some(agent),
        }));
    }
}
