//! `[recording]` of `ivr.toml`: which calls are recorded whole (stereo WAV: the caller left,
//! the IVR or the agent right), where the files go and how long they are kept.

use ivr_dsl::{Diagnostic, FileId, Span};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use toml::Spanned;

/// Which calls are recorded whole without a `record call` action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordCalls {
    /// None (only where a flow's `record call` asks).
    None,
    /// Calls an agent answered, from the agent's answer to the end.
    Transferred,
    /// Every call, from the answer to the end.
    All,
}

impl RecordCalls {
    /// The name as `ivr.toml` writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordCalls::None => "none",
            RecordCalls::Transferred => "transferred",
            RecordCalls::All => "all",
        }
    }
}

/// The validated `[recording]` table.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecordingConfig {
    /// Which calls are recorded whole.
    pub calls: RecordCalls,
    /// Where the WAV files go (one folder a day below it).
    pub folder: PathBuf,
    /// Days a call recording (file and row) is kept; older ones are deleted hourly.
    pub keep_days: u32,
}

/// Most days `keep` may say (ten years).
pub const KEEP_DAYS_MAX: u32 = 3660;

impl RecordingConfig {
    /// The defaults: nothing recorded unless a flow asks, `recordings/calls`, kept 90 days.
    pub fn defaults(base: &Path) -> RecordingConfig {
        RecordingConfig {
            calls: RecordCalls::None,
            folder: base.join("recordings/calls"),
            keep_days: 90,
        }
    }
}

/// The keys `[recording]` takes, for "did you mean" on unknown keys.
pub(crate) const RECORDING_KEYS: &[&str] = &["calls", "folder", "keep"];

/// `[recording]` as written.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawRecording {
    calls: Option<Spanned<String>>,
    folder: Option<Spanned<String>>,
    keep: Option<Spanned<String>>,
}

fn span_of<T>(s: &Spanned<T>) -> Span {
    let r = s.span();
    Span::new(r.start, r.end)
}

/// Parses `90d` (days) into days.
pub fn parse_keep(text: &str) -> Option<u32> {
    let days: u32 = text.trim().strip_suffix('d')?.parse().ok()?;
    (1..=KEEP_DAYS_MAX).contains(&days).then_some(days)
}

/// Validates `[recording]`; mistakes are errors at their value.
pub(crate) fn validate(
    file: FileId,
    base: &Path,
    raw: RawRecording,
    diags: &mut Vec<Diagnostic>,
) -> RecordingConfig {
    let mut out = RecordingConfig::defaults(base);
    if let Some(calls) = raw.calls {
        match calls.get_ref().as_str() {
            "none" => out.calls = RecordCalls::None,
            "transferred" => out.calls = RecordCalls::Transferred,
            "all" => out.calls = RecordCalls::All,
            other => diags.push(
                Diagnostic::error(
                    "config",
                    file,
                    span_of(&calls),
                    format!("`calls = \"{other}\"` is not a recording policy"),
                )
                .with_hint(
                    "`calls = \"none\"` (only where a flow says `record call`), \"transferred\" \
                     (from the agent's answer) or \"all\" (from the answer)",
                ),
            ),
        }
    }
    if let Some(folder) = raw.folder {
        if folder.get_ref().trim().is_empty() {
            diags.push(
                Diagnostic::error("config", file, span_of(&folder), "`folder` is empty")
                    .with_hint("e.g. `folder = \"recordings/calls\"` (relative to ivr.toml)"),
            );
        } else {
            out.folder = base.join(folder.get_ref());
        }
    }
    if let Some(keep) = raw.keep {
        match parse_keep(keep.get_ref()) {
            Some(days) => out.keep_days = days,
            None => diags.push(
                Diagnostic::error(
                    "config",
                    file,
                    span_of(&keep),
                    format!("`keep = \"{}\"` is not a number of days", keep.get_ref()),
                )
                .with_hint(format!(
                    "days from 1 to {KEEP_DAYS_MAX}, e.g. `keep = \"90d\"` (seeds require at \
                     least three months for top-ups and password changes)"
                )),
            ),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_is_days() {
        assert_eq!(parse_keep("90d"), Some(90));
        assert_eq!(parse_keep("0d"), None);
        assert_eq!(parse_keep("90"), None);
        assert_eq!(parse_keep("99999d"), None);
    }
}
