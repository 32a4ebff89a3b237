//! Chunk planning of one call (how many output frames / rows per chunk fit the memory budget) and the
//! padded, channels-last f32 copy of one input chunk that the CPU fast path convolves.

use rayon::prelude::*;

use super::direct::Elem;
use super::{Geom, PadMode, BUDGET_OVERRIDE, CHUNK_BUDGET_BYTES};

#[cfg(test)]
thread_local! {
    /// (fc, rc, fo, ho) of the last chunk plan, for tests.
    pub(super) static LAST_PLAN: std::cell::Cell<(usize, usize, usize, usize)> =
        const { std::cell::Cell::new((0, 0, 0, 0)) };
}

/// This thread's chunk budget: [`CHUNK_BUDGET_BYTES`] unless a test knob replaced it.
pub(super) fn chunk_budget() -> usize {
    BUDGET_OVERRIDE
        .with(|c| c.get())
        .unwrap_or(CHUNK_BUDGET_BYTES)
}

/// Pick (output frames, output rows) per chunk: full rows and as many frames as fit the budget,
/// else one frame and as many rows as fit (at least one), then balance the chunk sizes.
pub(super) fn plan_chunks(
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

/// One chunk of the CPU fast path: output frames `[f0, f0+fc)` (input frames `[f0*ts, f0*ts+nin)`)
/// and output rows `[r0, r0+rc)`, all batch items.
#[derive(Clone, Copy, Debug)]
pub(super) struct Chunk {
    pub(super) f0: usize,
    pub(super) fc: usize,
    pub(super) nin: usize,
    pub(super) r0: usize,
    pub(super) rc: usize,
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
pub(super) fn fill_padded<T: Elem>(buf: &mut [f32], x: &[T], g: &Geom, ch: &Chunk, mode: PadMode) {
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
