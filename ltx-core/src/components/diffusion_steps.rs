//! Port of `ltx_core/components/diffusion_steps.py`: the first-order Euler step, its ancestral
//! (SDE) variant and the res_2s step with SDE noise injection.

use candle_core::{DType, Tensor};

use crate::error::{bad_shape, Error, Result};
use crate::utils::{
    check_broadcasts_to, check_same_shape, mul_scalar, rsub_scalar, to_velocity, torch_binary,
    Sigma,
};

/// Errors unless `sigmas[step_index + 1]` exists.
fn check_step_index(len: usize, step_index: usize) -> Result<()> {
    if step_index.checked_add(1).is_none_or(|next| next >= len) {
        return Err(Error::InvalidInput(format!(
            "step index {step_index} needs sigmas[{step_index}] and the next one, but the schedule \
             has {len} values"
        )));
    }
    Ok(())
}

/// First-order Euler: `x + v·(σ_next − σ)` with `v = (x − x̂)/σ`.
#[derive(Clone, Copy, Debug, Default)]
pub struct EulerDiffusionStep;

impl EulerDiffusionStep {
    /// One step from `sigmas[step_index]` to `sigmas[step_index + 1]` (the f32 schedule). As in the
    /// reference the velocity is rounded to the sample's dtype (bf16 when the model runs in bf16)
    /// before the f32 update, whose result is cast back to the sample's dtype. `sample` and
    /// `denoised` have the same shape (e.g. `[B, T, C]`).
    pub fn step(
        &self,
        sample: &Tensor,
        denoised: &Tensor,
        sigmas: &[f32],
        step_index: usize,
    ) -> Result<Tensor> {
        check_step_index(sigmas.len(), step_index)?;
        let (sigma, next) = (sigmas[step_index], sigmas[step_index + 1]);
        let velocity = to_velocity(sample, Sigma::Value(sigma as f64), denoised)?;
        let dt = Tensor::new(next - sigma, sample.device())?;
        let moved = velocity.to_dtype(DType::F32)?.broadcast_mul(&dt)?;
        Ok((sample.to_dtype(DType::F32)? + moved)?.to_dtype(sample.dtype())?)
    }
}

/// The ancestral (SDE) Euler step of the rectified-flow parameterisation (`α = 1 − σ`), which
/// LTX-2.5's distilled stage 1 samples with. The step moves deterministically to
/// `σ_down = σ_next·(1 + (σ_next/σ − 1)·η)` and then renoises up to `σ_next`, scaling the signal
/// by `α_next/α_down` so the transition stays variance-preserving. `η = 0` is the plain Euler step
/// (no noise drawn); `s_noise` scales the injected noise.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EulerAncestralDiffusionStep {
    pub eta: f64,
    pub s_noise: f64,
}

impl Default for EulerAncestralDiffusionStep {
    /// Fully ancestral, unscaled noise: what the reference's distilled pipeline uses.
    fn default() -> Self {
        Self {
            eta: 1.0,
            s_noise: 1.0,
        }
    }
}

impl EulerAncestralDiffusionStep {
    /// Errors unless `eta` and `s_noise` are finite and non-negative.
    pub fn new(eta: f64, s_noise: f64) -> Result<Self> {
        for (name, v) in [("eta", eta), ("s_noise", s_noise)] {
            if !v.is_finite() || v < 0.0 {
                return Err(Error::InvalidInput(format!(
                    "Euler ancestral {name} must be finite and >= 0, got {v}"
                )));
            }
        }
        Ok(Self { eta, s_noise })
    }

    /// Whether a step draws noise (the loop draws one tensor per modality per step only then).
    pub fn draws_noise(&self) -> bool {
        self.eta > 0.0
    }

    /// One step from `sigmas[step_index]` to `sigmas[step_index + 1]` (the f32 schedule). Every
    /// coefficient is an f32 scalar computed as the reference's 0-d float32 tensors are; the
    /// update runs in f32 and is cast back to the sample's dtype. A next sigma of 0 returns the
    /// prediction itself. `noise` (the sample's shape) is required when `eta > 0`.
    pub fn step(
        &self,
        sample: &Tensor,
        denoised: &Tensor,
        sigmas: &[f32],
        step_index: usize,
        noise: Option<&Tensor>,
    ) -> Result<Tensor> {
        check_step_index(sigmas.len(), step_index)?;
        check_same_shape("denoised sample", denoised.dims(), sample.dims())?;
        let (sigma, next) = (sigmas[step_index], sigmas[step_index + 1]);
        if next == 0.0 {
            return Ok(denoised.to_dtype(sample.dtype())?);
        }
        let noise = match (self.draws_noise(), noise) {
            (true, None) => {
                return Err(Error::InvalidInput(
                    "the Euler ancestral step needs a noise tensor when eta > 0".into(),
                ))
            }
            (true, Some(n)) => {
                check_same_shape("ancestral noise", n.dims(), sample.dims())?;
                Some(n)
            }
            (false, _) => None,
        };
        let eta = self.eta as f32;
        let down_ratio = 1.0f32 + (next / sigma - 1.0f32) * eta;
        let sigma_down = next * down_ratio;
        let ratio = sigma_down / sigma;
        let dev = sample.device();
        let scalar = |v: f32| Tensor::new(v, dev);
        let x = sample.to_dtype(DType::F32)?;
        let d = denoised.to_dtype(DType::F32)?;
        let mut x_next =
            (x.broadcast_mul(&scalar(ratio)?)? + d.broadcast_mul(&scalar(1.0f32 - ratio)?)?)?;
        if let Some(noise) = noise {
            let alpha_next = 1.0f32 - next;
            let alpha_down = 1.0f32 - sigma_down;
            let radicand = next * next
                - sigma_down * sigma_down * (alpha_next * alpha_next) / (alpha_down * alpha_down);
            // `clamp(min=0)` keeps a NaN, as torch's does
            let radicand = if radicand < 0.0 { 0.0 } else { radicand };
            let renoise = radicand.sqrt();
            let injected = noise
                .to_dtype(DType::F32)?
                .broadcast_mul(&scalar(self.s_noise as f32)?)?
                .broadcast_mul(&scalar(renoise)?)?;
            x_next = (x_next.broadcast_mul(&scalar(alpha_next / alpha_down)?)? + injected)?;
        }
        Ok(x_next.to_dtype(sample.dtype())?)
    }
}

/// The mixing coefficients of one variance-preserving SDE step (see
/// [`Res2sDiffusionStep::get_sde_coeff`]), each with σ_next's shape and dtype.
#[derive(Clone, Debug)]
pub struct SdeCoefficients {
    pub alpha_ratio: Tensor,
    pub sigma_down: Tensor,
    pub sigma_up: Tensor,
}

/// `x.clamp(min=0)` keeping NaNs (unlike `relu`).
fn clamp_min_zero(x: &Tensor) -> candle_core::Result<Tensor> {
    let zeros = x.zeros_like()?;
    x.lt(&zeros)?.where_cond(&zeros, x)
}

/// `x.clamp(max=m)` elementwise, NaN when either side is NaN (as torch).
fn clamp_max(x: &Tensor, m: &Tensor) -> candle_core::Result<Tensor> {
    let clamped = x.gt(m)?.where_cond(m, x)?;
    m.ne(m)?.where_cond(m, &clamped)
}

/// The largest finite value of a float dtype.
fn finite_max(dtype: DType) -> f64 {
    match dtype {
        DType::BF16 => half::bf16::MAX.to_f64(),
        DType::F16 => half::f16::MAX.to_f64(),
        DType::F32 => f32::MAX as f64,
        _ => f64::MAX,
    }
}

/// `torch.nan_to_num(x, nan)`: NaN → `nan`, ±inf → ± the dtype's largest finite value.
fn nan_to_num(x: &Tensor, nan: f64) -> candle_core::Result<Tensor> {
    let (dt, dev) = (x.dtype(), x.device());
    let full = |v: f64| Tensor::new(v, dev)?.to_dtype(dt)?.broadcast_as(x.shape());
    let max = finite_max(dt);
    let x = x.ne(x)?.where_cond(&full(nan)?, x)?;
    let x = x.eq(&full(f64::INFINITY)?)?.where_cond(&full(max)?, &x)?;
    x.eq(&full(f64::NEG_INFINITY)?)?
        .where_cond(&full(-max)?, &x)
}

/// Whether any element of `t` equals 0.
fn any_zero(t: &Tensor) -> Result<bool> {
    let hits = t.eq(&t.zeros_like()?)?.flatten_all()?.to_vec1::<u8>()?;
    Ok(hits.iter().any(|&h| h != 0))
}

/// The second-order res_2s step with SDE noise (`Res2sDiffusionStep`); the two-stage
/// Runge–Kutta combination itself lives in the res_2s denoising loop.
#[derive(Clone, Copy, Debug, Default)]
pub struct Res2sDiffusionStep;

impl Res2sDiffusionStep {
    /// `(alpha_ratio, sigma_down, sigma_up)` of a step to `sigma_next`, computed in σ_next's dtype
    /// (the other tensors are cast to it):
    /// - `sigma_down` given: `α = (1 − σ_next)/(1 − σ_down)`, `σ_up = √max(σ_next² − σ_down²α², 0)`;
    /// - else `sigma_up` given: `σ_up ← min(σ_up, 0.9999·σ_next)`, `r = √max(σ_next² − σ_up², 0)`,
    ///   `α = (σ_max − σ_next) + r` (`σ_max` defaults to 1), `σ_down = r/α`;
    /// - neither: `α = 1`, `σ_down = σ_next`, `σ_up = 0` (a deterministic step).
    ///
    /// Finally NaNs become 0 in σ_up and 1 in α (±inf become ± the dtype's largest finite value,
    /// as `torch.nan_to_num`), and NaNs of σ_down take σ_next's value. `sigma_up` / `sigma_down`
    /// have σ_next's shape; `sigma_max` broadcasts to it.
    pub fn get_sde_coeff(
        sigma_next: &Tensor,
        sigma_up: Option<&Tensor>,
        sigma_down: Option<&Tensor>,
        sigma_max: Option<&Tensor>,
    ) -> Result<SdeCoefficients> {
        let dt = sigma_next.dtype();
        let like_next = |what: &str, t: &Tensor| -> Result<Tensor> {
            check_same_shape(what, t.dims(), sigma_next.dims())?;
            Ok(t.to_dtype(dt)?)
        };
        let next_sq = sigma_next.sqr()?;
        let (alpha, down, up) = if let Some(down) = sigma_down {
            let down = like_next("sigma_down", down)?;
            let alpha = (rsub_scalar(1.0, sigma_next)? / rsub_scalar(1.0, &down)?)?;
            let up = clamp_min_zero(&(&next_sq - (down.sqr()? * alpha.sqr()?)?)?)?.sqrt()?;
            (alpha, down, up)
        } else if let Some(up) = sigma_up {
            let up = like_next("sigma_up", up)?;
            let up = clamp_max(&up, &mul_scalar(sigma_next, 0.9999)?)?;
            let signal = match sigma_max {
                Some(max) => {
                    check_broadcasts_to("sigma_max", max.dims(), sigma_next.dims())?;
                    max.to_dtype(dt)?.broadcast_sub(sigma_next)?
                }
                None => rsub_scalar(1.0, sigma_next)?,
            };
            let residual = clamp_min_zero(&(&next_sq - up.sqr()?)?)?.sqrt()?;
            let alpha = (signal + &residual)?;
            let down = (residual / &alpha)?;
            (alpha, down, up)
        } else {
            (
                sigma_next.ones_like()?,
                sigma_next.clone(),
                sigma_next.zeros_like()?,
            )
        };
        Ok(SdeCoefficients {
            sigma_up: nan_to_num(&up, 0.0)?,
            sigma_down: down.ne(&down)?.where_cond(sigma_next, &down)?,
            alpha_ratio: nan_to_num(&alpha, 1.0)?,
        })
    }

    /// One step from `sigmas[step_index]` to `sigmas[step_index + 1]` with `σ_up = σ_next/2`:
    /// `α·(x̂_next + σ_down·ε) + σ_up·noise` with `ε = (x − x̂)/(σ − σ_next)`, `x̂_next = x − σ·ε`,
    /// returned in `denoised`'s dtype; `denoised` itself (unchanged) when σ_next or σ_up is 0
    /// anywhere.
    ///
    /// `sigmas` is 1-D (the f32 schedule, or two f64 sigmas stacked by the res_2s loop) or stacks
    /// two per-token tensors (e.g. `[2, B, T, 1]` f64 timesteps); the coefficients are computed in
    /// its dtype and widened by torch's promotion rules (a 0-d sigma takes the sample's dtype).
    /// `sample`, `denoised` and `noise` share one shape (f32 or f64; bf16 samples would need
    /// torch's f32 handling of 0-d operands, which is not reproduced).
    pub fn step(
        &self,
        sample: &Tensor,
        denoised: &Tensor,
        sigmas: &Tensor,
        step_index: usize,
        noise: &Tensor,
    ) -> Result<Tensor> {
        if sigmas.rank() == 0 {
            return Err(bad_shape("sigmas", sigmas.dims(), "at least 1 dim"));
        }
        check_step_index(sigmas.dim(0)?, step_index)?;
        check_same_shape("denoised sample", denoised.dims(), sample.dims())?;
        check_same_shape("noise", noise.dims(), sample.dims())?;
        let sigma = sigmas.get(step_index)?;
        let next = sigmas.get(step_index + 1)?;
        check_broadcasts_to("sigma", next.dims(), sample.dims())?;
        let c = Self::get_sde_coeff(&next, Some(&mul_scalar(&next, 0.5)?), None, None)?;
        if any_zero(&c.sigma_up)? || any_zero(&next)? {
            return Ok(denoised.clone());
        }
        let (add, sub) = (Tensor::broadcast_add, Tensor::broadcast_sub);
        let (mul, div) = (Tensor::broadcast_mul, Tensor::broadcast_div);
        let diff = torch_binary(sample, denoised, sub)?;
        let eps = torch_binary(&diff, &torch_binary(&sigma, &next, sub)?, div)?;
        let denoised_next = torch_binary(sample, &torch_binary(&sigma, &eps, mul)?, sub)?;
        let inner = torch_binary(
            &denoised_next,
            &torch_binary(&c.sigma_down, &eps, mul)?,
            add,
        )?;
        let noised = torch_binary(
            &torch_binary(&c.alpha_ratio, &inner, mul)?,
            &torch_binary(&c.sigma_up, noise, mul)?,
            add,
        )?;
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
        // bf16 samples stay bf16
        let xb = x.to_dtype(DType::BF16)?;
        let yb = EulerDiffusionStep.step(&xb, &d, &[1.0, 0.5], 0)?;
        assert_eq!(yb.dtype(), DType::BF16);
        Ok(())
    }

    #[test]
    fn euler_rejects_bad_input() -> Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::new(&[1.0f32, 2.0], &dev)?;
        let d = Tensor::new(&[0.0f32, 0.0], &dev)?;
        for idx in [1, 2, usize::MAX] {
            assert!(matches!(
                EulerDiffusionStep.step(&x, &d, &[1.0, 0.5], idx),
                Err(Error::InvalidInput(_))
            ));
        }
        assert!(matches!(
            EulerDiffusionStep.step(&x, &d, &[], 0),
            Err(Error::InvalidInput(_))
        ));
        // σ = 0 cannot give a velocity
        assert!(matches!(
            EulerDiffusionStep.step(&x, &d, &[0.0, 0.5], 0),
            Err(Error::InvalidInput(_))
        ));
        let bad = Tensor::new(&[0.0f32], &dev)?;
        assert!(matches!(
            EulerDiffusionStep.step(&x, &bad, &[1.0, 0.5], 0),
            Err(Error::TensorShape { .. })
        ));
        Ok(())
    }

    #[test]
    fn sde_coefficients_edge_values() -> Result<()> {
        let dev = Device::Cpu;
        let next = Tensor::new(&[1.0f32, 0.5, 0.4, 0.0], &dev)?;
        // σ_down = 1: 0/0 → α = 1, x/0 → α = f32::MAX; NaN σ_down → σ_next
        let down = Tensor::new(&[1.0f32, 1.0, f32::NAN, 0.0], &dev)?;
        let c = Res2sDiffusionStep::get_sde_coeff(&next, None, Some(&down), None)?;
        let alpha = c.alpha_ratio.to_vec1::<f32>()?;
        assert_eq!(alpha[..2], [1.0, f32::MAX]);
        assert_eq!(c.sigma_down.to_vec1::<f32>()?[2], 0.4);
        assert!(c.sigma_up.to_vec1::<f32>()?.iter().all(|v| v.is_finite()));
        // σ_up above 0.9999·σ_next is clamped; σ_next = 0 gives σ_up = 0
        let up = (&next * 2.0)?;
        let c = Res2sDiffusionStep::get_sde_coeff(&next, Some(&up), None, None)?;
        let want: Vec<f32> = [1.0f32, 0.5, 0.4, 0.0].iter().map(|v| v * 0.9999).collect();
        assert_eq!(c.sigma_up.to_vec1::<f32>()?, want);
        // neither: a deterministic step
        let c = Res2sDiffusionStep::get_sde_coeff(&next, None, None, None)?;
        assert_eq!(c.alpha_ratio.to_vec1::<f32>()?, [1.0; 4]);
        assert_eq!(c.sigma_up.to_vec1::<f32>()?, [0.0; 4]);
        // σ_up of another shape
        let short = Tensor::new(&[0.1f32], &dev)?;
        assert!(matches!(
            Res2sDiffusionStep::get_sde_coeff(&next, Some(&short), None, None),
            Err(Error::TensorShape { .. })
        ));
        Ok(())
    }

    #[test]
    fn res2s_final_step_and_errors() -> Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::new(&[1.0f64, 2.0], &dev)?;
        let d = Tensor::new(&[0.5f64, 0.5], &dev)?;
        let sigmas = Tensor::new(&[0.5f32, 0.0], &dev)?;
        let y = Res2sDiffusionStep.step(&x, &d, &sigmas, 0, &x.zeros_like()?)?;
        assert_eq!(y.to_vec1::<f64>()?, [0.5, 0.5]);
        assert!(matches!(
            Res2sDiffusionStep.step(&x, &d, &sigmas, 1, &x),
            Err(Error::InvalidInput(_))
        ));
        let short = Tensor::new(&[0.5f64], &dev)?;
        assert!(matches!(
            Res2sDiffusionStep.step(&x, &d, &sigmas, 0, &short),
            Err(Error::TensorShape { .. })
        ));
        assert!(matches!(
            Res2sDiffusionStep.step(&x, &short, &sigmas, 0, &x),
            Err(Error::TensorShape { .. })
        ));
        // a regular step mixes in the noise with σ_up = σ_next/2
        let sigmas = Tensor::new(&[1.0f32, 0.5], &dev)?;
        let a = Res2sDiffusionStep.step(&x, &d, &sigmas, 0, &x.zeros_like()?)?;
        let b = Res2sDiffusionStep.step(&x, &d, &sigmas, 0, &x.ones_like()?)?;
        let diff = (b - a)?.to_vec1::<f64>()?;
        assert!(diff.iter().all(|v| (v - 0.25).abs() < 1e-12), "{diff:?}");
        Ok(())
    }

    #[test]
    fn ancestral_errors_and_limits() -> Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::new(&[1.0f32, 2.0], &dev)?;
        let d = Tensor::new(&[0.5f32, 0.5], &dev)?;
        let sigmas = [1.0f32, 0.5, 0.0];
        let full = EulerAncestralDiffusionStep::default();
        // eta > 0 needs noise; a misshaped one is refused
        assert!(matches!(
            full.step(&x, &d, &sigmas, 0, None),
            Err(Error::InvalidInput(_))
        ));
        let short = Tensor::new(&[0.5f32], &dev)?;
        assert!(matches!(
            full.step(&x, &d, &sigmas, 0, Some(&short)),
            Err(Error::TensorShape { .. })
        ));
        assert!(EulerAncestralDiffusionStep::new(-0.1, 1.0).is_err());
        assert!(EulerAncestralDiffusionStep::new(1.0, f64::NAN).is_err());
        // the last step returns the prediction; eta 0 is the plain Euler step
        let last = full.step(&x, &d, &sigmas, 1, None)?;
        assert_eq!(last.to_vec1::<f32>()?, [0.5, 0.5]);
        let plain = EulerAncestralDiffusionStep::new(0.0, 1.0)?.step(&x, &d, &sigmas, 0, None)?;
        let euler = EulerDiffusionStep.step(&x, &d, &sigmas, 0)?;
        assert_eq!(plain.to_vec1::<f32>()?, euler.to_vec1::<f32>()?);
        assert!(full.step(&x, &d, &sigmas, 2, None).is_err());
        Ok(())
    }
}
