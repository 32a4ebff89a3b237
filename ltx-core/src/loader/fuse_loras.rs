//! Port of `ltx_core/loader/fuse_loras.py`: LoRA deltas fused into a model's weights before the
//! model is built. For a weight `W` (key `<module>.weight`) and LoRAs `i` holding
//! `<module>.lora_A.weight` `[r, in]` and `<module>.lora_B.weight` `[out, r]`:
//! `W' = W + Σ_i (s_i·B_i) @ A_i`, with the reference's roundings: each product in the LoRA's own
//! dtype, the deltas summed and added to `W` in the target dtype (bf16 when the target is fp8),
//! the result cast to the target dtype.

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

fn is_fp8(d: DType) -> bool {
    matches!(d, DType::F8E4M3)
}

/// `(s·B) @ A` in the LoRA's dtype (the product is accumulated in f32 and rounded once, as torch's
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
/// `model` as usual). When every strength is 0 nothing is fused, like the reference.
///
/// A LoRA pair whose shapes do not fit its weight is an error naming the key.
pub fn apply_loras(
    model: &StateDict,
    loras: &[LoraStateDictWithStrength],
    dtype: DType,
    device: &Device,
) -> Result<(HashMap<String, Tensor>, LoraFuseReport)> {
    let report = check_loras(model, loras)?;
    let mut fused = HashMap::new();
    if loras.iter().all(|l| l.strength == 0.0) {
        return Ok((fused, report));
    }
    let deltas_dtype = if is_fp8(dtype) { DType::BF16 } else { dtype };
    for key in model.keys() {
        let mut deltas = Vec::new();
        for (i, ka, kb) in pairs_for(&key, loras) {
            let (sd, strength) = (loras[i].state_dict, loras[i].strength);
            let a = sd.raw_tensor(&ka, device)?;
            let b = sd.raw_tensor(&kb, device)?;
            deltas.push(lora_product(&a, &b, strength)?.to_dtype(deltas_dtype)?);
        }
        if deltas.is_empty() {
            continue;
        }
        let delta = if deltas.len() == 1 {
            deltas.pop().expect("one delta")
        } else {
            // torch.sum over the stacked deltas: accumulated in f32, rounded once
            let mut acc = deltas[0].to_dtype(DType::F32)?;
            for d in &deltas[1..] {
                acc = (acc + d.to_dtype(DType::F32)?)?;
            }
            acc.to_dtype(deltas_dtype)?
        };
        let w = model.raw_tensor(&key, device)?;
        // `deltas.add_(weight)`: in the deltas' dtype (fp8 weights upcast first)
        let sum =
            (delta.to_dtype(DType::F32)? + w.to_dtype(DType::F32)?)?.to_dtype(deltas_dtype)?;
        fused.insert(key.clone(), sum.to_dtype(dtype)?);
    }
    Ok((fused, report))
}
