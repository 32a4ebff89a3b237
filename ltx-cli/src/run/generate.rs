//! The text/image-to-video commands: `generate` / `distilled`, `one-stage`, `two-stage`,
//! `two-stage-hq`, `keyframe-interpolation`, `a2vid`, `ic-lora`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::Device;
use ltx_core::device::DTypeChoice;
use ltx_pipelines::a2vid_two_stage::{A2VidTwoStagePipeline, AudioInput};
use ltx_pipelines::distilled::DistilledPipeline;
use ltx_pipelines::ic_lora::{
    check_request, reference_downscale_factor, ICLoraPipeline, IcLoraRequest,
    VideoConditioningInput,
};
use ltx_pipelines::keyframe_interpolation::KeyframeInterpolationPipeline;
use ltx_pipelines::ti2vid_one_stage::TI2VidOneStagePipeline;
use ltx_pipelines::ti2vid_two_stages::TI2VidTwoStagesPipeline;
use ltx_pipelines::ti2vid_two_stages_hq::TI2VidTwoStagesHQPipeline;
use ltx_pipelines::utils::constants::PipelineParams;
use ltx_pipelines::utils::duration::AutoDuration;
use ltx_pipelines::utils::model_ledger::LoraSpec;
use ltx_pipelines::utils::request::{GenerationRequest, GuidanceRequest};
use ltx_pipelines::utils::stages::GuidedTwoStages;

use super::{coreml, tiling, Loaded, Output, Target};
use crate::args::inputs::{self, check_output, check_readable, unit_strength};
use crate::args::pipelines::{
    A2VidArgs, DistilledArgs, IcLoraArgs, OneStageArgs, TwoStageArgs, TwoStageHqArgs,
};
use crate::args::{CommonArgs, GuidanceArgs, VaeBackend};
use crate::hub::Variant;
use crate::weights::{self, Needs};

/// Which pipeline a command runs, with what only it takes.
enum Pipeline {
    Distilled,
    OneStage {
        guidance: GuidanceArgs,
    },
    TwoStage {
        guidance: GuidanceArgs,
        distilled_lora: Option<LoraSpec>,
    },
    KeyframeInterpolation {
        guidance: GuidanceArgs,
        distilled_lora: Option<LoraSpec>,
    },
    TwoStageHq {
        guidance: GuidanceArgs,
        distilled_lora: Option<LoraSpec>,
        strengths: (f64, f64),
    },
    A2Vid {
        guidance: GuidanceArgs,
        distilled_lora: Option<LoraSpec>,
        audio: AudioInput,
    },
    IcLora(IcLoraRequest),
}

impl Pipeline {
    /// Whether the pipeline can predict its frame count (as the reference: not keyframe
    /// interpolation, A2V or IC-LoRA, whose length comes from their inputs).
    fn predicts_duration(&self) -> bool {
        matches!(
            self,
            Self::Distilled
                | Self::OneStage { .. }
                | Self::TwoStage { .. }
                | Self::TwoStageHq { .. }
        )
    }

    fn two_stage(&self) -> bool {
        !matches!(self, Self::OneStage { .. })
    }

    fn guidance(&self) -> Option<&GuidanceArgs> {
        match self {
            Self::OneStage { guidance }
            | Self::TwoStage { guidance, .. }
            | Self::KeyframeInterpolation { guidance, .. }
            | Self::TwoStageHq { guidance, .. }
            | Self::A2Vid { guidance, .. } => Some(guidance),
            Self::Distilled | Self::IcLora(_) => None,
        }
    }

    /// The distilled LoRA the user gave, and whether the Hub's is wanted instead.
    fn distilled_lora(&self) -> Option<Option<&LoraSpec>> {
        match self {
            Self::TwoStage { distilled_lora, .. }
            | Self::KeyframeInterpolation { distilled_lora, .. }
            | Self::TwoStageHq { distilled_lora, .. }
            | Self::A2Vid { distilled_lora, .. } => Some(distilled_lora.as_ref()),
            _ => None,
        }
    }

    /// The preset defaults of this pipeline (the HQ pipeline has its own whatever the
    /// checkpoint).
    fn params(&self, detected: &PipelineParams) -> PipelineParams {
        match self {
            Self::TwoStageHq { .. } => PipelineParams::ltx_2_3_hq(),
            _ => detected.clone(),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Self::Distilled => "distilled",
            Self::OneStage { .. } => "one-stage",
            Self::TwoStage { .. } => "two-stage",
            Self::KeyframeInterpolation { .. } => "keyframe-interpolation",
            Self::TwoStageHq { .. } => "two-stage HQ",
            Self::A2Vid { .. } => "a2vid",
            Self::IcLora(_) => "ic-lora",
        }
    }
}

/// `--distilled-lora PATH [STRENGTH]`.
fn distilled_lora(flat: &[String]) -> Result<Option<LoraSpec>> {
    let mut loras = inputs::loras(flat)?;
    if loras.len() > 1 {
        bail!("--distilled-lora takes one PATH [STRENGTH]");
    }
    Ok(loras.pop())
}

pub fn distilled(args: DistilledArgs, device: &Device, dtype: Option<DTypeChoice>) -> Result<()> {
    run(
        args.common,
        Pipeline::Distilled,
        &Target::new(device, dtype),
    )
}

pub fn one_stage(args: OneStageArgs, device: &Device, dtype: Option<DTypeChoice>) -> Result<()> {
    let pipeline = Pipeline::OneStage {
        guidance: args.guided.guidance,
    };
    run(args.guided.common, pipeline, &Target::new(device, dtype))
}

pub fn two_stage(args: TwoStageArgs, device: &Device, dtype: Option<DTypeChoice>) -> Result<()> {
    let (common, guidance, distilled_lora) = two_stage_args(args)?;
    let pipeline = Pipeline::TwoStage {
        guidance,
        distilled_lora,
    };
    run(common, pipeline, &Target::new(device, dtype))
}

pub fn keyframe_interpolation(
    args: TwoStageArgs,
    device: &Device,
    dtype: Option<DTypeChoice>,
) -> Result<()> {
    let (common, guidance, distilled_lora) = two_stage_args(args)?;
    if common.images.is_empty() {
        bail!("keyframe interpolation needs at least one --image PATH FRAME_IDX STRENGTH");
    }
    let pipeline = Pipeline::KeyframeInterpolation {
        guidance,
        distilled_lora,
    };
    run(common, pipeline, &Target::new(device, dtype))
}

/// The parts of `two-stage` / `keyframe-interpolation`, the distilled LoRA checked.
fn two_stage_args(args: TwoStageArgs) -> Result<(CommonArgs, GuidanceArgs, Option<LoraSpec>)> {
    let lora = distilled_lora(&args.distilled_lora)?;
    Ok((args.guided.common, args.guided.guidance, lora))
}

pub fn two_stage_hq(
    args: TwoStageHqArgs,
    device: &Device,
    dtype: Option<DTypeChoice>,
) -> Result<()> {
    let strengths = (
        args.distilled_lora_strength_stage_1,
        args.distilled_lora_strength_stage_2,
    );
    let distilled_lora = match args.distilled_lora {
        Some(path) => Some(inputs::lora(path, strengths.0)?),
        None => None,
    };
    for s in [strengths.0, strengths.1] {
        if !s.is_finite() {
            bail!("--distilled-lora-strength-stage-*: {s} is not finite");
        }
    }
    let pipeline = Pipeline::TwoStageHq {
        guidance: args.guided.guidance,
        distilled_lora,
        strengths,
    };
    run(args.guided.common, pipeline, &Target::new(device, dtype))
}

pub fn a2vid(args: A2VidArgs, device: &Device, dtype: Option<DTypeChoice>) -> Result<()> {
    check_readable("audio file", &args.audio_path)?;
    let audio = AudioInput {
        path: args.audio_path,
        start_time: args.audio_start_time,
        max_duration: args.audio_max_duration,
    };
    let pipeline = Pipeline::A2Vid {
        distilled_lora: distilled_lora(&args.distilled_lora)?,
        guidance: args.guided.guidance,
        audio,
    };
    run(args.guided.common, pipeline, &Target::new(device, dtype))
}

pub fn ic_lora(args: IcLoraArgs, device: &Device, dtype: Option<DTypeChoice>) -> Result<()> {
    let mut video_conditioning = Vec::new();
    for pair in args.video_conditioning.chunks(2) {
        let [path, strength] = pair else {
            bail!("--video-conditioning needs PATH STRENGTH");
        };
        let path = PathBuf::from(path);
        check_readable("conditioning video", &path)?;
        video_conditioning.push(VideoConditioningInput {
            path,
            strength: unit_strength("--video-conditioning STRENGTH", strength)?,
        });
    }
    let (attention_mask, strength) = match args.conditioning_attention_mask.as_slice() {
        [] => (None, args.conditioning_attention_strength),
        [path, strength] => {
            let path = PathBuf::from(path);
            check_readable("attention mask video", &path)?;
            let s = unit_strength("--conditioning-attention-mask STRENGTH", strength)?;
            (Some(path), s)
        }
        _ => bail!("--conditioning-attention-mask needs MASK_PATH STRENGTH"),
    };
    let ic = IcLoraRequest {
        video_conditioning,
        attention_mask,
        conditioning_attention_strength: strength,
        skip_stage_2: args.skip_stage_2,
    };
    ic.validate()?;
    run(
        args.common,
        Pipeline::IcLora(ic),
        &Target::new(device, dtype),
    )
}

/// The request with the preset's defaults filled in. The presets of LTX-2 and LTX-2.3 share their
/// size, length, rate and seed, so the request is complete before the checkpoint is known; the
/// tiny model defaults to 768x512x121.
fn request(args: &CommonArgs, pipeline: &Pipeline, tiny: bool) -> Result<GenerationRequest> {
    let params = pipeline.params(&PipelineParams::ltx_2());
    let (def_h, def_w) = if tiny {
        (512, 768)
    } else if pipeline.two_stage() {
        (params.stage_2_height(), params.stage_2_width())
    } else {
        (params.stage_1_height, params.stage_1_width)
    };
    let req = GenerationRequest {
        prompt: args.prompt.clone(),
        seed: args.seed.unwrap_or(params.seed),
        noise: args.run.noise.kind(),
        height: args.height.unwrap_or(def_h),
        width: args.width.unwrap_or(def_w),
        num_frames: args.num_frames.unwrap_or(params.num_frames),
        frame_rate: args.frame_rate.unwrap_or(params.frame_rate),
        images: inputs::images(&args.images)?,
        tiling: tiling(args.run.tiled_decode),
        enhance_prompt: inputs::enhancement(&args.run)?,
        auto_duration: None,
    };
    req.validate(pipeline.two_stage())?;
    inputs::check_images(&req.images)?;
    Ok(req)
}

/// What weights a pipeline needs (`num_frames_omitted`: the frame count may be predicted).
fn needs(pipeline: &Pipeline, num_frames_omitted: bool) -> Needs {
    let variant = match pipeline {
        Pipeline::Distilled | Pipeline::IcLora(_) => Variant::Distilled,
        _ => Variant::Dev,
    };
    Needs {
        variant,
        upsampler: pipeline.two_stage(),
        hub_distilled_lora: pipeline.distilled_lora() == Some(None),
        duration_head: pipeline.predicts_duration() && num_frames_omitted,
    }
}

fn run(args: CommonArgs, pipeline: Pipeline, target: &Target) -> Result<()> {
    let started = Instant::now();
    // everything that needs no model, before any download or load
    check_output(&args.output_path, args.run.force)?;
    let loras = inputs::loras(&args.run.loras)?;
    let local = !args.model.weights.path_flags().is_empty();
    let tiny = !local && args.model.weights.model.is_none();
    let asked_window = inputs::auto_duration(args.auto_duration.as_deref())?;
    if asked_window.is_some() && !pipeline.predicts_duration() {
        bail!(
            "--auto-duration is available with distilled, one-stage, two-stage and two-stage-hq, \
             not {}",
            pipeline.name()
        );
    }
    let mut req = request(&args, &pipeline, tiny)?;
    if asked_window.is_some() && args.num_frames.is_some() {
        tracing::warn!("both --num-frames and --auto-duration were given: using --num-frames");
    }
    if let Some(g) = pipeline.guidance() {
        inputs::check_guidance(g)?;
    }
    coreml::check_flags(&args.model.vae, args.run.tiled_decode)?;
    if pipeline.distilled_lora() == Some(None) && local && args.model.weights.model.is_none() {
        bail!(
            "--distilled-lora is required by the {} pipeline with local model files",
            pipeline.name()
        );
    }
    let (out_h, out_w) = match &pipeline {
        Pipeline::IcLora(ic) => {
            if !tiny && loras.is_empty() {
                bail!("ic-lora needs the IC-LoRA: --lora PATH [STRENGTH]");
            }
            check_request(&req, ic, reference_downscale_factor(&loras)?)?;
            ICLoraPipeline::output_size(&req, ic)
        }
        _ => (req.height, req.width),
    };
    let audio_rate = match &pipeline {
        // the output carries the input soundtrack at its own rate
        Pipeline::A2Vid { audio, .. } => {
            ltx_pipelines::media::audio::load_audio(
                &audio.path,
                audio.start_time,
                audio.max_duration,
            )?
            .sample_rate
        }
        _ => 0,
    };

    let weights = weights::resolve(
        &args.model.weights,
        needs(&pipeline, args.num_frames.is_none()),
    )?;
    let distilled_lora = match pipeline.distilled_lora() {
        Some(given) => weights.distilled_lora(given.cloned(), pipeline.name())?,
        None => None,
    };
    let mut loaded = Loaded::new(weights, loras, target, args.model.memory.policy())?;
    if pipeline.predicts_duration() && args.num_frames.is_none() {
        // --auto-duration, or --num-frames omitted on a checkpoint with a duration head
        let has_head = loaded.ledger.duration_predictor()?.is_some();
        req.auto_duration = match asked_window {
            Some(_) if !has_head => bail!(
                "--auto-duration needs a duration head (LTX-2.5): {}; pass --duration-head-path \
                 or --num-frames",
                match &loaded.ledger.paths.duration_head {
                    Some(p) => format!("`{}` has none", p.display()),
                    None => "none given".into(),
                }
            ),
            Some(w) => Some(w),
            None => has_head.then(AutoDuration::default),
        };
        if req.auto_duration.is_some() && args.model.vae.vae_backend != VaeBackend::Candle {
            bail!("a Core ML decoder is exported for one frame count: pass --num-frames");
        }
    }
    let guidance = pipeline
        .guidance()
        .map(|g| -> Result<GuidanceRequest> {
            let params = pipeline.params(&loaded.facts.params);
            let g = inputs::guidance(g, &params, loaded.weights.tiny);
            g.validate()?;
            g.validate_for_model(loaded.facts.num_blocks)?;
            Ok(g)
        })
        .transpose()?;
    loaded.apply_vae_backend(
        &args.model.vae,
        (req.num_frames, out_h, out_w),
        args.run.tiled_decode,
    )?;
    let audio_rate = if audio_rate > 0 {
        audio_rate
    } else {
        loaded.facts.audio_rate
    };
    let mut output = Output::create(
        &args.output_path,
        (out_w, out_h),
        req.frame_rate,
        audio_rate,
        started,
    )?;
    let ledger = loaded.ledger;
    let guided = |g: &Option<GuidanceRequest>| g.clone().context("guided pipelines have guidance");
    let loras: Vec<LoraSpec> = distilled_lora.into_iter().collect();
    let audio = match pipeline {
        Pipeline::Distilled => output.run(|io| DistilledPipeline::new(ledger).run(&req, io))?,
        Pipeline::OneStage { .. } => {
            let g = guided(&guidance)?;
            output.run(|io| TI2VidOneStagePipeline::new(ledger).run((&req, &g), io))?
        }
        Pipeline::TwoStage { .. } => {
            let (g, p2) = (
                guided(&guidance)?,
                TI2VidTwoStagesPipeline::new(ledger, &loras)?,
            );
            output.run(|io| p2.run((&req, &g), io))?
        }
        Pipeline::KeyframeInterpolation { .. } => {
            let g = guided(&guidance)?;
            let p2 = KeyframeInterpolationPipeline::new(ledger, &loras)?;
            output.run(|io| p2.run((&req, &g), io))?
        }
        Pipeline::TwoStageHq { strengths, .. } => {
            let g = guided(&guidance)?;
            let lora = loras.first().map(|l| l.path.as_path());
            let p2 = TI2VidTwoStagesHQPipeline::new(ledger, lora, strengths)?;
            output.run(|io| p2.run((&req, &g), io))?
        }
        Pipeline::A2Vid { ref audio, .. } => {
            let g = guided(&guidance)?;
            let p2 = A2VidTwoStagePipeline::new(ledger, &loras)?;
            output.run(|io| p2.run((&req, &g), audio, io))?
        }
        Pipeline::IcLora(ref ic) => {
            let p2 = ICLoraPipeline::new(ledger)?;
            output.run(|io| p2.run(&req, ic, io))?
        }
    };
    output.finish(&audio, "")?;
    Ok(())
}
