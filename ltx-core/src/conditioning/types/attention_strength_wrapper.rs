//! Port of `ltx_core/conditioning/types/attention_strength_wrapper.py`.

use crate::conditioning::mask_utils::{update_attention_mask, AttentionStrength};
use crate::conditioning::ConditioningItem;
use crate::error::Result;
use crate::tools::{LatentTools, VideoLatentTools};
use crate::types::LatentState;

/// Applies an inner item that appends tokens, then sets how strongly those tokens and the noisy
/// tokens attend to each other (the inner item's own mask update is replaced).
pub struct ConditioningItemAttentionStrengthWrapper {
    pub conditioning: Box<dyn ConditioningItem + Send + Sync>,
    pub attention_mask: AttentionStrength,
}

impl ConditioningItemAttentionStrengthWrapper {
    pub fn new(
        conditioning: Box<dyn ConditioningItem + Send + Sync>,
        attention_mask: impl Into<AttentionStrength>,
    ) -> Self {
        Self {
            conditioning,
            attention_mask: attention_mask.into(),
        }
    }
}

impl ConditioningItem for ConditioningItemAttentionStrengthWrapper {
    fn apply_to(&self, state: &LatentState, tools: &VideoLatentTools) -> Result<LatentState> {
        let new_state = self.conditioning.apply_to(state, tools)?;
        let added = new_state
            .latent
            .dim(1)?
            .checked_sub(state.latent.dim(1)?)
            .ok_or_else(|| {
                crate::Error::Conditioning(
                    "the wrapped item removed tokens; it may only append".into(),
                )
            })?;
        if added == 0 {
            return Ok(new_state);
        }
        // The block structure is laid out relative to the state before the inner item ran.
        let attention_mask = update_attention_mask(
            state,
            Some(&self.attention_mask),
            tools.token_count(),
            added,
            new_state.latent.dim(0)?,
            new_state.latent.device(),
            new_state.latent.dtype(),
        )?;
        Ok(LatentState {
            attention_mask,
            ..new_state
        })
    }
}
