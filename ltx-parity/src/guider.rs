//! `guider` fixtures: `call.op` = `guiders`, `legacy_apg`, `multimodal` or `perturbations`.

use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use ltx_core::components::guiders::{
    projection_coef, CfgGuider, CfgStarRescalingGuider, Guider, LegacyStatefulApgGuider,
    LtxApgGuider, MultiModalGuider, MultiModalGuiderFactory, MultiModalGuiderParams, StgGuider,
    Uncond,
};
use ltx_core::guidance::perturbations::{
    BatchedPerturbationConfig, Perturbation, PerturbationConfig, PerturbationType,
};
use ltx_core::loader::StateDict;
use serde_json::Value;

use super::patchifier::usizes;
use super::{Fixture, Outputs};
use crate::Result;

pub(super) fn run(fx: &Fixture, inputs: &Arc<StateDict>, device: &Device) -> Result<Outputs> {
    match fx.call_str("op")? {
        "guiders" => guiders(fx, inputs, device),
        "legacy_apg" => legacy_apg(fx, inputs, device),
        "multimodal" => multimodal(fx, inputs, device),
        "perturbations" => perturbations(fx, device),
        other => Err(fx.bad(format!("unknown guider op `{other}`"))),
    }
}

fn num(fx: &Fixture, v: &Value, key: &str) -> Result<f64> {
    v.get(key)
        .and_then(Value::as_f64)
        .ok_or_else(|| fx.bad(format!("`{key}` must be a number")))
}

fn flag(b: bool, device: &Device) -> Result<Tensor> {
    Ok(Tensor::new(&[b as u8 as f32], device)?)
}

fn guiders(fx: &Fixture, inputs: &Arc<StateDict>, device: &Device) -> Result<Outputs> {
    let mut out = Vec::new();
    for (i, spec) in fx.call_array("guiders")?.iter().enumerate() {
        let kind = spec["kind"].as_str().unwrap_or_default();
        // APG's own two parameters; the other guiders take the scale alone
        let extra: &[&str] = if kind == "apg" {
            &["eta", "norm_threshold"]
        } else {
            &[]
        };
        let known = [&["name", "kind", "scale", "inputs"][..], extra].concat();
        fx.check_keys(spec, &format!("call.guiders[{i}]"), &known)?;
        let name = spec["name"].as_str().unwrap_or_default();
        let scale = num(fx, spec, "scale")?;
        let mut g: Box<dyn Guider> = match kind {
            "cfg" => Box::new(CfgGuider::new(scale)?),
            "cfg_star" => Box::new(CfgStarRescalingGuider::new(scale)?),
            "stg" => Box::new(StgGuider::new(scale)?),
            "apg" => Box::new(LtxApgGuider::new(
                scale,
                num(fx, spec, "eta")?,
                num(fx, spec, "norm_threshold")?,
            )?),
            other => return Err(fx.bad(format!("unknown guider `{other}`"))),
        };
        for key in spec["inputs"].as_array().into_iter().flatten() {
            let key = key.as_str().unwrap_or_default();
            let cond = fx.input(inputs, &format!("cond_{key}"), device)?;
            let uncond = fx.input(inputs, &format!("uncond_{key}"), device)?;
            out.push((format!("{name}_{key}"), g.delta(&cond, &uncond)?));
        }
        out.push((format!("{name}_enabled"), flag(g.enabled(), device)?));
    }
    for key in ["3d", "5d", "5d1"] {
        let cond = fx.input(inputs, &format!("cond_{key}"), device)?;
        let uncond = fx.input(inputs, &format!("uncond_{key}"), device)?;
        out.push((
            format!("projection_coef_{key}"),
            projection_coef(&cond, &uncond)?,
        ));
    }
    Ok(out)
}

fn legacy_apg(fx: &Fixture, inputs: &Arc<StateDict>, device: &Device) -> Result<Outputs> {
    let mut out = Vec::new();
    for (i, spec) in fx.call_array("guiders")?.iter().enumerate() {
        fx.check_keys(
            spec,
            &format!("call.guiders[{i}]"),
            &["name", "scale", "eta", "norm_threshold", "momentum"],
        )?;
        let name = spec["name"].as_str().unwrap_or_default();
        let mut g = LegacyStatefulApgGuider::new(
            num(fx, spec, "scale")?,
            num(fx, spec, "eta")?,
            num(fx, spec, "norm_threshold")?,
            num(fx, spec, "momentum")?,
        )?;
        for i in 0..3 {
            let cond = fx.input(inputs, &format!("cond_{i}"), device)?;
            let uncond = fx.input(inputs, &format!("uncond_{i}"), device)?;
            out.push((format!("{name}_{i}"), g.delta(&cond, &uncond)?));
        }
    }
    Ok(out)
}

/// [`MultiModalGuiderParams`] from the object `v` (at `what`): every field required, `stg_blocks`
/// may be `null`.
pub(super) fn multimodal_params(
    fx: &Fixture,
    v: &Value,
    what: &str,
) -> Result<MultiModalGuiderParams> {
    fx.check_keys(
        v,
        what,
        &[
            "cfg_scale",
            "stg_scale",
            "stg_blocks",
            "rescale_scale",
            "modality_scale",
            "skip_step",
        ],
    )?;
    Ok(MultiModalGuiderParams {
        cfg_scale: num(fx, v, "cfg_scale")?,
        stg_scale: num(fx, v, "stg_scale")?,
        stg_blocks: match &v["stg_blocks"] {
            Value::Null => None,
            b => Some(usizes(fx, b, &format!("{what}.stg_blocks"))?),
        },
        rescale_scale: num(fx, v, "rescale_scale")?,
        modality_scale: num(fx, v, "modality_scale")?,
        skip_step: num(fx, v, "skip_step")? as usize,
    })
}

/// One perturbation `{"type", "blocks"}` (at `what`; `blocks` `null`: every block).
pub(super) fn perturbation(fx: &Fixture, p: &Value, what: &str) -> Result<Perturbation> {
    fx.check_keys(p, what, &["type", "blocks"])?;
    Ok(Perturbation {
        kind: PerturbationType::parse(p["type"].as_str().unwrap_or_default())?,
        blocks: match &p["blocks"] {
            Value::Null => None,
            b => Some(usizes(fx, b, &format!("{what}.blocks"))?),
        },
    })
}

fn multimodal(fx: &Fixture, inputs: &Arc<StateDict>, device: &Device) -> Result<Outputs> {
    let all: Vec<MultiModalGuiderParams> = fx
        .call_array("params")?
        .iter()
        .enumerate()
        .map(|(i, p)| multimodal_params(fx, p, &format!("call.params[{i}]")))
        .collect::<Result<_>>()?;
    let cond = fx.input(inputs, "cond", device)?;
    let unconds: Vec<Tensor> = ["text", "perturbed", "modality"]
        .iter()
        .map(|n| fx.input(inputs, &format!("uncond_{n}"), device))
        .collect::<Result<_>>()?;
    let mut out = Vec::new();
    for (i, call) in fx.call_array("calls")?.iter().enumerate() {
        fx.check_keys(
            call,
            &format!("call.calls[{i}]"),
            &["params", "text", "perturbed", "modality"],
        )?;
        let p = all
            .get(num(fx, call, "params")? as usize)
            .ok_or_else(|| fx.bad("call params index out of range"))?;
        let g = MultiModalGuider {
            params: p.clone(),
            negative_context: None,
        };
        fn arg<'t>(call: &Value, n: &str, t: &'t Tensor) -> Uncond<'t> {
            if call[n].as_str() == Some("t") {
                Uncond::Tensor(t)
            } else {
                Uncond::Scalar(0.0)
            }
        }
        let pred = g.calculate(
            &cond,
            arg(call, "text", &unconds[0]),
            arg(call, "perturbed", &unconds[1]),
            arg(call, "modality", &unconds[2]),
        )?;
        out.push((format!("pred_{i}"), pred));
    }
    let (mut flags, mut skips) = (Vec::new(), Vec::new());
    for p in &all {
        let g = MultiModalGuider {
            params: p.clone(),
            negative_context: None,
        };
        flags.extend([
            g.do_unconditional_generation(),
            g.do_perturbed_generation(),
            g.do_isolated_modality_generation(),
        ]);
        skips.extend((0..8).map(|s| g.should_skip_step(s)));
    }
    let as_f32 = |v: Vec<bool>, cols: usize| -> Result<Tensor> {
        let rows = v.len() / cols;
        let v: Vec<f32> = v.into_iter().map(|b| b as u8 as f32).collect();
        Ok(Tensor::from_vec(v, (rows, cols), device)?)
    };
    out.push(("flags".into(), as_f32(flags, 3)?));
    out.push(("skips".into(), as_f32(skips, 8)?));
    let mut pairs = Vec::new();
    for b in fx.call_array("bins")? {
        let bound = b[0].as_f64().ok_or_else(|| fx.bad("bin bound"))?;
        let idx = b[1].as_u64().ok_or_else(|| fx.bad("bin params index"))? as usize;
        let p = all
            .get(idx)
            .ok_or_else(|| fx.bad("bin params index out of range"))?;
        pairs.push((bound, p.clone()));
    }
    let factory = MultiModalGuiderFactory::from_pairs(pairs, None)?;
    let constant = MultiModalGuiderFactory::constant(all[1].clone(), None)?;
    let sigmas: Vec<f64> = fx
        .call_array("sigmas")?
        .iter()
        .map(|s| s.as_f64().unwrap_or(f64::NAN))
        .collect();
    let pick = |f: &MultiModalGuiderFactory| -> Result<Tensor> {
        let v: Vec<f64> = sigmas.iter().map(|&s| f.params(s).cfg_scale).collect();
        Ok(Tensor::new(v, device)?)
    };
    out.push(("bins_cfg".into(), pick(&factory)?));
    out.push(("constant_cfg".into(), pick(&constant)?));
    Ok(out)
}

/// `call.perturbations` (`spec`): one list of [`perturbation`]s per sample.
pub(super) fn perturbation_configs(
    fx: &Fixture,
    spec: &[Value],
) -> Result<Vec<PerturbationConfig>> {
    spec.iter()
        .enumerate()
        .map(|(i, sample)| {
            let list = sample
                .as_array()
                .ok_or_else(|| fx.bad(format!("call.perturbations[{i}] must be a list")))?
                .iter()
                .enumerate()
                .map(|(j, p)| perturbation(fx, p, &format!("call.perturbations[{i}][{j}]")))
                .collect::<Result<_>>()?;
            Ok(PerturbationConfig::new(list))
        })
        .collect()
}

fn perturbations(fx: &Fixture, device: &Device) -> Result<Outputs> {
    let configs = perturbation_configs(fx, fx.call_array("perturbations")?)?;
    let cfg = BatchedPerturbationConfig::new(configs);
    let values = Tensor::zeros((cfg.len(), 5, 2), DType::F32, device)?;
    let (mut masks, mut flags) = (Vec::new(), Vec::new());
    for q in fx.call_array("queries")? {
        let kind = PerturbationType::parse(q[0].as_str().unwrap_or_default())?;
        let block = q[1].as_u64().ok_or_else(|| fx.bad("query block"))? as usize;
        masks.push(cfg.mask_like(kind, block, &values)?.flatten_all()?);
        flags.push(Tensor::new(
            &[
                cfg.any_in_batch(kind, block) as u8 as f32,
                cfg.all_in_batch(kind, block) as u8 as f32,
            ],
            device,
        )?);
    }
    Ok(vec![
        ("masks".into(), Tensor::stack(&masks, 0)?),
        ("flags".into(), Tensor::stack(&flags, 0)?),
    ])
}
