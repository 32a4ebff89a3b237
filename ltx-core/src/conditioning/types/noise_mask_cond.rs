//! Port of `ltx_core/conditioning/types/noise_mask_cond.py`'s `TemporalRegionMask`: the denoise
//! mask set to 1 on the tokens whose time span overlaps a window and to 0 elsewhere (the retake
//! pipeline regenerates only that window).

use candle_core::{DType, Device, Tensor};

use crate::components::patchifiers::get_pixel_coords;
use crate::conditioning::ConditioningItem;
use crate::error::{Error, Result};
use crate::tools::{AudioLatentTools, VideoLatentTools};
use crate::types::LatentState;

/// Marks the tokens whose time span overlaps `[start_time, end_time)` (seconds) for denoising
/// (mask 1) and every other token as kept (mask 0). Video tokens are timed by their pixel-frame
/// bounds over `fps` (the causal VAE's first latent frame covers pixel frame 0 only); audio tokens
/// by the audio patchifier's own timestamps. The comparisons are made in f32, as the reference's.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TemporalRegionMask {
    pub start_time: f64,
    pub end_time: f64,
    pub fps: f64,
}

impl TemporalRegionMask {
    fn overlaps(&self, start: f32, end: f32) -> bool {
        end > self.start_time as f32 && start < self.end_time as f32
    }

    /// `[N]` f32 flags (1 inside the window) of the video grid's tokens.
    pub fn video_region(&self, tools: &VideoLatentTools, device: &Device) -> Result<Tensor> {
        let bounds = tools
            .patchifier
            .get_patch_grid_bounds(&tools.target_shape, &Device::Cpu)?;
        let pixel = get_pixel_coords(&bounds, tools.scale_factors, tools.causal_fix)?;
        // batch 0, frame axis: [N, 2] pixel-frame bounds
        let frames = pixel.get(0)?.get(0)?.to_dtype(DType::I64)?;
        let frames: Vec<Vec<i64>> = frames.to_vec2()?;
        let fps = self.fps as f32;
        let flags: Vec<f32> = frames
            .iter()
            .map(|b| {
                let inside = self.overlaps(b[0] as f32 / fps, b[1] as f32 / fps);
                f32::from(u8::from(inside))
            })
            .collect();
        let n = flags.len();
        Ok(Tensor::from_vec(flags, n, device)?)
    }

    /// `[B, N]` f32 flags (1 inside the window) of the audio grid's tokens.
    pub fn audio_region(&self, tools: &AudioLatentTools, device: &Device) -> Result<Tensor> {
        let bounds = tools
            .patchifier
            .get_patch_grid_bounds(&tools.target_shape, &Device::Cpu)?;
        let (b, _, n, _) = bounds.dims4()?;
        let times: Vec<f32> = bounds.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
        let flags: Vec<f32> = times
            .chunks_exact(2)
            .map(|t| f32::from(u8::from(self.overlaps(t[0], t[1]))))
            .collect();
        Ok(Tensor::from_vec(flags, (b, n), device)?)
    }

    /// The state with its first `N` tokens' denoise mask replaced by `flags` (`[N]` or `[B, N]`).
    fn write(state: &LatentState, flags: &Tensor) -> Result<LatentState> {
        let mask = &state.denoise_mask;
        let dims = mask.dims().to_vec();
        if dims.len() < 2 {
            return Err(Error::Conditioning(format!(
                "denoise mask of shape {dims:?} has no token axis"
            )));
        }
        let n = *flags.dims().last().unwrap_or(&0);
        if n > dims[1] {
            return Err(Error::Conditioning(format!(
                "the time-region mask covers {n} tokens, the latent state has {}",
                dims[1]
            )));
        }
        let mut target = dims.clone();
        target[1] = n;
        let flags = match flags.rank() {
            1 => flags.reshape((1, n))?,
            _ => flags.clone(),
        };
        let mut shape = vec![flags.dim(0)?, n];
        shape.extend(std::iter::repeat_n(1, dims.len() - 2));
        let values = flags
            .reshape(shape)?
            .broadcast_as(target.as_slice())?
            .to_dtype(mask.dtype())?
            .contiguous()?;
        let ranges: Vec<std::ops::Range<usize>> = target.iter().map(|&d| 0..d).collect();
        let mut out = state.clone();
        out.denoise_mask = mask.slice_assign(&ranges, &values)?;
        Ok(out)
    }

    /// Applies the mask to a patchified audio state.
    pub fn apply_to_audio(
        &self,
        state: &LatentState,
        tools: &AudioLatentTools,
    ) -> Result<LatentState> {
        let flags = self.audio_region(tools, state.denoise_mask.device())?;
        Self::write(state, &flags)
    }
}

impl ConditioningItem for TemporalRegionMask {
    fn apply_to(&self, state: &LatentState, tools: &VideoLatentTools) -> Result<LatentState> {
        let flags = self.video_region(tools, state.denoise_mask.device())?;
        Self::write(state, &flags)
    }
}
