//! Port of `ltx_core/conditioning/types/keyframe_cond.py`.

use candle_core::Tensor;

use super::{append_tokens, check_latent};
use crate::conditioning::{check_strength, ConditioningItem};
use crate::error::{Error, Result};
use crate::tools::VideoLatentTools;
use crate::types::LatentState;

/// Appends keyframe tokens whose positions start at pixel frame `frame_idx` (keyframe
/// interpolation). Wrap it in a
/// [`ConditioningItemAttentionStrengthWrapper`](super::ConditioningItemAttentionStrengthWrapper)
/// to mask its attention.
#[derive(Clone, Debug)]
pub struct VideoConditionByKeyframeIndex {
    /// Keyframe latents `[B, C, F, H, W]`.
    pub keyframes: Tensor,
    /// Pixel frame the keyframes start at.
    pub frame_idx: usize,
    /// 1 keeps the keyframes clean, 0 lets them be fully denoised.
    pub strength: f64,
}

impl VideoConditionByKeyframeIndex {
    pub fn new(keyframes: Tensor, frame_idx: usize, strength: f64) -> Result<Self> {
        check_strength(strength)?;
        Ok(Self {
            keyframes,
            frame_idx,
            strength,
        })
    }
}

impl ConditioningItem for VideoConditionByKeyframeIndex {
    fn apply_to(&self, state: &LatentState, tools: &VideoLatentTools) -> Result<LatentState> {
        check_strength(self.strength)?;
        let shape = check_latent("keyframe latent", &self.keyframes, tools)?;
        let pixel_frames = tools.target_shape.upscale(tools.scale_factors).frames;
        if self.frame_idx >= pixel_frames {
            return Err(Error::Conditioning(format!(
                "keyframe index {} is outside the video's {pixel_frames} frames",
                self.frame_idx
            )));
        }
        // Only a keyframe at frame 0 gets the causal first-frame fix.
        let causal_fix = tools.causal_fix && self.frame_idx == 0;
        // Reference 1.2.0: a keyframe latent encodes one pixel frame, so each token's frame range
        // is one frame long.
        let positions = tools.positions_with(
            &shape,
            causal_fix,
            self.frame_idx as i64,
            true,
            self.keyframes.device(),
        )?;
        append_tokens(state, tools, &self.keyframes, &positions, self.strength)
    }
}
