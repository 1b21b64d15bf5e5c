//! Whole-call recording: stereo 8 kHz 16-bit WAV files, the caller on the left channel and
//! the IVR or the agent on the right, written as the call goes.
//!
//! The media path (the pacer's threads, the call task's RTP receive and its bridge) never
//! waits for a disk: it hands each 20 ms frame, still G.711, to a [`Tap`], which puts it on a
//! bounded channel to one writer thread ([`Recorder`]) with `try_send`; a frame that does not
//! fit is dropped and counted ([`RecorderStats::dropped`]). The writer thread decodes frames,
//! places each at its time on the call's timeline (a leg that sends nothing is silence),
//! writes what is older than [`JITTER`] every [`FLUSH_EVERY`], and fixes up the WAV header's
//! sizes every [`FIXUP_EVERY`] and on close: a crash of the process loses at most the last
//! second, and [`repair_folder`] fixes the headers of files left open at the next start.
//! On close the file is read back for its SHA-256.

use crate::audio::{G711, Law, SAMPLE_RATE};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Frames the writer's channel holds (of all recordings); more are dropped and counted.
pub const CHANNEL_FRAMES: usize = 16_384;
/// The longest payload taken in one frame (60 ms of G.711); longer packets are cut.
pub const MAX_FRAME_BYTES: usize = 480;
/// Audio younger than this stays in memory so that late packets still find their place.
pub const JITTER: Duration = Duration::from_millis(200);
/// How often buffered audio is written to the files.
pub const FLUSH_EVERY: Duration = Duration::from_millis(250);
/// How often the headers of open files are brought up to date.
pub const FIXUP_EVERY: Duration = Duration::from_secs(1);
/// The WAV header's length.
pub const HEADER_LEN: u64 = 44;
/// Bytes per second of a recording (8 kHz, 16 bits, 2 channels).
pub const BYTES_PER_SECOND: u64 = SAMPLE_RATE as u64 * 4;

/// A leg that sends within this much of where its audio would continue is taken as
/// continuous (jitter); later, the gap is silence.
const GAP_SAMPLES: u64 = 480;
/// A leg whose audio runs this far ahead of the wall clock has its frames dropped.
const AHEAD_SAMPLES: u64 = 1600;
/// At most this much audio waits in memory per recording (10 s).
const MAX_BUFFERED: u64 = 80_000;

/// Which channel of the file a frame belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leg {
    /// The caller: the left channel.
    Caller,
    /// The IVR's prompts or the agent: the right channel.
    Other,
}

/// Counters of the writer.
#[derive(Debug, Default)]
pub struct RecorderStats {
    /// Frames taken.
    pub frames: AtomicU64,
    /// Frames the writer took off the channel.
    pub received: AtomicU64,
    /// Frames dropped because the writer's channel was full.
    pub dropped: AtomicU64,
    /// Frames (or parts) that came too late for their place and were left out.
    pub late: AtomicU64,
    /// Bytes written to files.
    pub bytes: AtomicU64,
    /// Recordings open now.
    pub open: AtomicU64,
    /// Files that could not be created or written.
    pub errors: AtomicU64,
}

/// Why a recording has no file.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The file could not be created or written.
    #[error("recording {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// The writer thread is gone.
    #[error("the recording writer has stopped")]
    Stopped,
}

/// A finished recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    /// The file.
    pub path: PathBuf,
    /// Its SHA-256, lower-case hex.
    pub sha256: String,
    /// Its length in milliseconds.
    pub length_ms: u64,
    /// Its size in bytes.
    pub bytes: u64,
}

struct Frame {
    id: u64,
    leg: Leg,
    at: Instant,
    law: Law,
    len: u16,
    data: [u8; MAX_FRAME_BYTES],
}

enum Control {
    Open {
        id: u64,
        path: PathBuf,
        at: Instant,
    },
    Close {
        id: u64,
        reply: tokio::sync::oneshot::Sender<Result<Finished, RecordError>>,
    },
}

/// The writer thread's handle: starts recordings.
#[derive(Clone)]
pub struct Recorder {
    frames: mpsc::SyncSender<Frame>,
    control: mpsc::Sender<Control>,
    next: Arc<AtomicU64>,
    stats: Arc<RecorderStats>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Recorder")
    }
}

impl Recorder {
    /// Starts the writer thread.
    pub fn start() -> std::io::Result<Recorder> {
        Recorder::with_capacity(CHANNEL_FRAMES)
    }

    /// Starts the writer thread with a channel of `frames` frames (tests, benchmarks).
    pub fn with_capacity(frames: usize) -> std::io::Result<Recorder> {
        let (ftx, frx) = mpsc::sync_channel(frames.max(1));
        let (ctx, crx) = mpsc::channel();
        let stats = Arc::new(RecorderStats::default());
        let s = Arc::clone(&stats);
        std::thread::Builder::new()
            .name("ivr-recorder".into())
            .spawn(move || Writer::new(frx, crx, s).run())?;
        Ok(Recorder {
            frames: ftx,
            control: ctx,
            next: Arc::new(AtomicU64::new(1)),
            stats,
        })
    }

    /// The counters.
    pub fn stats(&self) -> &Arc<RecorderStats> {
        &self.stats
    }

    /// Starts recording into `path` (its folder is created); time 0 of the file is now.
    pub fn open(&self, path: PathBuf) -> Recording {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let _ = self.control.send(Control::Open {
            id,
            path: path.clone(),
            at: Instant::now(),
        });
        Recording {
            tap: Tap {
                id,
                frames: self.frames.clone(),
                stats: Arc::clone(&self.stats),
            },
            control: self.control.clone(),
            path,
            closed: false,
        }
    }
}

/// Where the media path hands a recording its frames; cheap to clone, never blocks.
#[derive(Clone)]
pub struct Tap {
    id: u64,
    frames: mpsc::SyncSender<Frame>,
    stats: Arc<RecorderStats>,
}

impl std::fmt::Debug for Tap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tap({})", self.id)
    }
}

impl Tap {
    /// Hands over one frame of `leg`'s G.711 audio (`payload` in `law`), heard now. Drops it
    /// (and counts it) when the writer is behind.
    pub fn push(&self, leg: Leg, law: Law, payload: &[u8]) {
        self.push_at(leg, law, payload, Instant::now());
    }

    /// As [`Tap::push`], heard at `at`.
    pub fn push_at(&self, leg: Leg, law: Law, payload: &[u8], at: Instant) {
        if payload.is_empty() {
            return;
        }
        let len = payload.len().min(MAX_FRAME_BYTES);
        let mut data = [0u8; MAX_FRAME_BYTES];
        data[..len].copy_from_slice(&payload[..len]);
        let frame = Frame {
            id: self.id,
            leg,
            at,
            law,
            len: len as u16,
            data,
        };
        match self.frames.try_send(frame) {
            Ok(()) => {
                self.stats.frames.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// One recording in progress; [`Recording::finish`] closes it (dropping it closes it too,
/// without an answer).
#[derive(Debug)]
pub struct Recording {
    tap: Tap,
    control: mpsc::Sender<Control>,
    path: PathBuf,
    closed: bool,
}

impl Recording {
    /// The tap for the media path.
    pub fn tap(&self) -> &Tap {
        &self.tap
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Closes the file once the frames handed over so far are written; the answer comes
    /// when its header is final and its SHA-256 known.
    pub fn finish(mut self) -> tokio::sync::oneshot::Receiver<Result<Finished, RecordError>> {
        self.closed = true;
        let (tx, rx) = tokio::sync::oneshot::channel();
        if let Err(mpsc::SendError(Control::Close { reply, .. })) =
            self.control.send(Control::Close {
                id: self.tap.id,
                reply: tx,
            })
        {
            let _ = reply.send(Err(RecordError::Stopped));
        }
        rx
    }
}

impl Drop for Recording {
    fn drop(&mut self) {
        if !self.closed {
            let (tx, _) = tokio::sync::oneshot::channel();
            let _ = self.control.send(Control::Close {
                id: self.tap.id,
                reply: tx,
            });
        }
    }
}

/// The 44-byte header of a stereo 8 kHz 16-bit PCM WAV with `data` bytes of samples.
pub fn wav_header(data: u64) -> [u8; HEADER_LEN as usize] {
    let data = u32::try_from(data).unwrap_or(u32::MAX - 36);
    let mut h = [0u8; HEADER_LEN as usize];
    h[0..4].copy_from_slice(b"RIFF");
    h[4..8].copy_from_slice(&(data.saturating_add(36)).to_le_bytes());
    h[8..12].copy_from_slice(b"WAVE");
    h[12..16].copy_from_slice(b"fmt ");
    h[16..20].copy_from_slice(&16u32.to_le_bytes());
    h[20..22].copy_from_slice(&1u16.to_le_bytes()); // PCM
    h[22..24].copy_from_slice(&2u16.to_le_bytes()); // channels
    h[24..28].copy_from_slice(&SAMPLE_RATE.to_le_bytes());
    h[28..32].copy_from_slice(&(SAMPLE_RATE * 4).to_le_bytes()); // bytes per second
    h[32..34].copy_from_slice(&4u16.to_le_bytes()); // block align
    h[34..36].copy_from_slice(&16u16.to_le_bytes()); // bits per sample
    h[36..40].copy_from_slice(b"data");
    h[40..44].copy_from_slice(&data.to_le_bytes());
    h
}

/// Brings the header of `file` (one of ours) up to its length: the sizes say what is there,
/// a half-written sample frame at the end is cut. Whether anything changed.
pub fn repair_file(path: &Path) -> std::io::Result<bool> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)?;
    let len = file.metadata()?.len();
    let mut head = [0u8; HEADER_LEN as usize];
    if len < HEADER_LEN {
        return Ok(false);
    }
    file.read_exact_at(&mut head, 0)?;
    if &head[0..4] != b"RIFF" || &head[8..12] != b"WAVE" || &head[36..40] != b"data" {
        return Ok(false);
    }
    let data = (len - HEADER_LEN) / 4 * 4;
    let want = wav_header(data);
    if head == want && len == HEADER_LEN + data {
        return Ok(false);
    }
    file.write_all_at(&want, 0)?;
    file.set_len(HEADER_LEN + data)?;
    Ok(true)
}

/// Fixes the headers of the WAV files below `dir` (two levels: the folder and its day
/// folders) that a crash left open; how many were repaired. Run it at start-up, before any
/// recording starts.
pub fn repair_folder(dir: &Path) -> usize {
    fn walk(dir: &Path, depth: usize, n: &mut usize) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let path = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() && depth > 0 => walk(&path, depth - 1, n),
                Ok(t) if t.is_file() && path.extension().is_some_and(|x| x == "wav") => {
                    match repair_file(&path) {
                        Ok(true) => {
                            tracing::warn!(file = %path.display(), "recording left open: header repaired");
                            *n += 1;
                        }
                        Ok(false) => {}
                        Err(e) => {
                            tracing::warn!(file = %path.display(), error = %e, "recording not repaired")
                        }
                    }
                }
                _ => {}
            }
        }
    }
    let mut n = 0;
    walk(dir, 2, &mut n);
    n
}

/// The SHA-256 of a file, lower-case hex.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

struct Open {
    path: PathBuf,
    file: Option<File>,
    start: Instant,
    /// Samples (per channel) written.
    base: u64,
    left: VecDeque<i16>,
    right: VecDeque<i16>,
    /// Where each leg's audio continues.
    cursor: [Option<u64>; 2],
    data_bytes: u64,
    header_bytes: u64,
}

impl Open {
    fn create(path: PathBuf, start: Instant) -> (Open, Option<std::io::Error>) {
        let file = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| File::create(&path))
            .and_then(|mut f| f.write_all(&wav_header(0)).map(|()| f));
        let (file, err) = match file {
            Ok(f) => (Some(f), None),
            Err(e) => (None, Some(e)),
        };
        (
            Open {
                path,
                file,
                start,
                base: 0,
                left: VecDeque::new(),
                right: VecDeque::new(),
                cursor: [None, None],
                data_bytes: 0,
                header_bytes: 0,
            },
            err,
        )
    }

    fn samples_at(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.start).as_micros() as u64 * u64::from(SAMPLE_RATE)
            / 1_000_000
    }

    /// Places a frame on the timeline.
    fn place(&mut self, f: &Frame, stats: &RecorderStats) {
        let leg = match f.leg {
            Leg::Caller => 0,
            Leg::Other => 1,
        };
        let n = u64::from(f.len);
        let arrival = self.samples_at(f.at);
        let pos = match self.cursor[leg] {
            Some(c) if arrival + AHEAD_SAMPLES < c => {
                stats.late.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Some(c) if arrival <= c + GAP_SAMPLES => c,
            _ => arrival,
        };
        self.cursor[leg] = Some(pos + n);
        if pos + n <= self.base || pos >= self.base + MAX_BUFFERED {
            stats.late.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let skip = self.base.saturating_sub(pos);
        let at = (pos + skip - self.base) as usize;
        let buf = if leg == 0 {
            &mut self.left
        } else {
            &mut self.right
        };
        let end = at + (n - skip) as usize;
        if buf.len() < end {
            buf.resize(end, 0);
        }
        for (i, &b) in f.data[skip as usize..f.len as usize].iter().enumerate() {
            buf[at + i] = f.law.decode(b);
        }
    }

    /// Writes the audio before sample `upto`.
    fn flush(&mut self, upto: u64, out: &mut Vec<u8>, stats: &RecorderStats) {
        if upto <= self.base {
            return;
        }
        let n = (upto - self.base) as usize;
        out.clear();
        for _ in 0..n {
            let l = self.left.pop_front().unwrap_or(0);
            let r = self.right.pop_front().unwrap_or(0);
            out.extend_from_slice(&l.to_le_bytes());
            out.extend_from_slice(&r.to_le_bytes());
        }
        self.base = upto;
        if let Some(file) = &mut self.file {
            if let Err(e) = file.write_all(out) {
                tracing::error!(file = %self.path.display(), error = %e, "recording write failed");
                stats.errors.fetch_add(1, Ordering::Relaxed);
                self.file = None;
                return;
            }
            self.data_bytes += out.len() as u64;
            stats.bytes.fetch_add(out.len() as u64, Ordering::Relaxed);
        }
    }

    fn fixup(&mut self) {
        if self.header_bytes == self.data_bytes {
            return;
        }
        if let Some(file) = &self.file
            && file.write_all_at(&wav_header(self.data_bytes), 0).is_ok()
        {
            self.header_bytes = self.data_bytes;
        }
    }

    fn end(&self) -> u64 {
        self.base + self.left.len().max(self.right.len()) as u64
    }
}

struct Writer {
    frames: mpsc::Receiver<Frame>,
    control: mpsc::Receiver<Control>,
    stats: Arc<RecorderStats>,
    open: HashMap<u64, Open>,
    out: Vec<u8>,
}

impl Writer {
    fn new(
        frames: mpsc::Receiver<Frame>,
        control: mpsc::Receiver<Control>,
        stats: Arc<RecorderStats>,
    ) -> Writer {
        Writer {
            frames,
            control,
            stats,
            open: HashMap::new(),
            out: Vec::with_capacity(64 * 1024),
        }
    }

    fn run(mut self) {
        let mut last_flush = Instant::now();
        let mut last_fixup = Instant::now();
        let mut frames_gone = false;
        loop {
            if frames_gone {
                std::thread::sleep(Duration::from_millis(50));
            } else {
                match self.frames.recv_timeout(Duration::from_millis(50)) {
                    Ok(f) => self.frame(f),
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    Err(mpsc::RecvTimeoutError::Disconnected) => frames_gone = true,
                }
                // Up to a tick's worth more before looking at the clock.
                for _ in 0..4096 {
                    match self.frames.try_recv() {
                        Ok(f) => self.frame(f),
                        Err(_) => break,
                    }
                }
            }
            if !self.controls() {
                for (_, mut o) in self.open.drain() {
                    let end = o.end();
                    o.flush(end, &mut self.out, &self.stats);
                    o.fixup();
                }
                return;
            }
            let now = Instant::now();
            if now >= last_flush + FLUSH_EVERY {
                last_flush = now;
                let upto_at = now.checked_sub(JITTER).unwrap_or(now);
                for o in self.open.values_mut() {
                    let upto = o.samples_at(upto_at);
                    // Never behind more than the buffer holds.
                    let upto = upto.max(o.end().saturating_sub(MAX_BUFFERED));
                    o.flush(upto, &mut self.out, &self.stats);
                }
            }
            if now >= last_fixup + FIXUP_EVERY {
                last_fixup = now;
                for o in self.open.values_mut() {
                    o.fixup();
                }
            }
        }
    }

    fn frame(&mut self, f: Frame) {
        self.stats.received.fetch_add(1, Ordering::Relaxed);
        if !self.open.contains_key(&f.id) {
            // Its Open may still be on the control channel.
            self.controls();
        }
        if let Some(o) = self.open.get_mut(&f.id) {
            o.place(&f, &self.stats);
        }
    }

    /// Carries out waiting opens and closes; false when every handle is gone.
    fn controls(&mut self) -> bool {
        loop {
            match self.control.try_recv() {
                Ok(Control::Open { id, path, at }) => {
                    let (o, err) = Open::create(path, at);
                    if let Some(e) = err {
                        tracing::error!(file = %o.path.display(), error = %e, "recording not started");
                        self.stats.errors.fetch_add(1, Ordering::Relaxed);
                    }
                    self.stats.open.fetch_add(1, Ordering::Relaxed);
                    self.open.insert(id, o);
                }
                Ok(Control::Close { id, reply }) => {
                    // The frames handed over before the close are on the channel: take them.
                    while let Ok(f) = self.frames.try_recv() {
                        if let Some(o) = self.open.get_mut(&f.id) {
                            o.place(&f, &self.stats);
                        }
                    }
                    if let Some(o) = self.open.remove(&id) {
                        self.stats.open.fetch_sub(1, Ordering::Relaxed);
                        let _ = reply.send(self.close(o));
                    }
                }
                Err(mpsc::TryRecvError::Empty) => return true,
                Err(mpsc::TryRecvError::Disconnected) => return false,
            }
        }
    }

    fn close(&mut self, mut o: Open) -> Result<Finished, RecordError> {
        let end = o.end();
        o.flush(end, &mut self.out, &self.stats);
        o.fixup();
        let path = o.path.clone();
        let io = |source| RecordError::Io {
            path: path.clone(),
            source,
        };
        let Some(file) = o.file.take() else {
            return Err(io(std::io::Error::other("the file could not be written")));
        };
        drop(file);
        let sha256 = sha256_file(&path).map_err(io)?;
        Ok(Finished {
            path: path.clone(),
            sha256,
            length_ms: o.data_bytes * 1000 / BYTES_PER_SECOND,
            bytes: HEADER_LEN + o.data_bytes,
        })
    }
}

#[cfg(test)]
mod tests;
