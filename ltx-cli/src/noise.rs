//! `ltx noise`: the standard normals a seed gives, one value per line, so the noise of a run can
//! be compared with the reference's `torch.randn` outside any pipeline.
//!
//! `ltx noise --kind torch-cpu --seed 0 --shape 2,3 --shape 5` prints the draw of `[2, 3]` and
//! then of `[5]` from one generator (the second continues the first, as successive
//! `torch.randn(..., generator=g)` calls do), row-major, each value in the shortest form that
//! reads back to the same number of the draw's dtype (f32 for f32 / bf16 / f16, f64 for f64).

use std::io::Write;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device};
use ltx_core::components::noisers::SeededNoise;

use crate::args::NoiseArg;

/// `--draw-dtype` of `ltx noise`: what `torch.randn(..., dtype=...)` is asked for.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NoiseDType {
    #[default]
    F32,
    F64,
    Bf16,
    F16,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Random generator.
    #[arg(long, value_enum, default_value_t)]
    kind: NoiseArg,
    /// Seed (`manual_seed`): 0..2^64, or a negative value, taken as torch takes it (+2^64).
    #[arg(long, allow_negative_numbers = true, value_parser = parse_seed)]
    seed: u64,
    /// Shape of one draw, comma-separated (e.g. `1,128,2,4,4`); repeat for successive draws.
    #[arg(long, required = true, value_name = "A,B,...", value_parser = parse_shape)]
    shape: Vec<Vec<usize>>,
    /// Dtype of every draw (`torch.randn(..., dtype=...)`; the global --dtype is the compute
    /// dtype of the generation commands).
    #[arg(long, value_enum, default_value_t)]
    draw_dtype: NoiseDType,
    /// Multiprocessor count of the GPU for --kind torch-cuda.
    #[arg(long, value_name = "N", default_value_t = 132, value_parser = clap::value_parser!(u32).range(1..))]
    sms: u32,
}

/// A seed as `torch.Generator.manual_seed` takes it: an unsigned 64-bit value, or a negative one
/// wrapped to `seed + 2⁶⁴`.
fn parse_seed(s: &str) -> std::result::Result<u64, String> {
    s.parse::<u64>()
        .or_else(|_| s.parse::<i64>().map(|v| v as u64))
        .map_err(|_| format!("`{s}` is not an integer seed"))
}

/// `A,B,...`: one or more positive integers.
fn parse_shape(s: &str) -> std::result::Result<Vec<usize>, String> {
    if s.trim().is_empty() {
        return Err("the shape is empty: give its sizes as A,B,...".into());
    }
    s.split(',')
        .map(|d| match d.trim().parse::<usize>() {
            Ok(0) => Err(format!("`{s}`: a dimension of size 0 draws nothing")),
            Ok(n) => Ok(n),
            Err(_) => Err(format!("`{s}`: `{}` is not a positive integer", d.trim())),
        })
        .collect()
}

pub fn run(args: &Args) -> Result<()> {
    let kind = args.kind.with_multiprocessors(args.sms);
    let mut noise = SeededNoise::new(kind, args.seed);
    let dtype = match args.draw_dtype {
        NoiseDType::F32 => DType::F32,
        NoiseDType::F64 => DType::F64,
        NoiseDType::Bf16 => DType::BF16,
        NoiseDType::F16 => DType::F16,
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for shape in &args.shape {
        let count = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
        if count.is_none_or(|n| n > isize::MAX as usize / 8) {
            bail!("shape {shape:?} is too large to draw");
        }
        let t = noise
            .randn(shape.as_slice(), dtype, &Device::Cpu)?
            .flatten_all()?;
        if dtype == DType::F64 {
            for v in t.to_vec1::<f64>()? {
                writeln!(out, "{v:e}")?;
            }
        } else {
            for v in t.to_dtype(DType::F32)?.to_vec1::<f32>()? {
                writeln!(out, "{v:e}")?;
            }
        }
    }
    out.flush().context("writing the values")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_parse_or_say_why_not() {
        assert_eq!(parse_shape("2,3"), Ok(vec![2, 3]));
        assert_eq!(parse_shape(" 7 "), Ok(vec![7]));
        assert!(parse_shape("").unwrap_err().contains("empty"));
        assert!(parse_shape("2,0").unwrap_err().contains("size 0"));
        assert!(parse_shape("2,x").unwrap_err().contains("`x` is not"));
        assert!(parse_shape("2,,3").unwrap_err().contains("is not"));
        assert!(parse_shape("-1").unwrap_err().contains("is not"));
        assert_eq!(parse_seed("-1"), Ok(u64::MAX));
        assert_eq!(parse_seed("18446744073709551615"), Ok(u64::MAX));
        assert!(parse_seed("1.5").is_err());
    }
}
