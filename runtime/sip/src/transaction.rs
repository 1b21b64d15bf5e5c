//! RFC 3261 transactions, sans-IO: each one is an [`ivr_sansio::Machine`] with its timers as
//! data ([`Machine::poll_timeout`]); the user-agent core lets the ones that are due handle the
//! time and carries out what they output (send these bytes again, give up, forget me).
//!
//! - INVITE server transaction (17.2.1, with the "Accepted" state of RFC 6026): provisional
//!   responses; a 2xx is retransmitted on T1, 2·T1, … up to T2 until the ACK arrives, for at
//!   most 64·T1 (then [`TxOutput::TimedOut`]: no ACK, the dialog is torn down); a final non-2xx is
//!   retransmitted the same way until its ACK (timer G) or timer H.
//! - Non-INVITE server transaction (17.2.2): keeps its final response for 64·T1 (timer J) to
//!   answer retransmitted requests.
//! - Non-INVITE client transaction (17.1.2, for our BYE): retransmits on timer E until a final
//!   response, gives up after 64·T1 (timer F).
//!
//! Over TCP nothing is retransmitted and timers J and K are zero.

use ivr_sansio::{Machine, Millis};
use std::collections::VecDeque;
use std::sync::Arc;

/// The protocol timers, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    /// Round-trip estimate (500 ms).
    pub t1: Millis,
    /// Longest retransmit interval for non-INVITE requests and INVITE responses (4 s).
    pub t2: Millis,
    /// Longest a message stays in the network (5 s).
    pub t4: Millis,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            t1: 500,
            t2: 4_000,
            t4: 5_000,
        }
    }
}

impl Timers {
    /// 64·T1: timers B, F, H, J, L.
    pub fn t64(&self) -> Millis {
        self.t1 * 64
    }
}

/// What a transaction asks its driver to do ([`Machine::poll_output`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxOutput {
    /// Send these bytes again.
    Retransmit(Arc<[u8]>),
    /// The peer never answered (no ACK for our final response; no response to our request).
    TimedOut,
    /// The transaction is over and can be forgotten.
    Terminated,
}

/// What a server transaction is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerInput {
    /// A response (`code`, its bytes) is about to be sent: record it and set the timers.
    Respond {
        /// The status code.
        code: u16,
        /// The response as sent.
        bytes: Arc<[u8]>,
    },
    /// The ACK for our final response arrived.
    Ack,
}

/// What a client transaction is told: a response with this status code arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Response(pub u16);

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
    interval: Millis,
    next_send: Option<Millis>,
    end: Option<Millis>,
    out: VecDeque<TxOutput>,
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
            out: VecDeque::new(),
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

    fn respond(&mut self, code: u16, bytes: Arc<[u8]>, now: Millis) {
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

    fn ack(&mut self, now: Millis) {
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
}

impl Machine for ServerTx {
    type Input = ServerInput;
    type Output = TxOutput;

    fn handle_input(&mut self, input: ServerInput, now: Millis) {
        match input {
            ServerInput::Respond { code, bytes } => self.respond(code, bytes, now),
            ServerInput::Ack => self.ack(now),
        }
    }

    fn poll_timeout(&self) -> Option<Millis> {
        match (self.next_send, self.end) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn handle_timeout(&mut self, now: Millis) {
        if let Some(end) = self.end
            && now >= end
        {
            let timed_out = matches!(self.state, State::Accepted | State::Completed) && self.invite;
            self.state = State::Terminated;
            self.next_send = None;
            self.end = None;
            self.out.push_back(if timed_out {
                TxOutput::TimedOut
            } else {
                TxOutput::Terminated
            });
            return;
        }
        if let Some(at) = self.next_send
            && now >= at
        {
            self.interval = (self.interval * 2).min(self.timers.t2);
            self.next_send = Some(now + self.interval);
            if let Some(b) = &self.last {
                self.out.push_back(TxOutput::Retransmit(Arc::clone(b)));
            }
        }
    }

    fn poll_output(&mut self) -> Option<TxOutput> {
        self.out.pop_front()
    }
}

/// A non-INVITE client transaction (our BYE, our CANCEL).
#[derive(Debug, Clone)]
pub struct ClientTx {
    request: Arc<[u8]>,
    timers: Timers,
    interval: Millis,
    next_send: Option<Millis>,
    end: Millis,
    done: bool,
    out: VecDeque<TxOutput>,
}

impl ClientTx {
    /// A request just sent at `now`.
    pub fn new(request: Arc<[u8]>, reliable: bool, timers: Timers, now: Millis) -> ClientTx {
        ClientTx {
            request,
            timers,
            interval: timers.t1,
            next_send: (!reliable).then(|| now + timers.t1),
            end: now + timers.t64(),
            done: false,
            out: VecDeque::new(),
        }
    }

    /// Whether a final response came (the transaction is over).
    pub fn done(&self) -> bool {
        self.done
    }
}

impl Machine for ClientTx {
    type Input = Response;
    type Output = TxOutput;

    fn handle_input(&mut self, Response(code): Response, _now: Millis) {
        if code >= 200 {
            self.done = true;
            self.next_send = None;
        } else if self.next_send.is_some() {
            // Proceeding: retransmit at T2 from now on.
            self.interval = self.timers.t2;
        }
    }

    fn poll_timeout(&self) -> Option<Millis> {
        if self.done {
            return None;
        }
        Some(self.next_send.map_or(self.end, |n| n.min(self.end)))
    }

    fn handle_timeout(&mut self, now: Millis) {
        if self.done {
            self.out.push_back(TxOutput::Terminated);
            return;
        }
        if now >= self.end {
            self.done = true;
            self.out.push_back(TxOutput::TimedOut);
            return;
        }
        if let Some(at) = self.next_send
            && now >= at
        {
            self.interval = (self.interval * 2).min(self.timers.t2);
            self.next_send = Some(now + self.interval);
            self.out
                .push_back(TxOutput::Retransmit(Arc::clone(&self.request)));
        }
    }

    fn poll_output(&mut self) -> Option<TxOutput> {
        self.out.pop_front()
    }
}

/// An INVITE client transaction (17.1.1, for calls we place to agents and numbers): the
/// INVITE is retransmitted on timer A (T1, doubling) until any response; without one by
/// timer B (64·T1) the callee is unreachable. After a provisional response it waits for the
/// final one up to timer C (three minutes), then gives up ([`TxOutput::TimedOut`]: send a
/// CANCEL).
#[derive(Debug, Clone)]
pub struct InviteClientTx {
    request: Arc<[u8]>,
    interval: Millis,
    next_send: Option<Millis>,
    end: Millis,
    proceeding: bool,
    done: bool,
    out: VecDeque<TxOutput>,
}

/// Timer C: how long we let a callee ring (after a provisional response) at most.
pub const TIMER_C: Millis = 180_000;

impl InviteClientTx {
    /// An INVITE just sent at `now`.
    pub fn new(request: Arc<[u8]>, reliable: bool, timers: Timers, now: Millis) -> InviteClientTx {
        InviteClientTx {
            request,
            interval: timers.t1,
            next_send: (!reliable).then(|| now + timers.t1),
            end: now + timers.t64(),
            proceeding: false,
            done: false,
            out: VecDeque::new(),
        }
    }

    /// Whether a provisional response came (a CANCEL may be sent).
    pub fn proceeding(&self) -> bool {
        self.proceeding
    }

    /// Whether a final response came.
    pub fn done(&self) -> bool {
        self.done
    }
}

impl Machine for InviteClientTx {
    type Input = Response;
    type Output = TxOutput;

    fn handle_input(&mut self, Response(code): Response, now: Millis) {
        self.next_send = None;
        if code >= 200 {
            self.done = true;
        } else if !self.proceeding {
            self.proceeding = true;
            self.end = now + TIMER_C;
        }
    }

    fn poll_timeout(&self) -> Option<Millis> {
        if self.done {
            return None;
        }
        Some(self.next_send.map_or(self.end, |n| n.min(self.end)))
    }

    fn handle_timeout(&mut self, now: Millis) {
        if self.done {
            self.out.push_back(TxOutput::Terminated);
            return;
        }
        if now >= self.end {
            self.done = true;
            self.out.push_back(TxOutput::TimedOut);
            return;
        }
        if let Some(at) = self.next_send
            && now >= at
        {
            self.interval *= 2;
            self.next_send = Some(now + self.interval);
            self.out
                .push_back(TxOutput::Retransmit(Arc::clone(&self.request)));
        }
    }

    fn poll_output(&mut self) -> Option<TxOutput> {
        self.out.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(s: &str) -> Arc<[u8]> {
        Arc::from(s.as_bytes())
    }

    /// Lets `tx` handle the time `now`; what it then asks for (`None`: nothing).
    fn poll<M: Machine<Output = TxOutput>>(tx: &mut M, now: Millis) -> Option<TxOutput> {
        tx.handle_timeout(now);
        let out = tx.poll_output();
        assert_eq!(tx.poll_output(), None, "one output at a time");
        out
    }

    fn respond(tx: &mut ServerTx, code: u16, text: &str, now: Millis) {
        tx.handle_input(
            ServerInput::Respond {
                code,
                bytes: bytes(text),
            },
            now,
        );
    }

    #[test]
    fn ok_is_retransmitted_until_the_ack() {
        let t = Timers::default();
        let now: Millis = 1_000;
        let mut tx = ServerTx::new(true, false, t);
        respond(&mut tx, 100, "100", now);
        assert_eq!(tx.state(), State::Proceeding);
        assert_eq!(tx.poll_timeout(), None);
        respond(&mut tx, 200, "200", now);
        assert_eq!(tx.state(), State::Accepted);
        let mut at = now;
        let mut gaps = Vec::new();
        for _ in 0..5 {
            let next = tx.poll_timeout().expect("timer");
            gaps.push(next - at);
            at = next;
            assert_eq!(poll(&mut tx, at), Some(TxOutput::Retransmit(bytes("200"))));
        }
        assert_eq!(gaps, [500, 1000, 2000, 4000, 4000]);
        tx.handle_input(ServerInput::Ack, at);
        assert_eq!(poll(&mut tx, at), Some(TxOutput::Terminated));
    }

    #[test]
    fn no_ack_times_out() {
        let t = Timers::default();
        let now: Millis = 1_000;
        let mut tx = ServerTx::new(true, true, t);
        respond(&mut tx, 200, "200", now);
        assert_eq!(
            tx.poll_timeout(),
            Some(now + t.t64()),
            "no retransmission over TCP"
        );
        assert_eq!(poll(&mut tx, now + t.t64()), Some(TxOutput::TimedOut));
    }

    #[test]
    fn non_2xx_waits_for_its_ack_then_absorbs() {
        let t = Timers::default();
        let now: Millis = 1_000;
        let mut tx = ServerTx::new(true, false, t);
        respond(&mut tx, 487, "487", now);
        assert_eq!(tx.state(), State::Completed);
        tx.handle_input(ServerInput::Ack, now);
        assert_eq!(tx.state(), State::Confirmed);
        assert_eq!(poll(&mut tx, now + t.t4), Some(TxOutput::Terminated));
    }

    #[test]
    fn non_invite_keeps_its_response() {
        let t = Timers::default();
        let now: Millis = 1_000;
        let mut tx = ServerTx::new(false, false, t);
        respond(&mut tx, 200, "200", now);
        assert_eq!(tx.last_response(), Some(&bytes("200")));
        assert_eq!(poll(&mut tx, now), None);
        assert_eq!(poll(&mut tx, now + t.t64()), Some(TxOutput::Terminated));
    }

    #[test]
    fn client_retransmits_and_gives_up() {
        let t = Timers::default();
        let now: Millis = 1_000;
        let mut tx = ClientTx::new(bytes("BYE"), false, t, now);
        assert_eq!(
            poll(&mut tx, now + t.t1),
            Some(TxOutput::Retransmit(bytes("BYE")))
        );
        assert_eq!(poll(&mut tx, now + t.t64()), Some(TxOutput::TimedOut));
        let mut tx = ClientTx::new(bytes("BYE"), false, t, now);
        tx.handle_input(Response(200), now);
        assert!(tx.done());
        assert_eq!(tx.poll_timeout(), None);
    }

    #[test]
    fn invite_is_retransmitted_until_a_provisional_then_waits_for_timer_c() {
        let t = Timers::default();
        let now: Millis = 1_000;
        let mut tx = InviteClientTx::new(bytes("INVITE"), false, t, now);
        assert_eq!(tx.poll_timeout(), Some(now + t.t1));
        assert!(matches!(
            poll(&mut tx, now + t.t1),
            Some(TxOutput::Retransmit(_))
        ));
        // Timer A doubles without the T2 cap of non-INVITE requests.
        assert_eq!(tx.poll_timeout(), Some(now + t.t1 * 3));
        tx.handle_input(Response(180), now + t.t1 * 2);
        assert!(!tx.done());
        assert!(tx.proceeding());
        let ringing_since = now + t.t1 * 2;
        assert_eq!(tx.poll_timeout(), Some(ringing_since + TIMER_C));
        assert_eq!(
            poll(&mut tx, ringing_since + TIMER_C),
            Some(TxOutput::TimedOut)
        );
    }

    #[test]
    fn an_invite_without_any_answer_times_out_on_timer_b() {
        let t = Timers::default();
        let now: Millis = 1_000;
        let mut tx = InviteClientTx::new(bytes("INVITE"), true, t, now);
        assert_eq!(tx.poll_timeout(), Some(now + t.t64()));
        assert_eq!(poll(&mut tx, now + t.t64()), Some(TxOutput::TimedOut));
        let mut tx = InviteClientTx::new(bytes("INVITE"), true, t, now);
        tx.handle_input(Response(486), now);
        assert!(tx.done());
        assert_eq!(tx.poll_timeout(), None);
    }
}
