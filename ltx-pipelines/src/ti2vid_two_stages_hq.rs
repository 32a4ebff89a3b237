//! Port of `ltx_pipelines/ti2vid_two_stages_hq.py`: the two-stage pipeline with the res_2s
//! sampler in both stages, the schedule shifted for the stage-1 token count, and the distilled
//! LoRA fused into both stages at their own strengths.

use std::path::Path;

use crate::utils::helpers::ImageConditioningMode;
use crate::utils::model_ledger::{LoraSpec, ModelLedger};
pub use crate::utils::stages::GuidedTwoStages;
use crate::utils::stages::{Sampler, TwoStageFlow, TwoStageLedgers};
use crate::Result;

/// The reference's distilled-LoRA strengths of the two stages.
pub const DEFAULT_HQ_LORA_STRENGTHS: (f64, f64) = (0.25, 0.5);

/// The HQ two-stage pipeline.
pub struct TI2VidTwoStagesHQPipeline {
    pub ledgers: TwoStageLedgers,
}

impl TI2VidTwoStagesHQPipeline {
    /// The distilled LoRA (when given) is fused at `strengths.0` in stage 1 and `strengths.1` in
    /// stage 2.
    pub fn new(
        ledger: ModelLedger,
        distilled_lora: Option<&Path>,
        strengths: (f64, f64),
    ) -> Result<Self> {
        let with = |strength: f64| -> Result<ModelLedger> {
            let lora: Vec<LoraSpec> = distilled_lora
                .map(|p| LoraSpec {
                    path: p.to_path_buf(),
                    strength,
                })
                .into_iter()
                .collect();
            ledger.with_additional_loras(&lora)
        };
        let ledgers = TwoStageLedgers {
            stage_1: with(strengths.0)?,
            stage_2: with(strengths.1)?,
        };
        Ok(Self { ledgers })
    }
}

impl GuidedTwoStages for TI2VidTwoStagesHQPipeline {
    const FLOW: TwoStageFlow =
        TwoStageFlow::new(Sampler::Res2s, ImageConditioningMode::Combined).with_stage_1_audio();

    fn ledgers(&self) -> &TwoStageLedgers {
        &self.ledgers
    }
}
