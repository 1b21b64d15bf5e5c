//! A call's playback: a queue of shared prompts read frame by frame. It holds `Arc`s of the
//! store's prompts and hands out references to their frames; no audio is decoded or copied
//! per call.

use super::store::Prompt;
use super::{Frame, Law};
use std::collections::VecDeque;
use std::sync::Arc;

/// The prompts a call is playing or about to play, and where it is in the first one.
#[derive(Debug, Clone)]
pub struct Playback {
    law: Law,
    queue: VecDeque<Arc<Prompt>>,
    /// The next frame of the front prompt.
    frame: usize,
}

impl Playback {
    /// An empty queue for a line that speaks `law`.
    pub fn new(law: Law) -> Playback {
        Playback {
            law,
            queue: VecDeque::new(),
            frame: 0,
        }
    }

    /// Queues a prompt after the others (a reference count, not a copy).
    pub fn push(&mut self, prompt: Arc<Prompt>) {
        self.queue.push_back(prompt);
    }

    /// Queues several prompts (the fragments of a spoken value).
    pub fn extend(&mut self, prompts: impl IntoIterator<Item = Arc<Prompt>>) {
        self.queue.extend(prompts);
    }

    /// The next 20 ms frame to send, or `None` when everything has been played.
    pub fn next_frame(&mut self) -> Option<&Frame> {
        loop {
            let front = self.queue.front()?;
            if self.frame < front.audio.frames(self.law).len() {
                break;
            }
            self.queue.pop_front();
            self.frame = 0;
        }
        let i = self.frame;
        self.frame += 1;
        self.queue
            .front()
            .and_then(|p| p.audio.frames(self.law).get(i))
    }

    /// Speaks `law` from the next frame on (the caller changed codec with a re-INVITE); the
    /// position in the current prompt is kept.
    pub fn set_law(&mut self, law: Law) {
        self.law = law;
    }

    /// Stops at once (barge-in, hang-up).
    pub fn clear(&mut self) {
        self.queue.clear();
        self.frame = 0;
    }

    /// Whether nothing is left to play.
    pub fn is_idle(&self) -> bool {
        self.remaining_frames() == 0
    }

    /// Whether [`Playback::next_frame`] has another frame (cheap: looks at the first prompts
    /// only).
    pub fn has_more(&self) -> bool {
        let mut it = self.queue.iter();
        match it.next() {
            None => false,
            Some(front) => {
                self.frame < front.audio.frames(self.law).len()
                    || it.any(|p| !p.audio.frames(self.law).is_empty())
            }
        }
    }

    /// How many frames are left to send.
    pub fn remaining_frames(&self) -> usize {
        self.queue
            .iter()
            .map(|p| p.audio.frames(self.law).len())
            .sum::<usize>()
            .saturating_sub(self.frame)
    }

    /// The prompt being played, if any.
    pub fn current(&self) -> Option<&Arc<Prompt>> {
        self.queue.front()
    }
}
