//! `ltx parity FILE_OR_DIR...`: one line per output, a final `N passed, N failed`, and a non-zero
//! exit on any miss, unknown component or unreadable fixture.

use std::path::PathBuf;

use anyhow::Result;
use candle_core::Device;
use ltx_core::quantization::Quantization;
use ltx_parity::{collect_fixtures, quantized_tolerance, run_fixture_quantized, Error};

#[derive(clap::Args)]
pub struct Args {
    /// Fixture files or folders holding them.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Run the transformer fixtures with their block linears narrowed (fp8-cast, q8_0, q4_k, …)
    /// and report each output's relative RMS error against the reference's unquantized output;
    /// other fixtures are listed as skipped.
    #[arg(long, value_name = "NAME", default_value = "none", value_parser = crate::args::parse_quantization)]
    quantization: Quantization,
}

/// Returns `true` when every output of every fixture passed.
pub fn run(args: &Args, device: &Device) -> Result<bool> {
    let files = collect_fixtures(&args.paths)?;
    if files.is_empty() {
        anyhow::bail!("no fixtures found in {:?}", args.paths);
    }
    let q = args.quantization;
    if q != Quantization::None {
        println!(
            "quantization {}: pass = relative RMS error <= {}",
            q.name(),
            quantized_tolerance(q)
        );
    }
    let (mut passed, mut failed, mut skipped) = (0usize, 0usize, 0usize);
    for file in &files {
        let name = file.file_name().map_or_else(
            || file.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        match run_fixture_quantized(file, device, q) {
            Ok(checks) => {
                for c in checks {
                    let rms = if q == Quantization::None {
                        String::new()
                    } else {
                        format!(" rel_rms {:.3e}", c.rel_rms)
                    };
                    println!(
                        "{} {} {:.3e} {:.3e}{rms} {} {}",
                        c.component,
                        c.output,
                        c.max_abs,
                        c.max_rel,
                        if c.pass { "PASS" } else { "FAIL" },
                        name
                    );
                    if c.pass {
                        passed += 1;
                    } else {
                        failed += 1;
                    }
                }
            }
            Err(Error::NotQuantizable { component, .. }) => {
                println!("SKIP {name}: `{component}` is not run quantized");
                skipped += 1;
            }
            Err(e) => {
                println!("ERROR {name}: {e}");
                failed += 1;
            }
        }
    }
    if skipped > 0 {
        println!("{passed} passed, {failed} failed, {skipped} fixtures skipped (not quantizable)");
    } else {
        println!("{passed} passed, {failed} failed");
    }
    // a quantized run that ran nothing proves nothing
    Ok(failed == 0 && (q == Quantization::None || passed > 0))
}
