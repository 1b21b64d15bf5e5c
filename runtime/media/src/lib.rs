//! Media of `ivr serve`: prompt audio ([`audio`]), the browser's WebRTC ([`webrtc`]), RTP
//! headers ([`rtp`]), DTMF keys from RFC 4733 telephone-events ([`dtmf`]), RTP ports from
//! the configured range ([`ports`]), the shared [`pacer`] that sends every channel's prompts
//! as 20 ms RTP packets from a few threads, and the [`bridge`] that relays a transfer's RTP
//! between the caller and the agent, SRTP contexts of SIP calls keyed by SDES ([`srtp`]), and
//! the [`recorder`] that writes whole-call recordings (stereo WAV) from a thread of its own,
//! and a supervisor's tap on a bridge ([`supervise`]: listen, whisper, barge).
//! SDP offer/answer and the [`audio::Law`] it settles are
//! `ivr_sip::sdp`.

pub mod audio;
pub mod bridge;
pub mod dtmf;
pub mod latch;
pub mod pacer;
pub mod ports;
pub mod recorder;
pub mod rtp;
pub mod srtp;
pub mod supervise;
pub mod webrtc;
