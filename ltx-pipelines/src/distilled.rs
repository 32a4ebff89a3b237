//! Port of `ltx_pipelines/distilled.py`: the two-stage distilled pipeline (`ltx generate`'s
//! default). Stage 1 denoises at half resolution with the 8-step distilled schedule, the spatial
//! upsampler doubles the latent, stage 2 refines it with 3 more steps at full resolution, then the
//! video VAE decodes (streamed in chunks) and the audio VAE + vocoder make the soundtrack.
//!
//! Each component is built from the ledger when its stage starts and dropped when it ends; the
//! transformer serves both stages.

use ltx_core::types::Audio;

use crate::utils::blocks::{
    check_duration_source, encode_prompt, resolve_duration, ConditioningEncoder,
};
use crate::utils::constants::ANCESTRAL_SAMPLER_SINCE_VERSION;
use crate::utils::helpers::ImageConditioningMode;
use crate::utils::model_ledger::ModelLedger;
pub use crate::utils::request::{GenerationRequest, ImageConditioningInput};
use crate::utils::samplers::ANCESTRAL_NOISE_SEED_OFFSET;
use crate::utils::stages::{distilled_stage_1, Sampler, StageTwo, TwoStageFlow};
use crate::utils::types::PipelineNoise;
pub use crate::utils::types::{ProgressEvent, RunIo};
use crate::Result;

/// The two-stage distilled pipeline.
pub struct DistilledPipeline {
    pub ledger: ModelLedger,
}

impl DistilledPipeline {
    const FLOW: TwoStageFlow = TwoStageFlow::new(Sampler::Euler, ImageConditioningMode::Combined);

    pub fn new(ledger: ModelLedger) -> Self {
        Self { ledger }
    }

    /// Stage 1's sampler: Euler ancestral from LTX-2.5 on (its generator seeded with
    /// `seed + 10000`, so its first draw is not the initial noise again), else Euler. Stage 2
    /// always uses Euler: three steps cannot remove freshly injected noise.
    pub fn stage_1_sampler(ledger: &ModelLedger, seed: u64) -> Result<Sampler> {
        let version = ledger.model_version()?;
        Ok(
            if version.as_slice() >= ANCESTRAL_SAMPLER_SINCE_VERSION.as_slice() {
                Sampler::EulerAncestral {
                    noise_seed: seed.wrapping_add(ANCESTRAL_NOISE_SEED_OFFSET),
                }
            } else {
                Sampler::Euler
            },
        )
    }

    /// Runs the pipeline; decoded video chunks (`[f, H, W, 3]` f32 in [0, 1]) go to `sink` as they are
    /// produced, the audio is returned.
    pub fn run(&self, req: &GenerationRequest, io: RunIo) -> Result<Audio> {
        let RunIo { progress, sink } = io;
        req.validate_with_auto_duration(true)?;
        let ledger = &self.ledger;
        check_duration_source(ledger, req)?;
        let mut noise = PipelineNoise::new(req.noise, req.seed);
        let contexts = encode_prompt(ledger, req, progress)?;
        let req = &resolve_duration(ledger, req, (&contexts.0, &contexts.1), true)?;
        let shape1 = req.pixel_shape(2);
        let conds1 = ConditioningEncoder::new(ledger)?.images(
            Self::FLOW.mode,
            &req.images,
            shape1.size(),
        )?;
        let transformer = ledger.transformer()?;
        let stage_1 = distilled_stage_1(
            ledger,
            Self::stage_1_sampler(ledger, req.seed)?,
            (&shape1, &conds1),
            (&transformer, contexts),
            &mut noise,
            progress,
        )?;
        drop(conds1);
        let stage_2 = StageTwo {
            ledgers: (ledger, ledger),
            flow: Self::FLOW,
            req,
        };
        stage_2.finish(stage_1, Some(transformer), &mut noise, progress, sink)
    }
}
