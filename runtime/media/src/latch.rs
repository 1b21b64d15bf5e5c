//! Where a call's RTP may come from: latching with probation, then locked, the way Asterisk's
//! `strictrtp` and rtpengine's strict source do it.
//!
//! A call (or a transfer's leg) learns its peer's media address from the packets themselves,
//! because a caller behind NAT sends from another address than its SDP says (symmetric RTP).
//! Learning alone would let anyone who guesses the port take the call over, so:
//!
//! - packets from the address the SDP gave lock the latch at once;
//! - packets from another address are taken only after [`PROBATION`] packets in sequence (one
//!   SSRC, sequence numbers one apart) from that one source; the packets of the probation are
//!   dropped (80 ms of audio at most);
//! - once locked, packets from every other address are dropped and counted
//!   ([`Latch::foreign`], `ivr_rtp_foreign_packets_total`);
//! - a new SDP from the peer (re-INVITE) starts learning again ([`Latch::relearn`]).
//!
//! Sans-IO: it looks at the source address and the RTP header of each packet and says what to
//! do; the call task owns the socket.

use crate::rtp::Header;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

/// Foreign packets dropped by every latch of the process (for `/metrics`).
static FOREIGN_TOTAL: AtomicU64 = AtomicU64::new(0);

/// Packets dropped by every latch of this process because they came from another address than
/// the one the call or leg is locked to (`ivr_rtp_foreign_packets_total`).
pub fn foreign_packets_total() -> u64 {
    FOREIGN_TOTAL.load(Ordering::Relaxed)
}

/// In-sequence packets from one new source before the latch takes it.
pub const PROBATION: u8 = 4;

/// What to do with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// It is the peer's: use it.
    Accept,
    /// It is the peer's, from an address learned just now: use it, and send to `SocketAddr`
    /// from now on.
    Latched(SocketAddr),
    /// Not (yet) the peer's: drop it.
    Drop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Nothing heard yet from anyone but strangers; `candidate` is the source on probation:
    /// its address, SSRC, last sequence number and packets in sequence so far.
    Learning {
        candidate: Option<(SocketAddr, u32, u16, u8)>,
    },
    /// The peer is this address.
    Locked(SocketAddr),
}

/// The media source of one call or leg.
#[derive(Debug, Clone)]
pub struct Latch {
    /// The address the peer's SDP gave (`c=` and `m=` port), if any.
    expected: Option<SocketAddr>,
    state: State,
    foreign: u64,
}

impl Latch {
    /// A latch that expects media from `expected` (the peer's SDP address), or learns.
    pub fn new(expected: Option<SocketAddr>) -> Latch {
        Latch {
            expected,
            state: State::Learning { candidate: None },
            foreign: 0,
        }
    }

    /// A latch that takes only `addr` (a relay on loopback that stands for a browser).
    pub fn locked(addr: SocketAddr) -> Latch {
        Latch {
            expected: Some(addr),
            state: State::Locked(addr),
            foreign: 0,
        }
    }

    /// Starts learning again, expecting `expected` (the peer's new SDP).
    pub fn relearn(&mut self, expected: Option<SocketAddr>) {
        self.expected = expected;
        self.state = State::Learning { candidate: None };
    }

    /// The address the latch is locked to, if it is.
    pub fn peer(&self) -> Option<SocketAddr> {
        match self.state {
            State::Locked(a) => Some(a),
            State::Learning { .. } => None,
        }
    }

    /// Packets dropped because they came from another address than the locked one.
    pub fn foreign(&self) -> u64 {
        self.foreign
    }

    /// Looks at a packet from `from` with RTP header `header`.
    pub fn check(&mut self, from: SocketAddr, header: &Header) -> Verdict {
        match &mut self.state {
            State::Locked(peer) => {
                if from == *peer {
                    Verdict::Accept
                } else {
                    self.foreign = self.foreign.saturating_add(1);
                    FOREIGN_TOTAL.fetch_add(1, Ordering::Relaxed);
                    Verdict::Drop
                }
            }
            State::Learning { candidate } => {
                if Some(from) == self.expected {
                    self.state = State::Locked(from);
                    return Verdict::Latched(from);
                }
                match candidate {
                    Some((addr, ssrc, seq, n))
                        if *addr == from
                            && *ssrc == header.ssrc
                            && header.seq == seq.wrapping_add(1) =>
                    {
                        *seq = header.seq;
                        *n = n.saturating_add(1);
                        if *n >= PROBATION {
                            self.state = State::Locked(from);
                            return Verdict::Latched(from);
                        }
                    }
                    _ => *candidate = Some((from, header.ssrc, header.seq, 1)),
                }
                Verdict::Drop
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(ssrc: u32, seq: u16) -> Header {
        Header {
            payload_type: 0,
            marker: false,
            seq,
            timestamp: 0,
            ssrc,
        }
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("address")
    }

    #[test]
    fn the_sdp_address_locks_at_once_and_strangers_are_dropped_and_counted() {
        let sdp = addr("192.0.2.10:4000");
        let mut l = Latch::new(Some(sdp));
        assert_eq!(l.check(sdp, &h(1, 10)), Verdict::Latched(sdp));
        assert_eq!(l.check(sdp, &h(1, 11)), Verdict::Accept);
        let stranger = addr("203.0.113.5:4000");
        for seq in 0..10 {
            assert_eq!(l.check(stranger, &h(9, seq)), Verdict::Drop);
        }
        assert_eq!(l.foreign(), 10);
        assert!(foreign_packets_total() >= 10);
        assert_eq!(l.peer(), Some(sdp));
    }

    #[test]
    fn another_source_needs_probation_in_sequence() {
        let nat = addr("198.51.100.7:30000");
        let mut l = Latch::new(Some(addr("10.0.0.5:4000")));
        for seq in 100..100 + u16::from(PROBATION) - 1 {
            assert_eq!(l.check(nat, &h(7, seq)), Verdict::Drop);
        }
        assert_eq!(l.check(nat, &h(7, 103)), Verdict::Latched(nat));
        assert_eq!(l.check(nat, &h(7, 104)), Verdict::Accept);
    }

    #[test]
    fn probation_restarts_on_a_gap_another_ssrc_or_another_source() {
        let a = addr("198.51.100.7:30000");
        let b = addr("198.51.100.8:30000");
        let mut l = Latch::new(None);
        assert_eq!(l.check(a, &h(7, 1)), Verdict::Drop);
        assert_eq!(l.check(a, &h(7, 2)), Verdict::Drop);
        assert_eq!(l.check(a, &h(7, 4)), Verdict::Drop, "a gap");
        assert_eq!(l.check(a, &h(8, 5)), Verdict::Drop, "another SSRC");
        assert_eq!(l.check(b, &h(8, 6)), Verdict::Drop, "another source");
        assert_eq!(l.check(a, &h(8, 7)), Verdict::Drop);
        assert_eq!(l.peer(), None);
        // Interleaved strangers keep resetting each other: neither gets in.
        for seq in 10..30u16 {
            let from = if seq % 2 == 0 { a } else { b };
            assert_eq!(l.check(from, &h(1, seq)), Verdict::Drop);
        }
        assert_eq!(l.peer(), None);
    }

    #[test]
    fn sequence_numbers_wrap() {
        let a = addr("198.51.100.7:30000");
        let mut l = Latch::new(None);
        for seq in [65534u16, 65535, 0] {
            assert_eq!(l.check(a, &h(3, seq)), Verdict::Drop);
        }
        assert_eq!(l.check(a, &h(3, 1)), Verdict::Latched(a));
    }

    #[test]
    fn a_new_offer_learns_again() {
        let old = addr("192.0.2.10:4000");
        let new = addr("192.0.2.11:5000");
        let mut l = Latch::new(Some(old));
        assert_eq!(l.check(old, &h(1, 1)), Verdict::Latched(old));
        l.relearn(Some(new));
        assert_eq!(l.check(new, &h(1, 2)), Verdict::Latched(new));
        assert_eq!(l.check(old, &h(1, 3)), Verdict::Drop);
    }

    #[test]
    fn a_locked_relay_takes_only_itself() {
        let relay = addr("127.0.0.1:40000");
        let mut l = Latch::locked(relay);
        assert_eq!(l.check(relay, &h(1, 1)), Verdict::Accept);
        assert_eq!(l.check(addr("127.0.0.1:40001"), &h(1, 2)), Verdict::Drop);
    }
}
