//! The prompt store: every prompt of every language as 8 kHz G.711 frames (μ-law and A-law),
//! decoded once and shared by every call through `Arc`s.
//!
//! Layers, per language: the built-in spoken-value fragments of the language's rules
//! ([`super::builtin`]) under the catalog's entries; a catalog entry with a reserved id
//! (`_yuan`) replaces the built-in fragment. A file that cannot be read is reported by name
//! with the reason and the others still load; a reserved id whose file is bad keeps its
//! built-in audio.
//!
//! Reloading ([`PromptStore::reload`]) reuses the decoded audio of every file whose size and
//! modification time, or else whose content hash, did not change.

use super::{AudioError, DecodeError, FRAME_SAMPLES, Frame, G711, Law, SAMPLE_RATE, builtin, g711};
use indexmap::IndexMap;
use ivr_compiler::catalog::Catalogs;
use ivr_engine::say::Language;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::SystemTime;

/// The audio of one prompt at 8 kHz in 20 ms G.711 frames, both laws; the last frame is
/// padded with silence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audio {
    ulaw: Box<[Frame]>,
    alaw: Box<[Frame]>,
    samples: usize,
}

impl Audio {
    /// Encodes 8 kHz 16-bit samples.
    pub fn from_pcm(pcm: &[i16]) -> Audio {
        let n = pcm.len().div_ceil(FRAME_SAMPLES);
        let mut ulaw = vec![[Law::Ulaw.silence(); FRAME_SAMPLES]; n].into_boxed_slice();
        let mut alaw = vec![[Law::Alaw.silence(); FRAME_SAMPLES]; n].into_boxed_slice();
        for ((chunk, u), a) in pcm
            .chunks(FRAME_SAMPLES)
            .zip(ulaw.iter_mut())
            .zip(alaw.iter_mut())
        {
            for (j, &s) in chunk.iter().enumerate() {
                u[j] = g711::linear_to_ulaw(s);
                a[j] = g711::linear_to_alaw(s);
            }
        }
        Audio {
            ulaw,
            alaw,
            samples: pcm.len(),
        }
    }

    /// Encodes 8 kHz samples in `-1.0..=1.0` (clipped beyond).
    pub fn from_f32(samples: &[f32]) -> Audio {
        let pcm: Vec<i16> = samples.iter().map(|&x| to_i16(x)).collect();
        Audio::from_pcm(&pcm)
    }

    /// The frames in one law.
    pub fn frames(&self, law: Law) -> &[Frame] {
        match law {
            Law::Ulaw => &self.ulaw,
            Law::Alaw => &self.alaw,
        }
    }

    /// The number of 8 kHz samples (without the padding of the last frame).
    pub fn samples(&self) -> usize {
        self.samples
    }

    /// The length in milliseconds (rounded down).
    pub fn duration_ms(&self) -> u64 {
        self.samples as u64 * 1000 / u64::from(SAMPLE_RATE)
    }

    /// What a caller hears: the frames of `law` decoded back to 16-bit samples (without the
    /// padding).
    pub fn decode(&self, law: Law) -> Vec<i16> {
        self.frames(law)
            .iter()
            .flatten()
            .take(self.samples)
            .map(|&c| law.decode(c))
            .collect()
    }

    /// Bytes of audio held (both laws).
    pub fn memory_bytes(&self) -> usize {
        (self.ulaw.len() + self.alaw.len()) * FRAME_SAMPLES
    }
}

/// A sample in `-1.0..=1.0` as 16 bits (clipped; NaN is 0).
pub fn to_i16(x: f32) -> i16 {
    (x * 32768.0).round().clamp(-32768.0, 32767.0) as i16
}

/// Where a prompt's audio came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromptSource {
    /// Built into the binary (a spoken-value fragment).
    Builtin,
    /// A catalog's audio file.
    File(PathBuf),
}

/// One prompt of one language, ready to play.
#[derive(Debug)]
pub struct Prompt {
    /// The prompt id.
    pub id: String,
    /// What it says.
    pub text: String,
    /// Its audio, shared (a reload that finds the file unchanged shares it too).
    pub audio: Arc<Audio>,
    /// Where the audio came from.
    pub source: PromptSource,
}

impl Prompt {
    /// The length in milliseconds.
    pub fn duration_ms(&self) -> u64 {
        self.audio.duration_ms()
    }

    /// The frames in one law.
    pub fn frames(&self, law: Law) -> &[Frame] {
        self.audio.frames(law)
    }
}

/// The prompts of one language.
#[derive(Debug, Clone)]
pub struct LanguagePrompts {
    /// The language tag (the catalog folder's name).
    pub tag: String,
    /// The say rules (and built-in fragments) of the language.
    pub rules: Language,
    /// Every prompt with audio, built-in fragments first, by id.
    pub prompts: IndexMap<String, Arc<Prompt>>,
}

/// Why a catalog entry has no audio in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProblemKind {
    /// The file does not exist.
    Missing,
    /// The file exists but could not be read or decoded.
    Unreadable(String),
}

/// A catalog entry whose audio could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The language tag.
    pub language: String,
    /// The prompt id.
    pub id: String,
    /// The audio file.
    pub path: PathBuf,
    /// What is wrong.
    pub kind: ProblemKind,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let reason = match &self.kind {
            ProblemKind::Missing => "no such file",
            ProblemKind::Unreadable(r) => r,
        };
        write!(
            f,
            "{}: {reason} (prompt `{}`, {})",
            self.path.display(),
            self.id,
            self.language
        )
    }
}

/// A fragment of a spoken value that has no audio in a language.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the fragment `{id}` has no audio in {tag}")]
pub struct MissingFragment {
    /// The fragment id.
    pub id: String,
    /// The language tag.
    pub tag: String,
}

/// What a load or reload did.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    /// Entries without audio, with the reason.
    pub problems: Vec<Problem>,
    /// Distinct audio files decoded.
    pub decoded: usize,
    /// Distinct audio files whose earlier decoding was reused.
    pub reused: usize,
}

/// A decoded file, with what identifies its content.
#[derive(Debug, Clone)]
struct Cached {
    len: u64,
    modified: Option<SystemTime>,
    hash: [u8; 32],
    audio: Arc<Audio>,
}

/// Every prompt of every language, shared by every call.
#[derive(Debug, Clone, Default)]
pub struct PromptStore {
    languages: IndexMap<String, LanguagePrompts>,
    files: HashMap<PathBuf, Cached>,
}

impl PromptStore {
    /// Loads the audio of every catalog entry, under the built-in fragments.
    pub fn load(catalogs: &Catalogs) -> (PromptStore, LoadReport) {
        Self::build(catalogs, None)
    }

    /// Loads again, reusing the decoded audio of every file that did not change since `self`
    /// was loaded (same size and modification time, or else the same content).
    pub fn reload(&self, catalogs: &Catalogs) -> (PromptStore, LoadReport) {
        Self::build(catalogs, Some(self))
    }

    fn build(catalogs: &Catalogs, previous: Option<&PromptStore>) -> (PromptStore, LoadReport) {
        let mut report = LoadReport::default();
        // Every distinct file, with its size and time; missing ones are reported here.
        let mut stamps: IndexMap<PathBuf, (u64, Option<SystemTime>)> = IndexMap::new();
        let mut bad_files: HashMap<PathBuf, ProblemKind> = HashMap::new();
        for catalog in catalogs.languages.values() {
            for entry in catalog.entries.values() {
                if stamps.contains_key(&entry.file) || bad_files.contains_key(&entry.file) {
                    continue;
                }
                match std::fs::metadata(&entry.file) {
                    Ok(meta) if meta.is_file() => {
                        stamps.insert(entry.file.clone(), (meta.len(), meta.modified().ok()));
                    }
                    Ok(_) => {
                        bad_files.insert(
                            entry.file.clone(),
                            ProblemKind::Unreadable("not a file".into()),
                        );
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        bad_files.insert(entry.file.clone(), ProblemKind::Missing);
                    }
                    Err(e) => {
                        bad_files.insert(
                            entry.file.clone(),
                            ProblemKind::Unreadable(format!("cannot read the file: {e}")),
                        );
                    }
                }
            }
        }

        // Reuse what did not change; decode the rest in parallel.
        let mut files: HashMap<PathBuf, Cached> = HashMap::new();
        let mut to_load = Vec::new();
        for (path, &(len, modified)) in &stamps {
            match previous.and_then(|p| p.files.get(path)) {
                Some(c) if c.len == len && c.modified.is_some() && c.modified == modified => {
                    files.insert(path.clone(), c.clone());
                    report.reused += 1;
                }
                _ => to_load.push((path.clone(), len, modified)),
            }
        }
        let loaded = parallel_map(&to_load, |(path, _, _)| {
            let bytes = std::fs::read(path).map_err(DecodeError::Read)?;
            let hash: [u8; 32] = Sha256::digest(&bytes).into();
            if let Some(c) = previous
                .and_then(|p| p.files.get(path))
                .filter(|c| c.hash == hash)
            {
                return Ok((c.audio.clone(), hash, true));
            }
            let ext = path
                .extension()
                .and_then(|e| e.to_str())
                .map(str::to_string);
            // A decoder bug on a hostile file must not take the other prompts down with it.
            let audio =
                std::panic::catch_unwind(move || super::decode_to_audio(bytes, ext.as_deref()))
                    .map_err(|_| AudioError::Panicked)??;
            Ok::<_, AudioError>((Arc::new(audio), hash, false))
        });
        for ((path, len, modified), result) in to_load.into_iter().zip(loaded) {
            let result = match result {
                Some(result) => result.map_err(|e| e.to_string()),
                None => Err("the file could not be loaded".to_string()),
            };
            match result {
                Ok((audio, hash, reused)) => {
                    if reused {
                        report.reused += 1;
                    } else {
                        report.decoded += 1;
                    }
                    files.insert(
                        path,
                        Cached {
                            len,
                            modified,
                            hash,
                            audio,
                        },
                    );
                }
                Err(reason) => {
                    bad_files.insert(path, ProblemKind::Unreadable(reason));
                }
            }
        }

        // Each language: built-in fragments, then the catalog over them.
        let mut languages = IndexMap::new();
        for (tag, catalog) in &catalogs.languages {
            let rules = Language::from_tag(tag);
            let mut prompts: IndexMap<String, Arc<Prompt>> = builtin::builtin_prompts(rules)
                .iter()
                .map(|(id, p)| (id.to_string(), p.clone()))
                .collect();
            let old = previous.and_then(|p| p.languages.get(tag));
            for (id, entry) in &catalog.entries {
                let Some(cached) = files.get(&entry.file) else {
                    let kind = bad_files
                        .get(&entry.file)
                        .cloned()
                        .unwrap_or(ProblemKind::Missing);
                    report.problems.push(Problem {
                        language: tag.clone(),
                        id: id.clone(),
                        path: entry.file.clone(),
                        kind,
                    });
                    continue;
                };
                // The same text over the same audio is the same prompt.
                let same = old.and_then(|l| l.prompts.get(id)).filter(|p| {
                    p.text == entry.text
                        && Arc::ptr_eq(&p.audio, &cached.audio)
                        && p.source == PromptSource::File(entry.file.clone())
                });
                let prompt = match same {
                    Some(p) => p.clone(),
                    None => Arc::new(Prompt {
                        id: id.clone(),
                        text: entry.text.clone(),
                        audio: cached.audio.clone(),
                        source: PromptSource::File(entry.file.clone()),
                    }),
                };
                prompts.insert(id.clone(), prompt);
            }
            languages.insert(
                tag.clone(),
                LanguagePrompts {
                    tag: tag.clone(),
                    rules,
                    prompts,
                },
            );
        }
        (PromptStore { languages, files }, report)
    }

    /// The languages with a catalog, in catalog order.
    pub fn languages(&self) -> impl Iterator<Item = &LanguagePrompts> {
        self.languages.values()
    }

    /// The prompts of one language with a catalog.
    pub fn language(&self, tag: &str) -> Option<&LanguagePrompts> {
        self.languages.get(tag)
    }

    /// A prompt of a language. A language without a catalog still has the built-in fragments
    /// of its rules (en-US for every tag that is not Chinese).
    pub fn get(&self, tag: &str, id: &str) -> Option<&Arc<Prompt>> {
        match self.languages.get(tag) {
            Some(l) => l.prompts.get(id),
            None => builtin::builtin_prompt(Language::from_tag(tag), id),
        }
    }

    /// The prompts of a list of fragment ids (a spoken value), or the first id that has no
    /// audio.
    pub fn fragments(&self, tag: &str, ids: &[&str]) -> Result<Vec<Arc<Prompt>>, MissingFragment> {
        ids.iter()
            .map(|id| {
                self.get(tag, id).cloned().ok_or_else(|| MissingFragment {
                    id: id.to_string(),
                    tag: tag.to_string(),
                })
            })
            .collect()
    }

    /// The audio bytes held, counting shared audio once (built-in fragments included).
    pub fn memory_bytes(&self) -> usize {
        let mut seen = HashSet::new();
        self.languages
            .values()
            .flat_map(|l| l.prompts.values())
            .filter(|p| seen.insert(Arc::as_ptr(&p.audio)))
            .map(|p| p.audio.memory_bytes())
            .sum()
    }

    /// The total length of the distinct audio held (ms), built-in fragments included.
    pub fn total_duration_ms(&self) -> u64 {
        let mut seen = HashSet::new();
        self.languages
            .values()
            .flat_map(|l| l.prompts.values())
            .filter(|p| seen.insert(Arc::as_ptr(&p.audio)))
            .map(|p| p.duration_ms())
            .sum()
    }

    /// The audio file a catalog entry was decoded from, if it was.
    pub fn is_loaded(&self, path: &Path) -> bool {
        self.files.contains_key(path)
    }
}

/// `f` over every item, on as many threads as there are cores (results in item order; `None`
/// only if `f` panicked).
fn parallel_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<Option<R>> {
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(items.len());
    if workers <= 1 {
        return items.iter().map(|item| Some(f(item))).collect();
    }
    let next = AtomicUsize::new(0);
    let mut results: Vec<Option<R>> = std::iter::repeat_with(|| None).take(items.len()).collect();
    let done: Vec<(usize, R)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                s.spawn(|| {
                    let mut out = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(i) else { break };
                        out.push((i, f(item)));
                    }
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    });
    for (i, r) in done {
        results[i] = Some(r);
    }
    results
}

impl ivr_engine::sim::AudioDurations for PromptStore {
    fn duration_ms(&self, language: &str, id: &str) -> Option<u64> {
        self.get(language, id).map(|p| p.duration_ms())
    }
}
