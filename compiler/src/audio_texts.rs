//! What each prompt's audio file says: `prompts/<language>/audio.toml`, written by
//! `ivr prompts generate` (and `ivr prompts stamp` for studio recordings), read by `ivr check`
//! to warn about audio that still says an older text.
//!
//! ```toml
//! [welcome]
//! file    = "welcome.wav"            # the audio file, relative to the language folder
//! text    = "sha256:9f2c..."         # of the catalog text the audio was made from
//! audio   = "sha256:41d0..."         # of the audio file as it was written
//! made_by = "espeak-ng en-us"        # or "recorded" (`ivr prompts stamp`)
//! ```
//!
//! A record speaks for its file only while the file is unchanged (`audio`): a file replaced
//! since (a studio recording over a generated one) is no longer described by it.

use indexmap::IndexMap;
use sha2::{Digest, Sha256};
use std::path::Path;

/// The file name, in each language folder beside `prompts.toml`.
pub const FILE_NAME: &str = "audio.toml";

/// What one audio file was made from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AudioText {
    /// The audio file, relative to the language folder.
    pub file: String,
    /// `sha256:<hex>` of the text (see [`text_hash`]).
    pub text: String,
    /// `sha256:<hex>` of the audio file's bytes.
    pub audio: String,
    /// `espeak-ng <voice>` for generated audio, `recorded` for a stamped recording.
    pub made_by: String,
}

impl AudioText {
    /// Whether the audio was generated (and may be generated again without losing a
    /// recording).
    pub fn is_generated(&self) -> bool {
        self.made_by.starts_with("espeak-ng")
    }
}

/// The records of one language folder, by prompt id.
pub type AudioTexts = IndexMap<String, AudioText>;

/// `sha256:<hex>` of a prompt text with its runs of white space made one space and its ends
/// trimmed, so re-wrapping a long text in `prompts.toml` does not count as a change.
pub fn text_hash(text: &str) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    hash_bytes(flat.as_bytes())
}

/// `sha256:<hex>` of bytes.
pub fn hash_bytes(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256:");
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// `sha256:<hex>` of a file's bytes.
pub fn file_hash(path: &Path) -> std::io::Result<String> {
    Ok(hash_bytes(&std::fs::read(path)?))
}

/// Why `audio.toml` cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum AudioTextsError {
    /// The file exists but cannot be read.
    #[error("cannot read {}: {source}", .path.display())]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// It is no `audio.toml`.
    #[error("{}: {message}", .path.display())]
    Parse {
        /// The file.
        path: std::path::PathBuf,
        /// What the TOML reader said.
        message: String,
    },
}

/// Reads `dir/audio.toml`: no file gives no records.
pub fn read(dir: &Path) -> Result<AudioTexts, AudioTextsError> {
    let path = dir.join(FILE_NAME);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(AudioTexts::new()),
        Err(source) => return Err(AudioTextsError::Read { path, source }),
    };
    toml::from_str(&text).map_err(|e| AudioTextsError::Parse {
        message: e.message().trim().to_string(),
        path,
    })
}

/// Writes `dir/audio.toml` with a header saying what it is.
pub fn write(dir: &Path, records: &AudioTexts) -> std::io::Result<()> {
    let mut out = String::from(
        "# What each audio file of this folder says, written by `ivr prompts generate` (and\n\
         # `ivr prompts stamp` for studio recordings). `ivr check` warns when a prompt's text in\n\
         # prompts.toml no longer matches the text its audio was made from. Commit it with the\n\
         # audio; do not edit it by hand.\n",
    );
    let body = toml::to_string(records).map_err(std::io::Error::other)?;
    out.push('\n');
    out.push_str(&body);
    std::fs::write(dir.join(FILE_NAME), out)
}

/// Why a prompt's audio may not say its text any more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaleAudio {
    /// How the audio was made (`espeak-ng en-us`, `recorded`).
    pub made_by: String,
}

/// Whether the audio `file` (relative name `rel`) of a prompt with `text` was made from
/// another text, judged by `record`: only when the record names this file, the file is
/// unchanged since, and the text differs.
pub fn stale(record: &AudioText, rel: &str, file: &Path, text: &str) -> Option<StaleAudio> {
    if record.file != rel || record.text == text_hash(text) {
        return None;
    }
    let now = file_hash(file).ok()?;
    (now == record.audio).then(|| StaleAudio {
        made_by: record.made_by.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_hash_ignores_wrapping() {
        assert_eq!(text_hash("a  b\n c "), text_hash("a b c"));
        assert_ne!(text_hash("a b"), text_hash("a c"));
        assert!(text_hash("x").starts_with("sha256:"));
    }

    #[test]
    fn round_trip_and_staleness() {
        let dir = std::env::temp_dir().join(format!("ivr-audio-texts-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let wav = dir.join("hi.wav");
        std::fs::write(&wav, b"RIFF....WAVE").unwrap();
        let mut records = AudioTexts::new();
        records.insert(
            "hi".into(),
            AudioText {
                file: "hi.wav".into(),
                text: text_hash("Hello"),
                audio: file_hash(&wav).unwrap(),
                made_by: "espeak-ng en-us".into(),
            },
        );
        write(&dir, &records).unwrap();
        let back = read(&dir).unwrap();
        assert_eq!(back, records);
        let r = &back["hi"];
        assert!(stale(r, "hi.wav", &wav, "Hello").is_none());
        assert!(stale(r, "hi.wav", &wav, "Hello again").is_some());
        // Another file, or the file replaced: the record says nothing.
        assert!(stale(r, "other.wav", &wav, "Hello again").is_none());
        std::fs::write(&wav, b"RIFF....WAVE studio").unwrap();
        assert!(stale(r, "hi.wav", &wav, "Hello again").is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
