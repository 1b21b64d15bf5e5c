//! The runtime of `ivr`: the call engine (a sans-IO state machine per call that every channel
//! drives), spoken values, and the simulator with its virtual clock.

pub mod acd;
pub mod audio;
pub mod data;
pub mod deploy;
pub mod engine;
pub mod limiter;
pub mod live;
pub mod media;
pub mod say;
pub mod serve;
pub mod sim;
pub mod sip;
pub mod speak;
pub mod value;
pub mod webrtc;
