//! The flags of the generation commands: the groups every pipeline shares (prompt and size,
//! weights, decoding backend, LoRAs and run options, guidance) and the closed sets of choices as
//! `clap::ValueEnum`s. One struct per pipeline lives in [`pipelines`]; [`inputs`] turns the raw
//! values into checked, typed inputs.

pub mod inputs;
pub mod pipelines;

use std::path::PathBuf;

use ltx_core::components::noisers::NoiseKind;
use ltx_core::components::torch_random::CudaLaunchLayout;
use ltx_core::device::{DTypeChoice, DeviceChoice};
use ltx_core::quantization::Quantization;
use ltx_pipelines::utils::model_paths::PathFlags;
use ltx_pipelines::utils::offload::{MemoryPolicy, Offload};

/// `--device`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeviceArg {
    /// CUDA when present, then Metal, then the CPU.
    #[default]
    Auto,
    Cpu,
    Cuda,
    Metal,
}

impl From<DeviceArg> for DeviceChoice {
    fn from(d: DeviceArg) -> Self {
        match d {
            DeviceArg::Auto => DeviceChoice::Auto,
            DeviceArg::Cpu => DeviceChoice::Cpu,
            DeviceArg::Cuda => DeviceChoice::Cuda,
            DeviceArg::Metal => DeviceChoice::Metal,
        }
    }
}

/// `--dtype`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DTypeArg {
    F32,
    F16,
    Bf16,
}

impl From<DTypeArg> for DTypeChoice {
    fn from(d: DTypeArg) -> Self {
        match d {
            DTypeArg::F32 => DTypeChoice::F32,
            DTypeArg::F16 => DTypeChoice::F16,
            DTypeArg::Bf16 => DTypeChoice::BF16,
        }
    }
}

/// `--vae-backend`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum VaeBackend {
    /// The checkpoint's decoder on Candle.
    #[default]
    Candle,
    /// An exported Core ML package (`ltx-coreml export`); macOS builds with the `coreml` feature.
    Coreml,
}

/// `--coreml-compute-units`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[value(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ComputeUnitsArg {
    #[default]
    All,
    CpuAndNe,
    CpuAndGpu,
    CpuOnly,
}

/// The prompt, the output and its size, the seed and the conditioning images: what every
/// text/image-to-video command takes.
#[derive(clap::Args, Debug)]
pub struct CommonArgs {
    /// Text prompt describing the video.
    #[arg(long)]
    pub prompt: String,
    /// Output MP4 (H.264 + AAC); written to a temporary file and renamed at the end.
    #[arg(long, default_value = "output.mp4")]
    pub output_path: PathBuf,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Random seed (default: the model's preset).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Height in pixels, a multiple of 64 for the two-stage pipelines, 32 otherwise (default:
    /// the model's preset; 512 for the tiny model).
    #[arg(long)]
    pub height: Option<usize>,
    /// Width in pixels, a multiple of 64 for the two-stage pipelines, 32 otherwise (default: the
    /// model's preset; 768 for the tiny model).
    #[arg(long)]
    pub width: Option<usize>,
    /// Number of frames, 8k + 1 (default: the model's preset; 121 for the tiny model; with a
    /// duration head (LTX-2.5) on distilled, one-stage, two-stage and two-stage-hq, predicted from
    /// the prompt within 1–20 s).
    #[arg(long)]
    pub num_frames: Option<usize>,
    /// Predict the number of frames from the prompt with the duration head (LTX-2.5; distilled,
    /// one-stage, two-stage, two-stage-hq), clamped to [MIN_SECONDS, MAX_SECONDS]. --num-frames
    /// wins when both are given.
    #[arg(long, num_args = 2, value_names = ["MIN_SECONDS", "MAX_SECONDS"])]
    pub auto_duration: Option<Vec<f64>>,
    /// Frames per second (default: the model's preset).
    #[arg(long)]
    pub frame_rate: Option<f64>,
    /// Image conditioning: PATH FRAME_IDX STRENGTH [CRF] (repeatable).
    #[arg(long = "image", num_args = 3..=4, value_names = ["PATH", "FRAME_IDX", "STRENGTH", "CRF"], action = clap::ArgAction::Append)]
    pub images: Vec<String>,
    #[command(flatten)]
    pub run: RunArgs,
}

/// The weights and the decoding backend.
#[derive(clap::Args, Debug)]
pub struct ModelArgs {
    #[command(flatten)]
    pub weights: WeightArgs,
    #[command(flatten)]
    pub vae: VaeBackendArgs,
    #[command(flatten)]
    pub memory: MemoryArgs,
}

/// `--offload`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OffloadArg {
    /// Every transformer and text-encoder weight resident in the compute dtype.
    #[default]
    None,
    /// Blocks (decoder layers) over the budget kept in host memory as stored (e.g. bf16) and
    /// built per use.
    Cpu,
    /// Blocks (decoder layers) over the budget read from the checkpoint file one ahead of use.
    Disk,
}

/// Where the transformer's and the text encoder's weights live while they run.
#[derive(clap::Args, Debug)]
pub struct MemoryArgs {
    /// Stream the transformer blocks and Gemma decoder layers that `--max-memory` cannot hold
    /// (same results, bit for bit).
    #[arg(long, value_enum, default_value_t = OffloadArg::None)]
    pub offload: OffloadArg,
    /// Budget for the transformer's weights in GB, and on its own for the text encoder's (default
    /// with `--offload`: the host's free memory on the CPU, every block streamed on a GPU;
    /// without: no limit). Activations come on top of it.
    #[arg(long, value_name = "GB", value_parser = parse_gigabytes)]
    pub max_memory: Option<u64>,
    /// Narrow the transformer's block linears at load: `fp8-cast` (the reference's: attention
    /// and feed-forward weights and biases in F8E4M3, widened per forward) or a GGUF block type
    /// (q8_0, q6_k, q5_k, q4_k, q3_k, q5_0, q4_0, q2_k). fp8 and GGUF checkpoints stay narrow
    /// without it.
    #[arg(long, value_name = "NAME", default_value = "none", value_parser = parse_quantization)]
    pub quantization: Quantization,
}

/// A `--quantization` name.
pub fn parse_quantization(s: &str) -> std::result::Result<Quantization, String> {
    Quantization::parse(s).map_err(|e| e.to_string())
}

impl MemoryArgs {
    pub fn policy(&self) -> MemoryPolicy {
        MemoryPolicy {
            offload: match self.offload {
                OffloadArg::None => Offload::None,
                OffloadArg::Cpu => Offload::Cpu,
                OffloadArg::Disk => Offload::Disk,
            },
            max_memory: self.max_memory,
            quantization: self.quantization,
        }
    }
}

/// A positive, finite number of gigabytes (GiB) as bytes.
fn parse_gigabytes(s: &str) -> std::result::Result<u64, String> {
    match s.parse::<f64>() {
        Ok(gb) if gb.is_finite() && gb > 0.0 => Ok((gb * (1u64 << 30) as f64) as u64),
        _ => Err(format!("`{s}` is not a positive number of gigabytes")),
    }
}

/// What the guided (full-model) pipelines take: the common flags and the guidance.
#[derive(clap::Args, Debug)]
pub struct GuidedArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub guidance: GuidanceArgs,
}

/// LoRAs, prompt enhancement, decoding, overwriting and the noise generator: what every
/// generation command takes.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// LoRA: PATH [STRENGTH] (repeatable).
    #[arg(long = "lora", num_args = 1..=2, value_names = ["PATH", "STRENGTH"], action = clap::ArgAction::Append)]
    pub loras: Vec<String>,
    /// Let Gemma rewrite the prompt into a detailed one first (sampled with --seed).
    #[arg(long)]
    pub enhance_prompt: bool,
    /// Instructions for Gemma's rewrite (a text file; default: the built-in ones).
    #[arg(long, value_name = "FILE", requires = "enhance_prompt")]
    pub enhance_system_prompt: Option<PathBuf>,
    /// A Gemma-3 root (or single file) for the rewrite, when the text encoder cannot generate
    /// (LTX-2.5's Gemma-4 encoder) or should not; loaded and freed before the text encoder.
    #[arg(long, value_name = "PATH", requires = "enhance_prompt")]
    pub prompt_enhancer_gemma_root: Option<PathBuf>,
    /// Decode the video in tiles (512 px / 64 frames, the reference's defaults) to bound memory.
    #[arg(long)]
    pub tiled_decode: bool,
    /// Overwrite an existing output file.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub noise: NoiseArgs,
}

/// `--noise`: which random generator the seed drives.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NoiseArg {
    /// torch's CPU generator: the reference's noise, bit for bit, for the reference run on a CPU.
    #[default]
    TorchCpu,
    /// torch's CUDA generator on a GPU with --noise-sms multiprocessors (the reference run on
    /// that GPU; values within ~1e-6 of it).
    TorchCuda,
    /// ltx-rs's own Philox stream (matches no torch generator).
    Ltx,
}

/// The noise generator and, for torch's CUDA generator, the GPU whose launch grid it follows.
#[derive(clap::Args, Debug, Clone, Copy)]
pub struct NoiseArgs {
    /// Random generator the seed drives (the initial noise and the res_2s SDE noise, drawn as the
    /// reference draws them).
    #[arg(long = "noise", value_enum, default_value_t)]
    pub kind: NoiseArg,
    /// Multiprocessor count of the GPU to reproduce with --noise torch-cuda (H100 / H200: 132,
    /// A100: 108); 2048 threads per multiprocessor are assumed.
    #[arg(long, value_name = "N", default_value_t = 132, value_parser = clap::value_parser!(u32).range(1..))]
    pub noise_sms: u32,
}

impl NoiseArgs {
    pub fn kind(&self) -> NoiseKind {
        self.kind.with_multiprocessors(self.noise_sms)
    }
}

impl NoiseArg {
    /// The generator, with `multiprocessors` for torch's CUDA generator.
    pub fn with_multiprocessors(self, multiprocessors: u32) -> NoiseKind {
        match self {
            Self::TorchCpu => NoiseKind::TorchCpu,
            Self::TorchCuda => {
                NoiseKind::TorchCuda(CudaLaunchLayout::with_multiprocessors(multiprocessors))
            }
            Self::Ltx => NoiseKind::Ltx,
        }
    }
}

/// Where the weights come from: local files (one checkpoint, or one file per component), the
/// Hugging Face Hub, or the built-in tiny model.
#[derive(clap::Args, Debug)]
pub struct WeightArgs {
    /// LTX-2 / LTX-2.3 checkpoint (.safetensors, every component in one file). Without it, the
    /// split flags and --model the built-in tiny model runs (noise-like output; every stage
    /// exercised).
    #[arg(long, alias = "distilled-checkpoint-path")]
    pub checkpoint_path: Option<PathBuf>,
    /// Take the weights from the Hugging Face Hub: `Lightricks/LTX-2`, `Lightricks/LTX-2.3` or
    /// `Lightricks/LTX-2.5` (downloaded once into the HF cache; only the files the pipeline
    /// needs; files given by path take precedence).
    #[arg(long, value_name = "REPO")]
    pub model: Option<String>,
    /// Gemma text encoder repository on the Hub for LTX-2 / LTX-2.3 (default with --model:
    /// google/gemma-3-12b-it-qat-q4_0-unquantized).
    #[arg(long, value_name = "REPO")]
    pub gemma: Option<String>,
    /// Resolve Hub files from the local cache only (also `HF_HUB_OFFLINE=1`).
    #[arg(long)]
    pub offline: bool,
    /// Folder with the Gemma-3 text encoder of a --checkpoint-path (tokenizer.json +
    /// safetensors).
    #[arg(long)]
    pub gemma_root: Option<PathBuf>,
    /// Split layout (LTX-2.5): the transformer (.safetensors or .gguf; DiT + text connectors).
    /// With --checkpoint-path: replaces the checkpoint's transformer (e.g. a GGUF file from
    /// `ltx quantize` or a community one); everything else comes from the checkpoint.
    #[arg(long)]
    pub transformer_path: Option<PathBuf>,
    /// Split layout: the text encoder, one .safetensors (Gemma-4 + LTX projection + tokenizer)
    /// or a Gemma root folder.
    #[arg(long)]
    pub text_encoder_path: Option<PathBuf>,
    /// The video VAE (.safetensors): a split set's, or in place of a checkpoint's own.
    /// `--vae-checkpoint-path` is the same flag (the name 1.2.0's optimisation notes use).
    #[arg(long, visible_alias = "vae-checkpoint-path")]
    pub video_vae_path: Option<PathBuf>,
    /// Split layout: the audio VAE and vocoder (.safetensors).
    #[arg(long)]
    pub audio_vae_path: Option<PathBuf>,
    /// Split layout: the duration head (.safetensors, LTX-2.5's `model_patches/`) for an
    /// automatic frame count (a checkpoint's own head is used when it holds one).
    #[arg(long)]
    pub duration_head_path: Option<PathBuf>,
    /// Spatial x2 latent upsampler (.safetensors); two-stage pipelines.
    #[arg(long)]
    pub spatial_upsampler_path: Option<PathBuf>,
    /// Where the built-in tiny model is cached (default: $LTX_CACHE, $XDG_CACHE_HOME/ltx-rs or
    /// ~/.cache/ltx-rs).
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
}

impl WeightArgs {
    /// The model paths given on the command line.
    pub fn path_flags(&self) -> PathFlags {
        PathFlags {
            checkpoint: self.checkpoint_path.clone(),
            gemma_root: self.gemma_root.clone(),
            transformer: self.transformer_path.clone(),
            text_encoder: self.text_encoder_path.clone(),
            video_vae: self.video_vae_path.clone(),
            audio_vae: self.audio_vae_path.clone(),
            duration_head: self.duration_head_path.clone(),
        }
    }
}

/// Which runtime decodes the video latents.
#[derive(clap::Args, Debug)]
pub struct VaeBackendArgs {
    /// Decode with Candle, or with an exported Core ML package (macOS; see `ltx-coreml export`).
    #[arg(long, value_enum, default_value_t)]
    pub vae_backend: VaeBackend,
    /// The `video-decoder` package for `--vae-backend coreml`, exported for this output size.
    #[arg(long, value_name = "PACKAGE")]
    pub coreml_decoder: Option<PathBuf>,
    /// Core ML compute units.
    #[arg(long, value_enum, default_value_t)]
    pub coreml_compute_units: ComputeUnitsArg,
}

/// Guidance flags of the full-model pipelines (defaults: the checkpoint's preset).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct GuidanceArgs {
    /// Negative prompt (default: the reference's).
    #[arg(long)]
    pub negative_prompt: Option<String>,
    /// Denoising steps of stage 1 (default: the preset's, 40 for LTX-2; at least 2).
    #[arg(long)]
    pub num_inference_steps: Option<usize>,
    #[arg(long)]
    pub video_cfg_guidance_scale: Option<f64>,
    #[arg(long)]
    pub video_stg_guidance_scale: Option<f64>,
    #[arg(long)]
    pub video_rescale_scale: Option<f64>,
    /// Audio-to-video modality guidance scale.
    #[arg(long)]
    pub a2v_guidance_scale: Option<f64>,
    #[arg(long)]
    pub video_skip_step: Option<usize>,
    /// Blocks whose video self-attention STG skips (indices into the transformer's blocks).
    #[arg(long, num_args = 0..)]
    pub video_stg_blocks: Option<Vec<usize>>,
    #[arg(long)]
    pub audio_cfg_guidance_scale: Option<f64>,
    #[arg(long)]
    pub audio_stg_guidance_scale: Option<f64>,
    #[arg(long)]
    pub audio_rescale_scale: Option<f64>,
    /// Video-to-audio modality guidance scale.
    #[arg(long)]
    pub v2a_guidance_scale: Option<f64>,
    #[arg(long)]
    pub audio_skip_step: Option<usize>,
    /// Blocks whose audio self-attention STG skips (indices into the transformer's blocks).
    #[arg(long, num_args = 0..)]
    pub audio_stg_blocks: Option<Vec<usize>>,
}
