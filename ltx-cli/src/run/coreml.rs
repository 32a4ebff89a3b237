//! `--vae-backend coreml`: the video decoder as an exported Core ML package (macOS builds with the
//! `coreml` feature, which is on by default), checked before any work.

use anyhow::{bail, Result};
use ltx_pipelines::utils::model_ledger::ModelLedger;

use crate::args::{VaeBackend, VaeBackendArgs};

/// Whether this build can decode through Core ML.
pub const AVAILABLE: bool = cfg!(all(feature = "coreml", target_vendor = "apple"));

/// The flags alone: a package only with the Core ML backend, and the backend only where this
/// build has it.
pub fn check_flags(args: &VaeBackendArgs, tiled: bool) -> Result<()> {
    match args.vae_backend {
        VaeBackend::Candle => {
            if args.coreml_decoder.is_some() {
                bail!("--coreml-decoder needs --vae-backend coreml");
            }
            return Ok(());
        }
        VaeBackend::Coreml if !cfg!(target_vendor = "apple") => {
            bail!("--vae-backend coreml needs macOS (Core ML); use --vae-backend candle here")
        }
        VaeBackend::Coreml if !AVAILABLE => bail!(
            "--vae-backend coreml: this ltx was built without the `coreml` feature; rebuild with \
             `cargo build --release -p ltx-cli --features coreml`"
        ),
        VaeBackend::Coreml => {}
    }
    let Some(package) = &args.coreml_decoder else {
        bail!("--vae-backend coreml needs --coreml-decoder PACKAGE");
    };
    if !package.is_dir() {
        bail!(
            "--coreml-decoder `{}` is not a .mlpackage folder",
            package.display()
        );
    }
    if tiled {
        bail!("--tiled-decode is not available with --vae-backend coreml (one fixed shape per package)");
    }
    Ok(())
}

/// Installs the Core ML decoder in the ledger when asked, after checking that it decodes the
/// output's latent `[C, F', H', W']`.
pub fn install(
    args: &VaeBackendArgs,
    ledger: &mut ModelLedger,
    latent: [usize; 4],
    tiled: bool,
) -> Result<()> {
    check_flags(args, tiled)?;
    if args.vae_backend == VaeBackend::Candle {
        return Ok(());
    }
    install_package(args, ledger, latent)
}

#[cfg(all(feature = "coreml", target_vendor = "apple"))]
fn install_package(
    args: &VaeBackendArgs,
    ledger: &mut ModelLedger,
    latent: [usize; 4],
) -> Result<()> {
    use crate::args::ComputeUnitsArg;
    use ltx_core::model::video_vae::LatentVideoDecoder;
    use ltx_coreml::apple::ComputeUnits;
    let units = match args.coreml_compute_units {
        ComputeUnitsArg::All => ComputeUnits::All,
        ComputeUnitsArg::CpuAndNe => ComputeUnits::CpuAndNeuralEngine,
        ComputeUnitsArg::CpuAndGpu => ComputeUnits::CpuAndGpu,
        ComputeUnitsArg::CpuOnly => ComputeUnits::CpuOnly,
    };
    let package = args
        .coreml_decoder
        .as_ref()
        .expect("checked by check_flags");
    let cache = ltx_pipelines::tiny::default_cache_dir().join("coreml");
    let decoder = ltx_coreml::CoreMlVideoDecoder::new(package, units, &cache)?;
    decoder.check_latent_shape(latent)?;
    ledger.video_decoder_backend = Some(ltx_pipelines::utils::model_ledger::VideoDecoderBackend(
        std::sync::Arc::new(decoder),
    ));
    Ok(())
}

#[cfg(not(all(feature = "coreml", target_vendor = "apple")))]
fn install_package(_: &VaeBackendArgs, _: &mut ModelLedger, _: [usize; 4]) -> Result<()> {
    bail!("--vae-backend coreml is not available in this build")
}
