//! The export driver: load a component through `ltx-core`'s loader, check the requested shape,
//! lower it to MIL and write the package atomically.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use ltx_core::loader::{SafetensorsFiles, StateDict};
use ltx_core::model::upsampler::{latent_upsampler_keys, LatentUpsamplerConfig};
use ltx_core::model::video_vae::encoder::{SPACE_SCALE, TIME_SCALE};
use ltx_core::model::video_vae::{
    vae_decoder_keys_filter, vae_encoder_keys_filter, VideoVaeConfig,
};

use crate::blob::BlobWriter;
use crate::error::{io_err, CoreMlError, Result};
use crate::lower::common::Ctx;
use crate::lower::upsampler::{lower_upsampler, upsampler_factors, LatentStats};
use crate::lower::video_vae::{decoder_factors, encoder_factors, lower_decoder, lower_encoder};
use crate::mil::{Graph, MilDType};
use crate::package::{model_message, PackageMeta, PendingPackage, LAYOUT};
use crate::{Component, ConvForm, Precision, ShapeSpec};

/// Core ML 7 (iOS 17 / macOS 14).
pub const SPEC_VERSION: i32 = 8;
pub const OPSET: &str = "CoreML7";

/// Everything `ltx-coreml export` takes.
#[derive(Clone, Debug)]
pub struct ExportOptions {
    pub component: Component,
    pub checkpoint: PathBuf,
    pub upsampler: Option<PathBuf>,
    pub shape: ShapeSpec,
    pub precision: Precision,
    pub conv_form: ConvForm,
    pub out: PathBuf,
    pub force: bool,
}

/// A loaded component: its config, strict weights and fixed I/O shapes.
pub(crate) enum Loaded {
    Decoder(VideoVaeConfig, VarBuilder<'static>),
    Encoder(VideoVaeConfig, VarBuilder<'static>),
    Upsampler(
        LatentUpsamplerConfig,
        VarBuilder<'static>,
        Option<LatentStats>,
    ),
}

fn open(path: &Path) -> Result<SafetensorsFiles> {
    if !path.exists() {
        return Err(CoreMlError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
        });
    }
    Ok(SafetensorsFiles::open(&[path])?)
}

fn vb_of(files: &SafetensorsFiles, ops: &ltx_core::loader::SDOps) -> Result<VarBuilder<'static>> {
    let sd: Arc<StateDict> = Arc::new(files.state_dict(ops)?);
    Ok(sd.var_builder(DType::F32, &Device::Cpu))
}

pub(crate) fn load(
    component: Component,
    checkpoint: &Path,
    upsampler: Option<&Path>,
) -> Result<Loaded> {
    match component {
        Component::VideoDecoder | Component::VideoEncoder => {
            if upsampler.is_some() {
                return Err(CoreMlError::UnsupportedModel(
                    "--upsampler only applies to --component latent-upsampler".into(),
                ));
            }
            let files = open(checkpoint)?;
            let cfg = VideoVaeConfig::from_checkpoint_config(&files.config()?)?;
            Ok(if component == Component::VideoDecoder {
                Loaded::Decoder(cfg, vb_of(&files, &vae_decoder_keys_filter())?)
            } else {
                Loaded::Encoder(cfg, vb_of(&files, &vae_encoder_keys_filter())?)
            })
        }
        Component::LatentUpsampler => {
            let (up_path, stats_path) = match upsampler {
                Some(u) => (u, Some(checkpoint)),
                None => (checkpoint, None),
            };
            let files = open(up_path)?;
            let cfg = LatentUpsamplerConfig::from_checkpoint_config(&files.config()?)?;
            let vb = vb_of(&files, &latent_upsampler_keys())?;
            let stats = match stats_path {
                Some(p) => {
                    let vb = vb_of(&open(p)?, &vae_encoder_keys_filter())?;
                    let vb = vb.pp("per_channel_statistics");
                    let c = cfg.in_channels;
                    Some(LatentStats {
                        std: vb.get(c, "std-of-means")?,
                        mean: vb.get(c, "mean-of-means")?,
                    })
                }
                None => None,
            };
            Ok(Loaded::Upsampler(cfg, vb, stats))
        }
    }
}

fn positive(dims: [usize; 3], what: &str) -> Result<()> {
    if dims.contains(&0) {
        return Err(CoreMlError::InvalidShape(format!(
            "{what} {dims:?} has a zero extent"
        )));
    }
    Ok(())
}

/// Latent `(F', H', W')` from a pixel-space `(frames, height, width)`.
fn pixels_to_latent(p: [usize; 3], tf: usize, sf: usize) -> Result<[usize; 3]> {
    positive(p, "pixel shape (frames, height, width)")?;
    let [f, h, w] = p;
    if (f - 1) % tf != 0 {
        return Err(CoreMlError::InvalidShape(format!(
            "{f} frames: the model takes 1 + {tf}k frames"
        )));
    }
    if h % sf != 0 || w % sf != 0 {
        return Err(CoreMlError::InvalidShape(format!(
            "{h}x{w}: height and width must be multiples of {sf}"
        )));
    }
    Ok([1 + (f - 1) / tf, h / sf, w / sf])
}

fn latent_dims(spec: ShapeSpec, tf: usize, sf: usize) -> Result<[usize; 3]> {
    match spec {
        ShapeSpec::Latent(l) => {
            positive(l, "latent shape (F, H, W)")?;
            Ok(l)
        }
        ShapeSpec::Pixels(p) => pixels_to_latent(p, tf, sf),
    }
}

/// `(input shape, output shape, names)` of a loaded component at a requested shape.
pub(crate) fn io_shapes(
    loaded: &Loaded,
    spec: ShapeSpec,
) -> Result<(Vec<usize>, Vec<usize>, &'static str, &'static str)> {
    Ok(match loaded {
        Loaded::Decoder(cfg, _) => {
            let (tf, sf) = decoder_factors(cfg)?;
            let [f, h, w] = latent_dims(spec, tf, sf)?;
            (
                vec![f, cfg.latent_channels, h, w],
                vec![1 + tf * (f - 1), cfg.out_channels, h * sf, w * sf],
                "latent",
                "video",
            )
        }
        Loaded::Encoder(cfg, _) => {
            let (tf, sf) = encoder_factors(cfg)?;
            let [f, h, w] = latent_dims(spec, tf, sf)?;
            (
                vec![1 + tf * (f - 1), cfg.in_channels, h * sf, w * sf],
                vec![f, cfg.latent_channels, h, w],
                "video",
                "latent",
            )
        }
        Loaded::Upsampler(cfg, _, _) => {
            let (tu, su) = upsampler_factors(cfg)?;
            let [f, h, w] = latent_dims(spec, TIME_SCALE, SPACE_SCALE)?;
            let fo = if tu == 2 { 2 * f - 1 } else { f };
            (
                vec![f, cfg.in_channels, h, w],
                vec![fo, cfg.in_channels, h * su, w * su],
                "latent",
                "latent_upsampled",
            )
        }
    })
}

/// Exports one component to `opts.out`; returns the metadata written into the package.
pub fn export(opts: &ExportOptions) -> Result<PackageMeta> {
    let loaded = load(opts.component, &opts.checkpoint, opts.upsampler.as_deref())?;
    let (in_shape, out_shape, in_name, out_name) = io_shapes(&loaded, opts.shape)?;
    let pending = PendingPackage::create(&opts.out, opts.force)?;
    let wpath = pending.weight_file();
    let file = std::fs::File::create(&wpath).map_err(io_err(&wpath))?;
    let blob = BlobWriter::new(Box::new(std::io::BufWriter::new(file)), wpath)?;
    let compute = match opts.precision {
        Precision::Fp16 => MilDType::F16,
        Precision::Fp32 => MilDType::F32,
    };
    let mut g = Graph::new(compute, blob);
    let input = g.input(in_name, MilDType::F32, &in_shape);
    let x = if compute == MilDType::F16 {
        g.cast(&input, MilDType::F16)?
    } else {
        input
    };
    let mut ctx = Ctx {
        g: &mut g,
        conv_form: opts.conv_form,
    };
    let y = match &loaded {
        Loaded::Decoder(cfg, vb) => lower_decoder(&mut ctx, cfg, vb, &x)?,
        Loaded::Encoder(cfg, vb) => lower_encoder(&mut ctx, cfg, vb, &x)?,
        Loaded::Upsampler(cfg, vb, stats) => {
            lower_upsampler(&mut ctx, cfg, vb, stats.as_ref(), &x)?
        }
    };
    if y.shape != out_shape {
        return Err(CoreMlError::Graph(format!(
            "lowered output has shape {:?}, expected {out_shape:?}",
            y.shape
        )));
    }
    let y = if compute == MilDType::F16 {
        g.cast(&y, MilDType::F32)?
    } else {
        // The output must be an op result (not the input itself) so it can carry its name.
        y
    };
    g.output(&y, out_name)?;
    let weight_bytes = g.blob_bytes();
    let (program, _, _, blob_total) = g.finish(OPSET)?;
    tracing::info!(
        component = opts.component.name(),
        weight_bytes,
        blob_total,
        "lowered"
    );
    if blob_total >= 1 << 31 {
        return Err(CoreMlError::UnsupportedModel(format!(
            "weight file of {blob_total} bytes exceeds Core ML's 2 GiB limit (use fp16)"
        )));
    }
    let meta = PackageMeta {
        component: opts.component.name().to_string(),
        checkpoint: opts.checkpoint.clone(),
        upsampler: opts.upsampler.clone(),
        input_name: in_name.to_string(),
        input_shape: in_shape,
        output_name: out_name.to_string(),
        output_shape: out_shape,
        precision: opts.precision.name().to_string(),
        conv_form: opts.conv_form.name().to_string(),
        layout: LAYOUT.to_string(),
    };
    let model = model_message(SPEC_VERSION, program, &meta)?;
    pending.commit(&model)?;
    Ok(meta)
}

/// `[F, C, H, W]` (time-major) → `[1, C, F, H, W]`.
pub fn from_time_major(x: &Tensor) -> Result<Tensor> {
    Ok(x.permute((1, 0, 2, 3))?.unsqueeze(0)?.contiguous()?)
}

/// `[1, C, F, H, W]` → `[F, C, H, W]` (time-major).
pub fn to_time_major(x: &Tensor) -> Result<Tensor> {
    let (b, ..) = x.dims5()?;
    if b != 1 {
        return Err(CoreMlError::InvalidShape(format!(
            "batch {b}: packages are exported for batch 1"
        )));
    }
    Ok(x.squeeze(0)?.permute((1, 0, 2, 3))?.contiguous()?)
}

/// The Candle module a package was exported from, built once on a device (the bench times it on
/// the same input as the package).
pub enum CandleTwin {
    Decoder(ltx_core::model::video_vae::VideoDecoder),
    Encoder(ltx_core::model::video_vae::VideoEncoder),
    Upsampler {
        model: ltx_core::model::upsampler::LatentUpsampler,
        /// `(mean, std)` `[1, C, 1, 1, 1]` when the package computes `upsample_video`.
        stats: Option<(Tensor, Tensor)>,
    },
}

impl CandleTwin {
    /// Builds the module of `meta` (from its checkpoint and upsampler files) on `device`, in f32.
    pub fn load(meta: &PackageMeta, device: &Device) -> Result<Self> {
        Self::load_in(meta, device, DType::F32)
    }

    /// [`Self::load`] with the weights (and so the arithmetic) in `dtype`.
    pub fn load_in(meta: &PackageMeta, device: &Device, dtype: DType) -> Result<Self> {
        let component: Component = meta.component.parse()?;
        Ok(
            match load(component, &meta.checkpoint, meta.upsampler.as_deref())? {
                Loaded::Decoder(cfg, vb) => {
                    Self::Decoder(ltx_core::model::video_vae::VideoDecoder::new(
                        &cfg,
                        vb.set_device(device.clone()).set_dtype(dtype),
                    )?)
                }
                Loaded::Encoder(cfg, vb) => {
                    Self::Encoder(ltx_core::model::video_vae::VideoEncoder::new(
                        &cfg,
                        vb.set_device(device.clone()).set_dtype(dtype),
                    )?)
                }
                Loaded::Upsampler(cfg, vb, stats) => {
                    let c = cfg.in_channels;
                    let v = |t: &Tensor| -> Result<Tensor> {
                        Ok(t.to_device(device)?
                            .to_dtype(dtype)?
                            .reshape((1, c, 1, 1, 1))?)
                    };
                    let stats = match stats {
                        None => None,
                        Some(s) => Some((v(&s.mean)?, v(&s.std)?)),
                    };
                    Self::Upsampler {
                        model: ltx_core::model::upsampler::LatentUpsampler::new(
                            &cfg,
                            vb.set_device(device.clone()).set_dtype(dtype),
                        )?,
                        stats,
                    }
                }
            },
        )
    }

    /// Runs the module on `input` in the package's time-major layout; the output in the same
    /// layout, on the module's device.
    pub fn forward(&self, input: &Tensor) -> Result<Tensor> {
        let x = from_time_major(input)?;
        let y = match self {
            Self::Decoder(m) => m.forward(&x, Default::default())?,
            Self::Encoder(m) => m.forward(&x)?,
            Self::Upsampler { model, stats: None } => model.forward(&x)?,
            Self::Upsampler {
                model,
                stats: Some((mean, std)),
            } => {
                let y = x.broadcast_mul(std)?.broadcast_add(mean)?;
                let y = model.forward(&y)?;
                y.broadcast_sub(mean)?.broadcast_div(std)?
            }
        };
        to_time_major(&y)
    }
}

/// Runs the Candle module a package was exported from on `input` (the package's time-major
/// input layout), returning the output in the package's layout.
pub fn candle_forward(meta: &PackageMeta, input: &Tensor, device: &Device) -> Result<Tensor> {
    if input.dims() != meta.input_shape.as_slice() {
        return Err(CoreMlError::InvalidShape(format!(
            "input has shape {:?}, the package takes {:?}",
            input.dims(),
            meta.input_shape
        )));
    }
    let input = input.to_dtype(DType::F32)?.to_device(device)?;
    CandleTwin::load(meta, device)?.forward(&input)
}
