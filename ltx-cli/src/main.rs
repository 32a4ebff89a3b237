//! `ltx`: LTX-2 / LTX-2.3 from one native binary — parity checks against the PyTorch reference
//! benchmarks, and generation (`ltx generate`).

mod args;
mod bench;
mod hub;
mod info;
mod noise;
mod parity;
mod progress;
mod quantize;
mod run;
mod weights;

use anyhow::Result;

/// mimalloc keeps freed pages for reuse: the denoising loops and decoders free and reallocate
/// tensors of the same large sizes every step, which the system allocator returns to the kernel
/// and faults back in (half the run time was in the kernel before).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use args::pipelines::{
    A2VidArgs, DistilledArgs, IcLoraArgs, OneStageArgs, RetakeArgs, TwoStageArgs, TwoStageHqArgs,
};
use args::{DTypeArg, DeviceArg};
use clap::{Parser, Subcommand};
use ltx_core::device::DeviceChoice;
use run::generate;

#[derive(Parser)]
#[command(
    name = "ltx",
    version,
    about = "LTX-2 audio+video diffusion in Rust (Candle)"
)]
struct Cli {
    /// Device to run on.
    #[arg(long, global = true, value_enum, default_value_t)]
    device: DeviceArg,
    /// Compute dtype (default: bf16 on GPUs, f32 on the CPU).
    #[arg(long, global = true, value_enum)]
    dtype: Option<DTypeArg>,
    /// Metal: kernels per command buffer (default 16, or CANDLE_METAL_COMPUTE_PER_BUFFER). Lower
    /// it if macOS kills the run with "Impacting Interactivity".
    #[arg(long, global = true, value_name = "N")]
    metal_kernels_per_buffer: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate a video with audio (the two-stage distilled pipeline). Without
    /// --checkpoint-path, the built-in tiny model runs every stage offline.
    Generate(DistilledArgs),
    /// The two-stage distilled pipeline (same as `generate`).
    Distilled(DistilledArgs),
    /// Text/image-to-video in one stage with the full model and multimodal guidance.
    OneStage(OneStageArgs),
    /// Full model with guidance at half size, x2 upsampler, distilled-LoRA refinement.
    TwoStage(TwoStageArgs),
    /// Audio-to-video: generate the video for a given soundtrack (--audio-path).
    A2vid(A2VidArgs),
    /// The two-stage pipeline with every --image as a keyframe to interpolate between.
    KeyframeInterpolation(TwoStageArgs),
    /// In-context LoRA: generate guided by a control video (--video-conditioning) with the
    /// IC-LoRA given by --lora; distilled stages.
    IcLora(IcLoraArgs),
    /// Regenerate a time window of an existing video (and its audio) from a prompt.
    Retake(RetakeArgs),
    /// The two-stage pipeline with the res_2s sampler (LTX-2.3 HQ preset).
    TwoStageHq(TwoStageHqArgs),
    /// What a checkpoint holds: model version, components, parameter counts, config.
    Info(info::Args),
    /// Run reference fixtures (files or folders of .safetensors) and compare every output.
    Parity(parity::Args),
    /// Print the standard normals a seed gives (torch's CPU or CUDA generator, or ltx-rs's own),
    /// one value per line: the noise a run with --noise KIND --seed S draws.
    Noise(noise::Args),
    /// Write a transformer checkpoint as GGUF: attention and feed-forward linears in a block
    /// type (q8_0, q4_k, …), the rest F32, like the community GGUF files.
    Quantize(quantize::Args),
    /// Time a component against the PyTorch reference on this machine.
    #[command(subcommand)]
    Bench(bench::Command),
    #[command(hide = true)]
    BenchWorker(bench::WorkerArgs),
}

fn main() -> Result<()> {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let logs = tracing_subscriber::fmt().with_env_filter(filter);
    logs.with_writer(std::io::stderr).init();
    let cli = Cli::parse();
    if cli.metal_kernels_per_buffer.is_some() {
        ltx_core::device::bound_metal_command_buffers(cli.metal_kernels_per_buffer);
    }
    let device = DeviceChoice::from(cli.device).open()?;
    let dtype = cli.dtype.map(Into::into);
    match cli.command {
        Command::Parity(args) => {
            let ok = parity::run(&args, &device)?;
            if !ok {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Generate(args) | Command::Distilled(args) => {
            generate::distilled(args, &device, dtype)
        }
        Command::Info(args) => info::run(&args),
        Command::Noise(args) => noise::run(&args),
        Command::Quantize(args) => quantize::run(&args),
        Command::OneStage(args) => generate::one_stage(args, &device, dtype),
        Command::TwoStage(args) => generate::two_stage(args, &device, dtype),
        Command::A2vid(args) => generate::a2vid(args, &device, dtype),
        Command::KeyframeInterpolation(args) => {
            generate::keyframe_interpolation(args, &device, dtype)
        }
        Command::IcLora(args) => generate::ic_lora(args, &device, dtype),
        Command::Retake(args) => run::retake::run(args, &device, dtype),
        Command::TwoStageHq(args) => generate::two_stage_hq(args, &device, dtype),
        Command::Bench(cmd) => bench::run(cmd, &device, dtype),
        Command::BenchWorker(args) => bench::worker(args, &device, dtype),
    }
}
