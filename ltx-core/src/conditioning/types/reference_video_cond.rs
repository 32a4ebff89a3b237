//! Port of `ltx_core/conditioning/types/reference_video_cond.py`.

use candle_core::Tensor;

use super::{append_tokens, check_latent};
use crate::conditioning::{check_strength, ConditioningItem};
use crate::error::{Error, Result};
use crate::tools::VideoLatentTools;
use crate::types::LatentState;

/// Appends the tokens of a reference video (IC-LoRA control signal) after the target's.
///
/// A reference encoded at `1 / downscale_factor` of the target resolution gets its spatial
/// positions multiplied by `downscale_factor`, so it lines up with the target grid as in training.
#[derive(Clone, Debug)]
pub struct VideoConditionByReferenceLatent {
    /// Reference latents `[B, C, F, H, W]`.
    pub latent: Tensor,
    pub downscale_factor: usize,
    pub strength: f64,
}

impl VideoConditionByReferenceLatent {
    pub fn new(latent: Tensor, downscale_factor: usize, strength: f64) -> Result<Self> {
        check_strength(strength)?;
        if downscale_factor == 0 {
            return Err(Error::Conditioning(
                "downscale factor must be at least 1".into(),
            ));
        }
        Ok(Self {
            latent,
            downscale_factor,
            strength,
        })
    }
}

impl ConditioningItem for VideoConditionByReferenceLatent {
    fn apply_to(&self, state: &LatentState, tools: &VideoLatentTools) -> Result<LatentState> {
        check_strength(self.strength)?;
        let shape = check_latent("reference latent", &self.latent, tools)?;
        let device = self.latent.device();
        let mut positions = tools.positions_for(&shape, tools.causal_fix, 0, device)?;
        if self.downscale_factor != 1 {
            let scale = Tensor::new(
                &[
                    1f32,
                    self.downscale_factor as f32,
                    self.downscale_factor as f32,
                ],
                device,
            )?
            .reshape((1, 3, 1, 1))?;
            positions = positions.broadcast_mul(&scale)?;
        }
        append_tokens(state, tools, &self.latent, &positions, self.strength)
    }
}
