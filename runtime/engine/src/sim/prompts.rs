//! Prompt texts and durations for simulations: the duration of a prompt's decoded audio (from
//! a store of prompt audio, see [`AudioDurations`], any format) when it has one, else an estimate from its text.

use crate::say::{self, Language};
use ivr_compiler::catalog::Catalogs;
use ivr_compiler::program::{Program, PromptId};
use std::collections::HashMap;
use std::path::Path;

/// Milliseconds per character when a prompt has no audio: Chinese is read at about four
/// characters a second, English at about fifteen.
const MS_PER_CJK_CHAR: u64 = 250;
const MS_PER_LATIN_CHAR: u64 = 65;
const MIN_PROMPT_MS: u64 = 300;

/// The durations of decoded prompt audio, by language tag and prompt id (or spoken-value
/// fragment id): what a simulation needs of a prompt store (the media crate's `PromptStore`
/// is one), so that the simulator does not depend on audio decoding.
pub trait AudioDurations {
    /// The duration in ms of the audio of `id` in `language`, if there is audio for it.
    fn duration_ms(&self, language: &str, id: &str) -> Option<u64>;
}

/// Texts and durations of a program's prompts in each of its languages.
#[derive(Debug, Clone)]
pub struct PromptBook {
    languages: Vec<Language>,
    /// `[language][prompt]` -> (text, duration in ms).
    prompts: Vec<Vec<(String, u64)>>,
    /// `[language]`: spoken-value fragment id -> duration in ms, from a prompt store (empty
    /// when the book was made without one: fragments are then estimated from their text).
    fragments: Vec<HashMap<&'static str, u64>>,
}

impl PromptBook {
    /// Looks up every prompt of `program` in the catalogs (missing ones get their id as text).
    pub fn new(program: &Program, catalogs: &Catalogs) -> PromptBook {
        let mut prompts = Vec::new();
        let mut languages = Vec::new();
        for lang in &program.languages {
            languages.push(Language::from_tag(lang));
            let catalog = catalogs.languages.get(lang);
            let row = program
                .prompts
                .iter()
                .map(|id| match catalog.and_then(|c| c.entries.get(id)) {
                    Some(entry) => {
                        let ms = if entry.has_audio {
                            audio_duration_ms(&entry.file)
                        } else {
                            None
                        };
                        (
                            entry.text.clone(),
                            ms.unwrap_or_else(|| estimate_ms(&entry.text)),
                        )
                    }
                    None => (format!("[{id}]"), estimate_ms(id)),
                })
                .collect();
            prompts.push(row);
        }
        let fragments = vec![HashMap::new(); languages.len()];
        PromptBook {
            languages,
            prompts,
            fragments,
        }
    }

    /// Like [`PromptBook::new`], with the durations of the decoded audio in `store` (prompts
    /// and spoken-value fragments, built-in or replaced by the catalog). A prompt without
    /// audio gets its text's estimate.
    pub fn with_store(
        program: &Program,
        catalogs: &Catalogs,
        store: &dyn AudioDurations,
    ) -> PromptBook {
        let mut languages = Vec::new();
        let mut prompts = Vec::new();
        let mut fragments = Vec::new();
        for tag in &program.languages {
            let rules = Language::from_tag(tag);
            languages.push(rules);
            let catalog = catalogs.languages.get(tag);
            let row = program
                .prompts
                .iter()
                .map(|id| {
                    let text = match catalog.and_then(|c| c.entries.get(id)) {
                        Some(entry) => entry.text.clone(),
                        None => format!("[{id}]"),
                    };
                    let ms = store
                        .duration_ms(tag, id)
                        .unwrap_or_else(|| estimate_ms(&text));
                    (text, ms)
                })
                .collect();
            prompts.push(row);
            fragments.push(
                say::builtin_fragments(rules)
                    .iter()
                    .filter_map(|&(id, _)| store.duration_ms(tag, id).map(|ms| (id, ms)))
                    .collect(),
            );
        }
        PromptBook {
            languages,
            prompts,
            fragments,
        }
    }

    /// How long a spoken value takes in language index `lang`: the sum of its fragments'
    /// audio, or the estimate from their text for fragments without audio.
    pub fn say_ms(&self, lang: u8, ids: &[&str]) -> u64 {
        let rules = self.language(lang);
        match self.fragments.get(lang as usize) {
            Some(known) if !known.is_empty() => ids
                .iter()
                .map(|id| match known.get(id) {
                    Some(ms) => *ms,
                    None => estimate_ms(say::builtin_text(rules, id).unwrap_or(id)),
                })
                .sum::<u64>()
                .max(MIN_PROMPT_MS),
            _ => say_ms(rules, ids),
        }
    }

    /// The say rules of language index `lang`.
    pub fn language(&self, lang: u8) -> Language {
        self.languages
            .get(lang as usize)
            .copied()
            .unwrap_or_default()
    }

    /// Text and duration of a prompt in a language.
    pub fn prompt(&self, lang: u8, id: PromptId) -> (&str, u64) {
        self.prompts
            .get(lang as usize)
            .and_then(|row| row.get(id as usize))
            .map_or(("", MIN_PROMPT_MS), |(t, d)| (t.as_str(), *d))
    }
}

/// How long a text takes to say, estimated from its characters.
pub fn estimate_ms(text: &str) -> u64 {
    let ms: u64 = text
        .chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| {
            if c.is_ascii() {
                MS_PER_LATIN_CHAR
            } else {
                MS_PER_CJK_CHAR
            }
        })
        .sum();
    ms.max(MIN_PROMPT_MS)
}

/// How long a spoken value takes, from the number of its fragments.
pub fn say_ms(lang: Language, ids: &[&str]) -> u64 {
    estimate_ms(&say::text(lang, ids))
}

/// The duration of a WAV file from its header, or `None` when it is not a readable WAV.
pub fn audio_duration_ms(path: &Path) -> Option<u64> {
    let bytes = std::fs::read(path).ok()?;
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return None;
    }
    let mut pos = 12;
    let mut byte_rate = None;
    while pos + 8 <= bytes.len() {
        let id = &bytes[pos..pos + 4];
        let size = u32::from_le_bytes(bytes[pos + 4..pos + 8].try_into().ok()?) as usize;
        let body = pos + 8;
        if id == b"fmt " && body + 12 <= bytes.len() {
            byte_rate = Some(u32::from_le_bytes(
                bytes[body + 8..body + 12].try_into().ok()?,
            ));
        } else if id == b"data" {
            let rate = u64::from(byte_rate.filter(|r| *r > 0)?);
            let len = size.min(bytes.len().saturating_sub(body)) as u64;
            return Some(len * 1000 / rate);
        }
        pos = body.checked_add(size + (size & 1))?;
    }
    None
}
