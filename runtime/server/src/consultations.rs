//! The consultation calls of attended transfers in progress ([`Consultations`], by our
//! To-tag of each one's dialog), and what passes between a consultation and the caller's
//! call that takes it over: the [`Handover`] request and the [`TakenLeg`]. The calls
//! themselves are [`crate::agent_call`] and `call/attended.rs`; this module holds only the
//! shared table, so that [`crate::services`] can hold it without importing either.

use crate::pass_refusal::PassRefusal;
use crate::screen_pop::ScreenPop;
use ivr_acd::CallKey;
use ivr_media::bridge::Side;
use ivr_media::latch::Latch;
use ivr_media::ports::RtpPort;
use ivr_sip::ua::{LegEvent, Replaces};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot};

/// An attended transfer asks the consultation call for its far leg.
#[derive(Debug)]
pub struct Handover {
    /// The agent whose REFER asks (must be the agent who placed the consultation).
    pub by: String,
    /// The leg, or why not.
    pub reply: oneshot::Sender<Result<TakenLeg, PassRefusal>>,
}

/// The far leg of a consultation, handed to the caller's call: it goes on relaying it.
#[derive(Debug)]
pub struct TakenLeg {
    /// The leg's tag in the core.
    pub tag: String,
    /// The agent who answered it.
    pub agent: String,
    /// Its RTP port.
    pub port: RtpPort,
    /// Its RTP socket.
    pub sock: tokio::net::UdpSocket,
    /// Its events from the core.
    pub events: mpsc::UnboundedReceiver<LegEvent>,
    /// Where its RTP goes (none: on hold).
    pub remote: Option<SocketAddr>,
    /// Where its RTP may come from.
    pub latch: Latch,
    /// Its media.
    pub side: Side,
    /// The ACD's key of the conversation (the answering agent is on call under it); none
    /// for a number dialled through a trunk.
    pub key: Option<CallKey>,
    /// The trunk channel a number's leg holds while it lasts.
    pub trunk: Option<OwnedSemaphorePermit>,
    /// The screen pop the answering agent saw.
    pub pop: ScreenPop,
    /// The consultation's own dialog (our To-tag): whoever takes the leg ends it (BYE to
    /// the first agent's phone) after the REFER's final NOTIFY, so the phone hears them in
    /// that order.
    pub dialog: String,
}

pub(crate) struct Entry {
    pub(crate) call_id: String,
    pub(crate) remote_tag: String,
    pub(crate) agent: String,
    pub(crate) tx: mpsc::UnboundedSender<Handover>,
}

/// The consultation calls in progress, by our To-tag (at most one per admitted dialog).
#[derive(Default)]
pub struct Consultations {
    calls: Mutex<HashMap<String, Entry>>,
}

impl Consultations {
    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.calls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Where to ask for the consultation `replaces` names, for agent `by`: refused when no
    /// consultation has that dialog (481) or another agent placed it (403).
    pub fn find(
        &self,
        replaces: &Replaces,
        by: &str,
    ) -> Result<mpsc::UnboundedSender<Handover>, PassRefusal> {
        let calls = self.lock();
        let e = calls
            .get(&replaces.to_tag)
            .filter(|e| e.call_id == replaces.call_id && e.remote_tag == replaces.from_tag)
            .ok_or(PassRefusal::NoSuchDialog)?;
        if e.agent != by {
            return Err(PassRefusal::NotYourDialog);
        }
        Ok(e.tx.clone())
    }

    /// Consultation calls in progress.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether none is in progress.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replaces_finds_only_the_same_agents_consultation() {
        let c = Consultations::default();
        let (tx, _rx) = mpsc::unbounded_channel();
        c.lock().insert(
            "ours".into(),
            Entry {
                call_id: "abc@phone".into(),
                remote_tag: "theirs".into(),
                agent: "2001".into(),
                tx,
            },
        );
        let rep = |call: &str, to: &str, from: &str| Replaces {
            call_id: call.into(),
            to_tag: to.into(),
            from_tag: from.into(),
            early_only: false,
        };
        assert!(c.find(&rep("abc@phone", "ours", "theirs"), "2001").is_ok());
        assert_eq!(
            c.find(&rep("abc@phone", "ours", "theirs"), "2002").err(),
            Some(PassRefusal::NotYourDialog)
        );
        for r in [
            rep("abc@phone", "theirs", "ours"),
            rep("other", "ours", "theirs"),
            rep("abc@phone", "ours", "x"),
        ] {
            assert_eq!(
                c.find(&r, "2001").err(),
                Some(PassRefusal::NoSuchDialog),
                "{r:?}"
            );
        }
        assert_eq!(PassRefusal::NoSuchDialog.code(), 481);
        assert_eq!(PassRefusal::NotYourDialog.code(), 403);
        assert_eq!(PassRefusal::EarlyDialog.code(), 480);
    }
}
