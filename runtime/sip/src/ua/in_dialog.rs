//! Requests within a dialog (and CANCEL, OPTIONS): ACK (of a non-2xx by its transaction, of
//! a 2xx by the dialog; a late offer's answer starts the call), CANCEL → 487, BYE → 200,
//! re-INVITE → 200 with our answer and the new media for the call (hold, resume), INFO with a
//! key, OPTIONS; 481 for what matches no dialog. The callee's requests on legs we placed
//! (re-INVITE, BYE, INFO) are answered here too, with `legs.rs`'s help.

use super::core::{Phase, TxKey};
use super::{Core, DialogEvent, Host, LegEvent, Output};
use crate::info::key_of_info;
use crate::message::{self, ALLOW, Extra, Facts};
use crate::peer::Peer;
use crate::sdp;
use crate::transaction::State;
use ivr_sansio::Millis;
use rsip::headers::UntypedHeader;
use rsip::{Method, Request};

impl<H: Host> Core<H> {
    /// Takes a token of dialog `tag`'s request rate; false (a 503 was sent) when there is
    /// none.
    fn dialog_rate(&mut self, tag: &str, req: &Request, peer: Peer, now: Millis) -> bool {
        let Some(mut bucket) = self.dialogs.get(tag).map(|e| e.bucket) else {
            return false;
        };
        let ok = self.in_dialog_rate(&mut bucket, req, peer, now);
        if let Some(e) = self.dialogs.get_mut(tag) {
            e.bucket = bucket;
        }
        ok
    }

    pub(super) fn on_options(&mut self, req: &Request, peer: Peer, key: TxKey, now: Millis) {
        let headers = [
            ("Allow", ALLOW),
            (
                "Accept",
                "application/sdp, application/dtmf-relay, application/dtmf",
            ),
        ];
        let extra = Extra {
            to_tag: Some("ivr-options"),
            headers: &headers,
            ..Extra::default()
        };
        self.respond(req, peer, &key, 200, &extra, now);
    }

    pub(super) fn on_reinvite(
        &mut self,
        req: &Request,
        f: &Facts,
        peer: Peer,
        key: TxKey,
        now: Millis,
    ) {
        let tag = f.to_tag.clone().unwrap_or_default();
        if !self.dialogs.contains_key(&tag) && self.legs.contains_key(&tag) {
            self.on_leg_reinvite(&tag, req, f, peer, key, now);
            return;
        }
        if !self.dialogs.get(&tag).is_some_and(|e| e.dialog.matches(f)) {
            self.answer(req, peer, 481);
            return;
        }
        if !self.dialog_rate(&tag, req, peer, now) {
            return;
        }
        let Some(e) = self.dialogs.get_mut(&tag) else {
            return;
        };
        if f.cseq <= e.dialog.remote_cseq {
            self.answer_on_tx(req, peer, &key, 500, now);
            return;
        }
        e.dialog.remote_cseq = f.cseq;
        let offer = std::str::from_utf8(&req.body)
            .ok()
            .filter(|b| !b.trim().is_empty())
            .map(sdp::parse);
        let Some(Ok(offer)) = offer else {
            self.answer_on_tx(req, peer, &key, 488, now);
            return;
        };
        // The call keeps its protection: SRTP stays SRTP (with our key), plain stays plain.
        let policy = if e.srtp.is_some() {
            sdp::SrtpPolicy::Required
        } else {
            sdp::SrtpPolicy::None
        };
        let Ok(mut n) = sdp::negotiate(&offer, policy) else {
            self.answer_on_tx(req, peer, &key, 488, now);
            return;
        };
        if let (Some(k), Some(old)) = (&mut n.srtp, &e.srtp) {
            k.local = old.local;
        }
        e.srtp = n.srtp;
        e.sdp_version += 1;
        let body = sdp::answer(&offer, &n, e.local_ip, e.port, e.session_id, e.sdp_version);
        let answered = matches!(e.phase, Phase::Answered);
        e.reinvite = Some((key.clone(), f.cseq));
        let (local_ip, tag) = (e.local_ip, e.dialog.local_tag.clone());
        if answered {
            self.dialog_event(&tag, DialogEvent::Media(n));
        }
        let contact = self.contact(local_ip, peer.proto);
        self.respond(
            req,
            peer,
            &key,
            200,
            &Extra {
                to_tag: Some(&tag),
                contact: Some(&contact),
                headers: &[("Allow", ALLOW)],
                body: Some(("application/sdp", body.as_bytes())),
            },
            now,
        );
    }

    pub(super) fn on_ack(&mut self, req: &Request, f: &Facts, branch: &str, now: Millis) {
        let key = TxKey {
            branch: branch.to_string(),
            method: Method::Invite,
        };
        if self
            .server
            .get(&key)
            .is_some_and(|(tx, _)| tx.state() == State::Completed)
        {
            self.ack_server(&key, now);
            return;
        }
        // The ACK of a 2xx: a new transaction, matched by the dialog.
        let tag = f.to_tag.clone().unwrap_or_default();
        if let Some(l) = self.legs.get_mut(&tag)
            && l.dialog.as_ref().is_some_and(|d| d.matches(f))
        {
            if let Some(key) = l.reinvite.take() {
                self.ack_server(&key, now);
            }
            return;
        }
        let Some(e) = self.dialogs.get_mut(&tag).filter(|e| e.dialog.matches(f)) else {
            return;
        };
        // The ACK of the 2xx to the caller's re-INVITE (same CSeq number).
        if let Some((key, _)) = e.reinvite.take_if(|(_, cseq)| *cseq == f.cseq) {
            self.ack_server(&key, now);
            return;
        }
        let key = e.invite.clone();
        let waiting = std::mem::take(&mut e.awaiting_ack);
        let offered = e.start_with.take();
        self.ack_server(&key, now);
        if !waiting {
            return;
        }
        // The call starts now; for a late offer with the caller's answer in the ACK.
        if let Some(media) = offered {
            self.emit(Output::Start { tag, media });
            return;
        }
        let n = std::str::from_utf8(&req.body)
            .ok()
            .filter(|b| !b.trim().is_empty())
            .and_then(|b| sdp::parse(b).ok())
            // The answer to our (plain) offer.
            .and_then(|a| sdp::negotiate(&a, sdp::SrtpPolicy::None).ok());
        match n {
            Some(media) => self.emit(Output::Start { tag, media }),
            None => {
                tracing::info!(call = %f.call_id, "no usable SDP answer in the ACK; ending the call");
                self.emit(Output::Unserved {
                    tag: tag.clone(),
                    outcome: "failed",
                });
                if let Some(mut e) = self.remove_dialog(&tag) {
                    self.send_dialog_bye(&mut e.dialog, e.peer, e.local_ip, now);
                }
            }
        }
    }

    pub(super) fn on_cancel(&mut self, req: &Request, peer: Peer, key: TxKey, now: Millis) {
        let invite = TxKey {
            branch: key.branch.clone(),
            method: Method::Invite,
        };
        let Some((tx, _)) = self.server.get(&invite) else {
            self.answer(req, peer, 481);
            return;
        };
        let pending = tx.state() == State::Proceeding;
        self.respond(req, peer, &key, 200, &Extra::default(), now);
        if !pending {
            return;
        }
        // Find the ringing dialog of that INVITE and end it with 487.
        let tag = self
            .dialogs
            .iter()
            .find(|(_, e)| e.invite == invite)
            .map(|(t, _)| t.clone());
        let Some(tag) = tag else { return };
        let Some(e) = self.dialogs.remove(&tag) else {
            return;
        };
        // Rebuild the 487 from the INVITE's own headers: the CANCEL shares them except
        // CSeq's method, which must say INVITE.
        let mut inv = req.clone();
        inv.method = Method::Invite;
        for h in inv.headers.iter_mut() {
            if let rsip::Header::CSeq(c) = h {
                *c = rsip::headers::CSeq::new(format!("{} INVITE", e.dialog.remote_cseq));
            }
        }
        let extra = Extra {
            to_tag: Some(&tag),
            ..Extra::default()
        };
        self.respond(&inv, e.peer, &invite, 487, &extra, now);
        tracing::info!(call = %e.dialog.call_id, "cancelled before the answer");
        // The caller gave up: the call's record says so; what it held goes back.
        if matches!(e.phase, Phase::Ringing { .. }) {
            self.emit(Output::Unserved {
                tag: tag.clone(),
                outcome: "abandoned",
            });
        }
        self.emit(Output::DialogClosed { tag });
    }

    pub(super) fn on_bye(&mut self, req: &Request, f: &Facts, peer: Peer, key: TxKey, now: Millis) {
        let tag = f.to_tag.clone().unwrap_or_default();
        let found = self.dialogs.get(&tag).is_some_and(|e| e.dialog.matches(f));
        if !found {
            if self.leg_matches(&tag, f) {
                self.respond(req, peer, &key, 200, &Extra::default(), now);
                if self.remove_leg(&tag).is_some() {
                    self.leg_event(&tag, LegEvent::Bye);
                    self.emit(Output::LegClosed { tag });
                }
            } else {
                self.answer(req, peer, 481);
            }
            return;
        }
        self.respond(req, peer, &key, 200, &Extra::default(), now);
        let Some(e) = self.dialogs.remove(&tag) else {
            return;
        };
        let ringing = matches!(e.phase, Phase::Ringing { .. });
        if e.awaiting_ack || ringing {
            // Hung up before the ACK (or before our 200): the call never started.
            self.emit(Output::Unserved {
                tag: tag.clone(),
                outcome: "abandoned",
            });
        } else if matches!(e.phase, Phase::Answered) {
            self.dialog_event(&tag, DialogEvent::Bye);
        }
        self.emit(Output::DialogClosed { tag });
        // A BYE in the early dialog (RFC 3261 15): the INVITE still pending gets its 487 (15.1.2).
        if ringing {
            self.refuse_ringing(e, 487, now);
        }
    }

    pub(super) fn on_info(
        &mut self,
        req: &Request,
        f: &Facts,
        peer: Peer,
        key: TxKey,
        now: Millis,
    ) {
        let tag = f.to_tag.clone().unwrap_or_default();
        if !self.dialogs.get(&tag).is_some_and(|e| e.dialog.matches(f)) {
            let code = if self.leg_matches(&tag, f) { 200 } else { 481 };
            self.answer(req, peer, code);
            return;
        }
        if !self.dialog_rate(&tag, req, peer, now) {
            return;
        }
        let Some(e) = self.dialogs.get(&tag) else {
            return;
        };
        let answered = matches!(e.phase, Phase::Answered);
        let ctype = message::value(&req.headers, "Content-Type").unwrap_or_default();
        let body = String::from_utf8_lossy(&req.body);
        if let Some(k) = key_of_info(ctype, &body)
            && answered
        {
            self.dialog_event(&tag, DialogEvent::Key(k));
        }
        self.respond(req, peer, &key, 200, &Extra::default(), now);
    }
}
