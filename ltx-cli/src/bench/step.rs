//! `ltx bench step`: one denoising step of a pipeline — the noised initial state, every guidance
//! pass of the step, the guider's combination and the Euler update — on a model of `--blocks`
//! full-width blocks of a released layout, at the stage-1 or stage-2 size of a 768x512x121
//! generation. Both sides run the same `denoise_loop` fixture file: the reference's
//! `denoise_audio_video` / `GuidedDenoiser` loop and ltx-rs's, the noise draws replayed from it.

use std::collections::HashMap;

use anyhow::{bail, Result};
use candle_core::{DType, Device};
use ltx_core::device::DTypeChoice;
use ltx_core::loader::synthetic::save_safetensors;
use ltx_core::model::transformer::X0Model;
use ltx_core::types::{
    AudioLatentParams, AudioLatentShape, SpatioTemporalScaleFactors, VideoLatentShape,
    VideoPixelShape,
};
use ltx_parity::Fixture;
use ltx_pipelines::utils::model_ledger::ModelLedger;
use serde_json::{json, Value};

use super::dit::{context_widths, random_transformer, side, Inputs, Layout};
use super::{compare_sides, threads, time_runs, workdir, Bench, CommonArgs, WorkerArgs};

/// `--pipeline`: which pipeline's step (its guidance passes and sigmas).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepPipeline {
    /// The distilled pipeline: one conditional pass per step.
    Distilled,
    /// The two-stage pipeline's first stage: multimodal guidance (CFG, STG, modality isolation:
    /// four passes per step) with the reference's default guider parameters.
    TwoStage,
}

#[derive(clap::Args)]
pub struct StepArgs {
    /// Released layout.
    #[arg(long, value_enum, default_value_t = Layout::Ltx23)]
    layout: Layout,
    /// Which pipeline's step.
    #[arg(long, value_enum, default_value_t = StepPipeline::Distilled)]
    pipeline: StepPipeline,
    /// 1: the half-resolution first stage (384x256, 1536 video tokens); 2: the full-resolution
    /// refinement (768x512, 6144 video tokens). 121 frames at 24 fps either way.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=2))]
    stage: u8,
    /// Full-width blocks in the model.
    #[arg(long, default_value_t = 1)]
    blocks: usize,
    /// Text-context tokens of each modality (the pipelines pad prompts to 1024).
    #[arg(long, default_value_t = 1024)]
    context_tokens: usize,
    #[command(flatten)]
    common: CommonArgs,
}

const FRAMES: usize = 121;
const FPS: f64 = 24.0;

/// The pixel size of a stage of a 768x512 generation.
fn stage_size(stage: u8) -> (usize, usize) {
    match stage {
        1 => (384, 256),
        _ => (768, 512),
    }
}

/// The call of the fixture: one Euler step from the stage's first sigma, with the pipeline's
/// guidance. STG perturbs block 0 (the released default, block 29, exists only in a full model).
fn call(args: &StepArgs) -> Value {
    let (width, height) = stage_size(args.stage);
    // the distilled schedules' first step of each stage; the two-stage pipeline starts at 1 too
    let (sigmas, noise_scale) = match (args.pipeline, args.stage) {
        (StepPipeline::Distilled, 2) => (vec![0.909375, 0.725], 0.909375),
        (StepPipeline::Distilled, _) => (vec![1.0, 0.99375], 1.0),
        (StepPipeline::TwoStage, _) => (vec![1.0, 0.9937], 1.0),
    };
    let guidance = match args.pipeline {
        StepPipeline::Distilled => json!({"kind": "simple"}),
        StepPipeline::TwoStage => {
            let params = |cfg: f64| {
                json!({"cfg_scale": cfg, "stg_scale": 1.0, "stg_blocks": [0], "rescale_scale": 0.7,
                       "modality_scale": 3.0, "skip_step": 0})
            };
            json!({"kind": "multimodal", "video": params(3.0), "audio": params(7.0)})
        }
    };
    json!({
        "model_type": "audio_video", "frames": FRAMES, "height": height, "width": width,
        "fps": FPS, "loop": "euler", "sigmas": sigmas, "noise_scale": noise_scale,
        "guidance": guidance,
    })
}

pub(super) fn step(args: StepArgs, device: &Device, dtype: Option<DTypeChoice>) -> Result<()> {
    let side = side(device, dtype, "bench step")?;
    if args.blocks == 0 || args.context_tokens == 0 {
        bail!("--blocks and --context-tokens must be positive");
    }
    let name = format!(
        "step_{:?}_{:?}_stage{}_{}_{}.safetensors",
        args.layout, args.pipeline, args.stage, args.blocks, args.context_tokens
    )
    .to_lowercase();
    let file = workdir(&args.common)?.join(name);
    if !file.exists() {
        eprintln!("writing weights and inputs to {}", file.display());
        write_input(&file, &args)?;
    }
    let (width, height) = stage_size(args.stage);
    println!(
        "step layout={:?} pipeline={:?} stage={} ({width}x{height}x{FRAMES}) blocks={} \
         context_tokens={} {} {} threads={}",
        args.layout,
        args.pipeline,
        args.stage,
        args.blocks,
        args.context_tokens,
        side.dtype,
        side.device,
        threads(&args.common)
    );
    compare_sides(
        Bench::Step,
        &file,
        &args.common,
        ("bench_component.py", side),
    )
}

/// A `denoise_loop` fixture-format file: the model's weights and config, the call, the prompt
/// contexts (and negative ones for guided kinds) and the noiser's two draws (video, audio), all
/// N(0, 1) rounded to bf16.
fn write_input(path: &std::path::Path, args: &StepArgs) -> Result<()> {
    let (config, cfg, mut tensors) = random_transformer(args.layout, args.blocks)?;
    let call = call(args);
    let (width, height) = stage_size(args.stage);
    let pixels = VideoPixelShape {
        batch: 1,
        frames: FRAMES,
        height,
        width,
        fps: FPS,
    };
    let video = VideoLatentShape::from_pixel_shape(
        &pixels,
        cfg.in_channels,
        SpatioTemporalScaleFactors::default(),
    );
    let audio = AudioLatentShape::from_video_pixel_shape(&pixels, AudioLatentParams::default())?;
    let mut inputs = Inputs::new();
    let (vw, aw) = context_widths(&cfg);
    let mut contexts = vec![("video_context", vw), ("audio_context", aw)];
    if args.pipeline != StepPipeline::Distilled {
        contexts.extend([("video_context_neg", vw), ("audio_context_neg", aw)]);
    }
    for (name, w) in contexts {
        let t = inputs.normal(&[1, args.context_tokens, w])?;
        tensors.insert(format!("input.{name}"), t);
    }
    let audio_channels = audio.channels * audio.mel_bins;
    let draws = [
        [1, video.token_count(), cfg.in_channels],
        [1, audio.token_count(), audio_channels],
    ];
    for (i, dims) in draws.iter().enumerate() {
        tensors.insert(format!("input.noise_{i}"), inputs.normal(dims)?);
    }
    let metadata = HashMap::from([
        ("component".to_string(), "denoise_loop".to_string()),
        ("config".to_string(), config.to_string()),
        ("call".to_string(), call.to_string()),
        (
            "reference_version".to_string(),
            ltx_parity::REFERENCE_VERSION.to_string(),
        ),
    ]);
    save_safetensors(path, &tensors, metadata)?;
    Ok(())
}

/// Times one step of the file's loop on the pipelines' model loading path.
pub(super) fn worker_step(args: &WorkerArgs, device: &Device, dtype: DType) -> Result<()> {
    let mut ledger =
        ModelLedger::new(dtype, device.clone(), args.file.clone(), None, None, vec![])?;
    ledger.memory = args.memory.policy();
    let x0: X0Model = ledger.transformer()?;
    let fx = Fixture::open(&args.file)?;
    let inputs = fx.io("input.", device)?;
    time_runs(args, device, || {
        if args.fresh_text_kv {
            x0.velocity_model.clear_text_kv_cache();
        }
        let out = ltx_parity::denoise_loop::run_with_model(&fx, &inputs, &x0, dtype, device, None)?;
        drop(out);
        Ok(())
    })
}
