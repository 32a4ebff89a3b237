//! Port of `ltx_core/tiling.py` (1.2.0) and of the tile layouts of `video_vae.py`
//! (`prepare_tiles_for_encoding`) and `conv_video_decoder.py` (`_prepare_tiles`).
//!
//! Tiles are cut on the latent grid along time and space; overlapping tile outputs are blended with
//! per-axis masks (`Σ tile·mask / Σ mask`). The encode and decode loops are in `tiled.rs`.

use std::ops::Range;

use candle_core::{DType, Device, Tensor};
use serde::Deserialize;

use crate::types::SpatioTemporalScaleFactors;
use crate::utils::linspace_f32;
use crate::{Error, Result};

/// Smallest spatial overlap `tiled_encode` accepts (`min_overlap_pixels`).
pub const ENCODER_MIN_OVERLAP_PIXELS: usize = 64;
/// Smallest temporal overlap `tiled_encode` accepts (`min_overlap_frames`).
pub const ENCODER_MIN_OVERLAP_FRAMES: usize = 16;

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

    /// [`Self::validate`] plus the overlap floors of `tiled_encode` (1.2.0's `_validate_overlap`):
    /// a convolutional encode needs at least [`ENCODER_MIN_OVERLAP_PIXELS`] /
    /// [`ENCODER_MIN_OVERLAP_FRAMES`] of overlap to discard the tiles' padded edges. Refused
    /// whatever the video size, as in the reference (1.0.0 raised the overlap silently instead).
    pub fn validate_for_encoder(&self) -> Result<()> {
        self.validate()?;
        let refuse = |axis, found, minimum, unit| {
            Err(Error::TileOverlap {
                axis,
                found,
                minimum,
                unit,
            })
        };
        if let Some(t) = self.temporal {
            if t.tile_overlap_in_frames < ENCODER_MIN_OVERLAP_FRAMES {
                return refuse(
                    "frames",
                    t.tile_overlap_in_frames,
                    ENCODER_MIN_OVERLAP_FRAMES,
                    "frames",
                );
            }
        }
        if let Some(s) = self.spatial {
            if s.tile_overlap_in_pixels < ENCODER_MIN_OVERLAP_PIXELS {
                return refuse(
                    "height/width",
                    s.tile_overlap_in_pixels,
                    ENCODER_MIN_OVERLAP_PIXELS,
                    "px",
                );
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

/// `split_by_size`: tiles of `size` sharing `overlap` elements; the last tile ends at `len`.
/// Callers guarantee `overlap < size` (see [`latent_tile`]).
fn split_by_size(len: usize, size: usize, overlap: usize) -> DimensionIntervals {
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

/// `split_temporal_causal`: as [`split_by_size`], but every tile after the first starts one
/// latent earlier with a left ramp one longer. A causal VAE's first latent of a tile sees a single
/// frame; that extra latent gets weight 0 in the blend.
fn split_temporal_causal(len: usize, size: usize, overlap: usize) -> DimensionIntervals {
    let mut iv = split_by_size(len, size, overlap);
    for i in 1..iv.starts.len() {
        iv.starts[i] -= 1;
        iv.left_ramps[i] += 1;
    }
    iv
}

/// `TileSizeConfig.to_splitters` for one axis: the tile and overlap in latents, the tile at least
/// `max(2, overlap + 1)` so that consecutive tiles always advance.
fn latent_tile(size: usize, overlap: usize, factor: usize) -> (usize, usize) {
    let overlap = overlap / factor;
    ((size / factor).max(2.max(overlap + 1)), overlap)
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

/// Frames covered by latents `[b, e)` (`map_temporal_slice`): the first latent is one frame.
fn frames_of_latents(b: usize, e: usize, scale: usize) -> Range<usize> {
    b * scale..1 + (e - 1) * scale
}

/// Pixels covered by latents `[b, e)` (`map_spatial_slice`).
fn pixels_of_latents(b: usize, e: usize, scale: usize) -> Range<usize> {
    b * scale..e * scale
}

/// One axis's tiles: input range, output range (`None`: whole axis), mask (`None`: ones).
type AxisTiles = Vec<(Range<usize>, Option<Range<usize>>, Option<Vec<f32>>)>;

fn untiled_axis(len: usize) -> AxisTiles {
    vec![(0..len, None, None)]
}

/// Decoder tiles on one axis: latent intervals in, pixel ranges out, masks in pixels
/// (`map_temporal_slice` / `map_spatial_slice`).
fn decoder_axis(iv: &DimensionIntervals, temporal: bool, scale: usize) -> AxisTiles {
    (0..iv.starts.len())
        .map(|i| {
            let (b, e) = (iv.starts[i], iv.ends[i]);
            let (rl, rr) = (iv.left_ramps[i], iv.right_ramps[i]);
            let (out, mask) = if temporal {
                let out = frames_of_latents(b, e, scale);
                let rl = if rl == 0 { 0 } else { 1 + (rl - 1) * scale };
                let mask = trapezoidal_mask(out.len(), rl, rr * scale, true);
                (out, mask)
            } else {
                let out = pixels_of_latents(b, e, scale);
                let mask = trapezoidal_mask(out.len(), rl * scale, rr * scale, false);
                (out, mask)
            };
            (b..e, Some(out), Some(mask))
        })
        .collect()
}

/// Encoder tiles on one axis (`prepare_tiles_for_encoding`): pixel ranges in, latent intervals
/// out, masks on the latents (left ramp from 0 on the causal time axis).
fn encoder_axis(iv: &DimensionIntervals, temporal: bool, scale: usize) -> AxisTiles {
    (0..iv.starts.len())
        .map(|i| {
            let (b, e) = (iv.starts[i], iv.ends[i]);
            let input = if temporal {
                frames_of_latents(b, e, scale)
            } else {
                pixels_of_latents(b, e, scale)
            };
            let mask = trapezoidal_mask(e - b, iv.left_ramps[i], iv.right_ramps[i], temporal);
            (input, Some(b..e), Some(mask))
        })
        .collect()
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
        self.scale_by_masks(&Tensor::ones((1, 1, 1, 1, 1), DType::F32, device)?)
    }

    /// `scale_by_masks_1d`: `x` multiplied by each axis's mask in turn, in axis order (axes
    /// without a mask are left as they are).
    pub fn scale_by_masks(&self, x: &Tensor) -> Result<Tensor> {
        let mut out = x.clone();
        for (axis, m) in self.masks.iter().enumerate() {
            if let Some(m) = m {
                let mut shape = [1usize; 5];
                shape[axis] = m.len();
                let t = Tensor::from_slice(m, shape.as_slice(), x.device())?.to_dtype(x.dtype())?;
                out = out.broadcast_mul(&t)?;
            }
        }
        Ok(out)
    }
}

/// `create_tiles`: the cartesian product of the per-axis tiles, in row-major order (time
/// varies slowest among the tiled axes).
fn cartesian(per_axis: [AxisTiles; 5]) -> Vec<Tile> {
    let counts: Vec<usize> = per_axis.iter().map(Vec::len).collect();
    let total: usize = counts.iter().product();
    let mut tiles = Vec::with_capacity(total);
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

/// The factor of axis 2, 3 or 4 of a `[B, C, F, H, W]` tensor.
fn axis_scale(scale: SpatioTemporalScaleFactors, axis: usize) -> usize {
    match axis {
        2 => scale.time,
        3 => scale.height,
        _ => scale.width,
    }
}

/// Decoder tiles over the latent (`ConvVideoDecoder._prepare_tiles` with the spatial tile scaled
/// to the latent's aspect, `TileSizeConfig.from_long_side`); `scale` is the decoder's expansion.
pub fn decoder_tiles(
    latent_shape: &[usize],
    cfg: &TilingConfig,
    scale: SpatioTemporalScaleFactors,
) -> Vec<Tile> {
    let mut axes: [AxisTiles; 5] = std::array::from_fn(|a| untiled_axis(latent_shape[a]));
    if let Some(s) = cfg.spatial {
        let long_side = latent_shape[3].max(latent_shape[4]);
        for axis in [3, 4] {
            let factor = axis_scale(scale, axis);
            let size = s.tile_size_in_pixels / factor;
            let overlap = s.tile_overlap_in_pixels / factor;
            let len = latent_shape[axis];
            let lower = 2.max(overlap + 1);
            // Python's `round` rounds halves to even.
            let tile =
                lower.max((size as f64 * len as f64 / long_side as f64).round_ties_even() as usize);
            let iv = split_by_size(len, tile, overlap);
            axes[axis] = decoder_axis(&iv, false, factor);
        }
    }
    if let Some(t) = cfg.temporal {
        let (size, overlap) =
            latent_tile(t.tile_size_in_frames, t.tile_overlap_in_frames, scale.time);
        let iv = split_temporal_causal(latent_shape[2], size, overlap);
        axes[2] = decoder_axis(&iv, true, scale.time);
    }
    cartesian(axes)
}

/// The latent grid `[B, C, 1 + (F − 1) / t, H / h, W / w]` of a video `[B, C, F, H, W]` whose
/// frame count is 1 + t·k (channels kept as given).
pub(crate) fn encoded_shape(
    video_shape: &[usize],
    scale: SpatioTemporalScaleFactors,
) -> Result<[usize; 5]> {
    match *video_shape {
        [b, c, f, h, w] if f > 0 => Ok([
            b,
            c,
            (f - 1) / scale.time + 1,
            h / scale.height,
            w / scale.width,
        ]),
        _ => Err(Error::InvalidInput(format!(
            "video must be [B, C, F, H, W] with F > 0, got shape {video_shape:?}"
        ))),
    }
}

/// Encoder tiles over a video `[B, C, F, H, W]` (F = 1 + t·k, H and W multiples of the
/// encoder's compression `scale`): the split is made on the latent grid and mapped back to frames
/// and pixels (`prepare_tiles_for_encoding`). Overlaps below 64 px / 16 frames are refused
/// ([`TilingConfig::validate_for_encoder`]).
pub fn encoder_tiles(
    video_shape: &[usize],
    cfg: &TilingConfig,
    scale: SpatioTemporalScaleFactors,
) -> Result<Vec<Tile>> {
    cfg.validate_for_encoder()?;
    let latent = encoded_shape(video_shape, scale)?;
    let mut axes: [AxisTiles; 5] = std::array::from_fn(|a| untiled_axis(video_shape[a]));
    if let Some(t) = cfg.temporal {
        let (size, overlap) =
            latent_tile(t.tile_size_in_frames, t.tile_overlap_in_frames, scale.time);
        let iv = split_temporal_causal(latent[2], size, overlap);
        axes[2] = encoder_axis(&iv, true, scale.time);
    }
    if let Some(s) = cfg.spatial {
        for axis in [3, 4] {
            let factor = axis_scale(scale, axis);
            let (size, overlap) =
                latent_tile(s.tile_size_in_pixels, s.tile_overlap_in_pixels, factor);
            let iv = split_by_size(latent[axis], size, overlap);
            axes[axis] = encoder_axis(&iv, false, factor);
        }
    }
    Ok(cartesian(axes))
}

/// `masks_are_complementary`: whether, on every axis, the masks of the distinct output ranges
/// sum to 1 (within 1e-5). Blending then needs no division by the summed weights.
pub fn masks_are_complementary(tiles: &[Tile], full_shape: &[usize]) -> bool {
    const ATOL: f32 = 1e-5;
    (0..full_shape.len()).all(|axis| {
        let len = full_shape[axis];
        let mut acc = vec![0f32; len];
        let mut seen: Vec<Range<usize>> = Vec::new();
        for tile in tiles {
            let range = out_range(&tile.output[axis], len);
            if seen.contains(&range) {
                continue;
            }
            for (k, a) in acc[range.clone()].iter_mut().enumerate() {
                *a += tile.masks[axis].as_ref().map_or(1.0, |m| m[k]);
            }
            seen.push(range);
        }
        acc.iter().all(|a| (a - 1.0).abs() <= ATOL)
    })
}

/// A tile's output range on an axis (`None`: the whole axis of length `len`).
pub(crate) fn out_range(r: &Option<Range<usize>>, len: usize) -> Range<usize> {
    r.clone().unwrap_or(0..len)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RELEASED: SpatioTemporalScaleFactors = SpatioTemporalScaleFactors {
        time: 8,
        width: 32,
        height: 32,
    };

    fn spatial(size: usize, overlap: usize) -> Option<SpatialTilingConfig> {
        Some(SpatialTilingConfig {
            tile_size_in_pixels: size,
            tile_overlap_in_pixels: overlap,
        })
    }

    fn temporal(size: usize, overlap: usize) -> Option<TemporalTilingConfig> {
        Some(TemporalTilingConfig {
            tile_size_in_frames: size,
            tile_overlap_in_frames: overlap,
        })
    }

    #[test]
    fn splits_like_the_reference_docstring() {
        let iv = split_temporal_causal(56, 24, 8);
        assert_eq!(iv.starts, vec![0, 15, 31]);
        assert_eq!(iv.ends, vec![24, 40, 56]);
        assert_eq!(iv.left_ramps, vec![0, 9, 9]);
        assert_eq!(iv.right_ramps, vec![8, 8, 0]);
        let whole = split_by_size(10, 16, 4);
        assert_eq!(whole, DimensionIntervals::whole(10));
        assert_eq!(latent_tile(96, 64, 32), (3, 2));
        assert_eq!(latent_tile(24, 16, 8), (3, 2));
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
    }

    /// `(frames in, H px in, latent frames out, latent rows out)` of each tile.
    fn layout(tiles: &[Tile]) -> Vec<[Range<usize>; 4]> {
        let out = |t: &Tile, a: usize| t.output[a].clone().expect("tiled axis");
        tiles
            .iter()
            .map(|t| [t.input[2].clone(), t.input[3].clone(), out(t, 2), out(t, 3)])
            .collect()
    }

    #[test]
    fn encoder_tiles_like_the_reference() {
        // Layouts printed by 1.2.0's `prepare_tiles_for_encoding` for these shapes.
        let cfg = TilingConfig {
            spatial: spatial(96, 64),
            temporal: temporal(24, 16),
        };
        let tiles = encoder_tiles(&[1, 3, 25, 128, 32], &cfg, RELEASED).unwrap();
        assert_eq!(
            layout(&tiles),
            vec![
                [0..17, 0..96, 0..3, 0..3],
                [0..17, 32..128, 0..3, 1..4],
                [0..25, 0..96, 0..4, 0..3],
                [0..25, 32..128, 0..4, 1..4],
            ]
        );
        assert_eq!(
            tiles[3].masks[2].as_deref(),
            Some([0.0, 0.33333334, 0.6666666, 1.0].as_slice())
        );
        assert_eq!(
            tiles[3].masks[3].as_deref(),
            Some([0.33333334, 0.6666666, 1.0].as_slice())
        );
        assert!(masks_are_complementary(&tiles, &[1, 8, 4, 4, 1]));
        // Six latent frames: the causal left ramp (3) overlaps the right one (2), the masks no
        // longer sum to 1 and the blend is normalised.
        let cfg = TilingConfig {
            spatial: None,
            temporal: temporal(24, 16),
        };
        let tiles = encoder_tiles(&[1, 3, 41, 64, 64], &cfg, RELEASED).unwrap();
        let frames: Vec<_> = tiles.iter().map(|t| t.input[2].clone()).collect();
        assert_eq!(frames, vec![0..17, 0..25, 8..33, 16..41]);
        assert_eq!(
            tiles[1].masks[2].as_deref(),
            Some([0.0, 0.33333334, 0.4444444, 0.33333334].as_slice())
        );
        assert!(!masks_are_complementary(&tiles, &[1, 8, 6, 2, 2]));
    }

    #[test]
    fn rejects_illegal_tiles() {
        let cfg = TilingConfig {
            spatial: spatial(48, 0),
            temporal: None,
        };
        assert!(cfg.validate().is_err());
        let cfg = TilingConfig {
            spatial: None,
            temporal: temporal(16, 16),
        };
        assert!(cfg.validate().is_err());
        assert!(TilingConfig::reference_default().validate().is_ok());
        assert!(TilingConfig::reference_default()
            .validate_for_encoder()
            .is_ok());
        // The encoder refuses overlaps below 64 px / 16 frames, whatever the video size.
        for cfg in [
            TilingConfig {
                spatial: spatial(512, 32),
                temporal: None,
            },
            TilingConfig {
                spatial: None,
                temporal: temporal(64, 8),
            },
        ] {
            assert!(cfg.validate().is_ok());
            let err = encoder_tiles(&[1, 3, 9, 64, 64], &cfg, RELEASED).unwrap_err();
            assert!(matches!(err, Error::TileOverlap { .. }), "{err}");
        }
    }
}
