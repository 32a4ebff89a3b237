//! Exact 3-D convolution (PyTorch `nn.Conv3d` semantics) on top of Candle, which has no conv3d.
//!
//! This file holds the public API ([`PadMode`], [`Conv3dSpec`], [`Conv3dWeights`]: weight
//! preparation and the choice of path in `forward`), the shapes of a call (`Geom`), the conv2d call
//! counter and the test knobs. Each path and helper lives in its own file, named below.
//!
//! Structure (project rule, DESIGN.md §3): one `forward` = ONE 2-D convolution over the whole video
//! (or over each memory-bounded chunk of it): time is folded into the batch (`[B*Fp, Cin, H, W]`), the
//! `kt` temporal taps are stacked on the output channels (kernel `[kt*Cout, Cin, kh, kw]`), and a shifted
//! temporal sum `out[t] = Σ_k y[t*ts + k][tap k]` plus bias finishes the job.
//!
//! Two implementations sit behind [`Conv3dWeights::forward`]:
//! * **Generic** (`generic.rs`, any device): Candle ops only — fold, explicit reflect/replicate
//!   padding, one `Tensor::conv2d` with the stacked kernel per chunk, `narrow`/`index_select` + add for
//!   the shifted sum.
//! * **CPU fast path** (`direct.rs`; CPU, spatial stride 1, f32/f16/bf16 input): an implicit-GEMM
//!   convolution on the `gemm` crate, with weights packed once at load time (`pack.rs`). The input
//!   chunk is copied once (`plan.rs`) into a channels-last, spatially padded f32 buffer
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
//!   3x3 spatial kernels (all of LTX's VAE) use Winograd F(2x2, 3x3) (`winograd.rs`) instead of the
//!   direct GEMMs, with the same chunks, jobs and reverse-stacked temporal taps: per 2x2 output tile the
//!   4x4 padded input patch is transformed (`V = Bᵀ d B`, 16 planes `[tiles, Cin]`), each plane is one
//!   GEMM against the transformed stacked kernel `U = G g Gᵀ` (`[Cin, kt*Cout]`), accumulated per output
//!   frame in the transformed domain, and `Y = Aᵀ M A` + bias gives the outputs. 16 instead of 36
//!   multiplies per tile per channel pair: ~2x faster than the direct GEMMs here; relative error stays
//!   ~1e-6 in f32 (about 2x the direct GEMM's, well inside the 1e-5 parity budget).
//!
//!   1x1x1 kernels (f32, no padding, time stride 1) are plain GEMMs read straight from the NCTHW input
//!   (`pointwise.rs`).
//!
//! Memory (chunk planning in `plan.rs`): the only large intermediate is the padded input chunk, bounded
//! by [`CHUNK_BUDGET_BYTES`] (temporal chunks with a `kt - 1` frame halo, and row bands with a `kh - 1`
//! row halo when a single output frame is too big), plus per-thread tiles of a few MiB. The generic path
//! chunks the same way, counting the conv2d output and an im2col buffer (Metal materialises a full one)
//! in its estimate.
//!
//! The tests of the whole (every path against an independent naive conv3d) are in `tests.rs`.

mod direct;
mod generic;
mod pack;
mod plan;
mod pointwise;
#[cfg(test)]
mod tests;
mod winograd;

use std::cell::Cell;

use candle_core::{bail, DType, Device, Result, Tensor};

use pack::CpuPack;

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

thread_local! {
    static CONV2D_CALLS: Cell<usize> = const { Cell::new(0) };
    static FORCE_GENERIC: Cell<bool> = const { Cell::new(false) };
    static WINOGRAD_OVERRIDE: Cell<Option<bool>> = const { Cell::new(None) };
    static BUDGET_OVERRIDE: Cell<Option<usize>> = const { Cell::new(None) };
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
        let (kernel, cpu) = if weight.device().is_cpu() {
            let wv = weight
                .to_dtype(DType::F32)?
                .flatten_all()?
                .to_vec1::<f32>()?;
            let bias_v = match bias {
                Some(b) => b.to_dtype(DType::F32)?.to_vec1::<f32>()?,
                None => vec![0f32; cout],
            };
            (None, Some(CpuPack::new(&wv, bias_v, dims)))
        } else {
            let stacked =
                weight
                    .permute((2, 0, 1, 3, 4))?
                    .contiguous()?
                    .reshape((kt * cout, cin, kh, kw))?;
            (Some(stacked), None)
        };
        Ok(Self {
            cout,
            cin,
            kt,
            kh,
            kw,
            kernel,
            device: weight.device().clone(),
            bias: bias.cloned(),
            cpu,
        })
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
}
