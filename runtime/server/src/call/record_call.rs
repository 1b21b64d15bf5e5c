//! Whole-call recording of a call ([`ivr_media::recorder`]): started at the answer
//! (`[recording] calls = "all"`), at the agent's answer (`"transferred"`) or by a flow's
//! `record call`; the caller's RTP goes to the left channel, the pacer's prompts and the
//! agent's RTP to the right. When the call ends the file is closed and its `recordings` row
//! (kind `call`, agent, queue, SHA-256) written.

use super::Driver;
use ivr_compiler::recording::RecordCalls;
use ivr_data::records::CallRecorder;
use ivr_engine::Millis;
use ivr_media::audio::Law;
use ivr_media::recorder::{Leg, Recording};
use ivr_media::rtp;
use ivr_sip::message::random_u64;

/// The recording of a call in progress.
pub(super) struct CallRecording {
    rec: Recording,
    started: Millis,
    node: String,
    /// The agent who answered (the last one, for a call transferred again).
    agent: Option<String>,
}

/// Why recording starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Why {
    /// The call was answered.
    Answer,
    /// An agent answered.
    AgentAnswer,
    /// The flow's `record call`.
    Flow,
}

impl Driver {
    /// Starts recording the whole call if `why` calls for it under `[recording] calls` (a
    /// flow's `record call` always does); nothing when it is already recorded.
    pub(super) fn start_call_recording(&mut self, why: Why) {
        if self.call_rec.is_some() {
            return;
        }
        let policy = self.deployment.config.recording.calls;
        let wanted = match why {
            Why::Flow => true,
            Why::Answer => policy == RecordCalls::All,
            Why::AgentAnswer => policy != RecordCalls::None,
        };
        if !wanted {
            return;
        }
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
        let now = chrono::Local::now();
        let path = self
            .deployment
            .config
            .recording
            .folder
            .join(now.format("%Y-%m-%d").to_string())
            .join(format!(
                "{}-{safe}-{:06}.wav",
                now.format("%H%M%S"),
                random_u64() % 1_000_000
            ));
        let rec = self.services.recorder.open(path);
        self.channel.set_tap(Some(rec.tap().clone()));
        let node = self
            .path
            .back()
            .and_then(|&n| self.call.flow().program.nodes.get(n as usize))
            .map_or_else(String::new, |n| n.name.clone());
        tracing::info!(file = %rec.path().display(), ?why, "recording the call");
        self.call_rec = Some(CallRecording {
            rec,
            started: self.clock.now(),
            node,
            agent: self.leg.as_ref().and_then(|l| l.agent.clone()),
        });
    }

    /// Notes the agent who answered (for the recording's row).
    pub(super) fn recording_agent(&mut self, agent: Option<String>) {
        if let Some(r) = &mut self.call_rec
            && agent.is_some()
        {
            r.agent = agent;
        }
    }

    /// A packet of the caller's (RTP) for the left channel.
    pub(super) fn record_caller(&self, data: &[u8]) {
        if let Some(r) = &self.call_rec
            && let Some(p) = rtp::parse(data)
            && p.header.payload_type == self.pt
        {
            r.rec.tap().push(Leg::Caller, self.law, p.payload);
        }
    }

    /// A packet of the agent's (RTP in `law` as payload type `pt`) for the right channel.
    pub(super) fn record_agent(&self, data: &[u8], law: Law, pt: u8) {
        if let Some(r) = &self.call_rec
            && let Some(p) = rtp::parse(data)
            && p.header.payload_type == pt
        {
            r.rec.tap().push(Leg::Other, law, p.payload);
        }
    }

    /// Closes the recording at the end of the call; its row is written once the file is
    /// final (in the background).
    pub(super) fn finish_call_recording(&mut self, recorder: Option<&CallRecorder>) {
        let Some(r) = self.call_rec.take() else {
            return;
        };
        self.channel.set_tap(None);
        let row = recorder.map(|c| (c.row_maker(), self.services.writer.clone()));
        let answer = r.rec.finish();
        let (node, started, agent) = (r.node, r.started, r.agent);
        tokio::spawn(async move {
            match answer.await {
                Ok(Ok(done)) => {
                    tracing::info!(
                        file = %done.path.display(),
                        seconds = done.length_ms / 1000,
                        "call recording saved"
                    );
                    if let Some((maker, Some(writer))) = row {
                        writer.send(maker.whole_call(
                            node,
                            done.path.display().to_string(),
                            started,
                            done.length_ms,
                            agent,
                            done.sha256,
                        ));
                    }
                }
                Ok(Err(e)) => tracing::error!(error = %e, "call recording not saved"),
                Err(_) => tracing::error!("call recording not saved: the writer stopped"),
            }
        });
    }
}
