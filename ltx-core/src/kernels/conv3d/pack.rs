//! CPU weight packing: the PyTorch kernel reordered once at load time into the GEMM-ready,
//! reverse-tap-stacked f32 matrices of the fast path, and back into the stacked conv2d layout for the
//! generic path's CPU fallback.

use rayon::prelude::*;

/// GEMM-ready weights of the CPU fast path.
pub(super) struct CpuPack {
    /// `kh` column-major matrices `[kw*Cin, kt*Cout]` (stored `[kh][kt*Cout][kw*Cin]`): entry
    /// `(j*Cin + c, (kt-1-k)*Cout + co)` of matrix `i` is `weight[co, c, k, i, j]` (taps in reverse
    /// order, see the module docs in `mod.rs`). Column-major so that `gemm` reads it in place without repacking
    /// it on every call (it does not pack a unit-row-stride rhs for small `m`).
    pub(super) direct: Vec<f32>,
    /// `[Cout]`, zeros when there is no bias.
    pub(super) bias: Vec<f32>,
}

impl CpuPack {
    pub(super) fn new(
        wv: &[f32],
        bias: Vec<f32>,
        (cout, cin, kt, kh, kw): (usize, usize, usize, usize, usize),
    ) -> Self {
        let nt = kt * cout;
        let krows = kw * cin;
        let mut w = vec![0f32; kh * nt * krows];
        w.par_chunks_mut(krows).enumerate().for_each(|(ic, wrow)| {
            let (i, col) = (ic / nt, ic % nt);
            let (k, co) = (kt - 1 - col / cout, col % cout);
            for j in 0..kw {
                for c in 0..cin {
                    wrow[j * cin + c] = wv[(((co * cin + c) * kt + k) * kh + i) * kw + j];
                }
            }
        });
        Self { direct: w, bias }
    }

    /// The weights back in the stacked conv2d layout `[kt*Cout, Cin, kh, kw]` (row `k*Cout + co`),
    /// for the generic path's rare CPU uses (spatial stride > 1, f64 input).
    pub(super) fn stacked(
        &self,
        (cout, cin, kt, kh, kw): (usize, usize, usize, usize, usize),
    ) -> Vec<f32> {
        let w = &self.direct;
        let (nt, krows) = (kt * cout, kw * cin);
        let mut out = vec![0f32; nt * cin * kh * kw];
        for k in 0..kt {
            for co in 0..cout {
                let col = (kt - 1 - k) * cout + co;
                for c in 0..cin {
                    for i in 0..kh {
                        for j in 0..kw {
                            out[(((k * cout + co) * cin + c) * kh + i) * kw + j] =
                                w[(i * nt + col) * krows + j * cin + c];
                        }
                    }
                }
            }
        }
        out
    }
}
