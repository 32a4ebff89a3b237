//! Port of `ltx_pipelines/ti2vid_one_stage.py`: text/image-to-video in one stage at full
//! resolution with the full (non-distilled) model, the LTX-2 scheduler and multimodal guidance
//! (CFG against the negative prompt, STG, modality guidance, rescale).

use candle_core::Tensor;
use ltx_core::components::guiders::{MultiModalGuiderFactory, MultiModalGuiderParams};
use ltx_core::components::noisers::NoiseGenerator;
use ltx_core::components::schedulers::Ltx2Scheduler;
use ltx_core::types::{Audio, VideoPixelShape};

use crate::utils::helpers::{denoise_audio_video, MultiModalDenoiser};
use crate::utils::model_ledger::ModelLedger;
use crate::utils::samplers::{res2s_audio_video_denoising_loop, Res2sOptions, SeededSdeNoise};
use crate::utils::stages::{
    conditionings, decode_audio_latent, decode_video_chunks, encode_prompts, euler_stage,
    GenerationRequest, ImageConditioningMode, ProgressEvent,
};
use crate::{Error, Result};

/// What the guided pipelines take on top of a [`GenerationRequest`].
#[derive(Clone, Debug)]
pub struct GuidanceRequest {
    pub negative_prompt: String,
    pub num_inference_steps: usize,
    pub video_guider: MultiModalGuiderParams,
    pub audio_guider: MultiModalGuiderParams,
}

impl GuidanceRequest {
    pub fn validate(&self) -> Result<()> {
        if self.num_inference_steps == 0 {
            return Err(Error::InvalidArgument(
                "--num-inference-steps must be at least 1".into(),
            ));
        }
        self.video_guider.validate()?;
        self.audio_guider.validate()?;
        Ok(())
    }
}

/// The sampler of a stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sampler {
    Euler,
    /// res_2s with the reference's fixed SDE noise seed (-1, substeps -1 + 10000).
    Res2s,
}

/// Runs `sampler` over `sigmas` with `denoiser` as the loop of [`denoise_audio_video`].
#[allow(clippy::too_many_arguments)]
pub(crate) fn run_stage(
    sampler: Sampler,
    shape: &VideoPixelShape,
    conds: &[Box<dyn ltx_core::conditioning::ConditioningItem>],
    noise: &mut NoiseGenerator,
    sigmas: &Tensor,
    denoiser: &mut dyn crate::utils::helpers::DenoisingFunc,
    ledger: &ModelLedger,
    noise_scale: f64,
    initial: (Option<&Tensor>, Option<&Tensor>),
    progress: &mut dyn FnMut(ProgressEvent),
) -> Result<(ltx_core::types::LatentState, ltx_core::types::LatentState)> {
    let (dtype, device) = (ledger.dtype, ledger.device.clone());
    match sampler {
        Sampler::Euler => denoise_audio_video(
            shape,
            conds,
            noise,
            &mut euler_stage(sigmas, denoiser, progress),
            dtype,
            &device,
            noise_scale,
            initial.0,
            initial.1,
        ),
        Sampler::Res2s => {
            let mut sde = SeededSdeNoise::new((-1i64) as u64);
            sde.substep = NoiseGenerator::new(9999);
            let opts = Res2sOptions {
                model_dtype: dtype,
                ..Default::default()
            };
            let mut lp = |v, a, _n: &mut dyn crate::utils::helpers::NoiseSource| {
                res2s_audio_video_denoising_loop(
                    sigmas,
                    v,
                    a,
                    &mut *denoiser,
                    &mut sde,
                    opts,
                    &mut |done, total| progress(ProgressEvent::Step { done, total }),
                )
            };
            denoise_audio_video(
                shape,
                conds,
                noise,
                &mut lp,
                dtype,
                &device,
                noise_scale,
                initial.0,
                initial.1,
            )
        }
    }
}

/// Stage 1 of the guided pipelines: prompt + negative prompt encoded, image conditionings,
/// `steps` steps of the LTX-2 schedule (shifted for `schedule_tokens` latent tokens, or the
/// default count) with the multimodal guider, at `shape`. Returns the video and audio latents in
/// grid layout and the positive contexts.
#[allow(clippy::too_many_arguments)]
pub(crate) fn guided_stage(
    ledger: &ModelLedger,
    req: &GenerationRequest,
    guidance: &GuidanceRequest,
    shape: &VideoPixelShape,
    noise: &mut NoiseGenerator,
    sampler: Sampler,
    schedule_tokens: Option<usize>,
    mode: ImageConditioningMode,
    progress: &mut dyn FnMut(ProgressEvent),
) -> Result<(Tensor, Tensor, (Tensor, Tensor))> {
    let (dtype, device) = (ledger.dtype, ledger.device.clone());
    let mut contexts = encode_prompts(
        ledger,
        &[req.prompt.as_str(), guidance.negative_prompt.as_str()],
        req.enhancement().as_ref(),
        req.seed,
        progress,
    )?;
    let (v_neg, a_neg) = contexts.pop().expect("two prompts");
    let (v_pos, a_pos) = contexts.pop().expect("two prompts");
    let conds = {
        let encoder = ledger.video_encoder()?;
        conditionings(
            mode,
            &req.images,
            shape.height,
            shape.width,
            &encoder,
            dtype,
            &device,
        )?
    };
    let transformer = ledger.transformer()?;
    let sigmas = Ltx2Scheduler::default().sigmas(guidance.num_inference_steps, schedule_tokens)?;
    let sigmas = Tensor::new(sigmas.as_slice(), &device)?;
    let mut denoiser = MultiModalDenoiser::new(
        &transformer,
        MultiModalGuiderFactory::constant(guidance.video_guider.clone(), Some(v_neg))?,
        Some(MultiModalGuiderFactory::constant(
            guidance.audio_guider.clone(),
            Some(a_neg),
        )?),
        v_pos.clone(),
        a_pos.clone(),
    );
    progress(ProgressEvent::Stage {
        name: "denoise",
        total: guidance.num_inference_steps,
    });
    let (video, audio) = run_stage(
        sampler,
        shape,
        &conds,
        noise,
        &sigmas,
        &mut denoiser,
        ledger,
        1.0,
        (None, None),
        progress,
    )?;
    Ok((video.latent, audio.latent, (v_pos, a_pos)))
}

/// The one-stage pipeline.
pub struct TI2VidOneStagePipeline {
    pub ledger: ModelLedger,
}

impl TI2VidOneStagePipeline {
    pub fn new(ledger: ModelLedger) -> Self {
        Self { ledger }
    }

    pub fn run(
        &self,
        req: &GenerationRequest,
        guidance: &GuidanceRequest,
        progress: &mut dyn FnMut(ProgressEvent),
        sink: &mut dyn FnMut(Tensor) -> Result<()>,
    ) -> Result<Audio> {
        req.validate(false)?;
        guidance.validate()?;
        let shape = req.pixel_shape(1);
        let mut noise = NoiseGenerator::new(req.seed);
        let (video, audio, _) = guided_stage(
            &self.ledger,
            req,
            guidance,
            &shape,
            &mut noise,
            Sampler::Euler,
            None,
            ImageConditioningMode::Combined,
            progress,
        )?;
        decode_video_chunks(&self.ledger, &video, req.tiling.as_ref(), progress, sink)?;
        decode_audio_latent(&self.ledger, &audio, progress)
    }
}
