//! RFC 3261 transactions, sans-IO: each one is a state machine with its timers as data
//! ([`ServerTx::deadline`]); the user-agent core polls the ones that are due and carries out
//! what they answer (send these bytes again, give up, forget me).
//!
//! - INVITE server transaction (17.2.1, with the "Accepted" state of RFC 6026): provisional
//!   responses; a 2xx is retransmitted on T1, 2·T1, … up to T2 until the ACK arrives, for at
//!   most 64·T1 (then [`Poll::TimedOut`]: no ACK, the dialog is torn down); a final non-2xx is
//!   retransmitted the same way until its ACK (timer G) or timer H.
//! - Non-INVITE server transaction (17.2.2): keeps its final response for 64·T1 (timer J) to
//!   answer retransmitted requests.
//! - Non-INVITE client transaction (17.1.2, for our BYE): retransmits on timer E until a final
//!   response, gives up after 64·T1 (timer F).
//!
//! Over TCP nothing is retransmitted and timers J and K are zero.

use std::sync::Arc;
use std::time::{Duration, Instant};

/// The protocol timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    /// Round-trip estimate (500 ms).
    pub t1: Duration,
    /// Longest retransmit interval for non-INVITE requests and INVITE responses (4 s).
    pub t2: Duration,
    /// Longest a message stays in the network (5 s).
    pub t4: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

impl Timers {
    /// 64·T1: timers B, F, H, J, L.
    pub fn t64(&self) -> Duration {
        self.t1 * 64
    }
}

/// What a due transaction asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Poll {
    /// Nothing now.
    Idle,
    /// Send these bytes again.
    Retransmit(Arc<[u8]>),
    /// The peer never answered (no ACK for our final response; no response to our request).
    TimedOut,
    /// The transaction is over and can be forgotten.
    Terminated,
}

/// The state of a server transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// No final response yet.
    Proceeding,
    /// A 2xx to an INVITE was sent; waiting for the ACK.
    Accepted,
    /// A final response was sent (non-2xx for INVITE: waiting for the ACK).
    Completed,
    /// The ACK of a non-2xx arrived; absorbing ACK retransmissions (timer I).
    Confirmed,
    /// Over.
    Terminated,
}

/// A server transaction (INVITE or not).
#[derive(Debug, Clone)]
pub struct ServerTx {
    invite: bool,
    reliable: bool,
    timers: Timers,
    state: State,
    last: Option<Arc<[u8]>>,
    interval: Duration,
    next_send: Option<Instant>,
    end: Option<Instant>,
}

impl ServerTx {
    /// A transaction for a request just received.
    pub fn new(invite: bool, reliable: bool, timers: Timers) -> ServerTx {
        ServerTx {
            invite,
            reliable,
            timers,
            state: State::Proceeding,
            last: None,
            interval: timers.t1,
            next_send: None,
            end: None,
        }
    }

    /// The state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The last response sent (to answer a retransmitted request), if any.
    pub fn last_response(&self) -> Option<&Arc<[u8]>> {
        self.last.as_ref()
    }

    /// Records a response about to be sent (`code`, its bytes) and sets the timers.
    pub fn respond(&mut self, code: u16, bytes: Arc<[u8]>, now: Instant) {
        if matches!(self.state, State::Terminated | State::Confirmed) {
            return;
        }
        self.last = Some(bytes);
        if code < 200 {
            return;
        }
        let t64 = self.timers.t64();
        if self.invite {
            self.state = if code < 300 {
                State::Accepted
            } else {
                State::Completed
            };
            self.interval = self.timers.t1;
            self.next_send = (!self.reliable).then(|| now + self.interval);
            self.end = Some(now + t64);
        } else {
            self.state = State::Completed;
            self.next_send = None;
            self.end = Some(if self.reliable { now } else { now + t64 });
        }
    }

    /// The ACK for our final response arrived.
    pub fn ack(&mut self, now: Instant) {
        match self.state {
            State::Accepted => {
                self.state = State::Terminated;
                self.next_send = None;
                self.end = Some(now);
            }
            State::Completed if self.invite => {
                self.state = State::Confirmed;
                self.next_send = None;
                self.end = Some(if self.reliable {
                    now
                } else {
                    now + self.timers.t4
                });
            }
            _ => {}
        }
    }

    /// When the transaction next needs [`ServerTx::poll`].
    pub fn deadline(&self) -> Option<Instant> {
        match (self.next_send, self.end) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Runs the timers that are due at `now`.
    pub fn poll(&mut self, now: Instant) -> Poll {
        if let Some(end) = self.end
            && now >= end
        {
            let timed_out = matches!(self.state, State::Accepted | State::Completed) && self.invite;
            self.state = State::Terminated;
            self.next_send = None;
            self.end = None;
            return if timed_out {
                Poll::TimedOut
            } else {
                Poll::Terminated
            };
        }
        if let Some(at) = self.next_send
            && now >= at
        {
            self.interval = (self.interval * 2).min(self.timers.t2);
            self.next_send = Some(now + self.interval);
            if let Some(b) = &self.last {
                return Poll::Retransmit(Arc::clone(b));
            }
        }
        Poll::Idle
    }
}

/// A non-INVITE client transaction (our BYE).
#[derive(Debug, Clone)]
pub struct ClientTx {
    request: Arc<[u8]>,
    timers: Timers,
    interval: Duration,
    next_send: Option<Instant>,
    end: Instant,
    done: bool,
}

impl ClientTx {
    /// A request just sent at `now`.
    pub fn new(request: Arc<[u8]>, reliable: bool, timers: Timers, now: Instant) -> ClientTx {
        ClientTx {
            request,
            timers,
            interval: timers.t1,
            next_send: (!reliable).then(|| now + timers.t1),
            end: now + timers.t64(),
            done: false,
        }
    }

    /// A response arrived; true when it is final (the transaction is over).
    pub fn response(&mut self, code: u16) -> bool {
        if code >= 200 {
            self.done = true;
            self.next_send = None;
        } else if self.next_send.is_some() {
            // Proceeding: retransmit at T2 from now on.
            self.interval = self.timers.t2;
        }
        self.done
    }

    /// When the transaction next needs [`ClientTx::poll`].
    pub fn deadline(&self) -> Option<Instant> {
        if self.done {
            return None;
        }
        Some(self.next_send.map_or(self.end, |n| n.min(self.end)))
    }

    /// Runs the timers that are due.
    pub fn poll(&mut self, now: Instant) -> Poll {
        if self.done {
            return Poll::Terminated;
        }
        if now >= self.end {
            self.done = true;
            return Poll::TimedOut;
        }
        if let Some(at) = self.next_send
            && now >= at
        {
            self.interval = (self.interval * 2).min(self.timers.t2);
            self.next_send = Some(now + self.interval);
            return Poll::Retransmit(Arc::clone(&self.request));
        }
        Poll::Idle
    }
}

/// An INVITE client transaction (17.1.1, for calls we place to agents and numbers): the
/// INVITE is retransmitted on timer A (T1, doubling) until any response; without one by
/// timer B (64·T1) the callee is unreachable. After a provisional response it waits for the
/// final one up to timer C (three minutes), then gives up ([`Poll::TimedOut`]: send a CANCEL).
#[derive(Debug, Clone)]
pub struct InviteClientTx {
    request: Arc<[u8]>,
    interval: Duration,
    next_send: Option<Instant>,
    end: Instant,
    proceeding: bool,
    done: bool,
}

/// Timer C: how long we let a callee ring (after a provisional response) at most.
pub const TIMER_C: Duration = Duration::from_secs(180);

impl InviteClientTx {
    /// An INVITE just sent at `now`.
    pub fn new(request: Arc<[u8]>, reliable: bool, timers: Timers, now: Instant) -> InviteClientTx {
        InviteClientTx {
            request,
            interval: timers.t1,
            next_send: (!reliable).then(|| now + timers.t1),
            end: now + timers.t64(),
            proceeding: false,
            done: false,
        }
    }

    /// A response arrived at `now`; true when it is final.
    pub fn response(&mut self, code: u16, now: Instant) -> bool {
        self.next_send = None;
        if code >= 200 {
            self.done = true;
        } else if !self.proceeding {
            self.proceeding = true;
            self.end = now + TIMER_C;
        }
        self.done
    }

    /// Whether a provisional response came (a CANCEL may be sent).
    pub fn proceeding(&self) -> bool {
        self.proceeding
    }

    /// When the transaction next needs [`InviteClientTx::poll`].
    pub fn deadline(&self) -> Option<Instant> {
        if self.done {
            return None;
        }
        Some(self.next_send.map_or(self.end, |n| n.min(self.end)))
    }

    /// Runs the timers that are due.
    pub fn poll(&mut self, now: Instant) -> Poll {
        if self.done {
            return Poll::Terminated;
        }
        if now >= self.end {
            self.done = true;
            return Poll::TimedOut;
        }
        if let Some(at) = self.next_send
            && now >= at
        {
            self.interval *= 2;
            self.next_send = Some(now + self.interval);
            return Poll::Retransmit(Arc::clone(&self.request));
        }
        Poll::Idle
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(s: &str) -> Arc<[u8]> {
        Arc::from(s.as_bytes())
    }

    #[test]
    fn ok_is_retransmitted_until_the_ack() {
        let t = Timers::default();
        let now = Instant::now();
        let mut tx = ServerTx::new(true, false, t);
        tx.respond(100, bytes("100"), now);
        assert_eq!(tx.state(), State::Proceeding);
        assert_eq!(tx.deadline(), None);
        tx.respond(200, bytes("200"), now);
        assert_eq!(tx.state(), State::Accepted);
        let mut at = now;
        let mut gaps = Vec::new();
        for _ in 0..5 {
            let next = tx.deadline().expect("timer");
            gaps.push(next - at);
            at = next;
            assert_eq!(tx.poll(at), Poll::Retransmit(bytes("200")));
        }
        assert_eq!(
            gaps,
            [500, 1000, 2000, 4000, 4000].map(Duration::from_millis)
        );
        tx.ack(at);
        assert_eq!(tx.poll(at), Poll::Terminated);
    }

    #[test]
    fn no_ack_times_out() {
        let t = Timers::default();
        let now = Instant::now();
        let mut tx = ServerTx::new(true, true, t);
        tx.respond(200, bytes("200"), now);
        assert_eq!(
            tx.deadline(),
            Some(now + t.t64()),
            "no retransmission over TCP"
        );
        assert_eq!(tx.poll(now + t.t64()), Poll::TimedOut);
    }

    #[test]
    fn non_2xx_waits_for_its_ack_then_absorbs() {
        let t = Timers::default();
        let now = Instant::now();
        let mut tx = ServerTx::new(true, false, t);
        tx.respond(487, bytes("487"), now);
        assert_eq!(tx.state(), State::Completed);
        tx.ack(now);
        assert_eq!(tx.state(), State::Confirmed);
        assert_eq!(tx.poll(now + t.t4), Poll::Terminated);
    }

    #[test]
    fn non_invite_keeps_its_response() {
        let t = Timers::default();
        let now = Instant::now();
        let mut tx = ServerTx::new(false, false, t);
        tx.respond(200, bytes("200"), now);
        assert_eq!(tx.last_response(), Some(&bytes("200")));
        assert_eq!(tx.poll(now), Poll::Idle);
        assert_eq!(tx.poll(now + t.t64()), Poll::Terminated);
    }

    #[test]
    fn client_retransmits_and_gives_up() {
        let t = Timers::default();
        let now = Instant::now();
        let mut tx = ClientTx::new(bytes("BYE"), false, t, now);
        assert_eq!(tx.poll(now + t.t1), Poll::Retransmit(bytes("BYE")));
        assert_eq!(tx.poll(now + t.t64()), Poll::TimedOut);
        let mut tx = ClientTx::new(bytes("BYE"), false, t, now);
        assert!(tx.response(200));
        assert_eq!(tx.deadline(), None);
    }

    #[test]
    fn invite_is_retransmitted_until_a_provisional_then_waits_for_timer_c() {
        let t = Timers::default();
        let now = Instant::now();
        let mut tx = InviteClientTx::new(bytes("INVITE"), false, t, now);
        assert_eq!(tx.deadline(), Some(now + t.t1));
        assert!(matches!(tx.poll(now + t.t1), Poll::Retransmit(_)));
        // Timer A doubles without the T2 cap of non-INVITE requests.
        assert_eq!(tx.deadline(), Some(now + t.t1 * 3));
        assert!(!tx.response(180, now + t.t1 * 2));
        assert!(tx.proceeding());
        let ringing_since = now + t.t1 * 2;
        assert_eq!(tx.deadline(), Some(ringing_since + TIMER_C));
        assert_eq!(tx.poll(ringing_since + TIMER_C), Poll::TimedOut);
    }

    #[test]
    fn an_invite_without_any_answer_times_out_on_timer_b() {
        let t = Timers::default();
        let now = Instant::now();
        let mut tx = InviteClientTx::new(bytes("INVITE"), true, t, now);
        assert_eq!(tx.deadline(), Some(now + t.t64()));
        assert_eq!(tx.poll(now + t.t64()), Poll::TimedOut);
        let mut tx = InviteClientTx::new(bytes("INVITE"), true, t, now);
        assert!(tx.response(486, now));
        assert_eq!(tx.deadline(), None);
    }
}
