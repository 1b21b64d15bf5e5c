//! Decoding audio files of any common format (WAV, MP3, OGG/Vorbis, FLAC; any sample rate, any
//! number of channels) with symphonia into mono `f32` samples.

use std::io::Cursor;
use std::path::Path;
use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::{CODEC_TYPE_NULL, DecoderOptions};
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::{MediaSourceStream, MediaSourceStreamOptions};
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

/// An audio file that cannot be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The file cannot be read.
    #[error("cannot read the file: {0}")]
    Read(#[source] std::io::Error),
    /// The file is empty.
    #[error("the file is empty (0 bytes)")]
    Empty,
    /// No known container or format.
    #[error("not a readable audio file (WAV, MP3, OGG/Vorbis or FLAC): {0}")]
    Format(#[source] SymError),
    /// The container has no audio track.
    #[error("the file has no audio track")]
    NoTrack,
    /// The track's codec has no decoder here.
    #[error("unsupported audio codec: {0}")]
    Codec(#[source] SymError),
    /// The container breaks before any audio.
    #[error("cannot read the audio: {0}")]
    Container(#[source] SymError),
    /// The decoder failed.
    #[error("cannot decode the audio: {0}")]
    Decode(#[source] SymError),
    /// Every packet was bad: the last one's error.
    #[error("cannot decode the audio: {}", PacketError(.0))]
    Packets(#[source] SymError),
    /// The audio says it has no channels.
    #[error("the audio has no channels")]
    NoChannels,
    /// Nothing came out of the decoder.
    #[error("the file holds no audio samples")]
    NoSamples,
    /// Neither the container nor the decoder gives the sample rate.
    #[error("the file does not say its sample rate")]
    NoSampleRate,
}

/// A bad packet's error in words: a malformed stream's own message, else the I/O error.
struct PacketError<'a>(&'a SymError);

impl std::fmt::Display for PacketError<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            SymError::DecodeError(message) => f.write_str(message),
            other => other.fmt(f),
        }
    }
}

/// Decoded audio, mixed down to one channel.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// Mono samples in `-1.0..=1.0`.
    pub samples: Vec<f32>,
    /// Samples per second of `samples`.
    pub sample_rate: u32,
    /// How many channels the source had before mixing.
    pub channels: usize,
}

impl Decoded {
    /// The length in milliseconds (rounded down).
    pub fn duration_ms(&self) -> u64 {
        if self.sample_rate == 0 {
            return 0;
        }
        self.samples.len() as u64 * 1000 / u64::from(self.sample_rate)
    }
}

/// Decodes a file; the extension is a hint, the content decides.
pub fn decode_file(path: &Path) -> Result<Decoded, DecodeError> {
    let bytes = std::fs::read(path).map_err(DecodeError::Read)?;
    decode_bytes(bytes, path.extension().and_then(|e| e.to_str()))
}

/// Decodes a whole file held in memory (`extension` is a hint such as `"mp3"`).
pub fn decode_bytes<B>(bytes: B, extension: Option<&str>) -> Result<Decoded, DecodeError>
where
    B: AsRef<[u8]> + Send + Sync + 'static,
{
    if bytes.as_ref().is_empty() {
        return Err(DecodeError::Empty);
    }
    let mut hint = Hint::new();
    if let Some(ext) = extension {
        hint.with_extension(ext);
    }
    let mss = MediaSourceStream::new(
        Box::new(Cursor::new(bytes)),
        MediaSourceStreamOptions::default(),
    );
    let format_options = FormatOptions {
        // Trim encoder delay and padding (MP3 LAME headers, Vorbis/FLAC lengths) so that
        // durations are exact.
        enable_gapless: true,
        ..FormatOptions::default()
    };
    let probed = symphonia::default::get_probe()
        .format(&hint, mss, &format_options, &MetadataOptions::default())
        .map_err(DecodeError::Format)?;
    let mut format = probed.format;
    let track = format
        .tracks()
        .iter()
        .find(|t| t.codec_params.codec != CODEC_TYPE_NULL)
        .ok_or(DecodeError::NoTrack)?;
    let track_id = track.id;
    // The exact length when the container states it (gapless MP3, Ogg granule positions).
    let n_frames = track.codec_params.n_frames;
    let mut sample_rate = track.codec_params.sample_rate.unwrap_or(0);
    let mut decoder = symphonia::default::get_codecs()
        .make(&track.codec_params, &DecoderOptions::default())
        .map_err(DecodeError::Codec)?;

    let mut samples = Vec::new();
    let mut channels = 0;
    let mut interleaved: Option<SampleBuffer<f32>> = None;
    let mut decoded_packets = 0usize;
    let mut bad_packets = 0usize;
    let mut last_error = None;
    loop {
        let packet = match format.next_packet() {
            Ok(p) => p,
            Err(SymError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(SymError::ResetRequired) => break,
            Err(e) => {
                // A broken container after good audio (a truncated file) ends the audio there.
                if decoded_packets == 0 {
                    return Err(DecodeError::Container(e));
                }
                break;
            }
        };
        if packet.track_id() != track_id {
            continue;
        }
        let buf = match decoder.decode(&packet) {
            Ok(buf) => buf,
            Err(e @ (SymError::DecodeError(_) | SymError::IoError(_))) => {
                bad_packets += 1;
                last_error = Some(e);
                continue;
            }
            Err(e) => return Err(DecodeError::Decode(e)),
        };
        decoded_packets += 1;
        let spec = *buf.spec();
        if spec.rate > 0 {
            sample_rate = spec.rate;
        }
        let ch = spec.channels.count();
        if ch == 0 {
            return Err(DecodeError::NoChannels);
        }
        channels = channels.max(ch);
        let frames = buf.frames();
        if frames == 0 {
            continue;
        }
        let sb = match &mut interleaved {
            Some(sb) if sb.capacity() >= buf.capacity() * ch => sb,
            slot => slot.insert(SampleBuffer::<f32>::new(buf.capacity() as u64, spec)),
        };
        sb.copy_interleaved_ref(buf);
        mix_into(sb.samples(), ch, &mut samples);
    }
    if decoded_packets == 0
        && bad_packets > 0
        && let Some(e) = last_error
    {
        return Err(DecodeError::Packets(e));
    }
    // Symphonia trims an Ogg/Vorbis stream's end padding only in part: cut to the stated
    // length (the padding is at the end).
    if let Some(n) = n_frames.and_then(|n| usize::try_from(n).ok())
        && n > 0
        && samples.len() > n
    {
        samples.truncate(n);
    }
    if samples.is_empty() {
        return Err(DecodeError::NoSamples);
    }
    if sample_rate == 0 {
        return Err(DecodeError::NoSampleRate);
    }
    Ok(Decoded {
        samples,
        sample_rate,
        channels,
    })
}

/// Appends the mean of each frame of `interleaved` (`channels` samples per frame) to `out`.
fn mix_into(interleaved: &[f32], channels: usize, out: &mut Vec<f32>) {
    if channels == 1 {
        out.extend_from_slice(interleaved);
        return;
    }
    let scale = 1.0 / channels as f32;
    out.extend(
        interleaved
            .chunks_exact(channels)
            .map(|frame| frame.iter().sum::<f32>() * scale),
    );
}
