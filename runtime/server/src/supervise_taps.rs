//! Where a supervisor's media session finds its call: every call task registers under its
//! call id ([`Taps::register`]) and answers [`TapRequest`]s on the receiver it gets. A call
//! that is bridged to an agent makes a [`ivr_media::supervise`] pair, keeps the
//! [`BridgeTap`](ivr_media::supervise::BridgeTap) on its bridge and hands back the
//! [`SupervisorEnd`]. One supervisor at a time per call.
//!
//! The registry is touched when a call starts and ends and when a supervisor attaches: a
//! short lock, never per packet. It holds one entry per call in progress (bounded by
//! `max_calls`).

use ivr_media::supervise::{Mode, SupervisorEnd};
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::{mpsc, oneshot};

/// Why a supervisor could not attach to a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// No call in progress has that id.
    #[error("no such call in progress")]
    NoSuchCall,
    /// The call is not talking to an agent now.
    #[error("the call is not connected to an agent")]
    NotBridged,
    /// Another supervisor is on the call.
    #[error("another supervisor is on this call")]
    Busy,
}

/// A supervisor asks a call for its tap.
#[derive(Debug)]
pub struct TapRequest {
    /// The mode the supervisor starts in.
    pub mode: Mode,
    /// The supervisor's end of the pair, or why not.
    pub reply: oneshot::Sender<Result<SupervisorEnd, Refused>>,
}

type Calls = HashMap<String, (u64, mpsc::UnboundedSender<TapRequest>)>;

/// The registry of calls a supervisor may attach to.
#[derive(Debug, Default)]
pub struct Taps {
    calls: Mutex<HashMap<String, (u64, mpsc::UnboundedSender<TapRequest>)>>,
    next: AtomicU64,
}

/// A call's place in [`Taps`]: where its requests come.
#[derive(Debug)]
pub struct Registration {
    /// The requests.
    pub requests: mpsc::UnboundedReceiver<TapRequest>,
    key: u64,
}

impl Taps {
    fn lock(&self) -> std::sync::MutexGuard<'_, Calls> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A call with id `call_id` starts: where its requests come.
    pub fn register(&self, call_id: &str) -> Registration {
        let (tx, requests) = mpsc::unbounded_channel();
        let key = self.next.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(call_id.to_string(), (key, tx));
        Registration { requests, key }
    }

    /// The call with id `call_id` is over (an entry registered again under the same id by
    /// another call is left alone).
    pub fn unregister(&self, call_id: &str, r: &Registration) {
        let mut calls = self.lock();
        if calls.get(call_id).is_some_and(|(key, _)| *key == r.key) {
            calls.remove(call_id);
        }
    }

    /// Asks the call `call_id` for a supervisor's end in `mode`.
    pub async fn attach(&self, call_id: &str, mode: Mode) -> Result<SupervisorEnd, Refused> {
        let tx = self
            .lock()
            .get(call_id)
            .map(|(_, tx)| tx.clone())
            .ok_or(Refused::NoSuchCall)?;
        let (reply, answer) = oneshot::channel();
        tx.send(TapRequest { mode, reply })
            .map_err(|_| Refused::NoSuchCall)?;
        answer.await.unwrap_or(Err(Refused::NoSuchCall))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_supervisor_reaches_the_call_registered_under_its_id() {
        let taps = Taps::default();
        assert_eq!(
            taps.attach("c1", Mode::Listen).await.err(),
            Some(Refused::NoSuchCall)
        );
        let mut first = taps.register("c1");
        // The call answers: not bridged.
        let answer = tokio::spawn(async move {
            let r = first.requests.recv().await.expect("a request");
            assert_eq!(r.mode, Mode::Whisper);
            let _ = r.reply.send(Err(Refused::NotBridged));
            first
        });
        assert_eq!(
            taps.attach("c1", Mode::Whisper).await.err(),
            Some(Refused::NotBridged)
        );
        let first = answer.await.expect("task");
        // A second call under the same id takes its place; the first one's end leaves it.
        let second = taps.register("c1");
        taps.unregister("c1", &first);
        assert!(taps.lock().contains_key("c1"));
        taps.unregister("c1", &second);
        assert!(taps.lock().is_empty());
        // A call that is gone without answering.
        let gone = taps.register("c2");
        drop(gone);
        assert_eq!(
            taps.attach("c2", Mode::Listen).await.err(),
            Some(Refused::NoSuchCall)
        );
    }
}
