//! Port of `ltx_core/model/video_vae/tiling.py` and the tiled encode/decode of `video_vae.py`.
//!
//! Tiles are cut along time and space, each tile is run through the model, and overlapping
//! outputs are blended with per-axis masks (`Σ tile·mask / Σ mask`). Decoding streams finished
//! temporal chunks to a sink, so memory is bounded by one temporal group of tiles.

use std::ops::Range;

use candle_core::{DType, Device, IndexOp, Tensor};
use serde::Deserialize;

use super::decoder::{DecodeInputs, VideoDecoder};
use super::encoder::{crop_to_valid_frames, VideoEncoder, SPACE_SCALE, TIME_SCALE};
use crate::utils::linspace_f32;
use crate::{Error, Result};

/// Spatial tiles: `tile_size_in_pixels` ≥ 64 and a multiple of 32; overlap a multiple of 32, smaller.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub struct SpatialTilingConfig {
    pub tile_size_in_pixels: usize,
    #[serde(default)]
    pub tile_overlap_in_pixels: usize,
}

/// Temporal tiles: `tile_size_in_frames` ≥ 16 and a multiple of 8; overlap a multiple of 8, smaller.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub struct TemporalTilingConfig {
    pub tile_size_in_frames: usize,
    #[serde(default)]
    pub tile_overlap_in_frames: usize,
}

/// Either part may be absent (that axis is then not tiled).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct TilingConfig {
    #[serde(default)]
    pub spatial: Option<SpatialTilingConfig>,
    #[serde(default)]
    pub temporal: Option<TemporalTilingConfig>,
}

impl TilingConfig {
    /// `TilingConfig.default()`: 512 px tiles / 64 px overlap, 64 frames / 24 overlap.
    pub fn reference_default() -> Self {
        Self {
            spatial: Some(SpatialTilingConfig {
                tile_size_in_pixels: 512,
                tile_overlap_in_pixels: 64,
            }),
            temporal: Some(TemporalTilingConfig {
                tile_size_in_frames: 64,
                tile_overlap_in_frames: 24,
            }),
        }
    }

    /// The reference's `__post_init__` checks, as typed errors.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidInput(format!("tiling: {m}")));
        if let Some(s) = self.spatial {
            let (size, ov) = (s.tile_size_in_pixels, s.tile_overlap_in_pixels);
            if size < 64 || size % 32 != 0 {
                return bad(format!(
                    "tile_size_in_pixels must be >= 64 and divisible by 32, got {size}"
                ));
            }
            if ov % 32 != 0 || ov >= size {
                return bad(format!(
                    "tile_overlap_in_pixels must be divisible by 32 and below the tile size, got {ov}"
                ));
            }
        }
        if let Some(t) = self.temporal {
            let (size, ov) = (t.tile_size_in_frames, t.tile_overlap_in_frames);
            if size < 16 || size % 8 != 0 {
                return bad(format!(
                    "tile_size_in_frames must be >= 16 and divisible by 8, got {size}"
                ));
            }
            if ov % 8 != 0 || ov >= size {
                return bad(format!(
                    "tile_overlap_in_frames must be divisible by 8 and below the tile size, got {ov}"
                ));
            }
        }
        Ok(())
    }

    /// Number of chunks `tiled_decode` streams for `num_frames` (`get_video_chunks_number`).
    pub fn video_chunks(&self, num_frames: usize) -> usize {
        match self.temporal {
            None => 1,
            Some(t) => {
                let stride = t.tile_size_in_frames - t.tile_overlap_in_frames;
                num_frames.saturating_sub(1).div_ceil(stride)
            }
        }
    }
}

/// How one axis is split: `[start, end)` intervals with blend-ramp lengths.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DimensionIntervals {
    pub starts: Vec<usize>,
    pub ends: Vec<usize>,
    pub left_ramps: Vec<usize>,
    pub right_ramps: Vec<usize>,
}

impl DimensionIntervals {
    fn whole(len: usize) -> Self {
        Self {
            starts: vec![0],
            ends: vec![len],
            left_ramps: vec![0],
            right_ramps: vec![0],
        }
    }
}

/// `split_with_symmetric_overlaps`.
pub fn split_with_symmetric_overlaps(
    len: usize,
    size: usize,
    overlap: usize,
) -> DimensionIntervals {
    if len <= size {
        return DimensionIntervals::whole(len);
    }
    let step = size - overlap;
    let amount = (len + size - 2 * overlap - 1) / step;
    let starts: Vec<usize> = (0..amount).map(|i| i * step).collect();
    let mut ends: Vec<usize> = starts.iter().map(|s| s + size).collect();
    ends[amount - 1] = len;
    let mut left_ramps = vec![overlap; amount];
    left_ramps[0] = 0;
    let mut right_ramps = vec![overlap; amount];
    right_ramps[amount - 1] = 0;
    DimensionIntervals {
        starts,
        ends,
        left_ramps,
        right_ramps,
    }
}

/// `split_temporal_latents`: non-first tiles start one latent earlier, with a ramp one longer.
pub fn split_temporal_latents(len: usize, size: usize, overlap: usize) -> DimensionIntervals {
    if len <= size {
        return DimensionIntervals::whole(len);
    }
    let mut iv = split_with_symmetric_overlaps(len, size, overlap);
    for i in 1..iv.starts.len() {
        iv.starts[i] -= 1;
        iv.left_ramps[i] += 1;
    }
    iv
}

/// `split_temporal_frames`: non-last tiles extend one frame further, no right ramps.
pub fn split_temporal_frames(len: usize, size: usize, overlap: usize) -> DimensionIntervals {
    if len <= size {
        return DimensionIntervals::whole(len);
    }
    let mut iv = split_with_symmetric_overlaps(len, size, overlap);
    let n = iv.ends.len();
    for e in &mut iv.ends[..n - 1] {
        *e += 1;
    }
    iv.right_ramps = vec![0; n];
    iv
}

/// `compute_trapezoidal_mask_1d`.
pub fn trapezoidal_mask(
    len: usize,
    ramp_left: usize,
    ramp_right: usize,
    left_from_0: bool,
) -> Vec<f32> {
    let (rl, rr) = (ramp_left.min(len), ramp_right.min(len));
    let mut mask = vec![1f32; len];
    if rl > 0 {
        let n = if left_from_0 { rl + 1 } else { rl + 2 };
        let fade = linspace_f32(0.0, 1.0, n);
        let fade = if left_from_0 {
            &fade[..n - 1]
        } else {
            &fade[1..n - 1]
        };
        for (m, f) in mask.iter_mut().zip(fade) {
            *m *= f;
        }
    }
    if rr > 0 {
        let fade = linspace_f32(1.0, 0.0, rr + 2);
        for (m, f) in mask[len - rr..].iter_mut().zip(&fade[1..rr + 1]) {
            *m *= f;
        }
    }
    mask.iter().map(|m| m.clamp(0.0, 1.0)).collect()
}

/// `compute_rectangular_mask_1d`.
pub fn rectangular_mask(len: usize, left: usize, right: usize) -> Vec<f32> {
    let mut mask = vec![1f32; len];
    for m in mask.iter_mut().take(left) {
        *m = 0.0;
    }
    for m in mask.iter_mut().rev().take(right) {
        *m = 0.0;
    }
    mask
}

/// Output range and blend mask of one interval on one axis.
type Mapped = (Range<usize>, Option<Vec<f32>>);
/// `(begin, end, left_ramp, right_ramp, scale)` → output range and mask.
type MapFn = fn(usize, usize, usize, usize, usize) -> Mapped;
/// One axis's tiles: input range, output range (`None`: whole axis), mask.
type AxisTiles = Vec<(Range<usize>, Option<Range<usize>>, Option<Vec<f32>>)>;

fn map_temporal_to_frames(b: usize, e: usize, rl: usize, rr: usize, s: usize) -> Mapped {
    let (start, stop) = (b * s, 1 + (e - 1) * s);
    let rl = if rl == 0 { 0 } else { 1 + (rl - 1) * s };
    (
        start..stop,
        Some(trapezoidal_mask(stop - start, rl, rr * s, true)),
    )
}

fn map_temporal_to_latents(b: usize, e: usize, rl: usize, _rr: usize, s: usize) -> Mapped {
    let (start, stop) = (b / s, (e - 1) / s + 1);
    let rl = if rl == 0 { 0 } else { 1 + (rl - 1) / s };
    (start..stop, Some(rectangular_mask(stop - start, rl, 0)))
}

fn map_spatial_to_pixels(b: usize, e: usize, rl: usize, rr: usize, s: usize) -> Mapped {
    let (start, stop) = (b * s, e * s);
    (
        start..stop,
        Some(trapezoidal_mask(stop - start, rl * s, rr * s, false)),
    )
}

fn map_spatial_to_latents(b: usize, e: usize, rl: usize, rr: usize, s: usize) -> Mapped {
    let (start, stop) = (b / s, e / s);
    let rl = (rl / s).saturating_sub(1);
    let rr = usize::from(rr != 0);
    (start..stop, Some(rectangular_mask(stop - start, rl, rr)))
}

/// One tile over a 5-D `[B, C, F, H, W]` tensor.
#[derive(Clone, Debug)]
pub struct Tile {
    pub input: [Range<usize>; 5],
    /// `None` on an axis means "the whole output axis".
    pub output: [Option<Range<usize>>; 5],
    pub masks: [Option<Vec<f32>>; 5],
}

impl Tile {
    /// The product of the per-axis masks, shaped `[1, 1, f, h, w]` (size 1 on unmasked axes).
    pub fn blend_mask(&self, device: &Device) -> Result<Tensor> {
        let mut mask = Tensor::ones((1, 1, 1, 1, 1), DType::F32, device)?;
        for (axis, m) in self.masks.iter().enumerate() {
            if let Some(m) = m {
                let mut shape = [1usize; 5];
                shape[axis] = m.len();
                let t = Tensor::from_slice(m, shape.as_slice(), device)?;
                mask = mask.broadcast_mul(&t)?;
            }
        }
        Ok(mask)
    }
}

/// An axis's split and mapping; `None` keeps the axis whole.
struct AxisPlan {
    intervals: DimensionIntervals,
    map: Option<(MapFn, usize)>,
}

/// `create_tiles`: the cartesian product of the per-axis intervals, in row-major order.
fn create_tiles(shape: &[usize], plans: Vec<Option<AxisPlan>>) -> Vec<Tile> {
    let per_axis: Vec<AxisTiles> = plans
        .into_iter()
        .zip(shape)
        .map(|(plan, &len)| match plan {
            None => vec![(0..len, None, None)],
            Some(p) => (0..p.intervals.starts.len())
                .map(|i| {
                    let iv = &p.intervals;
                    let input = iv.starts[i]..iv.ends[i];
                    match p.map {
                        None => (input, None, None),
                        Some((f, s)) => {
                            let (out, mask) = f(
                                iv.starts[i],
                                iv.ends[i],
                                iv.left_ramps[i],
                                iv.right_ramps[i],
                                s,
                            );
                            (input, Some(out), mask)
                        }
                    }
                })
                .collect(),
        })
        .collect();
    let mut tiles = Vec::new();
    let counts: Vec<usize> = per_axis.iter().map(Vec::len).collect();
    let total: usize = counts.iter().product();
    for flat in 0..total {
        let mut idx = [0usize; 5];
        let mut rem = flat;
        for axis in (0..5).rev() {
            idx[axis] = rem % counts[axis];
            rem /= counts[axis];
        }
        let pick = |a: usize| &per_axis[a][idx[a]];
        tiles.push(Tile {
            input: std::array::from_fn(|a| pick(a).0.clone()),
            output: std::array::from_fn(|a| pick(a).1.clone()),
            masks: std::array::from_fn(|a| pick(a).2.clone()),
        });
    }
    tiles
}

/// Decoder tiles over the latent (`VideoDecoder._prepare_tiles`).
pub fn decoder_tiles(latent_shape: &[usize], cfg: &TilingConfig) -> Vec<Tile> {
    let mut plans: Vec<Option<AxisPlan>> = (0..5).map(|_| None).collect();
    if let Some(s) = cfg.spatial {
        let long_side = latent_shape[3].max(latent_shape[4]);
        for axis in [3, 4] {
            let size = s.tile_size_in_pixels / SPACE_SCALE;
            let overlap = s.tile_overlap_in_pixels / SPACE_SCALE;
            let len = latent_shape[axis];
            let lower = 2.max(overlap + 1);
            // Python's `round` rounds halves to even.
            let tile =
                lower.max((size as f64 * len as f64 / long_side as f64).round_ties_even() as usize);
            plans[axis] = Some(AxisPlan {
                intervals: split_with_symmetric_overlaps(len, tile, overlap),
                map: Some((map_spatial_to_pixels, SPACE_SCALE)),
            });
        }
    }
    if let Some(t) = cfg.temporal {
        plans[2] = Some(AxisPlan {
            intervals: split_temporal_latents(
                latent_shape[2],
                t.tile_size_in_frames / TIME_SCALE,
                t.tile_overlap_in_frames / TIME_SCALE,
            ),
            map: Some((map_temporal_to_frames, TIME_SCALE)),
        });
    }
    create_tiles(latent_shape, plans)
}

/// Encoder tiles over the video (`prepare_tiles_for_encoding`); overlaps below 64 px / 16 frames
/// are raised to those minimums, as in the reference. When that makes the overlap reach the tile
/// size on an axis longer than one tile, the reference divides by zero; here it is an error.
pub fn encoder_tiles(video_shape: &[usize], cfg: &TilingConfig) -> Result<Vec<Tile>> {
    let check = |axis: &str, len: usize, size: usize, overlap: usize| {
        if len > size && overlap >= size {
            return Err(Error::InvalidInput(format!(
                "tiled encode: {axis} tiles of {size} with the encoder's minimum overlap {overlap} \
                 cannot cover {len}; use larger tiles"
            )));
        }
        Ok(())
    };
    const MIN_SPATIAL_OVERLAP: usize = 64;
    const MIN_TEMPORAL_OVERLAP: usize = 16;
    let mut plans: Vec<Option<AxisPlan>> = (0..5).map(|_| None).collect();
    if let Some(s) = cfg.spatial {
        let overlap = s.tile_overlap_in_pixels.max(MIN_SPATIAL_OVERLAP);
        if overlap > s.tile_overlap_in_pixels {
            tracing::warn!(
                overlap,
                "spatial tile overlap raised to the encoder's minimum"
            );
        }
        for axis in [3, 4] {
            check("spatial", video_shape[axis], s.tile_size_in_pixels, overlap)?;
            plans[axis] = Some(AxisPlan {
                intervals: split_with_symmetric_overlaps(
                    video_shape[axis],
                    s.tile_size_in_pixels,
                    overlap,
                ),
                map: Some((map_spatial_to_latents, SPACE_SCALE)),
            });
        }
    }
    if let Some(t) = cfg.temporal {
        let overlap = t.tile_overlap_in_frames.max(MIN_TEMPORAL_OVERLAP);
        if overlap > t.tile_overlap_in_frames {
            tracing::warn!(
                overlap,
                "temporal tile overlap raised to the encoder's minimum"
            );
        }
        check("temporal", video_shape[2], t.tile_size_in_frames, overlap)?;
        plans[2] = Some(AxisPlan {
            intervals: split_temporal_frames(video_shape[2], t.tile_size_in_frames, overlap),
            map: Some((map_temporal_to_latents, TIME_SCALE)),
        });
    }
    Ok(create_tiles(video_shape, plans))
}

fn out_range(r: &Option<Range<usize>>, len: usize) -> Range<usize> {
    r.clone().unwrap_or(0..len)
}

/// `buf[region] += value`.
fn add_into(buf: &Tensor, region: &[Range<usize>; 5], value: &Tensor) -> Result<Tensor> {
    let current = buf.i((
        region[0].clone(),
        region[1].clone(),
        region[2].clone(),
        region[3].clone(),
        region[4].clone(),
    ))?;
    Ok(buf.slice_assign(region, &current.broadcast_add(value)?)?)
}

fn narrow_frames(t: &Tensor, start: usize, len: usize) -> Result<Tensor> {
    Ok(t.narrow(2, start, len)?)
}

impl VideoDecoder {
    /// Decodes `latent` tile by tile and hands each finished temporal chunk `[B, 3, f, H, W]` to
    /// `sink`, in order (the reference's `tiled_decode` generator). Peak memory is one temporal
    /// group of tiles, whatever the video length. Unlike the reference, a config without a
    /// temporal part works (the reference crashes on it).
    pub fn tiled_decode(
        &self,
        latent: &Tensor,
        cfg: &TilingConfig,
        timestep: Option<&Tensor>,
        noise: Option<&Tensor>,
        mut sink: impl FnMut(Tensor) -> Result<()>,
    ) -> Result<()> {
        cfg.validate()?;
        self.check_latent(latent)?;
        let (b, _, f, h, w) = latent.dims5()?;
        let out_c = 3;
        let (full_f, full_h, full_w) = (1 + (f - 1) * TIME_SCALE, h * SPACE_SCALE, w * SPACE_SCALE);
        let tiles = decoder_tiles(latent.dims(), cfg);
        // Tiles come time-major: group consecutive tiles sharing a temporal output slice.
        let mut groups: Vec<Vec<&Tile>> = Vec::new();
        for tile in &tiles {
            match groups.last_mut() {
                Some(g) if g[0].output[2] == tile.output[2] => g.push(tile),
                _ => groups.push(vec![tile]),
            }
        }
        let dev = latent.device();
        let dtype = latent.dtype();
        let mut previous: Option<(Tensor, Tensor, Range<usize>)> = None;
        for group in groups {
            let t_range = out_range(&group[0].output[2], full_f);
            let len = t_range.len();
            let mut buf = Tensor::zeros((b, out_c, len, full_h, full_w), dtype, dev)?;
            // The blend weights are the same for every batch item and channel: one plane each.
            let mut weights = Tensor::zeros((1, 1, len, full_h, full_w), dtype, dev)?;
            for tile in &group {
                let [ib, ic, it, ih, iw] = tile.input.clone();
                let sub = latent.i((ib, ic, it.clone(), ih.clone(), iw.clone()))?;
                let sub_noise = match noise {
                    Some(n) => Some(n.i((.., .., it, ih, iw))?),
                    None => None,
                };
                let decoded = self.forward(
                    &sub,
                    DecodeInputs {
                        timestep,
                        noise: sub_noise.as_ref(),
                        spatial_noise: None,
                    },
                )?;
                let mask = tile.blend_mask(dev)?.to_dtype(dtype)?;
                let tile_t = out_range(&tile.output[2], full_f);
                let offset = tile_t.start - t_range.start;
                let n = tile_t.len().min(decoded.dim(2)?).min(len - offset);
                let decoded = narrow_frames(&decoded, 0, n)?;
                let mask = if mask.dim(2)? > 1 {
                    narrow_frames(&mask, 0, n)?
                } else {
                    mask
                };
                let (rh, rw) = (
                    out_range(&tile.output[3], full_h),
                    out_range(&tile.output[4], full_w),
                );
                let t = offset..offset + n;
                let region = [0..b, 0..out_c, t.clone(), rh.clone(), rw.clone()];
                buf = add_into(&buf, &region, &decoded.broadcast_mul(&mask)?)?;
                weights = add_into(&weights, &[0..1, 0..1, t, rh, rw], &mask)?;
            }
            if let Some((prev_buf, prev_w, prev_range)) = previous.take() {
                if prev_range.end > t_range.start {
                    // The overlap's sums move into the current chunk; the previous chunk only
                    // emits the frames before it (the reference also writes the sums back into
                    // the previous chunk, but never reads them).
                    let overlap = prev_range.end - t_range.start;
                    let at = t_range.start - prev_range.start;
                    let merged_buf = (narrow_frames(&prev_buf, at, overlap)?
                        + narrow_frames(&buf, 0, overlap)?)?;
                    let merged_w = (narrow_frames(&prev_w, at, overlap)?
                        + narrow_frames(&weights, 0, overlap)?)?;
                    buf = buf.slice_assign(
                        &[0..b, 0..out_c, 0..overlap, 0..full_h, 0..full_w],
                        &merged_buf,
                    )?;
                    weights = weights
                        .slice_assign(&[0..1, 0..1, 0..overlap, 0..full_h, 0..full_w], &merged_w)?;
                }
                let emit = t_range.start - prev_range.start;
                let chunk = narrow_frames(&prev_buf, 0, emit)?
                    .broadcast_div(&narrow_frames(&prev_w, 0, emit)?.clamp(1e-8, f64::MAX)?)?;
                sink(chunk)?;
            }
            previous = Some((buf, weights, t_range));
        }
        if let Some((buf, weights, _)) = previous {
            sink(buf.broadcast_div(&weights.clamp(1e-8, f64::MAX)?)?)?;
        }
        Ok(())
    }

    /// [`Self::tiled_decode`] collected into one `[B, 3, F, H, W]` tensor.
    pub fn tiled_decode_all(
        &self,
        latent: &Tensor,
        cfg: &TilingConfig,
        timestep: Option<&Tensor>,
        noise: Option<&Tensor>,
    ) -> Result<Tensor> {
        let mut chunks = Vec::new();
        self.tiled_decode(latent, cfg, timestep, noise, |c| {
            chunks.push(c);
            Ok(())
        })?;
        Ok(Tensor::cat(&chunks, 2)?)
    }
}

impl VideoEncoder {
    /// Encodes `video` tile by tile and blends the latents with the reference's 0/1 masks.
    pub fn tiled_encode(&self, video: &Tensor, cfg: &TilingConfig) -> Result<Tensor> {
        cfg.validate()?;
        let video = crop_to_valid_frames(video, SPACE_SCALE)?;
        let (b, _, f, h, w) = video.dims5()?;
        let c = self.latent_channels();
        let shape = (
            b,
            c,
            (f - 1) / TIME_SCALE + 1,
            h / SPACE_SCALE,
            w / SPACE_SCALE,
        );
        let dims = [shape.0, shape.1, shape.2, shape.3, shape.4];
        let dev = video.device();
        let dtype = video.dtype();
        let mut buf = Tensor::zeros(shape, dtype, dev)?;
        let mut weights = Tensor::zeros((1, 1, shape.2, shape.3, shape.4), dtype, dev)?;
        for tile in encoder_tiles(video.dims(), cfg)? {
            let [ib, ic, it, ih, iw] = tile.input.clone();
            let latent = self.forward(&video.i((ib, ic, it, ih, iw))?)?;
            let mask = tile.blend_mask(dev)?.to_dtype(dtype)?;
            let region: [Range<usize>; 5] =
                std::array::from_fn(|a| out_range(&tile.output[a], dims[a]));
            buf = add_into(&buf, &region, &latent.broadcast_mul(&mask)?)?;
            let [_, _, rt, rh, rw] = region;
            weights = add_into(&weights, &[0..1, 0..1, rt, rh, rw], &mask)?;
        }
        Ok(buf.broadcast_div(&weights.clamp(1e-8, f64::MAX)?)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_like_the_reference_docstring() {
        let iv = split_temporal_latents(56, 24, 8);
        assert_eq!(iv.starts, vec![0, 15, 31]);
        assert_eq!(iv.ends, vec![24, 40, 56]);
        assert_eq!(iv.left_ramps, vec![0, 9, 9]);
        assert_eq!(iv.right_ramps, vec![8, 8, 0]);
        let whole = split_with_symmetric_overlaps(10, 16, 4);
        assert_eq!(whole, DimensionIntervals::whole(10));
    }

    #[test]
    fn masks() {
        // Values printed by the reference's `compute_trapezoidal_mask_1d(5, 2, 0, False)`
        // (torch.linspace rounds the second ramp value down to 0.6666666).
        assert_eq!(
            trapezoidal_mask(5, 2, 0, false),
            vec![0.33333334, 0.6666666, 1.0, 1.0, 1.0]
        );
        assert_eq!(trapezoidal_mask(4, 2, 0, true), vec![0.0, 0.5, 1.0, 1.0]);
        assert_eq!(trapezoidal_mask(4, 0, 1, false), vec![1.0, 1.0, 1.0, 0.5]);
        assert_eq!(rectangular_mask(5, 1, 2), vec![0.0, 1.0, 1.0, 0.0, 0.0]);
    }

    #[test]
    fn rejects_illegal_tiles() {
        let cfg = TilingConfig {
            spatial: Some(SpatialTilingConfig {
                tile_size_in_pixels: 48,
                tile_overlap_in_pixels: 0,
            }),
            temporal: None,
        };
        assert!(cfg.validate().is_err());
        let cfg = TilingConfig {
            spatial: None,
            temporal: Some(TemporalTilingConfig {
                tile_size_in_frames: 16,
                tile_overlap_in_frames: 16,
            }),
        };
        assert!(cfg.validate().is_err());
        assert!(TilingConfig::reference_default().validate().is_ok());
        // 64 px tiles: the encoder raises the overlap to 64 and the reference divides by zero.
        let small = TilingConfig {
            spatial: Some(SpatialTilingConfig {
                tile_size_in_pixels: 64,
                tile_overlap_in_pixels: 0,
            }),
            temporal: None,
        };
        assert!(encoder_tiles(&[1, 3, 9, 128, 64], &small).is_err());
        assert_eq!(encoder_tiles(&[1, 3, 9, 64, 64], &small).unwrap().len(), 1);
    }
}
