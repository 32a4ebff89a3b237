//! Port of `ltx_core/model/transformer/rope.py`: rotary position embeddings from token
//! positions (fractions of `max_pos` per axis), in the `interleaved` and `split` layouts.

use candle_core::{DType, Device, Result, Tensor, D};
use serde::Deserialize;

use crate::utils::linspace_f32;

/// How rotary pairs are laid out in a head.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RopeType {
    /// Pairs `(2i, 2i+1)` over the whole inner dim (legacy; the configurators' default until
    /// reference 1.2.0).
    Interleaved,
    /// Per head, the first half rotates with the second; heads take consecutive slices of the
    /// global frequency list (the released models; the configurators' default since 1.2.0).
    #[default]
    Split,
}

/// The frequency grid `θ^linspace(0, 1, F) · π/2`, `F = inner_dim / (2·n_axes)`, as f32.
///
/// `double_precision`: computed in f64 and rounded once (the reference's numpy path, used by the
/// released checkpoints); otherwise with the reference's f32 arithmetic.
pub fn freq_grid(theta: f64, n_axes: usize, inner_dim: usize, double_precision: bool) -> Vec<f32> {
    let n = inner_dim / (2 * n_axes);
    if double_precision {
        let step = if n > 1 { 1.0 / (n - 1) as f64 } else { 0.0 };
        (0..n)
            .map(|i| {
                // numpy's linspace: start + i·step, the last point exactly `end`
                let e = if i + 1 == n && n > 1 {
                    1.0
                } else {
                    i as f64 * step
                };
                (theta.powf(e) * std::f64::consts::PI / 2.0) as f32
            })
            .collect()
    } else {
        let theta = theta as f32;
        linspace_f32(0.0, 1.0, n)
            .into_iter()
            .map(|e| theta.powf(e) * std::f32::consts::PI / 2.0)
            .collect()
    }
}

/// Everything needed to turn positions into `(cos, sin)`.
#[derive(Clone, Debug)]
pub struct RopeSpec {
    pub theta: f64,
    pub max_pos: Vec<usize>,
    pub use_middle_indices_grid: bool,
    pub num_attention_heads: usize,
    pub rope_type: RopeType,
    pub double_precision: bool,
}

/// `(cos, sin)` of one attention's queries or keys: `[B, H, T, d/2]` for `split`, `[B, T, dim]`
/// for `interleaved`, in the activation dtype.
#[derive(Clone, Debug)]
pub struct RopeFreqs {
    pub cos: Tensor,
    pub sin: Tensor,
    pub rope_type: RopeType,
}

/// Positions `[B, n_axes, T, 2]` (bounds) or `[B, n_axes, T]` -> `(cos, sin)` for an attention of
/// width `dim`, as `precompute_freqs_cis` (arithmetic in the positions' dtype until the product
/// with the f32 grid, like the reference).
pub fn precompute_freqs_cis(
    positions: &Tensor,
    dim: usize,
    out_dtype: DType,
    spec: &RopeSpec,
) -> Result<RopeFreqs> {
    let n_axes = positions.dim(1)?;
    if n_axes != spec.max_pos.len() {
        candle_core::bail!(
            "positions have {n_axes} axes but max_pos has {} entries",
            spec.max_pos.len()
        )
    }
    let device = positions.device();
    let grid = freq_grid(spec.theta, n_axes, dim, spec.double_precision);
    let f = grid.len();
    let grid = Tensor::from_vec(grid, f, device)?;
    // middle of each [start, end) bound, or the start
    let pos = if spec.use_middle_indices_grid {
        if positions.rank() != 4 || positions.dim(3)? != 2 {
            candle_core::bail!(
                "positions must be [B, axes, T, 2], got {:?}",
                positions.dims()
            )
        }
        let two = scalar(2.0, positions.dtype(), device)?;
        (positions.narrow(3, 0, 1)? + positions.narrow(3, 1, 1)?)?
            .squeeze(3)?
            .broadcast_div(&two)?
    } else if positions.rank() == 4 {
        positions.narrow(3, 0, 1)?.squeeze(3)?
    } else {
        positions.clone()
    };
    // fractions per axis: [B, T, n_axes]
    let mut fracs = Vec::with_capacity(n_axes);
    for (axis, &m) in spec.max_pos.iter().enumerate() {
        let m = scalar(m as f64, pos.dtype(), device)?;
        fracs.push(pos.narrow(1, axis, 1)?.broadcast_div(&m)?);
    }
    let frac = Tensor::cat(&fracs, 1)?.transpose(1, 2)?; // [B, T, n]
    let two = scalar(2.0, frac.dtype(), device)?;
    let one = scalar(1.0, frac.dtype(), device)?;
    let centred = frac.broadcast_mul(&two)?.broadcast_sub(&one)?;
    let centred = match centred.dtype() {
        DType::F64 => centred,
        _ => centred.to_dtype(DType::F32)?,
    };
    let grid = grid.to_dtype(centred.dtype())?;
    // [B, T, n, 1] * [F] -> [B, T, n, F] -> [B, T, F, n] -> [B, T, F·n] (frequency-major)
    let (b, t, _) = centred.dims3()?;
    let freqs = centred
        .unsqueeze(3)?
        .broadcast_mul(&grid.reshape((1, 1, 1, f))?)?
        .transpose(2, 3)?
        .contiguous()?
        .reshape((b, t, f * n_axes))?;
    let (cos, sin) = (freqs.cos()?, freqs.sin()?);
    let (cos, sin) = match spec.rope_type {
        RopeType::Split => {
            let pad = (dim / 2)
                .checked_sub(f * n_axes)
                .ok_or_else(|| candle_core::Error::Msg("rope dim too small".into()))?;
            let (cos, sin) = pad_front(&cos, &sin, pad)?;
            let h = spec.num_attention_heads;
            let per_head = (dim / 2) / h;
            let split = |x: Tensor| -> Result<Tensor> {
                x.reshape((b, t, h, per_head))?
                    .transpose(1, 2)?
                    .contiguous()
            };
            (split(cos)?, split(sin)?)
        }
        RopeType::Interleaved => {
            let cos = repeat_interleave2(&cos)?;
            let sin = repeat_interleave2(&sin)?;
            pad_front(&cos, &sin, dim % (2 * n_axes))?
        }
    };
    Ok(RopeFreqs {
        cos: cos.to_dtype(out_dtype)?,
        sin: sin.to_dtype(out_dtype)?,
        rope_type: spec.rope_type,
    })
}

fn scalar(v: f64, dtype: DType, device: &Device) -> Result<Tensor> {
    Tensor::new(v, device)?.to_dtype(dtype)
}

/// Prepends `pad` entries cos = 1 / sin = 0 on the last axis.
fn pad_front(cos: &Tensor, sin: &Tensor, pad: usize) -> Result<(Tensor, Tensor)> {
    if pad == 0 {
        return Ok((cos.clone(), sin.clone()));
    }
    let mut shape = cos.dims().to_vec();
    *shape.last_mut().expect("rank >= 1") = pad;
    let ones = Tensor::ones(shape.as_slice(), cos.dtype(), cos.device())?;
    let zeros = Tensor::zeros(shape.as_slice(), sin.dtype(), sin.device())?;
    Ok((
        Tensor::cat(&[&ones, cos], D::Minus1)?,
        Tensor::cat(&[&zeros, sin], D::Minus1)?,
    ))
}

/// `x.repeat_interleave(2, dim=-1)`.
fn repeat_interleave2(x: &Tensor) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    let last = *dims.last().expect("rank >= 1");
    let mut out = dims.clone();
    *out.last_mut().expect("rank >= 1") = last * 2;
    x.unsqueeze(D::Minus1)?
        .repeat((1..=dims.len()).map(|_| 1).chain([2]).collect::<Vec<_>>())?
        .reshape(out)
}

/// Rotates `x` `[B, T, H·d]` by `freqs`.
pub fn apply_rotary_emb(x: &Tensor, freqs: &RopeFreqs) -> Result<Tensor> {
    use crate::kernels::rotary;
    let fast = rotary::usable(x) && freqs.cos.dtype() == DType::F32;
    match freqs.rope_type {
        RopeType::Interleaved if fast => rotary::interleaved(x, &freqs.cos, &freqs.sin),
        RopeType::Split if fast => rotary::split(x, &freqs.cos, &freqs.sin),
        RopeType::Interleaved => apply_interleaved(x, &freqs.cos, &freqs.sin),
        RopeType::Split => apply_split(x, &freqs.cos, &freqs.sin),
    }
}

fn apply_interleaved(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    let last = *dims.last().expect("rank >= 1");
    let mut pairs = dims.clone();
    *pairs.last_mut().expect("rank >= 1") = last / 2;
    pairs.push(2);
    let xp = x.reshape(pairs.as_slice())?;
    let x1 = xp.narrow(D::Minus1, 0, 1)?;
    let x2 = xp.narrow(D::Minus1, 1, 1)?;
    let rot = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?.reshape(dims)?;
    x.broadcast_mul(cos)? + rot.broadcast_mul(sin)?
}

fn apply_split(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let (b, h, t, half) = cos.dims4()?;
    let (xb, xt, width) = x.dims3()?;
    if xb != b || xt != t || width != h * half * 2 {
        candle_core::bail!(
            "rope: input {:?} does not match frequencies {:?}",
            x.dims(),
            cos.dims()
        )
    }
    // [B, T, H, 2, d/2] -> [B, H, T, 2, d/2]
    let xs = x.reshape((b, t, h, 2, half))?.transpose(1, 2)?;
    let x1 = xs.narrow(3, 0, 1)?.squeeze(3)?;
    let x2 = xs.narrow(3, 1, 1)?.squeeze(3)?;
    let o1 = (x1.broadcast_mul(cos)? - x2.broadcast_mul(sin)?)?;
    let o2 = (x2.broadcast_mul(cos)? + x1.broadcast_mul(sin)?)?;
    Tensor::stack(&[o1, o2], 3)? // [B, H, T, 2, d/2]
        .transpose(1, 2)?
        .contiguous()?
        .reshape((b, t, h * half * 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_are_bit_identical_to_the_formula() -> Result<()> {
        let dev = Device::Cpu;
        let (b, t, h, half) = (2, 5, 3, 4);
        let x = Tensor::randn(0f32, 1., (b, t, h * 2 * half), &dev)?;
        // per-sample split frequencies, and batch-1 ones broadcast over the batch
        for fb in [b, 1] {
            let ang = Tensor::randn(0f32, 3., (fb, h, t, half), &dev)?;
            let (cos, sin) = (ang.cos()?, ang.sin()?);
            let want = apply_split(
                &x,
                &cos.broadcast_as((b, h, t, half))?,
                &sin.broadcast_as((b, h, t, half))?,
            )?;
            let got = crate::kernels::rotary::split(&x, &cos, &sin)?;
            assert_eq!((got - want)?.abs()?.max_all()?.to_scalar::<f32>()?, 0.0);
        }
        let ang = Tensor::randn(0f32, 3., (1, t, h * 2 * half), &dev)?;
        let (cos, sin) = (ang.cos()?, ang.sin()?);
        let want = apply_interleaved(&x, &cos, &sin)?;
        let got = crate::kernels::rotary::interleaved(&x, &cos, &sin)?;
        assert_eq!((got - want)?.abs()?.max_all()?.to_scalar::<f32>()?, 0.0);
        assert!(crate::kernels::rotary::split(
            &x.narrow(2, 0, 20)?,
            &cos.reshape((1, h, t, 2 * half))?,
            &sin.reshape((1, h, t, 2 * half))?
        )
        .is_err());
        Ok(())
    }

    #[test]
    fn grid_ends() {
        let g = freq_grid(10000.0, 3, 4096, true);
        assert_eq!(g.len(), 682);
        assert!((g[0] - std::f32::consts::FRAC_PI_2).abs() < 1e-6);
        assert!((g[681] / (10000.0 * std::f32::consts::FRAC_PI_2) - 1.0).abs() < 1e-6);
        let g32 = freq_grid(10000.0, 1, 2048, false);
        assert_eq!(g32.len(), 1024);
    }

    #[test]
    fn rotation_preserves_norm() -> Result<()> {
        let dev = Device::Cpu;
        let pos = Tensor::new(&[[[[0f32, 1.], [1., 9.], [9., 17.]]]], &dev)?; // [1, 1, 3, 2]
        for rope_type in [RopeType::Split, RopeType::Interleaved] {
            let spec = RopeSpec {
                theta: 10000.0,
                max_pos: vec![20],
                use_middle_indices_grid: true,
                num_attention_heads: 2,
                rope_type,
                double_precision: true,
            };
            let f = precompute_freqs_cis(&pos, 16, DType::F32, &spec)?;
            let x = Tensor::randn(0f32, 1., (1, 3, 16), &dev)?;
            let y = apply_rotary_emb(&x, &f)?;
            let nx = x.sqr()?.sum_all()?.to_scalar::<f32>()?;
            let ny = y.sqr()?.sum_all()?.to_scalar::<f32>()?;
            assert!((nx - ny).abs() < 1e-4 * nx, "{rope_type:?}: {nx} vs {ny}");
        }
        Ok(())
    }
}
