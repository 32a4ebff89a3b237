//! Port of the numeric helpers of `ltx_core/utils.py` (and torch behaviours the ports rely on).

/// `torch.linspace(start, end, steps)` in f32, with torch's two-sided CPU formula (values past the
/// midpoint are computed from the end). Short ranges match torch bit for bit; in long ones torch's
/// vectorised kernel can round an interior point one ulp differently.
pub fn linspace_f32(start: f32, end: f32, steps: usize) -> Vec<f32> {
    match steps {
        0 => Vec::new(),
        1 => vec![start],
        _ => {
            let step = (end - start) / (steps - 1) as f32;
            let half = steps / 2;
            (0..steps)
                .map(|i| {
                    if i < half {
                        start + step * i as f32
                    } else {
                        end - step * (steps - i - 1) as f32
                    }
                })
                .collect()
        }
    }
}

use candle_core::{DType, Tensor};

use crate::error::{bad_shape, Error, Result};

/// A noise level given as a number or as a tensor (0-d, or broadcastable per token).
#[derive(Clone, Copy, Debug)]
pub enum Sigma<'a> {
    Value(f64),
    Tensor(&'a Tensor),
}

/// `(sample − denoised) / σ` computed in f32 and returned in the sample's dtype (the reference's
/// `to_velocity`; a tensor sigma is read as one number).
pub fn to_velocity(sample: &Tensor, sigma: Sigma, denoised: &Tensor) -> Result<Tensor> {
    if sample.dims() != denoised.dims() {
        return Err(bad_shape(
            "denoised sample",
            denoised.dims(),
            format!("{:?} (the sample's shape)", sample.dims()),
        ));
    }
    let sigma = match sigma {
        Sigma::Value(v) => v as f32,
        Sigma::Tensor(t) => t
            .to_dtype(DType::F32)?
            .flatten_all()?
            .get(0)?
            .to_scalar::<f32>()?,
    };
    if sigma == 0.0 {
        return Err(Error::InvalidInput(
            "sigma can't be 0 in to_velocity".into(),
        ));
    }
    let s = sample.to_dtype(DType::F32)?;
    let d = denoised.to_dtype(DType::F32)?;
    let sigma = Tensor::new(sigma, sample.device())?;
    Ok((s - d)?.broadcast_div(&sigma)?.to_dtype(sample.dtype())?)
}

/// `sample − velocity·σ` computed in f32 and returned in the sample's dtype (the reference's
/// `to_denoised`; a tensor sigma broadcasts, e.g. per-token timesteps `[B, T, 1]`).
pub fn to_denoised(sample: &Tensor, velocity: &Tensor, sigma: Sigma) -> Result<Tensor> {
    if sample.dims() != velocity.dims() {
        return Err(bad_shape(
            "velocity",
            velocity.dims(),
            format!("{:?} (the sample's shape)", sample.dims()),
        ));
    }
    let s = sample.to_dtype(DType::F32)?;
    let v = velocity.to_dtype(DType::F32)?;
    let sigma = match sigma {
        Sigma::Value(x) => Tensor::new(x as f32, sample.device())?,
        Sigma::Tensor(t) => t.to_dtype(DType::F32)?,
    };
    Ok((s - v.broadcast_mul(&sigma)?)?.to_dtype(sample.dtype())?)
}

/// The dtype torch gives `a ∘ b` for floating tensors (`a_is_scalar`: `a` is 0-d and does not
/// raise the result above `b`'s dtype).
pub fn promote_float(a: DType, b: DType, a_is_scalar: bool) -> DType {
    if a == b || a_is_scalar {
        return b;
    }
    match (a, b) {
        (DType::F64, _) | (_, DType::F64) => DType::F64,
        _ => DType::F32,
    }
}
