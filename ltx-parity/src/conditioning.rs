//! `conditioning` fixtures: `call.op` = `items` (conditioning items applied in order to an initial
//! video state) or `mask_utils` (the mask helpers called directly).

use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use ltx_core::components::patchifiers::VideoLatentPatchifier;
use ltx_core::conditioning::mask_utils::{build_attention_mask, resolve_cross_mask};
use ltx_core::conditioning::{
    AttentionStrength, ConditioningItem, ConditioningItemAttentionStrengthWrapper,
    VideoConditionByKeyframeIndex, VideoConditionByLatentIndex, VideoConditionByReferenceLatent,
};
use ltx_core::loader::StateDict;
use ltx_core::tools::{LatentTools, VideoLatentTools};
use ltx_core::types::{LatentState, VideoLatentShape};
use serde_json::Value;

use super::patchifier::{dtype_of, usizes};
use super::{Fixture, Outputs};
use crate::Result;

pub(super) fn run(fx: &Fixture, inputs: &Arc<StateDict>, device: &Device) -> Result<Outputs> {
    match fx.call_str("op")? {
        "items" => items(fx, inputs, device),
        "mask_utils" => mask_utils(fx, inputs, device),
        other => Err(fx.bad(format!("unknown conditioning op `{other}`"))),
    }
}

type Item = Box<dyn ConditioningItem + Send + Sync>;

/// The item `spec` (at `what`, e.g. `call.items[0]`), its keys checked for its `type`.
fn build_item(
    fx: &Fixture,
    spec: &Value,
    what: &str,
    inputs: &Arc<StateDict>,
    device: &Device,
) -> Result<Item> {
    let keys = |known: &[&str]| fx.check_keys(spec, what, known);
    let latent = || -> Result<Tensor> {
        let name = spec["latent"]
            .as_str()
            .ok_or_else(|| fx.bad("item.latent must be an input name"))?;
        Ok(inputs.raw_tensor(name, device)?)
    };
    let num = |k: &str| {
        spec[k]
            .as_f64()
            .ok_or_else(|| fx.bad(format!("item.{k} must be a number")))
    };
    let int = |k: &str| {
        spec[k]
            .as_u64()
            .map(|v| v as usize)
            .ok_or_else(|| fx.bad(format!("item.{k} must be an integer")))
    };
    Ok(match spec["type"].as_str().unwrap_or_default() {
        "latent_index" => {
            keys(&["type", "latent", "strength", "latent_idx"])?;
            Box::new(VideoConditionByLatentIndex::new(
                latent()?,
                num("strength")?,
                int("latent_idx")?,
            )?)
        }
        "keyframe" => {
            keys(&["type", "latent", "frame_idx", "strength"])?;
            Box::new(VideoConditionByKeyframeIndex::new(
                latent()?,
                int("frame_idx")?,
                num("strength")?,
            )?)
        }
        "reference" => {
            keys(&["type", "latent", "downscale_factor", "strength"])?;
            Box::new(VideoConditionByReferenceLatent::new(
                latent()?,
                int("downscale_factor")?,
                num("strength")?,
            )?)
        }
        "wrapper" => {
            keys(&["type", "attention_mask", "inner"])?;
            let mask = match &spec["attention_mask"] {
                Value::String(name) => AttentionStrength::Tensor(inputs.raw_tensor(name, device)?),
                v => AttentionStrength::Scalar(
                    v.as_f64()
                        .ok_or_else(|| fx.bad("attention_mask must be a number or a name"))?,
                ),
            };
            let inner = build_item(fx, &spec["inner"], &format!("{what}.inner"), inputs, device)?;
            Box::new(ConditioningItemAttentionStrengthWrapper::new(inner, mask))
        }
        other => return Err(fx.bad(format!("unknown conditioning item `{other}`"))),
    })
}

fn push_state(out: &mut Outputs, prefix: &str, st: &LatentState) {
    out.push((format!("{prefix}latent"), st.latent.clone()));
    out.push((format!("{prefix}clean_latent"), st.clean_latent.clone()));
    out.push((format!("{prefix}denoise_mask"), st.denoise_mask.clone()));
    out.push((format!("{prefix}positions"), st.positions.clone()));
    if let Some(m) = &st.attention_mask {
        out.push((format!("{prefix}attention_mask"), m.clone()));
    }
}

fn items(fx: &Fixture, inputs: &Arc<StateDict>, device: &Device) -> Result<Outputs> {
    let target = fx.call_value("target").unwrap_or(&Value::Null);
    let shape = VideoLatentShape::from_dims(&usizes(fx, target, "call.target")?)?;
    let fps = fx.call_f64("fps")?;
    let mut tools = VideoLatentTools::new(VideoLatentPatchifier::new(1)?, shape, fps);
    tools.causal_fix = fx.call_bool_or("causal_fix", true)?;
    let dtype = dtype_of(fx, fx.call_str("dtype")?)?;
    let initial = inputs.raw_tensor("initial", device)?;
    let mut state = tools.create_initial_state(device, dtype, Some(&initial))?;
    for (i, spec) in fx.call_array("items")?.iter().enumerate() {
        let item = build_item(fx, spec, &format!("call.items[{i}]"), inputs, device)?;
        state = item.apply_to(&state, &tools)?;
    }
    let mut out = Vec::new();
    push_state(&mut out, "", &state);
    if fx.call_bool_or("clear", false)? {
        push_state(&mut out, "cleared_", &tools.clear_conditioning(&state)?);
    }
    Ok(out)
}

fn mask_utils(fx: &Fixture, inputs: &Arc<StateDict>, device: &Device) -> Result<Outputs> {
    let (m, b) = (fx.call_usize("num_new_tokens")?, fx.call_usize("batch")?);
    let (noisy, existing_n) = (
        fx.call_usize("num_noisy_tokens")?,
        fx.call_usize("num_existing_tokens")?,
    );
    let input = |n: &str| -> Result<AttentionStrength> {
        Ok(AttentionStrength::Tensor(inputs.raw_tensor(n, device)?))
    };
    let f32 = DType::F32;
    let cross_1d = resolve_cross_mask(&input("mask_1d")?, m, b, device, f32)?;
    let cross_2d = resolve_cross_mask(&input("mask_2d")?, m, b, device, f32)?;
    let zero_d = AttentionStrength::Tensor(Tensor::new(0.75f32, device)?);
    let existing = inputs.raw_tensor("existing", device)?;
    Ok(vec![
        (
            "cross_scalar".into(),
            resolve_cross_mask(&AttentionStrength::Scalar(0.25), m, b, device, f32)?,
        ),
        (
            "cross_0d".into(),
            resolve_cross_mask(&zero_d, m, b, device, f32)?,
        ),
        (
            "cross_2d_b1".into(),
            resolve_cross_mask(&input("mask_2d_b1")?, m, b, device, DType::BF16)?,
        ),
        (
            "built_fresh".into(),
            build_attention_mask(None, noisy, m, existing_n, &cross_2d, device, f32)?,
        ),
        (
            "built_existing".into(),
            build_attention_mask(
                Some(&existing),
                noisy,
                m,
                existing_n,
                &cross_1d,
                device,
                f32,
            )?,
        ),
        ("cross_1d".into(), cross_1d),
        ("cross_2d".into(), cross_2d),
    ])
}
