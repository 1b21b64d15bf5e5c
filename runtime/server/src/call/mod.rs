//! One call's driver: a tokio task that feeds the engine's [`Call`] with events — the answer,
//! keys (RFC 4733 on its RTP socket, SIP INFO from the core), the end of playback (from the
//! pacer), its timers, query answers, the end of a recording, the caller's BYE — and carries
//! out the engine's commands: prompts go to the pacer's queue, queries to the data layer,
//! recordings to WAV files, records to the [`CallRecorder`], the flow's hang-up to the core
//! (which sends the BYE). It does what the simulator models, with real time and real audio.
//!
//! Transfers: a queue transfer goes to the ACD task ([`crate::acd_task`]), which offers the call
//! to an agent; `transfer to` dials the number itself. Either way the call places a leg
//! through the core ([`CoreMsg::Dial`], with the screen pop as `X-IVR-*` headers) from an RTP
//! port of its own, and once the callee answers relays RTP both ways ([`ivr_media::bridge`])
//! while the pacer stays quiet; when the callee hangs up the flow goes on (`after`).
//!
//! What calls share (the SIP core, the pacer, the ACD task, ...) comes as the [`Services`]
//! handle; what is the call's own as an [`Incoming`].

mod attended;
pub mod checkpoint;
mod consult;
mod pass_on;
mod record_call;
mod rewire;
mod transfer;

use crate::acd_task::{AcdMsg, LeaveReason, QueueEvent};
use crate::agent_hub::{self, BrowserLeg};
use crate::clock::Clock;
use crate::deploy::Deployment;
use crate::screen_pop::ScreenPop;
use crate::services::Services;
pub(crate) use crate::sip_target::resolve;
use crate::sip_task::{CoreMsg, Dial, DialogEvent, LegEvent};
use crate::supervise_taps::{Refused, TapRequest};
use crate::transport::{Peer, Proto, TcpLink};
use ivr_acd::{CallKey, Decline};
use ivr_compiler::program::{Body, Destination, NodeId};
use ivr_data::Database;
use ivr_data::records::CallRecorder;
use ivr_engine::say::{self, Language};
use ivr_engine::speak;
use ivr_engine::{
    Call, CallInfo, Command, Event, Exit, Flow, Machine, Millis, QueryResult, TransferUpdate,
};
use ivr_media::audio::{Audio, FRAME_SAMPLES, G711, Law, Prompt, PromptSource};
use ivr_media::bridge::{self, Side};
use ivr_media::dtmf::EventDetector;
use ivr_media::latch::{Latch, Verdict};
use ivr_media::pacer::{ChannelHandle, ChannelSpec, MediaEvent};
use ivr_media::ports::RtpPort;
use ivr_media::rtp;
use ivr_media::srtp::{Protect, SrtpError, Unprotect};
use ivr_media::supervise::{self, BridgeTap};
use ivr_sip::message::random_u64;
use ivr_sip::sdp::{Negotiated, Sdes};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use transfer::{leg_event, leg_packet};

/// Mean absolute amplitude above which a frame of the caller's audio counts as voice.
const VOICE_LEVEL: u32 = 300;

/// What a call starts with of its own (what it shares with other calls is in [`Services`]).
pub struct Incoming {
    /// Facts of the call.
    pub info: CallInfo,
    /// The flow it runs.
    pub flow: Arc<Flow>,
    /// The deployment it started on (kept until it ends).
    pub deployment: Arc<Deployment>,
    /// Its RTP port.
    pub port: RtpPort,
    /// The media parameters of the answer.
    pub negotiated: Negotiated,
    /// Dialog events from the core.
    pub events: mpsc::UnboundedReceiver<DialogEvent>,
    /// Our To-tag (the dialog's key in the core).
    pub tag: String,
    /// Where the caller's INVITE came from (`transfer to` a bare number goes back there);
    /// none for a browser's call.
    pub peer: Option<Peer>,
    /// Where the call's transcript goes (the phone page's calls), if anywhere.
    pub notes: Option<mpsc::UnboundedSender<Note>>,
    /// On a cluster node: the caller's dialog for the call's checkpoints, and for a call
    /// taken over from a dead node, where it resumes.
    pub cluster: Option<Box<checkpoint::Clustered>>,
}

/// A line of a call's live transcript (the phone page): what the caller hears and does.
/// Masked digits are never in it: a key pressed in a masked input is [`Note::MaskedKey`],
/// and a value spoken from masked digits is left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// The call entered a node.
    Node(String),
    /// A prompt started to be queued: its catalog text (or a spoken value, a queue position).
    Prompt(String),
    /// A key.
    Key(char),
    /// A key of a masked input.
    MaskedKey,
    /// The call ended with this outcome.
    End(&'static str),
}

/// One 20 ms frame of silence, shared by every `pause`.
fn silence() -> &'static Arc<Prompt> {
    static S: OnceLock<Arc<Prompt>> = OnceLock::new();
    S.get_or_init(|| {
        Arc::new(Prompt {
            id: "_silence".into(),
            text: String::new(),
            audio: Arc::new(Audio::from_pcm(&[0; FRAME_SAMPLES])),
            source: PromptSource::Builtin,
        })
    })
}

struct Recording {
    node: NodeId,
    save: String,
    started: Instant,
    max: Duration,
    silence: Option<Duration>,
    last_voice: Instant,
    pcm: Vec<i16>,
}

enum Internal {
    QueryDone {
        id: u32,
        result: QueryResult,
    },
    /// The address of a `transfer to` target was looked up (and, over TCP, connected to);
    /// `Err` holds the status the leg fails with (404 not found, 503 not reachable).
    Resolved {
        target: String,
        peer: Result<(Peer, Option<TcpLink>), u16>,
    },
    /// The trunk of a consultation's (or transfer's) number was looked up.
    ConsultResolved {
        target: String,
        peer: Result<(Peer, Option<TcpLink>), u16>,
    },
    /// The consultation named by an attended transfer's Replaces answered (`attended.rs`).
    Replaced {
        origin: crate::acd_task::PassOrigin,
        result: Box<Result<crate::consultations::TakenLeg, crate::pass_refusal::PassRefusal>>,
    },
}

/// A transfer in progress.
struct Transfer {
    /// The key the ACD knows the call by (queue transfers).
    key: Option<CallKey>,
    /// The agent (queue) or number (`to`) answered: the conversation is on.
    connected: bool,
    /// Passed on by an agent to a queue (the flow's node is done with it: the engine stays
    /// connected while the call waits for the next agent).
    passed: bool,
}

/// A call we placed for a transfer, and the media bridge once it answers.
struct Leg {
    tag: String,
    agent: Option<String>,
    _port: RtpPort,
    remote: Option<SocketAddr>,
    /// Where the callee's RTP may come from (probation, then locked).
    latch: Latch,
    side: Option<Side>,
    /// The conversation is on (for a queue, once the ACD took the answer).
    connected: bool,
    /// Placed on an agent's browser console, not through the core.
    console: bool,
    /// The TCP connection opened for the leg, closed after it ends.
    _link: Option<TcpLink>,
    /// The trunk channel the leg holds (a number), given back when it ends.
    channel: Option<tokio::sync::OwnedSemaphorePermit>,
    /// The leg's SIP dialog once answered (a cluster's checkpoint keeps it).
    dialog: Option<Box<ivr_sip::dialog::Dialog>>,
    /// When the callee answered (local wall-clock milliseconds).
    answered_at: Option<Millis>,
}

/// An SRTP call's contexts (SDES keys): what the caller sends is unprotected before the
/// latch, the keys, the recording and the bridge see it; what the bridge relays from a plain
/// leg is protected for the caller. The pacer holds its own [`Protect`] for the prompts.
struct Srtp {
    keys: Sdes,
    unprotect: Unprotect,
    bridge: Protect,
}

impl Srtp {
    /// The contexts of `keys`, and the pacer's.
    fn new(keys: Sdes) -> Result<(Srtp, Box<Protect>), SrtpError> {
        Ok((
            Srtp {
                keys,
                unprotect: Unprotect::new(&keys)?,
                bridge: Protect::new(&keys)?,
            },
            Box::new(Protect::new(&keys)?),
        ))
    }
}

/// Most nodes kept in the screen pop's path.
const PATH_LEN: usize = 24;

struct Driver {
    call: Call,
    clock: Clock,
    deployment: Arc<Deployment>,
    channel: ChannelHandle,
    recorder: Option<CallRecorder>,
    db: Option<Database>,
    internal: mpsc::UnboundedSender<Internal>,
    out: Vec<Command>,
    pending: VecDeque<Event>,
    law: Law,
    pt: u8,
    event_pt: Option<u8>,
    detector: EventDetector,
    /// Where the caller wants our audio (none: on hold).
    remote: Option<SocketAddr>,
    /// Where the caller's RTP may come from (probation, then locked).
    latch: Latch,
    /// The caller sends no audio (hold): no RTP timeout.
    quiet_hold: bool,
    last_rtp: Instant,
    /// The caller has sent RTP (from then on its absence for `rtp_timeout` ends the call).
    heard_rtp: bool,
    recording: Option<Recording>,
    /// The flow hung up (we send the BYE).
    hangup_by_flow: bool,
    /// What calls share: the core, the ACD task, RTP ports, agents' consoles, ...
    services: Services,
    /// Where the caller's INVITE came from (none: a browser).
    peer: Option<Peer>,
    /// The live transcript.
    notes: Option<mpsc::UnboundedSender<Note>>,
    /// The current node is an input with `mask`: its keys are not shown.
    masked_input: bool,
    /// Keys held by the engine as type-ahead, not yet shown: which node takes them decides
    /// whether they may be (a masked input's keys never are).
    held_keys: VecDeque<char>,
    /// The ACD answers here.
    queue_tx: mpsc::UnboundedSender<QueueEvent>,
    transfer: Option<Transfer>,
    /// SRTP keys of the call (none: plain RTP); see [`Srtp`].
    srtp: Option<Srtp>,
    leg: Option<Leg>,
    leg_events: Option<mpsc::UnboundedReceiver<LegEvent>>,
    leg_sock: Option<tokio::net::UdpSocket>,
    /// The nodes the call went through (the last [`PATH_LEN`]), for the screen pop.
    path: VecDeque<NodeId>,
    /// The screen pop of the transfer in progress.
    last_pop: Option<ScreenPop>,
    /// This call's key in the registry of calls in progress.
    live_key: u64,
    /// An agent's transfer waits for the ACD's answer: who to tell.
    passing: Option<(crate::acd_task::PassOrigin, ScreenPop)>,
    /// The whole-call recording, once started.
    call_rec: Option<record_call::CallRecording>,
    /// The agent's consultation (or transfer to a number) in progress.
    consult: Option<Box<consult::Consult>>,
    /// What the ACD says of the consultation.
    consult_rx: Option<mpsc::UnboundedReceiver<QueueEvent>>,
    /// The consultation target's leg events.
    consult_events: Option<mpsc::UnboundedReceiver<LegEvent>>,
    /// The consultation target's RTP socket.
    consult_sock: Option<tokio::net::UdpSocket>,
    /// A supervisor's tap on the bridge (listen, whisper, barge), while one is on.
    supervisor: Option<BridgeTap>,
    /// Where the call's checkpoints go (a cluster node's SIP calls only).
    checkpoint: Option<checkpoint::Keeper>,
    /// When the call's task started.
    arrived: Millis,
    /// A bridged call taken over from a dead node: its agent's leg is being re-INVITEd, and
    /// the ACD hears [`AcdMsg::Resumed`] (not `Answered`) once it answers.
    resumed_agent: Option<checkpoint::ResumedAgent>,
    /// A bridge taken over sends the caller silence until the caller's RTP arrives.
    priming: bool,
}

impl Driver {
    fn lang(&self, index: u8) -> &str {
        self.call
            .flow()
            .program
            .languages
            .get(index as usize)
            .map_or("zh-CN", String::as_str)
    }

    /// Adds a line to the live transcript, if anyone follows it.
    fn note(&self, note: impl FnOnce() -> Note) {
        if let Some(n) = &self.notes {
            let _ = n.send(note());
        }
    }

    /// Shows a key in the transcript once it is known which node takes it: at once when the
    /// node it was pressed in took it, later when it was held as type-ahead (see
    /// [`held_key_notes`]: only digits a `mask` input may have taken are hidden).
    fn note_keys(&mut self, key: Option<char>, held_before: usize, commands: &[Command]) {
        if self.notes.is_none() {
            return;
        }
        let held = self.call.typeahead_len();
        if let Some(k) = key {
            if held > held_before {
                self.held_keys.push_back(k);
            } else {
                let masked = self.masked_input;
                self.note(|| {
                    if masked {
                        Note::MaskedKey
                    } else {
                        Note::Key(k)
                    }
                });
            }
        }
        if self.held_keys.len() > held {
            let flow = Arc::clone(self.call.flow());
            let taken = self.held_keys.len() - held;
            let keys: Vec<char> = self.held_keys.drain(..taken).collect();
            for note in held_key_notes(&flow.program, self.masked_input, &keys, commands) {
                self.note(|| note);
            }
        }
    }

    fn feed(&mut self, event: Event) {
        self.pending.push_back(event);
        while let Some(ev) = self.pending.pop_front() {
            if self.call.is_ended() {
                self.pending.clear();
                break;
            }
            let now = self.clock.now();
            if let Some(r) = &mut self.recorder {
                r.event(&ev, now);
            }
            let key = match ev {
                Event::Key(k) => Some(k),
                _ => None,
            };
            let held_before = self.call.typeahead_len();
            self.call.handle_input(ev, now);
            self.run_commands(key, held_before, now);
        }
    }

    /// The engine's timers that are due: a collecting node's, a lookup's timeout, a queue's
    /// `max_wait` and announcements.
    fn fire_timers(&mut self) {
        let now = self.clock.now();
        if self.call.is_ended() || self.call.poll_timeout().is_none_or(|at| at > now) {
            return;
        }
        let held_before = self.call.typeahead_len();
        self.call.handle_timeout(now);
        self.run_commands(None, held_before, now);
        self.feed_pending();
    }

    /// Carries out the engine's commands of one input or timeout (`key` is the key that input
    /// was, for the transcript).
    fn run_commands(&mut self, key: Option<char>, held_before: usize, now: Millis) {
        {
            self.out.clear();
            while let Some(c) = self.call.poll_output() {
                self.out.push(c);
            }
            let commands = std::mem::take(&mut self.out);
            self.note_keys(key, held_before, &commands);
            for c in &commands {
                if matches!(c, Command::End { .. }) {
                    // A recording still running ends with the call: its file first.
                    self.finish_recording(false);
                }
                if let Some(r) = &mut self.recorder {
                    r.command(c, now);
                }
                self.apply(c);
            }
            if self.checkpoint.is_some()
                && commands.iter().any(|c| matches!(c, Command::Enter { .. }))
            {
                self.save_checkpoint();
            }
            self.out = commands;
        }
    }

    fn apply(&mut self, c: &Command) {
        match c {
            Command::Enter { node } => {
                if self.path.len() == PATH_LEN {
                    self.path.pop_front();
                }
                self.path.push_back(*node);
                self.services.live_calls.enter(self.live_key, *node);
                let flow = Arc::clone(self.call.flow());
                let n = flow.program.nodes.get(*node as usize);
                self.masked_input = matches!(n.map(|n| &n.body), Some(Body::Input(i)) if i.mask);
                if let Some(n) = n {
                    self.note(|| Note::Node(n.name.clone()));
                }
            }
            Command::Leave { .. } | Command::SaveSurvey { .. } => {}
            Command::Play {
                prompt,
                language,
                seq,
            } => {
                let flow = Arc::clone(self.call.flow());
                let id = flow.program.prompt(*prompt);
                let tag = self.lang(*language);
                let p = self.deployment.prompts.get(tag, id).cloned();
                if p.is_none() {
                    tracing::warn!(prompt = id, language = tag, "prompt without audio");
                }
                if let Some(p) = &p {
                    self.note(|| Note::Prompt(p.text.clone()));
                }
                self.channel.push(p.into_iter().collect(), *seq);
            }
            Command::Say {
                kind,
                value,
                language,
                seq,
                masked,
            } => {
                if !masked {
                    self.note(|| Note::Prompt(value.to_string()));
                }
                let tag = self.lang(*language).to_string();
                let ids = speak::fragments(Language::from_tag(&tag), *kind, value);
                let prompts = self
                    .deployment
                    .prompts
                    .fragments(&tag, &ids)
                    .unwrap_or_else(|missing| {
                        tracing::warn!(fragment = %missing, language = %tag, "spoken value without audio");
                        Vec::new()
                    });
                self.channel.push(prompts, *seq);
            }
            Command::Silence { millis, seq } => {
                let n = millis.div_ceil(ivr_media::audio::FRAME_MS) as usize;
                self.channel.push(vec![Arc::clone(silence()); n], *seq);
            }
            Command::Beep { seq } => {
                let tag = self.call.language().to_string();
                let p = self.deployment.prompts.get(&tag, "_beep").cloned();
                self.channel.push(p.into_iter().collect(), *seq);
            }
            Command::Announce {
                position,
                language,
                seq,
            } => {
                let tag = self.lang(*language).to_string();
                self.note(|| Note::Prompt(format!("#{position}")));
                let ids = say::queue_position(Language::from_tag(&tag), u64::from(*position));
                let prompts = self
                    .deployment
                    .prompts
                    .fragments(&tag, &ids)
                    .unwrap_or_default();
                self.channel.push(prompts, *seq);
            }
            Command::StopPlayback => self.channel.stop(),
            Command::RunQuery { id, node, args, .. } => self.run_query(*id, *node, args),
            Command::Transfer {
                node,
                priority,
                level,
                attach,
            } => self.start_transfer(*node, *priority, *level, attach),
            Command::CancelTransfer => self.end_transfer(LeaveReason::MaxWait),
            Command::KeepCallback { node, queue, phone } => self.keep_callback(*node, queue, phone),
            Command::StartRecording { node } => {
                let flow = Arc::clone(self.call.flow());
                if let Some(Body::Record(r)) =
                    flow.program.nodes.get(*node as usize).map(|n| &n.body)
                {
                    let now = Instant::now();
                    self.recording = Some(Recording {
                        node: *node,
                        save: r.save.clone(),
                        started: now,
                        max: Duration::from_millis(r.max_ms),
                        silence: r.silence_ms.map(Duration::from_millis),
                        last_voice: now,
                        pcm: Vec::new(),
                    });
                }
            }
            Command::StopRecording => self.finish_recording(true),
            Command::Hangup => self.hangup_by_flow = true,
            Command::Served { task } => tracing::debug!(task = %task, "task served"),
            Command::RecordCall => self.start_call_recording(record_call::Why::Flow),
            Command::End { outcome, ended_by } => {
                if let Some(why) = self.call.fault_reason() {
                    tracing::warn!("{why}");
                }
                tracing::info!(
                    outcome = outcome.as_str(),
                    ended_by = ended_by.as_str(),
                    "call ended"
                );
                self.note(|| Note::End(outcome.as_str()));
            }
        }
    }

    fn run_query(&mut self, id: u32, node: NodeId, args: &[ivr_engine::value::Value]) {
        let flow = Arc::clone(self.call.flow());
        let Some(Body::Lookup(l)) = flow.program.nodes.get(node as usize).map(|n| &n.body) else {
            return;
        };
        let tx = self.internal.clone();
        let Some(db) = self.db.clone() else {
            let _ = tx.send(Internal::QueryDone {
                id,
                result: QueryResult::Error("no database".into()),
            });
            return;
        };
        let name = l.query.clone();
        let timeout = Duration::from_millis(l.timeout_ms);
        let args = args.to_vec();
        tokio::spawn(async move {
            let started = Instant::now();
            let result = db.run(&name, &args, Some(timeout)).await;
            let took = started.elapsed().as_micros() as u64;
            let how = match &result {
                QueryResult::Found(_) => "found",
                QueryResult::Missing => "missing",
                QueryResult::Error(_) => "error",
            };
            crate::metrics::registry().observe_lookup(&name, how, took);
            if let QueryResult::Error(e) = &result {
                tracing::warn!(query = %name, error = %e, "lookup failed");
            }
            let _ = tx.send(Internal::QueryDone { id, result });
        });
    }

    /// Ends the recording in progress: its WAV file is written in the background and named in
    /// the call record; `report` feeds the engine `RecordingDone` (not when the call ends).
    fn finish_recording(&mut self, report: bool) {
        let Some(r) = self.recording.take() else {
            return;
        };
        let length_ms = r.started.elapsed().as_millis() as u64;
        let safe: String = self
            .call
            .info()
            .id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .take(80)
            .collect();
        let node = self
            .call
            .flow()
            .program
            .nodes
            .get(r.node as usize)
            .map_or("record", |n| n.name.as_str())
            .replace('.', "_");
        let dir = self.deployment.config.recordings_dir.join(&r.save);
        let path = dir.join(format!("{safe}-{node}-{}.wav", random_u64() % 1_000_000));
        if let Some(rec) = &mut self.recorder {
            rec.set_recording_file(Some(path.display().to_string()));
        }
        // Time without the caller's audio (no packets, or a codec we cannot hear) is silence
        // in the file, so the file is as long as its record says.
        let mut pcm = r.pcm;
        let samples =
            (length_ms as usize).saturating_mul(ivr_media::audio::SAMPLE_RATE as usize) / 1000;
        if pcm.len() < samples {
            pcm.resize(samples, 0);
        }
        tokio::task::spawn_blocking(move || {
            if let Err(e) = std::fs::create_dir_all(&dir) {
                tracing::error!(error = %e, "recording not saved");
            } else if let Err(e) = ivr_media::audio::write_wav(&path, &pcm) {
                tracing::error!(error = %e, "recording not saved");
            }
        });
        if report {
            self.pending.push_back(Event::RecordingDone { length_ms });
        }
    }

    /// The next time something is due: an engine timer, the recording's end, the RTP timeout
    /// (`rtp_timeout` without the caller's RTP, counted from the start for a caller that
    /// never sends any: every call is bounded by it, whatever sent its INVITE).
    fn deadline(&self, rtp_timeout: Duration) -> Instant {
        let mut next = self.last_rtp + rtp_timeout;
        if self.quiet_hold {
            next = Instant::now() + Duration::from_secs(3600);
        }
        if let Some(at) = self.call.poll_timeout() {
            next = next.min(self.clock.instant(at));
        }
        if let Some(r) = &self.recording {
            next = next.min(r.started + r.max);
            if let Some(s) = r.silence {
                next = next.min(r.last_voice + s);
            }
        }
        next
    }

    /// Runs what is due; false when the caller's media timed out.
    fn on_deadline(&mut self, rtp_timeout: Duration) -> bool {
        let now = Instant::now();
        if let Some(r) = &self.recording {
            let silent = r.silence.is_some_and(|s| now >= r.last_voice + s);
            if now >= r.started + r.max || silent {
                self.finish_recording(true);
                self.feed_pending();
            }
        }
        self.fire_timers();
        self.quiet_hold || now < self.last_rtp + rtp_timeout
    }

    fn feed_pending(&mut self) {
        if let Some(ev) = self.pending.pop_front() {
            self.feed(ev);
        }
    }

    /// Whether a packet that came to the caller's port is the caller's (see
    /// [`ivr_media::latch`]): from the address its SDP gave, or from the one it was learned at
    /// after probation, then only from there. Symmetric RTP: once learned, we send there.
    fn admit_rtp(&mut self, data: &[u8], from: SocketAddr) -> bool {
        let Some(p) = rtp::parse(data) else {
            return false;
        };
        match self.latch.check(from, &p.header) {
            Verdict::Accept => true,
            Verdict::Latched(addr) => {
                if self.remote.is_some() && self.remote != Some(addr) {
                    self.remote = Some(addr);
                    self.channel.set_remote(Some(addr));
                }
                true
            }
            Verdict::Drop => false,
        }
    }

    fn on_rtp(&mut self, data: &[u8]) {
        let Some(p) = rtp::parse(data) else {
            return;
        };
        self.last_rtp = Instant::now();
        self.heard_rtp = true;
        self.record_caller(data);
        if Some(p.header.payload_type) == self.event_pt {
            if let Some(k) = self.detector.feed(p.header.timestamp, p.payload) {
                self.feed(Event::Key(k));
            }
            return;
        }
        if p.header.payload_type == self.pt
            && let Some(r) = &mut self.recording
        {
            let mut level: u32 = 0;
            for &b in p.payload {
                let s = self.law.decode(b);
                level += u32::from(s.unsigned_abs());
                r.pcm.push(s);
            }
            if !p.payload.is_empty() && level / p.payload.len() as u32 > VOICE_LEVEL {
                r.last_voice = Instant::now();
            }
        }
    }

    /// The plain RTP of a packet from the caller's port: as it came for a plain call, else
    /// unprotected (`None`: refused, counted in `ivr_srtp_auth_failures_total`).
    fn unprotect<'a>(&mut self, data: &'a [u8], into: &'a mut Vec<u8>) -> Option<&'a [u8]> {
        let Some(s) = &mut self.srtp else {
            return Some(data);
        };
        // RTCP multiplexed on the RTP port (RFC 5761: packet types 192-223) is not media:
        // dropped without counting (no RTCP is read on any call).
        if data.get(1).is_some_and(|b| (192..=223).contains(b)) {
            return None;
        }
        match s.unprotect.unprotect(data) {
            Ok(plain) => {
                into.clear();
                into.extend_from_slice(&plain);
                Some(into.as_slice())
            }
            Err(e) => {
                tracing::trace!(error = %e, "SRTP packet dropped");
                None
            }
        }
    }

    /// New SRTP keys from a re-INVITE (the policy keeps SRTP calls SRTP and our key). Our
    /// sending contexts are kept unless the suite changed (their rollover counters go on); the
    /// receiving one is made anew for a new key of the caller's.
    fn rekey(&mut self, keys: Option<Sdes>) {
        let Some(keys) = keys else {
            return;
        };
        if let Some(s) = &mut self.srtp
            && s.keys.suite == keys.suite
            && s.keys.local == keys.local
        {
            if s.keys.remote != keys.remote {
                match Unprotect::new(&keys) {
                    Ok(u) => s.unprotect = u,
                    Err(e) => tracing::error!(error = %e, "SRTP key of the re-INVITE not usable"),
                }
            }
            s.keys = keys;
            return;
        }
        match Srtp::new(keys) {
            Ok((s, pacer)) => {
                self.srtp = Some(s);
                self.channel.set_srtp(Some(pacer));
            }
            Err(e) => tracing::error!(error = %e, "SRTP keys of the re-INVITE not usable"),
        }
    }

    fn on_media(&mut self, n: Negotiated) {
        self.checkpoint_media(&n);
        self.rekey(n.srtp);
        self.remote = if n.direction.remote_receives() {
            n.remote
        } else {
            None
        };
        self.channel.set_remote(self.remote);
        self.quiet_hold = !n.direction.remote_sends() || n.remote.is_none();
        self.latch.relearn(n.remote);
        self.last_rtp = Instant::now();
        self.event_pt = n.event_pt;
        if (n.law, n.pt) != (self.law, self.pt) {
            // The caller changed codec: prompts (and keys' detector) follow.
            self.law = n.law;
            self.pt = n.pt;
            self.channel.set_codec(n.law, n.pt);
        }
        tracing::info!(
            sending = self.remote.is_some(),
            receiving = !self.quiet_hold,
            "media updated"
        );
    }
}

/// Runs one call until it ends.
/// Runs the call to its end; the flow's outcome (none when it could not start).
pub async fn run(services: Services, incoming: Incoming) -> Option<ivr_engine::Outcome> {
    let Incoming {
        info,
        flow,
        deployment,
        mut port,
        negotiated: n,
        mut events,
        tag,
        peer,
        notes,
        cluster,
    } = incoming;
    let core = services.core.clone();
    // A call taken over resumes at its checkpoint's node; when the flow has it no more, the
    // call ends at once (BYE) and its record as failed.
    let mut cluster = cluster;
    let mut resume = cluster.as_mut().and_then(|c| c.resume.take());
    let resumed_leg = resume.as_mut().and_then(|r| r.leg.take());
    let resumed = match &resume {
        Some(r) => match Call::resume(Arc::clone(&flow), info.clone(), &r.saved) {
            Ok(call) => Some(call),
            Err(e) => {
                tracing::warn!(error = %e, "a call taken over cannot go on: it ends");
                if let Some(w) = services.writer.clone() {
                    let now = Clock::new().now();
                    CallRecorder::continued(
                        w,
                        flow,
                        &info,
                        r.started_at,
                        r.answered_at,
                        r.visit_seq,
                    )
                    .unserved("failed", now);
                }
                if let (Some(c), Some(cl)) = (&services.cluster, &cluster) {
                    c.checkpoints.ended(&cl.sip_call_id);
                }
                if let Some(leg) = resumed_leg {
                    checkpoint::abandon_leg(&services, &leg);
                }
                let _ = core.send(CoreMsg::Ended { tag, bye: true });
                services.running.fetch_sub(1, Ordering::Relaxed);
                return None;
            }
        },
        None => None,
    };
    let rtp_timeout = services.rtp_timeout;
    let db = services.catalogs.for_deployment(&deployment);
    let started = Instant::now();
    let ended_tag = tag.clone();
    let sockets = port.take_socket().and_then(|s| {
        let send = s.try_clone().ok()?;
        s.set_nonblocking(true).ok()?;
        let recv = tokio::net::UdpSocket::from_std(s).ok()?;
        Some((send, recv))
    });
    let Some((send_sock, sock)) = sockets else {
        tracing::error!("no RTP socket");
        let _ = core.send(CoreMsg::Ended {
            tag: ended_tag,
            bye: true,
        });
        services.running.fetch_sub(1, Ordering::Relaxed);
        return None;
    };
    let (srtp, pacer_srtp) = match n.srtp.map(Srtp::new) {
        None => (None, None),
        Some(Ok((s, p))) => (Some(s), Some(p)),
        Some(Err(e)) => {
            tracing::error!(error = %e, "SRTP keys not usable");
            let _ = core.send(CoreMsg::Ended {
                tag: ended_tag,
                bye: true,
            });
            services.running.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
    };
    let (media_tx, mut media_rx) = mpsc::unbounded_channel();
    let remote = if n.direction.remote_receives() {
        n.remote
    } else {
        None
    };
    let channel = services.pacer.add(ChannelSpec {
        socket: send_sock,
        remote,
        law: n.law,
        payload_type: n.pt,
        ssrc: random_u64() as u32,
        seq: random_u64() as u16,
        timestamp: random_u64() as u32,
        events: media_tx,
        srtp: pacer_srtp,
    });
    let clock = Clock::new();
    let arrived = clock.now();
    let mut recorder = services.writer.clone().map(|w| match &resume {
        Some(r) => CallRecorder::continued(
            w,
            Arc::clone(&flow),
            &info,
            r.started_at,
            r.answered_at,
            r.visit_seq,
        ),
        None => CallRecorder::new(w, Arc::clone(&flow), &info, arrived),
    });
    // Checkpoints: a cluster node's SIP calls over plain RTP (an SRTP call's keys are not
    // written to the database: such a call is not taken over).
    let checkpoint = match (&services.cluster, cluster) {
        (Some(c), Some(clustered)) if n.srtp.is_none() => {
            // The call is this node's while its checkpoint says so: its final record too
            // (docs/cluster.md, "Fencing").
            let started = recorder.as_ref().map_or(arrived, |r| r.started_ms());
            let taken = c
                .checkpoints
                .fence
                .register(&clustered.sip_call_id, &info.id, started);
            if let Some(r) = &mut recorder {
                r.set_owner(&clustered.sip_call_id, c.checkpoints.node());
            }
            Some(checkpoint::Keeper {
                writer: c.checkpoints.clone(),
                clustered,
                media: checkpoint::media_facts(&n),
                taken: Some(taken),
            })
        }
        _ => None,
    };
    let (internal_tx, mut internal_rx) = mpsc::unbounded_channel();
    let (queue_tx, mut queue_rx) = mpsc::unbounded_channel();
    tracing::info!(
        caller = %info.caller,
        called = %info.called,
        flow = %flow.program.name,
        codec = ?n.law,
        srtp = n.srtp.is_some(),
        "call answered"
    );
    let live_key = services.live_calls.start(info.channel, &flow);
    services
        .live_calls
        .identify(live_key, &info.id, &info.caller);
    let call = match resumed {
        Some(call) => call,
        None => Call::new(flow, info),
    };
    let mut d = Driver {
        call,
        clock,
        deployment,
        channel,
        recorder,
        db,
        internal: internal_tx,
        out: Vec::with_capacity(16),
        pending: VecDeque::new(),
        law: n.law,
        pt: n.pt,
        event_pt: n.event_pt,
        detector: EventDetector::new(),
        remote,
        latch: Latch::new(n.remote),
        quiet_hold: !n.direction.remote_sends() || n.remote.is_none(),
        last_rtp: Instant::now(),
        heard_rtp: false,
        recording: None,
        hangup_by_flow: false,
        services: services.clone(),
        peer,
        notes,
        masked_input: false,
        held_keys: VecDeque::new(),
        queue_tx,
        transfer: None,
        srtp,
        leg: None,
        leg_events: None,
        leg_sock: None,
        path: VecDeque::with_capacity(PATH_LEN),
        last_pop: None,
        live_key,
        passing: None,
        call_rec: None,
        consult: None,
        consult_rx: None,
        consult_events: None,
        consult_sock: None,
        supervisor: None,
        checkpoint,
        arrived,
        resumed_agent: None,
        priming: false,
    };
    if let Some(leg) = resumed_leg {
        d.adopt_resumed_leg(leg);
    }
    let mut taps = services.taps.register(&d.call.info().id);
    d.start_call_recording(record_call::Why::Answer);
    d.feed(Event::Start);
    let mut buf = [0u8; 1500];
    let mut leg_buf = [0u8; 1500];
    let mut consult_buf = [0u8; 1500];
    let mut out_buf = [0u8; 1500];
    // An SRTP call's packets, unprotected.
    let mut plain_buf: Vec<u8> = Vec::with_capacity(1500);
    // Why the loop ended: the caller hung up (no BYE from us), or we end it (BYE).
    let mut send_bye = true;
    // Another node took the call over (this node was taken for dead): its name.
    let mut taken: Option<String> = None;
    let sleep = tokio::time::sleep_until(d.deadline(rtp_timeout).into());
    tokio::pin!(sleep);
    while !d.call.is_ended() {
        sleep.as_mut().reset(d.deadline(rtp_timeout).into());
        let consult_at = d.consult_deadline();
        tokio::select! {
            owner = checkpoint::taken_by(&mut d.checkpoint) => {
                taken = Some(owner);
                break;
            }
            ev = events.recv() => match ev {
                Some(DialogEvent::Key(k)) => d.feed(Event::Key(k)),
                Some(DialogEvent::Media(n)) => d.on_media(n),
                Some(DialogEvent::Bye) | None => {
                    send_bye = false;
                    d.finish_recording(false);
                    d.feed(Event::Hangup);
                    break;
                }
                Some(DialogEvent::Terminate) => {
                    d.finish_recording(false);
                    d.feed(Event::Terminated { failure: false });
                    break;
                }
            },
            m = media_rx.recv() => {
                if let Some(MediaEvent::PlaybackDone { seq }) = m {
                    if seq == pass_on::HOLD_SEQ {
                        d.play_hold();
                    } else if seq == consult::CONSULT_HOLD_SEQ {
                        d.play_consult_hold();
                    } else if seq == checkpoint::PRIME_SEQ {
                        d.priming = false;
                    } else {
                        d.feed(Event::PlaybackDone { seq });
                    }
                }
            }
            m = internal_rx.recv() => match m {
                Some(Internal::QueryDone { id, result }) => d.feed(Event::QueryDone { id, result }),
                Some(Internal::Resolved { target, peer }) => match peer {
                    Ok((peer, link)) if d.transfer.is_some() => d.dial(&target, peer, None, link),
                    Ok(_) => {}
                    Err(code) => {
                        tracing::warn!(target = %target, code, "cannot reach where to send the call");
                        d.leg_failed(code);
                    }
                },
                Some(Internal::ConsultResolved { target, peer }) => d.consult_resolved(&target, peer),
                Some(Internal::Replaced { origin, result }) => d.on_replaced(origin, *result),
                None => {}
            },
            m = queue_rx.recv() => match m {
                // One thing at a time: no transfer while the agent consults.
                Some(QueueEvent::PassOn { reply, .. }) if d.consult.is_some() => {
                    let busy = crate::consult_request::ConsultRefusal::Busy;
                    let _ = reply.send(Err(pass_on::PassRefusal::Consult(busy)));
                }
                Some(QueueEvent::Consult { by, action, reply }) => {
                    d.on_consult_request(&by, action, reply);
                }
                Some(ev) => d.on_queue_event(ev),
                None => {}
            },
            m = consult::queue_event(&mut d.consult_rx) => match m {
                Some(ev) => d.on_consult_queue(ev),
                None => d.consult_rx = None,
            },
            ev = leg_event(&mut d.consult_events) => d.on_consult_leg(ev),
            r = leg_packet(&d.consult_sock, &mut consult_buf) => {
                if let Ok((len, from)) = r {
                    d.target_to_agent(&consult_buf[..len], from, &mut out_buf);
                }
            }
            () = consult::until(consult_at) => d.consult_timed_out(),
            ev = leg_event(&mut d.leg_events) => match ev {
                Some(LegEvent::Bye) if d.consult.is_some() && d.agent_left_consult() => {
                    tracing::info!("the agent hung up while consulting: the caller goes to the target");
                }
                Some(LegEvent::Refer(r)) if d.consult.is_some() => {
                    tracing::info!(target = %r.user, "REFER while consulting refused");
                    if let Some(tag) = d.leg.as_ref().map(|l| l.tag.clone()) {
                        let _ = d.services.core.send(CoreMsg::ReferDone { tag, code: 491 });
                    }
                }
                Some(ev) => d.on_leg_event(ev),
                // The core forgot the leg without a word: treat it as a failure.
                None => d.leg_failed(500),
            },
            r = taps.requests.recv() => {
                if let Some(r) = r {
                    d.on_tap_request(r);
                }
            }
            r = leg_packet(&d.leg_sock, &mut leg_buf) => {
                if let Ok((len, from)) = r {
                    if d.holding() {
                        d.agent_to_target(&leg_buf[..len], from, &mut out_buf);
                    } else {
                        d.relay_to_caller(&leg_buf[..len], from, &sock, &mut out_buf);
                    }
                }
            }
            r = sock.recv_from(&mut buf) => {
                if let Ok((len, from)) = r
                    && let Some(data) = d.unprotect(&buf[..len], &mut plain_buf)
                    && d.admit_rtp(data, from)
                {
                    if d.holding() {
                        d.caller_holds();
                    } else if d.bridged() {
                        d.relay_to_leg(data, &mut out_buf);
                    } else {
                        d.on_rtp(data);
                    }
                }
            }
            () = &mut sleep => {
                if !d.on_deadline(rtp_timeout) {
                    tracing::info!("no RTP for {} s: ending the call", rtp_timeout.as_secs());
                    d.finish_recording(false);
                    d.feed(Event::Terminated { failure: true });
                    break;
                }
            }
        }
    }
    if taken.is_none() {
        taken = d.still_ours().await;
    }
    match &taken {
        Some(owner) => {
            d.stop_taken(owner);
            send_bye = false;
        }
        None => d.checkpoint_ended(),
    }
    services.taps.unregister(&d.call.info().id, &taps);
    // A consultation, a queue place or a leg still open: give them up.
    d.end_consult();
    if taken.is_some() {
        d.let_go_of_transfer();
    } else {
        d.end_transfer(LeaveReason::Hangup);
    }
    if let Some(r) = &mut d.recorder {
        r.finish(d.clock.now());
    }
    let recorder = d.recorder.take().filter(|_| taken.is_none());
    d.finish_call_recording(recorder.as_ref());
    tracing::debug!(
        seconds = started.elapsed().as_secs_f32(),
        by_flow = d.hangup_by_flow,
        "call over"
    );
    let outcome = d.call.outcome();
    services.live_calls.end(live_key, outcome);
    drop(d);
    drop(port);
    let _ = core.send(CoreMsg::Ended {
        tag: ended_tag,
        bye: send_bye,
    });
    services.running.fetch_sub(1, Ordering::Relaxed);
    outcome
}

/// The transcript notes of `keys`, held as type-ahead and taken by the nodes that `commands`
/// entered (in order). A menu that leaves by a key took that key: it is shown. Any other key
/// was taken by an input (or dropped): it is hidden when the node it was pressed in
/// (`masked_input`) or any input entered here has `mask`. So a key pressed during a welcome
/// and taken by the menu after it shows, even when that menu leads straight into a PIN.
fn held_key_notes(
    program: &ivr_compiler::program::Program,
    masked_input: bool,
    keys: &[char],
    commands: &[Command],
) -> Vec<Note> {
    let masked_entered = masked_input
        || commands.iter().any(|c| {
            matches!(c, Command::Enter { node } if matches!(
                program.nodes.get(*node as usize).map(|n| &n.body),
                Some(Body::Input(i)) if i.mask
            ))
        });
    let mut rest = keys.iter().copied().peekable();
    let mut notes = Vec::with_capacity(keys.len());
    for c in commands {
        let Command::Leave {
            node,
            by: Exit::Key(k),
        } = c
        else {
            continue;
        };
        let is_menu = matches!(
            program.nodes.get(*node as usize).map(|n| &n.body),
            Some(Body::Menu(_))
        );
        if is_menu && rest.peek() == Some(k) {
            rest.next();
            notes.push(Note::Key(*k));
        }
    }
    notes.extend(rest.map(|k| {
        if masked_entered {
            Note::MaskedKey
        } else {
            Note::Key(k)
        }
    }));
    notes
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A menu whose key 3 leads straight into a masked PIN input.
    fn program() -> ivr_compiler::program::Program {
        let dir = std::env::temp_dir().join(format!("ivr-held-keys-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("flows")).expect("flows");
        std::fs::write(dir.join("ivr.toml"), "[paths]\nflows = \"flows\"\n").expect("config");
        std::fs::write(
            dir.join("flows/t.flow"),
            "flow t {\n    language en-US\n    entry hello\n}\n\
             step hello {\n    play hello\n    goto choose\n}\n\
             menu choose {\n    prompt options\n    key 1 -> hello\n    key 3 -> pin\n}\n\
             input pin {\n    prompt enter_pin\n    digits 4\n    mask\n    into pin\n    next bye\n}\n\
             step bye {\n    hangup\n}\n",
        )
        .expect("flow");
        let (checked, name) =
            ivr_compiler::project::compile_flow(Some(&dir.join("ivr.toml")), "t").expect("compile");
        let program = checked.programs.get(&name).cloned().expect("program");
        let _ = std::fs::remove_dir_all(&dir);
        program
    }

    fn node(p: &ivr_compiler::program::Program, name: &str) -> NodeId {
        p.nodes.iter().position(|n| n.name == name).expect("node") as NodeId
    }

    /// Keys pressed during the welcome, taken by the menu on its way into the PIN: the menu's
    /// key shows, the PIN's digits do not.
    #[test]
    fn a_menu_key_shows_and_a_masked_inputs_digits_do_not() {
        let p = program();
        let (choose, pin) = (node(&p, "choose"), node(&p, "pin"));
        let commands = [
            Command::Enter { node: choose },
            Command::Leave {
                node: choose,
                by: Exit::Key('3'),
            },
            Command::Enter { node: pin },
        ];
        let notes = held_key_notes(&p, false, &['3', '4', '7'], &commands);
        assert_eq!(
            notes,
            [Note::Key('3'), Note::MaskedKey, Note::MaskedKey],
            "{notes:?}"
        );
        // Taken by the menu alone (it went back to the welcome): shown.
        let hello = node(&p, "hello");
        let commands = [
            Command::Enter { node: choose },
            Command::Leave {
                node: choose,
                by: Exit::Key('1'),
            },
            Command::Enter { node: hello },
        ];
        assert_eq!(
            held_key_notes(&p, false, &['1'], &commands),
            [Note::Key('1')]
        );
        // In a masked input already: hidden.
        assert_eq!(held_key_notes(&p, true, &['5'], &[]), [Note::MaskedKey]);
    }
}
