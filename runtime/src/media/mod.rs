//! Media of `ivr serve`: SDP offer/answer ([`sdp`]), RTP headers ([`rtp`]), DTMF keys from
//! RFC 4733 telephone-events and SIP INFO ([`dtmf`]), RTP ports from the configured range
//! ([`ports`]), and the shared [`pacer`] that sends every channel's prompts as 20 ms RTP
//! packets from a few threads.

pub mod dtmf;
pub mod pacer;
pub mod ports;
pub mod rtp;
pub mod sdp;
