//! `ltx`: LTX-2 / LTX-2.3 from one native binary — parity checks against the PyTorch reference
//! benchmarks, and generation (`ltx generate`).

mod bench;
mod generate;
mod hub;
mod info;
mod parity;

use anyhow::Result;

/// mimalloc keeps freed pages for reuse: the denoising loops and decoders free and reallocate
/// tensors of the same large sizes every step, which the system allocator returns to the kernel
/// and faults back in (half the run time was in the kernel before).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use clap::{Parser, Subcommand};
use ltx_core::device::{DTypeChoice, DeviceChoice};

#[derive(Parser)]
#[command(
    name = "ltx",
    version,
    about = "LTX-2 audio+video diffusion in Rust (Candle)"
)]
struct Cli {
    /// Device to run on.
    #[arg(long, global = true, default_value = "auto", value_parser = parse_device)]
    device: DeviceChoice,
    /// Compute dtype (default: bf16 on GPUs, f32 on the CPU).
    #[arg(long, global = true, value_parser = parse_dtype)]
    dtype: Option<DTypeChoice>,
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
    Generate(generate::GenerateArgs),
    /// The two-stage distilled pipeline (same as `generate`).
    Distilled(generate::GenerateArgs),
    /// Text/image-to-video in one stage with the full model and multimodal guidance.
    OneStage(generate::OneStageArgs),
    /// Full model with guidance at half size, x2 upsampler, distilled-LoRA refinement.
    TwoStage(generate::TwoStageArgs),
    /// Audio-to-video: generate the video for a given soundtrack (--audio-path).
    A2vid(generate::A2VidArgs),
    /// The two-stage pipeline with every --image as a keyframe to interpolate between.
    KeyframeInterpolation(generate::TwoStageArgs),
    /// In-context LoRA: generate guided by a control video (--video-conditioning) with the
    /// IC-LoRA given by --lora; distilled stages.
    IcLora(generate::IcLoraArgs),
    /// Regenerate a time window of an existing video (and its audio) from a prompt.
    Retake(generate::RetakeArgs),
    /// The two-stage pipeline with the res_2s sampler (LTX-2.3 HQ preset).
    TwoStageHq(generate::TwoStageHqArgs),
    /// What a checkpoint holds: model version, components, parameter counts, config.
    Info(info::Args),
    /// Run reference fixtures (files or folders of .safetensors) and compare every output.
    Parity(parity::Args),
    /// Time a component against the PyTorch reference on this machine.
    #[command(subcommand)]
    Bench(bench::Command),
    #[command(hide = true)]
    BenchWorker(bench::WorkerArgs),
}

fn parse_device(s: &str) -> Result<DeviceChoice, String> {
    s.parse().map_err(|e: ltx_core::Error| e.to_string())
}

fn parse_dtype(s: &str) -> Result<DTypeChoice, String> {
    s.parse().map_err(|e: ltx_core::Error| e.to_string())
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    if cli.metal_kernels_per_buffer.is_some() {
        ltx_core::device::bound_metal_command_buffers(cli.metal_kernels_per_buffer);
    }
    let device = cli.device.open()?;
    match cli.command {
        Command::Parity(args) => {
            let ok = parity::run(&args, &device)?;
            if !ok {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Generate(args) | Command::Distilled(args) => {
            generate::run(args, &device, cli.dtype)
        }
        Command::Info(args) => info::run(&args),
        Command::OneStage(args) => generate::run_one_stage(args, &device, cli.dtype),
        Command::TwoStage(args) => generate::run_two_stage(args, &device, cli.dtype),
        Command::A2vid(args) => generate::run_a2vid(args, &device, cli.dtype),
        Command::KeyframeInterpolation(args) => {
            generate::run_keyframe_interpolation(args, &device, cli.dtype)
        }
        Command::IcLora(args) => generate::run_ic_lora(args, &device, cli.dtype),
        Command::Retake(args) => generate::run_retake(args, &device, cli.dtype),
        Command::TwoStageHq(args) => generate::run_two_stage_hq(args, &device, cli.dtype),
        Command::Bench(cmd) => bench::run(cmd, &device, cli.dtype),
        Command::BenchWorker(args) => bench::worker(args, &device, cli.dtype),
    }
}
