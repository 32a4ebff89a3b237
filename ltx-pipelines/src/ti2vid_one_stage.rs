//! Port of `ltx_pipelines/ti2vid_one_stage.py`: text/image-to-video in one stage at full
//! resolution with the full (non-distilled) model, the LTX-2 scheduler and multimodal guidance
//! (CFG against the negative prompt, STG, modality guidance, rescale).

use ltx_core::types::Audio;

use crate::utils::blocks::{check_duration_source, decode_outputs};
use crate::utils::helpers::ImageConditioningMode;
use crate::utils::model_ledger::ModelLedger;
pub use crate::utils::request::{GenerationRequest, GuidanceRequest, GuidedRequest};
use crate::utils::stages::{guided_stage, GuidedAudio, Sampler};
use crate::utils::types::{PipelineNoise, RunIo};
use crate::Result;

/// The one-stage pipeline.
pub struct TI2VidOneStagePipeline {
    pub ledger: ModelLedger,
}

impl TI2VidOneStagePipeline {
    pub fn new(ledger: ModelLedger) -> Self {
        Self { ledger }
    }

    pub fn run(&self, (req, guidance): GuidedRequest, io: RunIo) -> Result<Audio> {
        let RunIo { progress, sink } = io;
        req.validate_with_auto_duration(false)?;
        guidance.validate()?;
        check_duration_source(&self.ledger, req)?;
        let mut noise = PipelineNoise::new(req.noise, req.seed);
        let (stage, req) = guided_stage(
            &self.ledger,
            (req, guidance),
            (1, "denoise"),
            (Sampler::Euler, false),
            (ImageConditioningMode::Combined, GuidedAudio::Generate),
            &mut noise,
            progress,
        )?;
        decode_outputs(
            &self.ledger,
            (&stage.video, &stage.audio),
            req.tiling.as_ref(),
            progress,
            sink,
        )
    }
}
