//! `pipeline` and `pipeline_model` fixtures: whole pipelines against the reference's own pipelines
//! (docs/parity.md §4r).
//!
//! A `pipeline_model` file bundles a tiny model: the checkpoint's tensors under their released
//! keys (its `config` is the file's), the spatial upsampler's under `spatial_upsampler.`, the
//! Gemma-3 root's under `gemma.` with the root's JSON files as `gemma_file:<name>` metadata. Its
//! own check is the prompt path every pipeline starts with. A `pipeline` fixture names the bundle
//! beside it (`model_file`, `model_id`) and stores what the reference pipeline produced.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use ltx_core::components::noisers::NoiseKind;
use ltx_core::loader::synthetic::save_safetensors;
use ltx_core::loader::SDOps;
use ltx_pipelines::distilled::{DistilledPipeline, GenerationRequest, RunIo};
use ltx_pipelines::utils::blocks::encode_prompts;
use ltx_pipelines::utils::model_ledger::ModelLedger;

use crate::{Fixture, Outputs, Result};

const UPSAMPLER_PREFIX: &str = "spatial_upsampler.";
const GEMMA_PREFIX: &str = "gemma.";
const GEMMA_FILE_PREFIX: &str = "gemma_file:";
/// What a bundle's Gemma root must hold besides its weights.
const GEMMA_FILES: [&str; 2] = ["config.json", "tokenizer.json"];

/// A bundle written out as the files a user has: checkpoint, upsampler, Gemma root.
struct Materialized {
    _dir: tempfile::TempDir,
    checkpoint: PathBuf,
    upsampler: PathBuf,
    gemma_root: PathBuf,
}

impl Materialized {
    fn ledger(&self, device: &Device) -> Result<ModelLedger> {
        Ok(ModelLedger::new(
            DType::F32,
            device.clone(),
            self.checkpoint.clone(),
            Some(self.gemma_root.clone()),
            Some(self.upsampler.clone()),
            vec![],
        )?)
    }
}

fn io_error(fx: &Fixture, path: &Path, e: std::io::Error) -> crate::Error {
    fx.bad(format!("writing {}: {e}", path.display()))
}

/// Writes the bundle `model` (a `pipeline_model` fixture) into a temporary folder.
fn materialize(model: &Fixture) -> Result<Materialized> {
    let dir = tempfile::tempdir().map_err(|e| model.bad(format!("a temporary folder: {e}")))?;
    let files = model.files();
    let sd = files.state_dict(&SDOps::identity())?;
    let (mut checkpoint, mut upsampler, mut gemma) =
        (HashMap::new(), HashMap::new(), HashMap::new());
    for key in sd.keys() {
        let t = sd.raw_tensor(&key, &Device::Cpu)?;
        if let Some(k) = key.strip_prefix(UPSAMPLER_PREFIX) {
            upsampler.insert(k.to_string(), t);
        } else if let Some(k) = key.strip_prefix(GEMMA_PREFIX) {
            gemma.insert(k.to_string(), t);
        } else if !key.starts_with("output.") {
            checkpoint.insert(key, t);
        }
    }
    if upsampler.is_empty() || gemma.is_empty() {
        return Err(model.bad("the bundle has no spatial upsampler or no Gemma weights"));
    }
    let metadata = files.metadata();
    let config = |key: &str| -> Result<String> {
        metadata
            .get(key)
            .cloned()
            .ok_or_else(|| model.bad(format!("no `{key}` metadata")))
    };
    let m = Materialized {
        checkpoint: dir.path().join("checkpoint.safetensors"),
        upsampler: dir.path().join("upsampler.safetensors"),
        gemma_root: dir.path().join("gemma"),
        _dir: dir,
    };
    save_safetensors(
        &m.checkpoint,
        &checkpoint,
        HashMap::from([("config".to_string(), config("config")?)]),
    )?;
    save_safetensors(
        &m.upsampler,
        &upsampler,
        HashMap::from([("config".to_string(), config("spatial_upsampler_config")?)]),
    )?;
    std::fs::create_dir(&m.gemma_root).map_err(|e| io_error(model, &m.gemma_root, e))?;
    for (key, text) in &metadata {
        if let Some(name) = key.strip_prefix(GEMMA_FILE_PREFIX) {
            if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
                return Err(model.bad(format!("`{key}` is not a plain file name")));
            }
            let path = m.gemma_root.join(name);
            std::fs::write(&path, text).map_err(|e| io_error(model, &path, e))?;
        }
    }
    for name in GEMMA_FILES {
        if !m.gemma_root.join(name).is_file() {
            return Err(model.bad(format!("no `{GEMMA_FILE_PREFIX}{name}` metadata")));
        }
    }
    save_safetensors(
        &m.gemma_root.join("model.safetensors"),
        &gemma,
        HashMap::new(),
    )?;
    Ok(m)
}

/// `pipeline_model`: the pipelines' prompt encoding of `call.prompt`.
pub fn run_model(fx: &Fixture, device: &Device) -> Result<Outputs> {
    let prompt = fx.call_str("prompt")?;
    let files = materialize(fx)?;
    let ledger = files.ledger(device)?;
    let mut contexts = encode_prompts(&ledger, &[prompt], None, 0, &mut |_| {})?;
    let (video, audio) = contexts
        .pop()
        .ok_or_else(|| fx.bad("the prompt encoder returned nothing"))?;
    Ok(vec![
        ("video_context".into(), video),
        ("audio_context".into(), audio),
    ])
}

/// The bundle a `pipeline` fixture names, checked to be the one it was made with.
fn open_model(fx: &Fixture) -> Result<Fixture> {
    let entry = |key: &str| {
        fx.files()
            .metadata_entry(key)
            .ok_or_else(|| fx.bad(format!("no `{key}` metadata")))
    };
    let name = entry("model_file")?;
    if name.contains(['/', '\\']) || name.starts_with('.') {
        return Err(fx.bad(format!("`model_file` {name:?} is not a file name")));
    }
    let path = fx.path.parent().unwrap_or(Path::new(".")).join(name);
    let model = Fixture::open(&path)?;
    if model.component != "pipeline_model" {
        return Err(fx.bad(format!(
            "`model_file` {name} is a `{}` fixture, not a `pipeline_model`",
            model.component
        )));
    }
    let id = entry("model_id")?;
    if model.files().metadata_entry("model_id") != Some(id) {
        return Err(fx.bad(format!(
            "`model_file` {name} is not the model this fixture was made with (model_id {id}): \
             regenerate both with the same seed"
        )));
    }
    if model.config != fx.config {
        return Err(fx.bad(format!("the config differs from {name}'s")));
    }
    Ok(model)
}

fn noise_kind(fx: &Fixture) -> Result<NoiseKind> {
    match fx.call_str("noise")? {
        "torch-cpu" => Ok(NoiseKind::TorchCpu),
        "ltx" => Ok(NoiseKind::Ltx),
        other => Err(fx.bad(format!("call.noise {other:?} is not run by the harness"))),
    }
}

/// `pipeline`: the pipeline named by `call.pipeline` on the bundle, its float frames and audio.
pub fn run(fx: &Fixture, device: &Device) -> Result<Outputs> {
    let pipeline = fx.call_str("pipeline")?.to_string();
    let req = GenerationRequest {
        prompt: fx.call_str("prompt")?.to_string(),
        seed: fx.call_usize("seed")? as u64,
        noise: noise_kind(fx)?,
        height: fx.call_usize("height")?,
        width: fx.call_usize("width")?,
        num_frames: fx.call_usize("num_frames")?,
        frame_rate: fx.call_f64("frame_rate")?,
        images: vec![],
        tiling: None,
        enhance_prompt: None,
        auto_duration: None,
    };
    let model = open_model(fx)?;
    let files = materialize(&model)?;
    let ledger = files.ledger(device)?;
    let mut chunks = Vec::new();
    let mut sink = |chunk: Tensor| {
        chunks.push(chunk);
        Ok(())
    };
    let io = RunIo {
        progress: &mut |_| {},
        sink: &mut sink,
    };
    let audio = match pipeline.as_str() {
        "distilled" => DistilledPipeline::new(ledger).run(&req, io)?,
        other => {
            return Err(fx.bad(format!(
                "call.pipeline {other:?} is not one the harness runs (distilled)"
            )))
        }
    };
    let video = Tensor::cat(&chunks, 0)?;
    // the reference's waveform is `[channels, samples]`; ltx-rs keeps the batch of one
    let waveform = match audio.waveform.rank() {
        3 => audio.waveform.squeeze(0)?,
        _ => audio.waveform,
    };
    let rate = Tensor::new(&[i64::from(audio.sampling_rate)], &Device::Cpu)?;
    Ok(vec![
        ("video".into(), video),
        ("waveform".into(), waveform),
        ("sampling_rate".into(), rate),
    ])
}
