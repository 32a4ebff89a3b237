//! Row-wise f32 kernels of the transformer block on the CPU: RMS norm, the AdaLN modulation
//! `x·(1 + scale) + shift` (optionally of the normed rows) and the gated residual
//! `x + y·gate(·mask)`, each one parallel pass over the rows.
//!
//! Candle runs each of these as several single-threaded elementwise kernels, each writing a
//! fresh full-size tensor (the norm alone is nine). The results here round every step as the
//! unfused formula does (no fused multiply-adds), so the modulation and the residual are
//! bit-identical to it; the norm's sum of squares runs over eight interleaved lanes.

use candle_core::{DType, Device, Layout, Result, Storage, Tensor};
use rayon::prelude::*;

use super::SendPtr;

/// Rows per parallel task at least (a row is one token's `dim` features).
const MIN_ROWS_PER_TASK: usize = 4;
const LANES: usize = 8;

/// A per-row parameter broadcast over `x`, read in place: where row `r` of `x` finds its values.
pub(super) struct RowParam {
    ptr: SendPtr<f32>,
    /// Strides of the row dims (all but the last) of the broadcast view.
    strides: Vec<usize>,
    dims: Vec<usize>,
    // keeps the storage alive while the pointer is used
    _tensor: Tensor,
}

impl RowParam {
    /// `p` broadcast to `shape` (copied once where its feature dim is not unit-strided).
    pub(super) fn new(p: &Tensor, shape: &[usize]) -> Result<Self> {
        let mut p = p.to_dtype(DType::F32)?.broadcast_as(shape)?;
        let last = shape.len() - 1;
        if p.stride()[last] != 1 && shape[last] > 1 {
            p = p.contiguous()?;
        }
        let (storage, layout): (_, &Layout) = p.storage_and_layout();
        let Storage::Cpu(candle_core::CpuStorage::F32(all)) = &*storage else {
            candle_core::bail!("ltx row kernel: f32 CPU parameters only")
        };
        // SAFETY: the view's start lies within `all`, which `_tensor` keeps alive; reads only.
        let ptr = SendPtr(unsafe { all.as_ptr().add(layout.start_offset()) } as *mut f32);
        let strides = layout.stride()[..last].to_vec();
        drop(storage);
        Ok(Self {
            ptr,
            strides,
            dims: shape[..last].to_vec(),
            _tensor: p,
        })
    }

    #[inline]
    pub(super) fn row(&self, mut r: usize, dim: usize) -> &[f32] {
        let mut off = 0;
        for (&n, &s) in self.dims.iter().zip(&self.strides).rev() {
            off += (r % n) * s;
            r /= n;
        }
        // SAFETY: `r` is a row of the broadcast shape, so `off .. off + dim` lies inside the view
        unsafe { std::slice::from_raw_parts(self.ptr.get().add(off), dim) }
    }
}

/// Runs `f` on the values of `x` in logical order (its storage where contiguous, else a copy).
fn with_values<R>(x: &Tensor, f: impl FnOnce(&[f32]) -> Result<R>) -> Result<R> {
    let x = x.contiguous()?;
    let (storage, layout): (_, &Layout) = x.storage_and_layout();
    let Storage::Cpu(candle_core::CpuStorage::F32(all)) = &*storage else {
        candle_core::bail!("ltx row kernel: f32 CPU tensors only")
    };
    let (start, end) = layout
        .contiguous_offsets()
        .expect("contiguous() gives a contiguous layout");
    f(&all[start..end])
}

/// Whether the row kernels take `x`: f32 on the CPU with at least one dim.
pub fn usable(x: &Tensor) -> bool {
    x.device().is_cpu() && x.dtype() == DType::F32 && x.rank() >= 1
}

/// A new tensor of `x`'s shape whose rows (along the last dim) are written by `f(row index, x's
/// row, output row)`, in parallel.
pub(super) fn map_rows(x: &Tensor, f: impl Fn(usize, &[f32], &mut [f32]) + Sync) -> Result<Tensor> {
    let width = x.dim(candle_core::D::Minus1)?;
    let mut out = vec![0f32; x.elem_count()];
    with_values(x, |src| {
        if width > 0 {
            out.par_chunks_mut(width)
                .zip(src.par_chunks(width))
                .enumerate()
                .with_min_len(MIN_ROWS_PER_TASK)
                .for_each(|(r, (o, s))| f(r, s, o));
        }
        Ok(())
    })?;
    Tensor::from_vec(out, x.shape(), &Device::Cpu)
}

/// `1 / √(mean(row²) + eps)`, the squares summed over eight interleaved lanes.
#[inline(always)]
fn inv_rms(row: &[f32], eps: f32) -> f32 {
    let mut acc = [0f32; LANES];
    let mut chunks = row.chunks_exact(LANES);
    for c in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += v * v;
        }
    }
    let mut sum = chunks.remainder().iter().fold(0f32, |s, &v| s + v * v);
    // pairwise over the lanes
    for w in [4, 2, 1] {
        for i in 0..w {
            acc[i] += acc[i + w];
        }
    }
    sum += acc[0];
    1.0 / (sum / row.len() as f32 + eps).sqrt()
}

/// `x / √(mean(x²) + eps) · weight` over the last dim (`torch.nn.functional.rms_norm`).
pub fn rms_norm(x: &Tensor, weight: Option<&Tensor>, eps: f64) -> Result<Tensor> {
    let dim = x.dim(candle_core::D::Minus1)?;
    let w = match weight {
        Some(w) => Some(w.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?),
        None => None,
    };
    if let Some(w) = w.as_ref().filter(|w| w.len() != dim) {
        candle_core::bail!("rms_norm: a weight of {} values for rows of {dim}", w.len())
    }
    map_rows(x, |_, s, o| {
        let inv = inv_rms(s, eps as f32);
        match &w {
            Some(w) => {
                for ((o, &v), &w) in o.iter_mut().zip(s).zip(w) {
                    *o = v * inv * w;
                }
            }
            None => {
                for (o, &v) in o.iter_mut().zip(s) {
                    *o = v * inv;
                }
            }
        }
    })
}

/// `x · (1 + scale) + shift` with `scale`, `shift` broadcastable to `x` along every dim but the
/// last; with `norm_eps`, of the RMS-normed rows of `x` instead (no weight).
pub fn modulate(
    x: &Tensor,
    scale: &Tensor,
    shift: &Tensor,
    norm_eps: Option<f64>,
) -> Result<Tensor> {
    let dim = x.dim(candle_core::D::Minus1)?;
    let sc = RowParam::new(scale, x.dims())?;
    let sh = RowParam::new(shift, x.dims())?;
    map_rows(x, |r, s, o| {
        let (scr, shr) = (sc.row(r, dim), sh.row(r, dim));
        let inv = norm_eps.map(|eps| inv_rms(s, eps as f32));
        for (((o, &v), &a), &b) in o.iter_mut().zip(s).zip(scr).zip(shr) {
            let v = match inv {
                Some(inv) => v * inv,
                None => v,
            };
            *o = v * (1.0 + a) + b;
        }
    })
}

/// `x + y · gate` (then `· mask`): `gate` broadcastable to `x` along every dim but the last,
/// `mask` one value per row (broadcastable to `x`'s shape with a last dim of 1).
pub fn gated_residual(
    x: &Tensor,
    y: &Tensor,
    gate: &Tensor,
    mask: Option<&Tensor>,
) -> Result<Tensor> {
    if x.dims() != y.dims() {
        candle_core::bail!("gated residual: {:?} plus {:?}", x.dims(), y.dims())
    }
    let dim = x.dim(candle_core::D::Minus1)?;
    let g = RowParam::new(gate, x.dims())?;
    let m = match mask {
        Some(m) => {
            let mut shape = x.dims().to_vec();
            shape[x.rank() - 1] = 1;
            Some(RowParam::new(m, &shape)?)
        }
        None => None,
    };
    with_values(y, |ys| {
        map_rows(x, |r, xr, o| {
            let yr = &ys[r * dim..(r + 1) * dim];
            let gr = g.row(r, dim);
            let rows = xr.iter().zip(yr).zip(gr);
            match &m {
                Some(m) => {
                    let m = m.row(r, 1)[0];
                    for (o, ((&x, &y), &g)) in o.iter_mut().zip(rows) {
                        *o = x + y * g * m;
                    }
                }
                None => {
                    for (o, ((&x, &y), &g)) in o.iter_mut().zip(rows) {
                        *o = x + y * g;
                    }
                }
            }
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn max_diff(a: &Tensor, b: &Tensor) -> Result<f32> {
        (a - b)?.abs()?.max_all()?.to_scalar::<f32>()
    }

    fn unfused_norm(x: &Tensor, eps: f64) -> Result<Tensor> {
        let inv = (x.sqr()?.mean_keepdim(candle_core::D::Minus1)? + eps)?
            .sqrt()?
            .recip()?;
        x.broadcast_mul(&inv)
    }

    fn unfused_modulate(x: &Tensor, scale: &Tensor, shift: &Tensor) -> Result<Tensor> {
        x.broadcast_mul(&(scale + 1.0)?)?.broadcast_add(shift)
    }

    #[test]
    fn norm_matches_the_unfused_formula() -> Result<()> {
        let dev = Device::Cpu;
        let x = (Tensor::randn(0f32, 1., (2, 5, 37), &dev)? * 3.0)?;
        let w = Tensor::randn(0f32, 1., 37, &dev)?;
        let want = unfused_norm(&x, 1e-6)?;
        assert!(max_diff(&rms_norm(&x, None, 1e-6)?, &want)? < 1e-6);
        let got = rms_norm(&x, Some(&w), 1e-6)?;
        assert!(max_diff(&got, &want.broadcast_mul(&w)?)? < 1e-5);
        // a strided input is read in logical order
        let xt = x.transpose(0, 1)?;
        let want_t = unfused_norm(&xt.contiguous()?, 1e-6)?;
        assert!(max_diff(&rms_norm(&xt, None, 1e-6)?, &want_t)? < 1e-6);
        assert!(rms_norm(&x, Some(&w.narrow(0, 0, 36)?), 1e-6).is_err());
        Ok(())
    }

    #[test]
    fn modulation_and_residual_are_bit_identical_to_the_formula() -> Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1., (2, 6, 16), &dev)?;
        let y = Tensor::randn(0f32, 1., (2, 6, 16), &dev)?;
        // per-sample ([B,1,D]) and per-token ([B,T,D]) parameters, and a strided per-token one
        let per_sample = Tensor::randn(0f32, 1., (2, 1, 16), &dev)?;
        let per_token = Tensor::randn(0f32, 1., (2, 6, 16), &dev)?;
        let strided = Tensor::randn(0f32, 1., (6, 2, 16), &dev)?.transpose(0, 1)?;
        for (sc, sh) in [
            (&per_sample, &per_token),
            (&per_token, &strided),
            (&strided, &per_sample),
        ] {
            let want = unfused_modulate(&x, sc, sh)?;
            assert_eq!(max_diff(&modulate(&x, sc, sh, None)?, &want)?, 0.0);
            let normed = unfused_modulate(&rms_norm(&x, None, 1e-6)?, sc, sh)?;
            assert_eq!(max_diff(&modulate(&x, sc, sh, Some(1e-6))?, &normed)?, 0.0);
            let want = (&x + y.broadcast_mul(sc)?)?;
            assert_eq!(max_diff(&gated_residual(&x, &y, sc, None)?, &want)?, 0.0);
            let mask = Tensor::new(&[1f32, 0.], &dev)?.reshape((2, 1, 1))?;
            let want = (&x + y.broadcast_mul(sc)?.broadcast_mul(&mask)?)?;
            assert_eq!(
                max_diff(&gated_residual(&x, &y, sc, Some(&mask))?, &want)?,
                0.0
            );
        }
        assert!(gated_residual(&x, &y.narrow(1, 0, 5)?, &per_sample, None).is_err());
        assert!(modulate(&x, &per_sample.narrow(2, 0, 8)?, &per_sample, None).is_err());
        Ok(())
    }
}
