//! Sample-rate conversion with rubato's FFT resampler: a band-limited (anti-aliased)
//! conversion, never plain decimation, so that nothing above the new Nyquist frequency folds
//! back into the speech band.

use rubato::{FftFixedIn, ResampleError as RubatoError, Resampler, ResamplerConstructionError};

/// Input frames handed to the resampler per call.
const CHUNK: usize = 2048;
/// Sub-chunks per chunk: the FFT length is about `CHUNK / SUB_CHUNKS` input frames, which sets
/// the length of the anti-aliasing filter.
const SUB_CHUNKS: usize = 2;

/// Audio that cannot be converted to another sample rate.
#[derive(Debug, thiserror::Error)]
pub enum ResampleError {
    /// A rate of 0 Hz.
    #[error("cannot resample from {from} Hz to {to} Hz")]
    ZeroRate {
        /// The input's rate.
        from: u32,
        /// The wanted rate.
        to: u32,
    },
    /// The resampler cannot be made for these rates.
    #[error("cannot resample from {from} Hz to {to} Hz: {source}")]
    Rates {
        /// The input's rate.
        from: u32,
        /// The wanted rate.
        to: u32,
        /// Why.
        source: ResamplerConstructionError,
    },
    /// The resampler failed on a block.
    #[error("resampling failed: {0}")]
    Failed(#[source] RubatoError),
}

/// How many samples `len` samples at `from` Hz make at `to` Hz (rounded to nearest).
pub fn resampled_len(len: usize, from: u32, to: u32) -> usize {
    if from == 0 {
        return 0;
    }
    let (len, from, to) = (len as u128, u128::from(from), u128::from(to));
    ((len * to + from / 2) / from) as usize
}

/// Converts mono `input` from `from` Hz to `to` Hz. The output has exactly
/// [`resampled_len`] samples, aligned with the input (the filter delay is removed).
pub fn resample(input: &[f32], from: u32, to: u32) -> Result<Vec<f32>, ResampleError> {
    if from == to {
        return Ok(input.to_vec());
    }
    if from == 0 || to == 0 {
        return Err(ResampleError::ZeroRate { from, to });
    }
    let expected = resampled_len(input.len(), from, to);
    let mut r = FftFixedIn::<f32>::new(from as usize, to as usize, CHUNK, SUB_CHUNKS, 1)
        .map_err(|source| ResampleError::Rates { from, to, source })?;
    let delay = r.output_delay();
    let wanted = expected + delay;
    let mut out = Vec::with_capacity(wanted + r.output_frames_max());
    let mut block = vec![vec![0f32; r.output_frames_max()]];
    let mut pos = 0;
    while input.len() - pos >= r.input_frames_next() {
        let n = r.input_frames_next();
        let (_, written) = r
            .process_into_buffer(&[&input[pos..pos + n]], &mut block, None)
            .map_err(ResampleError::Failed)?;
        out.extend_from_slice(&block[0][..written]);
        pos += n;
    }
    // The rest of the input, then silence until the filter has given everything out.
    let mut rest = &input[pos..];
    while out.len() < wanted {
        let (_, written) = if rest.is_empty() {
            r.process_partial_into_buffer(None::<&[&[f32]]>, &mut block, None)
        } else {
            r.process_partial_into_buffer(Some(&[rest]), &mut block, None)
        }
        .map_err(ResampleError::Failed)?;
        rest = &[];
        out.extend_from_slice(&block[0][..written]);
    }
    out.drain(..delay.min(out.len()));
    out.truncate(expected);
    Ok(out)
}
