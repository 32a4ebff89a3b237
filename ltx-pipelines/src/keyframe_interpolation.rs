//! Port of `ltx_pipelines/keyframe_interpolation.py`: the two-stage pipeline with every image
//! appended as a keyframe to interpolate between (none replaces latent frame 0).

use crate::utils::helpers::ImageConditioningMode;
use crate::utils::model_ledger::{LoraSpec, ModelLedger};
use crate::utils::request::GenerationRequest;
pub use crate::utils::stages::GuidedTwoStages;
use crate::utils::stages::{Sampler, TwoStageFlow, TwoStageLedgers};
use crate::{Error, Result};

/// The keyframe-interpolation pipeline.
pub struct KeyframeInterpolationPipeline {
    pub ledgers: TwoStageLedgers,
}

impl KeyframeInterpolationPipeline {
    /// `distilled_lora`: the LoRA that turns the full model into the distilled one for stage 2.
    pub fn new(ledger: ModelLedger, distilled_lora: &[LoraSpec]) -> Result<Self> {
        TwoStageLedgers::with_distilled_lora(ledger, distilled_lora).map(|ledgers| Self { ledgers })
    }
}

impl GuidedTwoStages for KeyframeInterpolationPipeline {
    const FLOW: TwoStageFlow = TwoStageFlow::new(Sampler::Euler, ImageConditioningMode::Keyframes);

    fn ledgers(&self) -> &TwoStageLedgers {
        &self.ledgers
    }

    fn validate(&self, req: &GenerationRequest) -> Result<()> {
        if req.auto_duration.is_some() {
            // as the reference: the keyframes' frame indices fix the length
            return Err(Error::InvalidArgument(
                "keyframe interpolation takes --num-frames, not an automatic duration".into(),
            ));
        }
        if req.images.is_empty() {
            return Err(Error::InvalidArgument(
                "keyframe interpolation needs at least one image (--image PATH FRAME_IDX STRENGTH)"
                    .into(),
            ));
        }
        Ok(())
    }
}
