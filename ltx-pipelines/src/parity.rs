//! The parity harness: runs a reference fixture through the same loader and model code a real
//! checkpoint uses and compares every output (`ltx parity`, and `cargo test`).
//!
//! A fixture is one safetensors file: metadata `component`, `config` (checkpoint-style JSON),
//! `call` (JSON of non-tensor arguments), `atol`, `rtol`; tensors: weights under real checkpoint
//! keys, inputs `input.<name>`, expected outputs `output.<name>` (see `docs/parity.md`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use ltx_core::loader::{SDOps, SafetensorsFiles, StateDict};
use ltx_core::model::video_vae::{
    decoder::to_uint8_frames, vae_decoder_keys_filter, vae_encoder_keys_filter, DecodeInputs,
    TilingConfig, VideoDecoder, VideoEncoder, VideoVaeConfig,
};
use serde_json::Value;

use crate::{Error, Result};

/// One opened fixture.
pub struct Fixture {
    pub path: PathBuf,
    pub component: String,
    pub config: Value,
    pub call: Value,
    pub atol: f64,
    pub rtol: f64,
    files: SafetensorsFiles,
}

impl Fixture {
    pub fn open(path: &Path) -> Result<Self> {
        let files = SafetensorsFiles::open(&[path])?;
        let bad = |reason: String| Error::BadFixture {
            path: path.to_path_buf(),
            reason,
        };
        let component = files
            .metadata_entry("component")
            .ok_or_else(|| bad("no `component` metadata".into()))?
            .to_string();
        let config = files.config()?;
        let call = files.metadata_json("call")?.unwrap_or(Value::Null);
        let tol = |key: &str, default: f64| -> Result<f64> {
            match files.metadata_entry(key) {
                None => Ok(default),
                Some(s) => s
                    .trim()
                    .parse::<f64>()
                    .map_err(|_| bad(format!("`{key}` is not a number: {s:?}"))),
            }
        };
        Ok(Self {
            path: path.to_path_buf(),
            component,
            config,
            atol: tol("atol", 1e-4)?,
            rtol: tol("rtol", 1e-4)?,
            call,
            files,
        })
    }

    fn bad(&self, reason: impl Into<String>) -> Error {
        Error::BadFixture {
            path: self.path.clone(),
            reason: reason.into(),
        }
    }

    /// Tensors `input.*` / `output.*`, loaded as f32 on `device`.
    fn io(&self, prefix: &str, device: &Device) -> Result<Arc<StateDict>> {
        let ops = SDOps::new("FIXTURE_IO")
            .with_matching(prefix, "")
            .with_replacement(prefix, "");
        let _ = device;
        Ok(Arc::new(self.files.state_dict(&ops)?))
    }

    fn tensor(
        &self,
        sd: &Arc<StateDict>,
        name: &str,
        device: &Device,
        required: bool,
    ) -> Result<Option<Tensor>> {
        if !sd.contains(name) {
            return if required {
                Err(self.bad(format!("missing tensor `{name}`")))
            } else {
                Ok(None)
            };
        }
        let t = sd.raw_tensor(name, device)?;
        Ok(Some(if t.dtype().is_float() {
            t.to_dtype(DType::F32)?
        } else {
            t
        }))
    }

    /// Weights of a component, filtered and renamed by `ops`, as a strict var builder.
    fn weights(&self, ops: &SDOps) -> Result<Arc<StateDict>> {
        Ok(Arc::new(self.files.state_dict(ops)?))
    }

    fn tiling(&self) -> Result<Option<TilingConfig>> {
        match self.call.get("tiling") {
            None | Some(Value::Null) => Ok(None),
            Some(v) => serde_json::from_value(v.clone())
                .map(Some)
                .map_err(|e| self.bad(format!("call.tiling: {e}"))),
        }
    }
}

/// The comparison of one output.
#[derive(Clone, Debug)]
pub struct OutputCheck {
    pub component: String,
    pub output: String,
    pub max_abs: f64,
    /// `max_abs / max|expected|`.
    pub max_rel: f64,
    pub pass: bool,
}

/// Compares `actual` to `expected` elementwise (`|a − e| ≤ atol + rtol·|e|`, like `torch.allclose`).
pub fn compare(
    component: &str,
    output: &str,
    actual: &Tensor,
    expected: &Tensor,
    atol: f64,
    rtol: f64,
) -> Result<OutputCheck> {
    let fail = |max_abs: f64| OutputCheck {
        component: component.to_string(),
        output: output.to_string(),
        max_abs,
        max_rel: f64::INFINITY,
        pass: false,
    };
    if actual.dims() != expected.dims() {
        tracing::error!(output, actual = ?actual.dims(), expected = ?expected.dims(), "shape mismatch");
        return Ok(fail(f64::INFINITY));
    }
    let a = actual
        .to_dtype(DType::F64)?
        .flatten_all()?
        .to_vec1::<f64>()?;
    let e = expected
        .to_dtype(DType::F64)?
        .flatten_all()?
        .to_vec1::<f64>()?;
    let (mut max_abs, mut max_ref, mut pass) = (0f64, 0f64, true);
    for (a, e) in a.iter().zip(&e) {
        let d = (a - e).abs();
        if d.is_nan() || d > atol + rtol * e.abs() {
            pass = false;
        }
        max_abs = max_abs.max(if d.is_nan() { f64::INFINITY } else { d });
        max_ref = max_ref.max(e.abs());
    }
    Ok(OutputCheck {
        component: component.to_string(),
        output: output.to_string(),
        max_abs,
        max_rel: if max_ref > 0.0 {
            max_abs / max_ref
        } else {
            max_abs
        },
        pass,
    })
}

/// uint8 frames may differ by one where the float output sits on an integer boundary before the
/// truncating cast; every other output uses the fixture's tolerances.
fn output_tolerance(output: &str, atol: f64, rtol: f64) -> (f64, f64) {
    match output {
        "frames" => (1.0, 0.0),
        _ => (atol, rtol),
    }
}

/// Runs one fixture on `device` in f32 and compares each of its outputs.
pub fn run_fixture(path: &Path, device: &Device) -> Result<Vec<OutputCheck>> {
    let fx = Fixture::open(path)?;
    let inputs = fx.io("input.", device)?;
    let expected = fx.io("output.", device)?;
    let outputs: Vec<(String, Tensor)> = match fx.component.as_str() {
        "video_encoder" => vec![(
            "latent".to_string(),
            run_video_encoder(&fx, &inputs, device)?,
        )],
        "scheduler" => run_scheduler(&fx, device)?,
        "video_decoder" => {
            let video = run_video_decoder(&fx, &inputs, device)?;
            let mut outs = Vec::new();
            if expected.contains("frames") {
                outs.push(("frames".to_string(), to_uint8_frames(&video)?));
            }
            outs.insert(0, ("video".to_string(), video));
            outs
        }
        other => {
            return Err(Error::UnknownComponent {
                path: path.to_path_buf(),
                component: other.to_string(),
            })
        }
    };
    outputs
        .into_iter()
        .map(|(name, actual)| {
            let want = fx
                .tensor(&expected, &name, device, true)?
                .expect("required tensors are present");
            let (atol, rtol) = output_tolerance(&name, fx.atol, fx.rtol);
            compare(&fx.component, &name, &actual, &want, atol, rtol)
        })
        .collect()
}

/// `scheduler` fixtures: `call = {"scheduler": "ltx2" | "linear_quadratic", "cases": [kwargs]}`
/// with outputs `sigmas_<i>`, or `{"scheduler": "constants"}` with the pipelines' sigma lists.
fn run_scheduler(fx: &Fixture, device: &Device) -> Result<Vec<(String, Tensor)>> {
    use ltx_core::components::schedulers::{LinearQuadraticScheduler, Ltx2Scheduler};
    let kind = fx
        .call
        .get("scheduler")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let vec1 = |v: &[f32]| Tensor::from_slice(v, v.len(), device);
    if kind == "constants" {
        use crate::utils::constants::{DISTILLED_SIGMA_VALUES, STAGE_2_DISTILLED_SIGMA_VALUES};
        return Ok(vec![
            ("distilled".to_string(), vec1(&DISTILLED_SIGMA_VALUES)?),
            (
                "stage_2_distilled".to_string(),
                vec1(&STAGE_2_DISTILLED_SIGMA_VALUES)?,
            ),
        ]);
    }
    let cases = fx
        .call
        .get("cases")
        .and_then(Value::as_array)
        .ok_or_else(|| fx.bad("call.cases must be a list"))?;
    let num = |case: &Value, key: &str| case.get(key).and_then(Value::as_f64);
    let int = |case: &Value, key: &str| case.get(key).and_then(Value::as_u64).map(|v| v as usize);
    let mut out = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let steps = int(case, "steps").ok_or_else(|| fx.bad(format!("case {i}: missing steps")))?;
        let sigmas = match kind {
            "ltx2" => {
                let d = Ltx2Scheduler::default();
                let s = Ltx2Scheduler {
                    max_shift: num(case, "max_shift").unwrap_or(d.max_shift),
                    base_shift: num(case, "base_shift").unwrap_or(d.base_shift),
                    stretch: case
                        .get("stretch")
                        .and_then(Value::as_bool)
                        .unwrap_or(d.stretch),
                    terminal: num(case, "terminal").unwrap_or(d.terminal),
                    ..d
                };
                s.sigmas(steps, int(case, "tokens"))?
            }
            "linear_quadratic" => {
                let d = LinearQuadraticScheduler::default();
                LinearQuadraticScheduler {
                    threshold_noise: num(case, "threshold_noise").unwrap_or(d.threshold_noise),
                    linear_steps: int(case, "linear_steps"),
                }
                .sigmas(steps)?
            }
            other => return Err(fx.bad(format!("unknown scheduler `{other}`"))),
        };
        out.push((format!("sigmas_{i}"), vec1(&sigmas)?));
    }
    Ok(out)
}

fn run_video_encoder(fx: &Fixture, inputs: &Arc<StateDict>, device: &Device) -> Result<Tensor> {
    let cfg = VideoVaeConfig::from_checkpoint_config(&fx.config)?;
    let sd = fx.weights(&vae_encoder_keys_filter())?;
    let encoder = VideoEncoder::new(&cfg, sd.var_builder(DType::F32, device))?;
    sd.report_unused("video_encoder");
    let video = fx.tensor(inputs, "video", device, true)?.expect("required");
    Ok(match fx.tiling()? {
        None => encoder.forward(&video)?,
        Some(t) => encoder.tiled_encode(&video, &t)?,
    })
}

fn run_video_decoder(fx: &Fixture, inputs: &Arc<StateDict>, device: &Device) -> Result<Tensor> {
    let cfg = VideoVaeConfig::from_checkpoint_config(&fx.config)?;
    let sd = fx.weights(&vae_decoder_keys_filter())?;
    let decoder = VideoDecoder::new(&cfg, sd.var_builder(DType::F32, device))?;
    sd.report_unused("video_decoder");
    let latent = fx
        .tensor(inputs, "latent", device, true)?
        .expect("required");
    let noise = fx.tensor(inputs, "noise", device, false)?;
    if decoder.has_timestep_conditioning() && noise.is_none() {
        return Err(fx.bad("timestep-conditioned decoder fixture needs `input.noise`"));
    }
    let timestep = match fx.call.get("timestep") {
        None | Some(Value::Null) => None,
        Some(v) => {
            let t = v
                .as_f64()
                .ok_or_else(|| fx.bad(format!("call.timestep is not a number: {v}")))?;
            Some(Tensor::full(t as f32, latent.dim(0)?, device)?)
        }
    };
    Ok(match fx.tiling()? {
        None => decoder.forward(
            &latent,
            DecodeInputs {
                timestep: timestep.as_ref(),
                noise: noise.as_ref(),
                spatial_noise: None,
            },
        )?,
        Some(t) => decoder.tiled_decode_all(&latent, &t, timestep.as_ref(), noise.as_ref())?,
    })
}

/// Expands directories into their `*.safetensors` files (sorted); files are kept as given.
pub fn collect_fixtures(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let rd = std::fs::read_dir(p).map_err(|source| Error::Io {
                path: p.clone(),
                source,
            })?;
            let mut files: Vec<PathBuf> = rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.extension().is_some_and(|x| x == "safetensors"))
                .collect();
            files.sort();
            out.extend(files);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}
