//! Port of `ltx_core/conditioning/`: conditioning items that edit a patchified [`LatentState`]
//! and the self-attention mask helpers.
//!
//! [`LatentState`]: crate::types::LatentState

pub mod mask_utils;
