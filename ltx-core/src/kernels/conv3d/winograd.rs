//! The Winograd F(2x2, 3x3) path of the CPU fast path for 3x3 spatial kernels: when to take it,
//! the weight transform `U = G g Gᵀ`, the input transform `V = Bᵀ d B`, and the convolution of one
//! chunk in the transformed domain with the output transform `Y = Aᵀ M A`.

use rayon::prelude::*;

use super::direct::{gemm_acc, tap_runs, Elem, Job, Jobs};
use super::plan::Chunk;
use super::{Geom, WINOGRAD_OVERRIDE};
use crate::kernels::SendPtr;

/// Output positions (B·F·H·W) from which a 3x3 layer call builds Winograd F(2x2, 3x3) weights:
/// the transform touches `16·Cin·kt·Cout` values once per call and saves ~40% of the GEMM work
/// per position, so below a few hundred positions (the deepest, 1024-channel VAE stages on small
/// latents) the direct implicit GEMM is faster.
const WINOGRAD_MIN_POSITIONS: usize = 512;
/// Winograd: 2x2 output tiles per job (GEMM rows).
const WINO_BLOCK_TILES: usize = 64;
/// Winograd: target size of one job's transformed accumulator (`[frames][Cout][16][tiles]` f32).
const WINO_ACC_BYTES: usize = 2 << 20;

/// The transformed weights when this call takes the Winograd path (3x3 spatial kernel, enough
/// output positions or forced by the test knob), else `None` (direct implicit GEMM).
/// `direct`: the packed weights of the direct path (`CpuPack::direct`).
pub(super) fn weights_for(g: &Geom, direct: &[f32]) -> Option<Vec<f32>> {
    let big_enough = g.b * g.fo * g.ho * g.wo >= WINOGRAD_MIN_POSITIONS;
    let use_winograd =
        g.kh == 3 && g.kw == 3 && WINOGRAD_OVERRIDE.with(|c| c.get()).unwrap_or(big_enough);
    use_winograd.then(|| transform_weights(direct, g.cin, g.kt * g.cout))
}

/// The `Direct` weights of a 3x3 spatial kernel transformed for Winograd F(2x2, 3x3):
/// `U = G g Gᵀ`, 16 column-major `[Cin, kt*Cout]` planes (same reversed-tap columns).
/// Built per call (it is 16/9 the size of the weights, too much to keep for a whole model).
fn transform_weights(w: &[f32], cin: usize, nt: usize) -> Vec<f32> {
    const G: [[f32; 3]; 4] = [
        [1.0, 0.0, 0.0],
        [0.5, 0.5, 0.5],
        [0.5, -0.5, 0.5],
        [0.0, 0.0, 1.0],
    ];
    let krows = 3 * cin;
    let plane = nt * cin;
    let mut u = vec![0f32; 16 * plane];
    let out = SendPtr(u.as_mut_ptr());
    // One task per block of columns; every loop below runs over `c`, contiguous in both the
    // Direct weights and U, so it vectorises. Same operation order as `(G g Gᵀ)[xi][nu]`
    // summed row by row: bit-identical to the scalar formula.
    let cols_per_task = (nt / (4 * rayon::current_num_threads().max(1))).max(1);
    (0..nt.div_ceil(cols_per_task))
        .into_par_iter()
        .for_each(|task| {
            let mut rows = vec![0f32; 12 * cin]; // rows[nu][a][c] = Σ_b G[nu][b] g[a][b]
            for col in task * cols_per_task..((task + 1) * cols_per_task).min(nt) {
                for a in 0..3 {
                    let g = &w[(a * nt + col) * krows..][..krows];
                    let (g0, rest) = g.split_at(cin);
                    let (g1, g2) = rest.split_at(cin);
                    for (nu, gn) in G.iter().enumerate() {
                        let r = &mut rows[(nu * 3 + a) * cin..][..cin];
                        for (((r, &x0), &x1), &x2) in r.iter_mut().zip(g0).zip(g1).zip(g2) {
                            *r = x0 * gn[0] + x1 * gn[1] + x2 * gn[2];
                        }
                    }
                }
                for (xi, gx) in G.iter().enumerate() {
                    for nu in 0..4 {
                        let r = &rows[nu * 3 * cin..][..3 * cin];
                        let (r0, rest) = r.split_at(cin);
                        let (r1, r2) = rest.split_at(cin);
                        // SAFETY: column `col` of plane `xi*4+nu` is written by this task only,
                        // and `u` outlives the parallel loop.
                        let dst = unsafe {
                            std::slice::from_raw_parts_mut(
                                out.get().add((xi * 4 + nu) * plane + col * cin),
                                cin,
                            )
                        };
                        for (((d, &y0), &y1), &y2) in dst.iter_mut().zip(r0).zip(r1).zip(r2) {
                            let mut acc = 0f32;
                            acc += gx[0] * y0;
                            acc += gx[1] * y1;
                            acc += gx[2] * y2;
                            *d = acc;
                        }
                    }
                }
            }
        });
    u
}

/// Winograd F(2x2, 3x3) version of `direct.rs`'s `conv_chunk` (3x3 spatial kernels): per 2x2 output
/// tile, the 4x4 input patch is transformed (`V = Bᵀ d B`), the 16 transformed planes are 16 GEMMs
/// against `U = G g Gᵀ` accumulated (shifted temporal sum included, as in the direct path) in the
/// transformed domain, and `Y = Aᵀ M A` gives the outputs.
///
/// # Safety
/// Same contract as `direct.rs`'s `conv_chunk`.
#[allow(clippy::needless_range_loop)] // index loops mirror the transform formulas
pub(super) unsafe fn conv_chunk<T: Elem>(
    xpad: &[f32],
    u: &[f32],
    bias_v: &[f32],
    g: &Geom,
    ch: &Chunk,
    out: SendPtr<T>,
    threads: usize,
) {
    let (cin, cout, wp, kt, ts) = (g.cin, g.cout, g.wp, g.kt, g.ts);
    let nt = kt * cout;
    let hpb = ch.rc + 2;
    let frame_len = hpb * wp;
    let (tr_n, tc_n) = (ch.rc.div_ceil(2), g.wo.div_ceil(2));
    let ntiles = tr_n * tc_n;
    let jobs = Jobs::new(
        g.b,
        ch.fc,
        ntiles,
        WINO_BLOCK_TILES,
        cout * 16 * 4,
        WINO_ACC_BYTES,
        threads,
    );
    let (tb, par) = (jobs.mb, jobs.par);
    let (fo, ho, wo) = (g.fo, g.ho, g.wo);
    let zeros = vec![0f32; cin];

    let job = |(acc, v, runs): &mut (Vec<f32>, Vec<f32>, Vec<(usize, usize)>), jb: Job| {
        let Job {
            bi,
            fa,
            fb,
            p0: t0,
            len: tlen,
        } = jb;
        let nf = fb - fa;
        acc.clear();
        acc.resize(nf * cout * 16 * tb, 0.0);
        if v.len() < 16 * tb * cin {
            v.resize(16 * tb * cin, 0.0);
        }
        for n in fa * ts..(fb - 1) * ts + kt {
            tap_runs(n, fa, fb, ts, kt, runs);
            if runs.is_empty() {
                continue;
            }
            // Input transform of this block's tiles of frame n: v = [16][tb][cin].
            let fbase = (bi * ch.nin + n) * frame_len;
            for t in 0..tlen {
                let (tr, tc) = ((t0 + t) / tc_n, (t0 + t) % tc_n);
                let mut d: [&[f32]; 16] = [&zeros[..]; 16];
                for r in 0..4 {
                    let row = 2 * tr + r;
                    if row >= hpb {
                        continue;
                    }
                    for s in 0..4 {
                        let col = 2 * tc + s;
                        if col < wp {
                            let o = (fbase + row * wp + col) * cin;
                            d[r * 4 + s] = &xpad[o..o + cin];
                        }
                    }
                }
                wino_input(&d, v, t * cin, tb * cin, cin);
            }
            for &(ka, kb) in runs.iter() {
                let slot = (n - kb) / ts - fa;
                let ncols = (kb - ka + 1) * cout;
                let col0 = (kt - 1 - kb) * cout;
                for xi in 0..16 {
                    // SAFETY: lhs = v plane xi ([tlen, cin], row stride cin) inside v; rhs = U plane xi
                    // columns col0..col0+ncols inside u; dst columns (slot*cout + c') * 16*tb + xi*tb,
                    // rows < tlen, inside acc (slot + ncols/cout <= nf).
                    gemm_acc(
                        (tlen, ncols, cin),
                        (
                            acc.as_mut_ptr().add(slot * cout * 16 * tb + xi * tb),
                            16 * tb,
                        ),
                        (v.as_ptr().add(xi * tb * cin), 1, cin),
                        (u.as_ptr().add((xi * nt + col0) * cin), cin),
                        par,
                    );
                }
            }
        }
        // Output transform + bias + scatter, 16 tiles at a time (vectorised over tiles).
        const L: usize = 16;
        for s in 0..nf {
            let f = ch.f0 + fa + s;
            for co in 0..cout {
                let m = &acc[(s * cout + co) * 16 * tb..][..16 * tb];
                let bias = bias_v[co];
                let obase = ((bi * cout + co) * fo + f) * ho * wo + ch.r0 * wo;
                for tc0 in (0..tlen).step_by(L) {
                    let mut y = [[0f32; L]; 4]; // y00, y01, y10, y11 per tile
                                                // (tb is a multiple of 16, so the full 16 lanes are inside `m`.)
                    let row =
                        |i: usize| -> &[f32; L] { m[i * tb + tc0..][..L].try_into().unwrap() };
                    for l in 0..L {
                        // Aᵀ = [[1, 1, 1, 0], [0, 1, -1, -1]] on rows, then on columns.
                        let mut sr = [[0f32; 4]; 2];
                        for nu in 0..4 {
                            let (a, b, c, d) =
                                (row(nu)[l], row(4 + nu)[l], row(8 + nu)[l], row(12 + nu)[l]);
                            sr[0][nu] = a + b + c;
                            sr[1][nu] = b - c - d;
                        }
                        y[0][l] = sr[0][0] + sr[0][1] + sr[0][2] + bias;
                        y[1][l] = sr[0][1] - sr[0][2] - sr[0][3] + bias;
                        y[2][l] = sr[1][0] + sr[1][1] + sr[1][2] + bias;
                        y[3][l] = sr[1][1] - sr[1][2] - sr[1][3] + bias;
                    }
                    for l in 0..L.min(tlen - tc0) {
                        let (tr, tc) = ((t0 + tc0 + l) / tc_n, (t0 + tc0 + l) % tc_n);
                        for a in 0..2 {
                            let h = 2 * tr + a;
                            if h >= ch.rc {
                                continue;
                            }
                            for bb in 0..2 {
                                let w = 2 * tc + bb;
                                if w < wo {
                                    // SAFETY: (bi, co, f, r0+h, w) is inside the output and written
                                    // by this job only (same contract as conv_chunk's epilogue).
                                    *out.get().add(obase + h * wo + w) =
                                        T::from_f32(y[a * 2 + bb][l]);
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    jobs.run(|| (Vec::new(), Vec::new(), Vec::new()), job);
}

/// `V = Bᵀ d B` for one tile, all channels: `d[r*4+s]` = input pixel (r, s) (Cin values);
/// writes plane `xi` at `v[xi*plane + off ..][..cin]`.
#[inline(never)]
fn wino_input(d: &[&[f32]; 16], v: &mut [f32], off: usize, plane: usize, cin: usize) {
    const L: usize = 16;
    let mut c0 = 0;
    while c0 < cin {
        let w = L.min(cin - c0);
        let mut x = [[0f32; L]; 16];
        if w == L {
            for (xr, dr) in x.iter_mut().zip(d.iter()) {
                *xr = dr[c0..c0 + L].try_into().unwrap();
            }
        } else {
            for (xr, dr) in x.iter_mut().zip(d.iter()) {
                xr[..w].copy_from_slice(&dr[c0..c0 + w]);
            }
        }
        // Bᵀ = [[1,0,-1,0],[0,1,1,0],[0,-1,1,0],[0,1,0,-1]] on rows...
        let mut y = [[0f32; L]; 16];
        for s in 0..4 {
            for l in 0..L {
                let (d0, d1, d2, d3) = (x[s][l], x[4 + s][l], x[8 + s][l], x[12 + s][l]);
                y[s][l] = d0 - d2;
                y[4 + s][l] = d1 + d2;
                y[8 + s][l] = d2 - d1;
                y[12 + s][l] = d1 - d3;
            }
        }
        // ...then on columns.
        for r in 0..4 {
            for l in 0..L {
                let (d0, d1, d2, d3) = (
                    y[r * 4][l],
                    y[r * 4 + 1][l],
                    y[r * 4 + 2][l],
                    y[r * 4 + 3][l],
                );
                x[r * 4][l] = d0 - d2;
                x[r * 4 + 1][l] = d1 + d2;
                x[r * 4 + 2][l] = d2 - d1;
                x[r * 4 + 3][l] = d1 - d3;
            }
        }
        for (xi, xr) in x.iter().enumerate() {
            if w == L {
                let dst: &mut [f32; L] = (&mut v[xi * plane + off + c0..][..L]).try_into().unwrap();
                *dst = *xr;
            } else {
                v[xi * plane + off + c0..][..w].copy_from_slice(&xr[..w]);
            }
        }
        c0 += w;
    }
}
