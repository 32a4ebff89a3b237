//! Checks an export against a PyTorch fixture (`ltx-coreml parity`): the fixture file is the
//! checkpoint (weights under real keys, `config` metadata), the package is exported for the
//! fixture's latent shape, run by the [`Interpreter`], and compared with the fixture's expected
//! output (the reference) and with the Candle module.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use ltx_core::loader::SafetensorsFiles;

use crate::error::{io_err, CoreMlError, Result};
use crate::export::{candle_forward, export, to_time_major, ExportOptions};
use crate::interp::{max_abs_diff, Interpreter};
use crate::{Component, ConvForm, Precision, ShapeSpec};

/// What a fixture check found.
#[derive(Clone, Debug, PartialEq)]
pub struct FixtureCheck {
    pub fixture: PathBuf,
    pub component: Component,
    pub precision: Precision,
    pub conv_form: ConvForm,
    /// Max |package − reference| and the same relative to max |reference|.
    pub vs_reference: (f32, f32),
    /// ‖package − reference‖₂ / ‖reference‖₂.
    pub rms_rel: f32,
    /// Max |package − Candle| and relative (both in f32).
    pub vs_candle: (f32, f32),
    /// Max |package − Candle| with both run in f64 (fp16 roundings kept): the graph's semantics
    /// without f32 summation-order noise.
    pub vs_candle_f64: f32,
    /// The fixture's own absolute tolerance.
    pub fixture_atol: f64,
}

impl FixtureCheck {
    /// fp32: within the fixture's tolerance of the reference and 1e-5 of Candle (in f64). fp16:
    /// RMS error within [`FP16_RMS_TOL`] of the reference's RMS and no element further than
    /// [`FP16_MAX_REL_TOL`] of its largest value.
    pub fn pass(&self) -> bool {
        match self.precision {
            Precision::Fp32 => {
                f64::from(self.vs_reference.0) <= self.fixture_atol.max(1e-5)
                    && self.vs_candle_f64 <= FP32_CANDLE_TOL
            }
            Precision::Fp16 => {
                self.rms_rel <= FP16_RMS_TOL && self.vs_reference.1 <= FP16_MAX_REL_TOL
            }
        }
    }
}

/// fp32 packages against the Candle module, both evaluated in f64 (same math, different op
/// order). In f32 the two differ by up to ~3e-5 on the tiny fixture decoders, whose PixelNorm over
/// 2-4 channels amplifies summation-order rounding; f64 takes that noise out of the check.
pub const FP32_CANDLE_TOL: f32 = 1e-5;
/// fp16 packages against the f32 reference, RMS error over RMS value: 11 significant bits per
/// rounding over a few dozen layers. The tiny fixture decoders (PixelNorm over 2-4 channels, close
/// to `sign(x)`, amplifies rounding near zero) reach 2e-2 for some seeds; the encoders, upsamplers
/// and the released-width decoders stay near 1e-3. A layout or semantics bug is O(1).
pub const FP16_RMS_TOL: f32 = 3e-2;
/// fp16: the largest single error relative to the output's largest value.
pub const FP16_MAX_REL_TOL: f32 = 1e-1;

fn rms_rel(a: &Tensor, b: &Tensor) -> Result<f32> {
    let (a, b) = (a.to_dtype(DType::F64)?, b.to_dtype(DType::F64)?);
    let num = (a - &b)?.sqr()?.sum_all()?.to_scalar::<f64>()?.sqrt();
    let den = b.sqr()?.sum_all()?.to_scalar::<f64>()?.sqrt();
    Ok((num / den.max(1e-30)) as f32)
}

fn max_rel(a: &Tensor, b: &Tensor) -> Result<(f32, f32)> {
    let d = max_abs_diff(a, b)?;
    let scale = b.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
    Ok((d, d / scale.max(1e-12)))
}

/// The component, input key and output key of a fixture, from its `component` metadata.
fn fixture_roles(component: &str) -> Option<(Component, &'static str, &'static str)> {
    match component {
        "video_decoder" => Some((Component::VideoDecoder, "input.latent", "output.video")),
        "video_encoder" => Some((Component::VideoEncoder, "input.video", "output.latent")),
        "latent_upsampler" => Some((Component::LatentUpsampler, "input.latent", "output.latent")),
        _ => None,
    }
}

/// Exports the model of `fixture` into `dir`, runs it and compares. A fixture of another
/// component, or a configuration the exporter refuses, is an error (`UnsupportedComponent` /
/// `UnsupportedModel`).
pub fn check_fixture(
    fixture: &Path,
    precision: Precision,
    conv_form: ConvForm,
    dir: &Path,
) -> Result<FixtureCheck> {
    let files = SafetensorsFiles::open(&[fixture])?;
    let name = files.metadata_entry("component").unwrap_or("").to_string();
    let (component, in_key, out_key) =
        fixture_roles(&name).ok_or(CoreMlError::UnsupportedComponent(name))?;
    let atol = files
        .metadata_entry("atol")
        .and_then(|s| s.trim().parse::<f64>().ok())
        .unwrap_or(1e-4);
    let call = files.metadata_json("call")?.unwrap_or_default();
    // tiled or timestep-conditioned calls are not what a package computes
    for key in ["tiling", "timestep"] {
        if call.get(key).is_some_and(|v| !v.is_null()) {
            return Err(CoreMlError::UnsupportedModel(format!(
                "the fixture's call uses `{key}`"
            )));
        }
    }
    if let Some(op) = call.get("op").and_then(|v| v.as_str()) {
        if op != "forward" {
            return Err(CoreMlError::UnsupportedModel(format!(
                "the fixture's call is `{op}`, not the module's forward"
            )));
        }
    }
    drop(files);
    let t = candle_core::safetensors::load(fixture, &Device::Cpu)?;
    let get = |k: &str| -> Result<Tensor> {
        Ok(t.get(k)
            .ok_or_else(|| CoreMlError::InvalidPackage {
                path: fixture.to_path_buf(),
                reason: format!("the fixture has no `{k}`"),
            })?
            .to_dtype(DType::F32)?)
    };
    let (input, expected) = (get(in_key)?, get(out_key)?);
    let latent = if component == Component::VideoEncoder {
        &expected
    } else {
        &input
    };
    let (_, _, f, h, w) = latent.dims5()?;
    let stem = fixture
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let out = dir.join(format!(
        "{stem}_{}_{}.mlpackage",
        precision.name(),
        conv_form.name()
    ));
    let meta = export(&ExportOptions {
        component,
        checkpoint: fixture.to_path_buf(),
        upsampler: None,
        shape: ShapeSpec::Latent([f, h, w]),
        precision,
        conv_form,
        out: out.clone(),
        force: true,
    })?;
    // like the encoder, drop trailing frames beyond the package's fixed count (`1 + 8k`)
    let mut input = to_time_major(&input)?;
    if input.dim(0)? > meta.input_shape[0] {
        input = input.narrow(0, 0, meta.input_shape[0])?;
    }
    let expected = to_time_major(&expected)?;
    let got = Interpreter::load(&out)?.run(&input)?;
    let candle = candle_forward(&meta, &input, &Device::Cpu)?;
    let wide = Interpreter::load(&out)?
        .wide()
        .run(&input.to_dtype(DType::F64)?)?;
    let candle_wide = crate::CandleTwin::load_in(&meta, &Device::Cpu, DType::F64)?
        .forward(&input.to_dtype(DType::F64)?)?;
    let vs_candle_f64 = max_abs_diff(&wide, &candle_wide)?;
    std::fs::remove_dir_all(&out).map_err(io_err(&out))?;
    Ok(FixtureCheck {
        fixture: fixture.to_path_buf(),
        component,
        precision,
        conv_form,
        vs_reference: max_rel(&got, &expected)?,
        rms_rel: rms_rel(&got, &expected)?,
        vs_candle: max_rel(&got, &candle)?,
        vs_candle_f64,
        fixture_atol: atol,
    })
}
