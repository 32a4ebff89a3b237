//! The CPU fast path: its driver (input chunks, choice between the direct implicit GEMM and
//! Winograd, the cut of a chunk into parallel jobs, the temporal tap runs) and the direct
//! implicit-GEMM convolution of one chunk.

use candle_core::{bail, CpuStorage, Device, Result, Storage, Tensor, WithDType};
use half::{bf16, f16};
use rayon::prelude::*;

use super::pack::CpuPack;
use super::plan::{chunk_budget, fill_padded, plan_chunks, Chunk};
use super::pointwise::run_pointwise;
use super::{count_conv2d, winograd, Conv3dWeights, Geom, PadMode};
use crate::kernels::SendPtr;

/// Target number of padded-grid pixels (GEMM rows) per job on the CPU fast path (tuned on Zen 4:
/// 192..512 are within noise; the tile `[Mb, K]` of packed input stays in L2).
const BLOCK_PIXELS: usize = 256;
/// Target size of one job's accumulator tile (`[frames][Cout][Mb]` f32).
const ACC_TILE_BYTES: usize = 1 << 20;

impl Conv3dWeights {
    /// The CPU fast path (spatial stride 1, f32/f16/bf16 input, CPU weights).
    pub(super) fn forward_cpu(&self, x: &Tensor, g: &Geom, mode: PadMode) -> Result<Tensor> {
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
        let winograd = winograd::weights_for(g, direct);
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
                        winograd::conv_chunk(buf, u, &pack.bias, g, &ch, out_ptr, threads)
                    },
                }
            }
        }
        Tensor::from_vec(out, (g.b, g.cout, g.fo, g.ho, g.wo), &Device::Cpu)
    }
}

/// Input element types of the fast path (converted to f32 while packing, back when writing).
pub(super) trait Elem: WithDType + Copy + Send + Sync {
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

/// `f16` and `bf16` convert through `half`'s own conversions.
macro_rules! half_elem {
    ($($t:ident),*) => {$(
        impl Elem for $t {
            #[inline(always)]
            fn to_f32(self) -> f32 {
                $t::to_f32(self)
            }
            #[inline(always)]
            fn from_f32(v: f32) -> Self {
                $t::from_f32(v)
            }
        }
    )*};
}
half_elem!(f16, bf16);

/// Runs of valid taps `(ka, kb)` (inclusive) of input frame `n` for the output frames `[fa, fb)`:
/// tap `k` feeds output `(n - k) / ts` when `(n - k) % ts == 0`. With `ts == 1` it is one run.
pub(super) fn tap_runs(
    n: usize,
    fa: usize,
    fb: usize,
    ts: usize,
    kt: usize,
    runs: &mut Vec<(usize, usize)>,
) {
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

/// `dst += lhs · rhs` in f32 with the `gemm` crate, `[m, n] += [m, k] · [k, n]`: `dst` is
/// `(pointer, column stride)` and `rhs` `(pointer, column stride)`, both with unit row stride;
/// `lhs` is `(pointer, column stride, row stride)`.
///
/// # Safety
/// Every element these strides address must lie inside live buffers, and nothing else may access
/// the addressed `dst` elements during the call.
#[inline(always)]
pub(super) unsafe fn gemm_acc(
    (m, n, k): (usize, usize, usize),
    (dst, dst_cs): (*mut f32, usize),
    (lhs, lhs_cs, lhs_rs): (*const f32, usize, usize),
    (rhs, rhs_cs): (*const f32, usize),
    par: gemm::Parallelism,
) {
    gemm::gemm(
        m,
        n,
        k,
        dst,
        dst_cs as isize,
        1,
        true,
        lhs,
        lhs_cs as isize,
        lhs_rs as isize,
        rhs,
        rhs_cs as isize,
        1,
        1.0f32,
        1.0f32,
        false,
        false,
        false,
        par,
    );
}

/// The cut of one chunk's work into jobs: batch item × block of `mb` GEMM rows (of `rows` per
/// frame) × window of up to `wf` output frames, so that one job's accumulator stays near a target
/// size. With enough jobs for the threads the jobs run in parallel and each GEMM on one thread;
/// otherwise the jobs run in turn and each GEMM uses every thread.
pub(super) struct Jobs {
    rows: usize,
    /// GEMM rows per block (a multiple of 16).
    pub(super) mb: usize,
    nblk: usize,
    nwin: usize,
    wf: usize,
    fc: usize,
    count: usize,
    /// How each GEMM of a job is parallelised.
    pub(super) par: gemm::Parallelism,
}

/// One job: batch item `bi`, output frames `[fa, fb)` of the chunk, GEMM rows `[p0, p0 + len)` of
/// each frame.
#[derive(Clone, Copy, Debug)]
pub(super) struct Job {
    pub(super) bi: usize,
    pub(super) fa: usize,
    pub(super) fb: usize,
    pub(super) p0: usize,
    pub(super) len: usize,
}

impl Jobs {
    /// `b` batch items, `fc` output frames, `rows` GEMM rows per frame cut in blocks of about
    /// `block`; `row_bytes` accumulator bytes per (output frame, GEMM row), `acc_bytes` the target
    /// accumulator size of one job.
    pub(super) fn new(
        b: usize,
        fc: usize,
        rows: usize,
        block: usize,
        row_bytes: usize,
        acc_bytes: usize,
        threads: usize,
    ) -> Self {
        let nblk = rows.div_ceil(block);
        let mb = rows.div_ceil(nblk).next_multiple_of(16);
        let nblk = rows.div_ceil(mb);
        let wf_max = (acc_bytes / (row_bytes * mb)).clamp(1, fc);
        let nwin = fc.div_ceil(wf_max);
        let wf = fc.div_ceil(nwin);
        let count = b * nblk * nwin;
        let par = if count >= 2 * threads {
            gemm::Parallelism::None
        } else {
            gemm::Parallelism::Rayon(threads)
        };
        Self {
            rows,
            mb,
            nblk,
            nwin,
            wf,
            fc,
            count,
            par,
        }
    }

    fn job(&self, j: usize) -> Job {
        let win = j % self.nwin;
        let blk = (j / self.nwin) % self.nblk;
        let bi = j / (self.nwin * self.nblk);
        let fa = win * self.wf;
        let fb = (fa + self.wf).min(self.fc);
        let p0 = blk * self.mb;
        let len = self.mb.min(self.rows - p0);
        Job {
            bi,
            fa,
            fb,
            p0,
            len,
        }
    }

    /// Runs every job, each with a scratch state from `init` (one per worker).
    pub(super) fn run<S>(
        &self,
        init: impl Fn() -> S + Sync + Send,
        job: impl Fn(&mut S, Job) + Sync + Send,
    ) {
        if let gemm::Parallelism::None = self.par {
            (0..self.count)
                .into_par_iter()
                .for_each_init(init, |state, j| job(state, self.job(j)));
        } else {
            let mut state = init();
            (0..self.count).for_each(|j| job(&mut state, self.job(j)));
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
    // Padded pixels per frame in xpad.
    let frame_len = hpb * wp;
    // GEMM rows per frame: grid pixels up to the last valid output pixel. The largest row read is
    // (rc-1)*wp + wo-1 + (kh-1)*wp + kw-1 = hpb*wp - 1, i.e. it stays inside the frame.
    let mframe = (ch.rc - 1) * wp + g.wo;
    let jobs = Jobs::new(
        g.b,
        ch.fc,
        mframe,
        BLOCK_PIXELS,
        cout * 4,
        ACC_TILE_BYTES,
        threads,
    );
    let (mb, par) = (jobs.mb, jobs.par);
    let xp = SendPtr(xpad.as_ptr() as *mut f32);
    let (fo, ho, wo) = (g.fo, g.ho, g.wo);

    let job = |(acc, runs): &mut (Vec<f32>, Vec<(usize, usize)>), jb: Job| {
        let Job {
            bi,
            fa,
            fb,
            p0,
            len: mlen,
        } = jb;
        let nf = fb - fa;
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
                    gemm_acc(
                        (mlen, ncols, krows),
                        (accp.add(slot * cout * mb), mb),
                        (xp.get().add(lhs_off), 1, cin),
                        (w.as_ptr().add((i * nt + col0) * krows), krows),
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
    jobs.run(|| (Vec::new(), Vec::new()), job);
}
