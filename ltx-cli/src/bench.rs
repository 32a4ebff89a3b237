//! `ltx bench …`: times a component in Rust and in the PyTorch reference on this machine, in one
//! run, on the same weights and input, each in its own process (so peak memory is its own), and
//! prints the medians and `ratio_vs_reference`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command as Process;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use ltx_core::device::DTypeChoice;
use ltx_core::loader::synthetic::{random_weights, save_safetensors, SplitMix64};
use ltx_core::loader::SafetensorsFiles;
use ltx_core::model::video_vae::presets::{released_vae_config, VaeLayout};
use ltx_core::model::video_vae::{
    vae_decoder_keys_filter, DecodeInputs, VideoDecoder, VideoVaeConfig,
};
use serde_json::{json, Value};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Video VAE decode: Rust vs the reference, f32 on the CPU.
    VaeDecode(VaeDecodeArgs),
}

#[derive(clap::Args)]
pub struct VaeDecodeArgs {
    /// Released widths (528M-parameter decoder) instead of a narrow one.
    #[arg(long)]
    full_size: bool,
    /// Released layout: ltx2 (19B) or ltx23 (22B).
    #[arg(long, default_value = "ltx2", value_parser = parse_layout)]
    layout: VaeLayout,
    /// Output frames (1 + 8k).
    #[arg(long, default_value_t = 9)]
    frames: usize,
    /// Output height in pixels (multiple of 32).
    #[arg(long, default_value_t = 256)]
    height: usize,
    /// Output width in pixels (multiple of 32).
    #[arg(long, default_value_t = 256)]
    width: usize,
    /// Python of a venv with the reference installed (tests/reference/requirements.txt).
    /// Without it only the Rust side is timed.
    #[arg(long)]
    python: Option<PathBuf>,
    /// The reference timing script.
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
}

#[derive(clap::Args)]
pub struct WorkerArgs {
    /// What to time (`vae-decode`).
    what: String,
    file: PathBuf,
    #[arg(long, default_value_t = 3)]
    runs: usize,
    #[arg(long, default_value_t = 1)]
    warmup: usize,
}

fn parse_layout(s: &str) -> Result<VaeLayout, String> {
    s.parse().map_err(|e: ltx_core::Error| e.to_string())
}

pub fn run(cmd: Command, device: &Device, dtype: Option<DTypeChoice>) -> Result<()> {
    match cmd {
        Command::VaeDecode(args) => vae_decode(args, device, dtype),
    }
}

/// A narrow variant of a released layout (same blocks, 1/8 of the widths) for quick runs.
fn vae_config(layout: VaeLayout, full_size: bool) -> Value {
    let mut cfg = released_vae_config(layout);
    if !full_size {
        cfg["vae"]["decoder_base_channels"] = json!(16);
    }
    cfg
}

fn vae_decode(args: VaeDecodeArgs, device: &Device, dtype: Option<DTypeChoice>) -> Result<()> {
    if !device.is_cpu() || dtype.is_some_and(|d| d != DTypeChoice::F32) {
        bail!("vae-decode compares f32 on the CPU (the reference's CPU path): use --device cpu, no --dtype");
    }
    if args.frames == 0 || (args.frames - 1) % 8 != 0 {
        bail!("--frames must be 1 + 8k, got {}", args.frames);
    }
    if args.height == 0 || args.width == 0 || args.height % 32 != 0 || args.width % 32 != 0 {
        bail!(
            "--height/--width must be positive multiples of 32, got {}x{}",
            args.height,
            args.width
        );
    }
    let latent_shape = [
        1,
        128,
        (args.frames - 1) / 8 + 1,
        args.height / 32,
        args.width / 32,
    ];
    let workdir = args
        .workdir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("ltx-bench"));
    std::fs::create_dir_all(&workdir).with_context(|| format!("creating {}", workdir.display()))?;
    let name = format!(
        "vae_decode_{:?}_{}_{}x{}x{}.safetensors",
        args.layout,
        if args.full_size { "full" } else { "narrow" },
        latent_shape[2],
        latent_shape[3],
        latent_shape[4]
    )
    .to_lowercase();
    let file = workdir.join(name);
    if !file.exists() {
        eprintln!("writing weights and input to {}", file.display());
        write_vae_decode_input(
            &file,
            &vae_config(args.layout, args.full_size),
            &latent_shape,
        )?;
    }
    println!(
        "vae-decode layout={:?} full_size={} latent={:?} -> video=[1, 3, {}, {}, {}] f32 cpu threads={}",
        args.layout,
        args.full_size,
        latent_shape,
        args.frames,
        args.height,
        args.width,
        if args.threads == 0 { num_cpus() } else { args.threads }
    );
    let exe = std::env::current_exe()?;
    let mut rust = Process::new(exe);
    rust.args(["--device", "cpu", "bench-worker", "vae-decode"])
        .arg(&file)
        .args([
            "--runs",
            &args.runs.to_string(),
            "--warmup",
            &args.warmup.to_string(),
        ]);
    if args.threads > 0 {
        rust.env("RAYON_NUM_THREADS", args.threads.to_string());
    }
    let rust_res = run_json(rust, "rust")?;
    print_side("rust", &rust_res);
    let Some(python) = &args.python else {
        println!("reference: skipped (pass --python PATH of the reference venv)");
        return Ok(());
    };
    let script = args.script.clone().unwrap_or_else(|| {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/reference/bench_vae_decode.py")
    });
    let mut reference = Process::new(python);
    reference
        .arg(&script)
        .arg(&file)
        .args([
            "--runs",
            &args.runs.to_string(),
            "--warmup",
            &args.warmup.to_string(),
        ])
        .args([
            "--threads",
            &(if args.threads == 0 {
                num_cpus()
            } else {
                args.threads
            })
            .to_string(),
        ]);
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

fn num_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn print_side(side: &str, v: &Value) {
    println!(
        "{side}: median {:.3} s, runs {}, model_rss {:.0} MB, peak_rss {:.0} MB",
        v["median_s"].as_f64().unwrap_or(f64::NAN),
        v["times_s"],
        v["model_rss_mb"].as_f64().unwrap_or(f64::NAN),
        v["peak_rss_mb"].as_f64().unwrap_or(f64::NAN),
    );
}

/// Runs a timing process and parses the last JSON line of its stdout.
fn run_json(mut cmd: Process, side: &str) -> Result<Value> {
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

/// Writes a fixture-format file: bf16-rounded random decoder weights (checkpoint keys), the
/// config, and a standard-normal `input.latent`.
fn write_vae_decode_input(path: &Path, config: &Value, latent_shape: &[usize; 5]) -> Result<()> {
    let cfg = VideoVaeConfig::from_checkpoint_config(config)?;
    let mut tensors = random_weights(0, DType::BF16, "vae.decoder.", |vb| {
        VideoDecoder::new(&cfg, vb.clone())
    })?;
    // The statistics are shared with the encoder and live outside `vae.decoder.`.
    let stats: Vec<String> = tensors
        .keys()
        .filter(|k| k.starts_with("vae.decoder.per_channel_statistics."))
        .cloned()
        .collect();
    for k in stats {
        let t = tensors.remove(&k).expect("listed");
        tensors.insert(k.replace("vae.decoder.", "vae."), t);
    }
    let mut rng = SplitMix64::new(1);
    let n: usize = latent_shape.iter().product();
    let latent: Vec<f32> = (0..n).map(|_| rng.normal()).collect();
    tensors.insert(
        "input.latent".into(),
        Tensor::from_vec(latent, latent_shape.as_slice(), &Device::Cpu)?,
    );
    let metadata = HashMap::from([
        ("component".to_string(), "video_decoder".to_string()),
        ("config".to_string(), config.to_string()),
        (
            "call".to_string(),
            json!({"timestep": null, "tiling": null}).to_string(),
        ),
    ]);
    save_safetensors(path, &tensors, metadata)?;
    Ok(())
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

pub fn worker(args: WorkerArgs, device: &Device, dtype: Option<DTypeChoice>) -> Result<()> {
    if args.what != "vae-decode" {
        bail!("unknown bench worker `{}`", args.what);
    }
    let dtype = ltx_core::device::resolve_dtype(dtype, device);
    let files = SafetensorsFiles::open(&[&args.file])?;
    let cfg = VideoVaeConfig::from_checkpoint_config(&files.config()?)?;
    let sd = std::sync::Arc::new(files.state_dict(&vae_decoder_keys_filter())?);
    let decoder = VideoDecoder::new(&cfg, sd.var_builder(dtype, device))?;
    let io = std::sync::Arc::new(
        files.state_dict(
            &ltx_core::loader::SDOps::new("INPUT")
                .with_matching("input.", "")
                .with_replacement("input.", ""),
        )?,
    );
    let latent = io.var_builder(dtype, device).get_unchecked("latent")?;
    // The model owns its weights now: unmap the file before measuring.
    drop((io, sd, files));
    let model_rss = rss_mb("VmRSS");
    let mut times = Vec::new();
    for i in 0..args.warmup + args.runs {
        let t0 = Instant::now();
        let video = decoder.forward(&latent, DecodeInputs::default())?;
        device.synchronize()?;
        drop(video);
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
