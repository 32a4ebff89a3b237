//! Port of the numeric helpers of `ltx_core/utils.py` (`to_velocity`, `to_denoised`), plus the torch
//! arithmetic rules the ports rely on to reproduce the reference bit for bit.
//!
//! torch rules reproduced here (checked on torch 2.11, CPU):
//! - a tensor op a Python float casts the float to the tensor's dtype first (`x / 0.55` in f32 is
//!   `x / f32(0.55)`, not a double division rounded once); for bf16/f16 tensors a product with a
//!   Python float is taken in f32 with the float rounded to f32, then rounded to the tensor's dtype;
//! - in `a ∘ b` a 0-d tensor does not raise the dtype of a tensor with dimensions (an f64 sample
//!   times a 0-d f32 sigma is f64, with the sigma widened); otherwise the wider float type wins and
//!   bf16 with f16 gives f32.

use candle_core::{DType, Tensor};

use crate::error::{bad_shape, Error, Result};

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

/// A noise level as the reference takes it: a Python float or a tensor.
#[derive(Clone, Copy, Debug)]
pub enum Sigma<'a> {
    /// A Python float.
    Value(f64),
    /// A tensor: 0-d, or broadcastable per token (e.g. timesteps `[B, T, 1]`) where allowed.
    Tensor(&'a Tensor),
}

/// The dtype torch gives a binary op on two floating tensors that both have dimensions (or are
/// both 0-d): equal dtypes stay, f64 wins, any other mix (bf16/f16/f32) is f32.
pub fn promote_float(a: DType, b: DType) -> DType {
    match (a, b) {
        _ if a == b => a,
        (DType::F64, _) | (_, DType::F64) => DType::F64,
        _ => DType::F32,
    }
}

/// The dtype torch gives `a ∘ b` for floating tensors `a`, `b`: a 0-d operand does not raise the
/// dtype of an operand with dimensions.
pub fn result_dtype(a: &Tensor, b: &Tensor) -> DType {
    match (a.rank() == 0, b.rank() == 0) {
        (true, false) => b.dtype(),
        (false, true) => a.dtype(),
        _ => promote_float(a.dtype(), b.dtype()),
    }
}

/// A binary torch op on floating tensors: both operands cast to [`result_dtype`], then `op` with
/// broadcasting (`Tensor::broadcast_add`, `broadcast_sub`, `broadcast_mul`, `broadcast_div`, ...).
pub fn torch_binary(
    a: &Tensor,
    b: &Tensor,
    op: impl Fn(&Tensor, &Tensor) -> candle_core::Result<Tensor>,
) -> Result<Tensor> {
    let dt = result_dtype(a, b);
    Ok(op(&a.to_dtype(dt)?, &b.to_dtype(dt)?)?)
}

fn is_half(dtype: DType) -> bool {
    matches!(dtype, DType::BF16 | DType::F16)
}

/// `t * s` for a Python float `s`, as torch computes it: in the tensor's dtype with `s` cast to
/// it; for bf16/f16 in f32 (`s` rounded to f32) and rounded once to the tensor's dtype.
pub fn mul_scalar(t: &Tensor, s: f64) -> Result<Tensor> {
    let dt = t.dtype();
    let work = if is_half(dt) { DType::F32 } else { dt };
    let s = Tensor::new(s, t.device())?.to_dtype(work)?;
    Ok(t.to_dtype(work)?.broadcast_mul(&s)?.to_dtype(dt)?)
}

/// `s − t` for a Python float `s` (e.g. `1 − mask`), in the tensor's dtype.
pub fn rsub_scalar(s: f64, t: &Tensor) -> Result<Tensor> {
    let dt = t.dtype();
    let work = if is_half(dt) { DType::F32 } else { dt };
    let s = Tensor::new(s, t.device())?.to_dtype(work)?;
    Ok(s.broadcast_sub(&t.to_dtype(work)?)?.to_dtype(dt)?)
}

/// torch's f32 `lerp(start, end, weight)` on the CPU (its vectorised kernel): where `|weight| < 0.5`,
/// `start + weight·(end − start)`, elsewhere `end + (weight − 1)·(end − start)`, each as one fused
/// multiply-add. The f32 FMA is taken as an f64 multiply-add rounded once to f32 (the product is exact
/// in f64). `weight` broadcasts to `start`; every operand is computed in f32.
pub fn torch_lerp(start: &Tensor, end: &Tensor, weight: &Tensor) -> Result<Tensor> {
    let start = start.to_dtype(DType::F32)?;
    let end = end.to_dtype(DType::F32)?.broadcast_as(start.shape())?;
    let weight = weight.to_dtype(DType::F32)?.broadcast_as(start.shape())?;
    let diff = (&end - &start)?;
    let small = weight.abs()?.lt(0.5)?;
    let coeff = small.where_cond(&weight, &(&weight - 1.0)?)?;
    let base = small.where_cond(&start, &end)?;
    let fused = coeff
        .to_dtype(DType::F64)?
        .mul(&diff.to_dtype(DType::F64)?)?
        .add(&base.to_dtype(DType::F64)?)?;
    Ok(fused.to_dtype(DType::F32)?)
}

/// Errors unless `t` broadcasts to `target` without growing it (trailing-aligned; every dim of `t`
/// is 1 or equal to the target's).
pub fn check_broadcasts_to(what: &str, t: &[usize], target: &[usize]) -> Result<()> {
    let fits = t.len() <= target.len()
        && t.iter()
            .rev()
            .zip(target.iter().rev())
            .all(|(a, b)| *a == 1 || a == b);
    if fits {
        Ok(())
    } else {
        Err(bad_shape(what, t, format!("broadcastable to {target:?}")))
    }
}

/// Errors unless `t` has exactly `target`'s shape.
pub fn check_same_shape(what: &str, t: &[usize], target: &[usize]) -> Result<()> {
    if t == target {
        Ok(())
    } else {
        Err(bad_shape(what, t, format!("{target:?}")))
    }
}

/// `(sample − denoised) / σ`, computed in f32 and returned in the sample's dtype (the reference's
/// `to_velocity`). A tensor sigma must hold one value (it is read with `.item()` after a cast to
/// f32); a float sigma is cast to f32 by the division, as in torch. σ = 0 is an error.
pub fn to_velocity(sample: &Tensor, sigma: Sigma, denoised: &Tensor) -> Result<Tensor> {
    check_same_shape("denoised sample", denoised.dims(), sample.dims())?;
    let sigma = match sigma {
        Sigma::Value(v) => v,
        Sigma::Tensor(t) => {
            if t.elem_count() != 1 {
                return Err(bad_shape("sigma", t.dims(), "a single value"));
            }
            t.to_dtype(DType::F32)?
                .flatten_all()?
                .get(0)?
                .to_scalar::<f32>()? as f64
        }
    };
    if sigma == 0.0 {
        return Err(Error::InvalidInput(
            "sigma can't be 0 when converting to a velocity".into(),
        ));
    }
    let diff = (sample.to_dtype(DType::F32)? - denoised.to_dtype(DType::F32)?)?;
    let sigma = Tensor::new(sigma as f32, sample.device())?;
    Ok(diff.broadcast_div(&sigma)?.to_dtype(sample.dtype())?)
}

/// `sample − velocity·σ`, computed in f32 and returned in the sample's dtype (the reference's
/// `to_denoised`). A tensor sigma is cast to f32 and broadcast (0-d, or per token such as `[B, T, 1]`
/// timesteps); it must not grow the sample's shape.
pub fn to_denoised(sample: &Tensor, velocity: &Tensor, sigma: Sigma) -> Result<Tensor> {
    check_same_shape("velocity", velocity.dims(), sample.dims())?;
    let sigma = match sigma {
        Sigma::Value(v) => Tensor::new(v as f32, sample.device())?,
        Sigma::Tensor(t) => {
            check_broadcasts_to("sigma", t.dims(), sample.dims())?;
            t.to_dtype(DType::F32)?
        }
    };
    let scaled = velocity.to_dtype(DType::F32)?.broadcast_mul(&sigma)?;
    Ok((sample.to_dtype(DType::F32)? - scaled)?.to_dtype(sample.dtype())?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn velocity_round_trip_and_errors() -> Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::new(&[[1.0f32, 2.0], [3.0, 4.0]], &dev)?;
        let d = Tensor::new(&[[0.0f32, 1.0], [1.0, 0.0]], &dev)?;
        let v = to_velocity(&x, Sigma::Value(0.5), &d)?;
        assert_eq!(v.to_vec2::<f32>()?, [[2.0, 2.0], [4.0, 8.0]]);
        let back = to_denoised(&x, &v, Sigma::Value(0.5))?;
        assert_eq!(back.to_vec2::<f32>()?, d.to_vec2::<f32>()?);
        // bf16 in, bf16 out
        let vb = to_velocity(&x.to_dtype(DType::BF16)?, Sigma::Value(0.5), &d)?;
        assert_eq!(vb.dtype(), DType::BF16);
        // σ = 0 (float or tensor) is a typed error, a multi-value sigma tensor too
        let zero = Tensor::new(0f32, &dev)?;
        for s in [Sigma::Value(0.0), Sigma::Tensor(&zero)] {
            assert!(matches!(
                to_velocity(&x, s, &d),
                Err(Error::InvalidInput(_))
            ));
        }
        let two = Tensor::new(&[0.5f32, 0.5], &dev)?;
        assert!(matches!(
            to_velocity(&x, Sigma::Tensor(&two), &d),
            Err(Error::TensorShape { .. })
        ));
        // shapes that do not match
        let short = Tensor::new(&[0.0f32, 1.0], &dev)?;
        assert!(matches!(
            to_velocity(&x, Sigma::Value(0.5), &short),
            Err(Error::TensorShape { .. })
        ));
        assert!(matches!(
            to_denoised(&x, &short, Sigma::Value(0.5)),
            Err(Error::TensorShape { .. })
        ));
        let wide = Tensor::ones((2, 3), DType::F32, &dev)?;
        assert!(matches!(
            to_denoised(&x, &v, Sigma::Tensor(&wide)),
            Err(Error::TensorShape { .. })
        ));
        Ok(())
    }

    #[test]
    fn torch_promotion_rules() -> Result<()> {
        let dev = Device::Cpu;
        let f64v = Tensor::ones(3, DType::F64, &dev)?;
        let f32s = Tensor::new(2f32, &dev)?;
        let bf = Tensor::ones(3, DType::BF16, &dev)?;
        let f16 = Tensor::ones(3, DType::F16, &dev)?;
        assert_eq!(result_dtype(&f64v, &f32s), DType::F64);
        assert_eq!(result_dtype(&f32s, &bf), DType::BF16);
        assert_eq!(result_dtype(&bf, &f16), DType::F32);
        assert_eq!(result_dtype(&bf, &f64v), DType::F64);
        // bf16 · 1.7: the product is taken in f32, then rounded once
        let x = Tensor::new(&[1.0f32 + 1.0 / 128.0], &dev)?.to_dtype(DType::BF16)?;
        let y = mul_scalar(&x, 1.7)?
            .to_dtype(DType::F32)?
            .to_vec1::<f32>()?[0];
        let want = half::bf16::from_f32((1.0f32 + 1.0 / 128.0) * 1.7f32).to_f32();
        assert_eq!(y, want);
        assert_eq!(
            rsub_scalar(1.0, &Tensor::new(&[0.25f32], &dev)?)?.to_vec1::<f32>()?,
            [0.75]
        );
        assert!(check_broadcasts_to("m", &[1, 4, 1], &[2, 4, 3]).is_ok());
        assert!(check_broadcasts_to("m", &[1, 5, 1], &[2, 4, 3]).is_err());
        assert!(check_broadcasts_to("m", &[1, 2, 4, 3], &[2, 4, 3]).is_err());
        Ok(())
    }
}
