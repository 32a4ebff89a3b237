//! `noise` fixtures: torch's `randn` streams (`tests/reference/math_cases/noise.py`).

use candle_core::{DType, Device};
use ltx_core::components::torch_random::{CudaLaunchLayout, TorchGenerator};
use serde_json::Value;

use super::{Fixture, Outputs};
use crate::Result;

/// `call = {"kind": "torch-cpu" | "torch-cuda", "generators": [{"seed", "draws": [[shape, dtype]]}]}`
/// (torch-cuda adds `multiprocessors`, `max_threads_per_multiprocessor`): each generator seeded once
/// (a Python int, negative values wrapped as `manual_seed` does), its draws made in order; outputs
/// `g<j>_d<i>` in the draw's dtype.
pub(super) fn run(fx: &Fixture, device: &Device) -> Result<Outputs> {
    let kind = fx.call_str("kind")?;
    let layout = match kind {
        "torch-cpu" => None,
        "torch-cuda" => Some(CudaLaunchLayout {
            multiprocessors: fx.call_usize("multiprocessors")? as u32,
            max_threads_per_multiprocessor: fx.call_usize("max_threads_per_multiprocessor")? as u32,
        }),
        other => {
            return Err(fx.bad(format!(
                "call.kind {other:?} is not torch-cpu or torch-cuda"
            )))
        }
    };
    let mut out = Vec::new();
    for (j, gen) in fx.call_array("generators")?.iter().enumerate() {
        fx.check_keys(gen, &format!("call.generators[{j}]"), &["seed", "draws"])?;
        let seed = gen
            .get("seed")
            .and_then(|s| s.as_i64().map(|v| v as u64).or_else(|| s.as_u64()))
            .ok_or_else(|| fx.bad(format!("generators[{j}].seed must be an integer")))?;
        let mut g = match layout {
            None => TorchGenerator::cpu(seed),
            Some(l) => TorchGenerator::cuda(seed, l),
        };
        let draws = gen
            .get("draws")
            .and_then(Value::as_array)
            .ok_or_else(|| fx.bad(format!("generators[{j}].draws must be a list")))?;
        for (i, draw) in draws.iter().enumerate() {
            let bad = || fx.bad(format!("generators[{j}].draws[{i}] must be [shape, dtype]"));
            let shape: Vec<usize> = draw
                .get(0)
                .and_then(Value::as_array)
                .ok_or_else(bad)?
                .iter()
                .map(|d| d.as_u64().map(|v| v as usize).ok_or_else(bad))
                .collect::<Result<_>>()?;
            let dtype = match draw.get(1).and_then(Value::as_str) {
                Some("float32") => DType::F32,
                Some("float64") => DType::F64,
                Some("bfloat16") => DType::BF16,
                Some("float16") => DType::F16,
                _ => return Err(bad()),
            };
            out.push((format!("g{j}_d{i}"), g.randn(shape, dtype, device)?));
        }
    }
    Ok(out)
}
