//! The per-step math of `ltx_pipelines/utils/samplers.py` and `helpers.py` (the loops themselves,
//! which call the transformer, come with the pipelines): blending with the clean latent,
//! per-token timesteps, SDE noise normalisation and injection, the gradient-estimation update.

use candle_core::{DType, Tensor, D};
use ltx_core::components::diffusion_steps::Res2sDiffusionStep;
use ltx_core::error::bad_shape;
use ltx_core::types::LatentState;
use ltx_core::utils::{promote_float, to_denoised, to_velocity, Sigma};

use crate::Result;

/// `denoised·m + clean·(1 − m)` in the promoted float dtype (at least f32), returned in the
/// denoised dtype: conditioned tokens (mask 0) keep their clean values.
pub fn post_process_latent(
    denoised: &Tensor,
    denoise_mask: &Tensor,
    clean: &Tensor,
) -> Result<Tensor> {
    let dt = promote_float(denoise_mask.dtype(), denoised.dtype(), false);
    let dt = promote_float(dt, DType::F32, false);
    let m = denoise_mask.to_dtype(dt)?;
    let a = denoised.to_dtype(dt)?.broadcast_mul(&m)?;
    let b = clean.to_dtype(dt)?.broadcast_mul(&m.affine(-1.0, 1.0)?)?;
    Ok((a + b)?.to_dtype(denoised.dtype())?)
}

/// Per-token timesteps `denoise_mask · σ` (in the promoted dtype of the two).
pub fn timesteps_from_mask(denoise_mask: &Tensor, sigma: &Tensor) -> Result<Tensor> {
    let dt = promote_float(sigma.dtype(), denoise_mask.dtype(), sigma.rank() == 0);
    Ok(denoise_mask
        .to_dtype(dt)?
        .broadcast_mul(&sigma.to_dtype(dt)?)?)
}

/// The res_2s sampler's noise normalisation (`_get_new_noise` after its draw), in f64: the whole
/// tensor standardised, then each sample standardised over its last two dims (unbiased stds).
pub fn normalize_sde_noise(noise: &Tensor) -> Result<Tensor> {
    let x = noise.to_dtype(DType::F64)?;
    let n = x.elem_count() as f64;
    let mean = x.mean_all()?;
    let centred = x.broadcast_sub(&mean)?;
    let std = (centred.sqr()?.sum_all()? / (n - 1.0))?.sqrt()?;
    let x = centred.broadcast_div(&std)?;
    let rank = x.rank();
    if rank < 2 {
        return Err(bad_shape("SDE noise", x.dims(), "at least 2 dims").into());
    }
    let count = (x.dim(rank - 1)? * x.dim(rank - 2)?) as f64;
    let m = x.mean_keepdim(D::Minus1)?.mean_keepdim(D::Minus2)?;
    let c = x.broadcast_sub(&m)?;
    let var = (c.sqr()?.sum_keepdim(D::Minus1)?.sum_keepdim(D::Minus2)? / (count - 1.0))?;
    Ok(c.broadcast_div(&var.sqrt()?)?)
}

/// One SDE noise injection of the res_2s loop (`_inject_sde_noise` with the noise given).
/// Non-legacy: the step runs between per-token timesteps `mask·σ_i → mask·σ_{i+1}` (f64).
/// Legacy (the reference's default): the step runs on `sigmas` as given and the result is
/// re-blended with the clean latent.
#[allow(clippy::too_many_arguments)]
pub fn inject_sde_noise(
    state: &LatentState,
    sample: &Tensor,
    denoised: &Tensor,
    noise: &Tensor,
    stepper: &Res2sDiffusionStep,
    sigmas: &Tensor,
    step_idx: usize,
    legacy_mode: bool,
) -> Result<Tensor> {
    if legacy_mode {
        let x = stepper.step(sample, denoised, sigmas, step_idx, noise)?;
        return post_process_latent(&x, &state.denoise_mask, &state.clean_latent);
    }
    let mask = state.denoise_mask.to_dtype(DType::F64)?;
    let now = timesteps_from_mask(&mask, &sigmas.get(step_idx)?.to_dtype(DType::F64)?)?;
    let next = timesteps_from_mask(&mask, &sigmas.get(step_idx + 1)?.to_dtype(DType::F64)?)?;
    let per_token = Tensor::stack(&[now, next], 0)?;
    Ok(stepper.step(sample, denoised, &per_token, 0, noise)?)
}

/// The gradient-estimation correction of `gradient_estimating_euler_denoising_loop`: the current
/// velocity, and the denoised prediction rebuilt from `γ·(v − v_prev) + v_prev` when there is a
/// previous velocity.
pub fn update_velocity_and_sample(
    noisy: &Tensor,
    denoised: &Tensor,
    sigma: f64,
    previous_velocity: Option<&Tensor>,
    ge_gamma: f64,
) -> Result<(Tensor, Tensor)> {
    let current = to_velocity(noisy, Sigma::Value(sigma), denoised)?;
    let denoised = match previous_velocity {
        Some(prev) => {
            let total = ((&current - prev)? * ge_gamma)?.add(prev)?;
            let sigma_t = Tensor::new(sigma as f32, noisy.device())?;
            to_denoised(noisy, &total, Sigma::Tensor(&sigma_t))?
        }
        None => denoised.clone(),
    };
    Ok((current, denoised))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn blend_and_noise_normalisation() -> Result<()> {
        let dev = Device::Cpu;
        let d = Tensor::new(&[[[1f32], [1.0]]], &dev)?;
        let c = Tensor::new(&[[[0f32], [0.0]]], &dev)?;
        let m = Tensor::new(&[[[1f32], [0.25]]], &dev)?;
        let out = post_process_latent(&d, &m, &c)?;
        assert_eq!(out.flatten_all()?.to_vec1::<f32>()?, [1.0, 0.25]);
        let n = Tensor::randn(0f64, 3.0, (2, 8, 4), &dev)?;
        let z = normalize_sde_noise(&n)?;
        let per = z.get(1)?.flatten_all()?;
        assert!(per.mean_all()?.to_scalar::<f64>()?.abs() < 1e-12);
        assert!(normalize_sde_noise(&Tensor::zeros(4, DType::F64, &dev)?).is_err());
        Ok(())
    }
}
