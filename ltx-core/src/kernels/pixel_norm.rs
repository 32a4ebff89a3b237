//! Fused PixelNorm → optional AdaLN modulation → optional SiLU over `[B, C, ...]` (no Python
//! twin: it computes `ltx_core.model.common.normalization.PixelNorm` followed by the VAE's
//! `x·(1 + scale) + shift` and `SiLU`, which Candle would run as six separate passes with a slow
//! strided channel reduction).

use candle_core::{CpuStorage, DType, Device, Result, Storage, Tensor};
use rayon::prelude::*;

use super::SendPtr;

/// Positions per parallel task.
const BLOCK: usize = 2048;

/// `y = act((x / sqrt(mean_c(x²) + eps)) · (1 + scale) + shift)` with `scale`/`shift` of shape
/// `[B, C]` (one value per batch item and channel) and `act` SiLU when `silu`.
pub fn pixel_norm(
    x: &Tensor,
    eps: f64,
    modulation: Option<(&Tensor, &Tensor)>,
    silu: bool,
) -> Result<Tensor> {
    let dims = x.dims();
    if dims.len() < 2 {
        candle_core::bail!("pixel_norm: expected [B, C, ...], got {:?}", dims)
    }
    let (b, c) = (dims[0], dims[1]);
    if let Some((scale, shift)) = modulation {
        if scale.dims() != [b, c] || shift.dims() != [b, c] {
            candle_core::bail!(
                "pixel_norm: modulation must be [{b}, {c}], got {:?} / {:?}",
                scale.dims(),
                shift.dims()
            )
        }
    }
    if x.device().is_cpu() && x.dtype() == DType::F32 {
        cpu(x, eps, modulation, silu)
    } else {
        generic(x, eps, modulation, silu)
    }
}

/// Candle ops, any device and dtype.
fn generic(
    x: &Tensor,
    eps: f64,
    modulation: Option<(&Tensor, &Tensor)>,
    silu: bool,
) -> Result<Tensor> {
    let rms = (x.sqr()?.mean_keepdim(1)? + eps)?.sqrt()?;
    let mut y = x.broadcast_div(&rms)?;
    if let Some((scale, shift)) = modulation {
        let mut shape = x.dims().to_vec();
        shape[2..].iter_mut().for_each(|d| *d = 1);
        let scale = (scale.to_dtype(x.dtype())?.reshape(shape.as_slice())? + 1.0)?;
        let shift = shift.to_dtype(x.dtype())?.reshape(shape.as_slice())?;
        y = y.broadcast_mul(&scale)?.broadcast_add(&shift)?;
    }
    if silu {
        y = y.silu()?;
    }
    Ok(y)
}

fn cpu(x: &Tensor, eps: f64, modulation: Option<(&Tensor, &Tensor)>, silu: bool) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    let (b, c) = (dims[0], dims[1]);
    let n: usize = dims[2..].iter().product();
    let x = x.contiguous()?;
    let (storage, layout) = x.storage_and_layout();
    let Storage::Cpu(CpuStorage::F32(data)) = &*storage else {
        candle_core::bail!("pixel_norm: expected f32 CPU storage")
    };
    let (o1, o2) = layout
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::msg("pixel_norm: input not contiguous"))?;
    let xs = &data[o1..o2];
    let (scale, shift) = match modulation {
        Some((s, t)) => (
            s.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?,
            t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?,
        ),
        None => (Vec::new(), Vec::new()),
    };
    let mut out = vec![0f32; xs.len()];
    let blocks = n.div_ceil(BLOCK);
    // Each task owns positions [p0, p1) of one batch item, for every channel: disjoint writes.
    let out_ptr = SendPtr(out.as_mut_ptr());
    let eps = eps as f32;
    (0..b * blocks).into_par_iter().for_each(|task| {
        let (bi, blk) = (task / blocks, task % blocks);
        let (p0, p1) = (blk * BLOCK, ((blk + 1) * BLOCK).min(n));
        let len = p1 - p0;
        let base = bi * c * n;
        let mut rms = vec![0f32; len];
        for ci in 0..c {
            let row = &xs[base + ci * n + p0..][..len];
            for (acc, &v) in rms.iter_mut().zip(row) {
                *acc += v * v;
            }
        }
        for r in rms.iter_mut() {
            *r = (*r / c as f32 + eps).sqrt();
        }
        for ci in 0..c {
            let row = &xs[base + ci * n + p0..][..len];
            // SAFETY: rows [p0, p1) of (bi, ci) belong to this task only; `out` outlives the loop.
            let dst = unsafe {
                std::slice::from_raw_parts_mut(out_ptr.get().add(base + ci * n + p0), len)
            };
            let (one_plus_scale, sh) = if scale.is_empty() {
                (None, 0.0)
            } else {
                (Some(1.0 + scale[bi * c + ci]), shift[bi * c + ci])
            };
            for ((d, &v), &r) in dst.iter_mut().zip(row).zip(&rms) {
                let mut y = v / r;
                if let Some(s) = one_plus_scale {
                    y = y * s + sh;
                }
                if silu {
                    y /= 1.0 + (-y).exp();
                }
                *d = y;
            }
        }
    });
    Tensor::from_vec(out, dims, &Device::Cpu)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_utils::max_abs_diff;

    #[test]
    fn fused_matches_candle_ops() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (2, 5, 3, 7, 9), &dev).unwrap();
        let scale = Tensor::randn(0f32, 0.3, (2, 5), &dev).unwrap();
        let shift = Tensor::randn(0f32, 0.3, (2, 5), &dev).unwrap();
        for modulation in [None, Some((&scale, &shift))] {
            for silu in [false, true] {
                let a = cpu(&x, 1e-8, modulation, silu).unwrap();
                let b = generic(&x, 1e-8, modulation, silu).unwrap();
                let d = max_abs_diff(&a, &b);
                assert!(
                    d < 1e-5,
                    "silu={silu} modulated={}: {d}",
                    modulation.is_some()
                );
            }
        }
        assert!(pixel_norm(
            &x,
            1e-8,
            Some((&scale, &scale.narrow(1, 0, 2).unwrap())),
            true
        )
        .is_err());
    }
}
