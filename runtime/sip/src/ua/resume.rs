//! Calls taken over from another node of a cluster ([`Command::Resume`](super::Command::Resume)):
//! the caller's dialog as that node knew it (Call-ID, tags, the caller's Contact, the route
//! set, our CSeq) is re-INVITEd from here — our Contact, an SDP offer of our RTP port with the
//! call's codec — through the route set (the proxy). The 2xx is acknowledged and the dialog
//! becomes one of this core's answered dialogs (the caller's BYE, INFO and re-INVITEs reach
//! it; our BYE goes out in it), and the application hears [`Output::Start`]; a refusal or no
//! answer gives [`Output::Unserved`] (`failed`) and [`Output::DialogClosed`].
//!
//! An agent's leg of a bridged call ([`Command::ResumeLeg`](super::Command::ResumeLeg)), whose
//! dialog the dead node placed as the UAC, is re-INVITEd the same way; once answered it
//! becomes one of this core's answered legs ([`LegEvent::Answered`], then
//! [`LegEvent::Dialog`](super::LegEvent::Dialog)); a refusal or no answer gives
//! [`LegEvent::Failed`] and [`Output::LegClosed`]. A leg ended meanwhile is hung up (BYE)
//! once it answers.

use super::core::{Entry, Phase, TimerKey, TxKey};
use super::legs::{Leg, ResumedParts};
use super::{Core, Host, LegEvent, Output};
use crate::dialog::Dialog;
use crate::edge::{Bucket, IN_DIALOG_BURST};
use crate::message::{self, ALLOW};
use crate::peer::Peer;
use crate::sdp::{self, Law};
use crate::transaction::{InviteClientTx, Response, TxOutput};
use ivr_sansio::{Machine, Millis};
use rsip::Method;
use std::net::IpAddr;
use std::sync::Arc;

/// A caller's dialog to take over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resume {
    /// The dialog as the node that answered it knew it (we are its UAS); its `local_cseq`
    /// must be above any that node used (the re-INVITE takes the next one).
    pub dialog: Dialog,
    /// Where to send the re-INVITE (the proxy of the route set).
    pub peer: Peer,
    /// Our RTP port (into the offer).
    pub port: u16,
    /// The call's codec, its payload type and the telephone-event payload type.
    pub codec: (Law, u8, Option<u8>),
}

/// A re-INVITE on its way.
pub(super) struct Resuming {
    dialog: Dialog,
    tx: InviteClientTx,
    branch: String,
    peer: Peer,
    local_ip: IpAddr,
    port: u16,
    session_id: u64,
    /// An agent's leg (we are the UAC of its dialog), not a caller's dialog.
    leg: bool,
    /// The application gave the leg up before it answered (BYE once it does).
    cancel: bool,
}

impl<H: Host> Core<H> {
    fn resume_failed(&mut self, tag: &str, leg: bool, code: u16) {
        if leg {
            self.leg_event(tag, LegEvent::Failed(code));
            self.emit(Output::LegClosed {
                tag: tag.to_string(),
            });
            return;
        }
        self.emit(Output::Unserved {
            tag: tag.to_string(),
            outcome: "failed",
        });
        self.emit(Output::DialogClosed {
            tag: tag.to_string(),
        });
    }

    /// Sends the re-INVITE of a call taken over.
    pub(super) fn resume(&mut self, r: Resume, now: Millis) {
        self.reinvite_taken_over(r, false, now);
    }

    /// Sends the re-INVITE of an agent's leg taken over.
    pub(super) fn resume_leg(&mut self, r: Resume, now: Millis) {
        self.reinvite_taken_over(r, true, now);
    }

    /// The application ends leg `tag` while its re-INVITE is on its way: it is hung up once
    /// it answers. Whether `tag` was such a leg.
    pub(super) fn cancel_resuming(&mut self, tag: &str) -> bool {
        match self.resuming.get_mut(tag) {
            Some(r) if r.leg => {
                r.cancel = true;
                true
            }
            _ => false,
        }
    }

    fn reinvite_taken_over(&mut self, r: Resume, leg: bool, now: Millis) {
        let tag = r.dialog.local_tag.clone();
        if self.dialogs.contains_key(&tag)
            || self.legs.contains_key(&tag)
            || self.resuming.contains_key(&tag)
            || self.resuming.len() >= self.opts.bounds.legs
        {
            tracing::warn!(
                tag,
                "cannot take this call over (known already, or too many)"
            );
            self.resume_failed(&tag, leg, 500);
            return;
        }
        let local_ip = self.local_ip(r.peer.addr.ip());
        let via = self.sent_by(r.peer.proto, local_ip);
        let contact = format!("<{}>", self.contact(local_ip, r.peer.proto));
        let session_id = message::random_u64() >> 1;
        let offer = sdp::offer_codec(local_ip, r.port, session_id, 1, r.codec);
        let branch = message::new_branch();
        let mut dialog = r.dialog;
        let bytes: Arc<[u8]> = Arc::from(dialog.request_with(
            Method::Invite,
            &via,
            &branch,
            &[("Contact", &contact), ("Allow", ALLOW)],
            Some(("application/sdp", offer.as_bytes())),
        ));
        let tx = InviteClientTx::new(
            Arc::clone(&bytes),
            r.peer.proto.reliable(),
            self.opts.timers,
            now,
        );
        let deadline = tx.poll_timeout();
        self.resume_branches.insert(branch.clone(), tag.clone());
        self.resuming.insert(
            tag.clone(),
            Resuming {
                dialog,
                tx,
                branch,
                peer: r.peer,
                local_ip,
                port: r.port,
                session_id,
                leg,
                cancel: false,
            },
        );
        self.send(&r.peer, bytes);
        self.arm(deadline, TimerKey::Resume(tag));
    }

    /// A response to the re-INVITE of a call taken over (or, once answered, a retransmitted
    /// 2xx: its ACK again).
    pub(super) fn on_resume_response(&mut self, tag: &str, resp: &rsip::Response, now: Millis) {
        let code = resp.status_code.code();
        let Some(r) = self.resuming.get_mut(tag) else {
            if code >= 200
                && let Some(e) = self.dialogs.get(tag)
                && let Some(ack) = e.resumed_ack.clone()
            {
                let peer = e.peer;
                self.send(&peer, ack);
            }
            return;
        };
        r.tx.handle_input(Response(code), now);
        if !r.tx.done() {
            let d = r.tx.poll_timeout();
            self.arm(d, TimerKey::Resume(tag.to_string()));
            return;
        }
        let Some(mut r) = self.resuming.remove(tag) else {
            return;
        };
        let via = self.sent_by(r.peer.proto, r.local_ip);
        if code >= 300 {
            // The ACK of an error is part of the INVITE's transaction (same branch).
            let ack: Arc<[u8]> = Arc::from(r.dialog.ack(&via, &r.branch));
            self.send(&r.peer, ack);
            self.resume_branches.remove(&r.branch);
            tracing::info!(tag, code, call = %r.dialog.call_id, leg = r.leg, "the re-INVITE of a call taken over was refused");
            self.resume_failed(tag, r.leg, code);
            return;
        }
        // 2xx: the caller's Contact may have changed (a target refresh).
        if let Some(target) = message::value(&resp.headers, "Contact")
            .map(message::first_element)
            .map(message::uri_of)
            .filter(|u| !u.is_empty())
        {
            r.dialog.remote_target = target.to_string();
        }
        let ack: Arc<[u8]> = Arc::from(r.dialog.ack(&via, &message::new_branch()));
        self.send(&r.peer, Arc::clone(&ack));
        let n = std::str::from_utf8(&resp.body)
            .ok()
            .filter(|b| !b.trim().is_empty())
            .and_then(|b| sdp::parse(b).ok())
            .and_then(|a| sdp::negotiate(&a, sdp::SrtpPolicy::None).ok());
        let Some(n) = n.filter(|_| !r.cancel) else {
            tracing::info!(
                tag,
                "the re-INVITE was answered without usable SDP (or is no longer wanted)"
            );
            self.resume_branches.remove(&r.branch);
            self.send_dialog_bye(&mut r.dialog, r.peer, r.local_ip, now);
            self.resume_failed(tag, r.leg, 488);
            return;
        };
        if r.leg {
            self.resume_branches.remove(&r.branch);
            self.leg_branches.insert(r.branch.clone(), tag.to_string());
            let dialog = r.dialog.clone();
            self.legs.insert(
                tag.to_string(),
                Leg::resumed(ResumedParts {
                    dialog: r.dialog,
                    tx: r.tx,
                    branch: r.branch,
                    via,
                    peer: r.peer,
                    local_ip: r.local_ip,
                    port: r.port,
                    session_id: r.session_id,
                    ack,
                    now,
                }),
            );
            self.leg_event(tag, LegEvent::Answered(n));
            self.leg_event(tag, LegEvent::Dialog(Box::new(dialog)));
            return;
        }
        self.answered += 1;
        self.dialogs.insert(
            tag.to_string(),
            Entry {
                dialog: r.dialog,
                peer: r.peer,
                invite: TxKey {
                    branch: r.branch,
                    method: Method::Invite,
                },
                phase: Phase::Answered,
                port: r.port,
                local_ip: r.local_ip,
                sdp_version: 1,
                session_id: r.session_id,
                awaiting_ack: false,
                start_with: None,
                reinvite: None,
                bucket: Bucket::full(IN_DIALOG_BURST, now),
                srtp: None,
                resumed_ack: Some(ack),
            },
        );
        self.emit(Output::Start {
            tag: tag.to_string(),
            media: n,
        });
    }

    /// The re-INVITE's retransmissions and its timeout (no answer: the call is lost).
    pub(super) fn on_resume_timer(&mut self, tag: &str, now: Millis) {
        let Some(r) = self.resuming.get_mut(tag) else {
            return;
        };
        if r.tx.poll_timeout().is_none_or(|d| d > now) {
            return;
        }
        r.tx.handle_timeout(now);
        let (mut resend, mut over) = (Vec::new(), false);
        while let Some(o) = r.tx.poll_output() {
            match o {
                TxOutput::Retransmit(b) => resend.push(b),
                TxOutput::TimedOut | TxOutput::Terminated => over = true,
            }
        }
        let (d, peer) = (r.tx.poll_timeout(), r.peer);
        for b in resend {
            self.send(&peer, b);
        }
        if !over {
            self.arm(d, TimerKey::Resume(tag.to_string()));
            return;
        }
        if let Some(r) = self.resuming.remove(tag) {
            self.resume_branches.remove(&r.branch);
            tracing::info!(tag, call = %r.dialog.call_id, leg = r.leg, "no answer to the re-INVITE of a call taken over");
            self.resume_failed(tag, r.leg, 408);
        }
    }
}
