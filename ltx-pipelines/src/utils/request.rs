//! The requests the pipelines take (the typed form of `ltx_pipelines/utils/args.py`'s
//! arguments): a generation's prompt, size, seed and conditioning images, the guided pipelines'
//! guidance, and the checks that can be made before any model is loaded.

use ltx_core::components::guiders::MultiModalGuiderParams;
use ltx_core::components::noisers::NoiseKind;
use ltx_core::components::schedulers::Ltx2Scheduler;
use ltx_core::model::video_vae::TilingConfig;

use super::duration::AutoDuration;
use super::helpers::{assert_num_frames, assert_resolution};
use crate::{Error, Result};

/// Prompt enhancement (`enhance_prompt` of the reference's pipelines): Gemma rewrites the first
/// prompt before it is encoded.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PromptEnhancement {
    /// Instructions for Gemma (default: `DEFAULT_T2V_SYSTEM_PROMPT`).
    pub system_prompt: Option<String>,
    /// An image the reference would show Gemma (its first conditioning image). Gemma's vision
    /// tower is not ported: the prompt is enhanced from the text alone, with a warning.
    pub image: Option<std::path::PathBuf>,
    /// A Gemma of its own for the rewrite (`--prompt-enhancer-gemma-root`: a Gemma-3 root or
    /// file), loaded and freed before the text encoder; `None`: the text encoder rewrites.
    pub gemma: Option<std::path::PathBuf>,
}

/// An image that conditions one frame (`--image PATH FRAME_IDX STRENGTH [CRF]`).
#[derive(Clone, Debug, PartialEq)]
pub struct ImageConditioningInput {
    pub path: std::path::PathBuf,
    pub frame_idx: usize,
    pub strength: f64,
    /// `None`: the checkpoint generation's default (33, or 18 from LTX-2.4 on).
    pub crf: Option<u32>,
}

/// The inputs of one generation.
#[derive(Clone, Debug)]
pub struct GenerationRequest {
    pub prompt: String,
    pub seed: u64,
    /// The generator `seed` seeds (torch's CPU generator by default: the reference's noise).
    pub noise: NoiseKind,
    pub height: usize,
    pub width: usize,
    pub num_frames: usize,
    pub frame_rate: f64,
    pub images: Vec<ImageConditioningInput>,
    /// `None`: decode in one piece.
    pub tiling: Option<TilingConfig>,
    /// `Some`: Gemma rewrites the prompt first (sampled with `seed`).
    pub enhance_prompt: Option<PromptEnhancement>,
    /// `Some`: `num_frames` is predicted from the encoded prompt by the checkpoint's duration
    /// head (LTX-2.5), clamped to the window; `num_frames` is then only a placeholder.
    pub auto_duration: Option<AutoDuration>,
}

impl GenerationRequest {
    /// The enhancement to apply to this request's prompt, with its first image (as the
    /// reference's `enhance_prompt_image`).
    pub fn enhancement(&self) -> Option<PromptEnhancement> {
        self.enhance_prompt.as_ref().map(|e| PromptEnhancement {
            image: e
                .image
                .clone()
                .or_else(|| self.images.first().map(|i| i.path.clone())),
            ..e.clone()
        })
    }

    /// The output shape at `1 / divisor` of the requested height and width (2 for the first stage
    /// of the two-stage pipelines, 1 for full size).
    pub fn pixel_shape(&self, divisor: usize) -> ltx_core::types::VideoPixelShape {
        ltx_core::types::VideoPixelShape {
            batch: 1,
            frames: self.num_frames,
            height: self.height / divisor,
            width: self.width / divisor,
            fps: self.frame_rate,
        }
    }

    /// The checks every pipeline makes before any model is loaded. An automatic duration is
    /// refused here: only the pipelines that predict one accept it
    /// ([`Self::validate_with_auto_duration`]).
    pub fn validate(&self, two_stage: bool) -> Result<()> {
        if self.auto_duration.is_some() {
            return Err(Error::InvalidArgument(
                "this pipeline takes no automatic duration: give the number of frames".into(),
            ));
        }
        self.validate_with_auto_duration(two_stage)
    }

    /// [`Self::validate`] for a pipeline that predicts the frame count when asked.
    pub fn validate_with_auto_duration(&self, two_stage: bool) -> Result<()> {
        assert_resolution(self.height, self.width, two_stage)?;
        match &self.auto_duration {
            None => assert_num_frames(self.num_frames)?,
            Some(window) => window.validate()?,
        }
        if !(self.frame_rate.is_finite() && self.frame_rate > 0.0) {
            return Err(Error::InvalidArgument(format!(
                "frame rate {} must be a positive number",
                self.frame_rate
            )));
        }
        if self.prompt.trim().is_empty() {
            return Err(Error::InvalidArgument("the prompt is empty".into()));
        }
        if let Some(tiling) = &self.tiling {
            tiling.validate()?;
        }
        for img in &self.images {
            // with an automatic duration the frame indices are checked once it is known
            if self.auto_duration.is_none() && img.frame_idx >= self.num_frames {
                return Err(Error::InvalidArgument(format!(
                    "image `{}` conditions frame {}, but the video has {} frames",
                    img.path.display(),
                    img.frame_idx,
                    self.num_frames
                )));
            }
            if !(0.0..=1.0).contains(&img.strength) {
                return Err(Error::InvalidArgument(format!(
                    "image `{}`: strength {} is outside [0, 1]",
                    img.path.display(),
                    img.strength
                )));
            }
            if !img.path.is_file() {
                return Err(Error::InvalidArgument(format!(
                    "image `{}` does not exist",
                    img.path.display()
                )));
            }
        }
        Ok(())
    }
}

/// A step count the guided pipelines' (stretched) LTX-2 schedule can run: at least 2 steps (one
/// stretched step would start from pure noise at sigma = terminal, or at 0/0 = NaN, as the
/// reference computes it) and no non-finite sigma for `tokens` latent tokens.
pub fn check_schedule(steps: usize, tokens: Option<usize>) -> Result<()> {
    let scheduler = Ltx2Scheduler::default();
    let refuse =
        |why: String| Error::InvalidArgument(format!("--num-inference-steps {steps}: {why}"));
    if scheduler.stretch && steps < 2 {
        return Err(refuse(format!(
            "the schedule stretched to terminal {} needs at least 2 steps",
            scheduler.terminal
        )));
    }
    let sigmas = scheduler
        .sigmas(steps, tokens)
        .map_err(|e| refuse(e.to_string()))?;
    if let Some(i) = sigmas.iter().position(|s| !s.is_finite()) {
        return Err(refuse(format!(
            "sigma {i} of the schedule is {}",
            sigmas[i]
        )));
    }
    Ok(())
}

/// The inputs of a guided pipeline: the generation and its guidance.
pub type GuidedRequest<'a> = (&'a GenerationRequest, &'a GuidanceRequest);

/// What the guided pipelines take on top of a [`GenerationRequest`].
#[derive(Clone, Debug)]
pub struct GuidanceRequest {
    pub negative_prompt: String,
    pub num_inference_steps: usize,
    pub video_guider: MultiModalGuiderParams,
    pub audio_guider: MultiModalGuiderParams,
}

impl GuidanceRequest {
    /// The checks that need no model: a usable step count (one whose LTX-2 schedule has no NaN
    /// sigma) and finite, non-negative scales.
    pub fn validate(&self) -> Result<()> {
        if self.num_inference_steps == 0 {
            return Err(Error::InvalidArgument(
                "--num-inference-steps must be at least 1".into(),
            ));
        }
        check_schedule(self.num_inference_steps, None)?;
        self.video_guider.validate()?;
        self.audio_guider.validate()?;
        Ok(())
    }

    /// The checks against the transformer: every STG block index must name one of its
    /// `num_blocks` blocks (an index past the end would perturb nothing).
    pub fn validate_for_model(&self, num_blocks: usize) -> Result<()> {
        for (flag, params) in [
            ("--video-stg-blocks", &self.video_guider),
            ("--audio-stg-blocks", &self.audio_guider),
        ] {
            if let Some(bad) = params
                .stg_blocks
                .iter()
                .flatten()
                .find(|&&b| b >= num_blocks)
            {
                return Err(Error::InvalidArgument(format!(
                    "{flag}: block {bad} does not exist, the transformer has {num_blocks} blocks \
                     (0..={})",
                    num_blocks.saturating_sub(1)
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use ltx_core::model::video_vae::tiling::SpatialTilingConfig;

    use super::*;

    #[test]
    fn tiling_is_checked_before_any_model() {
        let mut req = GenerationRequest {
            prompt: "a cat".into(),
            seed: 0,
            noise: NoiseKind::default(),
            height: 512,
            width: 768,
            num_frames: 121,
            frame_rate: 24.0,
            images: Vec::new(),
            tiling: Some(TilingConfig::reference_default()),
            enhance_prompt: None,
            auto_duration: None,
        };
        assert!(req.validate(true).is_ok());
        req.tiling = Some(TilingConfig {
            spatial: Some(SpatialTilingConfig {
                tile_size_in_pixels: 48,
                tile_overlap_in_pixels: 0,
            }),
            temporal: None,
        });
        assert!(matches!(
            req.validate(true),
            Err(Error::Core(ltx_core::Error::InvalidInput(_)))
        ));
    }
}
