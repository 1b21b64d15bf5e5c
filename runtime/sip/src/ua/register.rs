//! REGISTER glue: the [`Registrar`](crate::registrar::Registrar) decides; its answer may have
//! to wait (repeated failures from that address), meanwhile the transaction, without a
//! response yet, absorbs retransmissions. Once sent, a binding change goes out as an
//! [`Output::Registration`].

use super::core::{TimerKey, TxKey};
use super::{Core, Host, Output, Registration};
use crate::peer::Peer;
use crate::transaction::ServerTx;
use ivr_sansio::Millis;
use rsip::Request;
use std::sync::Arc;

/// Most REGISTER responses held back at once; REGISTERs beyond are dropped.
const MAX_HELD: usize = 10_000;

/// A REGISTER response waiting for its time.
pub(super) struct HeldReply {
    key: TxKey,
    code: u16,
    bytes: Arc<[u8]>,
    registration: Option<Registration>,
}

impl<H: Host> Core<H> {
    pub(super) fn on_register(&mut self, req: &Request, peer: Peer, key: TxKey, now: Millis) {
        if self.held.len() >= MAX_HELD {
            tracing::debug!(peer = %peer.addr, "too many REGISTER answers held back; dropped");
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
        };
        let target = Self::response_target(req, peer);
        let tx = ServerTx::new(false, peer.proto.reliable(), self.opts.timers);
        self.server.insert(held.key.clone(), (tx, target));
        if reply.delay <= 0 {
            self.send_held(held, now);
        } else {
            let branch = held.key.branch.clone();
            self.held.insert(branch.clone(), held);
            self.arm(Some(now + reply.delay), TimerKey::Register(branch));
        }
    }

    /// Sends a REGISTER response on its transaction and reports the binding change.
    pub(super) fn send_held(&mut self, held: HeldReply, now: Millis) {
        self.respond_on(&held.key, held.code, held.bytes, now);
        if let Some(r) = held.registration {
            self.emit(Output::Registration(r));
        }
    }
}
