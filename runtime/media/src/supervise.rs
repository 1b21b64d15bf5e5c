//! A supervisor on a bridged call: **listen** (hear both parties), **whisper** (speak to the
//! agent only) and **barge** (speak to both). Agents and callers are never told.
//!
//! The seam is a pair made by [`pair`]: the call task's [`BridgeTap`] and the supervisor's
//! [`SupervisorEnd`], joined by four single-producer single-consumer rings of 16-bit PCM
//! samples (lock-free: a slot per sample, atomic read and write positions; preallocated when
//! the pair is made, nothing allocated or locked per packet):
//!
//! - `heard_caller`, `heard_agent`: what the bridge relays each way, decoded, for the
//!   supervisor to hear (the call task writes, the supervisor's sender reads and mixes both
//!   into one 20 ms frame: [`SupervisorEnd::heard`]);
//! - `to_agent`, `to_caller`: the supervisor's voice (the supervisor's receiver writes,
//!   the call task reads and mixes it into the packet it relays, re-encoded in the
//!   receiving side's law).
//!
//! The supervisor's voice goes into `to_agent` in whisper and barge and into `to_caller` in
//! barge only, decided when it is written ([`SupervisorEnd::speak`]); the call task mixes
//! `to_caller` into the caller-bound packets only while the mode is barge and discards it
//! otherwise. So audio spoken in listen or whisper can never reach the caller.
//!
//! Mixing is saturating 16-bit addition. The supervisor's voice follows the caller's packets
//! towards the agent (and the agent's towards the caller): a party that sends no RTP carries
//! none. Each reader keeps at most [`MAX_LAG`] samples waiting (older ones are skipped) and
//! waits for [`PRIME`] samples after running dry, so jitter between the two clocks costs a
//! short gap, never a growing delay.

use crate::audio::{FRAME_SAMPLES, G711, Law};
use crate::rtp;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI16, AtomicU8, AtomicU64, AtomicUsize, Ordering};

/// Samples a ring holds (256 ms at 8 kHz); a power of two.
pub const RING_SAMPLES: usize = 2048;
/// Most samples a reader lets wait (120 ms); beyond, the oldest are skipped.
pub const MAX_LAG: usize = 960;
/// After running dry, a reader waits until this many samples (40 ms) are there.
pub const PRIME: usize = 2 * FRAME_SAMPLES;
/// The longest packet payload mixed (60 ms of G.711); the rest of a longer one passes as is.
pub const MAX_PACKET_SAMPLES: usize = 480;

/// What the supervisor does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Hears both parties; says nothing.
    Listen,
    /// Hears both; speaks to the agent only.
    Whisper,
    /// Hears both; speaks to both.
    Barge,
}

impl Mode {
    /// The mode named `s` (`listen`, `whisper`, `barge`).
    pub fn parse(s: &str) -> Option<Mode> {
        match s {
            "listen" => Some(Mode::Listen),
            "whisper" => Some(Mode::Whisper),
            "barge" => Some(Mode::Barge),
            _ => None,
        }
    }

    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Listen => "listen",
            Mode::Whisper => "whisper",
            Mode::Barge => "barge",
        }
    }

    fn to_u8(self) -> u8 {
        match self {
            Mode::Listen => 0,
            Mode::Whisper => 1,
            Mode::Barge => 2,
        }
    }

    fn from_u8(v: u8) -> Mode {
        match v {
            1 => Mode::Whisper,
            2 => Mode::Barge,
            _ => Mode::Listen,
        }
    }
}

/// A single-producer single-consumer ring of samples. Positions only grow (wrapping); the
/// producer alone stores `write`, the consumer alone stores `read`.
struct Ring {
    slots: Box<[AtomicI16]>,
    read: AtomicUsize,
    write: AtomicUsize,
}

impl Ring {
    fn new() -> Ring {
        Ring {
            slots: (0..RING_SAMPLES).map(|_| AtomicI16::new(0)).collect(),
            read: AtomicUsize::new(0),
            write: AtomicUsize::new(0),
        }
    }

    /// Producer: appends what fits; how many samples were dropped.
    fn push(&self, samples: &[i16]) -> usize {
        let w = self.write.load(Ordering::Relaxed);
        let r = self.read.load(Ordering::Acquire);
        let free = RING_SAMPLES - w.wrapping_sub(r);
        let n = samples.len().min(free);
        for (i, &s) in samples[..n].iter().enumerate() {
            self.slots[w.wrapping_add(i) & (RING_SAMPLES - 1)].store(s, Ordering::Relaxed);
        }
        self.write.store(w.wrapping_add(n), Ordering::Release);
        samples.len() - n
    }

    /// Consumer: samples waiting.
    fn available(&self) -> usize {
        let r = self.read.load(Ordering::Relaxed);
        self.write.load(Ordering::Acquire).wrapping_sub(r)
    }

    /// Consumer: adds (saturating) up to `out.len()` samples into `out`; how many.
    fn mix_into(&self, out: &mut [i16]) -> usize {
        let r = self.read.load(Ordering::Relaxed);
        let n = out.len().min(self.available());
        for (i, o) in out[..n].iter_mut().enumerate() {
            let s = self.slots[r.wrapping_add(i) & (RING_SAMPLES - 1)].load(Ordering::Relaxed);
            *o = o.saturating_add(s);
        }
        self.read.store(r.wrapping_add(n), Ordering::Release);
        n
    }

    /// Consumer: drops `n` waiting samples (at most what is there).
    fn skip(&self, n: usize) {
        let n = n.min(self.available());
        let r = self.read.load(Ordering::Relaxed);
        self.read.store(r.wrapping_add(n), Ordering::Release);
    }
}

/// The consumer's own state of a ring: primed or waiting for [`PRIME`] samples.
#[derive(Debug, Default)]
struct Reader {
    primed: bool,
}

impl Reader {
    /// Mixes `out.len()` samples of `ring` into `out` when it has them (after skipping what
    /// is beyond [`MAX_LAG`]); how many were mixed.
    fn mix(&mut self, ring: &Ring, out: &mut [i16]) -> usize {
        let waiting = ring.available();
        if waiting > MAX_LAG {
            ring.skip(waiting - PRIME);
        }
        let waiting = ring.available();
        if !self.primed {
            if waiting < PRIME.max(out.len()) {
                return 0;
            }
            self.primed = true;
        }
        let n = ring.mix_into(out);
        if n < out.len() {
            self.primed = false;
        }
        n
    }
}

/// Counters of a supervision (samples).
#[derive(Debug, Default)]
pub struct SupervisionStats {
    /// Samples of the supervisor's voice mixed into what the agent hears.
    pub to_agent: AtomicU64,
    /// Samples of the supervisor's voice mixed into what the caller hears.
    pub to_caller: AtomicU64,
    /// Samples of the parties' audio handed to the supervisor.
    pub heard: AtomicU64,
    /// Samples dropped because a ring was full.
    pub dropped: AtomicU64,
}

struct Shared {
    mode: AtomicU8,
    /// The call side is gone (the bridge ended or the call is over).
    call_gone: AtomicBool,
    /// The supervisor is gone.
    supervisor_gone: AtomicBool,
    heard_caller: Ring,
    heard_agent: Ring,
    to_agent: Ring,
    to_caller: Ring,
    stats: SupervisionStats,
}

/// Makes the two ends of a supervision starting in `mode`.
pub fn pair(mode: Mode) -> (BridgeTap, SupervisorEnd) {
    let shared = Arc::new(Shared {
        mode: AtomicU8::new(mode.to_u8()),
        call_gone: AtomicBool::new(false),
        supervisor_gone: AtomicBool::new(false),
        heard_caller: Ring::new(),
        heard_agent: Ring::new(),
        to_agent: Ring::new(),
        to_caller: Ring::new(),
        stats: SupervisionStats::default(),
    });
    (
        BridgeTap {
            shared: Arc::clone(&shared),
            to_agent: Reader::default(),
            to_caller: Reader::default(),
            pcm: [0; MAX_PACKET_SAMPLES],
            mixed: [0; MAX_PACKET_SAMPLES],
        },
        SupervisorEnd {
            shared,
            caller: Reader::default(),
            agent: Reader::default(),
        },
    )
}

/// Where a packet's G.711 payload is: its range in the packet, when its payload type is `pt`.
fn audio_payload(packet: &[u8], pt: u8) -> Option<std::ops::Range<usize>> {
    let p = rtp::parse(packet)?;
    if p.header.payload_type != pt || p.payload.is_empty() {
        return None;
    }
    // `payload` borrows `packet`: its offset is the distance between the two.
    let start = p.payload.as_ptr() as usize - packet.as_ptr() as usize;
    Some(start..start + p.payload.len())
}

/// Which way a packet goes through the bridge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Way {
    ToAgent,
    ToCaller,
}

/// The call task's end: handed each packet the bridge relays, after it is rewritten for its
/// receiver. Dropping it tells the supervisor the call side is gone.
pub struct BridgeTap {
    shared: Arc<Shared>,
    to_agent: Reader,
    to_caller: Reader,
    pcm: [i16; MAX_PACKET_SAMPLES],
    mixed: [i16; MAX_PACKET_SAMPLES],
}

impl std::fmt::Debug for BridgeTap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BridgeTap({:?})", self.mode())
    }
}

impl BridgeTap {
    /// The supervisor's mode now.
    pub fn mode(&self) -> Mode {
        Mode::from_u8(self.shared.mode.load(Ordering::Relaxed))
    }

    /// Whether the supervisor has gone (the tap can be dropped).
    pub fn supervisor_gone(&self) -> bool {
        self.shared.supervisor_gone.load(Ordering::Relaxed)
    }

    /// A packet of the caller's on its way to the agent, already in the agent's `law` with
    /// the agent's audio payload type `pt`: the caller's audio is handed to the supervisor,
    /// and in whisper and barge the supervisor's voice is mixed into it.
    pub fn caller_to_agent(&mut self, packet: &mut [u8], law: Law, pt: u8) {
        self.pass(packet, law, pt, Way::ToAgent);
    }

    /// A packet of the agent's on its way to the caller, already in the caller's `law` with
    /// the caller's audio payload type `pt`: the agent's audio is handed to the supervisor,
    /// and in barge the supervisor's voice is mixed into it.
    pub fn agent_to_caller(&mut self, packet: &mut [u8], law: Law, pt: u8) {
        self.pass(packet, law, pt, Way::ToCaller);
    }

    fn pass(&mut self, packet: &mut [u8], law: Law, pt: u8, way: Way) {
        let Some(range) = audio_payload(packet, pt) else {
            return;
        };
        let payload = &mut packet[range];
        let n = payload.len().min(MAX_PACKET_SAMPLES);
        let payload = &mut payload[..n];
        let pcm = &mut self.pcm[..n];
        for (s, &b) in pcm.iter_mut().zip(payload.iter()) {
            *s = law.decode(b);
        }
        let sh = &*self.shared;
        let heard = match way {
            Way::ToAgent => &sh.heard_caller,
            Way::ToCaller => &sh.heard_agent,
        };
        if !sh.supervisor_gone.load(Ordering::Relaxed) {
            let dropped = heard.push(pcm);
            sh.stats
                .heard
                .fetch_add((n - dropped) as u64, Ordering::Relaxed);
            if dropped > 0 {
                sh.stats
                    .dropped
                    .fetch_add(dropped as u64, Ordering::Relaxed);
            }
        }
        let mode = Mode::from_u8(sh.mode.load(Ordering::Relaxed));
        let (ring, reader, counter, speaks) = match way {
            Way::ToAgent => (
                &sh.to_agent,
                &mut self.to_agent,
                &sh.stats.to_agent,
                mode != Mode::Listen,
            ),
            Way::ToCaller => (
                &sh.to_caller,
                &mut self.to_caller,
                &sh.stats.to_caller,
                mode == Mode::Barge,
            ),
        };
        if !speaks {
            // Whatever waits was meant for an earlier mode: never late into this one.
            ring.skip(RING_SAMPLES);
            reader.primed = false;
            return;
        }
        let mixed = &mut self.mixed[..n];
        mixed.copy_from_slice(pcm);
        let m = reader.mix(ring, mixed);
        if m == 0 {
            return;
        }
        counter.fetch_add(m as u64, Ordering::Relaxed);
        for (b, &s) in payload[..m].iter_mut().zip(mixed[..m].iter()) {
            *b = law.encode(s);
        }
    }

    /// The counters of this supervision.
    pub fn stats(&self) -> &SupervisionStats {
        &self.shared.stats
    }
}

impl Drop for BridgeTap {
    fn drop(&mut self) {
        self.shared.call_gone.store(true, Ordering::Relaxed);
    }
}

/// The supervisor's end: what they hear, what they say, their mode. Dropping it tells the
/// call side the supervisor is gone.
pub struct SupervisorEnd {
    shared: Arc<Shared>,
    caller: Reader,
    agent: Reader,
}

impl std::fmt::Debug for SupervisorEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SupervisorEnd({:?})", self.mode())
    }
}

impl SupervisorEnd {
    /// The mode now.
    pub fn mode(&self) -> Mode {
        Mode::from_u8(self.shared.mode.load(Ordering::Relaxed))
    }

    /// Changes the mode (takes effect with the next packet).
    pub fn set_mode(&self, mode: Mode) {
        self.shared.mode.store(mode.to_u8(), Ordering::Relaxed);
    }

    /// Whether the call side has gone (the bridge ended or the call is over).
    pub fn call_gone(&self) -> bool {
        self.shared.call_gone.load(Ordering::Relaxed)
    }

    /// The next 20 ms of what the supervisor hears: the caller and the agent mixed (silence
    /// where a side has nothing yet).
    pub fn heard(&mut self, out: &mut [i16; FRAME_SAMPLES]) {
        out.fill(0);
        self.caller.mix(&self.shared.heard_caller, out);
        self.agent.mix(&self.shared.heard_agent, out);
    }

    /// What the supervisor says (PCM at 8 kHz): to the agent in whisper and barge, to the
    /// caller in barge only; nothing in listen.
    pub fn speak(&mut self, pcm: &[i16]) {
        let sh = &*self.shared;
        let mode = Mode::from_u8(sh.mode.load(Ordering::Relaxed));
        let mut dropped = 0;
        if mode != Mode::Listen {
            dropped += sh.to_agent.push(pcm);
        }
        if mode == Mode::Barge {
            dropped += sh.to_caller.push(pcm);
        }
        if dropped > 0 {
            sh.stats
                .dropped
                .fetch_add(dropped as u64, Ordering::Relaxed);
        }
    }

    /// The counters of this supervision.
    pub fn stats(&self) -> &SupervisionStats {
        &self.shared.stats
    }
}

impl Drop for SupervisorEnd {
    fn drop(&mut self) {
        self.shared.supervisor_gone.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests;
