//! `ltx-coreml`: export LTX-2 video VAE / latent upsampler components to Core ML packages.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use ltx_coreml::{export, Component, ConvForm, ExportOptions, Precision, ShapeSpec};

#[derive(Parser)]
#[command(
    name = "ltx-coreml",
    version,
    about = "Core ML export of the LTX-2 video VAE and latent upsamplers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write a `.mlpackage` (ML Program, iOS 17 / macOS 14) for one component.
    Export(ExportArgs),
    /// Time a package under Core ML's compute units against Candle (macOS only).
    Bench(BenchArgs),
    /// Export the model of each PyTorch fixture (files or folders), run the package with the
    /// reference interpreter and compare with the fixture's expected output and with Candle.
    Parity(ParityArgs),
}

#[derive(Args)]
struct ParityArgs {
    /// Fixture files or folders (video_decoder / video_encoder / latent_upsampler fixtures are
    /// checked; others are skipped).
    paths: Vec<PathBuf>,
    /// fp16 | fp32 (both when not given)
    #[arg(long)]
    precision: Option<String>,
    /// channel-fold | per-tap (both when not given)
    #[arg(long)]
    conv_form: Option<String>,
}

#[derive(Args)]
struct ExportArgs {
    /// video-decoder | video-encoder | latent-upsampler
    #[arg(long)]
    component: String,
    /// Checkpoint (safetensors with `config` metadata). For latent-upsampler with --upsampler,
    /// the LTX checkpoint whose VAE statistics wrap the upsampler (`upsample_video`).
    #[arg(long)]
    checkpoint: PathBuf,
    /// Latent upsampler file (latent-upsampler only).
    #[arg(long)]
    upsampler: Option<PathBuf>,
    /// Latent shape `F,H,W`.
    #[arg(long, value_name = "F,H,W", conflicts_with_all = ["frames", "height", "width"])]
    latent_shape: Option<String>,
    /// Pixel frames (1 + 8k).
    #[arg(long)]
    frames: Option<usize>,
    /// Pixel height (multiple of 32).
    #[arg(long)]
    height: Option<usize>,
    /// Pixel width (multiple of 32).
    #[arg(long)]
    width: Option<usize>,
    /// fp16 | fp32
    #[arg(long, default_value = "fp16")]
    precision: String,
    /// channel-fold | per-tap
    #[arg(long, default_value = "channel-fold")]
    conv_form: String,
    /// Output package (`X.mlpackage`).
    #[arg(long)]
    out: PathBuf,
    /// Replace an existing output.
    #[arg(long)]
    force: bool,
}

#[derive(Args)]
struct BenchArgs {
    /// Package written by `ltx-coreml export`.
    #[arg(long)]
    package: PathBuf,
    /// Timed runs per compute-unit setting.
    #[arg(long, default_value_t = 5)]
    runs: usize,
}

fn shape_spec(a: &ExportArgs) -> Result<ShapeSpec> {
    if let Some(s) = &a.latent_shape {
        let v: Vec<usize> = s
            .split(',')
            .map(|p| p.trim().parse::<usize>())
            .collect::<std::result::Result<_, _>>()
            .with_context(|| format!("--latent-shape `{s}` is not F,H,W"))?;
        let [f, h, w] = v[..] else {
            bail!("--latent-shape `{s}` must have three values F,H,W")
        };
        return Ok(ShapeSpec::Latent([f, h, w]));
    }
    match (a.frames, a.height, a.width) {
        (Some(f), Some(h), Some(w)) => Ok(ShapeSpec::Pixels([f, h, w])),
        _ => bail!("give --latent-shape F,H,W or all of --frames, --height and --width"),
    }
}

fn run_export(a: ExportArgs) -> Result<()> {
    let opts = ExportOptions {
        component: a.component.parse::<Component>()?,
        checkpoint: a.checkpoint.clone(),
        upsampler: a.upsampler.clone(),
        shape: shape_spec(&a)?,
        precision: a.precision.parse::<Precision>()?,
        conv_form: a.conv_form.parse::<ConvForm>()?,
        out: a.out.clone(),
        force: a.force,
    };
    let meta = export(&opts).with_context(|| format!("exporting {}", a.out.display()))?;
    println!(
        "wrote {} ({} {} {:?} -> {} {:?}, {}, {})",
        a.out.display(),
        meta.component,
        meta.input_name,
        meta.input_shape,
        meta.output_name,
        meta.output_shape,
        meta.precision,
        meta.conv_form
    );
    Ok(())
}

#[cfg(not(target_vendor = "apple"))]
fn run_bench(_a: BenchArgs) -> Result<()> {
    bail!("ltx-coreml bench needs macOS with Core ML")
}

#[cfg(target_vendor = "apple")]
fn run_bench(a: BenchArgs) -> Result<()> {
    use candle_core::{Device, Tensor};
    use ltx_coreml::apple::{median, time_predictions, ComputeUnits, CoreMlModel};
    use ltx_coreml::interp::max_abs_diff;
    use ltx_coreml::PackageMeta;

    let meta = PackageMeta::read(&a.package)?;
    let shape = meta.input_shape.clone();
    // Pixels in [-1, 1] for the encoder, unit normal latents otherwise.
    let input = if meta.component == "video-encoder" {
        Tensor::rand(-1f32, 1.0, shape.as_slice(), &Device::Cpu)?
    } else {
        Tensor::randn(0f32, 1.0, shape.as_slice(), &Device::Cpu)?
    };
    let data = input.flatten_all()?.to_vec1::<f32>()?;
    // the Candle twin on the best device this build has (Metal with `--features metal`)
    let device = ltx_core::device::DeviceChoice::Auto.open()?;
    let twin = ltx_coreml::CandleTwin::load(&meta, &device)?;
    let x = input.to_device(&device)?;
    let mut candle_runs = Vec::with_capacity(a.runs);
    let mut reference = twin.forward(&x)?; // warm-up
    for _ in 0..a.runs.max(1) {
        let start = std::time::Instant::now();
        reference = twin.forward(&x)?;
        device.synchronize()?;
        candle_runs.push(start.elapsed());
    }
    let reference = reference.to_device(&Device::Cpu)?;
    let candle_median = median(&mut candle_runs);
    println!(
        "{} {} {:?} -> {:?} ({}, {})",
        a.package.display(),
        meta.component,
        meta.input_shape,
        meta.output_shape,
        meta.precision,
        meta.conv_form
    );
    println!("| compute units | compile s | cached | load s | median ms ({} runs) | max_abs vs Candle | rel |", a.runs);
    println!("|---|---|---|---|---|---|---|");
    let cache = std::path::Path::new("target/coreml-cache");
    std::fs::create_dir_all(cache)?;
    for units in ComputeUnits::ALL {
        let (model, times) = CoreMlModel::load(&a.package, units, cache)?;
        let (y, y_shape) = model.predict(&meta.input_name, &data, &shape, &meta.output_name)?;
        let y = Tensor::from_vec(y, y_shape, &Device::Cpu)?;
        let err = max_abs_diff(&y, &reference)?;
        let scale = reference.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
        let mut runs = time_predictions(
            &model,
            &meta.input_name,
            &data,
            &shape,
            &meta.output_name,
            1,
            a.runs,
        )?;
        let med = median(&mut runs);
        println!(
            "| {} | {:.2} | {} | {:.2} | {:.2} | {:.3e} | {:.3e} |",
            units.name(),
            times.compile.as_secs_f64(),
            times.cache_hit,
            times.load.as_secs_f64(),
            med.as_secs_f64() * 1e3,
            err,
            err / scale.max(1e-12)
        );
    }
    println!(
        "| Candle f32 on {:?} (the reference of the error columns) | - | - | - | {:.2} | 0 | 0 |",
        device.location(),
        candle_median.as_secs_f64() * 1e3
    );
    Ok(())
}

fn run_parity(a: ParityArgs) -> Result<()> {
    use ltx_coreml::{check_fixture, CoreMlError};
    let mut files = Vec::new();
    for p in &a.paths {
        if p.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(p)
                .with_context(|| format!("reading `{}`", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.extension().is_some_and(|x| x == "safetensors"))
                .collect();
            found.sort();
            files.extend(found);
        } else {
            files.push(p.clone());
        }
    }
    if files.is_empty() {
        bail!("no fixture given");
    }
    let precisions = match &a.precision {
        Some(p) => vec![p.parse::<Precision>()?],
        None => vec![Precision::Fp32, Precision::Fp16],
    };
    let forms = match &a.conv_form {
        Some(f) => vec![f.parse::<ConvForm>()?],
        None => vec![ConvForm::ChannelFold, ConvForm::PerTap],
    };
    let dir = tempfile_dir()?;
    let (mut passed, mut failed, mut skipped) = (0, 0, 0);
    println!(
        "fixture precision conv_form max_abs_vs_reference rel max_abs_vs_candle_f32 max_abs_vs_candle_f64 rms_rel result"
    );
    for f in &files {
        let name = f.file_name().unwrap_or_default().to_string_lossy();
        for &precision in &precisions {
            for &form in &forms {
                match check_fixture(f, precision, form, &dir) {
                    Ok(c) => {
                        let ok = c.pass();
                        println!(
                            "{name} {} {} {:.3e} {:.3e} {:.3e} {:.3e} {:.3e} {}",
                            precision.name(),
                            form.name(),
                            c.vs_reference.0,
                            c.vs_reference.1,
                            c.vs_candle.0,
                            c.vs_candle_f64,
                            c.rms_rel,
                            if ok { "PASS" } else { "FAIL" }
                        );
                        if ok {
                            passed += 1
                        } else {
                            failed += 1
                        }
                    }
                    // another component's fixture: not ours to check
                    Err(CoreMlError::UnsupportedComponent(_)) => skipped += 1,
                    // a configuration the exporter refuses (with its reason)
                    Err(e @ CoreMlError::UnsupportedModel(_)) => {
                        println!(
                            "{name} {} {} - - - - - SKIP {e}",
                            precision.name(),
                            form.name()
                        );
                        skipped += 1;
                    }
                    Err(e) => {
                        println!(
                            "{name} {} {} - - - - - ERROR {e}",
                            precision.name(),
                            form.name()
                        );
                        failed += 1;
                    }
                }
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    println!("{passed} passed, {failed} failed, {skipped} skipped (not exportable)");
    if failed > 0 {
        std::process::exit(1);
    }
    Ok(())
}

/// A fresh scratch folder for the packages `parity` writes.
fn tempfile_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("ltx-coreml-parity-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating `{}`", dir.display()))?;
    Ok(dir)
}

fn main() -> Result<()> {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let logs = tracing_subscriber::fmt().with_env_filter(filter);
    logs.with_writer(std::io::stderr).init();
    match Cli::parse().command {
        Command::Export(a) => run_export(a),
        Command::Bench(a) => run_bench(a),
        Command::Parity(a) => run_parity(a),
    }
}
