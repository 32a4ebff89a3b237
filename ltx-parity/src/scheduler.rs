//! `scheduler` fixtures.

use candle_core::{Device, Tensor};
use serde_json::Value;

use super::{Fixture, Outputs};
use crate::Result;

/// `scheduler` fixtures: `call = {"scheduler": "ltx2" | "linear_quadratic", "cases": [kwargs]}`
/// with outputs `sigmas_<i>`, or `{"scheduler": "constants"}` with the pipelines' sigma lists.
pub(super) fn run(fx: &Fixture, device: &Device) -> Result<Outputs> {
    use ltx_core::components::schedulers::{
        beta_ppf, beta_sigma_table, BetaScheduler, LinearQuadraticScheduler, Ltx2Scheduler,
    };
    let kind = fx.call_str("scheduler")?;
    let vec1 = |v: &[f32]| Tensor::from_slice(v, v.len(), device);
    if kind == "constants" {
        use ltx_pipelines::utils::constants::{
            DISTILLED_SIGMA_VALUES, STAGE_2_DISTILLED_SIGMA_VALUES,
        };
        return Ok(vec![
            ("distilled".to_string(), vec1(&DISTILLED_SIGMA_VALUES)?),
            (
                "stage_2_distilled".to_string(),
                vec1(&STAGE_2_DISTILLED_SIGMA_VALUES)?,
            ),
        ]);
    }
    if kind == "beta_table" {
        let mut ppf = Vec::new();
        for q in fx.call_array("ppf")? {
            let v: Vec<f64> = q
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_f64).collect())
                .unwrap_or_default();
            if v.len() != 3 {
                return Err(fx.bad("ppf entries must be [p, a, b]"));
            }
            ppf.push(beta_ppf(v[0], v[1], v[2]));
        }
        let n = ppf.len();
        return Ok(vec![
            ("table".to_string(), vec1(beta_sigma_table())?),
            ("ppf".to_string(), Tensor::from_vec(ppf, n, device)?),
        ]);
    }
    let cases = fx.call_array("cases")?;
    let num = |case: &Value, key: &str| case.get(key).and_then(Value::as_f64);
    let int = |case: &Value, key: &str| case.get(key).and_then(Value::as_u64).map(|v| v as usize);
    let mut out = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let keys = |known: &[&str]| fx.check_keys(case, &format!("call.cases[{i}]"), known);
        let steps = int(case, "steps").ok_or_else(|| fx.bad(format!("case {i}: missing steps")))?;
        let sigmas = match kind {
            "ltx2" => {
                keys(&[
                    "steps",
                    "max_shift",
                    "base_shift",
                    "stretch",
                    "terminal",
                    "tokens",
                ])?;
                let d = Ltx2Scheduler::default();
                let s = Ltx2Scheduler {
                    max_shift: num(case, "max_shift").unwrap_or(d.max_shift),
                    base_shift: num(case, "base_shift").unwrap_or(d.base_shift),
                    stretch: case
                        .get("stretch")
                        .and_then(Value::as_bool)
                        .unwrap_or(d.stretch),
                    terminal: num(case, "terminal").unwrap_or(d.terminal),
                    ..d
                };
                s.sigmas(steps, int(case, "tokens"))?
            }
            "linear_quadratic" => {
                keys(&["steps", "threshold_noise", "linear_steps"])?;
                let d = LinearQuadraticScheduler::default();
                LinearQuadraticScheduler {
                    threshold_noise: num(case, "threshold_noise").unwrap_or(d.threshold_noise),
                    linear_steps: int(case, "linear_steps"),
                }
                .sigmas(steps)?
            }
            "beta" => {
                keys(&["steps", "alpha", "beta"])?;
                let d = BetaScheduler::default();
                BetaScheduler {
                    alpha: num(case, "alpha").unwrap_or(d.alpha),
                    beta: num(case, "beta").unwrap_or(d.beta),
                }
                .sigmas(steps)?
            }
            other => return Err(fx.bad(format!("unknown scheduler `{other}`"))),
        };
        out.push((format!("sigmas_{i}"), vec1(&sigmas)?));
    }
    Ok(out)
}
