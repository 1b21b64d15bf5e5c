//! Prompt catalogs: `prompts/<language>/prompts.toml`, one per language, mapping prompt ids to
//! their text and audio file.

use indexmap::IndexMap;
use ivr_dsl::{Diagnostic, FileId, SourceMap, Span};
use std::path::{Path, PathBuf};
use toml::Spanned;

/// The languages whose spoken-value fragments (`say`) the `ivr` program has built in.
pub const BUILT_IN_LANGUAGES: [&str; 2] = ["zh-CN", "en-US"];

const ENTRY_HINT: &str =
    "each line is `id = { text = \"...\" }` or `id = { text = \"...\", file = \"x.wav\" }`";

/// One prompt of a catalog.
#[derive(Debug, Clone)]
pub struct PromptEntry {
    /// What the prompt says (shown by simulations and transcripts).
    pub text: String,
    /// The audio file (the `file` key, else `<id>.wav`), relative paths resolved.
    pub file: PathBuf,
    /// Whether the audio file exists.
    pub has_audio: bool,
    /// Why the existing file is no audio `ivr` can play (its first bytes are no WAV, FLAC,
    /// Ogg or MP3), if so.
    pub not_audio: Option<String>,
    /// Where the entry is written in `prompts.toml`.
    pub span: Span,
    /// Set when `audio.toml` says the (unchanged) audio file was made from another text:
    /// callers hear older words than the catalog shows.
    pub stale_audio: Option<crate::audio_texts::StaleAudio>,
}

/// The prompts of one language.
#[derive(Debug, Clone)]
pub struct Catalog {
    /// The language tag (the folder name), e.g. `zh-CN`.
    pub language: String,
    /// The folder.
    pub dir: PathBuf,
    /// The `prompts.toml` in the run's source map.
    pub file: FileId,
    /// Prompts by id, in file order.
    pub entries: IndexMap<String, PromptEntry>,
}

/// Every language's catalog.
#[derive(Debug, Clone, Default)]
pub struct Catalogs {
    /// Catalogs by language tag.
    pub languages: IndexMap<String, Catalog>,
}

impl Catalogs {
    /// Reads every `<language>/prompts.toml` below `dir`. A missing folder gives no catalogs;
    /// broken files are reported and the rest still load.
    pub fn load(dir: &Path, sources: &mut SourceMap) -> (Catalogs, Vec<Diagnostic>) {
        let mut catalogs = Catalogs::default();
        let mut diags = Vec::new();
        let Ok(entries) = std::fs::read_dir(dir) else {
            return (catalogs, diags);
        };
        let mut langs: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.join("prompts.toml").is_file())
            .collect();
        langs.sort();
        for lang_dir in langs {
            let Some(language) = lang_dir
                .file_name()
                .and_then(|n| n.to_str())
                .map(String::from)
            else {
                continue;
            };
            let path = lang_dir.join("prompts.toml");
            let text = match std::fs::read_to_string(&path) {
                Ok(t) => t,
                Err(e) => {
                    let file = sources.add(&path, "");
                    diags.push(Diagnostic::error(
                        "catalog",
                        file,
                        Span::default(),
                        format!("cannot read {}: {e}", path.display()),
                    ));
                    continue;
                }
            };
            let file = sources.add(&path, text.clone());
            let (mut catalog, d) = Catalog::parse(file, &language, &lang_dir, &text);
            diags.extend(d);
            if let Err(why) = catalog.mark_stale_audio() {
                diags.push(
                    Diagnostic::warning("audio-texts", file, Span::default(), why.to_string())
                        .with_hint(
                        "run `ivr prompts generate` to write it again (it records what each generated file says)",
                    ),
                );
            }
            catalogs.languages.insert(language, catalog);
        }
        (catalogs, diags)
    }
}

impl Catalog {
    /// Parses the text of one `prompts.toml` in folder `dir`.
    pub fn parse(
        file: FileId,
        language: &str,
        dir: &Path,
        text: &str,
    ) -> (Catalog, Vec<Diagnostic>) {
        let mut catalog = Catalog {
            language: language.to_string(),
            dir: dir.to_path_buf(),
            file,
            entries: IndexMap::new(),
        };
        // Entries are read one by one, so that one broken entry does not hide the others.
        let raw: IndexMap<String, Spanned<toml::Value>> = match toml::from_str(text) {
            Ok(r) => r,
            Err(e) => {
                let span = e
                    .span()
                    .map(|r| Span::new(r.start, r.end))
                    .unwrap_or_default();
                let d = Diagnostic::error("catalog", file, span, e.message().trim().to_string())
                    .with_hint(ENTRY_HINT);
                return (catalog, vec![d]);
            }
        };
        let mut diags = Vec::new();
        for (id, entry) in raw {
            let r = entry.span();
            let span = Span::new(r.start, r.end);
            let (text, audio) = match entry.into_inner() {
                // `id = "text"` is short for `id = { text = "text" }`.
                toml::Value::String(t) => (t, None),
                toml::Value::Table(t) => {
                    let mut bad = None;
                    for key in t.keys() {
                        if key != "text" && key != "file" {
                            bad = Some(format!("prompt `{id}` has an unknown key `{key}`"));
                        }
                    }
                    let text = match t.get("text") {
                        Some(toml::Value::String(s)) => Some(s.clone()),
                        _ => None,
                    };
                    let audio = match t.get("file") {
                        Some(toml::Value::String(s)) => Some(s.clone()),
                        None => None,
                        Some(_) => {
                            bad = Some(format!("the `file` of prompt `{id}` must be a string"));
                            None
                        }
                    };
                    let text = match (text, bad) {
                        (Some(text), None) => text,
                        (None, None) => {
                            diags.push(
                                Diagnostic::error(
                                    "catalog",
                                    file,
                                    span,
                                    format!("prompt `{id}` has no `text`"),
                                )
                                .with_hint(ENTRY_HINT),
                            );
                            continue;
                        }
                        (_, Some(msg)) => {
                            diags.push(
                                Diagnostic::error("catalog", file, span, msg).with_hint(ENTRY_HINT),
                            );
                            continue;
                        }
                    };
                    (text, audio)
                }
                _ => {
                    diags.push(
                        Diagnostic::error(
                            "catalog",
                            file,
                            span,
                            format!("prompt `{id}` is not a text or a table"),
                        )
                        .with_hint(ENTRY_HINT),
                    );
                    continue;
                }
            };
            let file_path = dir.join(audio.unwrap_or_else(|| format!("{id}.wav")));
            let has_audio = file_path.is_file();
            let not_audio = if has_audio {
                sniff_audio(&file_path)
            } else {
                None
            };
            catalog.entries.insert(
                id,
                PromptEntry {
                    text,
                    file: file_path,
                    has_audio,
                    not_audio,
                    span,
                    stale_audio: None,
                },
            );
        }
        (catalog, diags)
    }
}

impl Catalog {
    /// Reads the folder's `audio.toml` and marks the entries whose audio was made from
    /// another text than theirs. Fails (marking nothing) when the file cannot be read.
    pub fn mark_stale_audio(&mut self) -> Result<(), crate::audio_texts::AudioTextsError> {
        let records = crate::audio_texts::read(&self.dir)?;
        for (id, entry) in &mut self.entries {
            let (Some(record), true) = (records.get(id), entry.has_audio) else {
                continue;
            };
            let Ok(rel) = entry.file.strip_prefix(&self.dir) else {
                continue;
            };
            let rel = rel.to_string_lossy().replace('\\', "/");
            entry.stale_audio = crate::audio_texts::stale(record, &rel, &entry.file, &entry.text);
        }
        Ok(())
    }
}

/// Why `path` is no audio file `ivr` can decode, judged by its first bytes (a full decode is
/// `ivr prompts`' and `ivr serve`'s job): `None` when it looks like WAV, FLAC, Ogg or MP3.
fn sniff_audio(path: &Path) -> Option<String> {
    use std::io::Read;
    let mut head = [0u8; 12];
    let n = match std::fs::File::open(path).and_then(|mut f| f.read(&mut head)) {
        Ok(n) => n,
        Err(e) => return Some(format!("cannot be read: {e}")),
    };
    let head = &head[..n];
    let size = std::fs::metadata(path).map_or(0, |m| m.len());
    if head.starts_with(b"RIFF") && head.get(8..12) == Some(b"WAVE") {
        // A RIFF header and its format chunk take 44 bytes before any sound.
        return (size < 44).then(|| format!("is a WAV file of {size} bytes, without sound"));
    }
    let known = head.starts_with(b"fLaC")
        || head.starts_with(b"OggS")
        || head.starts_with(b"ID3")
        || (head.len() >= 2 && head[0] == 0xFF && head[1] & 0xE0 == 0xE0);
    if known {
        None
    } else if size == 0 {
        Some("is empty".into())
    } else {
        Some("is not a WAV, FLAC, Ogg or MP3 file".into())
    }
}
