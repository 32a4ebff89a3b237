//! The tiled encode and decode: `VideoEncoder.tiled_encode` (`ltx_core/model/video_vae/video_vae.py`)
//! and `ConvVideoDecoder.tiled_decode` (`conv_video_decoder.py`), over the tiles of `tiling.rs`.
//!
//! Decoding streams finished temporal chunks to a sink, so memory is bounded by one temporal group
//! of tiles.

use std::ops::Range;

use candle_core::{DType, IndexOp, Tensor};

use super::decoder::{DecodeInputs, VideoDecoder};
use super::encoder::{crop_to_valid_frames, VideoEncoder};
use super::tiling::{
    decoder_tiles, encoded_shape, encoder_tiles, masks_are_complementary, out_range, Tile,
    TilingConfig,
};
use crate::Result;

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
        let scale = self.scale_factors();
        let (full_f, full_h, full_w) =
            (1 + (f - 1) * scale.time, h * scale.height, w * scale.width);
        let tiles = decoder_tiles(latent.dims(), cfg, scale);
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
    /// Encodes `video` `[B, 3, F, H, W]` tile by tile (`VideoEncoder.tiled_encode`) and blends the
    /// tile latents with their trapezoidal masks. The tiling is checked before any tile is encoded.
    pub fn tiled_encode(&self, video: &Tensor, cfg: &TilingConfig) -> Result<Tensor> {
        let scale = self.scale_factors();
        let video = crop_to_valid_frames(video, scale)?;
        let tiles = encoder_tiles(video.dims(), cfg, scale)?;
        let mut dims = encoded_shape(video.dims(), scale)?;
        dims[1] = self.latent_channels();
        let (dev, dtype) = (video.device(), video.dtype());
        let mut buf = Tensor::zeros(dims.as_slice(), dtype, dev)?;
        // Masks that sum to 1 on every axis need no normalisation (the reference skips it too).
        let mut weights = if masks_are_complementary(&tiles, &dims) {
            None
        } else {
            Some(Tensor::zeros(
                (1, 1, dims[2], dims[3], dims[4]),
                dtype,
                dev,
            )?)
        };
        for tile in &tiles {
            let [ib, ic, it, ih, iw] = tile.input.clone();
            let latent = self.forward(&video.i((ib, ic, it, ih, iw))?)?;
            let region: [Range<usize>; 5] =
                std::array::from_fn(|a| out_range(&tile.output[a], dims[a]));
            // The reference scales in float32 (its masks are float32) and adds in the model dtype.
            let scaled = tile.scale_by_masks(&latent.to_dtype(DType::F32)?)?;
            buf = add_into(&buf, &region, &scaled.to_dtype(dtype)?)?;
            if let Some(weights) = weights.as_mut() {
                let [_, _, rt, rh, rw] = region;
                let mask = tile.blend_mask(dev)?.to_dtype(dtype)?;
                *weights = add_into(weights, &[0..1, 0..1, rt, rh, rw], &mask)?;
            }
        }
        match weights {
            None => Ok(buf),
            Some(weights) => Ok(buf.broadcast_div(&weights.clamp(1e-8, f64::MAX)?)?),
        }
    }
}
