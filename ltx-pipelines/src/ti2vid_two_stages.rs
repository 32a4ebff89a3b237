//! Port of `ltx_pipelines/ti2vid_two_stages.py`: stage 1 at half resolution with the full model
//! and multimodal guidance, the x2 latent upsampler, stage 2 at full resolution with the distilled
//! LoRA fused in (3 distilled sigmas, plain conditional passes).

use crate::utils::helpers::ImageConditioningMode;
use crate::utils::model_ledger::{LoraSpec, ModelLedger};
pub use crate::utils::stages::GuidedTwoStages;
use crate::utils::stages::{Sampler, TwoStageFlow, TwoStageLedgers};
use crate::Result;

/// The two-stage pipeline.
pub struct TI2VidTwoStagesPipeline {
    pub ledgers: TwoStageLedgers,
}

impl TI2VidTwoStagesPipeline {
    /// `distilled_lora`: the LoRA that turns the full model into the distilled one for stage 2.
    pub fn new(ledger: ModelLedger, distilled_lora: &[LoraSpec]) -> Result<Self> {
        TwoStageLedgers::with_distilled_lora(ledger, distilled_lora).map(|ledgers| Self { ledgers })
    }
}

impl GuidedTwoStages for TI2VidTwoStagesPipeline {
    const FLOW: TwoStageFlow =
        TwoStageFlow::new(Sampler::Euler, ImageConditioningMode::Combined).with_stage_1_audio();

    fn ledgers(&self) -> &TwoStageLedgers {
        &self.ledgers
    }
}
