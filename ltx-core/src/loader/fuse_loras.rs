//! Port of `ltx_core/loader/fuse_loras.py`: LoRA deltas fused into a model's weights before the
//! model is built. For a weight `W` (key `<module>.weight`) and LoRAs `i` holding
//! `<module>.lora_A.weight` `[r, in]` and `<module>.lora_B.weight` `[out, r]`:
//! `W' = W + Σ_i (s_i·B_i) @ A_i`, with reference 1.2.0's roundings (see [`apply_loras`]).

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};

use super::StateDict;
use crate::{Error, Result};

/// A LoRA's tensors (keys after its own [`super::SDOps`], e.g. `diffusion_model.` stripped) and
/// its strength.
pub struct LoraStateDictWithStrength<'a> {
    pub state_dict: &'a StateDict,
    pub strength: f64,
}

impl<'a> LoraStateDictWithStrength<'a> {
    /// Each LoRA state dict paired with its strength (in order).
    pub fn pair(loras: &'a [StateDict], strengths: &[f64]) -> Vec<Self> {
        loras
            .iter()
            .zip(strengths)
            .map(|(state_dict, &strength)| Self {
                state_dict,
                strength,
            })
            .collect()
    }
}

/// What [`apply_loras`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct LoraFuseReport {
    /// For each LoRA (in order), how many model weights it changed.
    pub matched: Vec<usize>,
}

/// The aggregation dtype reference 1.2.0 fuses with on `device`: bf16 (its `bf16_fuse_rule`), f32
/// on Metal (the rule it swaps in on MPS).
pub fn fuse_aggregation_dtype(device: &Device) -> DType {
    if device.is_metal() {
        DType::F32
    } else {
        DType::BF16
    }
}

fn is_fp8(d: DType) -> bool {
    matches!(d, DType::F8E4M3)
}

/// `(s·B) @ A` in the factors' dtype (the product is accumulated in f32 and rounded once, as torch's
/// CPU and GPU matmuls do for half types).
fn lora_product(a: &Tensor, b: &Tensor, strength: f64) -> Result<Tensor> {
    let dt = b.dtype();
    // `b * coef`: computed in f32 and rounded once to the LoRA's dtype (Candle's half-type affine
    // would round the coefficient first)
    let scaled = b
        .to_dtype(DType::F32)?
        .affine(strength, 0.0)?
        .to_dtype(dt)?;
    let p = scaled
        .to_dtype(DType::F32)?
        .matmul(&a.to_dtype(DType::F32)?)?;
    Ok(p.to_dtype(dt)?)
}

/// The LoRA pairs that touch `key` (a model weight `<module>.weight`): `(lora index, A key, B
/// key)`.
fn pairs_for(key: &str, loras: &[LoraStateDictWithStrength]) -> Vec<(usize, String, String)> {
    let Some(prefix) = key.strip_suffix(".weight") else {
        return Vec::new();
    };
    let (ka, kb) = (
        format!("{prefix}.lora_A.weight"),
        format!("{prefix}.lora_B.weight"),
    );
    loras
        .iter()
        .enumerate()
        .filter(|(_, l)| l.state_dict.contains(&ka) && l.state_dict.contains(&kb))
        .map(|(i, _)| (i, ka.clone(), kb.clone()))
        .collect()
}

/// Checks, from the stored shapes alone (nothing is read), that every LoRA pair fits the weight
/// it touches, and counts the weights each LoRA changes.
pub fn check_loras(
    model: &StateDict,
    loras: &[LoraStateDictWithStrength],
) -> Result<LoraFuseReport> {
    let mut report = LoraFuseReport {
        matched: vec![0; loras.len()],
    };
    for key in model.keys() {
        for (i, ka, kb) in pairs_for(&key, loras) {
            let sd = loras[i].state_dict;
            let (a, b) = (
                sd.shape_of(&ka).unwrap_or_default(),
                sd.shape_of(&kb).unwrap_or_default(),
            );
            let w = model.shape_of(&key).unwrap_or_default();
            let ok = a.len() == 2 && b.len() == 2 && a[0] == b[1] && w == [b[0], a[1]];
            if !ok {
                return Err(Error::ShapeMismatch {
                    key: ka.replace(".lora_A.weight", ".lora_{A,B}.weight"),
                    found: [b, a].concat(),
                    expected: w,
                });
            }
            report.matched[i] += 1;
        }
    }
    Ok(report)
}

/// Fuses `loras` into the weights of `model` they touch and returns those fused weights (cast to
/// `dtype`) under the model's keys; weights no LoRA touches are not returned (load them from
/// `model` as usual). When every strength is 0 nothing is fused, like the reference. A weight
/// held in fp8 (see [`StateDict::stored_form`]) is fused at its scaled value and returned in fp8
/// with the same scale (the reference's `fp8_cast_fuse_rule`).
///
/// Reference 1.2.0's arithmetic (`fuse_lora_weights` with a `FuseRule`): the LoRA factors are cast
/// to `aggregation` (bf16 by default, f32 where 1.2.0 aggregates in f32, e.g. on MPS; an fp8 target
/// aggregates in bf16); the first LoRA's `(s·B) @ A` starts the sum, every further one is added as
/// `addmm_(B, A, alpha=s)` (accumulated in f32, rounded once to `aggregation`); the weight is added
/// in `aggregation`, and the result cast to `dtype`.
///
/// A LoRA pair whose shapes do not fit its weight is an error naming the key.
pub fn apply_loras(
    model: &StateDict,
    loras: &[LoraStateDictWithStrength],
    aggregation: DType,
    dtype: DType,
    device: &Device,
) -> Result<(HashMap<String, Tensor>, LoraFuseReport)> {
    let report = check_loras(model, loras)?;
    let mut fused = HashMap::new();
    if loras.iter().all(|l| l.strength == 0.0) {
        return Ok((fused, report));
    }
    let agg = if is_fp8(aggregation) {
        DType::BF16
    } else {
        aggregation
    };
    for key in model.keys() {
        let mut delta: Option<Tensor> = None;
        for (i, ka, kb) in pairs_for(&key, loras) {
            let (sd, strength) = (loras[i].state_dict, loras[i].strength);
            let a = crate::quantization::fp8::widen(&sd.raw_tensor(&ka, device)?, agg)?;
            let b = crate::quantization::fp8::widen(&sd.raw_tensor(&kb, device)?, agg)?;
            delta = Some(match delta {
                None => lora_product(&a, &b, strength)?,
                Some(acc) => {
                    // `acc.addmm_(b, a, alpha=s)`: f32 accumulation, one rounding
                    let p = b.to_dtype(DType::F32)?.matmul(&a.to_dtype(DType::F32)?)?;
                    let s = Tensor::new(strength as f32, device)?;
                    (acc.to_dtype(DType::F32)? + p.broadcast_mul(&s)?)?.to_dtype(agg)?
                }
            });
        }
        let Some(delta) = delta else {
            continue;
        };
        let w = model.raw_tensor(&key, device)?;
        // an fp8 weight's value is `stored · scale`: fused at its value, stored back unscaled
        let scale = model.scale_of(&key)?;
        let w_value = crate::quantization::fp8::widen(&w, DType::F32)?;
        let w_value = match scale {
            Some(s) => w_value.affine(s, 0.0)?,
            None => w_value,
        };
        // `deltas.add_(weight)`: in the aggregation dtype, then cast to the weight's dtype
        let sum = (delta.to_dtype(DType::F32)? + w_value)?.to_dtype(agg)?;
        let held = match scale {
            Some(s) => sum.to_dtype(DType::F32)?.affine(1.0 / s, 0.0)?,
            None => sum,
        };
        let held = if w.dtype() == DType::F8E4M3 {
            crate::quantization::fp8::narrow(&held)?
        } else {
            held.to_dtype(w.dtype())?
        };
        // a weight held narrow (fp8) stays narrow; others are cast to the compute dtype
        let out = if w.dtype() == DType::F8E4M3 {
            held
        } else {
            held.to_dtype(dtype)?
        };
        fused.insert(key.clone(), out);
    }
    Ok((fused, report))
}
