//! What a caller hears for a prompt id or a spoken value, for review (`ivr prompts render`):
//! the prompts queued on a [`Playback`] exactly as a call queues them, read frame by frame and
//! decoded back to 16-bit samples.

use super::store::{MissingFragment, PromptStore};
use super::{G711, Law, Playback};
use ivr_dsl::ast::SayKind;
use ivr_engine::say::Language;
use ivr_engine::speak;
use ivr_engine::value::Value;
use rust_decimal::Decimal;
use std::str::FromStr;
use std::sync::Arc;

/// One prompt of a rendering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// The prompt id (a fragment id for spoken values).
    pub id: String,
    /// Its text.
    pub text: String,
    /// Its length (ms).
    pub duration_ms: u64,
}

/// A rendering: the samples a caller hears and the prompts they came from.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// 8 kHz 16-bit samples, decoded from the G.711 frames sent on the line.
    pub pcm: Vec<i16>,
    /// The prompts played, in order.
    pub parts: Vec<Part>,
}

impl Rendered {
    /// The length of the rendering (ms).
    pub fn duration_ms(&self) -> u64 {
        self.pcm.len() as u64 * 1000 / u64::from(super::SAMPLE_RATE)
    }
}

/// The value of a spoken value (`money 58.30`) that does not read as its kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpokenError {
    /// `money`
    #[error("`{0}` is not an amount (e.g. `money 58.30`)")]
    Money(String),
    /// `number`
    #[error("`{0}` is not a number (e.g. `number 105`)")]
    Number(String),
    /// `date`
    #[error("`{0}` is not a date (e.g. `date 2026-11-23`)")]
    Date(String),
    /// `time`
    #[error("`{0}` is not a time (e.g. `time 10:30`)")]
    Time(String),
}

/// What cannot be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// A spoken value whose value does not read.
    #[error(transparent)]
    Spoken(#[from] SpokenError),
    /// A spoken value one of whose fragments has no audio.
    #[error("{source} (saying `{what}`)")]
    Fragment {
        /// What was to be said.
        what: String,
        /// The fragment.
        source: MissingFragment,
    },
    /// A prompt id without audio in the language.
    #[error("prompt `{id}` has no audio in {tag}")]
    Prompt {
        /// The prompt id.
        id: String,
        /// The language tag.
        tag: String,
    },
}

/// A spoken value written as `KIND VALUE` (`money 58.30`, `digits 10086`, `number 105`,
/// `date 2026-11-23`, `time 10:30`), or `None` when `what` does not start with a kind.
pub fn parse_spoken(what: &str) -> Option<Result<(SayKind, Value), SpokenError>> {
    let (kind, rest) = what.trim().split_once(char::is_whitespace)?;
    let rest = rest.trim();
    let kind = SayKind::from_keyword(kind)?;
    let value = match kind {
        SayKind::Money => Decimal::from_str(rest)
            .map(Value::Money)
            .map_err(|_| SpokenError::Money(rest.to_string())),
        SayKind::Number => Decimal::from_str(rest)
            .map(Value::Number)
            .map_err(|_| SpokenError::Number(rest.to_string())),
        SayKind::Digits => Ok(Value::Text(rest.to_string())),
        SayKind::Date => chrono::NaiveDate::parse_from_str(rest, "%Y-%m-%d")
            .map(Value::Date)
            .map_err(|_| SpokenError::Date(rest.to_string())),
        SayKind::Time => chrono::NaiveTime::parse_from_str(rest, "%H:%M")
            .or_else(|_| chrono::NaiveTime::parse_from_str(rest, "%H:%M:%S"))
            .map(Value::Time)
            .map_err(|_| SpokenError::Time(rest.to_string())),
    };
    Some(value.map(|v| (kind, v)))
}

/// Renders a prompt id or a spoken value (`money 58.30`) in language `tag`, as sent in `law`.
pub fn render(
    store: &PromptStore,
    tag: &str,
    what: &str,
    law: Law,
) -> Result<Rendered, RenderError> {
    let prompts: Vec<Arc<_>> = match parse_spoken(what) {
        Some(parsed) => {
            let (kind, value) = parsed?;
            let ids = speak::fragments(Language::from_tag(tag), kind, &value);
            store
                .fragments(tag, &ids)
                .map_err(|source| RenderError::Fragment {
                    what: what.to_string(),
                    source,
                })?
        }
        None => {
            let id = what.trim();
            vec![
                store
                    .get(tag, id)
                    .cloned()
                    .ok_or_else(|| RenderError::Prompt {
                        id: id.to_string(),
                        tag: tag.to_string(),
                    })?,
            ]
        }
    };
    let parts = prompts
        .iter()
        .map(|p| Part {
            id: p.id.clone(),
            text: p.text.clone(),
            duration_ms: p.duration_ms(),
        })
        .collect();
    let mut playback = Playback::new(law);
    playback.extend(prompts);
    let mut pcm = Vec::with_capacity(playback.remaining_frames() * super::FRAME_SAMPLES);
    while let Some(frame) = playback.next_frame() {
        pcm.extend(frame.iter().map(|&c| law.decode(c)));
    }
    Ok(Rendered { pcm, parts })
}
