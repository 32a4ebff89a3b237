//! Softmax attention on the CPU in f32 without copies: per (batch, head, block of queries) one
//! GEMM for the scores, the scale, mask and softmax in place, one GEMM into the output.
//!
//! Candle's path (`model::transformer::attention`) transposes K, copies Q, V and the output into
//! head-major order, materialises up to 256 MiB of scores per chunk and runs the softmax as
//! several passes over them: ~24 GFLOP/s at LTX's shapes on two cores. Here the GEMMs read the
//! `[B, T, H, d]` activations through strides, the scores of one block stay in a per-task
//! scratch buffer of at most 128 rows × Tk floats, and blocks run in parallel with single-threaded
//! GEMMs.

use candle_core::{DType, Device, Layout, Result, Storage, Tensor};
use rayon::prelude::*;

use super::vexp::softmax_in_place;
use super::SendPtr;

/// Queries per task: enough rows for an efficient GEMM, a score block that stays in L2 (at most
/// `SCORE_BLOCK_FLOATS` scores, 16–128 rows).
const fn block_rows(keys: usize) -> usize {
    let rows = SCORE_BLOCK_FLOATS / keys;
    let rows = if rows < 16 {
        16
    } else if rows > 128 {
        128
    } else {
        rows
    };
    rows & !15
}

const SCORE_BLOCK_FLOATS: usize = 1 << 17;

/// Whether [`attention`] takes these tensors: f32 on the CPU, unit stride along the head dim.
pub fn usable(q: &Tensor, k: &Tensor, v: &Tensor, mask: Option<&Tensor>) -> bool {
    let f32_cpu = |t: &Tensor| t.device().is_cpu() && t.dtype() == DType::F32 && t.rank() == 4;
    let unit = |t: &Tensor| t.stride().last() == Some(&1) || t.dim(3).is_ok_and(|d| d == 1);
    f32_cpu(q)
        && f32_cpu(k)
        && f32_cpu(v)
        && unit(q)
        && unit(k)
        && unit(v)
        && mask.is_none_or(|m| m.device().is_cpu())
        && k.dim(2).is_ok_and(|tk| tk > 0)
}

/// Raw view of a 4-D f32 CPU tensor: its storage's pointer at the view's start and the
/// element strides of its dims.
struct View {
    ptr: SendPtr<f32>,
    strides: [usize; 4],
    // keeps the storage alive while the pointer is used
    _tensor: Tensor,
}

fn view(t: &Tensor) -> Result<View> {
    let (storage, layout): (_, &Layout) = t.storage_and_layout();
    let Storage::Cpu(candle_core::CpuStorage::F32(data)) = &*storage else {
        candle_core::bail!("ltx attention kernel: f32 CPU tensors only")
    };
    let s = layout.stride();
    let mut strides = [0; 4];
    strides.copy_from_slice(s);
    // a dim of size 1 may carry any stride: it is never stepped over
    for (d, st) in strides.iter_mut().enumerate() {
        if layout.dims()[d] == 1 {
            *st = 0;
        }
    }
    // SAFETY: the offset lies within `data`, which `_tensor` keeps alive; reads only.
    let ptr = unsafe { data.as_ptr().add(layout.start_offset()) as *mut f32 };
    Ok(View {
        ptr: SendPtr(ptr),
        strides,
        _tensor: t.clone(),
    })
}

/// `softmax(q·kᵀ·scale + mask)·v` for `q` `[B, H, Tq, d]` and `k`, `v` `[B, Hk, Tk, d]` (any
/// strides with unit stride along `d`; `H` a multiple of `Hk`, query head `h` reading key head
/// `h / (H / Hk)`), `mask` broadcastable to `[B, H, Tq, Tk]`. Returns a contiguous
/// `[B, Tq, H, d]` tensor. Callers check [`usable`] first.
pub fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: Option<&Tensor>,
    scale: f32,
) -> Result<Tensor> {
    let (b, h, tq, d) = q.dims4()?;
    let (_, hk, tk, _) = k.dims4()?;
    if k.dims4()? != (b, hk, tk, d) || v.dims4()? != (b, hk, tk, d) || hk == 0 || h % hk != 0 {
        candle_core::bail!(
            "ltx attention kernel: q {:?}, k {:?}, v {:?} do not fit",
            q.dims(),
            k.dims(),
            v.dims()
        )
    }
    let group = h / hk;
    let mask = match mask {
        Some(m) => {
            let m = m.to_dtype(DType::F32)?.broadcast_as((b, h, tq, tk))?;
            // the key dim is walked with unit stride
            let m = if m.stride()[3] == 1 || tk == 1 {
                m
            } else {
                m.contiguous()?
            };
            Some(view(&m)?)
        }
        None => None,
    };
    let (qv, kv, vv) = (view(q)?, view(k)?, view(v)?);
    let mut out = vec![0f32; b * tq * h * d];
    let out_ptr = SendPtr(out.as_mut_ptr());
    let block = block_rows(tk);
    let blocks = tq.div_ceil(block);
    let (ostride_t, ostride_b) = (h * d, tq * h * d);
    (0..b * h * blocks).into_par_iter().for_each_init(
        || vec![0f32; block * tk],
        |scores, job| {
            let (bh, blk) = (job / blocks, job % blocks);
            let (bi, hi) = (bh / h, bh % h);
            let q0 = blk * block;
            let rows = block.min(tq - q0);
            let kh = hi / group;
            // SAFETY: every address below lies inside the views' tensors (indices within their
            // dims, times their strides) or inside `out`; each job writes its own rows × head
            // slice of `out` (distinct (bi, hi, q0) per job) and its own scratch buffer.
            unsafe {
                let qp = qv
                    .ptr
                    .get()
                    .add(bi * qv.strides[0] + hi * qv.strides[1] + q0 * qv.strides[2]);
                let kp = kv.ptr.get().add(bi * kv.strides[0] + kh * kv.strides[1]);
                let vp = vv.ptr.get().add(bi * vv.strides[0] + kh * vv.strides[1]);
                let sp = scores.as_mut_ptr();
                // scores[r, j] = scale · Σ_i q[r, i] k[j, i]
                gemm::gemm(
                    rows,
                    tk,
                    d,
                    sp,
                    1,
                    tk as isize,
                    false,
                    qp,
                    1,
                    qv.strides[2] as isize,
                    kp,
                    kv.strides[2] as isize,
                    1,
                    0.0f32,
                    scale,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
                for r in 0..rows {
                    let row = std::slice::from_raw_parts_mut(sp.add(r * tk), tk);
                    if let Some(m) = &mask {
                        let mp = m
                            .ptr
                            .get()
                            .add(bi * m.strides[0] + hi * m.strides[1] + (q0 + r) * m.strides[2]);
                        if m.strides[3] == 0 {
                            let add = *mp;
                            row.iter_mut().for_each(|s| *s += add);
                        } else {
                            let mrow = std::slice::from_raw_parts(mp, tk);
                            row.iter_mut().zip(mrow).for_each(|(s, &a)| *s += a);
                        }
                    }
                    softmax_in_place(row);
                }
                let op = out_ptr.get().add(bi * ostride_b + q0 * ostride_t + hi * d);
                // out[r, i] = Σ_j p[r, j] v[j, i]
                gemm::gemm(
                    rows,
                    d,
                    tk,
                    op,
                    1,
                    ostride_t as isize,
                    false,
                    sp,
                    1,
                    tk as isize,
                    vp,
                    1,
                    vv.strides[2] as isize,
                    0.0f32,
                    1.0f32,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
            }
        },
    );
    Tensor::from_vec(out, (b, tq, h, d), &Device::Cpu)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        mask: Option<&Tensor>,
        scale: f64,
    ) -> Result<Tensor> {
        let mut s = (q.matmul(&k.transpose(2, 3)?)? * scale)?;
        if let Some(m) = mask {
            s = s.broadcast_add(m)?;
        }
        candle_nn::ops::softmax_last_dim(&s)?.matmul(v)
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> Result<f32> {
        (a - b)?.abs()?.max_all()?.to_scalar::<f32>()
    }

    #[test]
    fn matches_the_unfused_formula_on_strided_views_and_masks() -> Result<()> {
        let dev = Device::Cpu;
        // [B, T, H, d] activations viewed as [B, H, T, d], more queries than one block
        let (b, h, tk, d) = (2, 3, 11, 8);
        let tq = block_rows(tk) + 7;
        let q = Tensor::randn(0f32, 1., (b, tq, h, d), &dev)?.transpose(1, 2)?;
        let k = Tensor::randn(0f32, 1., (b, tk, h, d), &dev)?.transpose(1, 2)?;
        let v = Tensor::randn(0f32, 1., (b, tk, h, d), &dev)?.transpose(1, 2)?;
        let key_mask = Tensor::randn(0f32, 1., (b, 1, 1, tk), &dev)?;
        let full_mask = Tensor::randn(0f32, 1., (b, 1, tq, tk), &dev)?;
        // a fully masked row (finite minimum) is uniform, as in torch
        let min_mask = Tensor::full(f32::MIN, (1, 1, 1, tk), &dev)?;
        for mask in [None, Some(&key_mask), Some(&full_mask), Some(&min_mask)] {
            assert!(usable(&q, &k, &v, mask));
            let got = attention(&q, &k, &v, mask, 0.3)?.transpose(1, 2)?;
            let want = reference(
                &q.contiguous()?,
                &k.contiguous()?,
                &v.contiguous()?,
                mask,
                0.3,
            )?;
            assert!(max_diff(&got, &want)? < 1e-5);
        }
        Ok(())
    }

    #[test]
    fn grouped_key_heads_are_shared_by_their_query_heads() -> Result<()> {
        let dev = Device::Cpu;
        let q = Tensor::randn(0f32, 1., (1, 4, 5, 4), &dev)?;
        let k = Tensor::randn(0f32, 1., (1, 2, 6, 4), &dev)?;
        let v = Tensor::randn(0f32, 1., (1, 2, 6, 4), &dev)?;
        let got = attention(&q, &k, &v, None, 0.5)?.transpose(1, 2)?;
        let rep = |t: &Tensor| -> Result<Tensor> {
            Tensor::cat(
                &[
                    t.narrow(1, 0, 1)?,
                    t.narrow(1, 0, 1)?,
                    t.narrow(1, 1, 1)?,
                    t.narrow(1, 1, 1)?,
                ],
                1,
            )
        };
        let want = reference(&q, &rep(&k)?, &rep(&v)?, None, 0.5)?;
        assert!(max_diff(&got, &want)? < 1e-5);
        assert!(attention(&q, &k.narrow(1, 0, 1)?.repeat((1, 3, 1, 1))?, &v, None, 0.5).is_err());
        Ok(())
    }
}
