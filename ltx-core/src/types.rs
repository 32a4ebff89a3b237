//! Port of `ltx_core/types.py`: pixel and latent shapes, decoded audio and the latent state the
//! denoising loop carries.

use candle_core::{DType, Tensor};

use crate::error::{bad_shape, Error, Result};

/// Shape of a decoded video: `[batch, 3, frames, height, width]` at `fps` frames per second.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct VideoPixelShape {
    pub batch: usize,
    pub frames: usize,
    pub height: usize,
    pub width: usize,
    pub fps: f64,
}

impl VideoPixelShape {
    /// `(height, width)` in pixels.
    pub fn size(&self) -> (usize, usize) {
        (self.height, self.width)
    }

    /// Checks that the video maps onto a whole latent grid: `frames = 8k + 1`, height and width
    /// multiples of 32 (for the default scale factors), a positive batch and frame rate.
    pub fn validate(&self, scale: SpatioTemporalScaleFactors) -> Result<()> {
        if self.batch == 0 {
            return Err(Error::InvalidVideoSize(
                "batch size must be at least 1".into(),
            ));
        }
        if self.frames == 0 || (self.frames - 1) % scale.time != 0 {
            return Err(Error::InvalidVideoSize(format!(
                "frame count {} is not {}k+1 (e.g. {} or {})",
                self.frames,
                scale.time,
                self.frames.saturating_sub(1) / scale.time * scale.time + 1,
                (self.frames.saturating_sub(1) / scale.time + 1) * scale.time + 1,
            )));
        }
        for (name, value, factor) in [
            ("height", self.height, scale.height),
            ("width", self.width, scale.width),
        ] {
            if value == 0 || value % factor != 0 {
                return Err(Error::InvalidVideoSize(format!(
                    "{name} {value} is not a positive multiple of {factor}"
                )));
            }
        }
        if !(self.fps.is_finite() && self.fps > 0.0) {
            return Err(Error::InvalidVideoSize(format!(
                "frame rate {} must be a positive number",
                self.fps
            )));
        }
        Ok(())
    }
}

/// Down-scaling between decoded video and the VAE latent grid (`time`, `width`, `height`, in the
/// reference's tuple order).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpatioTemporalScaleFactors {
    pub time: usize,
    pub width: usize,
    pub height: usize,
}

impl Default for SpatioTemporalScaleFactors {
    fn default() -> Self {
        Self {
            time: 8,
            width: 32,
            height: 32,
        }
    }
}

impl SpatioTemporalScaleFactors {
    /// The factors in the order the reference indexes them: `[time, width, height]`.
    pub fn as_array(&self) -> [usize; 3] {
        [self.time, self.width, self.height]
    }
}

/// Shape of a video latent `[batch, channels, frames, height, width]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VideoLatentShape {
    pub batch: usize,
    pub channels: usize,
    pub frames: usize,
    pub height: usize,
    pub width: usize,
}

impl VideoLatentShape {
    pub fn dims(&self) -> [usize; 5] {
        [
            self.batch,
            self.channels,
            self.frames,
            self.height,
            self.width,
        ]
    }

    /// From a 5-D tensor shape.
    pub fn from_dims(dims: &[usize]) -> Result<Self> {
        match *dims {
            [batch, channels, frames, height, width] => Ok(Self {
                batch,
                channels,
                frames,
                height,
                width,
            }),
            _ => Err(bad_shape(
                "video latent",
                dims,
                "[batch, channels, frames, height, width]",
            )),
        }
    }

    /// Tokens after patchification with patch size 1.
    pub fn token_count(&self) -> usize {
        self.frames * self.height * self.width
    }

    /// The shape of a per-token mask: one channel.
    pub fn mask_shape(&self) -> Self {
        Self {
            channels: 1,
            ..*self
        }
    }

    /// The latent grid of a pixel-space video: `(F − 1) / 8 + 1` frames, `H / 32 × W / 32`.
    pub fn from_pixel_shape(
        shape: &VideoPixelShape,
        latent_channels: usize,
        scale: SpatioTemporalScaleFactors,
    ) -> Self {
        // The reference indexes the factors as a tuple (time, width, height) and divides the
        // height by index 1 (the width factor) and the width by index 2; the released factors
        // are square, so the two readings agree.
        let [t, s1, s2] = scale.as_array();
        Self {
            batch: shape.batch,
            channels: latent_channels,
            frames: (shape.frames.saturating_sub(1)) / t + 1,
            height: shape.height / s1,
            width: shape.width / s2,
        }
    }

    /// The pixel-space shape (3 channels) this latent decodes to.
    pub fn upscale(&self, scale: SpatioTemporalScaleFactors) -> Self {
        Self {
            channels: 3,
            frames: (self.frames.saturating_sub(1)) * scale.time + 1,
            height: self.height * scale.height,
            width: self.width * scale.width,
            ..*self
        }
    }
}

/// Audio settings the audio latent grid is derived from (the reference's keyword defaults).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AudioLatentParams {
    pub channels: usize,
    pub mel_bins: usize,
    pub sample_rate: usize,
    pub hop_length: usize,
    pub latent_downsample_factor: usize,
}

impl Default for AudioLatentParams {
    fn default() -> Self {
        Self {
            channels: 8,
            mel_bins: 16,
            sample_rate: 16000,
            hop_length: 160,
            latent_downsample_factor: 4,
        }
    }
}

impl AudioLatentParams {
    /// Latent frames per second of audio (25 for the defaults).
    pub fn latents_per_second(&self) -> f64 {
        self.sample_rate as f64 / self.hop_length as f64 / self.latent_downsample_factor as f64
    }
}

/// Shape of an audio latent `[batch, channels, frames, mel_bins]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AudioLatentShape {
    pub batch: usize,
    pub channels: usize,
    pub frames: usize,
    pub mel_bins: usize,
}

impl AudioLatentShape {
    pub fn dims(&self) -> [usize; 4] {
        [self.batch, self.channels, self.frames, self.mel_bins]
    }

    /// From a 4-D tensor shape.
    pub fn from_dims(dims: &[usize]) -> Result<Self> {
        match *dims {
            [batch, channels, frames, mel_bins] => Ok(Self {
                batch,
                channels,
                frames,
                mel_bins,
            }),
            _ => Err(bad_shape(
                "audio latent",
                dims,
                "[batch, channels, frames, mel_bins]",
            )),
        }
    }

    /// One token per latent frame.
    pub fn token_count(&self) -> usize {
        self.frames
    }

    pub fn mask_shape(&self) -> Self {
        Self {
            channels: 1,
            mel_bins: 1,
            ..*self
        }
    }

    /// The latent grid of `duration` seconds of audio; frames are rounded half-to-even like
    /// Python's `round`.
    pub fn from_duration(batch: usize, duration: f64, params: AudioLatentParams) -> Result<Self> {
        if !(duration.is_finite() && duration >= 0.0) {
            return Err(Error::InvalidInput(format!(
                "audio duration {duration} s must be a non-negative number"
            )));
        }
        Ok(Self {
            batch,
            channels: params.channels,
            frames: (duration * params.latents_per_second()).round_ties_even() as usize,
            mel_bins: params.mel_bins,
        })
    }

    /// The audio latent grid matching a video's duration (`frames / fps` seconds).
    pub fn from_video_pixel_shape(
        shape: &VideoPixelShape,
        params: AudioLatentParams,
    ) -> Result<Self> {
        if !(shape.fps.is_finite() && shape.fps > 0.0) {
            return Err(Error::InvalidVideoSize(format!(
                "frame rate {} must be a positive number",
                shape.fps
            )));
        }
        Self::from_duration(shape.batch, shape.frames as f64 / shape.fps, params)
    }
}

/// Decoded audio: a waveform `[batch, channels, samples]` (or `[channels, samples]`) at
/// `sampling_rate` Hz.
#[derive(Clone, Debug)]
pub struct Audio {
    pub waveform: Tensor,
    pub sampling_rate: u32,
}

/// The state the denoising loop carries for one modality, in patchified (token) layout once built
/// by the latent tools.
///
/// - `latent`: the current noisy latent `[B, T, C]`;
/// - `denoise_mask`: per-token denoising strength `[B, T, 1]` (1 = fully denoised, 0 = kept), f32;
/// - `positions`: `[B, 3, T, 2]` (video: frame-seconds/pixel bounds) or `[B, 1, T, 2]` (audio: seconds);
/// - `clean_latent`: the latent before noising, with any conditioning tokens written in;
/// - `attention_mask`: optional `[B, T, T]` self-attention weights in `[0, 1]` (`None` = full);
/// - `keyframes_mask`: optional `[B, T, 1]` marker (denoise mask layout) of the tokens that encode
///   a single pixel frame — the video target's first latent frame, generated keyframe slots —
///   which get the model's keyframe embedding where it has one (reference 1.2.0).
#[derive(Clone, Debug)]
pub struct LatentState {
    pub latent: Tensor,
    pub denoise_mask: Tensor,
    pub positions: Tensor,
    pub clean_latent: Tensor,
    pub attention_mask: Option<Tensor>,
    pub keyframes_mask: Option<Tensor>,
    /// The stream is held fixed (1.2.0's `frozen`: a kept soundtrack, a retake's untouched
    /// modality): besides its zero denoise mask, the transformer sees its sigma as 0, which sets
    /// its prompt AdaLN and the other stream's cross-modal gate.
    pub frozen: bool,
}

impl LatentState {
    /// Number of tokens (dimension 1 of the patchified latent).
    pub fn num_tokens(&self) -> Result<usize> {
        Ok(self.latent.dim(1)?)
    }

    pub fn batch_size(&self) -> Result<usize> {
        Ok(self.latent.dim(0)?)
    }

    pub fn dtype(&self) -> DType {
        self.latent.dtype()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latent_shape_from_pixels_and_back() {
        let px = VideoPixelShape {
            batch: 1,
            frames: 121,
            height: 512,
            width: 768,
            fps: 24.0,
        };
        px.validate(Default::default()).unwrap();
        let lat = VideoLatentShape::from_pixel_shape(&px, 128, Default::default());
        assert_eq!(lat.dims(), [1, 128, 16, 16, 24]);
        assert_eq!(lat.token_count(), 16 * 16 * 24);
        let up = lat.upscale(Default::default());
        assert_eq!((up.frames, up.height, up.width), (121, 512, 768));
        // 121 frames at 24 fps = 5.0417 s -> 126.04 latents -> 126
        let audio = AudioLatentShape::from_video_pixel_shape(&px, Default::default()).unwrap();
        assert_eq!(audio.dims(), [1, 8, 126, 16]);
        // round half to even, as Python's round: 0.1 s * 25 = 2.5 -> 2, 0.14 s * 25 = 3.5 -> 4
        let p = AudioLatentParams::default();
        assert_eq!(
            AudioLatentShape::from_duration(1, 0.1, p).unwrap().frames,
            2
        );
        assert_eq!(
            AudioLatentShape::from_duration(1, 0.14, p).unwrap().frames,
            4
        );
    }

    #[test]
    fn bad_video_sizes_are_typed_errors() {
        let ok = VideoPixelShape {
            batch: 1,
            frames: 9,
            height: 64,
            width: 96,
            fps: 25.0,
        };
        let sf = SpatioTemporalScaleFactors::default();
        for bad in [
            VideoPixelShape { frames: 10, ..ok },
            VideoPixelShape { frames: 0, ..ok },
            VideoPixelShape { height: 65, ..ok },
            VideoPixelShape { width: 0, ..ok },
            VideoPixelShape {
                fps: f64::NAN,
                ..ok
            },
            VideoPixelShape { batch: 0, ..ok },
        ] {
            assert!(
                matches!(bad.validate(sf), Err(Error::InvalidVideoSize(_))),
                "{bad:?}"
            );
        }
        let msg = VideoPixelShape { frames: 10, ..ok }
            .validate(sf)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("8k+1") && msg.contains("9 or 17"), "{msg}");
        assert!(AudioLatentShape::from_duration(1, -1.0, Default::default()).is_err());
        assert!(VideoLatentShape::from_dims(&[1, 2, 3]).is_err());
    }
}
