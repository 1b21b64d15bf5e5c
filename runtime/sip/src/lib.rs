//! SIP for `ivr serve`, in layers (like ezk): rsip parses and builds messages ([`message`]
//! adds the helpers we need on top); [`peer`] names where a message came from; [`sdp`] is
//! offer/answer for one audio stream (and the G.711 [`sdp::Law`]); [`info`] reads keys from
//! SIP INFO bodies; [`transaction`] holds the RFC 3261 transaction state machines with their
//! timers as data; [`dialog`] the dialog state and in-dialog requests; [`registrar`] agents'
//! REGISTER with digest authentication; [`outbound`] the INVITEs of the legs we place;
//! [`limiter`] slows down and locks out repeated login failures; [`edge`] says who may INVITE
//! how often (trusted networks, a token bucket per address); [`ua`] is the user-agent core that owns
//! them all for `ivr serve`. Everything here is sans-IO in the style of [`ivr_sansio`]: no
//! socket, no task, no clock; time comes in as [`ivr_sansio::Millis`] with every input.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod dialog;
pub mod digest;
pub mod edge;
pub mod info;
pub mod limiter;
pub mod message;
pub mod outbound;
pub mod peer;
pub mod registrar;
pub mod sdp;
pub mod transaction;
pub mod ua;
