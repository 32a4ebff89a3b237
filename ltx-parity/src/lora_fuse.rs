//! `lora_fuse` fixtures: LoRA deltas fused into a transformer's bf16 weights (`apply_loras`,
//! reference 1.2.0: `call.aggregation_dtype` is the fuse rule's aggregation dtype).

use std::sync::Arc;

use candle_core::{DType, Device};
use ltx_core::loader::{apply_loras, LoraStateDictWithStrength, SDOps, StateDict};
use ltx_core::model::transformer::ltxv_model_comfy_renaming_map;

use super::{Fixture, Outputs};
use crate::Result;

pub(super) fn run(fx: &Fixture, _inputs: &Arc<StateDict>, device: &Device) -> Result<Outputs> {
    // `call.model_type` told the reference which transformer drew the weights; fusing works on
    // the stored keys alone, so it is only checked to be a model type
    super::transformer::model_type(fx)?;
    let model = fx.weights(&ltxv_model_comfy_renaming_map())?;
    let strengths: Vec<f64> = fx
        .call_array("strengths")?
        .iter()
        .map(|v| v.as_f64())
        .collect::<Option<_>>()
        .ok_or_else(|| fx.bad("strengths must be numbers"))?;
    // each LoRA as its file would be read: `diffusion_model.` stripped (ComfyUI names)
    let loras = (0..strengths.len())
        .map(|i| {
            let prefix = format!("input.lora{i}.");
            fx.weights(
                &SDOps::new("LORA")
                    .with_matching(&prefix, "")
                    .with_replacement(&prefix, "")
                    .with_replacement("diffusion_model.", ""),
            )
        })
        .collect::<Result<Vec<_>>>()?;
    let with_strength: Vec<_> = loras
        .iter()
        .zip(&strengths)
        .map(|(sd, &strength)| LoraStateDictWithStrength {
            state_dict: sd,
            strength,
        })
        .collect();
    // reference 1.2.0: the LoRA sums are aggregated in this dtype, the fused weights keep the
    // model weights' bf16
    let aggregation = match fx.call_str("aggregation_dtype")? {
        "bfloat16" => DType::BF16,
        "float32" => DType::F32,
        other => return Err(fx.bad(format!("unknown aggregation dtype `{other}`"))),
    };
    let (fused, report) = apply_loras(&model, &with_strength, aggregation, DType::BF16, device)?;
    if report.matched.contains(&0) {
        return Err(fx.bad(format!("a LoRA matched nothing: {:?}", report.matched)));
    }
    let mut out: Outputs = fused
        .into_iter()
        .map(|(k, t)| Ok((format!("fused.{k}"), t.to_dtype(DType::F32)?)))
        .collect::<Result<_>>()?;
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}
