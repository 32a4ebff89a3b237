//! Exact 3-D convolution (PyTorch `nn.Conv3d` semantics) on top of Candle, which has no conv3d.
//!
//! Structure (project rule, DESIGN.md §3): one `forward` = ONE 2-D convolution over the whole video
//! (or over each memory-bounded chunk of it): time is folded into the batch (`[B*Fp, Cin, H, W]`), the
//! `kt` temporal taps are stacked on the output channels (kernel `[kt*Cout, Cin, kh, kw]`), and a shifted
//! temporal sum `out[t] = Σ_k y[t*ts + k][tap k]` plus bias finishes the job.
//!
//! Two implementations sit behind [`Conv3dWeights::forward`]:
//! * **Generic** (any device): Candle ops only — fold, explicit reflect/replicate padding, one
//!   `Tensor::conv2d` with the stacked kernel per chunk, `narrow`/`index_select` + add for the shifted sum.
//! * **CPU fast path** (CPU, spatial stride 1, f32/f16/bf16 input): an implicit-GEMM convolution on the
//!   `gemm` crate. The input chunk is copied once into a channels-last, spatially padded f32 buffer
//!   `[B, Nin, Hpb, Wp, Cin]`. On the padded grid, output pixel `p = h*Wp + w` of a frame reads input rows
//!   `p + i*Wp + j`; for a fixed kernel row `i` the `kw` taps are *adjacent* rows, so the matrix
//!   `A_i[p, j*Cin + c] = xpad[p + i*Wp + j, c]` is a plain strided view (row stride `Cin`, overlapping
//!   rows) — no im2col buffer. Each `(frame, kernel row)` is one GEMM `A_i · W_i` with `K = kw*Cin` and
//!   `N = (#taps)*Cout`, where `W_i` is the stacked `[kw*Cin, kt*Cout]` weight of row `i`. The taps are
//!   stacked in *reverse* order so that the GEMM's output columns, laid out with stride `Mb` in a per-job
//!   accumulator tile `[out frame][Cout][Mb]`, land exactly on the output frame each tap belongs to: the
//!   shifted temporal sum is done by the GEMM's accumulation (`read_dst`), in cache. The work is split in
//!   jobs (batch item × block of `Mb` grid pixels × window of output frames) run in parallel with rayon;
//!   each job's tile starts at the bias and is finally written (garbage pad columns dropped, cast to the
//!   input dtype) into the `[B, Cout, F, Ho, Wo]` output. (frame, tap) pairs whose output frame lies
//!   outside the chunk are never computed, so temporal chunking wastes no FLOPs.
//!
//!   3x3 spatial kernels (all of LTX's VAE) use Winograd F(2x2, 3x3) instead of the direct GEMMs, with
//!   the same chunks, jobs and reverse-stacked temporal taps: per 2x2 output tile the 4x4 padded input
//!   patch is transformed (`V = Bᵀ d B`, 16 planes `[tiles, Cin]`), each plane is one GEMM against the
//!   transformed stacked kernel `U = G g Gᵀ` (`[Cin, kt*Cout]`), accumulated per output frame in the
//!   transformed domain, and `Y = Aᵀ M A` + bias gives the outputs. 16 instead of 36 multiplies per
//!   tile per channel pair: ~2x faster than the direct GEMMs here; relative error stays ~1e-6 in f32
//!   (about 2x the direct GEMM's, well inside the 1e-5 parity budget).
//!
//!   1x1x1 kernels (f32, no padding, time stride 1) are plain GEMMs read straight from the NCTHW input.
//!
//! Memory: the only large intermediate is the padded input chunk, bounded by [`CHUNK_BUDGET_BYTES`]
//! (temporal chunks with a `kt - 1` frame halo, and row bands with a `kh - 1` row halo when a single
//! output frame is too big), plus per-thread tiles of a few MiB. The generic path chunks the same way,
//! counting the conv2d output and an im2col buffer (Metal materialises a full one) in its estimate.

use std::cell::Cell;

use candle_core::{bail, CpuStorage, DType, Device, Result, Storage, Tensor, WithDType};
use half::{bf16, f16};
use rayon::prelude::*;

use super::SendPtr;

/// How border values beyond the image are produced by the spatial padding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PadMode {
    Zeros,
    Reflect,
    Replicate,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv3dSpec {
    /// Copies of the first / last frame put in front of / behind the input (`CausalConv3d`'s
    /// time padding). The CPU fast path reads them in place instead of materialising a copy.
    pub time_pad: (usize, usize),
    pub time_stride: usize,
    pub spatial_stride: usize,
    pub spatial_pad: usize,
    pub pad_mode: PadMode,
}

/// Upper bound for the intermediate buffers of one chunk (padded input chunk, accumulator tiles;
/// generic path: folded input, conv2d output and im2col estimate).
pub const CHUNK_BUDGET_BYTES: usize = 256 << 20;

/// Output positions (B·F·H·W) from which a 3x3 layer call builds Winograd F(2x2, 3x3) weights:
/// the transform touches `16·Cin·kt·Cout` values once per call and saves ~40% of the GEMM work
/// per position, so below a few hundred positions (the deepest, 1024-channel VAE stages on small
/// latents) the direct implicit GEMM is faster.
const WINOGRAD_MIN_POSITIONS: usize = 512;

/// Target number of padded-grid pixels (GEMM rows) per job on the CPU fast path (tuned on Zen 4:
/// 192..512 are within noise; the tile `[Mb, K]` of packed input stays in L2).
const BLOCK_PIXELS: usize = 256;
/// Target size of one job's accumulator tile (`[frames][Cout][Mb]` f32).
const ACC_TILE_BYTES: usize = 1 << 20;
/// Winograd: 2x2 output tiles per job (GEMM rows).
const WINO_BLOCK_TILES: usize = 64;
/// Winograd: target size of one job's transformed accumulator (`[frames][Cout][16][tiles]` f32).
const WINO_ACC_BYTES: usize = 2 << 20;
/// Pixels per job of the 1x1x1 path.
const POINTWISE_BLOCK: usize = 2048;

thread_local! {
    static CONV2D_CALLS: Cell<usize> = const { Cell::new(0) };
    static FORCE_GENERIC: Cell<bool> = const { Cell::new(false) };
    static WINOGRAD_OVERRIDE: Cell<Option<bool>> = const { Cell::new(None) };
    static BUDGET_OVERRIDE: Cell<Option<usize>> = const { Cell::new(None) };
    /// (fc, rc, fo, ho) of the last chunk plan, for tests.
    #[cfg(test)]
    static LAST_PLAN: Cell<(usize, usize, usize, usize)> = const { Cell::new((0, 0, 0, 0)) };
}

/// Number of 2-D convolution calls issued by this thread so far (thread-local counter, for tests).
pub fn conv2d_call_count() -> usize {
    CONV2D_CALLS.with(|c| c.get())
}

fn count_conv2d() {
    CONV2D_CALLS.with(|c| c.set(c.get() + 1));
}

/// Test/bench knobs (thread-local, read by the thread calling `forward`). Not for production use.
#[doc(hidden)]
pub mod knobs {
    /// Route every `forward` of this thread through the generic (Candle ops) path.
    pub fn set_force_generic(on: bool) {
        super::FORCE_GENERIC.with(|c| c.set(on));
    }
    /// Force (`Some(true)`) or forbid (`Some(false)`) Winograd for 3x3 kernels in this thread's
    /// `forward` calls; `None` restores the size-based choice.
    pub fn set_winograd(choice: Option<bool>) {
        super::WINOGRAD_OVERRIDE.with(|c| c.set(choice));
    }
    /// Replace [`super::CHUNK_BUDGET_BYTES`] for this thread (`None` restores the default).
    pub fn set_chunk_budget(bytes: Option<usize>) {
        super::BUDGET_OVERRIDE.with(|c| c.set(bytes));
    }
}

fn chunk_budget() -> usize {
    BUDGET_OVERRIDE
        .with(|c| c.get())
        .unwrap_or(CHUNK_BUDGET_BYTES)
}

/// A Conv3d's weights, prepared once at load time from the PyTorch layout.
///
/// Memory: on CUDA/Metal one stacked copy of the kernel in the weight's dtype. On CPU the f32
/// representation the fast path needs (Winograd `U` = 16/9 × the f32 kernel for 3x3 spatial
/// kernels, otherwise the GEMM-packed f32 kernel, 1×) plus a clone of `weight` (shared storage, no
/// copy) from which the rare CPU generic fallback (spatial stride > 1, f64) builds its kernel per call.
pub struct Conv3dWeights {
    cout: usize,
    cin: usize,
    kt: usize,
    kh: usize,
    kw: usize,
    /// Non-CPU: `[kt*Cout, Cin, kh, kw]`, tap-major (row `k*Cout + co` = `weight[co, :, k]`).
    /// CPU: `None` — the packed weights are the only copy (the generic path rebuilds from them).
    kernel: Option<Tensor>,
    device: Device,
    bias: Option<Tensor>,
    /// GEMM-ready weights for the CPU fast path (CPU weights only).
    cpu: Option<CpuPack>,
}

struct CpuPack {
    /// `kh` column-major matrices `[kw*Cin, kt*Cout]` (stored `[kh][kt*Cout][kw*Cin]`): entry
    /// `(j*Cin + c, (kt-1-k)*Cout + co)` of matrix `i` is `weight[co, c, k, i, j]` (taps in reverse
    /// order, see the module docs). Column-major so that `gemm` reads it in place without repacking
    /// it on every call (it does not pack a unit-row-stride rhs for small `m`).
    direct: Vec<f32>,
    /// `[Cout]`, zeros when there is no bias.
    bias: Vec<f32>,
}

impl CpuPack {
    fn new(
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

    /// The `Direct` weights of a 3x3 spatial kernel transformed for Winograd F(2x2, 3x3):
    /// `U = G g Gᵀ`, 16 column-major `[Cin, kt*Cout]` planes (same reversed-tap columns).
    /// Built per call (it is 16/9 the size of the weights, too much to keep for a whole model).
    fn winograd(w: &[f32], cin: usize, nt: usize) -> Vec<f32> {
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

    /// The weights back in the stacked conv2d layout `[kt*Cout, Cin, kh, kw]` (row `k*Cout + co`),
    /// for the generic path's rare CPU uses (spatial stride > 1, f64 input).
    fn stacked(&self, (cout, cin, kt, kh, kw): (usize, usize, usize, usize, usize)) -> Vec<f32> {
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

/// Shapes of one forward call.
#[derive(Clone, Copy, Debug)]
struct Geom {
    b: usize,
    cin: usize,
    cout: usize,
    /// Frames after time padding.
    fp: usize,
    /// Frames of the input tensor, and how many padded frames precede its first one.
    fsrc: usize,
    tfront: usize,
    h: usize,
    w: usize,
    kt: usize,
    kh: usize,
    kw: usize,
    ts: usize,
    pad: usize,
    wp: usize,
    fo: usize,
    ho: usize,
    wo: usize,
}

impl Conv3dWeights {
    /// `weight`: [Cout, Cin, kt, kh, kw] (torch nn.Conv3d layout), `bias`: [Cout]. Any float dtype;
    /// device = where it will run.
    pub fn new(weight: &Tensor, bias: Option<&Tensor>) -> Result<Self> {
        let (cout, cin, kt, kh, kw) = weight.dims5()?;
        if cout == 0 || cin == 0 || kt == 0 || kh == 0 || kw == 0 {
            bail!("conv3d: empty weight {:?}", weight.shape())
        }
        if !weight.dtype().is_float() {
            bail!(
                "conv3d: weight dtype {:?} is not a float type",
                weight.dtype()
            )
        }
        if let Some(b) = bias {
            if b.dims() != [cout] {
                bail!("conv3d: bias shape {:?}, expected [{cout}]", b.shape())
            }
            if !b.device().same_device(weight.device()) {
                bail!("conv3d: bias and weight are on different devices")
            }
        }
        let dims = (cout, cin, kt, kh, kw);
        if weight.device().is_cpu() {
            let wv = weight
                .to_dtype(DType::F32)?
                .flatten_all()?
                .to_vec1::<f32>()?;
            let bias_v = match bias {
                Some(b) => b.to_dtype(DType::F32)?.to_vec1::<f32>()?,
                None => vec![0f32; cout],
            };
            let pack = CpuPack::new(&wv, bias_v, dims);
            Ok(Self {
                cout,
                cin,
                kt,
                kh,
                kw,
                kernel: None,
                device: Device::Cpu,
                bias: bias.cloned(),
                cpu: Some(pack),
            })
        } else {
            let stacked =
                weight
                    .permute((2, 0, 1, 3, 4))?
                    .contiguous()?
                    .reshape((kt * cout, cin, kh, kw))?;
            Ok(Self {
                cout,
                cin,
                kt,
                kh,
                kw,
                kernel: Some(stacked),
                device: weight.device().clone(),
                bias: bias.cloned(),
                cpu: None,
            })
        }
    }

    pub fn out_channels(&self) -> usize {
        self.cout
    }

    pub fn in_channels(&self) -> usize {
        self.cin
    }

    pub fn kernel(&self) -> (usize, usize, usize) {
        (self.kt, self.kh, self.kw)
    }

    /// x: [B, Cin, F, H, W]; `spec.time_pad` edge frames are repeated in front / behind (so
    /// `Fp = F + front + back`). Returns exactly `torch.nn.functional.conv3d(F.pad(x_time_padded,
    /// spatial pad per spec.pad_mode), weight, bias, stride=(time_stride, spatial_stride,
    /// spatial_stride))`: [B, Cout, (Fp-kt)/ts+1, Ho, Wo], in x's dtype.
    pub fn forward(&self, x: &Tensor, spec: Conv3dSpec) -> Result<Tensor> {
        let (b, cin, fsrc, h, w) = x.dims5()?;
        if fsrc == 0 {
            bail!("conv3d: input has no frames")
        }
        let (tfront, tback) = spec.time_pad;
        let fp = fsrc + tfront + tback;
        if cin != self.cin {
            bail!(
                "conv3d: input has {cin} channels, weight expects {}",
                self.cin
            )
        }
        if !x.dtype().is_float() {
            bail!("conv3d: input dtype {:?} is not a float type", x.dtype())
        }
        if !x.device().same_device(&self.device) {
            bail!("conv3d: input and weights are on different devices")
        }
        if spec.time_stride == 0 || spec.spatial_stride == 0 {
            bail!("conv3d: strides must be >= 1, got {spec:?}")
        }
        if b == 0 || h == 0 || w == 0 {
            bail!("conv3d: empty input {:?}", x.shape())
        }
        let pad = spec.spatial_pad;
        if spec.pad_mode == PadMode::Reflect && pad > 0 && (pad >= h || pad >= w) {
            bail!("conv3d: reflect padding {pad} needs H and W larger than it, got {h}x{w}")
        }
        let (hp, wp) = (h + 2 * pad, w + 2 * pad);
        if fp < self.kt || hp < self.kh || wp < self.kw {
            bail!(
                "conv3d: kernel {:?} larger than the padded input {fp}x{hp}x{wp}",
                self.kernel()
            )
        }
        let s = spec.spatial_stride;
        let g = Geom {
            b,
            cin,
            cout: self.cout,
            fp,
            fsrc,
            tfront,
            h,
            w,
            kt: self.kt,
            kh: self.kh,
            kw: self.kw,
            ts: spec.time_stride,
            pad,
            wp,
            fo: (fp - self.kt) / spec.time_stride + 1,
            ho: (hp - self.kh) / s + 1,
            wo: (wp - self.kw) / s + 1,
        };
        let fast = x.device().is_cpu()
            && s == 1
            && self.cpu.is_some()
            && matches!(x.dtype(), DType::F32 | DType::F16 | DType::BF16)
            && !FORCE_GENERIC.with(|c| c.get());
        if fast {
            self.forward_cpu(x, &g, spec.pad_mode)
        } else if spec.time_pad != (0, 0) {
            // The generic path pads in time with Candle ops, then runs unpadded.
            let xp = x.pad_with_same(2, tfront, tback)?;
            let g = Geom {
                fsrc: fp,
                tfront: 0,
                ..g
            };
            self.forward_generic(
                &xp,
                &g,
                Conv3dSpec {
                    time_pad: (0, 0),
                    ..spec
                },
            )
        } else {
            self.forward_generic(x, &g, spec)
        }
    }

    // ------------------------------------------------------------------------------------------
    // Generic path (Candle ops, any device).
    // ------------------------------------------------------------------------------------------

    fn forward_generic(&self, x: &Tensor, g: &Geom, spec: Conv3dSpec) -> Result<Tensor> {
        let dtype = x.dtype();
        let work = match (x.device().is_cpu(), dtype) {
            (true, DType::F64) => DType::F64,
            (true, _) => DType::F32, // Candle's CPU conv2d has no bf16 kernel
            (false, dt) => dt,
        };
        let esz = work.size_in_bytes();
        let (s, kt, kh, kw, ts) = (spec.spatial_stride, g.kt, g.kh, g.kw, g.ts);
        let hp = g.h + 2 * g.pad;
        let bytes = |fc: usize, rc: usize| {
            let nin = (fc - 1) * ts + kt;
            let hin = ((rc - 1) * s + kh).min(hp);
            let per_frame = g.cin * hin * g.wp + (kt * g.cout + g.cin * kh * kw) * rc * g.wo;
            g.b * nin * per_frame * esz
        };
        let (fc, rc) = plan_chunks(g.fo, g.ho, chunk_budget(), bytes);
        let banded = rc < g.ho;
        let kernel = match (&self.kernel, &self.cpu) {
            (Some(k), _) => k.to_dtype(work)?,
            // CPU: rebuild the stacked kernel from the packed weights (rare fallback path).
            (None, Some(pack)) => {
                let dims = (g.cout, g.cin, kt, kh, kw);
                Tensor::from_vec(
                    pack.stacked(dims),
                    (kt * g.cout, g.cin, kh, kw),
                    &Device::Cpu,
                )?
                .to_dtype(work)?
            }
            (None, None) => bail!("conv3d: no weights prepared for this device"),
        };
        let mut pieces = Vec::with_capacity(g.fo.div_ceil(fc));
        for f0 in (0..g.fo).step_by(fc) {
            let fcn = fc.min(g.fo - f0);
            let nin = (fcn - 1) * ts + kt;
            // [B, Cin, nin, H, W] -> [B*nin, Cin, H, W]
            let xc = x
                .narrow(2, f0 * ts, nin)?
                .to_dtype(work)?
                .permute((0, 2, 1, 3, 4))?
                .contiguous()?
                .reshape((g.b * nin, g.cin, g.h, g.w))?;
            let explicit = g.pad > 0 && (spec.pad_mode != PadMode::Zeros || banded);
            let (xc, conv_pad) = if explicit {
                (pad_2d(&xc, g.pad, spec.pad_mode)?, 0)
            } else {
                (xc, g.pad)
            };
            let mut bands = Vec::with_capacity(g.ho.div_ceil(rc));
            for r0 in (0..g.ho).step_by(rc) {
                let rcn = rc.min(g.ho - r0);
                let xb = if banded {
                    xc.narrow(2, r0 * s, (rcn - 1) * s + kh)?
                } else {
                    xc.clone()
                };
                count_conv2d();
                let y = xb.conv2d(&kernel, conv_pad, s, 1, 1)?; // [B*nin, kt*Cout, rcn, Wo]
                bands.push(self.temporal_sum(&y, g.b, nin, fcn, ts)?);
            }
            pieces.push(if bands.len() == 1 {
                bands.pop().unwrap()
            } else {
                Tensor::cat(&bands, 3)?
            });
        }
        // [B, F, Cout, Ho, Wo] -> [B, Cout, F, Ho, Wo]
        let y = if pieces.len() == 1 {
            pieces.pop().unwrap()
        } else {
            Tensor::cat(&pieces, 1)?
        };
        let mut y = y.permute((0, 2, 1, 3, 4))?;
        if let Some(bias) = &self.bias {
            y = y.broadcast_add(&bias.to_dtype(work)?.reshape((1, g.cout, 1, 1, 1))?)?;
        }
        y.contiguous()?.to_dtype(dtype)
    }

    /// `y`: [B*nin, kt*Cout, H', W'] (tap-major channels) -> Σ_k y[f*ts + k][tap k]: [B, fc, Cout, H', W'].
    fn temporal_sum(
        &self,
        y: &Tensor,
        b: usize,
        nin: usize,
        fc: usize,
        ts: usize,
    ) -> Result<Tensor> {
        let (_, _, hh, ww) = y.dims4()?;
        let y = y.reshape((b, nin, self.kt, self.cout, hh, ww))?;
        let mut acc: Option<Tensor> = None;
        for k in 0..self.kt {
            let frames = if ts == 1 {
                y.narrow(1, k, fc)?
            } else {
                let idx: Vec<u32> = (0..fc).map(|f| (f * ts + k) as u32).collect();
                let idx = Tensor::new(idx.as_slice(), y.device())?;
                y.index_select(&idx, 1)?
            };
            let part = frames.narrow(2, k, 1)?.squeeze(2)?;
            acc = Some(match acc {
                None => part,
                Some(a) => (a + part)?,
            });
        }
        Ok(acc.expect("kt >= 1"))
    }

    // ------------------------------------------------------------------------------------------
    // CPU fast path (implicit GEMM).
    // ------------------------------------------------------------------------------------------

    fn forward_cpu(&self, x: &Tensor, g: &Geom, mode: PadMode) -> Result<Tensor> {
        let pack = self.cpu.as_ref().expect("checked by the caller");
        let x = if x.is_contiguous() {
            x.clone()
        } else {
            x.contiguous()?
        };
        let (storage, layout) = x.storage_and_layout();
        let (o1, o2) = match layout.contiguous_offsets() {
            Some(o) => o,
            None => bail!("conv3d: input not contiguous after contiguous()"),
        };
        let Storage::Cpu(cpu) = &*storage else {
            bail!("conv3d: CPU fast path got a non-CPU tensor")
        };
        match cpu {
            CpuStorage::F32(v)
                if self.kernel() == (1, 1, 1) && g.pad == 0 && g.ts == 1 && g.fp == g.fsrc =>
            {
                count_conv2d();
                run_pointwise(&pack.direct, &pack.bias, &v[o1..o2], g)
            }
            CpuStorage::F32(v) => self.run_cpu::<f32>(pack, &v[o1..o2], g, mode),
            CpuStorage::F16(v) => self.run_cpu::<f16>(pack, &v[o1..o2], g, mode),
            CpuStorage::BF16(v) => self.run_cpu::<bf16>(pack, &v[o1..o2], g, mode),
            _ => bail!(
                "conv3d: unsupported dtype {:?} on the CPU fast path",
                x.dtype()
            ),
        }
    }

    fn run_cpu<T: Elem>(&self, pack: &CpuPack, x: &[T], g: &Geom, mode: PadMode) -> Result<Tensor> {
        debug_assert_eq!(x.len(), g.b * g.cin * g.fsrc * g.h * g.w);
        let out_len = g.b * g.cout * g.fo * g.ho * g.wo;
        let mut out: Vec<T> = vec![T::from_f32(0.0); out_len];
        let threads = rayon::current_num_threads().max(1);
        let budget = chunk_budget();
        let (kt, kh, ts) = (g.kt, g.kh, g.ts);
        let bytes = |fc: usize, rc: usize| {
            g.b * ((fc - 1) * ts + kt) * (rc + kh - 1) * g.wp * g.cin * std::mem::size_of::<f32>()
        };
        let (fc, rc) = plan_chunks(g.fo, g.ho, budget, bytes);
        // One allocation for the largest chunk, reused: every chunk overwrites its whole prefix.
        let mut xpad = vec![0f32; g.b * ((fc - 1) * ts + kt) * (rc + kh - 1) * g.wp * g.cin];
        let out_ptr = SendPtr(out.as_mut_ptr());
        let direct = &pack.direct;
        let big_enough = g.b * g.fo * g.ho * g.wo >= WINOGRAD_MIN_POSITIONS;
        let use_winograd =
            g.kh == 3 && g.kw == 3 && WINOGRAD_OVERRIDE.with(|c| c.get()).unwrap_or(big_enough);
        let winograd = use_winograd.then(|| CpuPack::winograd(direct, g.cin, g.kt * g.cout));
        for f0 in (0..g.fo).step_by(fc) {
            let fcn = fc.min(g.fo - f0);
            for r0 in (0..g.ho).step_by(rc) {
                let rcn = rc.min(g.ho - r0);
                let ch = Chunk {
                    f0,
                    fc: fcn,
                    nin: (fcn - 1) * ts + kt,
                    r0,
                    rc: rcn,
                };
                let len = g.b * ch.nin * (rcn + kh - 1) * g.wp * g.cin;
                let buf = &mut xpad[..len];
                count_conv2d();
                fill_padded(buf, x, g, &ch, mode);
                // SAFETY: `out` has B*Cout*Fo*Ho*Wo elements and outlives the call; chunks cover
                // disjoint (frame, row) ranges and the jobs inside one chunk disjoint (b, frame, pixel)
                // sets, so no element is written twice concurrently and nothing reads `out` meanwhile.
                match &winograd {
                    None => unsafe {
                        conv_chunk(buf, direct, &pack.bias, g, &ch, out_ptr, threads)
                    },
                    Some(u) => unsafe {
                        conv_chunk_winograd(buf, u, &pack.bias, g, &ch, out_ptr, threads)
                    },
                }
            }
        }
        Tensor::from_vec(out, (g.b, g.cout, g.fo, g.ho, g.wo), &Device::Cpu)
    }
}

/// 1x1x1 kernel, no padding, time stride 1, f32: a plain GEMM per batch item straight on the NCTHW
/// input (column-major lhs `[F*H*W, Cin]`, no copy) into the NCTHW output, no intermediate buffer.
fn run_pointwise(w: &[f32], bias: &[f32], x: &[f32], g: &Geom) -> Result<Tensor> {
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
            gemm::gemm(
                len,
                cout,
                cin,
                d0,
                q as isize,
                1,
                true,
                xp.get().add(bi * cin * q + q0),
                q as isize,
                1,
                w.as_ptr(),
                cin as isize,
                1,
                1.0f32,
                1.0f32,
                false,
                false,
                false,
                gemm::Parallelism::None,
            );
        }
    });
    Tensor::from_vec(out, (g.b, cout, g.fo, g.ho, g.wo), &Device::Cpu)
}

/// Pick (output frames, output rows) per chunk: full rows and as many frames as fit the budget,
/// else one frame and as many rows as fit (at least one), then balance the chunk sizes.
fn plan_chunks(
    fo: usize,
    ho: usize,
    budget: usize,
    bytes: impl Fn(usize, usize) -> usize,
) -> (usize, usize) {
    let plan = plan_chunks_inner(fo, ho, budget, bytes);
    #[cfg(test)]
    LAST_PLAN.with(|c| c.set((plan.0, plan.1, fo, ho)));
    plan
}

fn plan_chunks_inner(
    fo: usize,
    ho: usize,
    budget: usize,
    bytes: impl Fn(usize, usize) -> usize,
) -> (usize, usize) {
    let balance = |total: usize, max: usize| {
        let n = total.div_ceil(max.max(1));
        total.div_ceil(n)
    };
    if bytes(1, ho) <= budget {
        // bytes() is increasing in fc: binary search the largest fitting fc.
        let (mut lo, mut hi) = (1usize, fo);
        while lo < hi {
            let mid = (lo + hi).div_ceil(2);
            if bytes(mid, ho) <= budget {
                lo = mid
            } else {
                hi = mid - 1
            }
        }
        (balance(fo, lo), ho)
    } else {
        let (mut lo, mut hi) = (1usize, ho);
        while lo < hi {
            let mid = (lo + hi).div_ceil(2);
            if bytes(1, mid) <= budget {
                lo = mid
            } else {
                hi = mid - 1
            }
        }
        (1, balance(ho, lo))
    }
}

/// Reflect / replicate / zero padding of the last two dims of `[N, C, H, W]` (Candle ops).
fn pad_2d(x: &Tensor, pad: usize, mode: PadMode) -> Result<Tensor> {
    let mut x = x.clone();
    for dim in [2usize, 3] {
        let len = x.dim(dim)?;
        x = match mode {
            PadMode::Zeros => x.pad_with_zeros(dim, pad, pad)?,
            PadMode::Replicate => x.pad_with_same(dim, pad, pad)?,
            PadMode::Reflect => {
                if pad >= len {
                    bail!("reflect padding {pad} needs a dimension larger than {len}")
                }
                // left: x[pad], ..., x[1]; right: x[len-2], ..., x[len-1-pad]
                let left: Vec<u32> = (1..=pad).rev().map(|i| i as u32).collect();
                let right: Vec<u32> = (0..pad).map(|i| (len - 2 - i) as u32).collect();
                let l = x.index_select(&Tensor::new(left.as_slice(), x.device())?, dim)?;
                let r = x.index_select(&Tensor::new(right.as_slice(), x.device())?, dim)?;
                Tensor::cat(&[&l, &x, &r], dim)?
            }
        };
    }
    Ok(x)
}

/// Input element types of the fast path (converted to f32 while packing, back when writing).
trait Elem: WithDType + Copy + Send + Sync {
    fn to_f32(self) -> f32;
    fn from_f32(v: f32) -> Self;
}

impl Elem for f32 {
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self
    }
    #[inline(always)]
    fn from_f32(v: f32) -> Self {
        v
    }
}

impl Elem for f16 {
    #[inline(always)]
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }
    #[inline(always)]
    fn from_f32(v: f32) -> Self {
        f16::from_f32(v)
    }
}

impl Elem for bf16 {
    #[inline(always)]
    fn to_f32(self) -> f32 {
        bf16::to_f32(self)
    }
    #[inline(always)]
    fn from_f32(v: f32) -> Self {
        bf16::from_f32(v)
    }
}

/// One chunk of the CPU fast path: output frames `[f0, f0+fc)` (input frames `[f0*ts, f0*ts+nin)`)
/// and output rows `[r0, r0+rc)`, all batch items.
#[derive(Clone, Copy, Debug)]
struct Chunk {
    f0: usize,
    fc: usize,
    nin: usize,
    r0: usize,
    rc: usize,
}

/// Source index of padded coordinate `r` (0-based on the padded axis of length `n + 2*pad`), or `None`
/// for a zero.
#[inline]
fn src_index(r: usize, pad: usize, n: usize, mode: PadMode) -> Option<usize> {
    let i = r as isize - pad as isize;
    let n = n as isize;
    if (0..n).contains(&i) {
        return Some(i as usize);
    }
    match mode {
        PadMode::Zeros => None,
        PadMode::Replicate => Some(i.clamp(0, n - 1) as usize),
        // torch reflect (no edge repeat); pad < n is checked up front.
        PadMode::Reflect => Some(if i < 0 { -i } else { 2 * (n - 1) - i } as usize),
    }
}

/// Fill `buf` = `[B, nin, rc+kh-1, Wp, Cin]` f32 with the padded, channels-last input of `ch`.
/// Every element of `buf` is written.
fn fill_padded<T: Elem>(buf: &mut [f32], x: &[T], g: &Geom, ch: &Chunk, mode: PadMode) {
    let (cin, wp, pad) = (g.cin, g.wp, g.pad);
    let row_len = wp * cin;
    let hpb = ch.rc + g.kh - 1;
    let plane = g.h * g.w;
    let cstride = g.fsrc * plane; // distance between channels in x
    const CB: usize = 16;
    buf.par_chunks_mut(row_len)
        .enumerate()
        .for_each(|(ri, row)| {
            let hb = ri % hpb;
            let n = (ri / hpb) % ch.nin;
            let bi = ri / (hpb * ch.nin);
            let Some(hs) = src_index(ch.r0 + hb, pad, g.h, mode) else {
                row.fill(0.0);
                return;
            };
            // Padded frame -> source frame: edge frames repeat (time padding done in place).
            let fsrc = (ch.f0 * g.ts + n).saturating_sub(g.tfront).min(g.fsrc - 1);
            let base = bi * g.cin * cstride + fsrc * plane + hs * g.w;
            for c0 in (0..cin).step_by(CB) {
                let c1 = (c0 + CB).min(cin);
                for wi in 0..g.w {
                    let d = &mut row[(pad + wi) * cin..(pad + wi) * cin + cin];
                    for c in c0..c1 {
                        d[c] = x[base + c * cstride + wi].to_f32();
                    }
                }
            }
            for wpi in (0..pad).chain(pad + g.w..wp) {
                match src_index(wpi, pad, g.w, mode) {
                    None => row[wpi * cin..(wpi + 1) * cin].fill(0.0),
                    Some(ws) => row.copy_within((pad + ws) * cin..(pad + ws + 1) * cin, wpi * cin),
                }
            }
        });
}

/// Runs of valid taps `(ka, kb)` (inclusive) of input frame `n` for the output frames `[fa, fb)`:
/// tap `k` feeds output `(n - k) / ts` when `(n - k) % ts == 0`. With `ts == 1` it is one run.
fn tap_runs(n: usize, fa: usize, fb: usize, ts: usize, kt: usize, runs: &mut Vec<(usize, usize)>) {
    runs.clear();
    for k in 0..kt.min(n + 1) {
        let d = n - k;
        if d % ts != 0 || d / ts < fa || d / ts >= fb {
            continue;
        }
        match runs.last_mut() {
            Some(last) if ts == 1 && last.1 + 1 == k => last.1 = k,
            _ => runs.push((k, k)),
        }
    }
}

/// Convolve one chunk whose padded input is in `xpad`, writing its outputs into `out`.
///
/// # Safety
/// `out` must point to a live `[B, Cout, Fo, Ho, Wo]` buffer of `g`'s shape that nobody else reads or
/// writes during the call except other `conv_chunk` calls for chunks with disjoint (frame, row) ranges.
unsafe fn conv_chunk<T: Elem>(
    xpad: &[f32],
    w: &[f32],
    bias: &[f32],
    g: &Geom,
    ch: &Chunk,
    out: SendPtr<T>,
    threads: usize,
) {
    let (cin, cout, wp, kt, kh, kw, ts) = (g.cin, g.cout, g.wp, g.kt, g.kh, g.kw, g.ts);
    let krows = kw * cin;
    let nt = kt * cout;
    let hpb = ch.rc + kh - 1;
    let frame_len = hpb * wp; // padded pixels per frame in xpad
                              // GEMM rows per frame: grid pixels up to the last valid output pixel. The largest row read is
                              // (rc-1)*wp + wo-1 + (kh-1)*wp + kw-1 = hpb*wp - 1, i.e. it stays inside the frame.
    let mframe = (ch.rc - 1) * wp + g.wo;
    let nblk = mframe.div_ceil(BLOCK_PIXELS);
    let mb = mframe.div_ceil(nblk).next_multiple_of(16);
    let nblk = mframe.div_ceil(mb);
    let wf_max = (ACC_TILE_BYTES / (cout * mb * 4)).clamp(1, ch.fc);
    let nwin = ch.fc.div_ceil(wf_max);
    let wf = ch.fc.div_ceil(nwin);
    let njobs = g.b * nblk * nwin;
    let par = if njobs >= 2 * threads {
        gemm::Parallelism::None
    } else {
        gemm::Parallelism::Rayon(threads)
    };
    let xp = SendPtr(xpad.as_ptr() as *mut f32);
    let (fo, ho, wo) = (g.fo, g.ho, g.wo);

    let job = |(acc, runs): &mut (Vec<f32>, Vec<(usize, usize)>), j: usize| {
        let win = j % nwin;
        let blk = (j / nwin) % nblk;
        let bi = j / (nwin * nblk);
        let fa = win * wf;
        let fb = (fa + wf).min(ch.fc);
        let nf = fb - fa;
        let p0 = blk * mb;
        let mlen = mb.min(mframe - p0);
        if acc.len() < nf * cout * mb {
            acc.resize(nf * cout * mb, 0.0);
        }
        for s in 0..nf {
            for co in 0..cout {
                acc[(s * cout + co) * mb..][..mlen].fill(bias[co]);
            }
        }
        let accp = acc.as_mut_ptr();
        for n in fa * ts..(fb - 1) * ts + kt {
            tap_runs(n, fa, fb, ts, kt, runs);
            for &(ka, kb) in runs.iter() {
                // Reverse-stacked columns (kt-1-kb)*Cout.. map with stride mb onto output slots
                // (n-kb)/ts - fa, (n-kb)/ts - fa + 1, ... (only one tap per run when ts > 1).
                let slot = (n - kb) / ts - fa;
                let ncols = (kb - ka + 1) * cout;
                let col0 = (kt - 1 - kb) * cout;
                for i in 0..kh {
                    let lhs_off = ((bi * ch.nin + n) * frame_len + p0 + i * wp) * cin;
                    // SAFETY: lhs rows p0+i*wp .. p0+i*wp+mlen-1 of frame n, each read over kw*cin
                    // elements, stay inside the frame (see `mframe`), which lies inside `xpad`;
                    // the rhs block lies inside w (row i, columns col0..col0+ncols); the dst
                    // tile columns slot*cout.. slot*cout+ncols < nf*cout, rows < mlen <= mb,
                    // inside `acc`, which only this job touches.
                    gemm::gemm(
                        mlen,
                        ncols,
                        krows,
                        accp.add(slot * cout * mb),
                        mb as isize,
                        1,
                        true,
                        xp.get().add(lhs_off),
                        1,
                        cin as isize,
                        w.as_ptr().add((i * nt + col0) * krows),
                        krows as isize,
                        1,
                        1.0f32,
                        1.0f32,
                        false,
                        false,
                        false,
                        par,
                    );
                }
            }
        }
        // Epilogue: drop garbage columns (w >= wo), cast, scatter into [B, Cout, Fo, Ho, Wo].
        for s in 0..nf {
            let f = ch.f0 + fa + s;
            for co in 0..cout {
                let src = &acc[(s * cout + co) * mb..][..mlen];
                let obase = ((bi * cout + co) * fo + f) * ho * wo + ch.r0 * wo;
                let mut p = p0;
                while p < p0 + mlen {
                    let hrow = p / wp;
                    let w0 = p - hrow * wp;
                    let row_end = ((hrow + 1) * wp).min(p0 + mlen);
                    let w1 = (row_end - hrow * wp).min(wo);
                    for wi in w0..w1 {
                        // SAFETY: (bi, co, f, r0+hrow, wi) is inside the output (hrow < rc, wi < wo,
                        // f < fo) and is written by this job only (see the caller's contract).
                        *out.get().add(obase + hrow * wo + wi) =
                            T::from_f32(src[hrow * wp + wi - p0]);
                    }
                    p = row_end;
                }
            }
        }
    };
    if let gemm::Parallelism::None = par {
        (0..njobs)
            .into_par_iter()
            .for_each_init(|| (Vec::new(), Vec::new()), job);
    } else {
        let mut state = (Vec::new(), Vec::new());
        (0..njobs).for_each(|j| job(&mut state, j));
    }
}

/// Winograd F(2x2, 3x3) version of [`conv_chunk`] (3x3 spatial kernels): per 2x2 output tile, the
/// 4x4 input patch is transformed (`V = Bᵀ d B`), the 16 transformed planes are 16 GEMMs against
/// `U = G g Gᵀ` accumulated (shifted temporal sum included, as in `conv_chunk`) in the transformed
/// domain, and `Y = Aᵀ M A` gives the outputs.
///
/// # Safety
/// Same contract as [`conv_chunk`].
#[allow(clippy::needless_range_loop)] // index loops mirror the transform formulas
unsafe fn conv_chunk_winograd<T: Elem>(
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
    let nblk = ntiles.div_ceil(WINO_BLOCK_TILES);
    let tb = ntiles.div_ceil(nblk).next_multiple_of(16);
    let nblk = ntiles.div_ceil(tb);
    let wf_max = (WINO_ACC_BYTES / (cout * 16 * tb * 4)).clamp(1, ch.fc);
    let nwin = ch.fc.div_ceil(wf_max);
    let wf = ch.fc.div_ceil(nwin);
    let njobs = g.b * nblk * nwin;
    let par = if njobs >= 2 * threads {
        gemm::Parallelism::None
    } else {
        gemm::Parallelism::Rayon(threads)
    };
    let (fo, ho, wo) = (g.fo, g.ho, g.wo);
    let zeros = vec![0f32; cin];

    let job = |(acc, v, runs): &mut (Vec<f32>, Vec<f32>, Vec<(usize, usize)>), j: usize| {
        let win = j % nwin;
        let blk = (j / nwin) % nblk;
        let bi = j / (nwin * nblk);
        let fa = win * wf;
        let fb = (fa + wf).min(ch.fc);
        let nf = fb - fa;
        let t0 = blk * tb;
        let tlen = tb.min(ntiles - t0);
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
                    gemm::gemm(
                        tlen,
                        ncols,
                        cin,
                        acc.as_mut_ptr().add(slot * cout * 16 * tb + xi * tb),
                        (16 * tb) as isize,
                        1,
                        true,
                        v.as_ptr().add(xi * tb * cin),
                        1,
                        cin as isize,
                        u.as_ptr().add((xi * nt + col0) * cin),
                        cin as isize,
                        1,
                        1.0f32,
                        1.0f32,
                        false,
                        false,
                        false,
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
    if let gemm::Parallelism::None = par {
        (0..njobs)
            .into_par_iter()
            .for_each_init(|| (Vec::new(), Vec::new(), Vec::new()), job);
    } else {
        let mut state = (Vec::new(), Vec::new(), Vec::new());
        (0..njobs).for_each(|j| job(&mut state, j));
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_utils::max_abs_diff;

    /// Independent direct conv3d (f64 accumulation) on flat NCTHW data.
    #[allow(clippy::too_many_arguments)]
    fn naive(
        x: &[f32],
        (b, cin, fp, h, w): (usize, usize, usize, usize, usize),
        wt: &[f32],
        (cout, kt, kh, kw): (usize, usize, usize, usize),
        bias: Option<&[f32]>,
        spec: Conv3dSpec,
    ) -> (Vec<f32>, [usize; 5]) {
        let p = spec.spatial_pad as isize;
        let (hp, wp) = (h + 2 * spec.spatial_pad, w + 2 * spec.spatial_pad);
        let s = spec.spatial_stride;
        let fo = (fp - kt) / spec.time_stride + 1;
        let ho = (hp - kh) / s + 1;
        let wo = (wp - kw) / s + 1;
        let fetch = |i: isize, n: usize| -> Option<usize> {
            let n = n as isize;
            let j = match spec.pad_mode {
                _ if (0..n).contains(&i) => i,
                PadMode::Zeros => return None,
                PadMode::Replicate => i.max(0).min(n - 1),
                PadMode::Reflect => {
                    if i < 0 {
                        -i
                    } else {
                        2 * n - 2 - i
                    }
                }
            };
            Some(j as usize)
        };
        let mut out = vec![0f32; b * cout * fo * ho * wo];
        for bi in 0..b {
            for co in 0..cout {
                for f in 0..fo {
                    for oh in 0..ho {
                        for ow in 0..wo {
                            let mut acc = bias.map_or(0.0, |bb| bb[co] as f64);
                            for c in 0..cin {
                                for k in 0..kt {
                                    let t = f * spec.time_stride + k;
                                    for i in 0..kh {
                                        let Some(hh) = fetch((oh * s + i) as isize - p, h) else {
                                            continue;
                                        };
                                        for j in 0..kw {
                                            let Some(ww) = fetch((ow * s + j) as isize - p, w)
                                            else {
                                                continue;
                                            };
                                            let xv = x
                                                [(((bi * cin + c) * fp + t) * h + hh) * w + ww]
                                                as f64;
                                            let wv = wt
                                                [(((co * cin + c) * kt + k) * kh + i) * kw + j]
                                                as f64;
                                            acc += xv * wv;
                                        }
                                    }
                                }
                            }
                            out[(((bi * cout + co) * fo + f) * ho + oh) * wo + ow] = acc as f32;
                        }
                    }
                }
            }
        }
        (out, [b, cout, fo, ho, wo])
    }

    fn rel_err(a: &[f32], b: &[f32]) -> f64 {
        assert_eq!(a.len(), b.len());
        let mut num = 0f64;
        let mut den = 0f64;
        for (x, y) in a.iter().zip(b) {
            num = num.max((*x as f64 - *y as f64).abs());
            den = den.max((*y as f64).abs());
        }
        num / den.max(1e-30)
    }

    struct Case {
        x: [usize; 5],
        cout: usize,
        k: (usize, usize, usize),
        spec: Conv3dSpec,
        bias: bool,
    }

    fn spec(ts: usize, s: usize, pad: usize, mode: PadMode) -> Conv3dSpec {
        Conv3dSpec {
            time_pad: (0, 0),
            time_stride: ts,
            spatial_stride: s,
            spatial_pad: pad,
            pad_mode: mode,
        }
    }

    /// Which implementation a test drives.
    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Path {
        /// CPU fast path with Winograd forced for 3x3 spatial kernels.
        Fast,
        /// CPU fast path with the direct implicit GEMM for every kernel.
        Direct,
        /// Candle-ops generic path.
        Generic,
    }
    const PATHS: [Path; 3] = [Path::Fast, Path::Direct, Path::Generic];

    /// Runs one case through the requested path; returns (rel error, conv2d calls).
    fn check(case: &Case, path: Path, budget: Option<usize>) -> (f64, usize) {
        let dev = Device::Cpu;
        let [b, cin, fp, h, w] = case.x;
        let (kt, kh, kw) = case.k;
        let xt = Tensor::randn(0f32, 1.0, (b, cin, fp, h, w), &dev).unwrap();
        let wt = Tensor::randn(0f32, 0.3, (case.cout, cin, kt, kh, kw), &dev).unwrap();
        let bt = Tensor::randn(0f32, 1.0, case.cout, &dev).unwrap();
        let weights = Conv3dWeights::new(&wt, case.bias.then_some(&bt)).unwrap();
        knobs::set_winograd(Some(path == Path::Fast));
        knobs::set_force_generic(path == Path::Generic);
        knobs::set_chunk_budget(budget);
        let before = conv2d_call_count();
        let y = weights.forward(&xt, case.spec).unwrap();
        let calls = conv2d_call_count() - before;
        knobs::set_winograd(None);
        knobs::set_force_generic(false);
        knobs::set_chunk_budget(None);
        let xv = xt.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let wv = wt.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let bv = bt.to_vec1::<f32>().unwrap();
        let (want, dims) = naive(
            &xv,
            (b, cin, fp, h, w),
            &wv,
            (case.cout, kt, kh, kw),
            case.bias.then_some(bv.as_slice()),
            case.spec,
        );
        assert_eq!(y.dims(), dims, "shape for {:?}", case.spec);
        assert_eq!(y.dtype(), DType::F32);
        let got = y.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        (rel_err(&got, &want), calls)
    }

    fn cases() -> Vec<Case> {
        use PadMode::*;
        vec![
            Case {
                x: [1, 5, 6, 7, 9],
                cout: 7,
                k: (3, 3, 3),
                spec: spec(1, 1, 1, Zeros),
                bias: true,
            },
            Case {
                x: [2, 5, 5, 6, 8],
                cout: 7,
                k: (3, 3, 3),
                spec: spec(1, 1, 1, Reflect),
                bias: true,
            },
            Case {
                x: [1, 6, 4, 9, 5],
                cout: 3,
                k: (3, 3, 3),
                spec: spec(1, 1, 1, Replicate),
                bias: false,
            },
            Case {
                x: [2, 5, 4, 6, 7],
                cout: 7,
                k: (1, 1, 1),
                spec: spec(1, 1, 0, Zeros),
                bias: true,
            },
            Case {
                x: [1, 5, 7, 6, 7],
                cout: 7,
                k: (1, 1, 1),
                spec: spec(2, 1, 0, Zeros),
                bias: true,
            },
            Case {
                x: [1, 4, 9, 8, 6],
                cout: 5,
                k: (3, 3, 3),
                spec: spec(2, 1, 1, Zeros),
                bias: true,
            },
            Case {
                x: [2, 3, 7, 6, 8],
                cout: 4,
                k: (3, 3, 3),
                spec: spec(2, 1, 1, Reflect),
                bias: true,
            },
            Case {
                x: [1, 4, 5, 9, 8],
                cout: 6,
                k: (3, 3, 3),
                spec: spec(1, 1, 2, Replicate),
                bias: true,
            },
            Case {
                x: [1, 3, 4, 5, 6],
                cout: 5,
                k: (2, 3, 1),
                spec: spec(1, 1, 0, Zeros),
                bias: true,
            },
            Case {
                x: [1, 3, 5, 7, 6],
                cout: 5,
                k: (3, 5, 5),
                spec: spec(1, 1, 2, Reflect),
                bias: true,
            },
            Case {
                x: [2, 4, 4, 5, 6],
                cout: 3,
                k: (2, 1, 3),
                spec: spec(1, 1, 1, Replicate),
                bias: true,
            },
            Case {
                x: [1, 5, 5, 6, 5],
                cout: 6,
                k: (3, 1, 1),
                spec: spec(1, 1, 0, Zeros),
                bias: true,
            },
            Case {
                x: [1, 5, 4, 1, 1],
                cout: 6,
                k: (3, 3, 3),
                spec: spec(1, 1, 1, Zeros),
                bias: true,
            },
            Case {
                x: [1, 20, 5, 12, 10],
                cout: 24,
                k: (3, 3, 3),
                spec: spec(1, 1, 1, Zeros),
                bias: true,
            },
            Case {
                x: [1, 48, 5, 10, 9],
                cout: 40,
                k: (3, 3, 3),
                spec: spec(1, 1, 1, Reflect),
                bias: true,
            },
        ]
    }

    #[test]
    fn all_paths_match_naive() {
        for path in PATHS {
            let mut worst = 0f64;
            for case in cases() {
                let (err, calls) = check(&case, path, None);
                assert!(
                    err <= 1e-5,
                    "{path:?} {:?} k{:?} {:?}: rel err {err}",
                    case.x,
                    case.k,
                    case.spec
                );
                assert_eq!(calls, 1, "{path:?}");
                worst = worst.max(err);
            }
            eprintln!("{path:?}: worst relative max error {worst:.2e}");
        }
    }

    #[test]
    fn spatial_stride_two_generic() {
        use PadMode::*;
        for (mode, ts) in [(Zeros, 1), (Reflect, 2), (Replicate, 1)] {
            let case = Case {
                x: [2, 5, 7, 9, 8],
                cout: 7,
                k: (3, 3, 3),
                spec: spec(ts, 2, 1, mode),
                bias: true,
            };
            // spatial stride 2 goes to the generic path on its own.
            let (err, calls) = check(&case, Path::Fast, None);
            assert!(err <= 1e-5, "{mode:?}: rel err {err}");
            assert_eq!(calls, 1);
        }
    }

    #[test]
    fn temporal_chunks_and_row_bands() {
        use PadMode::*;
        let big = Case {
            x: [2, 5, 11, 9, 7],
            cout: 7,
            k: (3, 3, 3),
            spec: spec(1, 1, 1, Reflect),
            bias: true,
        };
        let strided = Case {
            x: [1, 5, 12, 8, 7],
            cout: 6,
            k: (3, 3, 3),
            spec: spec(2, 1, 1, Zeros),
            bias: true,
        };
        let s2 = Case {
            x: [1, 4, 9, 10, 9],
            cout: 5,
            k: (3, 3, 3),
            spec: spec(1, 2, 1, Replicate),
            bias: true,
        };
        let k5 = Case {
            x: [1, 3, 8, 11, 6],
            cout: 4,
            k: (2, 5, 3),
            spec: spec(1, 1, 2, Replicate),
            bias: true,
        };
        for path in PATHS {
            for case in [&big, &strided, &s2, &k5] {
                let (mut saw_chunks, mut saw_bands) = (false, false);
                for e in 0..26 {
                    let budget = 1usize << e;
                    let (err, calls) = check(case, path, Some(budget));
                    assert!(
                        err <= 1e-5,
                        "{path:?} budget {budget} {:?}: rel err {err}",
                        case.spec
                    );
                    let (fc, rc, fo, ho) = LAST_PLAN.with(|c| c.get());
                    assert_eq!(calls, fo.div_ceil(fc) * ho.div_ceil(rc));
                    saw_chunks |= rc == ho && 1 < fc && fc < fo;
                    saw_bands |= rc < ho;
                }
                assert!(saw_chunks && saw_bands, "{path:?} {:?}", case.spec);
            }
        }
    }

    #[test]
    fn time_padding_in_place_matches_padded_input() {
        let dev = Device::Cpu;
        let xt = Tensor::randn(0f32, 1.0, (2, 5, 4, 6, 7), &dev).unwrap();
        let wt = Tensor::randn(0f32, 0.3, (3, 5, 3, 3, 3), &dev).unwrap();
        let weights = Conv3dWeights::new(&wt, None).unwrap();
        for (front, back) in [(2, 0), (1, 1), (0, 2)] {
            let padded = xt.pad_with_same(2, front, back).unwrap();
            let want = weights
                .forward(&padded, spec(1, 1, 1, PadMode::Replicate))
                .unwrap();
            for generic in [false, true] {
                knobs::set_force_generic(generic);
                let sp = Conv3dSpec {
                    time_pad: (front, back),
                    ..spec(1, 1, 1, PadMode::Replicate)
                };
                let got = weights.forward(&xt, sp).unwrap();
                knobs::set_force_generic(false);
                let d = max_abs_diff(&got, &want);
                assert!(d < 1e-5, "pad ({front}, {back}) generic={generic}: {d}");
            }
        }
    }

    #[test]
    fn bf16_and_f16_inputs() {
        let dev = Device::Cpu;
        let xt = Tensor::randn(0f32, 1.0, (1, 5, 5, 6, 7), &dev).unwrap();
        let wt = Tensor::randn(0f32, 0.3, (7, 5, 3, 3, 3), &dev).unwrap();
        let bt = Tensor::randn(0f32, 1.0, 7, &dev).unwrap();
        let sp = spec(1, 1, 1, PadMode::Zeros);
        let want = Conv3dWeights::new(&wt, Some(&bt))
            .unwrap()
            .forward(&xt, sp)
            .unwrap();
        for dt in [DType::BF16, DType::F16] {
            for path in PATHS {
                let weights =
                    Conv3dWeights::new(&wt.to_dtype(dt).unwrap(), Some(&bt.to_dtype(dt).unwrap()))
                        .unwrap();
                let xd = xt.to_dtype(dt).unwrap();
                knobs::set_winograd(Some(path == Path::Fast));
                knobs::set_force_generic(path == Path::Generic);
                let y = weights.forward(&xd, sp).unwrap();
                knobs::set_force_generic(false);
                knobs::set_winograd(None);
                assert_eq!(y.dtype(), dt);
                let got = y
                    .to_dtype(DType::F32)
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap();
                let w = want.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                let err = rel_err(&got, &w);
                assert!(err < 3e-2, "{dt:?} {path:?}: rel err {err}");
            }
        }
    }

    #[test]
    fn one_conv2d_per_forward() {
        let dev = Device::Cpu;
        let xt = Tensor::randn(0f32, 1.0, (2, 4, 6, 8, 8), &dev).unwrap();
        let wt = Tensor::randn(0f32, 1.0, (6, 4, 3, 3, 3), &dev).unwrap();
        let weights = Conv3dWeights::new(&wt, None).unwrap();
        for generic in [false, true] {
            for sp in [
                spec(1, 1, 1, PadMode::Zeros),
                spec(2, 1, 1, PadMode::Reflect),
                spec(1, 2, 0, PadMode::Zeros),
            ] {
                knobs::set_force_generic(generic);
                let before = conv2d_call_count();
                weights.forward(&xt, sp).unwrap();
                knobs::set_force_generic(false);
                assert_eq!(conv2d_call_count() - before, 1, "generic={generic} {sp:?}");
            }
        }
    }

    #[test]
    fn errors_not_panics() {
        let dev = Device::Cpu;
        let wt = Tensor::zeros((4, 3, 3, 3, 3), DType::F32, &dev).unwrap();
        let weights = Conv3dWeights::new(&wt, None).unwrap();
        let sp = spec(1, 1, 1, PadMode::Zeros);
        // wrong rank
        assert!(weights
            .forward(&Tensor::zeros((3, 4, 5, 5), DType::F32, &dev).unwrap(), sp)
            .is_err());
        // channel mismatch
        assert!(weights
            .forward(
                &Tensor::zeros((1, 2, 4, 5, 5), DType::F32, &dev).unwrap(),
                sp
            )
            .is_err());
        // kernel larger than the padded input (time, and space without padding)
        assert!(weights
            .forward(
                &Tensor::zeros((1, 3, 2, 5, 5), DType::F32, &dev).unwrap(),
                sp
            )
            .is_err());
        let nopad = spec(1, 1, 0, PadMode::Zeros);
        assert!(weights
            .forward(
                &Tensor::zeros((1, 3, 4, 2, 5), DType::F32, &dev).unwrap(),
                nopad
            )
            .is_err());
        // reflect padding as large as the image
        let refl = spec(1, 1, 2, PadMode::Reflect);
        assert!(weights
            .forward(
                &Tensor::zeros((1, 3, 4, 2, 5), DType::F32, &dev).unwrap(),
                refl
            )
            .is_err());
        // bad strides, bad weights
        assert!(weights
            .forward(
                &Tensor::zeros((1, 3, 4, 5, 5), DType::F32, &dev).unwrap(),
                spec(0, 1, 1, PadMode::Zeros)
            )
            .is_err());
        assert!(Conv3dWeights::new(
            &Tensor::zeros((4, 3, 3, 3), DType::F32, &dev).unwrap(),
            None
        )
        .is_err());
        let bad_bias = Tensor::zeros(5, DType::F32, &dev).unwrap();
        assert!(Conv3dWeights::new(&wt, Some(&bad_bias)).is_err());
    }
}
