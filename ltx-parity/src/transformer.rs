//! `transformer` fixtures (LTXModel velocities and X0Model predictions) and
//! `transformer_manifest` fixtures (the released models' parameter names and shapes).

use std::collections::BTreeMap;
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use ltx_core::guidance::perturbations::BatchedPerturbationConfig;
use ltx_core::loader::StateDict;
use ltx_core::model::transformer::{
    ltxv_model_comfy_renaming_map, shape_only_var_builder, LegacyX0Model, LtxModel, LtxModelConfig,
    LtxModelType, Modality, X0Model,
};
use serde_json::Value;

use super::guider::perturbation_configs;
use super::{Fixture, Outputs};
use crate::Result;

/// `call.model_type`.
pub(super) fn model_type(fx: &Fixture) -> Result<LtxModelType> {
    match fx.call_str("model_type")? {
        "audio_video" => Ok(LtxModelType::AudioVideo),
        "video_only" => Ok(LtxModelType::VideoOnly),
        "audio_only" => Ok(LtxModelType::AudioOnly),
        other => Err(fx.bad(format!("unknown model_type `{other}`"))),
    }
}

fn perturbations(fx: &Fixture, batch: usize) -> Result<Option<BatchedPerturbationConfig>> {
    let spec = match fx.call_value("perturbations") {
        None | Some(Value::Null) => return Ok(None),
        Some(v) => v
            .as_array()
            .ok_or_else(|| fx.bad("call.perturbations must be a list"))?,
    };
    if spec.len() != batch {
        return Err(fx.bad(format!(
            "{} perturbation configs for batch {batch}",
            spec.len()
        )));
    }
    let configs = perturbation_configs(fx, spec)?;
    Ok(Some(BatchedPerturbationConfig {
        perturbations: configs,
    }))
}

fn modality(
    fx: &Fixture,
    inputs: &Arc<StateDict>,
    name: &str,
    dtype: DType,
    device: &Device,
) -> Result<Option<Modality>> {
    let key = |k: &str| format!("{name}_{k}");
    modality_from(
        &|k| {
            if inputs.contains(&key(k)) {
                Ok(Some(fx.input(inputs, &key(k), device)?))
            } else {
                Ok(None)
            }
        },
        dtype,
    )
}

/// One stream's [`Modality`] from its named tensors (`latent`, `sigma`, `timesteps`,
/// `positions`, `context`, optional `context_mask` / `attention_mask` / `keyframes_mask`); `None`
/// without a latent.
/// Latent, positions, context and the attention mask are cast to `dtype`.
pub fn modality_from(
    get: &dyn Fn(&str) -> Result<Option<Tensor>>,
    dtype: DType,
) -> Result<Option<Modality>> {
    let Some(latent) = get("latent")? else {
        return Ok(None);
    };
    let need = |k: &str| -> Result<Tensor> {
        get(k)?.ok_or_else(|| {
            ltx_core::Error::InvalidInput(format!("a modality without `{k}`")).into()
        })
    };
    Ok(Some(Modality {
        latent: latent.to_dtype(dtype)?,
        sigma: need("sigma")?,
        timesteps: need("timesteps")?,
        positions: need("positions")?.to_dtype(dtype)?,
        context: need("context")?.to_dtype(dtype)?,
        enabled: true,
        context_mask: get("context_mask")?,
        attention_mask: match get("attention_mask")? {
            Some(m) => Some(m.to_dtype(DType::F32)?.to_dtype(dtype)?),
            None => None,
        },
        keyframes_mask: get("keyframes_mask")?,
        context_key: None,
    }))
}

pub(super) fn run(fx: &Fixture, inputs: &Arc<StateDict>, device: &Device) -> Result<Outputs> {
    let kind = model_type(fx)?;
    let cfg = LtxModelConfig::from_checkpoint_config(&fx.config, kind)?;
    let dtype = match fx.call_value("dtype") {
        None => DType::F32,
        Some(v) => match v.as_str() {
            Some("float32") => DType::F32,
            Some("bfloat16") => DType::BF16,
            _ => return Err(fx.bad(format!("call.dtype {v} is not float32 or bfloat16"))),
        },
    };
    let sd = fx.quantized_weights(&ltxv_model_comfy_renaming_map())?;
    let model = LtxModel::load(&cfg, kind, &sd, dtype, device)?;
    sd.report_unused("transformer");
    let video = modality(fx, inputs, "video", dtype, device)?;
    let audio = modality(fx, inputs, "audio", dtype, device)?;
    let batch = video
        .as_ref()
        .or(audio.as_ref())
        .ok_or_else(|| fx.bad("no video or audio inputs"))?
        .latent
        .dim(0)?;
    let perturbations = perturbations(fx, batch)?;
    let (vx, ax) = model.forward(video.as_ref(), audio.as_ref(), perturbations.as_ref())?;
    let x0 = X0Model {
        velocity_model: model,
    };
    let (vd, ad) = x0.forward(video.as_ref(), audio.as_ref(), perturbations.as_ref())?;
    let (mut vl, mut al) = (None, None);
    if fx.call_bool_or("legacy_x0", false)? {
        let sigma = video
            .as_ref()
            .or(audio.as_ref())
            .expect("checked")
            .sigma
            .flatten_all()?
            .to_dtype(DType::F32)?
            .get(0)?
            .to_scalar::<f32>()? as f64;
        let legacy = LegacyX0Model {
            velocity_model: x0.velocity_model,
        };
        (vl, al) = legacy.forward(
            video.as_ref(),
            audio.as_ref(),
            perturbations.as_ref(),
            sigma,
        )?;
    }
    let mut out = Vec::new();
    for (name, value) in [
        ("video", vx),
        ("audio", ax),
        ("video_x0", vd),
        ("audio_x0", ad),
        ("video_x0_legacy", vl),
        ("audio_x0_legacy", al),
    ] {
        if let Some(v) = value {
            out.push((name.to_string(), v));
        }
    }
    Ok(out)
}

/// Builds the model shape-only from the fixture's (released) config and requires exactly the
/// reference's parameter names and shapes; outputs the parameter count.
pub(super) fn run_manifest(fx: &Fixture, device: &Device) -> Result<Outputs> {
    let kind = model_type(fx)?;
    let cfg = LtxModelConfig::from_checkpoint_config(&fx.config, kind)?;
    let mut want = BTreeMap::new();
    for entry in fx.call_array("params")? {
        let name = entry[0].as_str().ok_or_else(|| fx.bad("param name"))?;
        let shape: Vec<usize> = entry[1]
            .as_array()
            .and_then(|a| a.iter().map(|d| d.as_u64().map(|d| d as usize)).collect())
            .ok_or_else(|| fx.bad("param shape"))?;
        want.insert(name.to_string(), shape);
    }
    let (vb, record) = shape_only_var_builder(DType::F32, device);
    LtxModel::new(&cfg, kind, vb)?;
    let got = record.take();
    let missing: Vec<_> = want.keys().filter(|k| !got.contains_key(*k)).collect();
    let extra: Vec<_> = got.keys().filter(|k| !want.contains_key(*k)).collect();
    let wrong: Vec<_> = want
        .iter()
        .filter_map(|(k, s)| got.get(k).filter(|g| *g != s).map(|g| (k, s, g)))
        .collect();
    if !missing.is_empty() || !extra.is_empty() || !wrong.is_empty() {
        return Err(fx.bad(format!(
            "parameter set differs: {} missing (e.g. {:?}), {} extra (e.g. {:?}), {} with other shapes (e.g. {:?})",
            missing.len(),
            missing.first(),
            extra.len(),
            extra.first(),
            wrong.len(),
            wrong.first()
        )));
    }
    let total: i64 = got
        .values()
        .map(|s| s.iter().product::<usize>() as i64)
        .sum();
    Ok(vec![("param_count".into(), Tensor::new(&[total], device)?)])
}
