//! Prompt audio: any common format in, 8 kHz G.711 frames out, decoded once and shared by
//! every call.
//!
//! - [`decode`]: symphonia decodes WAV, MP3, OGG/Vorbis and FLAC at any rate, mixed to mono.
//! - [`resample`]: rubato converts to 8 kHz with an anti-aliasing filter.
//! - [`g711`]: μ-law and A-law, table-driven, with the ITU-T G.191 reference arithmetic.
//! - [`store`]: the [`PromptStore`], every prompt of every language as 20 ms frames in both
//!   laws, held once behind `Arc`s; reloads reuse the audio of files that did not change.
//! - [`builtin`]: the spoken-value fragments built into the binary, under every catalog.
//! - [`playback`]: a call's playback queue, which hands out references to the shared frames
//!   and never copies audio.

pub mod builtin;
pub mod decode;
pub mod g711;
pub mod playback;
pub mod render;
pub mod resample;
pub mod store;

pub use decode::DecodeError;
pub use g711::{G711, Law};
pub use playback::Playback;
pub use resample::ResampleError;
pub use store::{
    Audio, LoadReport, MissingFragment, Problem, ProblemKind, Prompt, PromptSource, PromptStore,
};

use std::path::{Path, PathBuf};

/// The sample rate of the phone line (Hz).
pub const SAMPLE_RATE: u32 = 8000;
/// Samples (and G.711 bytes) in one 20 ms frame.
pub const FRAME_SAMPLES: usize = 160;
/// The length of one frame (ms).
pub const FRAME_MS: u64 = 20;

/// One 20 ms frame of G.711 audio.
pub type Frame = [u8; FRAME_SAMPLES];

/// Audio that cannot become prompt audio.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    /// It cannot be read or decoded.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// It cannot be converted to 8 kHz.
    #[error(transparent)]
    Resample(#[from] ResampleError),
    /// The decoder panicked on it.
    #[error("the decoder failed on this file")]
    Panicked,
}

/// A WAV file that cannot be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot write {}: {source}", .path.display())]
pub struct WavError {
    /// The file.
    pub path: PathBuf,
    /// Why.
    pub source: hound::Error,
}

/// Decodes audio held in memory and converts it to 8 kHz G.711 frames.
pub fn decode_to_audio<B>(bytes: B, extension: Option<&str>) -> Result<Audio, AudioError>
where
    B: AsRef<[u8]> + Send + Sync + 'static,
{
    let decoded = decode::decode_bytes(bytes, extension)?;
    let samples = resample::resample(&decoded.samples, decoded.sample_rate, SAMPLE_RATE)?;
    Ok(Audio::from_f32(&samples))
}

/// Decodes an audio file and converts it to 8 kHz G.711 frames.
pub fn file_to_audio(path: &Path) -> Result<Audio, AudioError> {
    let bytes = std::fs::read(path).map_err(DecodeError::Read)?;
    decode_to_audio(bytes, path.extension().and_then(|e| e.to_str()))
}

/// Writes 8 kHz mono 16-bit PCM to a WAV file.
pub fn write_wav(path: &Path, pcm: &[i16]) -> Result<(), WavError> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: SAMPLE_RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let fail = |source| WavError {
        path: path.to_path_buf(),
        source,
    };
    let mut w = hound::WavWriter::create(path, spec).map_err(fail)?;
    for &s in pcm {
        w.write_sample(s).map_err(fail)?;
    }
    w.finalize().map_err(fail)
}
