//! Port of `ltx_pipelines/utils/samplers.py`: the denoising loops (Euler, Euler ancestral,
//! res_2s) and their
//! per-step math — SDE noise normalisation and injection, the gradient-estimation update.
//! Dtypes follow the reference's torch promotion rules (see `ltx_core::utils`).

use candle_core::{DType, Device, Tensor};
use ltx_core::components::diffusion_steps::{
    EulerAncestralDiffusionStep, EulerDiffusionStep, Res2sDiffusionStep,
};
use ltx_core::components::noisers::{NoiseKind, SeededNoise};
use ltx_core::error::bad_shape;
use ltx_core::types::LatentState;
use ltx_core::utils::{
    check_same_shape, mul_scalar, to_denoised, to_velocity, torch_binary, Sigma,
};
use ltx_core::Error as CoreError;

use super::helpers::{post_process_latent, timesteps_from_mask};
use super::res2s::{get_res2s_coefficients, PhiCache};
use super::types::{DenoisingFunc, NoiseSource};
use crate::Result;

/// `(x − mean) / std` over `dims` (keepdim, unbiased std), with true divisions as torch.
fn standardize(x: &Tensor, dims: &[usize]) -> Result<Tensor> {
    let n: usize = dims.iter().map(|&d| x.dims()[d]).product();
    let count = |minus: usize| Tensor::new((n - minus) as f64, x.device());
    let mean = x.sum_keepdim(dims)?.broadcast_div(&count(0)?)?;
    let centred = x.broadcast_sub(&mean)?;
    let var = centred
        .sqr()?
        .sum_keepdim(dims)?
        .broadcast_div(&count(1)?)?;
    Ok(centred.broadcast_div(&var.sqrt()?)?)
}

/// The res_2s sampler's noise normalisation (`_get_new_noise` after its `randn` draw), in f64:
/// the whole tensor standardised (mean 0, unbiased std 1), then each slice over the last two dims
/// (e.g. every batch element of `[B, T, C]` tokens) standardised again. Needs rank ≥ 2.
pub fn normalize_sde_noise(noise: &Tensor) -> Result<Tensor> {
    let rank = noise.rank();
    if rank < 2 {
        return Err(bad_shape("SDE noise", noise.dims(), "at least 2 dims").into());
    }
    let x = noise.to_dtype(DType::F64)?;
    let all: Vec<usize> = (0..rank).collect();
    let x = standardize(&x, &all)?;
    standardize(&x, &[rank - 2, rank - 1])
}

/// One SDE noise injection of the res_2s loop (`_inject_sde_noise`, with the normalised noise
/// passed in instead of a generator; see [`normalize_sde_noise`]).
/// - `legacy_mode` (the loop's default): `stepper.step` on `sigmas` as given, then the result is
///   re-blended with the clean latent ([`post_process_latent`]);
/// - otherwise the step runs between the per-token f64 timesteps `mask·σ_i → mask·σ_{i+1}` (and so
///   returns `denoised` unchanged when any token's mask is 0).
///
/// `sigmas` is 1-D (the f32 schedule, or the loop's two stacked f64 substep sigmas); `sample`,
/// `denoised` and `noise` share the latent's shape.
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
    let len = sigmas.dims().first().copied().unwrap_or(0);
    if step_idx.checked_add(1).is_none_or(|next| next >= len) {
        return Err(CoreError::InvalidInput(format!(
            "step index {step_idx} needs sigmas[{step_idx}] and the next one, but there are {len}"
        ))
        .into());
    }
    let mask = state.denoise_mask.to_dtype(DType::F64)?;
    let at = |i: usize| -> Result<Tensor> {
        let sigma = sigmas.get(i)?.to_dtype(DType::F64)?;
        timesteps_from_mask(&mask, Sigma::Tensor(&sigma))
    };
    let per_token = Tensor::stack(&[at(step_idx)?, at(step_idx + 1)?], 0)?;
    Ok(stepper.step(sample, denoised, &per_token, 0, noise)?)
}

/// The gradient-estimation correction of `gradient_estimating_euler_denoising_loop`
/// (`update_velocity_and_sample`): returns `(v, x̂)` with the current velocity
/// `v = to_velocity(noisy, σ, denoised)` and, when there is a previous velocity, the denoised
/// prediction rebuilt from `γ·(v − v_prev) + v_prev` (`to_denoised`), else `denoised` itself.
/// `σ` is the schedule's `sigmas[step]`; the velocities keep the noisy sample's dtype.
pub fn update_velocity_and_sample(
    noisy: &Tensor,
    denoised: &Tensor,
    sigma: Sigma,
    previous_velocity: Option<&Tensor>,
    ge_gamma: f64,
) -> Result<(Tensor, Tensor)> {
    let current = to_velocity(noisy, sigma, denoised)?;
    let denoised = match previous_velocity {
        Some(prev) => {
            check_same_shape("previous velocity", prev.dims(), current.dims())?;
            let delta = torch_binary(&current, prev, Tensor::broadcast_sub)?;
            let total = torch_binary(&mul_scalar(&delta, ge_gamma)?, prev, Tensor::broadcast_add)?;
            to_denoised(noisy, &total, sigma)?
        }
        None => denoised.clone(),
    };
    Ok((current, denoised))
}

/// The f32 values of a sigma schedule; errors unless it has at least 2 (one step).
fn schedule_values(sigmas: &Tensor) -> Result<Vec<f32>> {
    let s: Vec<f32> = sigmas.to_dtype(DType::F32)?.to_vec1()?;
    if s.len() < 2 {
        return Err(CoreError::InvalidInput(format!(
            "a sigma schedule needs at least 2 values, got {}",
            s.len()
        ))
        .into());
    }
    Ok(s)
}

/// `euler_denoising_loop`: for each step, the denoised prediction (blended back to the clean
/// latent where the mask is 0), then one Euler step of each modality. `sigmas` is the f32
/// schedule; `progress(done, total)` is called after every step.
pub fn euler_denoising_loop(
    sigmas: &Tensor,
    mut video: LatentState,
    mut audio: LatentState,
    denoise: &mut dyn DenoisingFunc,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(LatentState, LatentState)> {
    let s = schedule_values(sigmas)?;
    let stepper = EulerDiffusionStep;
    let total = s.len() - 1;
    for step in 0..total {
        let (dv, da) = denoise.denoise((&video, &audio), sigmas, step)?;
        let dv = post_process_latent(&dv, &video.denoise_mask, &video.clean_latent)?;
        let da = post_process_latent(&da, &audio.denoise_mask, &audio.clean_latent)?;
        video.latent = stepper.step(&video.latent, &dv, &s, step)?;
        audio.latent = stepper.step(&audio.latent, &da, &s, step)?;
        // on a GPU, wait for the step: progress then reports finished work, and no more than
        // one step's kernels are ever queued
        video.latent.device().synchronize()?;
        progress(step + 1, total);
    }
    Ok((video, audio))
}

/// The seed offset of the ancestral loop's generator in the reference's distilled pipeline
/// (`seed + 10000`): without it the loop's first draw would repeat the initial noise.
pub const ANCESTRAL_NOISE_SEED_OFFSET: u64 = 10000;

/// `euler_ancestral_denoising_loop`: each step the denoised predictions (blended back to the
/// clean latent where the mask is 0), then per modality — video first, then audio, from one
/// generator — a noise draw in the latent's dtype (only when `eta > 0`), the ancestral step, and
/// the clean latent blended back in again. At a next sigma of 0 the latents become the
/// predictions and the loop ends. Latents are stored in `model_dtype` after every step.
#[allow(clippy::too_many_arguments)]
pub fn euler_ancestral_denoising_loop(
    sigmas: &Tensor,
    mut video: LatentState,
    mut audio: LatentState,
    denoise: &mut dyn DenoisingFunc,
    stepper: &EulerAncestralDiffusionStep,
    noise: &mut dyn NoiseSource,
    model_dtype: DType,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(LatentState, LatentState)> {
    let s = schedule_values(sigmas)?;
    let total = s.len() - 1;
    for step in 0..total {
        let (dv, da) = denoise.denoise((&video, &audio), sigmas, step)?;
        let terminal = s[step + 1] == 0.0;
        for (state, pred) in [(&mut video, dv), (&mut audio, da)] {
            let pred = post_process_latent(
                &pred.to_dtype(DType::F32)?,
                &state.denoise_mask,
                &state.clean_latent,
            )?;
            if terminal {
                state.latent = pred.to_dtype(model_dtype)?;
                continue;
            }
            let drawn = if stepper.draws_noise() {
                Some(noise.randn(
                    state.latent.dims(),
                    state.latent.dtype(),
                    state.latent.device(),
                )?)
            } else {
                None
            };
            let sample = state.latent.to_dtype(DType::F32)?;
            let mut next = stepper.step(&sample, &pred, &s, step, drawn.as_ref())?;
            if drawn.is_some() {
                next = post_process_latent(&next, &state.denoise_mask, &state.clean_latent)?;
            }
            state.latent = next.to_dtype(model_dtype)?;
        }
        video.latent.device().synchronize()?;
        progress(step + 1, total);
        if terminal {
            break;
        }
    }
    Ok((video, audio))
}

/// Which generator an SDE noise draw of the res_2s loop comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SdeStream {
    /// Noise injected at the end of each full step (seed `noise_seed`).
    Step,
    /// Noise injected at the midpoint (seed `noise_seed + 10000` by default).
    Substep,
}

/// Raw standard-normal draws for the res_2s loop, normalised by the loop
/// ([`normalize_sde_noise`]).
pub trait SdeNoise {
    fn draw(&mut self, stream: SdeStream, shape: &[usize], device: &Device) -> Result<Tensor>;
}

/// The two seeded generators of the reference loop.
pub struct SeededSdeNoise {
    pub step: SeededNoise,
    pub substep: SeededNoise,
}

impl SeededSdeNoise {
    /// Generators of `kind`: `noise_seed` for the steps and `noise_seed + 10000` for the
    /// substeps, as the reference.
    pub fn new(kind: NoiseKind, noise_seed: u64) -> Self {
        Self {
            step: SeededNoise::new(kind, noise_seed),
            substep: SeededNoise::new(kind, noise_seed.wrapping_add(10000)),
        }
    }
}

impl SdeNoise for SeededSdeNoise {
    fn draw(&mut self, stream: SdeStream, shape: &[usize], device: &Device) -> Result<Tensor> {
        let g = match stream {
            SdeStream::Step => &mut self.step,
            SdeStream::Substep => &mut self.substep,
        };
        NoiseSource::randn(g, shape, DType::F64, device)
    }
}

/// Both streams from one source, in draw order (e.g. noise recorded from the reference).
pub struct SingleStreamSde<'a>(pub &'a mut dyn NoiseSource);

impl SdeNoise for SingleStreamSde<'_> {
    fn draw(&mut self, _stream: SdeStream, shape: &[usize], device: &Device) -> Result<Tensor> {
        self.0.randn(shape, DType::F64, device)
    }
}

/// Options of [`res2s_audio_video_denoising_loop`] (the reference's defaults).
#[derive(Clone, Copy, Debug)]
pub struct Res2sOptions {
    pub bongmath: bool,
    pub bongmath_max_iter: usize,
    /// Dtype the latents are stored in between stages (bf16 in the reference's default).
    pub model_dtype: DType,
    pub legacy_mode: bool,
}

impl Default for Res2sOptions {
    fn default() -> Self {
        Self {
            bongmath: true,
            bongmath_max_iter: 100,
            model_dtype: DType::BF16,
            legacy_mode: true,
        }
    }
}

/// `res2s_audio_video_denoising_loop`: the second-order res_2s sampler. Each step evaluates the
/// denoiser at the current point and at the geometric-mean substep sigma (after SDE noise at the
/// substep), combines both with the exponential-integrator coefficients in f64, injects step
/// noise, and stores the latents in `model_dtype`. A schedule ending at 0 ends at 0.0011 instead,
/// followed by one last plain denoise.
pub fn res2s_audio_video_denoising_loop(
    sigmas: &Tensor,
    mut video: LatentState,
    mut audio: LatentState,
    denoise: &mut dyn DenoisingFunc,
    noise: &mut dyn SdeNoise,
    opts: Res2sOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(LatentState, LatentState)> {
    let device = video.latent.device().clone();
    let mut s: Vec<f32> = sigmas.to_dtype(DType::F32)?.to_vec1()?;
    if s.len() < 2 {
        return Err(CoreError::InvalidInput(format!(
            "a sigma schedule needs at least 2 values, got {}",
            s.len()
        ))
        .into());
    }
    let n_full = s.len() - 1;
    let ends_at_zero = *s.last().unwrap_or(&1.0) == 0.0;
    if ends_at_zero {
        s.pop();
        s.extend([0.0011, 0.0]);
    }
    let sig = Tensor::new(s.as_slice(), &device)?;
    let hs: Vec<f64> = s
        .windows(2)
        .map(|w| -((w[1] as f64) / (w[0] as f64)).ln())
        .collect();
    let stepper = Res2sDiffusionStep;
    let mut cache = PhiCache::new();
    let c2 = 0.5;
    let f64_of = |t: &Tensor| t.to_dtype(DType::F64);
    for step in 0..n_full {
        let sigma = Tensor::new(s[step] as f64, &device)?;
        let sigma_next = Tensor::new(s[step + 1] as f64, &device)?;
        let mut anchor_v = f64_of(&video.latent)?;
        let mut anchor_a = f64_of(&audio.latent)?;

        let (d1v, d1a) = denoise.denoise((&video, &audio), &sig, step)?;
        let d1v = post_process_latent(&d1v, &video.denoise_mask, &video.clean_latent)?;
        let d1a = post_process_latent(&d1a, &audio.denoise_mask, &audio.clean_latent)?;
        let h = hs[step];
        let (a21, b1, b2) = get_res2s_coefficients(h, &mut cache, c2);
        let sub_sigma = (&sigma * &sigma_next)?.sqrt()?;
        let (d1v64, d1a64) = (f64_of(&d1v)?, f64_of(&d1a)?);
        let mut eps1_v = (&d1v64 - &anchor_v)?;
        let mut eps1_a = (&d1a64 - &anchor_a)?;
        let mid_v = (&anchor_v + (&eps1_v * (h * a21))?)?;
        let mid_a = (&anchor_a + (&eps1_a * (h * a21))?)?;

        let sub_sigmas = Tensor::stack(&[&sigma, &sub_sigma], 0)?;
        let mut inject = |state: &LatentState,
                          sample: &Tensor,
                          target: &Tensor,
                          stream: SdeStream,
                          sigmas: &Tensor,
                          idx: usize|
         -> Result<Tensor> {
            let raw = noise.draw(stream, state.latent.dims(), &device)?;
            let n = normalize_sde_noise(&raw)?;
            inject_sde_noise(
                state,
                sample,
                target,
                &n,
                &stepper,
                sigmas,
                idx,
                opts.legacy_mode,
            )
        };
        let mid_v = inject(
            &video,
            &anchor_v,
            &mid_v,
            SdeStream::Substep,
            &sub_sigmas,
            0,
        )?;
        let mid_a = inject(
            &audio,
            &anchor_a,
            &mid_a,
            SdeStream::Substep,
            &sub_sigmas,
            0,
        )?;

        if opts.bongmath && h < 0.5 && s[step] as f64 > 0.03 {
            for _ in 0..opts.bongmath_max_iter {
                anchor_v = (&mid_v - (&eps1_v * (h * a21))?)?;
                eps1_v = (&d1v64 - &anchor_v)?;
                anchor_a = (&mid_a - (&eps1_a * (h * a21))?)?;
                eps1_a = (&d1a64 - &anchor_a)?;
            }
        }

        let mid_video = LatentState {
            latent: mid_v.to_dtype(opts.model_dtype)?,
            ..video.clone()
        };
        let mid_audio = LatentState {
            latent: mid_a.to_dtype(opts.model_dtype)?,
            ..audio.clone()
        };
        let sub_only = sub_sigma.unsqueeze(0)?;
        let (d2v, d2a) = denoise.denoise((&mid_video, &mid_audio), &sub_only, 0)?;
        let d2v = post_process_latent(&d2v, &video.denoise_mask, &video.clean_latent)?;
        let d2a = post_process_latent(&d2a, &audio.denoise_mask, &audio.clean_latent)?;
        let eps2_v = (f64_of(&d2v)? - &anchor_v)?;
        let eps2_a = (f64_of(&d2a)? - &anchor_a)?;
        let next_v = (&anchor_v + ((&eps1_v * b1)? + (&eps2_v * b2)?)?.affine(h, 0.0)?)?;
        let next_a = (&anchor_a + ((&eps1_a * b1)? + (&eps2_a * b2)?)?.affine(h, 0.0)?)?;
        let next_v = inject(&video, &anchor_v, &next_v, SdeStream::Step, &sig, step)?;
        let next_a = inject(&audio, &anchor_a, &next_a, SdeStream::Step, &sig, step)?;
        video.latent = next_v.to_dtype(opts.model_dtype)?;
        audio.latent = next_a.to_dtype(opts.model_dtype)?;
        video.latent.device().synchronize()?;
        progress(step + 1, n_full);
    }
    if ends_at_zero {
        let (dv, da) = denoise.denoise((&video, &audio), &sig, n_full)?;
        let dv = post_process_latent(&dv, &video.denoise_mask, &video.clean_latent)?;
        let da = post_process_latent(&da, &audio.denoise_mask, &audio.clean_latent)?;
        video.latent = dv.to_dtype(opts.model_dtype)?;
        audio.latent = da.to_dtype(opts.model_dtype)?;
    }
    Ok((video, audio))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;
    use candle_core::Device;

    fn state(mask: &Tensor, latent: &Tensor) -> LatentState {
        LatentState {
            latent: latent.clone(),
            denoise_mask: mask.clone(),
            positions: Tensor::zeros((1, 3, 2, 2), DType::F32, latent.device()).unwrap(),
            clean_latent: latent.zeros_like().unwrap(),
            attention_mask: None,
            keyframes_mask: None,
            frozen: false,
        }
    }

    fn is_shape_error(r: Result<impl std::fmt::Debug>) -> bool {
        matches!(r, Err(Error::Core(CoreError::TensorShape { .. })))
    }

    #[test]
    fn blend_timesteps_and_dtypes() -> Result<()> {
        let dev = Device::Cpu;
        let d = Tensor::new(&[[[1f32], [1.0]]], &dev)?;
        let c = Tensor::new(&[[[0f32], [0.0]]], &dev)?;
        let m = Tensor::new(&[[[1f32], [0.25]]], &dev)?;
        let out = post_process_latent(&d, &m, &c)?;
        assert_eq!(out.flatten_all()?.to_vec1::<f32>()?, [1.0, 0.25]);
        let out = post_process_latent(&d.to_dtype(DType::BF16)?, &m, &c)?;
        assert_eq!(out.dtype(), DType::BF16);
        let out = post_process_latent(&d.to_dtype(DType::F64)?, &m, &c)?;
        assert_eq!(out.dtype(), DType::F64);
        assert!(is_shape_error(post_process_latent(&d, &m, &c.get(0)?)));
        let wrong_mask = Tensor::ones((1, 3, 1), DType::F32, &dev)?;
        assert!(is_shape_error(post_process_latent(&d, &wrong_mask, &c)));
        let t = timesteps_from_mask(&m, Sigma::Value(0.5))?;
        assert_eq!(t.flatten_all()?.to_vec1::<f32>()?, [0.5, 0.125]);
        let s = Tensor::new(0.5f64, &dev)?;
        assert_eq!(
            timesteps_from_mask(&m, Sigma::Tensor(&s))?.dtype(),
            DType::F32
        );
        Ok(())
    }

    #[test]
    fn noise_normalisation() -> Result<()> {
        let dev = Device::Cpu;
        let n = (Tensor::randn(0f64, 3.0, (2, 8, 4), &dev)? + 1.0)?;
        let z = normalize_sde_noise(&n)?;
        for b in 0..2 {
            let v = z.get(b)?.flatten_all()?.to_vec1::<f64>()?;
            let mean = v.iter().sum::<f64>() / v.len() as f64;
            let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (v.len() - 1) as f64;
            assert!(
                mean.abs() < 1e-12 && (var - 1.0).abs() < 1e-12,
                "{mean} {var}"
            );
        }
        assert!(is_shape_error(normalize_sde_noise(&Tensor::zeros(
            4,
            DType::F64,
            &dev
        )?)));
        Ok(())
    }

    #[test]
    fn sde_injection_modes_and_errors() -> Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::new(&[[[1.0f64, 2.0], [3.0, 4.0]]], &dev)?;
        let d = Tensor::new(&[[[0.5f64, 0.5], [0.5, 0.5]]], &dev)?;
        let noise = x.zeros_like()?;
        let sigmas = Tensor::new(&[1.0f32, 0.5, 0.0], &dev)?;
        let partial = Tensor::new(&[[[1f32], [0.0]]], &dev)?;
        let st = state(&partial, &x.to_dtype(DType::F32)?);
        // per-token mode with a conditioned token (mask 0 → σ_next 0 there) returns `denoised`
        let inject = |st: &LatentState, noise: &Tensor, step: usize, legacy: bool| {
            inject_sde_noise(
                st,
                &x,
                &d,
                noise,
                &Res2sDiffusionStep,
                &sigmas,
                step,
                legacy,
            )
        };
        let y = inject(&st, &noise, 0, false)?;
        assert_eq!(y.to_vec3::<f64>()?, d.to_vec3::<f64>()?);
        // legacy mode steps, then restores the clean (zero) latent where the mask is 0
        let y = inject(&st, &noise, 0, true)?;
        assert_eq!(y.get(0)?.get(1)?.to_vec1::<f64>()?, [0.0, 0.0]);
        // with a full mask the per-token step is the plain step on f64 sigmas
        let full = state(&Tensor::ones((1, 2, 1), DType::F32, &dev)?, &x);
        let a = inject(&full, &noise, 0, false)?;
        let sigmas64 = sigmas.to_dtype(DType::F64)?;
        let b = Res2sDiffusionStep.step(&x, &d, &sigmas64, 0, &noise)?;
        assert_eq!(a.to_vec3::<f64>()?, b.to_vec3::<f64>()?);
        for legacy in [true, false] {
            let r = inject(&full, &noise, 2, legacy);
            assert!(matches!(r, Err(Error::Core(CoreError::InvalidInput(_)))));
            let r = inject(&full, &noise.get(0)?, 0, legacy);
            assert!(is_shape_error(r));
        }
        Ok(())
    }

    #[test]
    fn gradient_estimation() -> Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::new(&[1.0f32, 2.0], &dev)?;
        let d = Tensor::new(&[0.0f32, 1.0], &dev)?;
        let (v, same) = update_velocity_and_sample(&x, &d, Sigma::Value(0.5), None, 2.0)?;
        assert_eq!(v.to_vec1::<f32>()?, [2.0, 2.0]);
        assert_eq!(same.to_vec1::<f32>()?, [0.0, 1.0]);
        // v = 2, v_prev = 1: total 2·(2 − 1) + 1 = 3, x̂ = x − 3·0.5
        let prev = Tensor::new(&[1.0f32, 1.0], &dev)?;
        let (_, ge) = update_velocity_and_sample(&x, &d, Sigma::Value(0.5), Some(&prev), 2.0)?;
        assert_eq!(ge.to_vec1::<f32>()?, [-0.5, 0.5]);
        let r = update_velocity_and_sample(&x, &d, Sigma::Value(0.5), Some(&prev.get(0)?), 2.0);
        assert!(is_shape_error(r));
        assert!(matches!(
            update_velocity_and_sample(&x, &d, Sigma::Value(0.0), None, 2.0),
            Err(Error::Core(CoreError::InvalidInput(_)))
        ));
        Ok(())
    }
}
