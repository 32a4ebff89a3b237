//! `ltx bench dit-block`: one full-width audio-video transformer block of a released layout (with
//! the model's embeddings and output projections: an `LTXModel` with one block), the same
//! bf16-rounded random weights and inputs on both sides, one velocity forward timed per run. The
//! defaults are stage 1 of a 768x512x121 generation: 1536 video tokens (16 x 8 x 12 latent
//! grid), 126 audio tokens, 1024 context tokens.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{bail, Result};
use candle_core::{DType, Device, Tensor};
use ltx_core::components::patchifiers::{AudioPatchifier, VideoLatentPatchifier};
use ltx_core::device::DTypeChoice;
use ltx_core::loader::synthetic::{random_weights, save_safetensors, SplitMix64};
use ltx_core::loader::SafetensorsFiles;
use ltx_core::model::transformer::presets::{released_transformer_config, TransformerLayout};
use ltx_core::model::transformer::{LtxModel, LtxModelConfig, LtxModelType, Modality};
use ltx_core::tools::{AudioLatentTools, LatentTools, VideoLatentTools};
use ltx_core::types::{AudioLatentShape, VideoLatentShape};
use ltx_pipelines::utils::model_ledger::ModelLedger;
use serde_json::json;

use super::{
    compare_sides, input_dict, threads, time_runs, workdir, Bench, CommonArgs, Side, WorkerArgs,
};

/// `--layout`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// LTX-2 (19B).
    Ltx2,
    /// LTX-2.3 (22B).
    Ltx23,
}

impl From<Layout> for TransformerLayout {
    fn from(l: Layout) -> Self {
        match l {
            Layout::Ltx2 => TransformerLayout::Ltx2,
            Layout::Ltx23 => TransformerLayout::Ltx23,
        }
    }
}

#[derive(clap::Args)]
pub struct DitBlockArgs {
    /// Released layout.
    #[arg(long, value_enum, default_value_t = Layout::Ltx23)]
    layout: Layout,
    /// Video tokens: a multiple of 96 makes an F x 8 x 12 latent grid, anything else a 1 x 1 x N
    /// one.
    #[arg(long, default_value_t = 1536)]
    video_tokens: usize,
    /// Audio tokens (latent frames: 25 a second).
    #[arg(long, default_value_t = 126)]
    audio_tokens: usize,
    /// Text-context tokens of each modality.
    #[arg(long, default_value_t = 1024)]
    context_tokens: usize,
    /// Full-width blocks in the model.
    #[arg(long, default_value_t = 1)]
    blocks: usize,
    #[command(flatten)]
    common: CommonArgs,
}

/// The video latent grid `(F, H, W)` of `tokens` tokens.
fn video_grid(tokens: usize) -> (usize, usize, usize) {
    if tokens % 96 == 0 {
        (tokens / 96, 8, 12)
    } else {
        (1, 1, tokens)
    }
}

/// The `--device` / `--dtype` both sides of the transformer benchmarks (`what`) run in: f32 by
/// default on the CPU, bf16 on CUDA.
pub(super) fn side(device: &Device, dtype: Option<DTypeChoice>, what: &str) -> Result<Side> {
    let device_name = match device {
        Device::Cpu => "cpu",
        Device::Cuda(_) => "cuda",
        Device::Metal(_) => {
            bail!("{what}: the reference has no Metal path to compare with")
        }
    };
    let dtype = match ltx_core::device::resolve_dtype(dtype, device) {
        DType::F32 => "f32",
        DType::BF16 => "bf16",
        other => bail!("{what} compares f32 or bf16, not {other:?}"),
    };
    Ok(Side {
        device: device_name,
        dtype,
    })
}

pub(super) fn dit_block(
    args: DitBlockArgs,
    device: &Device,
    dtype: Option<DTypeChoice>,
) -> Result<()> {
    let side = side(device, dtype, "bench dit-block")?;
    if [
        args.video_tokens,
        args.audio_tokens,
        args.context_tokens,
        args.blocks,
    ]
    .contains(&0)
    {
        bail!("--video-tokens, --audio-tokens, --context-tokens and --blocks must be positive");
    }
    let name = format!(
        "dit_block_{:?}_{}_{}_{}_{}.safetensors",
        args.layout, args.video_tokens, args.audio_tokens, args.context_tokens, args.blocks
    )
    .to_lowercase();
    let file = workdir(&args.common)?.join(name);
    if !file.exists() {
        eprintln!("writing weights and inputs to {}", file.display());
        write_input(&file, &args)?;
    }
    println!(
        "dit-block layout={:?} blocks={} video_tokens={} audio_tokens={} context_tokens={} {} {} \
         threads={}",
        args.layout,
        args.blocks,
        args.video_tokens,
        args.audio_tokens,
        args.context_tokens,
        side.dtype,
        side.device,
        threads(&args.common)
    );
    compare_sides(
        Bench::DitBlock,
        &file,
        &args.common,
        ("bench_component.py", side),
    )
}

/// A released layout with `blocks` full-width blocks: its checkpoint config, the parsed config and
/// bf16-rounded random weights under the checkpoint keys.
pub(super) fn random_transformer(
    layout: Layout,
    blocks: usize,
) -> Result<(serde_json::Value, LtxModelConfig, HashMap<String, Tensor>)> {
    let config = released_transformer_config(layout.into(), blocks);
    let cfg = LtxModelConfig::from_checkpoint_config(&config, LtxModelType::AudioVideo)?;
    let tensors = random_weights(0, DType::BF16, "model.diffusion_model.", |vb| {
        LtxModel::new(&cfg, LtxModelType::AudioVideo, vb).map_err(ltx_core::Error::from)
    })?;
    Ok((config, cfg, tensors))
}

/// N(0, 1) tensors rounded to bf16 (stored as f32), from a fixed stream.
pub(super) struct Inputs(SplitMix64);

impl Inputs {
    pub(super) fn new() -> Self {
        Self(SplitMix64::new(7))
    }

    pub(super) fn normal(&mut self, dims: &[usize]) -> Result<Tensor> {
        let n: usize = dims.iter().product();
        let v: Vec<f32> = (0..n).map(|_| self.0.normal()).collect();
        Ok(Tensor::from_vec(v, dims, &Device::Cpu)?
            .to_dtype(DType::BF16)?
            .to_dtype(DType::F32)?)
    }
}

/// The text-context widths `(video, audio)` the model takes.
pub(super) fn context_widths(cfg: &LtxModelConfig) -> (usize, usize) {
    match cfg.caption_channels {
        Some(c) => (c, c),
        None => (cfg.inner_dim(), cfg.audio_inner_dim()),
    }
}

/// A fixture-format file: an `LTXModel` with one full-width block (bf16-rounded random weights
/// under the checkpoint keys), the layout's config, and the `Modality` inputs of both streams
/// (latents and contexts N(0, 1) rounded to bf16, positions from the latent tools, sigma 0.7).
fn write_input(path: &std::path::Path, args: &DitBlockArgs) -> Result<()> {
    let (config, cfg, mut tensors) = random_transformer(args.layout, args.blocks)?;
    let mut inputs = Inputs::new();
    let mut normal = |dims: &[usize]| inputs.normal(dims);
    let cpu = &Device::Cpu;
    let (f, h, w) = video_grid(args.video_tokens);
    let vshape = VideoLatentShape::from_dims(&[1, cfg.in_channels, f, h, w])?;
    let vtools = VideoLatentTools::new(VideoLatentPatchifier::new(1)?, vshape, 24.0);
    let video = vtools.create_initial_state(cpu, DType::F32, Some(&normal(&vshape.dims())?))?;
    let ashape = AudioLatentShape {
        batch: 1,
        channels: 8,
        frames: args.audio_tokens,
        mel_bins: cfg.audio_in_channels / 8,
    };
    let atools = AudioLatentTools {
        patchifier: AudioPatchifier::new(1),
        target_shape: ashape,
    };
    let audio = atools.create_initial_state(cpu, DType::F32, Some(&normal(&ashape.dims())?))?;
    let sigma = Tensor::new(&[0.7f32], cpu)?;
    let contexts = context_widths(&cfg);
    for (name, state, width) in [("video", &video, contexts.0), ("audio", &audio, contexts.1)] {
        let input = |k: &str| format!("input.{name}_{k}");
        tensors.insert(input("latent"), state.latent.clone());
        tensors.insert(input("positions"), state.positions.clone());
        tensors.insert(input("sigma"), sigma.clone());
        tensors.insert(input("timesteps"), (&state.denoise_mask * 0.7)?);
        tensors.insert(input("context"), normal(&[1, args.context_tokens, width])?);
    }
    let metadata = HashMap::from([
        ("component".to_string(), "transformer".to_string()),
        ("config".to_string(), config.to_string()),
        (
            "call".to_string(),
            json!({"model_type": "audio_video", "output": "velocity"}).to_string(),
        ),
    ]);
    save_safetensors(path, &tensors, metadata)?;
    Ok(())
}

/// The `Modality` of `name` from a bench file's inputs.
fn modality(
    inputs: &Arc<ltx_core::loader::StateDict>,
    name: &str,
    dtype: DType,
    device: &Device,
) -> Result<Modality> {
    let get = |k: &str| -> ltx_parity::Result<Option<Tensor>> {
        let key = format!("{name}_{k}");
        match inputs.contains(&key) {
            true => Ok(Some(inputs.raw_tensor(&key, device)?)),
            false => Ok(None),
        }
    };
    let mut m = ltx_parity::modality_from(&get, dtype)?
        .ok_or_else(|| anyhow::anyhow!("the bench file has no {name} latent"))?;
    // the same prompt at every run, as at every step of a stage
    m.context_key = Some(ltx_core::model::transformer::ContextKey::of(&m.context));
    Ok(m)
}

/// Times one `LTXModel` velocity forward of both streams.
pub(super) fn worker_dit_block(args: &WorkerArgs, device: &Device, dtype: DType) -> Result<()> {
    // the pipelines' own loading path, so `--offload` / `--max-memory` apply
    let mut ledger =
        ModelLedger::new(dtype, device.clone(), args.file.clone(), None, None, vec![])?;
    ledger.memory = args.memory.policy();
    let model = ledger.transformer()?.velocity_model;
    let files = SafetensorsFiles::open(&[&args.file])?;
    let inputs = input_dict(&files)?;
    let video = modality(&inputs, "video", dtype, device)?;
    let audio = modality(&inputs, "audio", dtype, device)?;
    drop((inputs, files));
    time_runs(args, device, || {
        if args.fresh_text_kv {
            model.clear_text_kv_cache();
        }
        drop(model.forward(Some(&video), Some(&audio), None)?);
        Ok(())
    })
}
