//! `ltx parity FILE_OR_DIR...`: one line per output, a final `N passed, N failed`, and a non-zero
//! exit on any miss, unknown component or unreadable fixture.

use std::path::PathBuf;

use anyhow::Result;
use candle_core::Device;
use ltx_parity::{collect_fixtures, run_fixture};

#[derive(clap::Args)]
pub struct Args {
    /// Fixture files or folders holding them.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
}

/// Returns `true` when every output of every fixture passed.
pub fn run(args: &Args, device: &Device) -> Result<bool> {
    let files = collect_fixtures(&args.paths)?;
    if files.is_empty() {
        anyhow::bail!("no fixtures found in {:?}", args.paths);
    }
    let (mut passed, mut failed) = (0usize, 0usize);
    for file in &files {
        let name = file.file_name().map_or_else(
            || file.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        match run_fixture(file, device) {
            Ok(checks) => {
                for c in checks {
                    println!(
                        "{} {} {:.3e} {:.3e} {} {}",
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
            Err(e) => {
                println!("ERROR {name}: {e}");
                failed += 1;
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    Ok(failed == 0)
}
