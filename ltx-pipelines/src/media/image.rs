//! Still images in (the image half of `ltx_pipelines/utils/media_io.py`): decoding PNG / JPEG /
//! WebP with the `image` crate, the reference's bilinear resize + centre crop, and the conditioning
//! image preparation (`load_image_conditioning`).
//!
//! The resize functions reproduce `torch.nn.functional.interpolate(mode="bilinear",
//! align_corners=False)` without antialiasing, in f32 on the CPU, as the reference calls it on a
//! channels-last view (`h w c -> 1 c h w`).

use std::path::Path;

use candle_core::{DType, Device, Tensor};

use super::h264::encode_single_frame_round_trip;
use super::media_err;
use crate::{Error, Result};

/// The reference's default H.264 CRF for conditioning images (`DEFAULT_IMAGE_CRF`).
pub const DEFAULT_IMAGE_CRF: f64 = 33.0;

/// Decodes a PNG, JPEG or WebP file into `[H, W, 3]` u8 RGB on the CPU. Alpha is dropped without
/// blending, as the reference's `np.array(image)[..., :3]` does; grey images are expanded to RGB
/// (where the reference would mis-slice a 2-D array) and 16-bit images are reduced to 8 bits.
pub fn load_image(path: &Path) -> Result<Tensor> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let format = image::guess_format(&bytes)
        .map_err(|e| media_err(path, format!("not a recognised image ({e})")))?;
    if !matches!(
        format,
        image::ImageFormat::Png | image::ImageFormat::Jpeg | image::ImageFormat::WebP
    ) {
        return Err(media_err(
            path,
            format!("unsupported image format {format:?}; supported: PNG, JPEG, WebP"),
        ));
    }
    let img = image::load_from_memory_with_format(&bytes, format)
        .map_err(|e| media_err(path, format!("cannot decode the {format:?} image ({e})")))?;
    let rgb = img.to_rgb8();
    let (w, h) = (rgb.width() as usize, rgb.height() as usize);
    if w == 0 || h == 0 {
        return Err(media_err(path, "the image is empty"));
    }
    Ok(Tensor::from_vec(rgb.into_raw(), (h, w, 3), &Device::Cpu)?)
}

/// One output position of a linear resampling along an axis: the two source indices and weights,
/// computed as PyTorch's `compute_source_index_and_lambda` does (half-pixel centres, the source
/// index clamped at 0, the upper neighbour clamped to the last sample).
#[derive(Clone, Copy, Debug)]
struct Tap {
    i0: usize,
    i1: usize,
    w0: f32,
    w1: f32,
}

fn linear_taps(in_size: usize, out_size: usize) -> Vec<Tap> {
    // `size=` was given, so torch derives the ratio in f32 from the sizes (not a scale factor).
    let ratio = in_size as f32 / out_size as f32;
    (0..out_size)
        .map(|o| {
            let src = (ratio * (o as f32 + 0.5) - 0.5).max(0.0);
            let i0 = src as usize;
            let i1 = if i0 + 1 < in_size { i0 + 1 } else { i0 };
            let w1 = (src - i0 as f32).clamp(0.0, 1.0);
            Tap {
                i0,
                i1,
                w0: 1.0 - w1,
                w1,
            }
        })
        .collect()
}

/// `(new_h, new_w, crop_top, crop_left)` of the reference: scale so the image covers the target
/// (the larger of the two ratios, in f64 like Python), ceil, then centre.
fn cover_geometry(
    src_h: usize,
    src_w: usize,
    height: usize,
    width: usize,
) -> (usize, usize, usize, usize) {
    let scale = (height as f64 / src_h as f64).max(width as f64 / src_w as f64);
    let new_h = (src_h as f64 * scale).ceil() as usize;
    let new_w = (src_w as f64 * scale).ceil() as usize;
    (
        new_h,
        new_w,
        new_h.saturating_sub(height) / 2,
        new_w.saturating_sub(width) / 2,
    )
}

/// Resizes so the image covers `height x width` (aspect ratio kept), then centre-crops to exactly
/// that size (`resize_and_center_crop` of the reference).
///
/// `tensor`: `[H, W, C]` or `[F, H, W, C]` of any numeric dtype (values kept, e.g. 0..255).
/// Returns `[1, C, 1, height, width]` (3-D input) or `[1, C, F, height, width]` (4-D input), f32,
/// on the input's device.
pub fn resize_and_center_crop(tensor: &Tensor, height: usize, width: usize) -> Result<Tensor> {
    let (f, src_h, src_w, c) = match *tensor.dims() {
        [h, w, c] => (1, h, w, c),
        [f, h, w, c] => (f, h, w, c),
        _ => {
            return Err(Error::InvalidArgument(format!(
                "resize_and_center_crop expects [H, W, C] or [F, H, W, C], got {:?}",
                tensor.dims()
            )))
        }
    };
    if height == 0 || width == 0 || src_h == 0 || src_w == 0 || c == 0 || f == 0 {
        return Err(Error::InvalidArgument(format!(
            "resize_and_center_crop: cannot resize {:?} to {height}x{width}",
            tensor.dims()
        )));
    }
    let device = tensor.device().clone();
    let src: Vec<f32> = tensor
        .to_device(&Device::Cpu)?
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1()?;
    let (new_h, new_w, top, left) = cover_geometry(src_h, src_w, height, width);
    let rows = &linear_taps(src_h, new_h)[top..top + height];
    let cols = &linear_taps(src_w, new_w)[left..left + width];

    // output [C, F, height, width] (the leading batch of 1 is added by the reshape)
    let mut out = vec![0f32; c * f * height * width];
    let plane = height * width;
    for fi in 0..f {
        let frame = &src[fi * src_h * src_w * c..(fi + 1) * src_h * src_w * c];
        for (oy, r) in rows.iter().enumerate() {
            let row0 = &frame[r.i0 * src_w * c..(r.i0 + 1) * src_w * c];
            let row1 = &frame[r.i1 * src_w * c..(r.i1 + 1) * src_w * c];
            for (ox, q) in cols.iter().enumerate() {
                // torch's channels-last kernel: four corner weights, summed in this order
                let (w00, w01) = (r.w0 * q.w0, r.w0 * q.w1);
                let (w10, w11) = (r.w1 * q.w0, r.w1 * q.w1);
                for ch in 0..c {
                    let v = row0[q.i0 * c + ch] * w00
                        + row0[q.i1 * c + ch] * w01
                        + row1[q.i0 * c + ch] * w10
                        + row1[q.i1 * c + ch] * w11;
                    out[(ch * f + fi) * plane + oy * width + ox] = v;
                }
            }
        }
    }
    Ok(Tensor::from_vec(out, (1, c, f, height, width), &Device::Cpu)?.to_device(&device)?)
}

/// Resizes so the longer side becomes `long_side`, keeping the aspect ratio
/// (`resize_aspect_ratio_preserving` of the reference: target sizes truncated, then
/// [`resize_and_center_crop`]).
///
/// `image`: `[H, W, C]` → `[h, w, C]` f32. The reference only accepts 3-D input; a `[F, H, W, C]`
/// stack is also taken here and gives `[F, h, w, C]` (`[h, w, C]` when `F == 1`, as the reference's
/// last line does).
pub fn resize_aspect_ratio_preserving(image: &Tensor, long_side: usize) -> Result<Tensor> {
    let dims = image.dims();
    if !(3..=4).contains(&dims.len()) || long_side == 0 {
        return Err(Error::InvalidArgument(format!(
            "resize_aspect_ratio_preserving expects [H, W, C] or [F, H, W, C] and a long side > 0, \
             got {dims:?} and {long_side}"
        )));
    }
    let (h, w) = (dims[dims.len() - 3], dims[dims.len() - 2]);
    let scale = long_side as f64 / h.max(w) as f64;
    let (th, tw) = ((h as f64 * scale) as usize, (w as f64 * scale) as usize);
    if th == 0 || tw == 0 {
        return Err(Error::InvalidArgument(format!(
            "resize_aspect_ratio_preserving: {h}x{w} to long side {long_side} leaves an empty side"
        )));
    }
    // [1, C, F, h, w] -> [F, h, w, C]
    let resized = resize_and_center_crop(image, th, tw)?
        .squeeze(0)?
        .permute((1, 2, 3, 0))?
        .contiguous()?;
    if resized.dim(0)? == 1 {
        Ok(resized.squeeze(0)?)
    } else {
        Ok(resized)
    }
}

/// The conditioning image of the reference's `load_image_conditioning`: decode, H.264 round trip at
/// `crf` (0 skips it; see [`encode_single_frame_round_trip`] for how CRF is approximated), resize +
/// centre crop to `height x width`, then map 0..255 to [-1, 1].
///
/// Returns `[1, 3, 1, height, width]` f32 on the CPU (the caller moves and casts it).
pub fn load_image_conditioning(
    path: &Path,
    height: usize,
    width: usize,
    crf: f64,
) -> Result<Tensor> {
    let image = load_image(path)?;
    let (h, w, _) = image.dims3()?;
    let image = if crf == 0.0 {
        image
    } else {
        let rgb: Vec<u8> = image.flatten_all()?.to_vec1()?;
        let out = encode_single_frame_round_trip(&rgb, w, h, crf).map_err(|e| match e {
            Error::Media { reason, .. } => media_err(path, reason),
            other => other,
        })?;
        // the round trip crops to even sizes, as the reference's encoder does
        Tensor::from_vec(out, (h / 2 * 2, w / 2 * 2, 3), &Device::Cpu)?
    };
    let resized = resize_and_center_crop(&image, height, width)?;
    Ok(((resized / 127.5)? - 1.0)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_png(path: &Path, w: u32, h: u32) {
        let img = image::RgbaImage::from_fn(w, h, |x, y| {
            image::Rgba([(x * 7) as u8, (y * 5) as u8, ((x + y) * 3) as u8, 17])
        });
        img.save(path).unwrap();
    }

    #[test]
    fn png_loads_without_alpha() -> Result<()> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.png");
        write_png(&p, 10, 6);
        let t = load_image(&p)?;
        assert_eq!(t.dims(), &[6, 10, 3]);
        let px: Vec<u8> = t.get(2)?.get(3)?.to_vec1()?;
        assert_eq!(px, vec![21, 10, 15]);
        Ok(())
    }

    #[test]
    fn identity_and_geometry() -> Result<()> {
        let data: Vec<f32> = (0..4 * 6 * 3).map(|v| v as f32).collect();
        let t = Tensor::from_vec(data.clone(), (4, 6, 3), &Device::Cpu)?;
        // same size: an exact copy, channels first
        let same = resize_and_center_crop(&t, 4, 6)?;
        assert_eq!(same.dims(), &[1, 3, 1, 4, 6]);
        let back: Vec<f32> = same
            .squeeze(0)?
            .squeeze(1)?
            .permute((1, 2, 0))?
            .flatten_all()?
            .to_vec1()?;
        assert_eq!(back, data);
        // aspect change on a frame stack
        let stack = Tensor::stack(&[&t, &t], 0)?;
        assert_eq!(
            resize_and_center_crop(&stack, 5, 5)?.dims(),
            &[1, 3, 2, 5, 5]
        );
        let a = resize_aspect_ratio_preserving(&t, 12)?;
        assert_eq!(a.dims(), &[8, 12, 3]);
        assert!(resize_and_center_crop(&t.flatten_all()?, 2, 2).is_err());
        Ok(())
    }

    #[test]
    fn conditioning_range_and_shape() -> Result<()> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.png");
        write_png(&p, 33, 21);
        for crf in [0.0, DEFAULT_IMAGE_CRF] {
            let c = load_image_conditioning(&p, 32, 48, crf)?;
            assert_eq!(c.dims(), &[1, 3, 1, 32, 48]);
            let v: Vec<f32> = c.flatten_all()?.to_vec1()?;
            assert!(v.iter().all(|x| (-1.0..=1.0).contains(x)));
        }
        Ok(())
    }

    #[test]
    fn bad_images_are_typed_errors() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            load_image(&dir.path().join("missing.png")),
            Err(Error::Io { .. })
        ));
        let p = dir.path().join("corrupt.png");
        write_png(&p, 16, 16);
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
        assert!(matches!(load_image(&p), Err(Error::Media { .. })));
        let t = dir.path().join("text.png");
        std::fs::write(&t, b"definitely not an image").unwrap();
        assert!(matches!(load_image(&t), Err(Error::Media { .. })));
    }
}
