//! Port of `ltx_core/model/upsampler/pixel_shuffle.py`.

use candle_core::{Result, Tensor};

/// Moves channel factors into 1 (time), 2 (height, width) or 3 (time, height, width) axes:
/// `b (c p1 p2 p3) d h w -> b c (d p1) (h p2) (w p3)` and its 1-D / 2-D twins.
pub fn pixel_shuffle_nd(x: &Tensor, dims: usize, factors: (usize, usize, usize)) -> Result<Tensor> {
    match dims {
        3 => {
            let (b, cp, d, h, w) = x.dims5()?;
            let (p1, p2, p3) = factors;
            let c = cp / (p1 * p2 * p3);
            x.reshape(vec![b, c, p1, p2, p3, d, h, w])?
                .permute(vec![0, 1, 5, 2, 6, 3, 7, 4])?
                .contiguous()?
                .reshape((b, c, d * p1, h * p2, w * p3))
        }
        2 => {
            let (b, cp, h, w) = x.dims4()?;
            let (p1, p2, _) = factors;
            let c = cp / (p1 * p2);
            x.reshape(vec![b, c, p1, p2, h, w])?
                .permute(vec![0, 1, 4, 2, 5, 3])?
                .contiguous()?
                .reshape((b, c, h * p1, w * p2))
        }
        1 => {
            let (b, cp, f, h, w) = x.dims5()?;
            let p1 = factors.0;
            let c = cp / p1;
            x.reshape(vec![b, c, p1, f, h, w])?
                .permute(vec![0, 1, 3, 2, 4, 5])?
                .contiguous()?
                .reshape((b, c, f * p1, h, w))
        }
        _ => candle_core::bail!("pixel shuffle: dims must be 1, 2 or 3, got {dims}"),
    }
}
