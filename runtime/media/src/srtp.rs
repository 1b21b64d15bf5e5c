//! SRTP (RFC 3711) for SIP calls keyed by SDES (RFC 4568, [`ivr_sip::sdp::Sdes`]): one
//! context per direction of a call, over `rtc-srtp` (AES-CM and HMAC-SHA1 from ring; nothing
//! of the cipher is written here).
//!
//! - [`Protect`] encrypts and authenticates what we send with our key. The pacer keeps one
//!   per SRTP channel and copies each frame behind its header into the channel's buffer first;
//!   `rtc-srtp` then returns the protected packet in a buffer of its own (one allocation per
//!   packet; plain calls keep the pacer's vectored send without a copy).
//! - [`Unprotect`] checks and decrypts what the peer sends with its key, with a replay window
//!   of [`REPLAY_WINDOW`] packets. A packet that fails is dropped by the caller and counted.
//!   The context keeps state per SSRC (its replay window among it), which `rtc-srtp` creates
//!   and starts at the first packet it sees, before that packet is authenticated: so the
//!   first packet of an SSRC is checked with a probe context first, whose state is thrown away
//!   every [`PROBES`] packets, and only an SSRC with an authenticated packet gets state in the
//!   call's context, at most [`MAX_SSRCS`] of them. Strangers' packets neither take those
//!   places nor set a window that would refuse the caller's own packets as too old.

use bytes::BytesMut;
use ivr_sip::sdp::{CryptoSuite, KEY_SALT_LEN, Sdes};
use rtc::srtp::context::Context;
use rtc::srtp::option::{srtcp_replay_protection, srtp_replay_protection};
use rtc::srtp::protection_profile::ProtectionProfile;
use std::sync::atomic::{AtomicU64, Ordering};

/// The replay window of [`Unprotect`] (packets).
pub const REPLAY_WINDOW: usize = 64;

/// Most SSRCs one [`Unprotect`] tries packets of (the caller's stream, and a new one after a
/// re-INVITE or a change of phone behind a proxy); packets of more are dropped unchecked.
pub const MAX_SSRCS: usize = 4;

/// Packets of unknown SSRCs one probe context checks before it is made anew (its state for
/// each SSRC it saw is then dropped).
pub const PROBES: u32 = 64;

/// The length of the master key within the 30 bytes of key and salt.
const KEY_LEN: usize = 16;

static AUTH_FAILURES: AtomicU64 = AtomicU64::new(0);

/// SRTP packets every [`Unprotect`] of this process refused (not authenticated, a replay, not
/// RTP, or of an SSRC too many): `ivr_srtp_auth_failures_total`.
pub fn auth_failures_total() -> u64 {
    AUTH_FAILURES.load(Ordering::Relaxed)
}

/// What went wrong with SRTP.
#[derive(Debug, thiserror::Error)]
pub enum SrtpError {
    /// The context could not be made from the keys.
    #[error("SRTP context: {0}")]
    Context(String),
    /// Not an RTP packet, too short, or its authentication tag is wrong, or a replay.
    #[error("SRTP packet refused: {0}")]
    Refused(String),
    /// A packet of one SSRC more than [`MAX_SSRCS`].
    #[error("SRTP packet of too many SSRCs")]
    TooManySsrcs,
}

fn profile(suite: CryptoSuite) -> ProtectionProfile {
    match suite {
        CryptoSuite::AesCm128HmacSha1_80 => ProtectionProfile::Aes128CmHmacSha1_80,
        CryptoSuite::AesCm128HmacSha1_32 => ProtectionProfile::Aes128CmHmacSha1_32,
    }
}

fn context(
    key: &[u8; KEY_SALT_LEN],
    suite: CryptoSuite,
    remote: bool,
) -> Result<Context, SrtpError> {
    let provider =
        rtc::srtp::crypto::default_provider().map_err(|e| SrtpError::Context(e.to_string()))?;
    let (master_key, master_salt) = key.split_at(KEY_LEN);
    let (rtp, rtcp) = if remote {
        (
            Some(srtp_replay_protection(REPLAY_WINDOW)),
            Some(srtcp_replay_protection(REPLAY_WINDOW)),
        )
    } else {
        (None, None)
    };
    Context::new(
        master_key,
        master_salt,
        profile(suite),
        rtp,
        rtcp,
        provider.crypto(),
    )
    .map_err(|e| SrtpError::Context(e.to_string()))
}

/// Protects what we send (our key of the [`Sdes`]).
pub struct Protect {
    ctx: Context,
    /// The plain packet (header and payload) before it is protected.
    plain: Vec<u8>,
}

impl std::fmt::Debug for Protect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Protect")
    }
}

impl Protect {
    /// A context for what we send.
    pub fn new(keys: &Sdes) -> Result<Protect, SrtpError> {
        Ok(Protect {
            ctx: context(&keys.local, keys.suite, false)?,
            plain: Vec::with_capacity(256),
        })
    }

    /// The SRTP packet of RTP header `head` and `payload`.
    pub fn protect(&mut self, head: &[u8], payload: &[u8]) -> Result<BytesMut, SrtpError> {
        self.plain.clear();
        self.plain.extend_from_slice(head);
        self.plain.extend_from_slice(payload);
        self.ctx
            .encrypt_rtp(&self.plain)
            .map_err(|e| SrtpError::Refused(e.to_string()))
    }
}

/// Checks and decrypts what the peer sends (its key of the [`Sdes`]).
pub struct Unprotect {
    ctx: Context,
    /// The peer's key and suite, for the probe.
    key: [u8; KEY_SALT_LEN],
    suite: CryptoSuite,
    /// Checks the first packets of SSRCs not yet authenticated, and how many it has checked.
    probe: Option<(Context, u32)>,
    /// SSRCs with an authenticated packet (state in `ctx`).
    ssrcs: Vec<u32>,
}

impl std::fmt::Debug for Unprotect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Unprotect({} SSRCs)", self.ssrcs.len())
    }
}

impl Unprotect {
    /// A context for what the peer sends.
    pub fn new(keys: &Sdes) -> Result<Unprotect, SrtpError> {
        Ok(Unprotect {
            ctx: context(&keys.remote, keys.suite, true)?,
            key: keys.remote,
            suite: keys.suite,
            probe: None,
            ssrcs: Vec::with_capacity(MAX_SSRCS),
        })
    }

    /// The plain RTP packet of SRTP packet `packet`; an error for a packet that is not RTP,
    /// not authenticated, a replay, or of an SSRC beyond [`MAX_SSRCS`] (counted in
    /// [`auth_failures_total`]).
    pub fn unprotect(&mut self, packet: &[u8]) -> Result<BytesMut, SrtpError> {
        let r = self.check(packet);
        if r.is_err() {
            AUTH_FAILURES.fetch_add(1, Ordering::Relaxed);
        }
        r
    }

    fn check(&mut self, packet: &[u8]) -> Result<BytesMut, SrtpError> {
        let Some(p) = crate::rtp::parse(packet) else {
            return Err(SrtpError::Refused("not RTP".into()));
        };
        let ssrc = p.header.ssrc;
        if !self.ssrcs.contains(&ssrc) {
            if self.ssrcs.len() >= MAX_SSRCS {
                return Err(SrtpError::TooManySsrcs);
            }
            let (mut probe, used) = match self.probe.take() {
                Some((c, n)) if n < PROBES => (c, n),
                _ => (context(&self.key, self.suite, false)?, 0),
            };
            let checked = probe.decrypt_rtp(packet);
            self.probe = Some((probe, used + 1));
            checked.map_err(|e| SrtpError::Refused(e.to_string()))?;
            // Authenticated: the SSRC gets its state, its window starting at this packet.
            self.ssrcs.push(ssrc);
        }
        self.ctx
            .decrypt_rtp(packet)
            .map_err(|e| SrtpError::Refused(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp::{self, HEADER_LEN, Header};

    fn keys(suite: CryptoSuite) -> (Sdes, Sdes) {
        let (mut a, mut b) = ([0u8; KEY_SALT_LEN], [0u8; KEY_SALT_LEN]);
        getrandom::fill(&mut a).expect("random");
        getrandom::fill(&mut b).expect("random");
        let ours = Sdes {
            tag: 1,
            suite,
            remote: a,
            local: b,
        };
        // The peer's view: the keys swapped.
        let theirs = Sdes {
            remote: b,
            local: a,
            ..ours
        };
        (ours, theirs)
    }

    fn head(seq: u16, ssrc: u32) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        Header {
            payload_type: 0,
            marker: false,
            seq,
            timestamp: u32::from(seq) * 160,
            ssrc,
        }
        .write(&mut h);
        h
    }

    #[test]
    fn what_one_side_protects_the_other_unprotects() {
        for (suite, tag) in [
            (CryptoSuite::AesCm128HmacSha1_80, 10),
            (CryptoSuite::AesCm128HmacSha1_32, 4),
        ] {
            let (ours, theirs) = keys(suite);
            let mut send = Protect::new(&ours).expect("ctx");
            let mut recv = Unprotect::new(&theirs).expect("ctx");
            let payload = [0x55u8; 160];
            for seq in 100..110 {
                let p = send.protect(&head(seq, 7), &payload).expect("protect");
                assert_eq!(p.len(), HEADER_LEN + 160 + tag);
                assert_ne!(&p[HEADER_LEN..HEADER_LEN + 160], &payload[..]);
                let plain = recv.unprotect(&p).expect("unprotect");
                let r = rtp::parse(&plain).expect("rtp");
                assert_eq!((r.header.seq, r.payload), (seq, &payload[..]));
                // A replay is refused.
                assert!(recv.unprotect(&p).is_err());
            }
            // Our own key does not open what we send (the directions have their keys).
            let mut wrong = Unprotect::new(&ours).expect("ctx");
            let p = send.protect(&head(200, 7), &payload).expect("protect");
            assert!(wrong.unprotect(&p).is_err());
        }
    }

    #[test]
    fn forged_and_tampered_packets_are_refused_and_ssrcs_are_bounded() {
        let (ours, theirs) = keys(CryptoSuite::AesCm128HmacSha1_80);
        let mut send = Protect::new(&ours).expect("ctx");
        let mut recv = Unprotect::new(&theirs).expect("ctx");
        let mut p = send
            .protect(&head(1, 7), &[1; 160])
            .expect("protect")
            .to_vec();
        p[HEADER_LEN + 3] ^= 1;
        assert!(matches!(recv.unprotect(&p), Err(SrtpError::Refused(_))));
        // Plain RTP, garbage, a short packet.
        let mut plain = head(2, 7).to_vec();
        plain.extend_from_slice(&[0; 170]);
        assert!(recv.unprotect(&plain).is_err());
        assert!(recv.unprotect(&[0x80, 0, 1]).is_err());
        assert!(recv.unprotect(&[]).is_err());
        // Strangers' SSRCs take no place (more than PROBES of them: the probe is made anew).
        for ssrc in 100..(100 + 2 * PROBES) {
            let mut forged = head(3, ssrc).to_vec();
            forged.extend_from_slice(&[0; 170]);
            assert!(recv.unprotect(&forged).is_err());
        }
        assert!(recv.ssrcs.is_empty());
        // A forged packet far ahead does not set the window of the SSRC it names.
        let mut forged = head(30_000, 7).to_vec();
        forged.extend_from_slice(&[0xAB; 170]);
        assert!(recv.unprotect(&forged).is_err());
        let p = send.protect(&head(5, 7), &[1; 160]).expect("protect");
        assert!(
            recv.unprotect(&p).is_ok(),
            "the caller's packet after a forged one"
        );
        // Authenticated SSRCs: at most MAX_SSRCS.
        for ssrc in 1..MAX_SSRCS as u32 {
            let mut other = Protect::new(&ours).expect("ctx");
            let p = other
                .protect(&head(4, 900 + ssrc), &[1; 160])
                .expect("protect");
            assert!(recv.unprotect(&p).is_ok());
        }
        assert_eq!(recv.ssrcs.len(), MAX_SSRCS);
        let mut other = Protect::new(&ours).expect("ctx");
        let p = other.protect(&head(4, 999), &[1; 160]).expect("protect");
        assert!(matches!(recv.unprotect(&p), Err(SrtpError::TooManySsrcs)));
        // The first SSRC still works, and a replay of it is refused.
        let p = send.protect(&head(6, 7), &[1; 160]).expect("protect");
        assert!(recv.unprotect(&p).is_ok());
        assert!(recv.unprotect(&p).is_err());
    }
}
