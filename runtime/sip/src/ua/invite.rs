//! Incoming INVITEs and admission: limits (503 beyond `max_calls` or while draining, sent
//! statelessly like the 503 of `invite_rate` in `core.rs`), the
//! offer (488 when broken; none is a late offer), 100 Trying, the application's decision
//! ([`Host::admit`]), 180 Ringing and the delayed 200 OK (`answer_after`), the start of the
//! call; and the end of calls from our side (shutdown, no ACK).

use super::core::{Entry, Phase, TimerKey, TxKey};
use super::{Admitted, Core, DialogEvent, Host, NewCall, Output};
use crate::dialog::Dialog;
use crate::edge::{Bucket, IN_DIALOG_BURST};
use crate::message::{self, ALLOW, Extra, Facts};
use crate::peer::Peer;
use crate::registrar::InviteAuth;
use crate::sdp;
use ivr_sansio::Millis;
use rsip::Request;
use std::sync::Arc;

impl<H: Host> Core<H> {
    /// Refuses a new INVITE with `code` (and its own To-tag) on its transaction.
    fn refuse(&mut self, req: &Request, peer: Peer, key: &TxKey, code: u16, now: Millis) {
        self.refused += 1;
        let retry = [("Retry-After", "5")];
        let tag = message::new_tag();
        let extra = Extra {
            to_tag: Some(&tag),
            headers: if code == 503 { &retry } else { &[] },
            ..Extra::default()
        };
        self.respond(req, peer, key, code, &extra, now);
    }

    pub(super) fn on_invite(
        &mut self,
        req: &Request,
        f: &Facts,
        peer: Peer,
        key: TxKey,
        now: Millis,
    ) {
        let elsewhere = self.host.elsewhere();
        if self.draining || self.dialogs.len() + elsewhere >= self.opts.max_calls {
            // Nothing is kept for a call we cannot take: one 503, never sent again.
            if !self.draining {
                self.counters.shed_dialogs += 1;
            }
            self.refused += 1;
            self.answer_stateless(req, peer, 503, Some(5));
            return;
        }
        let is_sdp = message::value(&req.headers, "Content-Type")
            .is_some_and(|c| c.trim().to_ascii_lowercase().starts_with("application/sdp"));
        // No body: a late offer (RFC 3261 13.2.1), we offer in the 200 and the ACK answers.
        let late = req.body.iter().all(u8::is_ascii_whitespace);
        let offer = match std::str::from_utf8(&req.body)
            .ok()
            .filter(|_| is_sdp && !late)
            .map(sdp::parse)
        {
            Some(Ok(o)) => Some(o),
            None if late => None,
            // A broken offer or not SDP.
            _ => {
                self.refuse(req, peer, &key, 488, now);
                return;
            }
        };
        let tag = message::new_tag();
        let local_ip = self.local_ip(peer.addr.ip());
        self.respond(req, peer, &key, 100, &Extra::default(), now);
        // An agent's phone placing a call authenticates like its REGISTER (digest).
        let auth = message::value(&req.headers, "Authorization")
            .is_some()
            .then(|| self.registrar.authenticate(req, peer.addr.ip(), now));
        let agent = match &auth {
            Some(InviteAuth::Agent(a)) => Some(a.as_str()),
            _ => None,
        };
        let admitted = match self.host.admit(NewCall {
            request: req,
            facts: f,
            peer,
            local_ip,
            tag: &tag,
            offer: offer.as_ref(),
            agent,
        }) {
            Ok(a) => a,
            Err(401) => {
                let challenge = match auth {
                    Some(InviteAuth::Refused(code)) => Err(code),
                    Some(InviteAuth::Challenge(c)) => Ok(c),
                    // Authenticated but not what the application wants: no second chance.
                    Some(InviteAuth::Agent(_)) => Err(403),
                    None => match self.registrar.authenticate(req, peer.addr.ip(), now) {
                        InviteAuth::Challenge(c) => Ok(c),
                        InviteAuth::Refused(code) => Err(code),
                        InviteAuth::Agent(_) => Err(403),
                    },
                };
                match challenge {
                    Ok(value) => {
                        self.refused += 1;
                        let extra = Extra {
                            to_tag: Some(&tag),
                            headers: &[("WWW-Authenticate", value.as_str())],
                            ..Extra::default()
                        };
                        self.respond(req, peer, &key, 401, &extra, now);
                    }
                    Err(code) => self.refuse(req, peer, &key, code, now),
                }
                return;
            }
            Err(code) => {
                self.refuse(req, peer, &key, code, now);
                return;
            }
        };
        let Admitted {
            answer: sdp_answer,
            negotiated,
            port,
        } = admitted;
        let dialog = Dialog::from_invite(req, f, &tag);
        let contact = self.contact(local_ip, peer.proto);
        let answer = message::response(
            req,
            peer.addr,
            200,
            &Extra {
                to_tag: Some(&tag),
                contact: Some(&contact),
                headers: &[("Allow", ALLOW), ("Supported", "")],
                body: Some(("application/sdp", sdp_answer.as_bytes())),
            },
        );
        let session_id = message::random_u64() >> 1;
        let srtp = negotiated.and_then(|n| n.srtp);
        self.dialogs.insert(
            tag.clone(),
            Entry {
                dialog,
                peer,
                invite: key.clone(),
                phase: Phase::Ringing {
                    negotiated,
                    answer,
                    invite: Box::new(req.clone()),
                },
                port,
                local_ip,
                sdp_version: 1,
                session_id,
                awaiting_ack: false,
                start_with: None,
                reinvite: None,
                bucket: Bucket::full(IN_DIALOG_BURST, now),
                srtp,
                resumed_ack: None,
            },
        );
        if self.opts.answer_after <= 0 {
            self.answer_call(&tag, now);
        } else {
            let ringing = Extra {
                to_tag: Some(&tag),
                ..Extra::default()
            };
            self.respond(req, peer, &key, 180, &ringing, now);
            self.arm(
                Some(now + self.opts.answer_after),
                TimerKey::Answer(tag.clone()),
            );
        }
    }

    /// Sends the 200 OK of a ringing call and starts it.
    pub(super) fn answer_call(&mut self, tag: &str, now: Millis) {
        let Some(e) = self.dialogs.get_mut(tag) else {
            return;
        };
        let Phase::Ringing {
            negotiated, answer, ..
        } = &mut e.phase
        else {
            return;
        };
        let (negotiated, bytes) = (*negotiated, Arc::<[u8]>::from(std::mem::take(answer)));
        e.phase = Phase::Answered;
        e.awaiting_ack = true;
        e.start_with = negotiated;
        let (key, peer) = (e.invite.clone(), e.peer);
        if !self.respond_on(&key, 200, Arc::clone(&bytes), now) {
            self.send(&peer, bytes);
        }
        self.answered += 1;
        // The call starts at the ACK (with the ACK's answer for a late offer).
    }

    /// Ends an answered call from our side: the call feeds the engine a hang-up and reports
    /// back with `Ended { bye: true }`.
    pub(super) fn terminate(&mut self, tag: &str, now: Millis) {
        // A call still waiting for its ACK never started; we send the BYE.
        if self.dialogs.get(tag).is_some_and(|e| e.awaiting_ack) {
            self.emit(Output::Unserved {
                tag: tag.to_string(),
                outcome: "failed",
            });
            if let Some(mut e) = self.remove_dialog(tag) {
                self.send_dialog_bye(&mut e.dialog, e.peer, e.local_ip, now);
            }
            return;
        }
        let Some(e) = self.dialogs.get_mut(tag) else {
            return;
        };
        match e.phase {
            Phase::Answered => {
                e.phase = Phase::Ending;
                self.dialog_event(tag, DialogEvent::Terminate);
            }
            Phase::Ringing { .. } => {
                self.emit(Output::Unserved {
                    tag: tag.to_string(),
                    outcome: "failed",
                });
                if let Some(e) = self.remove_dialog(tag) {
                    self.refuse_ringing(e, 503, now);
                }
            }
            Phase::Ending => {}
        }
    }

    /// The final error response `code` to the INVITE of dialog `e`, removed while it was still
    /// ringing (its 200 OK not sent): the caller stops ringing, and the INVITE's transaction
    /// completes and is forgotten after the ACK or timer H. Without it the transaction stayed
    /// in Proceeding, with no timer, for as long as the process ran (one per such call).
    pub(super) fn refuse_ringing(&mut self, e: Entry, code: u16, now: Millis) {
        let Phase::Ringing { invite, .. } = e.phase else {
            return;
        };
        let extra = Extra {
            to_tag: Some(&e.dialog.local_tag),
            ..Extra::default()
        };
        self.respond(&invite, e.peer, &e.invite, code, &extra, now);
    }

    /// A 2xx was never acknowledged: end the call and send a BYE (RFC 3261 13.3.1.4).
    pub(super) fn no_ack(&mut self, invite: &TxKey, now: Millis) {
        let tag = self
            .dialogs
            .iter()
            .find(|(_, e)| e.invite == *invite && matches!(e.phase, Phase::Answered))
            .map(|(t, _)| t.clone());
        if let Some(tag) = tag {
            tracing::warn!(tag = %tag, "no ACK for the 200 OK; ending the call");
            self.terminate(&tag, now);
        }
    }
}
