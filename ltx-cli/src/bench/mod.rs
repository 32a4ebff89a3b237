//! `ltx bench …`: times a component in Rust and in the PyTorch reference on this machine, in one
//! run, on the same weights and input, each in its own process (so peak memory is its own), and
//! prints the medians and `ratio_vs_reference`. The components' writers and workers live in
//! [`components`] (VAE decode, upsampler, Gemma, vocoders), [`dit`] (the transformer) and
//! [`step`] (a pipeline's denoising step).

mod components;
mod dit;
mod step;

use std::path::{Path, PathBuf};
use std::process::Command as Process;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use ltx_core::device::DTypeChoice;
use ltx_core::loader::SafetensorsFiles;
use serde_json::{json, Value};

use components::{
    text_encoder, upsampler, vae_decode, vocoder, worker_text_encoder, worker_upsampler,
    worker_vae_decode, worker_vocoder, TextEncoderArgs, UpsamplerArgs, VaeDecodeArgs, VocoderArgs,
};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Video VAE decode: Rust vs the reference, f32 on the CPU.
    VaeDecode(VaeDecodeArgs),
    /// Latent upsampler at released widths: Rust vs the reference, f32 on the CPU.
    Upsampler(UpsamplerArgs),
    /// Gemma-3 text decoder (all hidden states) on a reduced config: Rust vs the reference, f32 CPU.
    TextEncoder(TextEncoderArgs),
    /// Released-width vocoder (LTX-2 HiFi-GAN or LTX-2.3 BigVGAN + BWE): Rust vs the reference, f32 CPU.
    Vocoder(VocoderArgs),
    /// One full-width transformer block (with the model's embeddings and output projections):
    /// Rust vs the reference on the same device and dtype (`--device cpu|cuda`, `--dtype f32|bf16`).
    DitBlock(dit::DitBlockArgs),
    /// One denoising step of a pipeline (all its guidance passes) on a model of full-width
    /// blocks, stage-1 or stage-2 size: Rust vs the reference on the same device and dtype.
    Step(step::StepArgs),
}

/// What a bench worker times.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bench {
    VaeDecode,
    Upsampler,
    TextEncoder,
    Vocoder,
    DitBlock,
    Step,
}

/// The value-enum spelling of a choice (as on the command line).
pub(super) fn value_name(v: impl clap::ValueEnum) -> String {
    v.to_possible_value()
        .map(|p| p.get_name().to_string())
        .unwrap_or_default()
}

/// Options every benchmark shares.
#[derive(clap::Args, Clone)]
pub struct CommonArgs {
    /// Python of a venv with the reference installed (tests/reference/requirements.txt).
    /// Without it only the Rust side is timed.
    #[arg(long)]
    python: Option<PathBuf>,
    /// The reference timing script (default: the one in tests/reference/).
    #[arg(long)]
    script: Option<PathBuf>,
    /// Timed runs per side (the median is reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Untimed warm-up runs per side.
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// CPU threads for both sides (0: all cores).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Folder for the weights file (kept, reused when the same shape is asked again).
    #[arg(long)]
    workdir: Option<PathBuf>,
    /// `dit-block` / `step`: empty the text K/V cache before every run, so each run costs what
    /// a stage's first step does (by default the runs after the first reuse it, as steps 2..N do).
    #[arg(long)]
    fresh_text_kv: bool,
    /// `dit-block` / `step`: the Rust side's block linears narrowed (fp8-cast, q8_0, q4_k, …);
    /// the reference runs unquantized, so the ratio is what the quantization costs or saves.
    #[arg(long, value_name = "NAME", default_value = "none", value_parser = crate::args::parse_quantization)]
    quantization: ltx_core::quantization::Quantization,
}

#[derive(clap::Args)]
pub struct WorkerArgs {
    /// What to time.
    #[arg(value_enum)]
    what: Bench,
    file: PathBuf,
    #[arg(long, default_value_t = 3)]
    runs: usize,
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// Where the transformer's weights live (`dit-block` and `step` only).
    #[command(flatten)]
    memory: crate::args::MemoryArgs,
    /// Empty the text K/V cache before every run (`dit-block` and `step` only).
    #[arg(long)]
    fresh_text_kv: bool,
}

pub fn run(cmd: Command, device: &Device, dtype: Option<DTypeChoice>) -> Result<()> {
    match cmd {
        Command::VaeDecode(args) => vae_decode(args, device, dtype),
        Command::Upsampler(args) => upsampler(args, device, dtype),
        Command::TextEncoder(args) => text_encoder(args, device, dtype),
        Command::Vocoder(args) => vocoder(args, device, dtype),
        Command::DitBlock(args) => dit::dit_block(args, device, dtype),
        Command::Step(args) => step::step(args, device, dtype),
    }
}

pub fn worker(args: WorkerArgs, device: &Device, dtype: Option<DTypeChoice>) -> Result<()> {
    let dt = ltx_core::device::resolve_dtype(dtype, device);
    match args.what {
        Bench::VaeDecode => worker_vae_decode(&args, device, dt),
        Bench::Upsampler => worker_upsampler(&args, device, dt),
        Bench::TextEncoder => worker_text_encoder(&args, device, dt),
        Bench::Vocoder => worker_vocoder(&args, device, dt),
        Bench::DitBlock => dit::worker_dit_block(&args, device, dt),
        Bench::Step => step::worker_step(&args, device, dt),
    }
}

pub(super) fn workdir(common: &CommonArgs) -> Result<PathBuf> {
    let dir = common
        .workdir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("ltx-bench"));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// Times `what` on `file` in a Rust worker process and (with `--python`) in the reference's
/// `script`, then prints both and the ratios.
/// Where and in what dtype both sides run (`ltx`'s and the reference script's spellings).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Side {
    pub device: &'static str,
    pub dtype: &'static str,
}

impl Side {
    /// The reference's CPU path, which every component benchmark compares.
    pub const CPU_F32: Side = Side {
        device: "cpu",
        dtype: "f32",
    };
}

pub(super) fn compare_sides(
    what: Bench,
    file: &Path,
    common: &CommonArgs,
    (script, side): (&str, Side),
) -> Result<()> {
    let threads = threads(common);
    let (runs, warmup) = (common.runs.to_string(), common.warmup.to_string());
    let mut rust = Process::new(std::env::current_exe()?);
    rust.args(["--device", side.device, "--dtype", side.dtype])
        .args(["bench-worker", &value_name(what)])
        .arg(file)
        .args(["--runs", &runs, "--warmup", &warmup]);
    if common.fresh_text_kv {
        rust.arg("--fresh-text-kv");
    }
    rust.args(["--quantization", &common.quantization.name()]);
    if common.threads > 0 {
        rust.env("RAYON_NUM_THREADS", common.threads.to_string());
    }
    let rust_res = run_json(rust, "rust")?;
    print_side("rust", &rust_res);
    let Some(python) = &common.python else {
        println!("reference: skipped (pass --python PATH of the reference venv)");
        return Ok(());
    };
    let script = common.script.clone().unwrap_or_else(|| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/reference")
            .join(script)
    });
    let mut reference = Process::new(python);
    reference
        .arg(&script)
        .arg(file)
        .args(["--runs", &runs, "--warmup", &warmup])
        .args(["--threads", &threads.to_string()]);
    if side != Side::CPU_F32 {
        reference.args(["--device", side.device, "--dtype", side.dtype]);
    }
    let ref_res = run_json(reference, "reference")?;
    print_side("reference", &ref_res);
    let get = |v: &Value, k: &str| v.get(k).and_then(Value::as_f64).unwrap_or(f64::NAN);
    println!(
        "ratio_vs_reference: {:.3}",
        get(&rust_res, "median_s") / get(&ref_res, "median_s")
    );
    println!(
        "peak_rss_ratio_vs_reference: {:.3}",
        get(&rust_res, "peak_rss_mb") / get(&ref_res, "peak_rss_mb")
    );
    Ok(())
}

/// Benchmarks compare f32 on the CPU (the reference's CPU path).
pub(super) fn require_cpu_f32(
    what: &str,
    device: &Device,
    dtype: Option<DTypeChoice>,
) -> Result<()> {
    if !device.is_cpu() || dtype.is_some_and(|d| d != DTypeChoice::F32) {
        bail!("{what} compares f32 on the CPU (the reference's CPU path): use --device cpu, no --dtype");
    }
    Ok(())
}

/// The thread count both sides use.
pub(super) fn threads(common: &CommonArgs) -> usize {
    if common.threads == 0 {
        num_cpus()
    } else {
        common.threads
    }
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

pub(super) fn print_side(side: &str, v: &Value) {
    println!(
        "{side}: median {:.3} s, runs {}, model_rss {:.0} MB, peak_rss {:.0} MB",
        v["median_s"].as_f64().unwrap_or(f64::NAN),
        v["times_s"],
        v["model_rss_mb"].as_f64().unwrap_or(f64::NAN),
        v["peak_rss_mb"].as_f64().unwrap_or(f64::NAN),
    );
}

/// Runs a timing process and parses the last JSON line of its stdout.
pub(super) fn run_json(mut cmd: Process, side: &str) -> Result<Value> {
    let out = cmd
        .output()
        .with_context(|| format!("starting the {side} timing process"))?;
    if !out.status.success() {
        bail!(
            "{side} timing process failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .with_context(|| format!("{side} printed no JSON result:\n{stdout}"))?;
    Ok(serde_json::from_str(line)?)
}

/// The median (mean of the middle two for an even count, like Python's `statistics.median`).
fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Reads `VmRSS` / `VmHWM` (MB) from `/proc/self/status` (NaN elsewhere).
fn rss_mb(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        })
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// Times `step` `warmup + runs` times and prints the JSON result line.
pub(super) fn time_runs(
    args: &WorkerArgs,
    device: &Device,
    mut step: impl FnMut() -> Result<()>,
) -> Result<()> {
    let model_rss = rss_mb("VmRSS");
    let mut times = Vec::new();
    for i in 0..args.warmup + args.runs {
        let t0 = Instant::now();
        step()?;
        device.synchronize()?;
        if i >= args.warmup {
            times.push(t0.elapsed().as_secs_f64());
        }
    }
    let median = median(&times);
    println!(
        "{}",
        json!({"median_s": median, "times_s": times, "model_rss_mb": model_rss, "peak_rss_mb": rss_mb("VmHWM")})
    );
    Ok(())
}

/// `input.<name>` of a bench file.
pub(super) fn read_input(
    files: &SafetensorsFiles,
    name: &str,
    dtype: DType,
    device: &Device,
) -> Result<Tensor> {
    Ok(input_dict(files)?
        .var_builder(dtype, device)
        .get_unchecked(name)?)
}

/// The `input.*` tensors of a bench file, without the prefix.
pub(super) fn input_dict(
    files: &SafetensorsFiles,
) -> Result<std::sync::Arc<ltx_core::loader::StateDict>> {
    let ops = ltx_core::loader::SDOps::new("INPUT")
        .with_matching("input.", "")
        .with_replacement("input.", "");
    Ok(std::sync::Arc::new(files.state_dict(&ops)?))
}
