//! REGISTER glue: the [`Registrar`](crate::registrar::Registrar) decides; its answer may have
//! to wait (repeated failures from that address), meanwhile the transaction, without a
//! response yet, absorbs retransmissions. Once sent, a binding change goes out as an
//! [`Output::Registration`].
//!
//! Held answers are bounded ([`Bounds::held_registers`](super::Bounds::held_registers) in
//! all, [`Bounds::held_per_address`](super::Bounds::held_per_address) for one source address,
//! IPv6 by its /64): a REGISTER from an address that already waits for that many is dropped
//! unanswered before the registrar sees it (its phone sends it again), so one address cannot
//! take the room of every other, and guesses from one address are at most that many per
//! delay (8 per 16 s once slowed down, until its lock after 10 failures).

use super::core::{TimerKey, TxKey};
use super::{Core, Host, Output, Registration};
use crate::edge::source_key;
use crate::peer::Peer;
use crate::transaction::ServerTx;
use ivr_sansio::Millis;
use rsip::Request;
use std::net::IpAddr;
use std::sync::Arc;

/// A REGISTER response waiting for its time.
pub(super) struct HeldReply {
    key: TxKey,
    code: u16,
    bytes: Arc<[u8]>,
    registration: Option<Registration>,
    /// The source address it counts under.
    source: IpAddr,
}

impl<H: Host> Core<H> {
    pub(super) fn on_register(&mut self, req: &Request, peer: Peer, key: TxKey, now: Millis) {
        let source = source_key(peer.addr.ip());
        let bounds = self.opts.bounds;
        if self.held.len() >= bounds.held_registers
            || self.held_per.get(&source).copied().unwrap_or(0) >= bounds.held_per_address
        {
            tracing::debug!(peer = %peer.addr, "too many REGISTER answers held back; dropped");
            self.counters.registers_dropped += 1;
            return;
        }
        let reply = self.registrar.handle(req, peer.addr.ip(), now);
        let held = HeldReply {
            key,
            code: reply.code,
            bytes: Arc::from(reply.response(req, peer.addr)),
            registration: reply.binding.map(|b| Registration {
                agent: b.agent,
                contact: b.contact,
                peer,
                expires: b.expires,
            }),
            source,
        };
        let target = Self::response_target(req, peer);
        let tx = ServerTx::new(false, peer.proto.reliable(), self.opts.timers);
        self.server.insert(held.key.clone(), (tx, target));
        if reply.delay <= 0 {
            self.send_held(held, now);
        } else {
            let branch = held.key.branch.clone();
            *self.held_per.entry(source).or_insert(0) += 1;
            self.held.insert(branch.clone(), held);
            self.arm(Some(now + reply.delay), TimerKey::Register(branch));
        }
    }

    /// Takes the held answer of REGISTER `branch` out of the tables.
    pub(super) fn take_held(&mut self, branch: &str) -> Option<HeldReply> {
        let held = self.held.remove(branch)?;
        if let Some(n) = self.held_per.get_mut(&held.source) {
            *n -= 1;
            if *n == 0 {
                self.held_per.remove(&held.source);
            }
        }
        Some(held)
    }

    /// Sends a REGISTER response on its transaction and reports the binding change.
    pub(super) fn send_held(&mut self, held: HeldReply, now: Millis) {
        self.respond_on(&held.key, held.code, held.bytes, now);
        if let Some(r) = held.registration {
            self.emit(Output::Registration(r));
        }
    }
}
