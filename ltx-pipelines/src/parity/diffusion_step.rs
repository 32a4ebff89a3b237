//! `diffusion_step` fixtures: `call.op` = `euler`, `res2s` or `sampler` (inputs in their stored
//! dtypes: f32, bf16 or f64).

use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use ltx_core::components::diffusion_steps::{EulerDiffusionStep, Res2sDiffusionStep};
use ltx_core::components::noisers::GaussianNoiser;
use ltx_core::loader::StateDict;
use ltx_core::types::LatentState;
use ltx_core::utils::{to_denoised, to_velocity, Sigma};

use super::{Fixture, Outputs};
use crate::utils::res2s::{get_res2s_coefficients, phi, PhiCache};
use crate::utils::samplers::{
    inject_sde_noise, normalize_sde_noise, post_process_latent, timesteps_from_mask,
    update_velocity_and_sample,
};
use crate::Result;

pub(super) fn run(fx: &Fixture, inputs: &Arc<StateDict>, device: &Device) -> Result<Outputs> {
    let raw = |n: &str| -> Result<Tensor> { Ok(inputs.raw_tensor(n, device)?) };
    let floats = |k: &str| -> Result<Vec<f64>> {
        fx.call_array(k)?
            .iter()
            .map(|v| {
                v.as_f64()
                    .ok_or_else(|| fx.bad(format!("call.{k} must hold numbers")))
            })
            .collect()
    };
    let mut out = Vec::new();
    match fx.call_str("op")? {
        "euler" => {
            let sigmas: Vec<f32> = floats("sigmas")?.into_iter().map(|s| s as f32).collect();
            let (x, d) = (raw("sample")?, raw("denoised")?);
            let (xb, db) = (raw("sample_bf16")?, raw("denoised_bf16")?);
            for i in 0..sigmas.len() - 1 {
                out.push((
                    format!("euler_{i}"),
                    EulerDiffusionStep.step(&x, &d, &sigmas, i)?,
                ));
                out.push((
                    format!("euler_bf16_{i}"),
                    EulerDiffusionStep.step(&xb, &db, &sigmas, i)?,
                ));
            }
            let v = to_velocity(&x, Sigma::Value(sigmas[1] as f64), &d)?;
            out.push((
                "velocity_bf16".into(),
                to_velocity(&xb, Sigma::Value(sigmas[2] as f64), &db)?,
            ));
            let s1 = Tensor::new(sigmas[1], device)?;
            out.push((
                "denoised_scalar".into(),
                to_denoised(&x, &v, Sigma::Tensor(&s1))?,
            ));
            let ts = raw("timesteps")?;
            out.push((
                "denoised_pertoken".into(),
                to_denoised(&x, &v, Sigma::Tensor(&ts))?,
            ));
            out.push(("velocity".into(), v));
        }
        "res2s" => {
            let next_v: Vec<f32> = floats("sde_next")?.into_iter().map(|s| s as f32).collect();
            let next = Tensor::new(next_v.as_slice(), device)?;
            let up = (&next * 0.7)?;
            let down = (&next * 0.6)?;
            let over = (&next * 1.5)?;
            for (name, u, d) in [
                ("up", Some(&up), None),
                ("down", None, Some(&down)),
                ("none", None, None),
                ("clamp", Some(&over), None),
            ] {
                let c = Res2sDiffusionStep::get_sde_coeff(&next, u, d, None)?;
                out.push((format!("sde_{name}_alpha"), c.alpha_ratio));
                out.push((format!("sde_{name}_down"), c.sigma_down));
                out.push((format!("sde_{name}_up"), c.sigma_up));
            }
            let (x, d, noise) = (raw("sample")?, raw("denoised")?, raw("noise")?);
            let sv: Vec<f32> = floats("sigmas")?.into_iter().map(|s| s as f32).collect();
            let sigmas = Tensor::new(sv.as_slice(), device)?;
            for i in 0..4 {
                out.push((
                    format!("step_{i}"),
                    Res2sDiffusionStep.step(&x, &d, &sigmas, i, &noise)?,
                ));
            }
            let s1 = sv[1] as f64;
            let sub = Tensor::new(&[s1, (s1 * sv[2] as f64).sqrt()], device)?;
            out.push((
                "step_substep".into(),
                Res2sDiffusionStep.step(&x, &d, &sub, 0, &noise)?,
            ));
            let mask = raw("mask")?;
            let state = LatentState {
                latent: x.to_dtype(DType::F32)?,
                denoise_mask: mask.clone(),
                positions: Tensor::zeros((1, 3, mask.dim(1)?, 2), DType::F32, device)?,
                clean_latent: raw("clean")?,
                attention_mask: None,
            };
            for legacy in [true, false] {
                let y = inject_sde_noise(
                    &state,
                    &x,
                    &d,
                    &noise,
                    &Res2sDiffusionStep,
                    &sigmas,
                    1,
                    legacy,
                )?;
                out.push((format!("inject_legacy{}", legacy as u8), y));
            }
            let hs = floats("hs")?;
            let phis: Vec<f64> = [1, 2, 3]
                .iter()
                .flat_map(|&j| hs.iter().map(move |&h| phi(j, -h)))
                .collect();
            out.push(("phi".into(), Tensor::from_vec(phis, (3, hs.len()), device)?));
            let mut cache = PhiCache::new();
            let coeffs: Vec<f64> = hs
                .iter()
                .flat_map(|&h| {
                    let (a, b1, b2) = get_res2s_coefficients(h, &mut cache, 0.5);
                    [a, b1, b2]
                })
                .collect();
            out.push((
                "coefficients".into(),
                Tensor::from_vec(coeffs, (hs.len(), 3), device)?,
            ));
        }
        "sampler" => {
            let mask = raw("mask")?;
            out.push((
                "post_processed".into(),
                post_process_latent(&raw("denoised_bf16")?, &mask, &raw("clean")?)?,
            ));
            let sigma = fx.call_f64("sigma")?;
            out.push((
                "timesteps".into(),
                timesteps_from_mask(&mask, &Tensor::new(sigma as f32, device)?)?,
            ));
            out.push((
                "timesteps_f64".into(),
                timesteps_from_mask(
                    &mask.to_dtype(DType::F64)?,
                    &Tensor::new(sigma as f32, device)?.to_dtype(DType::F64)?,
                )?,
            ));
            out.push(("sde_noise".into(), normalize_sde_noise(&raw("raw_noise")?)?));
            let latent = raw("latent_bf16")?;
            let state = LatentState {
                clean_latent: latent.clone(),
                latent,
                denoise_mask: mask.clone(),
                positions: Tensor::zeros((1, 3, mask.dim(1)?, 2), DType::F32, device)?,
                attention_mask: None,
            };
            let noised =
                GaussianNoiser.apply(&state, &raw("noise_bf16")?, fx.call_f64("noise_scale")?)?;
            out.push(("noised".into(), noised.latent));
            let gamma = fx.call_f64("ge_gamma")?;
            let sigmas = floats("ge_sigmas")?;
            let mut prev: Option<Tensor> = None;
            for (i, &s) in sigmas.iter().enumerate() {
                let (v, d) = update_velocity_and_sample(
                    &raw(&format!("noisy_{i}"))?,
                    &raw(&format!("denoised_{i}"))?,
                    s as f32 as f64,
                    prev.as_ref(),
                    gamma,
                )?;
                out.push((format!("ge_denoised_{i}"), d));
                out.push((format!("ge_velocity_{i}"), v.clone()));
                prev = Some(v);
            }
        }
        other => return Err(fx.bad(format!("unknown diffusion_step op `{other}`"))),
    }
    Ok(out)
}
