//! `ivr prompts generate`: synthetic audio (espeak-ng) for the prompts that have none, or whose
//! generated audio says an older text; `ivr prompts stamp`: record what a studio recording
//! says. Both keep `prompts/<language>/audio.toml` (see [`ivr_compiler::audio_texts`]), from
//! which `ivr check` warns about audio that no longer says its prompt's text.

use ivr_compiler::audio_texts::{self, AudioText, AudioTexts};
use ivr_compiler::catalog::{Catalog, Catalogs};
use ivr_dsl::SourceMap;
use ivr_media::audio::resample::resample;
use ivr_media::audio::store::to_i16;
use ivr_media::audio::{SAMPLE_RATE, decode, g711, write_wav};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

/// The program that speaks the texts.
pub const ESPEAK: &str = "espeak-ng";
/// Words a minute (espeak-ng's `-s`): brisk, as the repository's placeholder audio.
const SPEED: &str = "210";
/// Samples below this (of full scale) at the ends are silence and trimmed.
const SILENCE: f32 = 0.005;
/// Kept around the sound when trimming (s).
const PAD_S: f32 = 0.02;
/// The peak after normalising: -3 dBFS.
const PEAK: f32 = 0.708;

/// Why prompt audio could not be generated or stamped.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// espeak-ng is not installed.
    #[error(
        "`{ESPEAK}` is not installed; `ivr prompts generate` speaks the prompt texts with it: install the `espeak-ng` package (apt-get install espeak-ng; brew install espeak-ng), or record the prompts"
    )]
    NoEspeak,
    /// espeak-ng failed on a prompt.
    #[error("{ESPEAK} failed on prompt `{id}` ({language}, voice `{voice}`): {why}{}",
        if .why.contains("voice") { " (choose one of `espeak-ng --voices` with --voice)" } else { "" })]
    Espeak {
        /// The prompt.
        id: String,
        /// Its language.
        language: String,
        /// The voice asked for.
        voice: String,
        /// What espeak-ng said.
        why: String,
    },
    /// Its output could not be read or converted.
    #[error("the audio of prompt `{id}` ({language}) cannot be converted: {why}")]
    Convert {
        /// The prompt.
        id: String,
        /// Its language.
        language: String,
        /// Why.
        why: String,
    },
    /// A file cannot be written.
    #[error("cannot write {}: {why}", .path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// The prompts folder has no catalog (of that language).
    #[error("no prompt catalog{} in {}", .language.as_ref().map(|l| format!(" of `{l}`")).unwrap_or_default(), .dir.display())]
    NoCatalog {
        /// The prompts folder.
        dir: PathBuf,
        /// The language asked for.
        language: Option<String>,
    },
    /// `stamp` names a prompt that is not there or has no audio.
    #[error("prompt `{id}` ({language}): {why}")]
    Stamp {
        /// The prompt.
        id: String,
        /// Its language.
        language: String,
        /// Why.
        why: String,
    },
}

/// What `generate` was asked.
#[derive(Debug, Clone, Default)]
pub struct GenerateOptions {
    /// Only this language.
    pub language: Option<String>,
    /// The espeak-ng voice (default: one per language, [`voice_for`]).
    pub voice: Option<String>,
    /// Generate every `.wav` again, recordings included.
    pub force: bool,
}

/// What `generate` did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Generated {
    /// Files written.
    pub written: usize,
    /// Files kept (recordings, or generated from the current text).
    pub kept: usize,
    /// Entries whose file is no `.wav` and missing: left to the studio.
    pub skipped: usize,
}

/// The espeak-ng voice of a language tag.
pub fn voice_for(tag: &str) -> String {
    match tag {
        "zh-CN" | "zh" => "cmn".into(),
        "en-US" => "en-us".into(),
        "en-GB" => "en-gb".into(),
        other => other.to_ascii_lowercase(),
    }
}

/// The catalogs below `prompts_dir` (and its `_builtin` fragments, rendered as μ-law, when the
/// folder has them: the repository's own), `language` only when given.
fn catalogs(prompts_dir: &Path, language: Option<&str>) -> Vec<(Catalog, bool)> {
    let mut sources = SourceMap::new();
    let (cats, _) = Catalogs::load(prompts_dir, &mut sources);
    let (builtin, _) = Catalogs::load(&prompts_dir.join("_builtin"), &mut sources);
    cats.languages
        .into_values()
        .map(|c| (c, false))
        .chain(builtin.languages.into_values().map(|c| (c, true)))
        .filter(|(c, _)| language.is_none_or(|l| c.language == l))
        .collect()
}

fn relative(catalog: &Catalog, file: &Path) -> String {
    file.strip_prefix(&catalog.dir)
        .unwrap_or(file)
        .to_string_lossy()
        .replace('\\', "/")
}

/// Generates the audio of the catalogs below `prompts_dir`, telling what it writes to `out`.
pub fn generate(
    prompts_dir: &Path,
    options: &GenerateOptions,
    out: &mut dyn Write,
) -> Result<Generated, GenerateError> {
    let catalogs = catalogs(prompts_dir, options.language.as_deref());
    if catalogs.is_empty() {
        return Err(GenerateError::NoCatalog {
            dir: prompts_dir.to_path_buf(),
            language: options.language.clone(),
        });
    }
    let mut done = Generated::default();
    for (catalog, builtin) in &catalogs {
        let voice = options
            .voice
            .clone()
            .unwrap_or_else(|| voice_for(&catalog.language));
        let old = audio_texts::read(&catalog.dir).unwrap_or_default();
        let mut records = AudioTexts::new();
        for (id, entry) in &catalog.entries {
            let rel = relative(catalog, &entry.file);
            let record = old.get(id).filter(|r| r.file == rel);
            let is_wav = rel.to_ascii_lowercase().ends_with(".wav");
            let current_hash = entry
                .has_audio
                .then(|| audio_texts::file_hash(&entry.file).ok())
                .flatten();
            // A record still describes the file when the file is unchanged since.
            let record = record.filter(|r| current_hash.as_deref() == Some(r.audio.as_str()));
            let stale_generated = record
                .is_some_and(|r| r.is_generated() && r.text != audio_texts::text_hash(&entry.text));
            let make = is_wav && (options.force || !entry.has_audio || stale_generated);
            if !make {
                if !entry.has_audio && !is_wav {
                    let _ = writeln!(
                        out,
                        "  {}/{rel}: not a .wav, left to the studio",
                        catalog.language
                    );
                    done.skipped += 1;
                } else {
                    done.kept += 1;
                }
                if let Some(r) = record {
                    records.insert(id.clone(), r.clone());
                }
                continue;
            }
            let pcm = speak(&entry.text, &voice).map_err(|e| match e {
                Speak::Missing => GenerateError::NoEspeak,
                Speak::Failed(why) => GenerateError::Espeak {
                    id: id.clone(),
                    language: catalog.language.clone(),
                    voice: voice.clone(),
                    why,
                },
                Speak::Convert(why) => GenerateError::Convert {
                    id: id.clone(),
                    language: catalog.language.clone(),
                    why,
                },
            })?;
            let fail = |why: String| GenerateError::Write {
                path: entry.file.clone(),
                why,
            };
            if let Some(parent) = entry.file.parent() {
                std::fs::create_dir_all(parent).map_err(|e| fail(e.to_string()))?;
            }
            if *builtin {
                write_ulaw_wav(&entry.file, &pcm).map_err(|e| fail(e.to_string()))?;
            } else {
                write_wav(&entry.file, &pcm).map_err(|e| fail(e.to_string()))?;
            }
            let audio = audio_texts::file_hash(&entry.file).map_err(|e| fail(e.to_string()))?;
            records.insert(
                id.clone(),
                AudioText {
                    file: rel.clone(),
                    text: audio_texts::text_hash(&entry.text),
                    audio,
                    made_by: format!("{ESPEAK} {voice}"),
                },
            );
            let why = if stale_generated && !options.force {
                " (its text changed)"
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "  {}{}/{rel}{why}",
                if *builtin { "_builtin/" } else { "" },
                catalog.language
            );
            done.written += 1;
        }
        if records != old {
            audio_texts::write(&catalog.dir, &records).map_err(|e| GenerateError::Write {
                path: catalog.dir.join(audio_texts::FILE_NAME),
                why: e.to_string(),
            })?;
        }
    }
    Ok(done)
}

/// Records that the audio of `ids` (every prompt with audio and no record when empty) says
/// its current text: a studio recording, checked from now on like generated audio.
pub fn stamp(
    prompts_dir: &Path,
    language: Option<&str>,
    ids: &[String],
    out: &mut dyn Write,
) -> Result<usize, GenerateError> {
    let catalogs: Vec<Catalog> = catalogs(prompts_dir, language)
        .into_iter()
        .filter(|(_, builtin)| !builtin)
        .map(|(c, _)| c)
        .collect();
    if catalogs.is_empty() {
        return Err(GenerateError::NoCatalog {
            dir: prompts_dir.to_path_buf(),
            language: language.map(String::from),
        });
    }
    for id in ids {
        if !catalogs.iter().any(|c| c.entries.contains_key(id)) {
            return Err(GenerateError::Stamp {
                id: id.clone(),
                language: language.unwrap_or("any").to_string(),
                why: "not in the catalog".into(),
            });
        }
    }
    let mut stamped = 0;
    for catalog in &catalogs {
        let old = audio_texts::read(&catalog.dir).unwrap_or_default();
        let mut records = old.clone();
        for (id, entry) in &catalog.entries {
            let rel = relative(catalog, &entry.file);
            let hash = entry
                .has_audio
                .then(|| audio_texts::file_hash(&entry.file).ok())
                .flatten();
            let wanted = if ids.is_empty() {
                // Audio that no record describes.
                hash.is_some()
                    && old
                        .get(id)
                        .is_none_or(|r| r.file != rel || Some(&r.audio) != hash.as_ref())
            } else {
                ids.contains(id)
            };
            if !wanted {
                continue;
            }
            let Some(audio) = hash else {
                return Err(GenerateError::Stamp {
                    id: id.clone(),
                    language: catalog.language.clone(),
                    why: format!("{} has no audio to stamp", entry.file.display()),
                });
            };
            records.insert(
                id.clone(),
                AudioText {
                    file: rel.clone(),
                    text: audio_texts::text_hash(&entry.text),
                    audio,
                    made_by: "recorded".into(),
                },
            );
            let _ = writeln!(out, "  {}/{rel}: recorded", catalog.language);
            stamped += 1;
        }
        records.retain(|id, _| catalog.entries.contains_key(id));
        if records != old {
            audio_texts::write(&catalog.dir, &records).map_err(|e| GenerateError::Write {
                path: catalog.dir.join(audio_texts::FILE_NAME),
                why: e.to_string(),
            })?;
        }
    }
    Ok(stamped)
}

enum Speak {
    Missing,
    Failed(String),
    Convert(String),
}

/// Speaks `text` with espeak-ng and returns it as 8 kHz mono 16-bit PCM: silence trimmed at
/// the ends, the peak at -3 dBFS.
fn speak(text: &str, voice: &str) -> Result<Vec<i16>, Speak> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let tmp = std::env::temp_dir()
        .join(format!(
            "ivr-speak-{}-{}.wav",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ))
        .to_string_lossy()
        .into_owned();
    let child = Command::new(ESPEAK)
        .args(["-v", voice, "-s", SPEED, "-w", &tmp, "--stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Speak::Missing),
        Err(e) => return Err(Speak::Failed(e.to_string())),
    };
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(flat.as_bytes());
    }
    let output = child
        .wait_with_output()
        .map_err(|e| Speak::Failed(e.to_string()))?;
    let bytes = std::fs::read(&tmp);
    let _ = std::fs::remove_file(&tmp);
    if !output.status.success() {
        let why = String::from_utf8_lossy(&output.stderr).trim().to_string();
        return Err(Speak::Failed(if why.is_empty() {
            format!("exit status {}", output.status)
        } else {
            why
        }));
    }
    let bytes = bytes.map_err(|e| Speak::Convert(e.to_string()))?;
    let decoded =
        decode::decode_bytes(bytes, Some("wav")).map_err(|e| Speak::Convert(e.to_string()))?;
    let trimmed = trim(&decoded.samples, decoded.sample_rate);
    let peak = trimmed.iter().fold(0.0f32, |m, s| m.max(s.abs()));
    if peak <= SILENCE {
        return Err(Speak::Convert("espeak-ng said nothing".into()));
    }
    let gain = PEAK / peak;
    let louder: Vec<f32> = trimmed.iter().map(|s| s * gain).collect();
    let at_8k = resample(&louder, decoded.sample_rate, SAMPLE_RATE)
        .map_err(|e| Speak::Convert(e.to_string()))?;
    Ok(at_8k.into_iter().map(to_i16).collect())
}

/// `samples` without the silence at their ends (keeping [`PAD_S`] around the sound).
fn trim(samples: &[f32], rate: u32) -> &[f32] {
    let pad = (PAD_S * rate as f32) as usize;
    let first = samples.iter().position(|s| s.abs() > SILENCE);
    let last = samples.iter().rposition(|s| s.abs() > SILENCE);
    match (first, last) {
        (Some(f), Some(l)) => &samples[f.saturating_sub(pad)..(l + 1 + pad).min(samples.len())],
        _ => samples,
    }
}

/// Writes 8 kHz mono PCM as a G.711 μ-law WAV file (format 7, with its `fact` chunk): the
/// built-in fragments, half the size of 16-bit.
fn write_ulaw_wav(path: &Path, pcm: &[i16]) -> std::io::Result<()> {
    let n = u32::try_from(pcm.len()).map_err(std::io::Error::other)?;
    let mut b = Vec::with_capacity(58 + pcm.len() + 1);
    let data_len = n + (n & 1);
    b.extend_from_slice(b"RIFF");
    b.extend_from_slice(&(4 + 26 + 12 + 8 + data_len).to_le_bytes());
    b.extend_from_slice(b"WAVEfmt ");
    b.extend_from_slice(&18u32.to_le_bytes());
    b.extend_from_slice(&7u16.to_le_bytes()); // WAVE_FORMAT_MULAW
    b.extend_from_slice(&1u16.to_le_bytes()); // mono
    b.extend_from_slice(&SAMPLE_RATE.to_le_bytes());
    b.extend_from_slice(&SAMPLE_RATE.to_le_bytes()); // bytes a second
    b.extend_from_slice(&1u16.to_le_bytes()); // block align
    b.extend_from_slice(&8u16.to_le_bytes()); // bits a sample
    b.extend_from_slice(&0u16.to_le_bytes()); // no extension
    b.extend_from_slice(b"fact");
    b.extend_from_slice(&4u32.to_le_bytes());
    b.extend_from_slice(&n.to_le_bytes());
    b.extend_from_slice(b"data");
    b.extend_from_slice(&n.to_le_bytes());
    b.extend(pcm.iter().map(|&s| g711::linear_to_ulaw(s)));
    if n & 1 == 1 {
        b.push(0);
    }
    std::fs::write(path, b)
}
