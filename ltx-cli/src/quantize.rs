//! `ltx quantize`: a transformer checkpoint (a monolith or a transformer file) written as GGUF,
//! the block linears in a block type and everything else in F32, like the community files; the
//! checkpoint's config rides along as metadata. `--transformer-path OUT.gguf` reads it back.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use ltx_core::quantization::gguf_writer::quantize_transformer;
use ltx_core::quantization::Quantization;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The safetensors checkpoint (or LTX-2.5 transformer file) to convert.
    #[arg(long)]
    input: PathBuf,
    /// The GGUF file to write (written beside it as `NAME.partial`, renamed when complete).
    #[arg(long)]
    output: PathBuf,
    /// Block type of the attention and feed-forward linears: q8_0, q6_k, q5_k, q4_k, q3_k, q5_0,
    /// q4_0 or q2_k (linears whose rows are not whole blocks stay F32).
    #[arg(long = "type", value_name = "TYPE")]
    ty: String,
    /// Replace an existing output.
    #[arg(long)]
    force: bool,
}

pub fn run(args: &Args) -> Result<()> {
    let t = match Quantization::parse(&args.ty)? {
        Quantization::Gguf(t) => t,
        other => bail!(
            "--type {}: a GGUF block type is needed (q8_0, q6_k, q5_k, q4_k, …)",
            other.name()
        ),
    };
    if !args.input.is_file() {
        bail!(
            "--input `{}` does not exist or is not a file",
            args.input.display()
        );
    }
    if let Some(dir) = args.output.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.is_dir() {
            bail!(
                "the folder of --output `{}` does not exist",
                args.output.display()
            );
        }
    }
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} tensors ({elapsed})")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.set_message(format!("quantize {}", args.ty));
    let report = quantize_transformer(&args.input, &args.output, t, args.force, &mut |i, n| {
        bar.set_length(n as u64);
        bar.set_position(i as u64);
    })
    .with_context(|| format!("quantizing `{}`", args.input.display()))?;
    bar.finish_and_clear();
    println!(
        "wrote {}: {} tensors ({} in {}), {:.1} MB",
        args.output.display(),
        report.tensors,
        report.quantized,
        args.ty,
        report.bytes as f64 / 1e6
    );
    Ok(())
}
