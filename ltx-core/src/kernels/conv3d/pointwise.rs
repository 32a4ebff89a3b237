//! The 1x1x1 path (CPU, f32, no padding, time stride 1): one plain GEMM per block of pixels, read
//! straight from the NCTHW input into the NCTHW output.

use candle_core::{Device, Result, Tensor};
use rayon::prelude::*;

use super::direct::gemm_acc;
use super::Geom;
use crate::kernels::SendPtr;

/// Pixels per job of the 1x1x1 path.
const POINTWISE_BLOCK: usize = 2048;

/// 1x1x1 kernel, no padding, time stride 1, f32: a plain GEMM per batch item straight on the NCTHW
/// input (column-major lhs `[F*H*W, Cin]`, no copy) into the NCTHW output, no intermediate buffer.
pub(super) fn run_pointwise(w: &[f32], bias: &[f32], x: &[f32], g: &Geom) -> Result<Tensor> {
    let (cin, cout) = (g.cin, g.cout);
    let q = g.fp * g.h * g.w; // pixels per batch item (fo == fp)
    debug_assert_eq!(x.len(), g.b * cin * q);
    let mut out = vec![0f32; g.b * cout * q];
    let mb = POINTWISE_BLOCK.min(q);
    let nblk = q.div_ceil(mb);
    let op = SendPtr(out.as_mut_ptr());
    let xp = SendPtr(x.as_ptr() as *mut f32);
    (0..g.b * nblk).into_par_iter().for_each(|j| {
        let (bi, blk) = (j / nblk, j % nblk);
        let q0 = blk * mb;
        let len = mb.min(q - q0);
        let dst = op.get();
        // SAFETY: job (bi, blk) owns output elements (bi, co, q0..q0+len) for every co: disjoint
        // across jobs, inside `out`; the lhs view (bi, c, q0..q0+len) and the weights are read only.
        unsafe {
            let d0 = dst.add(bi * cout * q + q0);
            for (co, &bv) in bias.iter().enumerate() {
                std::slice::from_raw_parts_mut(d0.add(co * q), len).fill(bv);
            }
            gemm_acc(
                (len, cout, cin),
                (d0, q),
                (xp.get().add(bi * cin * q + q0), q, 1),
                (w.as_ptr(), cin),
                gemm::Parallelism::None,
            );
        }
    });
    Tensor::from_vec(out, (g.b, cout, g.fo, g.ho, g.wo), &Device::Cpu)
}
