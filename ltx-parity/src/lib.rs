//! The parity harness: runs a reference fixture through the same loader and model code a real
//! checkpoint uses and compares every output (`ltx parity`, and `cargo test`).
//!
//! A fixture is one safetensors file: metadata `component`, `config` (checkpoint-style JSON),
//! `call` (JSON of non-tensor arguments), `atol`, `rtol`; tensors: weights under real checkpoint
//! keys, inputs `input.<name>`, expected outputs `output.<name>` (see `docs/parity.md`).

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use ltx_core::loader::{SDOps, SafetensorsFiles, StateDict};
use ltx_core::model::video_vae::TilingConfig;
use ltx_core::quantization::Quantization;
use serde_json::{Map, Value};

mod error;
pub use error::{Error, Result};

mod audio_filters;
mod audio_processor;
mod audio_vae;
mod conditioning;
pub mod denoise_loop;
mod diffusion_step;
mod duration_head;
mod embeddings_processor;
mod gemma;
mod gemma4;
mod gemma4_prompt;
mod gemma_generate;
mod gemma_tokenizer;
mod guider;
mod latent_upsampler;
mod lora_fuse;
mod media_resize;
mod noise;
mod patchifier;
mod pipeline;
mod pipeline_masks;
mod pipeline_params;
mod quantization;
mod scheduler;
mod transformer;
pub use transformer::modality_from;
mod video_vae;

/// What a component runner returns: `(output name, actual tensor)` pairs.
type Outputs = Vec<(String, Tensor)>;

/// The reference version whose behaviour ltx-rs follows: fixtures must have been made with it.
pub const REFERENCE_VERSION: &str = "1.2.0";

/// A fixture's `reference_version` must be [`REFERENCE_VERSION`]: 1.2.0 changed defaults and
/// arithmetic that fixtures of 1.0.0 encode (docs/parity.md), so an older or unknown version is an
/// error, never read with 1.2.0's meaning. `noise` fixtures exercise torch alone and may say `none`
/// (made without ltx-core installed).
fn check_reference_version(
    component: &str,
    version: Option<&str>,
    ltx_core_version: Option<&str>,
) -> std::result::Result<(), String> {
    match version {
        Some(REFERENCE_VERSION) => Ok(()),
        Some("none") if component == "noise" => Ok(()),
        Some(v) => Err(format!(
            "made with reference {v}; ltx-rs follows reference {REFERENCE_VERSION}: regenerate it \
             (tests/reference/README.md)"
        )),
        None => Err(format!(
            "no `reference_version` metadata (ltx_core_version {}): made before the reference \
             {REFERENCE_VERSION} move; regenerate it (tests/reference/README.md)",
            ltx_core_version.unwrap_or("absent")
        )),
    }
}

/// One opened fixture.
pub struct Fixture {
    pub path: PathBuf,
    pub component: String,
    pub config: Value,
    /// The `call` metadata (absent or `null` reads as `{}`), private: runners read it through the
    /// `call_*` accessors, which record each top-level key read in `call_read`, and
    /// [`run_fixture_quantized`] refuses a key no accessor asked for.
    call: Map<String, Value>,
    call_read: RefCell<BTreeSet<String>>,
    pub atol: f64,
    pub rtol: f64,
    /// How the transformer's block linears are narrowed (`ltx parity --quantization`).
    pub quantization: Quantization,
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
        check_reference_version(
            &component,
            files.metadata_entry("reference_version"),
            files.metadata_entry("ltx_core_version"),
        )
        .map_err(bad)?;
        let config = files.config()?;
        let call = match files.metadata_json("call")? {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => m,
            Some(other) => return Err(bad(format!("`call` must be a JSON object, got {other}"))),
        };
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
            call_read: RefCell::default(),
            quantization: Quantization::None,
            files,
        })
    }

    pub(crate) fn bad(&self, reason: impl Into<String>) -> Error {
        Error::BadFixture {
            path: self.path.clone(),
            reason: reason.into(),
        }
    }

    /// Tensors `input.*` / `output.*` on `device` (f16/bf16 widened to f32 by [`Fixture::tensor`]).
    pub fn io(&self, prefix: &str, device: &Device) -> Result<Arc<StateDict>> {
        let ops = SDOps::new("FIXTURE_IO")
            .with_matching(prefix, "")
            .with_replacement(prefix, "");
        let _ = device;
        Ok(Arc::new(self.files.state_dict(&ops)?))
    }

    pub(crate) fn tensor(
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
        // Half-precision storage is widened to f32 (what the reference computed with); f64 stays f64.
        Ok(Some(match t.dtype() {
            DType::F16 | DType::BF16 => t.to_dtype(DType::F32)?,
            _ => t,
        }))
    }

    /// Weights of a component, filtered and renamed by `ops`, as a strict var builder.
    pub(crate) fn weights(&self, ops: &SDOps) -> Result<Arc<StateDict>> {
        Ok(Arc::new(self.files.state_dict(ops)?))
    }

    /// [`Fixture::weights`] under the run's quantization.
    pub(crate) fn quantized_weights(&self, ops: &SDOps) -> Result<Arc<StateDict>> {
        Ok(Arc::new(
            self.files
                .state_dict(ops)?
                .with_quantization(self.quantization),
        ))
    }

    /// A required input tensor (as f32 when it is a float tensor).
    pub(crate) fn input(&self, sd: &Arc<StateDict>, name: &str, device: &Device) -> Result<Tensor> {
        Ok(self
            .tensor(sd, name, device, true)?
            .expect("required tensors are present"))
    }

    /// `call[key]` (`None` when absent), recording the key as read.
    pub(crate) fn call_value(&self, key: &str) -> Option<&Value> {
        self.call_read.borrow_mut().insert(key.to_string());
        self.call.get(key)
    }

    /// `call[key]` as a string.
    pub(crate) fn call_str(&self, key: &str) -> Result<&str> {
        self.call_value(key)
            .and_then(Value::as_str)
            .ok_or_else(|| self.bad(format!("call.{key} must be a string")))
    }

    /// `call[key]` as a number.
    pub(crate) fn call_f64(&self, key: &str) -> Result<f64> {
        self.call_value(key)
            .and_then(Value::as_f64)
            .ok_or_else(|| self.bad(format!("call.{key} must be a number")))
    }

    /// `call[key]` as a non-negative integer.
    pub(crate) fn call_usize(&self, key: &str) -> Result<usize> {
        self.call_value(key)
            .and_then(Value::as_u64)
            .map(|v| v as usize)
            .ok_or_else(|| self.bad(format!("call.{key} must be a non-negative integer")))
    }

    /// `call[key]` as a list.
    pub(crate) fn call_array(&self, key: &str) -> Result<&Vec<Value>> {
        self.call_value(key)
            .and_then(Value::as_array)
            .ok_or_else(|| self.bad(format!("call.{key} must be a list")))
    }

    /// `call[key]` as a boolean, `default` when absent or `null`.
    pub(crate) fn call_bool_or(&self, key: &str, default: bool) -> Result<bool> {
        match self.call_value(key) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => v
                .as_bool()
                .ok_or_else(|| self.bad(format!("call.{key} must be a boolean, got {v}"))),
        }
    }

    /// For a runner that takes `call` as one argument list: every key must be in `known`, and all
    /// of them count as read.
    pub(crate) fn call_only(&self, known: &[&str]) -> Result<()> {
        self.check_object_keys(&self.call, "call", known)?;
        self.call_read
            .borrow_mut()
            .extend(self.call.keys().cloned());
        Ok(())
    }

    /// The top-level `call` keys no accessor read.
    fn unread_call_keys(&self) -> Vec<String> {
        let read = self.call_read.borrow();
        self.call
            .keys()
            .filter(|k| !read.contains(*k))
            .cloned()
            .collect()
    }

    /// `value` (the nested `call` object `what`, read by hand or through a struct ltx-parity does
    /// not own) must be an object whose keys are all in `known`.
    pub(crate) fn check_keys(&self, value: &Value, what: &str, known: &[&str]) -> Result<()> {
        let obj = value
            .as_object()
            .ok_or_else(|| self.bad(format!("{what} must be an object, got {value}")))?;
        self.check_object_keys(obj, what, known)
    }

    fn check_object_keys(
        &self,
        obj: &Map<String, Value>,
        what: &str,
        known: &[&str],
    ) -> Result<()> {
        let unknown: Vec<String> = obj
            .keys()
            .filter(|k| !known.contains(&k.as_str()))
            .map(|k| format!("{what}.{k}"))
            .collect();
        if unknown.is_empty() {
            Ok(())
        } else {
            Err(self.bad(format!("unknown key(s) {unknown:?} (known: {known:?})")))
        }
    }

    /// The fixture file itself (its metadata stands in for a checkpoint's).
    pub(crate) fn files(&self) -> &SafetensorsFiles {
        &self.files
    }

    /// `call.tiling` (absent or `null`: untiled), its keys and those of its `spatial` / `temporal`
    /// parts checked (`TilingConfig` is ltx-core's and accepts unknown fields).
    pub(crate) fn tiling(&self) -> Result<Option<TilingConfig>> {
        let v = match self.call_value("tiling") {
            None | Some(Value::Null) => return Ok(None),
            Some(v) => v,
        };
        self.check_keys(v, "call.tiling", &["spatial", "temporal"])?;
        for (part, known) in [
            ("spatial", ["tile_size_in_pixels", "tile_overlap_in_pixels"]),
            (
                "temporal",
                ["tile_size_in_frames", "tile_overlap_in_frames"],
            ),
        ] {
            match v.get(part) {
                None | Some(Value::Null) => {}
                Some(p) => self.check_keys(p, &format!("call.tiling.{part}"), &known)?,
            }
        }
        serde_json::from_value(v.clone())
            .map(Some)
            .map_err(|e| self.bad(format!("call.tiling: {e}")))
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
    /// `rms(actual − expected) / rms(expected)`.
    pub rel_rms: f64,
    pub pass: bool,
}

/// Compares `actual` to `expected` elementwise (`|a − e| ≤ atol + rtol·|e|`, like `torch.allclose`
/// with `equal_nan`: a NaN where the reference has one matches).
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
        rel_rms: f64::INFINITY,
        pass: false,
    };
    if actual.dims() != expected.dims() {
        tracing::error!(output, actual = ?actual.dims(), expected = ?expected.dims(), "shape mismatch");
        return Ok(fail(f64::INFINITY));
    }
    // fp8 through ltx-core's table (Candle's own fp8 casts are not usable on the CPU)
    let widen = |t: &Tensor| ltx_core::quantization::fp8::widen(t, DType::F32);
    let (actual, expected) = (&widen(actual)?, &widen(expected)?);
    let a = actual
        .to_dtype(DType::F64)?
        .flatten_all()?
        .to_vec1::<f64>()?;
    let e = expected
        .to_dtype(DType::F64)?
        .flatten_all()?
        .to_vec1::<f64>()?;
    let (mut max_abs, mut max_ref, mut pass) = (0f64, 0f64, true);
    let (mut err2, mut ref2) = (0f64, 0f64);
    for (a, e) in a.iter().zip(&e) {
        if a.is_nan() && e.is_nan() {
            continue;
        }
        let d = (a - e).abs();
        err2 += d * d;
        ref2 += e * e;
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
        rel_rms: if ref2 > 0.0 {
            (err2 / ref2).sqrt()
        } else {
            err2.sqrt()
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
    run_fixture_quantized(path, device, Quantization::None)
}

/// The largest relative RMS error (against the unquantized reference output) a transformer
/// fixture may show with its block linears narrowed by `q`, measured at the released widths
/// (`docs/quantization.md`).
pub fn quantized_tolerance(q: Quantization) -> f64 {
    use candle_core::quantized::GgmlDType as T;
    match q {
        Quantization::None => 0.0,
        // ~2.5x the largest error measured on the released-width fixtures (one block)
        Quantization::Fp8Cast => 0.02,
        Quantization::Gguf(T::Q8_0) => 0.0025,
        Quantization::Gguf(T::Q6K) => 0.005,
        Quantization::Gguf(T::Q5K | T::Q5_0) => 0.009,
        Quantization::Gguf(T::Q4K | T::Q4_0) => 0.016,
        Quantization::Gguf(T::Q3K) => 0.04,
        Quantization::Gguf(_) => 0.1,
    }
}

/// [`run_fixture`] with the transformer's block linears narrowed by `q`: only `transformer`
/// fixtures run; each output passes when its relative RMS error stays within
/// [`quantized_tolerance`] (the fixture's own tolerances are for the exact port).
pub fn run_fixture_quantized(
    path: &Path,
    device: &Device,
    quantization: Quantization,
) -> Result<Vec<OutputCheck>> {
    let mut fx = Fixture::open(path)?;
    fx.quantization = quantization;
    if quantization != Quantization::None && fx.component != "transformer" {
        return Err(Error::NotQuantizable {
            path: path.to_path_buf(),
            component: fx.component.clone(),
        });
    }
    let inputs = fx.io("input.", device)?;
    let expected = fx.io("output.", device)?;
    let outputs: Outputs = match fx.component.as_str() {
        "video_encoder" => video_vae::run_encoder(&fx, &inputs, device)?,
        "audio_encoder" => audio_vae::run_encoder(&fx, &inputs, device)?,
        "audio_decoder" => audio_vae::run_decoder(&fx, &inputs, device)?,
        "audio_processor" => audio_processor::run(&fx, &inputs, device)?,
        "audio_filters" => audio_filters::run(&fx, &inputs, device)?,
        "denoise_loop" => denoise_loop::run(&fx, &inputs, device)?,
        "lora_fuse" => lora_fuse::run(&fx, &inputs, device)?,
        "fp8_cast" => quantization::run_fp8_cast(&fx, &inputs, device)?,
        "gguf_read" => quantization::run_gguf_read(&fx, &inputs, device)?,
        "media_resize" => media_resize::run(&fx, &inputs, device)?,
        "noise" => noise::run(&fx, device)?,
        "ic_lora_mask" => pipeline_masks::run_ic_lora(&fx, &inputs, device)?,
        "retake_mask" => pipeline_masks::run_retake(&fx, device)?,
        "vocoder" => audio_vae::run_vocoder(&fx, &inputs, device)?,
        "video_decoder" => video_vae::run_decoder(&fx, &inputs, &expected, device)?,
        "scheduler" => scheduler::run(&fx, device)?,
        "guider" => guider::run(&fx, &inputs, device)?,
        "diffusion_step" => diffusion_step::run(&fx, &inputs, device)?,
        "duration_head" => duration_head::run(&fx, &inputs, device)?,
        "patchifier" => patchifier::run(&fx, &inputs, device)?,
        "conditioning" => conditioning::run(&fx, &inputs, device)?,
        "transformer" => transformer::run(&fx, &inputs, device)?,
        "latent_upsampler" => latent_upsampler::run(&fx, &inputs, device)?,
        "embeddings_processor" => embeddings_processor::run(&fx, &inputs, device)?,
        "pipeline_params" => pipeline_params::run(&fx, device)?,
        "gemma_text_encoder" => gemma::run(&fx, &inputs, device)?,
        "gemma4_text_encoder" => gemma4::run(&fx, &inputs, device)?,
        "gemma4_tokenizer" => gemma4_prompt::run_tokenizer(&fx, &inputs, device)?,
        "gemma4_prompt_encoding" => gemma4_prompt::run_encoding(&fx, &inputs, device)?,
        "gemma_tokenizer" => gemma_tokenizer::run(&fx, device)?,
        "gemma_generate" => gemma_generate::run(&fx, &inputs, device)?,
        "transformer_manifest" => transformer::run_manifest(&fx, device)?,
        "pipeline" => pipeline::run(&fx, device)?,
        "pipeline_model" => pipeline::run_model(&fx, device)?,
        other => {
            return Err(Error::UnknownComponent {
                path: path.to_path_buf(),
                component: other.to_string(),
            })
        }
    };
    // a `call` argument the runner never read would be silently ignored: refuse it
    let unread = fx.unread_call_keys();
    if !unread.is_empty() {
        return Err(fx.bad(format!(
            "call key(s) {unread:?} not read by the {} runner",
            fx.component
        )));
    }
    // every stored output must be reproduced: one the port does not produce is a failure
    let produced: std::collections::HashSet<&str> =
        outputs.iter().map(|(n, _)| n.as_str()).collect();
    let missing: Vec<OutputCheck> = expected
        .keys()
        .into_iter()
        .filter(|k| !produced.contains(k.as_str()))
        .map(|k| {
            tracing::error!(output = %k, "the fixture stores this output but nothing produced it");
            OutputCheck {
                component: fx.component.clone(),
                output: k,
                max_abs: f64::INFINITY,
                max_rel: f64::INFINITY,
                rel_rms: f64::INFINITY,
                pass: false,
            }
        })
        .collect();
    let mut checks = outputs
        .into_iter()
        .map(|(name, actual)| {
            // `NAME@variant`: another way of computing the stored output NAME
            let stored = name.split('@').next().unwrap_or(&name);
            let want = fx
                .tensor(&expected, stored, device, true)?
                .expect("required tensors are present");
            let (atol, rtol) = output_tolerance(stored, fx.atol, fx.rtol);
            let mut check = compare(&fx.component, &name, &actual, &want, atol, rtol)?;
            if quantization != Quantization::None {
                check.pass = check.rel_rms <= quantized_tolerance(quantization);
            }
            Ok(check)
        })
        .collect::<Result<Vec<_>>>()?;
    checks.extend(missing);
    Ok(checks)
}

/// Expands directories into their `*.safetensors` files (sorted); files are kept as given.
pub fn collect_fixtures(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let rd = std::fs::read_dir(p).map_err(|source| ltx_pipelines::Error::Io {
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
