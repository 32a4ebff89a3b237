//! The diffusion stages of the pipelines (the `DiffusionStage` half of
//! `ltx_pipelines/utils/blocks.py`): a stage builds its noised states and runs a sampler's loop
//! with a denoiser. On top: the guided first stage of the full-model pipelines, the x2 upsampling
//! between stages, the distilled refinement stage 2, and the guided two-stage flow the two-stage,
//! HQ and keyframe-interpolation pipelines share.

use candle_core::Tensor;
use ltx_core::components::diffusion_steps::EulerAncestralDiffusionStep;
use ltx_core::components::guiders::{MultiModalGuiderFactory, MultiModalGuiderParams};
use ltx_core::components::noisers::SeededNoise;
use ltx_core::components::schedulers::Ltx2Scheduler;
use ltx_core::conditioning::ConditioningItem;
use ltx_core::types::{Audio, LatentState, VideoPixelShape};

use super::blocks::{
    check_duration_source, decode_outputs, encode_prompts, resolve_duration, ConditioningEncoder,
};
use super::constants::STAGE_2_DISTILLED_SIGMA_VALUES;
use super::denoisers::{MultiModalDenoiser, SimpleDenoiser};
use super::helpers::{denoise_audio_video, ImageConditioningMode, StageAudio, StageInputs};
use super::model_ledger::{LoraSpec, ModelLedger};
use super::request::{
    check_schedule, GenerationRequest, GuidanceRequest, GuidedRequest, ImageConditioningInput,
};
use super::samplers::{
    euler_ancestral_denoising_loop, euler_denoising_loop, res2s_audio_video_denoising_loop,
    Res2sOptions, SeededSdeNoise,
};
use super::types::{DenoisingFunc, NoiseSource, PipelineNoise, ProgressEvent, RunIo};
use crate::Result;
use ltx_core::model::transformer::model::X0Model;

/// The sampler of a stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sampler {
    Euler,
    /// Euler ancestral (η = 1, s_noise = 1), its noise from a generator of the pipeline's kind
    /// seeded with `noise_seed` (the distilled stage 1 of LTX-2.5: the pipeline seed + 10000).
    EulerAncestral {
        noise_seed: u64,
    },
    /// res_2s with the reference's fixed SDE noise seeds (-1 for the steps, 9999 for the
    /// substeps).
    Res2s,
}

/// One diffusion stage: its progress name, sampler, f32 sigma schedule and noised-state inputs.
#[derive(Clone, Copy)]
pub struct Stage<'a> {
    pub name: &'static str,
    pub sampler: Sampler,
    pub sigmas: &'a [f32],
    pub inputs: StageInputs<'a>,
}

/// Runs `stage` with `denoiser`, the initial noise drawn from `noise`; returns the video and audio
/// states in grid layout.
pub fn run_stage(
    stage: &Stage<'_>,
    denoiser: &mut dyn DenoisingFunc,
    noise: &mut dyn NoiseSource,
    progress: &mut dyn FnMut(ProgressEvent),
) -> Result<(LatentState, LatentState)> {
    let sigmas = Tensor::new(stage.sigmas, stage.inputs.device)?;
    progress(ProgressEvent::Stage {
        name: stage.name,
        total: stage.sigmas.len().saturating_sub(1),
    });
    let mut report = |done, total| progress(ProgressEvent::Step { done, total });
    match stage.sampler {
        Sampler::Euler => {
            let mut lp = |v, a, _n: &mut dyn NoiseSource| {
                euler_denoising_loop(&sigmas, v, a, &mut *denoiser, &mut report)
            };
            denoise_audio_video(&stage.inputs, noise, &mut lp)
        }
        Sampler::EulerAncestral { noise_seed } => {
            let kind = noise.kind().unwrap_or_default();
            let mut loop_noise = PipelineNoise::new(kind, noise_seed);
            let stepper = EulerAncestralDiffusionStep::default();
            let dtype = stage.inputs.dtype;
            let mut lp = |v, a, _n: &mut dyn NoiseSource| {
                euler_ancestral_denoising_loop(
                    &sigmas,
                    v,
                    a,
                    &mut *denoiser,
                    &stepper,
                    &mut loop_noise,
                    dtype,
                    &mut report,
                )
            };
            denoise_audio_video(&stage.inputs, noise, &mut lp)
        }
        Sampler::Res2s => {
            // the reference seeds both on the pipeline's device: generators of the same kind
            let kind = noise.kind().unwrap_or_default();
            let mut sde = SeededSdeNoise::new(kind, (-1i64) as u64);
            sde.substep = SeededNoise::new(kind, 9999);
            let opts = Res2sOptions {
                model_dtype: stage.inputs.dtype,
                ..Default::default()
            };
            let mut lp = |v, a, _n: &mut dyn NoiseSource| {
                res2s_audio_video_denoising_loop(
                    &sigmas,
                    v,
                    a,
                    &mut *denoiser,
                    &mut sde,
                    opts,
                    &mut report,
                )
            };
            denoise_audio_video(&stage.inputs, noise, &mut lp)
        }
    }
}

/// The inputs of a first stage: pure noise (scale 1) over zeros at `shape`, audio generated.
pub fn first_stage_inputs<'a>(
    ledger: &'a ModelLedger,
    shape: &'a VideoPixelShape,
    conditionings: &'a [Box<dyn ConditioningItem>],
    audio: StageAudio<'a>,
) -> StageInputs<'a> {
    StageInputs {
        shape,
        conditionings,
        noise_scale: 1.0,
        initial_video: None,
        audio,
        dtype: ledger.dtype,
        device: &ledger.device,
    }
}

/// The distilled first stage (the distilled and IC-LoRA pipelines) at `shape`: the 8 distilled
/// sigmas with `sampler` and one conditional pass of `transformer` per step.
pub fn distilled_stage_1(
    ledger: &ModelLedger,
    sampler: Sampler,
    (shape, conditionings): (&VideoPixelShape, &[Box<dyn ConditioningItem>]),
    (transformer, contexts): (&X0Model, (Tensor, Tensor)),
    noise: &mut dyn NoiseSource,
    progress: &mut dyn FnMut(ProgressEvent),
) -> Result<StageOneOutput> {
    let stage = Stage {
        name: "denoise (stage 1)",
        sampler,
        sigmas: &super::constants::DISTILLED_SIGMA_VALUES,
        inputs: first_stage_inputs(ledger, shape, conditionings, StageAudio::FRESH),
    };
    let mut denoiser = SimpleDenoiser::new(transformer, contexts.clone());
    let (video, audio) = run_stage(&stage, &mut denoiser, noise, progress)?;
    Ok(StageOneOutput {
        video: video.latent,
        audio: audio.latent,
        contexts,
    })
}

/// What the guided first stage does with the audio.
#[derive(Clone, Copy)]
pub enum GuidedAudio<'a> {
    /// Generated with the audio guider of the request.
    Generate,
    /// Given (an encoded soundtrack) and kept clean; no guidance on it.
    Keep(&'a Tensor),
}

/// The first stage of the guided pipelines: the prompt and the negative prompt encoded, the frame
/// count predicted from them when the request asks for an automatic duration, the image
/// conditionings in `mode`, `guidance.num_inference_steps` steps of the LTX-2 schedule (with
/// `shift_for_tokens`, shifted for the stage's latent token count, else the default count) with
/// the multimodal guider at `1 / divisor` of the requested size (2: the first of two stages).
/// Returns the stage's latents and the request with its frame count known.
pub fn guided_stage(
    ledger: &ModelLedger,
    (req, guidance): (&GenerationRequest, &GuidanceRequest),
    (divisor, name): (usize, &'static str),
    (sampler, shift_for_tokens): (Sampler, bool),
    (mode, audio): (ImageConditioningMode, GuidedAudio<'_>),
    noise: &mut dyn NoiseSource,
    progress: &mut dyn FnMut(ProgressEvent),
) -> Result<(StageOneOutput, GenerationRequest)> {
    let mut contexts = encode_prompts(
        ledger,
        &[req.prompt.as_str(), guidance.negative_prompt.as_str()],
        req.enhancement().as_ref(),
        req.seed,
        progress,
    )?;
    let negative = contexts.pop().expect("two prompts");
    let positive = contexts.pop().expect("two prompts");
    let req = resolve_duration(ledger, req, (&positive.0, &positive.1), divisor > 1)?;
    let shape = &req.pixel_shape(divisor);
    let schedule_tokens = shift_for_tokens.then(|| {
        let frames = (shape.frames - 1) / 8 + 1;
        frames * (shape.height / 32) * (shape.width / 32)
    });
    let conds = ConditioningEncoder::new(ledger)?.images(mode, &req.images, shape.size())?;
    let transformer = ledger.transformer()?;
    check_schedule(guidance.num_inference_steps, schedule_tokens)?;
    let sigmas = Ltx2Scheduler::default().sigmas(guidance.num_inference_steps, schedule_tokens)?;
    let (mut denoiser, stage_audio) = match audio {
        GuidedAudio::Generate => (
            MultiModalDenoiser::from_guidance(&transformer, guidance, positive.clone(), negative)?,
            StageAudio::FRESH,
        ),
        GuidedAudio::Keep(latent) => (
            MultiModalDenoiser::new(
                &transformer,
                MultiModalGuiderFactory::constant(guidance.video_guider.clone(), Some(negative.0))?,
                Some(MultiModalGuiderFactory::constant(
                    MultiModalGuiderParams::default(),
                    None,
                )?),
                positive.clone(),
            ),
            StageAudio::Keep(latent),
        ),
    };
    let stage = Stage {
        name,
        sampler,
        sigmas: &sigmas,
        inputs: first_stage_inputs(ledger, shape, &conds, stage_audio),
    };
    let (video, audio) = run_stage(&stage, &mut denoiser, noise, progress)?;
    Ok((
        StageOneOutput {
            video: video.latent,
            audio: audio.latent,
            contexts: positive,
        },
        req,
    ))
}

/// Between the stages of the two-stage pipelines: the stage-1 video latent (first batch element)
/// upsampled x2 in latent space (with the encoder's latent statistics), and the image
/// conditionings re-encoded at the full size. The encoder comes from `encoder_ledger`, the
/// upsampler from `upsampler_ledger` (the reference's stage-1 and stage-2 ledgers).
pub fn upsample_for_stage_2(
    (encoder_ledger, upsampler_ledger): (&ModelLedger, &ModelLedger),
    stage_1_video: &Tensor,
    mode: ImageConditioningMode,
    images: &[ImageConditioningInput],
    size: (usize, usize),
    progress: &mut dyn FnMut(ProgressEvent),
) -> Result<(Tensor, Vec<Box<dyn ConditioningItem>>)> {
    progress(ProgressEvent::Stage {
        name: "upsample",
        total: 0,
    });
    let encoder = ConditioningEncoder::new(encoder_ledger)?;
    let upscaled = {
        let upsampler = upsampler_ledger.spatial_upsampler()?;
        ltx_core::model::upsampler::upsample_video(
            &stage_1_video.narrow(0, 0, 1)?,
            encoder.encoder.per_channel_statistics(),
            &upsampler,
        )?
    };
    let conds = encoder.images(mode, images, size)?;
    Ok((upscaled, conds))
}

/// The two ledgers of a two-stage pipeline: stage 1 with the full model, stage 2 with the
/// weights that refine (the distilled LoRA added).
#[derive(Clone, Debug)]
pub struct TwoStageLedgers {
    pub stage_1: ModelLedger,
    pub stage_2: ModelLedger,
}

impl TwoStageLedgers {
    /// Stage 2 is `ledger` with `distilled_lora` added.
    pub fn with_distilled_lora(ledger: ModelLedger, distilled_lora: &[LoraSpec]) -> Result<Self> {
        let stage_2 = ledger.with_additional_loras(distilled_lora)?;
        Ok(Self {
            stage_1: ledger,
            stage_2,
        })
    }
}

/// What tells the guided two-stage pipelines apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TwoStageFlow {
    pub sampler: Sampler,
    pub mode: ImageConditioningMode,
    /// Decode stage 1's audio and discard what stage 2 made of it (1.2.0's two-stage and HQ
    /// pipelines: stage 2 "refines video only"); else stage 2's audio is decoded.
    pub stage_1_audio: bool,
}

impl TwoStageFlow {
    pub const fn new(sampler: Sampler, mode: ImageConditioningMode) -> Self {
        Self {
            sampler,
            mode,
            stage_1_audio: false,
        }
    }

    /// This flow decoding stage 1's audio.
    pub const fn with_stage_1_audio(self) -> Self {
        Self {
            stage_1_audio: true,
            ..self
        }
    }
}

/// The guided two-stage pipelines (two-stage, HQ, keyframe interpolation): their ledgers and flow;
/// `run` is [`guided_two_stages`].
pub trait GuidedTwoStages {
    /// How this pipeline runs the shared flow.
    const FLOW: TwoStageFlow;

    fn ledgers(&self) -> &TwoStageLedgers;

    /// Checks what only this pipeline needs before any model is loaded.
    fn validate(&self, _req: &GenerationRequest) -> Result<()> {
        Ok(())
    }

    /// Runs the pipeline; decoded video chunks go to the sink, the audio is returned.
    fn run(&self, request: GuidedRequest, io: RunIo) -> Result<Audio> {
        self.validate(request.0)?;
        guided_two_stages(self.ledgers(), Self::FLOW, request, io)
    }
}

/// What stage 1 of a two-stage pipeline hands to stage 2: the video and audio latents in grid
/// layout and the positive (video, audio) prompt contexts.
pub struct StageOneOutput {
    pub video: Tensor,
    pub audio: Tensor,
    pub contexts: (Tensor, Tensor),
}

/// Stage 2 of a two-stage pipeline: `ledgers.0` encodes (the stage-1 ledger), `ledgers.1`
/// upsamples, refines and decodes.
#[derive(Clone, Copy)]
pub struct StageTwo<'a> {
    pub ledgers: (&'a ModelLedger, &'a ModelLedger),
    pub flow: TwoStageFlow,
    pub req: &'a GenerationRequest,
}

impl StageTwo<'_> {
    /// The x2 upsampling and the distilled refinement of `stage_1` at full size. `keep_audio`: the
    /// audio is a given soundtrack kept clean (audio-to-video), otherwise it is refined too.
    /// `transformer`: the refining transformer when stage 1's serves (the distilled pipelines),
    /// `None` to build the stage-2 ledger's.
    pub fn refine(
        &self,
        stage_1: &StageOneOutput,
        (keep_audio, transformer): (bool, Option<&X0Model>),
        noise: &mut dyn NoiseSource,
        progress: &mut dyn FnMut(ProgressEvent),
    ) -> Result<(LatentState, LatentState)> {
        let ledger = self.ledgers.1;
        let shape = self.req.pixel_shape(1);
        let (upscaled, conds) = upsample_for_stage_2(
            self.ledgers,
            &stage_1.video,
            self.flow.mode,
            &self.req.images,
            shape.size(),
            progress,
        )?;
        let audio = if keep_audio {
            StageAudio::Keep(&stage_1.audio)
        } else {
            StageAudio::Generate {
                initial: Some(&stage_1.audio),
                conditioning: None,
            }
        };
        let built;
        let transformer = match transformer {
            Some(t) => t,
            None => {
                built = ledger.transformer()?;
                &built
            }
        };
        let mut denoiser = SimpleDenoiser::new(transformer, stage_1.contexts.clone());
        let stage = Stage {
            name: "denoise (stage 2)",
            sampler: self.flow.sampler,
            sigmas: &STAGE_2_DISTILLED_SIGMA_VALUES,
            inputs: StageInputs {
                shape: &shape,
                conditionings: &conds,
                noise_scale: STAGE_2_DISTILLED_SIGMA_VALUES[0] as f64,
                initial_video: Some(&upscaled),
                audio,
                dtype: ledger.dtype,
                device: &ledger.device,
            },
        };
        run_stage(&stage, &mut denoiser, noise, progress)
    }

    /// [`Self::refine`] (audio refined too; `transformer` is dropped after it), then both latents
    /// decoded.
    pub fn finish(
        &self,
        stage_1: StageOneOutput,
        transformer: Option<X0Model>,
        noise: &mut dyn NoiseSource,
        progress: &mut dyn FnMut(ProgressEvent),
        sink: &mut dyn FnMut(Tensor) -> Result<()>,
    ) -> Result<Audio> {
        let refine = (false, transformer.as_ref());
        let (video, audio) = self.refine(&stage_1, refine, noise, progress)?;
        drop(transformer);
        // stage 2 always denoises the audio too (the video attends to it, and its noise is drawn)
        let audio = if self.flow.stage_1_audio {
            stage_1.audio
        } else {
            audio.latent
        };
        let latents = (&video.latent, &audio);
        decode_outputs(
            self.ledgers.1,
            latents,
            self.req.tiling.as_ref(),
            progress,
            sink,
        )
    }
}

/// The guided two-stage flow (`ti2vid_two_stages`, its HQ variant and keyframe interpolation):
/// the guided stage 1 at half size on `stage_1`, the x2 upsampler, the distilled refinement on
/// `stage_2`, then decoding. The res_2s sampler shifts its schedule for the stage-1 token count
/// (the HQ pipeline); Euler uses the scheduler's default.
pub fn guided_two_stages(
    ledgers: &TwoStageLedgers,
    flow: TwoStageFlow,
    (req, guidance): GuidedRequest,
    io: RunIo,
) -> Result<Audio> {
    let RunIo { progress, sink } = io;
    req.validate_with_auto_duration(true)?;
    guidance.validate()?;
    check_duration_source(&ledgers.stage_1, req)?;
    let mut noise = PipelineNoise::new(req.noise, req.seed);
    let (stage_1, req) = guided_stage(
        &ledgers.stage_1,
        (req, guidance),
        (2, "denoise (stage 1)"),
        (flow.sampler, flow.sampler == Sampler::Res2s),
        (flow.mode, GuidedAudio::Generate),
        &mut noise,
        progress,
    )?;
    let req = &req;
    let stage_2 = StageTwo {
        ledgers: (&ledgers.stage_1, &ledgers.stage_2),
        flow,
        req,
    };
    stage_2.finish(stage_1, None, &mut noise, progress, sink)
}
