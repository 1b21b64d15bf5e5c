//! The shared pacer: a few threads that tick every 20 ms and send the next frame of every
//! channel's [`Playback`] as one RTP packet. Thousands of channels share them; no call has a
//! timer task of its own for its audio.
//!
//! Each pacer shard owns its channels in a slab. Calls talk to it only through commands
//! ([`Cmd`]) over a channel, drained at the start of every tick, so a tick takes no lock; a
//! key that stops the prompt (barge-in) is carried out on the next tick, and the prompt
//! queued after it starts on the same tick. A packet is the 12-byte header on the stack and
//! a reference to the prompt store's shared frame, sent with one vectored `sendto`: no
//! allocation and no copy of audio per packet. An SRTP call's channel (SDES keys) is the
//! exception: its frame is copied behind the header into the channel's buffer and protected
//! ([`crate::srtp::Protect`]) before one plain `sendto`.
//!
//! The shards are OS threads rather than tokio tasks so that the 20 ms cadence does not depend
//! on how busy the SIP and call tasks keep the tokio workers: each thread sleeps until an
//! absolute deadline (`start + n × 20 ms`), so lateness never accumulates.
//!
//! Sequence numbers go up by one per packet sent; the timestamp goes up by 160 every tick
//! whether a packet was sent or not (the media clock keeps running through pauses); the
//! marker bit is set on the first packet after a pause (the start of a talkspurt). Nothing is
//! sent while nothing plays.

use crate::audio::{FRAME_MS, FRAME_SAMPLES, Law, Playback, Prompt};
use crate::recorder::{Leg, Tap};
use crate::rtp::{HEADER_LEN, Header};
use crate::srtp::Protect;
use slab::Slab;
use socket2::{SockAddr, SockRef};
use std::collections::HashMap;
use std::io::IoSlice;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The tick.
pub const TICK: Duration = Duration::from_millis(FRAME_MS);

/// A frame sent later than this after its slot counts in [`PacerStats::late_packets`].
pub const LATE_FRAME: Duration = Duration::from_millis(5);

/// Within a tick the clock is read again after this many channels.
pub const LATE_CHECK_EVERY: usize = 32;

/// What the pacer tells a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaEvent {
    /// The playback queue drained after the item with this sequence number.
    PlaybackDone {
        /// The last item's playback sequence number.
        seq: u32,
    },
}

/// How a channel's audio goes out.
#[derive(Debug)]
pub struct ChannelSpec {
    /// The call's RTP socket (a clone of the one the call receives on).
    pub socket: UdpSocket,
    /// Where to send (none: nowhere yet, or on hold).
    pub remote: Option<SocketAddr>,
    /// The codec.
    pub law: Law,
    /// Its payload type.
    pub payload_type: u8,
    /// Our SSRC.
    pub ssrc: u32,
    /// The first sequence number.
    pub seq: u16,
    /// The first timestamp.
    pub timestamp: u32,
    /// Where to report [`MediaEvent`]s.
    pub events: tokio::sync::mpsc::UnboundedSender<MediaEvent>,
    /// SRTP: our context for what this channel sends (none: plain RTP).
    pub srtp: Option<Box<Protect>>,
}

/// A command to a pacer shard.
pub enum Cmd {
    /// A new channel.
    Add(u64, Box<ChannelSpec>),
    /// Queue prompts; `seq` is the playback sequence number of the engine's item (reported
    /// in [`MediaEvent::PlaybackDone`] when the queue drains after it).
    Push(u64, Vec<Arc<Prompt>>, u32),
    /// Stop and drop everything queued.
    Stop(u64),
    /// Send to another address (re-INVITE, symmetric RTP), or nowhere (hold).
    Remote(u64, Option<SocketAddr>),
    /// Another codec (re-INVITE): its law and payload type.
    Codec(u64, Law, u8),
    /// New SRTP keys (a re-INVITE that changed the suite).
    Srtp(u64, Option<Box<Protect>>),
    /// Hand every frame sent to a call recording (none: stop).
    Tap(u64, Option<Tap>),
    /// The channel is gone.
    Remove(u64),
}

/// Counters of all shards.
#[derive(Debug, Default)]
pub struct PacerStats {
    /// Packets sent.
    pub packets: AtomicU64,
    /// Packets the socket refused (buffer full) or could not send.
    pub send_errors: AtomicU64,
    /// Ticks run.
    pub ticks: AtomicU64,
    /// Ticks that started more than 2 ms late.
    pub late_ticks: AtomicU64,
    /// Frames sent more than [`LATE_FRAME`] after their slot on the 20 ms grid (the clock is
    /// read once every [`LATE_CHECK_EVERY`] channels of a tick, not per packet).
    pub late_packets: AtomicU64,
    /// The latest a tick started (µs).
    pub max_late_us: AtomicU64,
    /// The longest a tick took (µs).
    pub max_tick_us: AtomicU64,
    /// Channels now.
    pub channels: AtomicU64,
    /// Packets that could not be protected with SRTP (not sent).
    pub srtp_errors: AtomicU64,
}

/// The handle calls use to reach the pacer.
#[derive(Clone)]
pub struct Pacer {
    shards: Arc<[mpsc::Sender<Cmd>]>,
    next: Arc<AtomicU64>,
    stats: Arc<PacerStats>,
}

impl std::fmt::Debug for Pacer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pacer({} shards)", self.shards.len())
    }
}

impl Pacer {
    /// Starts `shards` pacer threads (at least one).
    pub fn start(shards: usize) -> std::io::Result<Pacer> {
        let stats = Arc::new(PacerStats::default());
        let mut txs = Vec::new();
        for i in 0..shards.max(1) {
            let (tx, rx) = mpsc::channel();
            let stats = Arc::clone(&stats);
            std::thread::Builder::new()
                .name(format!("ivr-pacer-{i}"))
                .spawn(move || run(rx, stats))?;
            txs.push(tx);
        }
        Ok(Pacer {
            shards: txs.into(),
            next: Arc::new(AtomicU64::new(1)),
            stats,
        })
    }

    /// The counters.
    pub fn stats(&self) -> &Arc<PacerStats> {
        &self.stats
    }

    /// Adds a channel; the returned handle sends its commands (and removes it when dropped).
    pub fn add(&self, spec: ChannelSpec) -> ChannelHandle {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let tx = self.shards[(id as usize) % self.shards.len()].clone();
        let _ = tx.send(Cmd::Add(id, Box::new(spec)));
        ChannelHandle { id, tx }
    }
}

/// One channel's way to the pacer.
#[derive(Debug)]
pub struct ChannelHandle {
    id: u64,
    tx: mpsc::Sender<Cmd>,
}

impl ChannelHandle {
    /// Queues prompts as playback item `seq`.
    pub fn push(&self, prompts: Vec<Arc<Prompt>>, seq: u32) {
        let _ = self.tx.send(Cmd::Push(self.id, prompts, seq));
    }

    /// Stops playback at once (the next tick sends nothing of it).
    pub fn stop(&self) {
        let _ = self.tx.send(Cmd::Stop(self.id));
    }

    /// Sends to `remote` from now on (none: send nothing).
    pub fn set_remote(&self, remote: Option<SocketAddr>) {
        let _ = self.tx.send(Cmd::Remote(self.id, remote));
    }

    /// Hands every frame played from the next tick on to `tap` (a whole-call recording's
    /// right channel; none: stop). The tap never blocks the tick.
    pub fn set_tap(&self, tap: Option<Tap>) {
        let _ = self.tx.send(Cmd::Tap(self.id, tap));
    }

    /// Speaks `law` as payload type `pt` from the next tick on.
    pub fn set_codec(&self, law: Law, pt: u8) {
        let _ = self.tx.send(Cmd::Codec(self.id, law, pt));
    }

    /// Protects what is sent with `srtp` from the next tick on (none: plain RTP).
    pub fn set_srtp(&self, srtp: Option<Box<Protect>>) {
        let _ = self.tx.send(Cmd::Srtp(self.id, srtp));
    }
}

impl Drop for ChannelHandle {
    fn drop(&mut self) {
        let _ = self.tx.send(Cmd::Remove(self.id));
    }
}

struct Channel {
    socket: UdpSocket,
    remote: Option<SockAddr>,
    playback: Playback,
    /// The sequence number of the last item queued, until its end is reported.
    pending: Option<u32>,
    payload_type: u8,
    ssrc: u32,
    seq: u16,
    timestamp: u32,
    talking: bool,
    /// The tick its last frame went out on (each channel sends at most once a tick).
    last_tick: u64,
    events: tokio::sync::mpsc::UnboundedSender<MediaEvent>,
    srtp: Option<Box<Protect>>,
    /// The codec's law (for the recording tap).
    law: Law,
    /// Where frames also go when the call is recorded.
    tap: Option<Tap>,
}

/// Applies a command; channels whose audio starts anew (a barge-in's stop, a prompt queued
/// while silent) are added to `first`: they go first in the tick, so a key's next prompt does
/// not wait behind thousands of other channels' sends.
fn apply(
    cmd: Cmd,
    slab: &mut Slab<Channel>,
    ids: &mut HashMap<u64, usize>,
    stats: &PacerStats,
    first: &mut Vec<usize>,
) {
    match cmd {
        Cmd::Add(id, spec) => {
            let spec = *spec;
            let key = slab.insert(Channel {
                socket: spec.socket,
                remote: spec.remote.map(SockAddr::from),
                playback: Playback::new(spec.law),
                pending: None,
                payload_type: spec.payload_type,
                ssrc: spec.ssrc,
                seq: spec.seq,
                timestamp: spec.timestamp,
                talking: false,
                last_tick: u64::MAX,
                events: spec.events,
                srtp: spec.srtp,
                law: spec.law,
                tap: None,
            });
            ids.insert(id, key);
            stats.channels.fetch_add(1, Ordering::Relaxed);
        }
        Cmd::Push(id, prompts, seq) => {
            if let Some(&k) = ids.get(&id)
                && let Some(c) = slab.get_mut(k)
            {
                c.playback.extend(prompts);
                c.pending = Some(seq);
                if !c.talking {
                    first.push(k);
                }
            }
        }
        Cmd::Stop(id) => {
            if let Some(&k) = ids.get(&id)
                && let Some(c) = slab.get_mut(k)
            {
                c.playback.clear();
                c.pending = None;
                first.push(k);
            }
        }
        Cmd::Remote(id, remote) => {
            if let Some(c) = ids.get(&id).and_then(|k| slab.get_mut(*k)) {
                c.remote = remote.map(SockAddr::from);
            }
        }
        Cmd::Codec(id, law, pt) => {
            if let Some(c) = ids.get(&id).and_then(|k| slab.get_mut(*k)) {
                c.playback.set_law(law);
                c.payload_type = pt;
                c.law = law;
            }
        }
        Cmd::Tap(id, tap) => {
            if let Some(c) = ids.get(&id).and_then(|k| slab.get_mut(*k)) {
                c.tap = tap;
            }
        }
        Cmd::Srtp(id, srtp) => {
            if let Some(c) = ids.get(&id).and_then(|k| slab.get_mut(*k)) {
                c.srtp = srtp;
            }
        }
        Cmd::Remove(id) => {
            if let Some(k) = ids.remove(&id) {
                slab.remove(k);
                stats.channels.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

/// Asks for a real-time scheduling class (SCHED_FIFO, low priority) so that the pacer wakes
/// on time even when the SIP and call tasks keep every core busy; without the privilege the
/// thread stays in the normal class. The pacer does little work per tick and never blocks on
/// anything but its sleep, so it cannot starve the rest.
fn realtime() -> bool {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 10 };
        // SAFETY: plain FFI on the calling thread with a valid parameter block.
        #[allow(unsafe_code)]
        unsafe {
            libc::pthread_setschedparam(libc::pthread_self(), libc::SCHED_FIFO, &param) == 0
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        false
    }
}

fn run(rx: mpsc::Receiver<Cmd>, stats: Arc<PacerStats>) {
    if !realtime() {
        tracing::debug!("pacer runs without real-time priority");
    }
    let mut slab: Slab<Channel> = Slab::new();
    let mut ids: HashMap<u64, usize> = HashMap::new();
    let start = Instant::now();
    let mut tick: u64 = 0;
    // Channels to serve before the others this tick (kept, not reallocated, between ticks).
    let mut first: Vec<usize> = Vec::with_capacity(256);
    // The slot of the tick running: its deadline on the grid.
    let mut slot = start;
    loop {
        // Commands first: a barge-in's stop and the next prompt land on this tick.
        loop {
            match rx.try_recv() {
                Ok(cmd) => apply(cmd, &mut slab, &mut ids, &stats, &mut first),
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => return,
            }
        }
        let began = Instant::now();
        // Frames sent late: the clock is looked at every LATE_CHECK_EVERY channels.
        let late_after = slot + LATE_FRAME;
        let mut late = began > late_after;
        let mut late_sent: u64 = 0;
        for k in first.drain(..) {
            if let Some(c) = slab.get_mut(k)
                && c.last_tick != tick
            {
                c.last_tick = tick;
                if send_one(c, &stats) && late {
                    late_sent += 1;
                }
            }
        }
        for (i, (_, c)) in slab.iter_mut().enumerate() {
            if i % LATE_CHECK_EVERY == LATE_CHECK_EVERY - 1 && !late {
                late = Instant::now() > late_after;
            }
            if c.last_tick == tick {
                continue;
            }
            c.last_tick = tick;
            if send_one(c, &stats) && late {
                late_sent += 1;
            }
        }
        if late_sent > 0 {
            stats.late_packets.fetch_add(late_sent, Ordering::Relaxed);
        }
        let took = began.elapsed().as_micros() as u64;
        stats.max_tick_us.fetch_max(took, Ordering::Relaxed);
        stats.ticks.fetch_add(1, Ordering::Relaxed);
        // The next deadline on the absolute grid; ticks missed are skipped, not bunched.
        tick += 1;
        let mut deadline = start + TICK * tick as u32;
        let now = Instant::now();
        if now > deadline + TICK {
            let behind = (now - deadline).as_micros() / TICK.as_micros();
            tick += behind as u64;
            deadline = start + TICK * tick as u32;
        }
        if let Some(wait) = deadline.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        slot = deadline;
        let late = Instant::now().saturating_duration_since(deadline);
        let late_us = late.as_micros() as u64;
        if late_us > 2_000 {
            stats.late_ticks.fetch_add(1, Ordering::Relaxed);
        }
        stats.max_late_us.fetch_max(late_us, Ordering::Relaxed);
    }
}

/// Sends the channel's next frame, if any; whether a packet went out.
fn send_one(c: &mut Channel, stats: &PacerStats) -> bool {
    let ts = c.timestamp;
    c.timestamp = c.timestamp.wrapping_add(FRAME_SAMPLES as u32);
    let Some(frame) = c.playback.next_frame() else {
        c.talking = false;
        if let Some(seq) = c.pending.take() {
            let _ = c.events.send(MediaEvent::PlaybackDone { seq });
        }
        return false;
    };
    if let Some(tap) = &c.tap {
        tap.push(Leg::Other, c.law, frame);
    }
    let Some(remote) = &c.remote else {
        // On hold: the prompt goes on (the flow's timing does not change), unheard.
        c.talking = false;
        report_if_drained(c);
        return false;
    };
    let mut head = [0u8; HEADER_LEN];
    Header {
        payload_type: c.payload_type,
        marker: !c.talking,
        seq: c.seq,
        timestamp: ts,
        ssrc: c.ssrc,
    }
    .write(&mut head);
    c.seq = c.seq.wrapping_add(1);
    c.talking = true;
    let result = match &mut c.srtp {
        None => {
            let bufs = [IoSlice::new(&head), IoSlice::new(frame)];
            SockRef::from(&c.socket).send_to_vectored(&bufs, remote)
        }
        Some(srtp) => match srtp.protect(&head, frame) {
            Ok(packet) => SockRef::from(&c.socket).send_to(&packet, remote),
            Err(e) => {
                stats.srtp_errors.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(error = %e, "SRTP packet not protected");
                report_if_drained(c);
                return false;
            }
        },
    };
    let sent = match result {
        Ok(_) => {
            stats.packets.fetch_add(1, Ordering::Relaxed);
            true
        }
        Err(_) => {
            stats.send_errors.fetch_add(1, Ordering::Relaxed);
            false
        }
    };
    report_if_drained(c);
    sent
}

/// Reports the end of the queue as soon as its last frame is out, so that the prompt the
/// engine queues next goes out on the very next tick: prompts follow each other without a
/// gap (and without a new talkspurt).
fn report_if_drained(c: &mut Channel) {
    if !c.playback.has_more()
        && let Some(seq) = c.pending.take()
    {
        let _ = c.events.send(MediaEvent::PlaybackDone { seq });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::{Audio, PromptSource};
    use crate::rtp;

    fn prompt(frames: usize, level: i16) -> Arc<Prompt> {
        Arc::new(Prompt {
            id: "t".into(),
            text: "t".into(),
            audio: Arc::new(Audio::from_pcm(&vec![level; frames * FRAME_SAMPLES])),
            source: PromptSource::Builtin,
        })
    }

    #[test]
    fn paces_a_prompt_and_reports_its_end() {
        let pacer = Pacer::start(1).expect("pacer");
        let rx_sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
        rx_sock
            .set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let tx_sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let (etx, mut erx) = tokio::sync::mpsc::unbounded_channel();
        let ch = pacer.add(ChannelSpec {
            socket: tx_sock,
            remote: Some(rx_sock.local_addr().expect("addr")),
            law: Law::Ulaw,
            payload_type: 0,
            ssrc: 42,
            seq: 65534,
            timestamp: 1000,
            events: etx,
            srtp: None,
        });
        ch.push(vec![prompt(3, 1000), prompt(2, -1000)], 7);
        let mut buf = [0u8; 400];
        let mut got = Vec::new();
        let mut times = Vec::new();
        for _ in 0..5 {
            let n = rx_sock.recv(&mut buf).expect("packet");
            times.push(Instant::now());
            let p = rtp::parse(&buf[..n]).expect("rtp");
            assert_eq!(p.payload.len(), FRAME_SAMPLES);
            got.push((p.header.seq, p.header.timestamp, p.header.marker));
        }
        assert_eq!(got[0].0, 65534);
        assert_eq!(got[2].0, 0, "sequence numbers wrap");
        assert!(got[0].2 && !got[1].2, "marker on the first packet only");
        for w in got.windows(2) {
            assert_eq!(w[1].1.wrapping_sub(w[0].1), 160);
        }
        for w in times.windows(2) {
            let gap = w[1] - w[0];
            assert!(
                gap > Duration::from_millis(10) && gap < Duration::from_millis(40),
                "{gap:?}"
            );
        }
        let done = loop {
            if let Ok(e) = erx.try_recv() {
                break e;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        assert_eq!(done, MediaEvent::PlaybackDone { seq: 7 });
        drop(ch);
    }

    #[test]
    fn a_channel_whose_audio_starts_anew_goes_first_in_its_tick() {
        let pacer = Pacer::start(1).expect("pacer");
        let rx_sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
        rx_sock
            .set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let to = rx_sock.local_addr().expect("addr");
        let channel = |ssrc: u32| {
            let (etx, erx) = tokio::sync::mpsc::unbounded_channel();
            let ch = pacer.add(ChannelSpec {
                socket: UdpSocket::bind("127.0.0.1:0").expect("bind"),
                remote: Some(to),
                law: Law::Ulaw,
                payload_type: 0,
                ssrc,
                seq: 1,
                timestamp: 0,
                events: etx,
                srtp: None,
            });
            (ch, erx)
        };
        // Channels 1..=20 talk; they come before channel 99 in the pacer's order.
        let talking: Vec<_> = (1..=20).map(channel).collect();
        for (ch, _) in &talking {
            ch.push(vec![prompt(200, 1000)], 1);
        }
        let (late, _events) = channel(99);
        let mut buf = [0u8; 400];
        for _ in 0..40 {
            rx_sock.recv(&mut buf).expect("packet");
        }
        late.push(vec![prompt(5, -1000)], 2);
        // Packets of one tick arrive together, ticks 20 ms apart: in the tick that starts
        // channel 99's prompt, its packet comes first.
        let mut ticks: Vec<Vec<u32>> = Vec::new();
        let mut last = Instant::now();
        let mut seen = 0;
        while seen < 80 {
            let n = rx_sock.recv(&mut buf).expect("packet");
            let now = Instant::now();
            let ssrc = rtp::parse(&buf[..n]).expect("rtp").header.ssrc;
            if ticks.is_empty() || now - last > Duration::from_millis(5) {
                ticks.push(Vec::new());
            }
            last = now;
            if let Some(t) = ticks.last_mut() {
                t.push(ssrc);
            }
            seen += 1;
        }
        let tick = ticks
            .iter()
            .find(|t| t.contains(&99))
            .expect("channel 99 sent");
        assert_eq!(tick.first(), Some(&99), "{ticks:?}");
        drop(talking);
    }
}
