//! `diffusion_step` fixtures: `call.op` = `euler`, `euler_ancestral`, `res2s`, `coefficients`, `sampler` or
//! `sde_noise` (see `docs/parity.md`). Inputs are read in their stored dtypes (f32, bf16 or f64)
//! and every output is produced in the dtype the reference returns.

use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use ltx_core::components::diffusion_steps::{
    EulerAncestralDiffusionStep, EulerDiffusionStep, Res2sDiffusionStep,
};
use ltx_core::components::noisers::GaussianNoiser;
use ltx_core::loader::StateDict;
use ltx_core::types::LatentState;
use ltx_core::utils::{to_denoised, to_velocity, Sigma};

use super::{Fixture, Outputs};
use crate::Result;
use ltx_pipelines::utils::helpers::{post_process_latent, timesteps_from_mask};
use ltx_pipelines::utils::res2s::{get_res2s_coefficients, phi, PhiCache};
use ltx_pipelines::utils::samplers::{
    inject_sde_noise, normalize_sde_noise, update_velocity_and_sample,
};

/// Stored inputs of one fixture, in their stored dtypes.
struct Inputs<'a> {
    fx: &'a Fixture,
    sd: &'a Arc<StateDict>,
    device: &'a Device,
}

impl Inputs<'_> {
    fn get(&self, name: &str) -> Result<Tensor> {
        if !self.sd.contains(name) {
            return Err(self.fx.bad(format!("missing tensor `input.{name}`")));
        }
        Ok(self.sd.raw_tensor(name, self.device)?)
    }

    /// A tensor's values as f64.
    fn values(&self, name: &str) -> Result<Vec<f64>> {
        Ok(self
            .get(name)?
            .to_dtype(DType::F64)?
            .flatten_all()?
            .to_vec1()?)
    }

    /// A 0-d f64 tensor standing for a Python float.
    fn float(&self, name: &str) -> Result<f64> {
        let t = self.get(name)?;
        if t.dtype() != DType::F64 || t.rank() != 0 {
            return Err(self
                .fx
                .bad(format!("`input.{name}` must be a 0-d f64 tensor")));
        }
        Ok(t.to_scalar::<f64>()?)
    }

    fn f32_list(&self, name: &str) -> Result<Vec<f32>> {
        Ok(self.get(name)?.to_dtype(DType::F32)?.to_vec1()?)
    }

    /// A latent state (positions are not used by these steps).
    fn state(&self, latent: &Tensor, mask: &Tensor, clean: &Tensor) -> Result<LatentState> {
        let (b, t) = (latent.dim(0)?, latent.dim(1)?);
        Ok(LatentState {
            latent: latent.clone(),
            denoise_mask: mask.clone(),
            positions: Tensor::zeros((b, 3, t, 2), DType::F32, self.device)?,
            clean_latent: clean.clone(),
            attention_mask: None,
            keyframes_mask: None,
            frozen: false,
        })
    }
}

pub(super) fn run(fx: &Fixture, inputs: &Arc<StateDict>, device: &Device) -> Result<Outputs> {
    let inp = Inputs {
        fx,
        sd: inputs,
        device,
    };
    match fx.call_str("op")? {
        "euler" => euler(&inp),
        "euler_ancestral" => euler_ancestral(&inp),
        "res2s" => res2s(&inp),
        "coefficients" => coefficients(&inp),
        "sampler" => sampler(&inp),
        "sde_noise" => sde_noise(&inp),
        other => Err(fx.bad(format!("unknown diffusion_step op `{other}`"))),
    }
}

fn euler(inp: &Inputs) -> Result<Outputs> {
    let sigmas = inp.f32_list("sigmas")?;
    let (x, d) = (inp.get("sample")?, inp.get("denoised")?);
    let (xb, db) = (inp.get("sample_bf16")?, inp.get("denoised_bf16")?);
    let sigma_float = inp.float("sigma_float")?;
    let dev = inp.device;
    let mut out = Vec::new();
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
    let s1 = Tensor::new(sigmas[1], dev)?;
    let s2 = Tensor::new(sigmas[2], dev)?;
    let v = to_velocity(&x, Sigma::Tensor(&s1), &d)?;
    let vb = to_velocity(&xb, Sigma::Tensor(&s2), &db)?;
    out.push((
        "velocity_float".into(),
        to_velocity(&x, Sigma::Value(sigma_float), &d)?,
    ));
    out.push((
        "denoised_scalar".into(),
        to_denoised(&x, &v, Sigma::Tensor(&s1))?,
    ));
    out.push((
        "denoised_float".into(),
        to_denoised(&x, &v, Sigma::Value(sigma_float))?,
    ));
    let ts = inp.get("timesteps")?;
    out.push((
        "denoised_pertoken".into(),
        to_denoised(&x, &v, Sigma::Tensor(&ts))?,
    ));
    out.push((
        "denoised_bf16".into(),
        to_denoised(&xb, &vb, Sigma::Tensor(&s2))?,
    ));
    out.push(("velocity".into(), v));
    out.push(("velocity_bf16".into(), vb));
    Ok(out)
}

/// `call.params` = `[[eta, s_noise], ...]`: every step index of each parameter pair, f32 and bf16,
/// with the stored per-index noise.
fn euler_ancestral(inp: &Inputs) -> Result<Outputs> {
    let fx = inp.fx;
    let params = fx.call_value("params").cloned().unwrap_or_default();
    let params: Vec<(f64, f64)> = serde_json::from_value(params)
        .map_err(|e| fx.bad(format!("call.params must be [[eta, s_noise], ...]: {e}")))?;
    let sigmas = inp.f32_list("sigmas")?;
    let (x, d) = (inp.get("sample")?, inp.get("denoised")?);
    let (xb, db) = (inp.get("sample_bf16")?, inp.get("denoised_bf16")?);
    let mut out = Vec::new();
    for (p, &(eta, s_noise)) in params.iter().enumerate() {
        let step = EulerAncestralDiffusionStep::new(eta, s_noise)?;
        for i in 0..sigmas.len() - 1 {
            let (n, nb) = (
                inp.get(&format!("noise_{i}"))?,
                inp.get(&format!("noise_bf16_{i}"))?,
            );
            out.push((
                format!("p{p}_{i}"),
                step.step(&x, &d, &sigmas, i, Some(&n))?,
            ));
            out.push((
                format!("p{p}_bf16_{i}"),
                step.step(&xb, &db, &sigmas, i, Some(&nb))?,
            ));
        }
    }
    Ok(out)
}

/// `get_sde_coeff` on stored tensors: `(output name, σ_next, σ_up, σ_down, σ_max)`, where the
/// σ_up name `half` stands for σ_next·0.5 (what the reference's step passes).
type SdeCase<'a> = (
    &'a str,
    &'a str,
    Option<&'a str>,
    Option<&'a str>,
    Option<&'a str>,
);

const SDE_CASES: [SdeCase; 7] = [
    ("up", "sde_next", Some("sde_up"), None, None),
    ("down", "sde_next", None, Some("sde_down"), None),
    ("none", "sde_next", None, None, None),
    (
        "special_down",
        "special_next",
        None,
        Some("special_down"),
        None,
    ),
    ("special_up", "special_next", Some("special_up"), None, None),
    (
        "special_max",
        "special_next",
        Some("special_up"),
        None,
        Some("special_max"),
    ),
    ("pertoken", "pertoken_next", Some("half"), None, None),
];

fn res2s(inp: &Inputs) -> Result<Outputs> {
    let mut out = Vec::new();
    let t = |n: &str| inp.get(n);
    let opt = |n: Option<&str>| n.map(t).transpose();
    for (name, next, up, down, max) in SDE_CASES {
        let next = t(next)?;
        let up = match up {
            Some("half") => Some((&next * 0.5)?),
            other => opt(other)?,
        };
        let (down, max) = (opt(down)?, opt(max)?);
        let c = Res2sDiffusionStep::get_sde_coeff(&next, up.as_ref(), down.as_ref(), max.as_ref())?;
        out.push((format!("sde_{name}_alpha"), c.alpha_ratio));
        out.push((format!("sde_{name}_down"), c.sigma_down));
        out.push((format!("sde_{name}_up"), c.sigma_up));
    }

    let sigmas = t("sigmas")?;
    let sub = t("sub_sigmas")?;
    let (x, d, noise) = (t("sample")?, t("denoised")?, t("noise")?);
    for i in 0..sigmas.dim(0)? - 1 {
        out.push((
            format!("step_{i}"),
            Res2sDiffusionStep.step(&x, &d, &sigmas, i, &noise)?,
        ));
    }
    out.push((
        "step_substep".into(),
        Res2sDiffusionStep.step(&x, &d, &sub, 0, &noise)?,
    ));
    let (latent, clean) = (t("latent")?, t("clean")?);
    for mask_name in ["mask", "mask_soft"] {
        let state = inp.state(&latent, &t(mask_name)?, &clean)?;
        for legacy in [true, false] {
            for (place, sig, idx) in [("step", &sigmas, 1), ("substep", &sub, 0)] {
                let y = inject_sde_noise(
                    &state,
                    &x,
                    &d,
                    &noise,
                    &Res2sDiffusionStep,
                    sig,
                    idx,
                    legacy,
                )?;
                out.push((
                    format!("inject_{mask_name}_{place}_legacy{}", legacy as u8),
                    y,
                ));
            }
        }
    }
    Ok(out)
}

fn coefficients(inp: &Inputs) -> Result<Outputs> {
    let hs = inp.values("hs")?;
    let c2s = inp.values("c2s")?;
    let dev = inp.device;
    let phis: Vec<f64> = [1, 2, 3]
        .iter()
        .flat_map(|&j| hs.iter().map(move |&h| phi(j, -h)))
        .collect();
    let mut out = vec![(
        "phi".to_string(),
        Tensor::from_vec(phis, (3, hs.len()), dev)?,
    )];
    for (k, &c2) in c2s.iter().enumerate() {
        let mut cache = PhiCache::new();
        let rows: Vec<f64> = hs
            .iter()
            .flat_map(|&h| {
                let (a21, b1, b2) = get_res2s_coefficients(h, &mut cache, c2);
                [a21, b1, b2]
            })
            .collect();
        out.push((
            format!("coefficients_{k}"),
            Tensor::from_vec(rows, (hs.len(), 3), dev)?,
        ));
    }
    Ok(out)
}

fn sampler(inp: &Inputs) -> Result<Outputs> {
    let t = |n: &str| inp.get(n);
    let (mask, clean) = (t("mask")?, t("clean")?);
    let mut out = Vec::new();
    for name in ["denoised", "denoised_bf16", "denoised_f64"] {
        out.push((
            format!("post_{name}"),
            post_process_latent(&t(name)?, &mask, &clean)?,
        ));
    }
    let sigma = t("sigma")?;
    out.push((
        "timesteps".into(),
        timesteps_from_mask(&mask, Sigma::Tensor(&sigma))?,
    ));
    out.push((
        "timesteps_float".into(),
        timesteps_from_mask(&mask, Sigma::Value(inp.float("sigma_float")?))?,
    ));
    out.push((
        "timesteps_f64".into(),
        timesteps_from_mask(
            &mask.to_dtype(DType::F64)?,
            Sigma::Tensor(&sigma.to_dtype(DType::F64)?),
        )?,
    ));
    for name in ["latent_bf16", "latent"] {
        let latent = t(name)?;
        let state = inp.state(&latent, &mask, &latent)?;
        let noise = t(&format!("noise_{name}"))?;
        let scale = inp.float(&format!("noise_scale_{name}"))?;
        out.push((
            format!("noised_{name}"),
            GaussianNoiser.apply(&state, &noise, scale)?.latent,
        ));
    }
    let sigmas = t("ge_sigmas")?;
    let gammas = inp.values("ge_gammas")?;
    for (g, (&gamma, dtype)) in gammas.iter().zip([DType::F32, DType::BF16]).enumerate() {
        let mut prev: Option<Tensor> = None;
        for i in 0..3 {
            let noisy = t(&format!("ge_noisy_{i}"))?.to_dtype(dtype)?;
            let den = t(&format!("ge_denoised_{i}"))?.to_dtype(dtype)?;
            let sigma = sigmas.get(i)?;
            let (v, d) = update_velocity_and_sample(
                &noisy,
                &den,
                Sigma::Tensor(&sigma),
                prev.as_ref(),
                gamma,
            )?;
            out.push((format!("ge{g}_denoised_{i}"), d));
            out.push((format!("ge{g}_velocity_{i}"), v.clone()));
            prev = Some(v);
        }
    }
    Ok(out)
}

fn sde_noise(inp: &Inputs) -> Result<Outputs> {
    let t = |n: &str| inp.get(n);
    let noise = normalize_sde_noise(&t("raw_noise_0")?)?;
    let state = inp.state(&t("latent")?, &t("mask")?, &t("clean")?)?;
    let injected = inject_sde_noise(
        &state,
        &t("sample")?,
        &t("denoised")?,
        &normalize_sde_noise(&t("raw_noise_1")?)?,
        &Res2sDiffusionStep,
        &t("sigmas")?,
        1,
        false,
    )?;
    Ok(vec![
        ("sde_noise".into(), noise),
        ("inject".into(), injected),
    ])
}
