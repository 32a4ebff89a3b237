//! Port of `ltx_core/conditioning/`: conditioning items that edit a patchified [`LatentState`]
//! and the self-attention mask helpers.
//!
//! An item either overwrites tokens of the target grid ([`VideoConditionByLatentIndex`]) or
//! appends its own tokens after them ([`VideoConditionByKeyframeIndex`],
//! [`VideoConditionByReferenceLatent`]); appended tokens always go to the end, so
//! [`LatentTools::clear_conditioning`](crate::tools::LatentTools::clear_conditioning) can cut them
//! off again.

use candle_core::{DType, Tensor};

use crate::error::Result;
use crate::tools::VideoLatentTools;
use crate::types::LatentState;

pub mod mask_utils;
pub mod types;

pub use mask_utils::AttentionStrength;
pub use types::{
    ConditioningItemAttentionStrengthWrapper, TemporalRegionMask, VideoConditionByKeyframeIndex,
    VideoConditionByLatentIndex, VideoConditionByReferenceLatent,
};

/// An edit of a patchified latent state before denoising.
pub trait ConditioningItem {
    /// Applies the conditioning to a patchified `state` of the video modality.
    fn apply_to(&self, state: &LatentState, tools: &VideoLatentTools) -> Result<LatentState>;
}

/// The dtype torch promotes two floating tensors to.
pub(crate) fn promote(a: DType, b: DType) -> DType {
    match (a, b) {
        _ if a == b => a,
        (DType::F64, _) | (_, DType::F64) => DType::F64,
        _ => DType::F32,
    }
}

/// `torch.cat` of two tensors along `dim`, with torch's dtype promotion.
pub(crate) fn cat_promoted(a: &Tensor, b: &Tensor, dim: usize) -> Result<Tensor> {
    let dtype = promote(a.dtype(), b.dtype());
    Ok(Tensor::cat(&[a.to_dtype(dtype)?, b.to_dtype(dtype)?], dim)?)
}

/// Checks a conditioning strength: finite and within `[0, 1]`.
pub(crate) fn check_strength(strength: f64) -> Result<()> {
    if !(strength.is_finite() && (0.0..=1.0).contains(&strength)) {
        return Err(crate::Error::Conditioning(format!(
            "strength {strength} must be within [0, 1]"
        )));
    }
    Ok(())
}
