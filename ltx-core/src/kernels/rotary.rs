//! Rotary position embeddings applied in one parallel pass over the tokens on the CPU in f32.
//!
//! Candle's formulation (`model::transformer::rope`) takes eight elementwise kernels plus a
//! stack and a transposing copy per call. Each output here is `x·cos ∓ x'·sin` with the two
//! products and the sum rounded separately, as the unfused formula does: bit-identical to it.

use candle_core::{Result, Tensor};

use super::rows::{map_rows, RowParam};

/// Whether the kernels take `x`: f32 on the CPU, rank 3 `[B, T, D]`.
pub fn usable(x: &Tensor) -> bool {
    super::rows::usable(x) && x.rank() == 3
}

/// Split rotation: `x` `[B, T, H·2·h]` with each head's features in two halves `(x1, x2)`,
/// `cos`, `sin` broadcastable to `[B, H, T, h]`; out `(x1·cos − x2·sin, x2·cos + x1·sin)`.
pub fn split(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let (b, t, width) = x.dims3()?;
    let (_, heads, _, half) = cos.dims4()?;
    if heads * half * 2 != width {
        candle_core::bail!(
            "rope: input {:?} does not match frequencies {:?}",
            x.dims(),
            cos.dims()
        )
    }
    let shape = [b, heads, t, half];
    let (c, s) = (RowParam::new(cos, &shape)?, RowParam::new(sin, &shape)?);
    map_rows(x, |row, xr, o| {
        let (bi, ti) = (row / t, row % t);
        for h in 0..heads {
            let r = (bi * heads + h) * t + ti;
            let (cr, sr) = (c.row(r, half), s.row(r, half));
            let (x1, x2) = xr[h * 2 * half..(h + 1) * 2 * half].split_at(half);
            let (o1, o2) = o[h * 2 * half..(h + 1) * 2 * half].split_at_mut(half);
            for i in 0..half {
                o1[i] = x1[i] * cr[i] - x2[i] * sr[i];
                o2[i] = x2[i] * cr[i] + x1[i] * sr[i];
            }
        }
    })
}

/// Interleaved rotation: pairs `(x[2i], x[2i+1])` of `x` `[B, T, D]`, `cos`, `sin`
/// broadcastable to `[B, T, D]`; out `x·cos + (−x[2i+1], x[2i])·sin`.
pub fn interleaved(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let width = x.dim(2)?;
    if width % 2 != 0 {
        candle_core::bail!("rope: interleaved pairs need an even width, not {width}")
    }
    let (c, s) = (RowParam::new(cos, x.dims())?, RowParam::new(sin, x.dims())?);
    map_rows(x, |row, xr, o| {
        let (cr, sr) = (c.row(row, width), s.row(row, width));
        for i in (0..width).step_by(2) {
            o[i] = xr[i] * cr[i] - xr[i + 1] * sr[i];
            o[i + 1] = xr[i + 1] * cr[i + 1] + xr[i] * sr[i + 1];
        }
    })
}
