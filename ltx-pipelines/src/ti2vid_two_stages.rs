//! Port of `ltx_pipelines/ti2vid_two_stages.py`: stage 1 at half resolution with the full model
//! and multimodal guidance, the x2 latent upsampler, stage 2 at full resolution with the distilled
//! LoRA fused in (3 distilled sigmas, plain conditional passes).

use candle_core::Tensor;
use ltx_core::components::noisers::NoiseGenerator;
use ltx_core::types::{Audio, LatentState, VideoPixelShape};

use crate::ti2vid_one_stage::{guided_stage, run_stage, GuidanceRequest, Sampler};
use crate::utils::constants::STAGE_2_DISTILLED_SIGMA_VALUES;
use crate::utils::helpers::SimpleDenoiser;
use crate::utils::model_ledger::{LoraSpec, ModelLedger};
use crate::utils::stages::{
    decode_audio_latent, decode_video_chunks, upsample_for_stage_2, GenerationRequest,
    ImageConditioningMode, ProgressEvent,
};
use crate::Result;

/// The two-stage pipelines: Euler (`ti2vid_two_stages.py`) or res_2s (`ti2vid_two_stages_hq.py`,
/// see [`TI2VidTwoStagesPipeline::hq`]).
pub struct TI2VidTwoStagesPipeline {
    pub stage_1: ModelLedger,
    pub stage_2: ModelLedger,
    pub sampler: Sampler,
    /// `Keyframes` for the keyframe-interpolation pipeline.
    pub mode: ImageConditioningMode,
}

/// The HQ pipeline shifts its schedule for the stage-1 latent's token count; the Euler one uses the
/// scheduler's default.
fn schedule_tokens(sampler: Sampler, shape: &VideoPixelShape) -> Option<usize> {
    (sampler == Sampler::Res2s).then(|| {
        let f = (shape.frames - 1) / 8 + 1;
        f * (shape.height / 32) * (shape.width / 32)
    })
}

impl TI2VidTwoStagesPipeline {
    /// `distilled_lora`: the LoRA that turns the full model into the distilled one for stage 2.
    pub fn new(ledger: ModelLedger, distilled_lora: &[LoraSpec]) -> Result<Self> {
        let stage_2 = ledger.with_additional_loras(distilled_lora)?;
        Ok(Self {
            stage_1: ledger,
            stage_2,
            sampler: Sampler::Euler,
            mode: ImageConditioningMode::Combined,
        })
    }

    /// `KeyframeInterpolationPipeline` (`keyframe_interpolation.py`): the two-stage pipeline with
    /// every image appended as a keyframe (none replaces latent frame 0).
    pub fn keyframe_interpolation(
        ledger: ModelLedger,
        distilled_lora: &[LoraSpec],
    ) -> Result<Self> {
        let mut p = Self::new(ledger, distilled_lora)?;
        p.mode = ImageConditioningMode::Keyframes;
        Ok(p)
    }

    /// `TI2VidTwoStagesHQ`: res_2s in both stages, the distilled LoRA in both (at
    /// `strengths.0` in stage 1 and `strengths.1` in stage 2; the reference's defaults are 0.25 and
    /// 0.5).
    pub fn hq(
        ledger: ModelLedger,
        distilled_lora: Option<&std::path::Path>,
        strengths: (f64, f64),
    ) -> Result<Self> {
        let with = |s: f64| -> Result<ModelLedger> {
            match distilled_lora {
                Some(p) => ledger.with_additional_loras(&[LoraSpec {
                    path: p.to_path_buf(),
                    strength: s,
                }]),
                None => Ok(ledger.clone()),
            }
        };
        Ok(Self {
            stage_1: with(strengths.0)?,
            stage_2: with(strengths.1)?,
            sampler: Sampler::Res2s,
            mode: ImageConditioningMode::Combined,
        })
    }

    pub fn run(
        &self,
        req: &GenerationRequest,
        guidance: &GuidanceRequest,
        progress: &mut dyn FnMut(ProgressEvent),
        sink: &mut dyn FnMut(Tensor) -> Result<()>,
    ) -> Result<Audio> {
        req.validate(true)?;
        guidance.validate()?;
        let shape1 = req.pixel_shape(2);
        let mut noise = NoiseGenerator::new(req.seed);
        let (video1, audio1, (v_pos, a_pos)) = guided_stage(
            &self.stage_1,
            req,
            guidance,
            &shape1,
            &mut noise,
            self.sampler,
            schedule_tokens(self.sampler, &shape1),
            self.mode,
            progress,
        )?;

        let shape2 = req.pixel_shape(1);
        let (upscaled, conds2) = upsample_for_stage_2(
            &self.stage_1,
            &self.stage_2,
            &video1,
            self.mode,
            &req.images,
            shape2.height,
            shape2.width,
            progress,
        )?;

        let transformer = self.stage_2.transformer()?;
        let mut denoiser = SimpleDenoiser {
            transformer: &transformer,
            video_context: v_pos,
            audio_context: a_pos,
        };
        let (video2, audio2) = refine_stage_2(
            self.sampler,
            &self.stage_2,
            &shape2,
            &conds2,
            &mut noise,
            &mut denoiser,
            (&upscaled, &audio1),
            progress,
        )?;
        drop(denoiser);
        drop((transformer, conds2));
        decode_video_chunks(
            &self.stage_2,
            &video2.latent,
            req.tiling.as_ref(),
            progress,
            sink,
        )?;
        decode_audio_latent(&self.stage_2, &audio2.latent, progress)
    }
}

/// Stage 2 of the two-stage pipelines: the distilled schedule's last steps at full size, from the
/// upscaled stage-1 video re-noised to the schedule's first sigma, with the stage-1 audio.
#[allow(clippy::too_many_arguments)]
pub(crate) fn refine_stage_2(
    sampler: Sampler,
    ledger: &ModelLedger,
    shape: &VideoPixelShape,
    conds: &[Box<dyn ltx_core::conditioning::ConditioningItem>],
    noise: &mut NoiseGenerator,
    denoiser: &mut dyn crate::utils::helpers::DenoisingFunc,
    (upscaled, audio): (&Tensor, &Tensor),
    progress: &mut dyn FnMut(ProgressEvent),
) -> Result<(LatentState, LatentState)> {
    let sigmas = Tensor::new(&STAGE_2_DISTILLED_SIGMA_VALUES, &ledger.device)?;
    progress(ProgressEvent::Stage {
        name: "denoise (stage 2)",
        total: sigmas.dim(0)? - 1,
    });
    run_stage(
        sampler,
        shape,
        conds,
        noise,
        &sigmas,
        denoiser,
        ledger,
        STAGE_2_DISTILLED_SIGMA_VALUES[0] as f64,
        (Some(upscaled), Some(audio)),
        progress,
    )
}
