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
use ltx_core::components::guiders::MultiModalGuiderParams;
use ltx_core::components::noisers::NoiseKind;
use ltx_core::loader::synthetic::save_safetensors;
use ltx_core::loader::SDOps;
use ltx_pipelines::a2vid_two_stage::{A2VidTwoStagePipeline, AudioInput};
use ltx_pipelines::distilled::{
    DistilledPipeline, GenerationRequest, ImageConditioningInput, RunIo,
};
use ltx_pipelines::keyframe_interpolation::KeyframeInterpolationPipeline;
use ltx_pipelines::ti2vid_one_stage::{GuidanceRequest, TI2VidOneStagePipeline};
use ltx_pipelines::ti2vid_two_stages::{GuidedTwoStages, TI2VidTwoStagesPipeline};
use ltx_pipelines::ti2vid_two_stages_hq::TI2VidTwoStagesHQPipeline;
use ltx_pipelines::utils::blocks::encode_prompts;
use ltx_pipelines::utils::model_ledger::{LoraSpec, ModelLedger};

use crate::guider::multimodal_params;
use crate::{Fixture, Outputs, Result};

const UPSAMPLER_PREFIX: &str = "spatial_upsampler.";
const GEMMA_PREFIX: &str = "gemma.";
const GEMMA_FILE_PREFIX: &str = "gemma_file:";
const LORA_PREFIX: &str = "distilled_lora.";
/// What a bundle's Gemma root must hold besides its weights.
const GEMMA_FILES: [&str; 2] = ["config.json", "tokenizer.json"];

/// A bundle written out as the files a user has: checkpoint, upsampler, Gemma root.
struct Materialized {
    dir: tempfile::TempDir,
    checkpoint: PathBuf,
    upsampler: PathBuf,
    gemma_root: PathBuf,
    distilled_lora: PathBuf,
}

impl Materialized {
    /// The folder the files are in (extra inputs go beside them).
    fn dir(&self) -> &Path {
        self.dir.path()
    }

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
    let (mut checkpoint, mut upsampler, mut gemma, mut lora) = (
        HashMap::new(),
        HashMap::new(),
        HashMap::new(),
        HashMap::new(),
    );
    for key in sd.keys() {
        let t = sd.raw_tensor(&key, &Device::Cpu)?;
        if let Some(k) = key.strip_prefix(UPSAMPLER_PREFIX) {
            upsampler.insert(k.to_string(), t);
        } else if let Some(k) = key.strip_prefix(GEMMA_PREFIX) {
            gemma.insert(k.to_string(), t);
        } else if let Some(k) = key.strip_prefix(LORA_PREFIX) {
            lora.insert(k.to_string(), t);
        } else if !key.starts_with("output.") {
            checkpoint.insert(key, t);
        }
    }
    if upsampler.is_empty() || gemma.is_empty() || lora.is_empty() {
        return Err(model.bad(
            "the bundle lacks the spatial upsampler, the Gemma weights or the distilled LoRA",
        ));
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
        distilled_lora: dir.path().join("distilled_lora.safetensors"),
        dir,
    };
    save_safetensors(&m.distilled_lora, &lora, HashMap::new())?;
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

/// The guided pipelines' arguments: negative prompt, step count, both guiders (`audio`: false for
/// the A2V pipeline, which denoises no audio and takes no audio guider).
fn guidance_of(fx: &Fixture, audio: bool) -> Result<GuidanceRequest> {
    let guider = |key: &str| -> Result<_> {
        let v = fx
            .call_value(key)
            .ok_or_else(|| fx.bad(format!("no call.{key}")))?;
        multimodal_params(fx, v, &format!("call.{key}"))
    };
    Ok(GuidanceRequest {
        negative_prompt: fx.call_str("negative_prompt")?.to_string(),
        num_inference_steps: fx.call_usize("num_inference_steps")?,
        video_guider: guider("video_guider")?,
        audio_guider: if audio {
            guider("audio_guider")?
        } else {
            MultiModalGuiderParams::default()
        },
    })
}

fn guidance(fx: &Fixture) -> Result<GuidanceRequest> {
    guidance_of(fx, true)
}

/// `call.images` (absent: none): each `{size, frame_idx, strength, crf}` with its pixels stored as
/// `input.image<i>` (`[H, W, 3]` u8, `size` = `[H, W]`), written as PNG into `dir`.
fn images(fx: &Fixture, dir: &Path) -> Result<Vec<ImageConditioningInput>> {
    let Some(list) = fx.call_value("images") else {
        return Ok(Vec::new());
    };
    let list = list
        .as_array()
        .ok_or_else(|| fx.bad("call.images must be a list"))?;
    let inputs = fx.io("input.", &Device::Cpu)?;
    let mut out = Vec::with_capacity(list.len());
    for (i, img) in list.iter().enumerate() {
        let what = format!("call.images[{i}]");
        fx.check_keys(img, &what, &["size", "frame_idx", "strength", "crf"])?;
        let field = |key: &str| {
            img.get(key)
                .ok_or_else(|| fx.bad(format!("{what}.{key} is missing")))
        };
        let uint = |key: &str| {
            field(key)?
                .as_u64()
                .ok_or_else(|| fx.bad(format!("{what}.{key} must be a non-negative integer")))
        };
        let pixels = fx.input(&inputs, &format!("image{i}"), &Device::Cpu)?;
        let size: Vec<u64> = serde_json::from_value(field("size")?.clone())
            .map_err(|e| fx.bad(format!("{what}.size: {e}")))?;
        let (h, w) = match (pixels.dims(), size.as_slice()) {
            (&[h, w, 3], &[sh, sw]) if (h as u64, w as u64) == (sh, sw) => (h, w),
            (dims, _) => {
                return Err(fx.bad(format!(
                    "input.image{i} has shape {dims:?}, {what}.size says {size:?} (x3)"
                )))
            }
        };
        let data = pixels.to_dtype(DType::U8)?.flatten_all()?.to_vec1::<u8>()?;
        let png = image::RgbImage::from_raw(w as u32, h as u32, data)
            .ok_or_else(|| fx.bad(format!("input.image{i}: not an RGB image")))?;
        let path = dir.join(format!("image{i}.png"));
        png.save(&path)
            .map_err(|e| fx.bad(format!("writing {}: {e}", path.display())))?;
        out.push(ImageConditioningInput {
            path,
            frame_idx: uint("frame_idx")? as usize,
            strength: field("strength")?
                .as_f64()
                .ok_or_else(|| fx.bad(format!("{what}.strength must be a number")))?,
            crf: Some(uint("crf")? as u32),
        });
    }
    Ok(out)
}

/// `call.audio` (`{sample_rate, channels, seconds, start_time}`) with its samples stored as
/// `input.audio` (`[channels, samples]`, PCM16 values), written as a WAV file into `dir`.
fn audio_input(fx: &Fixture, dir: &Path) -> Result<AudioInput> {
    let spec = fx
        .call_value("audio")
        .ok_or_else(|| fx.bad("no call.audio"))?;
    fx.check_keys(
        spec,
        "call.audio",
        &["sample_rate", "channels", "seconds", "start_time"],
    )?;
    let num = |key: &str| {
        spec[key]
            .as_f64()
            .ok_or_else(|| fx.bad(format!("call.audio.{key} must be a number")))
    };
    let (rate, channels) = (num("sample_rate")? as u32, num("channels")? as usize);
    let inputs = fx.io("input.", &Device::Cpu)?;
    let samples = fx.input(&inputs, "audio", &Device::Cpu)?;
    let expected = (num("seconds")? * f64::from(rate)) as usize;
    if samples.dims() != [channels, expected] {
        return Err(fx.bad(format!(
            "input.audio has shape {:?}, call.audio says [{channels}, {expected}]",
            samples.dims()
        )));
    }
    let values = samples
        .t()?
        .flatten_all()?
        .to_dtype(DType::I64)?
        .to_vec1::<i64>()?;
    let mut pcm = Vec::with_capacity(values.len() * 2);
    for v in values {
        let v =
            i16::try_from(v).map_err(|_| fx.bad(format!("input.audio value {v} is not PCM16")))?;
        pcm.extend_from_slice(&v.to_le_bytes());
    }
    let path = dir.join("audio.wav");
    std::fs::write(&path, wav_pcm16(&pcm, channels as u16, rate))
        .map_err(|e| io_error(fx, &path, e))?;
    Ok(AudioInput {
        path,
        start_time: num("start_time")?,
        max_duration: None,
    })
}

/// A RIFF WAVE file of interleaved PCM16 `data`.
fn wav_pcm16(data: &[u8], channels: u16, rate: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(44 + data.len());
    let block = channels * 2;
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&channels.to_le_bytes());
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * u32::from(block)).to_le_bytes());
    out.extend_from_slice(&block.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(data);
    out
}

/// `pipeline`: the pipeline named by `call.pipeline` on the bundle, its float frames and audio.
pub fn run(fx: &Fixture, device: &Device) -> Result<Outputs> {
    let pipeline = fx.call_str("pipeline")?.to_string();
    let model = open_model(fx)?;
    let files = materialize(&model)?;
    let req = GenerationRequest {
        prompt: fx.call_str("prompt")?.to_string(),
        seed: fx.call_usize("seed")? as u64,
        noise: noise_kind(fx)?,
        height: fx.call_usize("height")?,
        width: fx.call_usize("width")?,
        num_frames: fx.call_usize("num_frames")?,
        frame_rate: fx.call_f64("frame_rate")?,
        images: images(fx, files.dir())?,
        tiling: fx.tiling()?,
        enhance_prompt: None,
        auto_duration: None,
    };
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
    let lora = || -> Result<LoraSpec> {
        Ok(LoraSpec {
            path: files.distilled_lora.clone(),
            strength: fx.call_f64("distilled_lora_strength")?,
        })
    };
    let audio = match pipeline.as_str() {
        "distilled" => DistilledPipeline::new(ledger).run(&req, io)?,
        "one_stage" => TI2VidOneStagePipeline::new(ledger).run((&req, &guidance(fx)?), io)?,
        "two_stages" => {
            TI2VidTwoStagesPipeline::new(ledger, &[lora()?])?.run((&req, &guidance(fx)?), io)?
        }
        "keyframe_interpolation" => KeyframeInterpolationPipeline::new(ledger, &[lora()?])?
            .run((&req, &guidance(fx)?), io)?,
        "two_stages_hq" => {
            let s: Vec<f64> = serde_json::from_value(
                fx.call_value("distilled_lora_strengths")
                    .cloned()
                    .unwrap_or_default(),
            )
            .map_err(|e| fx.bad(format!("call.distilled_lora_strengths: {e}")))?;
            let &[s1, s2] = s.as_slice() else {
                return Err(fx.bad("call.distilled_lora_strengths must be two numbers"));
            };
            TI2VidTwoStagesHQPipeline::new(ledger, Some(&files.distilled_lora), (s1, s2))?
                .run((&req, &guidance(fx)?), io)?
        }
        "a2vid" => {
            let input = audio_input(fx, files.dir())?;
            A2VidTwoStagePipeline::new(ledger, &[lora()?])?.run(
                (&req, &guidance_of(fx, false)?),
                &input,
                io,
            )?
        }
        other => {
            return Err(fx.bad(format!(
                "call.pipeline {other:?} is not one the harness runs (distilled, one_stage, two_stages, two_stages_hq, keyframe_interpolation, a2vid)"
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
