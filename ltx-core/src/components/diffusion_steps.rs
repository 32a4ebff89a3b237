//! Port of `ltx_core/components/diffusion_steps.py`: the Euler step and the res_2s SDE step.

use candle_core::{DType, Tensor};

use crate::error::{bad_shape, Error, Result};
use crate::utils::{promote_float, to_velocity, Sigma};

fn step_range(len: usize, step_index: usize) -> Result<()> {
    if step_index + 1 >= len {
        return Err(Error::InvalidInput(format!(
            "step index {step_index} needs sigmas[{}], but the schedule has {len} values",
            step_index + 1
        )));
    }
    Ok(())
}

/// First-order Euler: `x + v·(σ_next − σ)` with `v = (x − x̂)/σ`. The velocity is rounded to the
/// sample's dtype (bf16 in the pipelines) before the f32 update, as the reference does.
#[derive(Clone, Copy, Debug, Default)]
pub struct EulerDiffusionStep;

impl EulerDiffusionStep {
    pub fn step(
        &self,
        sample: &Tensor,
        denoised: &Tensor,
        sigmas: &[f32],
        step_index: usize,
    ) -> Result<Tensor> {
        step_range(sigmas.len(), step_index)?;
        let (sigma, next) = (sigmas[step_index], sigmas[step_index + 1]);
        let dt = next - sigma;
        let velocity = to_velocity(sample, Sigma::Value(sigma as f64), denoised)?;
        let x = sample.to_dtype(DType::F32)?;
        let v = velocity.to_dtype(DType::F32)?;
        let dt = Tensor::new(dt, sample.device())?;
        Ok((x + v.broadcast_mul(&dt)?)?.to_dtype(sample.dtype())?)
    }
}

/// The coefficients of one variance-preserving SDE step.
#[derive(Clone, Debug)]
pub struct SdeCoefficients {
    pub alpha_ratio: Tensor,
    pub sigma_down: Tensor,
    pub sigma_up: Tensor,
}

/// Replaces NaNs of `x` by the matching values of `fill` (same shape and dtype).
fn nan_to(x: &Tensor, fill: &Tensor) -> candle_core::Result<Tensor> {
    let is_nan = x.ne(x)?;
    is_nan.where_cond(fill, x)
}

/// The second-order res_2s step with SDE noise (`Res2sDiffusionStep`).
#[derive(Clone, Copy, Debug, Default)]
pub struct Res2sDiffusionStep;

impl Res2sDiffusionStep {
    /// Mixing coefficients `(alpha_ratio, sigma_down, sigma_up)` given `sigma_down`, or
    /// `sigma_up` (clamped to `0.9999·σ_next`), or neither (a deterministic step). Computed in the
    /// sigmas' dtype; NaNs become `σ_next` (sigma_down), 0 (sigma_up) and 1 (alpha_ratio).
    pub fn get_sde_coeff(
        sigma_next: &Tensor,
        sigma_up: Option<&Tensor>,
        sigma_down: Option<&Tensor>,
        sigma_max: Option<&Tensor>,
    ) -> Result<SdeCoefficients> {
        let ones = sigma_next.ones_like()?;
        let (alpha, down, up) = if let Some(down) = sigma_down {
            let alpha = sigma_next
                .affine(-1.0, 1.0)?
                .div(&down.affine(-1.0, 1.0)?)?;
            let up = (sigma_next.sqr()? - down.sqr()?.mul(&alpha.sqr()?)?)?
                .relu()?
                .sqrt()?;
            (alpha, down.clone(), up)
        } else if let Some(up) = sigma_up {
            let up = up.minimum(&(sigma_next * 0.9999)?)?;
            let max = sigma_max.cloned().unwrap_or_else(|| ones.clone());
            let signal = (max - sigma_next)?;
            let residual = (sigma_next.sqr()? - up.sqr()?)?.relu()?.sqrt()?;
            let alpha = (signal + &residual)?;
            let down = residual.div(&alpha)?;
            (alpha, down, up)
        } else {
            (ones.clone(), sigma_next.clone(), sigma_next.zeros_like()?)
        };
        Ok(SdeCoefficients {
            sigma_up: nan_to(&up, &up.zeros_like()?)?,
            sigma_down: nan_to(&down, sigma_next)?,
            alpha_ratio: nan_to(&alpha, &ones)?,
        })
    }

    /// One step from `sigmas[i]` to `sigmas[i+1]` (each a 0-d value of the 1-D `sigmas`, or a
    /// per-token tensor when `sigmas` stacks two of them), with `sigma_up = σ_next/2`:
    /// `α·(x̂_next + σ_down·ε) + σ_up·noise`, `ε = (x − x̂)/(σ − σ_next)`, `x̂_next = x − σ·ε`.
    /// Returns `denoised` unchanged when `σ_next` or `σ_up` is 0 anywhere.
    pub fn step(
        &self,
        sample: &Tensor,
        denoised: &Tensor,
        sigmas: &Tensor,
        step_index: usize,
        noise: &Tensor,
    ) -> Result<Tensor> {
        step_range(sigmas.dim(0)?, step_index)?;
        for (what, t) in [("denoised sample", denoised), ("noise", noise)] {
            if t.dims() != sample.dims() {
                return Err(bad_shape(what, t.dims(), format!("{:?}", sample.dims())));
            }
        }
        let sigma = sigmas.get(step_index)?;
        let next = sigmas.get(step_index + 1)?;
        let half = (&next * 0.5)?;
        let c = Self::get_sde_coeff(&next, Some(&half), None, None)?;
        let any_zero = |t: &Tensor| -> Result<bool> {
            Ok(t.eq(&t.zeros_like()?)?
                .to_dtype(DType::F32)?
                .sum_all()?
                .to_scalar::<f32>()?
                > 0.0)
        };
        if any_zero(&c.sigma_up)? || any_zero(&next)? {
            return Ok(denoised.clone());
        }
        let scalar = sigma.rank() == 0;
        let dt = promote_float(sigma.dtype(), sample.dtype(), scalar);
        let up = |t: &Tensor| t.to_dtype(dt);
        let x = sample.to_dtype(dt)?;
        let eps = (&x - denoised.to_dtype(dt)?)?.broadcast_div(&up(&(&sigma - &next)?)?)?;
        let denoised_next = (&x - eps.broadcast_mul(&up(&sigma)?)?)?;
        let inner = (denoised_next + eps.broadcast_mul(&up(&c.sigma_down)?)?)?;
        let noised = (inner.broadcast_mul(&up(&c.alpha_ratio)?)?
            + noise.to_dtype(dt)?.broadcast_mul(&up(&c.sigma_up)?)?)?;
        Ok(noised.to_dtype(denoised.dtype())?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn euler_moves_along_the_velocity() -> Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::new(&[1.0f32, 2.0], &dev)?;
        let d = Tensor::new(&[0.0f32, 0.0], &dev)?;
        let y = EulerDiffusionStep.step(&x, &d, &[1.0, 0.5], 0)?;
        assert_eq!(y.to_vec1::<f32>()?, [0.5, 1.0]);
        assert!(EulerDiffusionStep.step(&x, &d, &[1.0, 0.5], 1).is_err());
        assert!(EulerDiffusionStep.step(&x, &d, &[0.0, 0.5], 0).is_err());
        let bad = Tensor::new(&[0.0f32], &dev)?;
        assert!(matches!(
            EulerDiffusionStep.step(&x, &bad, &[1.0, 0.5], 0),
            Err(Error::TensorShape { .. })
        ));
        Ok(())
    }

    #[test]
    fn res2s_final_step_returns_denoised() -> Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::new(&[1.0f64, 2.0], &dev)?;
        let d = Tensor::new(&[0.5f64, 0.5], &dev)?;
        let sigmas = Tensor::new(&[0.5f32, 0.0], &dev)?;
        let y = Res2sDiffusionStep.step(&x, &d, &sigmas, 0, &x.zeros_like()?)?;
        assert_eq!(y.to_vec1::<f64>()?, [0.5, 0.5]);
        assert!(Res2sDiffusionStep.step(&x, &d, &sigmas, 1, &x).is_err());
        Ok(())
    }
}
