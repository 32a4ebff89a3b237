//! Port of `ltx_core/conditioning/types/`.

mod attention_strength_wrapper;
mod keyframe_cond;
mod latent_cond;
mod noise_mask_cond;
mod reference_video_cond;

pub use attention_strength_wrapper::ConditioningItemAttentionStrengthWrapper;
pub use keyframe_cond::VideoConditionByKeyframeIndex;
pub use latent_cond::VideoConditionByLatentIndex;
pub use noise_mask_cond::TemporalRegionMask;
pub use reference_video_cond::VideoConditionByReferenceLatent;

use candle_core::Tensor;

use super::{cat_promoted, mask_utils};
use crate::error::{Error, Result};
use crate::tools::{LatentTools, VideoLatentTools};
use crate::types::{LatentState, VideoLatentShape};

/// A conditioning latent `[B, C, F, H, W]` whose batch and channels match the target grid.
fn check_latent(what: &str, latent: &Tensor, tools: &VideoLatentTools) -> Result<VideoLatentShape> {
    let shape = VideoLatentShape::from_dims(latent.dims())?;
    let tgt = tools.target_shape;
    if (shape.batch, shape.channels) != (tgt.batch, tgt.channels) {
        return Err(Error::Conditioning(format!(
            "{what} has shape {:?}; batch and channels must match the target latent {:?}",
            shape.dims(),
            tgt.dims()
        )));
    }
    Ok(shape)
}

/// Appends conditioning tokens (with their positions, a denoise mask of `1 − strength` in the
/// conditioning latent's dtype, and the grown attention mask) to the end of the sequence.
fn append_tokens(
    latent_state: &LatentState,
    tools: &VideoLatentTools,
    latent: &Tensor,
    positions: &Tensor,
    strength: f64,
) -> Result<LatentState> {
    let tokens = tools.patchifier.patchify(latent)?;
    let (b, m, _) = tokens.dims3()?;
    let (dtype, device) = (latent.dtype(), latent.device());
    if latent_state.latent.dim(0)? != b {
        return Err(Error::Conditioning(format!(
            "conditioning batch {b} differs from the latent state's {}",
            latent_state.latent.dim(0)?
        )));
    }
    let denoise_mask = Tensor::full(1.0 - strength, (b, m, 1), device)?.to_dtype(dtype)?;
    let attention_mask = mask_utils::update_attention_mask(
        latent_state,
        None,
        tools.token_count(),
        m,
        b,
        device,
        dtype,
    )?;
    Ok(LatentState {
        // the appended tokens' noisy latent starts at zero; their content is the clean latent
        // (reference 1.2.0: the noiser takes masked tokens from the clean latent)
        latent: cat_promoted(&latent_state.latent, &tokens.zeros_like()?, 1)?,
        denoise_mask: cat_promoted(&latent_state.denoise_mask, &denoise_mask, 1)?,
        positions: cat_promoted(&latent_state.positions, positions, 2)?,
        clean_latent: cat_promoted(&latent_state.clean_latent, &tokens, 1)?,
        attention_mask,
        // given-content tokens are never marked (`extend_keyframes_mask(marked=False)`)
        keyframes_mask: extend_keyframes_mask(latent_state, m, false)?,
        frozen: latent_state.frozen,
    })
}

/// The state's keyframe marker extended over `new_tokens` appended tokens, marked (ones) or not
/// (zeros); `None` when there is no marker and the new tokens are unmarked.
pub fn extend_keyframes_mask(
    state: &LatentState,
    new_tokens: usize,
    marked: bool,
) -> Result<Option<Tensor>> {
    let existing = match (&state.keyframes_mask, marked) {
        (None, false) => return Ok(None),
        (None, true) => state.denoise_mask.zeros_like()?,
        (Some(m), _) => m.clone(),
    };
    let (b, _, c) = existing.dims3()?;
    let pad = if marked {
        Tensor::ones((b, new_tokens, c), existing.dtype(), existing.device())?
    } else {
        Tensor::zeros((b, new_tokens, c), existing.dtype(), existing.device())?
    };
    Ok(Some(Tensor::cat(&[existing, pad], 1)?))
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device, Tensor};

    use super::*;
    use crate::components::patchifiers::VideoLatentPatchifier;
    use crate::conditioning::{AttentionStrength, ConditioningItem};

    fn setup() -> (VideoLatentTools, LatentState) {
        let shape = VideoLatentShape::from_dims(&[1, 4, 3, 2, 4]).unwrap();
        let tools = VideoLatentTools::new(VideoLatentPatchifier::new(1).unwrap(), shape, 24.0);
        let state = tools
            .create_initial_state(&Device::Cpu, DType::F32, None)
            .unwrap();
        (tools, state)
    }

    fn zeros(dims: &[usize]) -> Tensor {
        Tensor::zeros(dims, DType::F32, &Device::Cpu).unwrap()
    }

    fn conditioning_err(r: Result<LatentState>) -> String {
        match r {
            Err(Error::Conditioning(msg)) => msg,
            other => panic!("expected a conditioning error, got {other:?}"),
        }
    }

    #[test]
    fn image_of_the_wrong_size_is_rejected() {
        let (tools, state) = setup();
        let item = VideoConditionByLatentIndex::new(zeros(&[1, 4, 1, 2, 3]), 1.0, 0).unwrap();
        let msg = conditioning_err(item.apply_to(&state, &tools));
        assert!(msg.contains("spatial size"), "{msg}");
        let item = VideoConditionByLatentIndex::new(zeros(&[1, 5, 1, 2, 4]), 1.0, 0).unwrap();
        conditioning_err(item.apply_to(&state, &tools));
    }

    #[test]
    fn indices_outside_the_video_are_rejected() {
        let (tools, state) = setup();
        // 3 latent frames: index 3 is past the end, a 2-frame latent at index 2 overruns it
        let item = VideoConditionByLatentIndex::new(zeros(&[1, 4, 1, 2, 4]), 1.0, 3).unwrap();
        assert!(conditioning_err(item.apply_to(&state, &tools)).contains("outside"));
        let item = VideoConditionByLatentIndex::new(zeros(&[1, 4, 2, 2, 4]), 1.0, 2).unwrap();
        conditioning_err(item.apply_to(&state, &tools));
        // 3 latent frames = 17 pixel frames: keyframe 16 is the last one, 17 is outside
        let ok = VideoConditionByKeyframeIndex::new(zeros(&[1, 4, 1, 2, 4]), 16, 1.0).unwrap();
        assert_eq!(
            ok.apply_to(&state, &tools).unwrap().latent.dim(1).unwrap(),
            24 + 8
        );
        let item = VideoConditionByKeyframeIndex::new(zeros(&[1, 4, 1, 2, 4]), 17, 1.0).unwrap();
        assert!(conditioning_err(item.apply_to(&state, &tools)).contains("keyframe index 17"));
    }

    #[test]
    fn bad_strengths_and_masks_are_rejected() {
        for s in [f64::NAN, -0.1, 1.5] {
            assert!(VideoConditionByLatentIndex::new(zeros(&[1, 4, 1, 2, 4]), s, 0).is_err());
            assert!(VideoConditionByKeyframeIndex::new(zeros(&[1, 4, 1, 2, 4]), 0, s).is_err());
            assert!(VideoConditionByReferenceLatent::new(zeros(&[1, 4, 1, 2, 4]), 1, s).is_err());
        }
        assert!(VideoConditionByReferenceLatent::new(zeros(&[1, 4, 1, 2, 4]), 0, 1.0).is_err());
        let (tools, state) = setup();
        // a per-token mask whose length is not the number of appended tokens (8)
        let inner = VideoConditionByReferenceLatent::new(zeros(&[1, 4, 1, 2, 4]), 1, 1.0).unwrap();
        let wrapped = ConditioningItemAttentionStrengthWrapper::new(
            Box::new(inner),
            AttentionStrength::Tensor(zeros(&[7])),
        );
        assert!(matches!(
            wrapped.apply_to(&state, &tools),
            Err(Error::TensorShape { .. })
        ));
        // a batch mismatch between the conditioning latent and the target
        let item = VideoConditionByKeyframeIndex::new(zeros(&[2, 4, 1, 2, 4]), 0, 1.0).unwrap();
        conditioning_err(item.apply_to(&state, &tools));
    }
}
