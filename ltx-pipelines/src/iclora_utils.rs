//! Port of `ltx_pipelines/iclora_utils.py` and the mask helpers of `ic_lora.py`: a LoRA's
//! `reference_downscale_factor`, and the attention mask made from a grayscale mask video and
//! brought to the reference latent grid.

use std::path::Path;

use candle_core::{DType, Tensor};
use ltx_core::loader::SafetensorsFiles;

use crate::utils::model_ledger::LoraSpec;
use crate::{Error, Result};

/// The `reference_downscale_factor` a LoRA's safetensors metadata declares (1 when absent).
pub fn read_reference_downscale_factor(path: &Path) -> Result<usize> {
    let files = SafetensorsFiles::open(&[path])?;
    match files.metadata_entry("reference_downscale_factor") {
        None => Ok(1),
        Some(text) => match text.trim().parse::<usize>() {
            Ok(f) if f >= 1 => Ok(f),
            _ => Err(Error::InvalidArgument(format!(
                "LoRA `{}`: reference_downscale_factor {text:?} is not a positive integer",
                path.display()
            ))),
        },
    }
}

/// The reference downscale factor of a set of LoRAs: the one factor they declare (1 when none
/// does); LoRAs declaring different factors cannot be combined.
pub fn reference_downscale_factor(loras: &[LoraSpec]) -> Result<usize> {
    let mut factor = 1;
    for lora in loras {
        let f = read_reference_downscale_factor(&lora.path)?;
        if f != 1 {
            if factor != 1 && factor != f {
                return Err(Error::InvalidArgument(format!(
                    "LoRA `{}` declares reference_downscale_factor {f}, another LoRA {factor}: \
                     LoRAs with different reference scales cannot be combined",
                    lora.path.display()
                )));
            }
            factor = f;
        }
    }
    Ok(factor)
}

/// The grayscale attention mask of a decoded mask video (`_load_mask_video` after decoding):
/// `pixels` `[B, 3, F, H, W]` in [-1, 1] -> channel mean mapped to [0, 1], `[B, 1, F, H, W]`, in
/// the input dtype (each op rounded to it, as the reference's bf16 arithmetic).
pub fn mask_from_pixels(pixels: &Tensor) -> Result<Tensor> {
    let dtype = pixels.dtype();
    let round = |t: Tensor| -> Result<Tensor> { Ok(t.to_dtype(dtype)?.to_dtype(DType::F32)?) };
    let mean = round(pixels.to_dtype(DType::F32)?.mean_keepdim(1)?)?;
    let shifted = round((mean + 1.0)?)?;
    let halved = round((shifted / 2.0)?)?;
    Ok(halved.clamp(0f32, 1f32)?.to_dtype(dtype)?)
}

/// Averages of `input` over the windows adaptive average pooling gives output cell `i` of `out`
/// cells (`floor(i·n/out) .. ceil((i+1)·n/out)`: area interpolation).
fn area_windows(n: usize, out: usize) -> Vec<(usize, usize)> {
    (0..out)
        .map(|i| (i * n / out, ((i + 1) * n).div_ceil(out)))
        .collect()
}

/// A pixel-space attention mask `[B, 1, F, H, W]` brought to the reference latent grid
/// (`_downsample_mask_to_latent`): area-interpolated to `h_lat x w_lat` per frame, then pixel
/// frame 0 kept for latent frame 0 and the other frames averaged in groups of
/// `(F − 1) / (f_lat − 1)`. Returns `[B, f_lat·h_lat·w_lat]` in token order, in the input dtype
/// (each stage rounded to it, f32 accumulation).
pub fn downsample_mask_to_latent(
    mask: &Tensor,
    f_lat: usize,
    h_lat: usize,
    w_lat: usize,
) -> Result<Tensor> {
    let dtype = mask.dtype();
    let (b, c, f_pix, h, w) = mask.dims5()?;
    if c != 1 || f_lat == 0 || h_lat == 0 || w_lat == 0 || h == 0 || w == 0 || f_pix == 0 {
        return Err(Error::InvalidArgument(format!(
            "attention mask {:?} cannot be brought to a {f_lat}x{h_lat}x{w_lat} latent grid: \
             expected [B, 1, F, H, W]",
            mask.dims()
        )));
    }
    let t = if f_pix > 1 && f_lat > 1 {
        if (f_pix - 1) % (f_lat - 1) != 0 {
            return Err(Error::InvalidArgument(format!(
                "the attention mask has {f_pix} frames, which do not map onto {f_lat} latent \
                 frames ((frames − 1) must be a multiple of {})",
                f_lat - 1
            )));
        }
        Some((f_pix - 1) / (f_lat - 1))
    } else {
        None
    };
    let round = |v: f32| -> f32 {
        match dtype {
            DType::BF16 => half::bf16::from_f32(v).to_f32(),
            DType::F16 => half::f16::from_f32(v).to_f32(),
            _ => v,
        }
    };
    let data: Vec<f32> = mask.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
    let (rows, cols) = (area_windows(h, h_lat), area_windows(w, w_lat));
    // spatial area interpolation of every frame
    let mut spatial = vec![0f32; b * f_pix * h_lat * w_lat];
    for (bf, frame) in data.chunks_exact(h * w).enumerate() {
        for (i, &(r0, r1)) in rows.iter().enumerate() {
            for (j, &(c0, c1)) in cols.iter().enumerate() {
                let mut sum = 0f32;
                for r in r0..r1 {
                    sum += frame[r * w + c0..r * w + c1].iter().sum::<f32>();
                }
                let area = ((r1 - r0) * (c1 - c0)) as f32;
                spatial[(bf * h_lat + i) * w_lat + j] = round(sum / area);
            }
        }
    }
    let plane = h_lat * w_lat;
    let frames_out = if t.is_some() { f_lat } else { 1 };
    let mut out = Vec::with_capacity(b * frames_out * plane);
    for bi in 0..b {
        let clip = &spatial[bi * f_pix * plane..(bi + 1) * f_pix * plane];
        out.extend_from_slice(&clip[..plane]);
        if let Some(t) = t {
            for g in 0..f_lat - 1 {
                for p in 0..plane {
                    let sum: f32 = (0..t).map(|k| clip[(1 + g * t + k) * plane + p]).sum();
                    out.push(round(sum / t as f32));
                }
            }
        }
    }
    Ok(Tensor::from_vec(out, (b, frames_out * plane), mask.device())?.to_dtype(dtype)?)
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    #[test]
    fn area_windows_cover_the_input() {
        assert_eq!(area_windows(4, 2), vec![(0, 2), (2, 4)]);
        // non-integer ratio: overlapping windows as adaptive average pooling
        assert_eq!(area_windows(5, 3), vec![(0, 2), (1, 4), (3, 5)]);
    }

    #[test]
    fn mask_frames_must_fit_the_latent_grid() -> Result<()> {
        let m = Tensor::ones((1, 1, 10, 4, 4), DType::F32, &Device::Cpu)?;
        assert!(downsample_mask_to_latent(&m, 3, 1, 1).is_err());
        let m = Tensor::ones((1, 1, 9, 4, 4), DType::F32, &Device::Cpu)?;
        let out = downsample_mask_to_latent(&m, 3, 2, 2)?;
        assert_eq!(out.dims(), &[1, 12]);
        Ok(())
    }
}
