//! The legs we place as the UAC ([`Command::Dial`](super::Command::Dial)): the INVITE with
//! our offer on its client transaction (timers A, B, C), the responses (ringing, answered
//! with the negotiated media, failed with the status), the ACK of a 2xx and of an error,
//! [`Command::EndLeg`](super::Command::EndLeg) (the CANCEL once a provisional came, or the
//! BYE), and the callee's re-INVITE.

use super::core::{TimerKey, TxKey};
use super::{Core, Dial, Host, LegEvent, Output};
use crate::dialog::Dialog;
use crate::edge::{Bucket, IN_DIALOG_BURST};
use crate::message::{self, ALLOW, Extra, Facts};
use crate::outbound::{InviteParts, OutgoingInvite};
use crate::peer::Peer;
use crate::sdp;
use crate::transaction::{InviteClientTx, Response, TxOutput};
use ivr_sansio::{Machine, Millis};
use rsip::Request;
use std::net::IpAddr;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LegState {
    /// INVITE sent, no final response.
    Calling,
    /// 2xx received and acknowledged.
    Answered,
    /// A final error came (kept a while to acknowledge its retransmissions).
    Done,
}

/// A call we placed.
pub(super) struct Leg {
    pub(super) invite: OutgoingInvite,
    pub(super) tx: InviteClientTx,
    pub(super) peer: Peer,
    pub(super) local_ip: IpAddr,
    pub(super) port: u16,
    pub(super) session_id: u64,
    pub(super) sdp_version: u64,
    pub(super) state: LegState,
    /// The call no longer wants the leg (CANCEL once provisional, BYE if it answers).
    pub(super) cancel: bool,
    pub(super) cancel_sent: bool,
    pub(super) dialog: Option<Dialog>,
    /// The ACK we sent for the final response, sent again for its retransmissions.
    pub(super) ack: Option<Arc<[u8]>>,
    /// The callee's re-INVITE waiting for its ACK.
    pub(super) reinvite: Option<TxKey>,
    /// The callee's phone rang ([`LegEvent::Ringing`] is told once).
    pub(super) rang: bool,
    /// The rate of the callee's requests within the leg's dialog (re-INVITE).
    pub(super) bucket: Bucket,
    /// A REFER of the callee's waits for its outcome (its subscription is active).
    pub(super) refer: bool,
    /// What the INVITE is built from, to send it again with credentials after a challenge.
    pub(super) redial: Box<Redial>,
}

/// The parts of a leg's INVITE, kept for a gateway's digest challenge (401/407).
pub(super) struct Redial {
    target: String,
    sent_by: String,
    from: String,
    contact: String,
    headers: Vec<(String, String)>,
    offer: String,
    /// The trunk's `(username, password)`; taken when used (a challenge is answered once).
    credentials: Option<(String, String)>,
}

/// What an answered leg taken over from another node is made of ([`Leg::resumed`]).
pub(super) struct ResumedParts {
    pub(super) dialog: Dialog,
    pub(super) tx: InviteClientTx,
    pub(super) branch: String,
    pub(super) via: String,
    pub(super) peer: Peer,
    pub(super) local_ip: IpAddr,
    pub(super) port: u16,
    pub(super) session_id: u64,
    pub(super) ack: Arc<[u8]>,
    pub(super) now: Millis,
}

impl Leg {
    /// An answered leg whose dialog another node placed and this one re-INVITEd.
    pub(super) fn resumed(p: ResumedParts) -> Leg {
        let d = &p.dialog;
        Leg {
            invite: OutgoingInvite {
                uri: d.remote_target.clone(),
                via: p.via,
                branch: p.branch,
                from: d.local.clone(),
                to: d.remote.clone(),
                call_id: d.call_id.clone(),
                cseq: d.local_cseq,
            },
            tx: p.tx,
            peer: p.peer,
            local_ip: p.local_ip,
            port: p.port,
            session_id: p.session_id,
            sdp_version: 1,
            state: LegState::Answered,
            cancel: false,
            cancel_sent: false,
            dialog: Some(p.dialog),
            ack: Some(p.ack),
            reinvite: None,
            rang: true,
            bucket: Bucket::full(IN_DIALOG_BURST, p.now),
            refer: false,
            redial: Box::new(Redial {
                target: String::new(),
                sent_by: String::new(),
                from: String::new(),
                contact: String::new(),
                headers: Vec::new(),
                offer: String::new(),
                credentials: None,
            }),
        }
    }
}

impl<H: Host> Core<H> {
    /// Queues an event of leg `tag`.
    pub(super) fn leg_event(&mut self, tag: &str, event: LegEvent) {
        self.emit(Output::Leg {
            tag: tag.to_string(),
            event,
        });
    }

    /// Whether an in-dialog request belongs to the answered leg `tag`.
    pub(super) fn leg_matches(&self, tag: &str, f: &Facts) -> bool {
        self.legs
            .get(tag)
            .is_some_and(|l| l.dialog.as_ref().is_some_and(|d| d.matches(f)))
    }

    /// Places a call ([`Command::Dial`](super::Command::Dial)).
    pub(super) fn dial(&mut self, d: Dial, now: Millis) {
        if self.legs.len() >= self.opts.bounds.legs {
            tracing::warn!(target = %d.target, "legs at their bound: the call is not placed");
            self.counters.shed_legs += 1;
            self.leg_event(&d.tag, LegEvent::Failed(503));
            self.emit(Output::LegClosed { tag: d.tag });
            return;
        }
        let local_ip = self.local_ip(d.peer.addr.ip());
        let sent_by = self.sent_by(d.peer.proto, local_ip);
        let contact = self.contact(local_ip, d.peer.proto);
        let host = super::core::host_of(local_ip);
        let from_user: String = d
            .from_user
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || "+-_.*#".contains(*c))
            .take(64)
            .collect();
        let from_user = if from_user.is_empty() {
            "anonymous".to_string()
        } else {
            from_user
        };
        let from = format!("<sip:{from_user}@{host}>");
        let session_id = message::random_u64() >> 1;
        let offer = sdp::offer(local_ip, d.port, session_id, 1);
        let call_id = format!("{}-{}", message::new_tag(), message::new_tag());
        let built = OutgoingInvite::build(&InviteParts {
            target: &d.target,
            sent_by: &sent_by,
            from: &from,
            tag: &d.tag,
            call_id: &call_id,
            contact: &contact,
            headers: &d.headers,
            sdp: &offer,
            ..InviteParts::default()
        });
        let (invite, bytes) = match built {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(target = %d.target, error = %e, "cannot place the call");
                self.leg_event(&d.tag, LegEvent::Failed(400));
                self.emit(Output::LegClosed { tag: d.tag });
                return;
            }
        };
        let bytes: Arc<[u8]> = Arc::from(bytes);
        let tx = InviteClientTx::new(
            Arc::clone(&bytes),
            d.peer.proto.reliable(),
            self.opts.timers,
            now,
        );
        let deadline = tx.poll_timeout();
        self.leg_branches
            .insert(invite.branch.clone(), d.tag.clone());
        self.legs.insert(
            d.tag.clone(),
            Leg {
                invite,
                tx,
                peer: d.peer,
                local_ip,
                port: d.port,
                session_id,
                sdp_version: 1,
                state: LegState::Calling,
                cancel: false,
                cancel_sent: false,
                dialog: None,
                ack: None,
                reinvite: None,
                rang: false,
                bucket: Bucket::full(IN_DIALOG_BURST, now),
                refer: false,
                redial: Box::new(Redial {
                    target: d.target,
                    sent_by,
                    from,
                    contact,
                    headers: d.headers,
                    offer,
                    credentials: d.credentials,
                }),
            },
        );
        self.send(&d.peer, bytes);
        self.arm(deadline, TimerKey::Leg(d.tag));
    }

    /// Forgets leg `tag` (the caller tells the application with [`Output::LegClosed`]).
    pub(super) fn remove_leg(&mut self, tag: &str) -> Option<Leg> {
        let l = self.legs.remove(tag)?;
        self.leg_branches.remove(&l.invite.branch);
        Some(l)
    }

    /// Forgets leg `tag` and tells the application.
    fn close_leg(&mut self, tag: &str) -> Option<Leg> {
        let l = self.remove_leg(tag)?;
        self.emit(Output::LegClosed {
            tag: tag.to_string(),
        });
        Some(l)
    }

    fn send_cancel(&mut self, tag: &str, now: Millis) {
        let Some(l) = self.legs.get_mut(tag) else {
            return;
        };
        if l.cancel_sent {
            return;
        }
        l.cancel_sent = true;
        let bytes: Arc<[u8]> = Arc::from(l.invite.cancel());
        let peer = l.peer;
        let key = format!("{}|CANCEL", l.invite.branch);
        self.start_client(key, bytes, peer, now);
    }

    /// Ends a leg the call no longer wants ([`Command::EndLeg`](super::Command::EndLeg)).
    pub(super) fn end_leg(&mut self, tag: &str, now: Millis) {
        let Some(l) = self.legs.get_mut(tag) else {
            return;
        };
        match l.state {
            LegState::Calling => {
                l.cancel = true;
                // A CANCEL only once the callee answered something (RFC 3261 9.1).
                if l.tx.proceeding() {
                    self.send_cancel(tag, now);
                }
            }
            LegState::Answered => {
                if let Some(mut l) = self.close_leg(tag)
                    && let Some(d) = l.dialog.as_mut()
                {
                    self.send_dialog_bye(d, l.peer, l.local_ip, now);
                }
            }
            LegState::Done => {}
        }
    }

    /// [`Command::DropLeg`](super::Command::DropLeg): an answered leg is forgotten (no BYE),
    /// any other ended as by `EndLeg`.
    pub(super) fn drop_leg(&mut self, tag: &str, now: Millis) {
        if self
            .legs
            .get(tag)
            .is_some_and(|l| l.state == LegState::Answered)
        {
            self.close_leg(tag);
        } else if !self.cancel_resuming(tag) {
            self.end_leg(tag, now);
        }
    }

    pub(super) fn on_leg_response(&mut self, tag: &str, resp: &rsip::Response, now: Millis) {
        let code = resp.status_code.code();
        let Some(l) = self.legs.get_mut(tag) else {
            return;
        };
        if l.state != LegState::Calling {
            // A retransmitted final response: our ACK got lost.
            if code >= 200
                && let Some(a) = l.ack.clone()
            {
                let peer = l.peer;
                self.send(&peer, a);
            }
            return;
        }
        l.tx.handle_input(Response(code), now);
        if !l.tx.done() {
            let (cancel, deadline) = (l.cancel, l.tx.poll_timeout());
            if cancel {
                self.send_cancel(tag, now);
            } else if code >= 180 && !std::mem::replace(&mut l.rang, true) {
                self.leg_event(tag, LegEvent::Ringing);
            }
            self.arm(deadline, TimerKey::Leg(tag.to_string()));
            return;
        }
        if code >= 300 {
            let to = message::value(&resp.headers, "To").unwrap_or_default();
            if (code == 401 || code == 407) && !l.cancel && l.redial.credentials.is_some() {
                // ACK the challenge, then the INVITE again with the answer.
                let ack: Arc<[u8]> = Arc::from(l.invite.ack_error(to));
                let peer = l.peer;
                self.send(&peer, ack);
                if self.answer_challenge(tag, code, resp, now) {
                    return;
                }
                let Some(l) = self.legs.get_mut(tag) else {
                    return;
                };
                l.state = LegState::Done;
                let linger = if peer.proto.reliable() {
                    0
                } else {
                    self.opts.timers.t64()
                };
                self.leg_event(tag, LegEvent::Failed(code));
                self.arm(Some(now + linger), TimerKey::Leg(tag.to_string()));
                return;
            }
            let ack: Arc<[u8]> = Arc::from(l.invite.ack_error(to));
            l.ack = Some(Arc::clone(&ack));
            l.state = LegState::Done;
            let (peer, linger) = (
                l.peer,
                if l.peer.proto.reliable() {
                    0
                } else {
                    self.opts.timers.t64()
                },
            );
            self.leg_event(tag, LegEvent::Failed(code));
            self.send(&peer, ack);
            self.arm(Some(now + linger), TimerKey::Leg(tag.to_string()));
            return;
        }
        // 2xx: the dialog; ACK it (even when we are about to hang up).
        let from = l.invite.from.clone();
        let mut dialog =
            Dialog::from_uac_response(&l.invite.call_id, &from, tag, l.invite.cseq, resp);
        let (peer, local_ip, cancel) = (l.peer, l.local_ip, l.cancel);
        let via = self.sent_by(peer.proto, local_ip);
        let ack: Arc<[u8]> = Arc::from(dialog.ack(&via, &message::new_branch()));
        self.send(&peer, Arc::clone(&ack));
        let n = std::str::from_utf8(&resp.body)
            .ok()
            .filter(|b| !b.trim().is_empty())
            .and_then(|b| sdp::parse(b).ok())
            // The answer to our (plain) offer.
            .and_then(|a| sdp::negotiate(&a, sdp::SrtpPolicy::None).ok());
        let Some(n) = n.filter(|_| !cancel) else {
            // Answered too late, or with nothing we can send: hang up at once.
            self.send_dialog_bye(&mut dialog, peer, local_ip, now);
            if self.remove_leg(tag).is_some() {
                if !cancel {
                    tracing::info!(tag, "the callee answered without usable SDP");
                    self.leg_event(tag, LegEvent::Failed(488));
                }
                self.emit(Output::LegClosed {
                    tag: tag.to_string(),
                });
            }
            return;
        };
        if let Some(l) = self.legs.get_mut(tag) {
            l.ack = Some(ack);
            l.dialog = Some(dialog.clone());
            l.state = LegState::Answered;
            self.leg_event(tag, LegEvent::Answered(n));
            self.leg_event(tag, LegEvent::Dialog(Box::new(dialog)));
        }
    }

    /// Sends leg `tag`'s INVITE again with digest credentials answering the challenge of
    /// `resp` (401 or 407) on a new transaction; `false` when it cannot (no usable
    /// challenge, credentials used already).
    fn answer_challenge(
        &mut self,
        tag: &str,
        code: u16,
        resp: &rsip::Response,
        now: Millis,
    ) -> bool {
        let (ask, answer) = if code == 407 {
            ("Proxy-Authenticate", "Proxy-Authorization")
        } else {
            ("WWW-Authenticate", "Authorization")
        };
        let Some(challenge) =
            message::value(&resp.headers, ask).and_then(crate::digest::parse_challenge)
        else {
            tracing::info!(tag, code, "a challenge that is not an MD5 digest");
            return false;
        };
        let Some(l) = self.legs.get_mut(tag) else {
            return false;
        };
        let Some((user, password)) = l.redial.credentials.take() else {
            return false;
        };
        let value = crate::digest::authorization(
            &challenge,
            &user,
            &password,
            "INVITE",
            &l.invite.uri,
            &message::new_tag(),
        );
        let r = &l.redial;
        let tag_only = tag.to_string();
        let built = OutgoingInvite::build(&InviteParts {
            target: &r.target,
            sent_by: &r.sent_by,
            from: &r.from,
            tag: &tag_only,
            call_id: &l.invite.call_id,
            contact: &r.contact,
            headers: &r.headers,
            sdp: &r.offer,
            cseq: l.invite.cseq + 1,
            authorization: Some((answer, &value)),
        });
        let Ok((invite, bytes)) = built else {
            return false;
        };
        let bytes: Arc<[u8]> = Arc::from(bytes);
        let tx = InviteClientTx::new(
            Arc::clone(&bytes),
            l.peer.proto.reliable(),
            self.opts.timers,
            now,
        );
        let deadline = tx.poll_timeout();
        let old = std::mem::replace(&mut l.invite, invite);
        l.tx = tx;
        let (peer, branch) = (l.peer, l.invite.branch.clone());
        self.leg_branches.remove(&old.branch);
        self.leg_branches.insert(branch, tag.to_string());
        tracing::debug!(tag, code, "INVITE sent again with digest credentials");
        self.send(&peer, bytes);
        self.arm(deadline, TimerKey::Leg(tag.to_string()));
        true
    }

    /// The callee of a leg re-INVITEs (hold, resume): answer from the leg's port.
    pub(super) fn on_leg_reinvite(
        &mut self,
        tag: &str,
        req: &Request,
        f: &Facts,
        peer: Peer,
        key: TxKey,
        now: Millis,
    ) {
        if !self.leg_matches(tag, f) {
            self.answer(req, peer, 481);
            return;
        }
        let Some(mut bucket) = self.legs.get(tag).map(|l| l.bucket) else {
            return;
        };
        let ok = self.in_dialog_rate(&mut bucket, req, peer, now);
        let Some(l) = self.legs.get_mut(tag) else {
            return;
        };
        l.bucket = bucket;
        if !ok {
            return;
        }
        let offer = std::str::from_utf8(&req.body)
            .ok()
            .filter(|b| !b.trim().is_empty())
            .and_then(|b| sdp::parse(b).ok());
        let Some((offer, n)) = offer.and_then(|o| {
            sdp::negotiate(&o, sdp::SrtpPolicy::None)
                .ok()
                .map(|n| (o, n))
        }) else {
            self.answer_on_tx(req, peer, &key, 488, now);
            return;
        };
        l.sdp_version += 1;
        let body = sdp::answer(&offer, &n, l.local_ip, l.port, l.session_id, l.sdp_version);
        l.reinvite = Some(key.clone());
        let local_ip = l.local_ip;
        self.leg_event(tag, LegEvent::Media(n));
        let contact = self.contact(local_ip, peer.proto);
        self.respond(
            req,
            peer,
            &key,
            200,
            &Extra {
                to_tag: Some(tag),
                contact: Some(&contact),
                headers: &[("Allow", ALLOW)],
                body: Some(("application/sdp", body.as_bytes())),
            },
            now,
        );
    }

    pub(super) fn on_leg_timer(&mut self, tag: &str, now: Millis) {
        let Some(l) = self.legs.get_mut(tag) else {
            return;
        };
        if l.state == LegState::Done {
            self.close_leg(tag);
            return;
        }
        if l.state != LegState::Calling || l.tx.poll_timeout().is_none_or(|d| d > now) {
            return;
        }
        l.tx.handle_timeout(now);
        let (mut resend, mut over) = (Vec::new(), false);
        while let Some(o) = l.tx.poll_output() {
            match o {
                TxOutput::Retransmit(b) => resend.push(b),
                TxOutput::TimedOut | TxOutput::Terminated => over = true,
            }
        }
        let (d, peer, proceeding) = (l.tx.poll_timeout(), l.peer, l.tx.proceeding());
        for b in resend {
            self.send(&peer, b);
        }
        if !over {
            self.arm(d, TimerKey::Leg(tag.to_string()));
        } else if proceeding {
            // Rang for timer C: give up with a CANCEL; its 487 ends the leg.
            self.leg_event(tag, LegEvent::Failed(408));
            if let Some(l) = self.legs.get_mut(tag) {
                l.cancel = true;
            }
            self.send_cancel(tag, now);
            self.arm(
                Some(now + self.opts.timers.t64()),
                TimerKey::Leg(tag.to_string()),
            );
            if let Some(l) = self.legs.get_mut(tag) {
                l.state = LegState::Done;
            }
        } else if let Some(l) = self.remove_leg(tag) {
            tracing::info!(target = %l.invite.uri, "no answer to the INVITE");
            self.leg_event(tag, LegEvent::Failed(408));
            self.emit(Output::LegClosed {
                tag: tag.to_string(),
            });
        }
    }
}
