//! An exported decoder package as the pipelines' video decoder (`ltx ... --vae-backend coreml`).
//!
//! The package has one fixed latent shape, so the pipeline's final latent must be exactly that
//! shape (export the package with the generation's `--frames/--height/--width`); tiled decoding is
//! not available. Core ML itself only exists on Apple platforms: elsewhere decoding is a typed
//! error, and [`CoreMlVideoDecoder::new`] only checks the package.

use std::path::{Path, PathBuf};

use candle_core::Tensor;
use ltx_core::model::video_vae::LatentVideoDecoder;

use crate::apple::ComputeUnits;
use crate::error::{CoreMlError, Result};
use crate::package::PackageMeta;

/// A `video-decoder` package run by Core ML.
#[derive(Clone, Debug)]
pub struct CoreMlVideoDecoder {
    pub package: PathBuf,
    pub meta: PackageMeta,
    pub units: ComputeUnits,
    /// Where the compiled `.mlmodelc` is kept (compiled once per package content).
    pub cache_dir: PathBuf,
}

fn backend_err(reason: impl std::fmt::Display) -> ltx_core::Error {
    ltx_core::Error::Backend {
        backend: "Core ML".into(),
        reason: reason.to_string(),
    }
}

impl CoreMlVideoDecoder {
    /// Reads the package's metadata; a package of another component is refused.
    pub fn new(package: &Path, units: ComputeUnits, cache_dir: &Path) -> Result<Self> {
        let meta = PackageMeta::read(package)?;
        if meta.component != crate::Component::VideoDecoder.name() {
            return Err(CoreMlError::InvalidPackage {
                path: package.to_path_buf(),
                reason: format!("it holds a {}, not a video-decoder", meta.component),
            });
        }
        Ok(Self {
            package: package.to_path_buf(),
            meta,
            units,
            cache_dir: cache_dir.to_path_buf(),
        })
    }

    /// The latent `[C, F', H', W']` the package decodes.
    pub fn latent_shape(&self) -> Option<[usize; 4]> {
        match self.meta.input_shape[..] {
            [f, c, h, w] => Some([c, f, h, w]),
            _ => None,
        }
    }

    #[cfg(target_vendor = "apple")]
    fn run(&self, time_major: &Tensor) -> std::result::Result<Tensor, ltx_core::Error> {
        use crate::apple::CoreMlModel;
        let data: Vec<f32> = time_major.flatten_all()?.to_vec1()?;
        let (model, _) =
            CoreMlModel::load(&self.package, self.units, &self.cache_dir).map_err(backend_err)?;
        let (y, shape) = model
            .predict(
                &self.meta.input_name,
                &data,
                time_major.dims(),
                &self.meta.output_name,
            )
            .map_err(backend_err)?;
        Ok(Tensor::from_vec(y, shape, &candle_core::Device::Cpu)?)
    }

    #[cfg(not(target_vendor = "apple"))]
    fn run(&self, _time_major: &Tensor) -> std::result::Result<Tensor, ltx_core::Error> {
        Err(backend_err("Core ML packages run on macOS only"))
    }
}

impl LatentVideoDecoder for CoreMlVideoDecoder {
    fn name(&self) -> &str {
        "Core ML"
    }

    fn check_latent_shape(&self, shape: [usize; 4]) -> ltx_core::Result<()> {
        if self.latent_shape() != Some(shape) {
            return Err(backend_err(format!(
                "`{}` decodes latents {:?} ([C, F', H', W']), the generation makes {shape:?}: \
                 export it for this size (ltx-coreml export --frames F --height H --width W)",
                self.package.display(),
                self.latent_shape()
            )));
        }
        Ok(())
    }

    fn decode(&self, latent: &Tensor) -> ltx_core::Result<Tensor> {
        decode_time_major(self, latent, |x| self.run(x))
    }
}

/// The latent checked against `decoder`'s shape, converted to the package layout on the CPU,
/// run, and converted back to `[1, 3, F, H, W]` on the latent's device.
fn decode_time_major(
    decoder: &dyn LatentVideoDecoder,
    latent: &Tensor,
    run: impl FnOnce(&Tensor) -> std::result::Result<Tensor, ltx_core::Error>,
) -> ltx_core::Result<Tensor> {
    let (b, c, f, h, w) = latent.dims5()?;
    if b != 1 {
        return Err(backend_err(format!("batch {b}: packages decode batch 1")));
    }
    decoder.check_latent_shape([c, f, h, w])?;
    let device = latent.device().clone();
    let x = crate::to_time_major(&latent.to_dtype(candle_core::DType::F32)?)
        .map_err(backend_err)?
        .to_device(&candle_core::Device::Cpu)?;
    let y = run(&x)?;
    Ok(crate::from_time_major(&y)
        .map_err(backend_err)?
        .to_device(&device)?)
}

/// A `video-decoder` package run by the in-repo reference interpreter instead of Core ML: the
/// same integration (shape check, layout conversion, ledger) on any platform, slowly. For tests
/// and for debugging a package without a Mac.
#[derive(Clone, Debug)]
pub struct InterpretedVideoDecoder(pub CoreMlVideoDecoder);

impl InterpretedVideoDecoder {
    pub fn new(package: &Path) -> Result<Self> {
        Ok(Self(CoreMlVideoDecoder::new(
            package,
            ComputeUnits::CpuOnly,
            &std::env::temp_dir(),
        )?))
    }
}

impl LatentVideoDecoder for InterpretedVideoDecoder {
    fn name(&self) -> &str {
        "interpreted Core ML"
    }

    fn check_latent_shape(&self, shape: [usize; 4]) -> ltx_core::Result<()> {
        self.0.check_latent_shape(shape)
    }

    fn decode(&self, latent: &Tensor) -> ltx_core::Result<Tensor> {
        decode_time_major(self, latent, |x| {
            crate::Interpreter::load(&self.0.package)
                .and_then(|i| i.run(x))
                .map_err(backend_err)
        })
    }
}
