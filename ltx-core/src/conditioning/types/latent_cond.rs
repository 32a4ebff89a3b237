//! Port of `ltx_core/conditioning/types/latent_cond.py`.

use candle_core::Tensor;

use crate::conditioning::{check_strength, ConditioningItem};
use crate::error::{Error, Result};
use crate::tools::VideoLatentTools;
use crate::types::LatentState;

/// Writes a clean latent (e.g. an encoded image) over the target grid's tokens starting at
/// latent frame `latent_idx`, with denoise strength `1 − strength` there.
#[derive(Clone, Debug)]
pub struct VideoConditionByLatentIndex {
    pub latent: Tensor,
    pub strength: f64,
    pub latent_idx: usize,
}

impl VideoConditionByLatentIndex {
    pub fn new(latent: Tensor, strength: f64, latent_idx: usize) -> Result<Self> {
        check_strength(strength)?;
        Ok(Self {
            latent,
            strength,
            latent_idx,
        })
    }
}

impl ConditioningItem for VideoConditionByLatentIndex {
    fn apply_to(&self, state: &LatentState, tools: &VideoLatentTools) -> Result<LatentState> {
        check_strength(self.strength)?;
        let tgt = tools.target_shape;
        let dims = self.latent.dims();
        let &[b, c, f, h, w] = dims else {
            return Err(Error::Conditioning(format!(
                "conditioning latent has shape {dims:?}, expected [B, C, F, H, W]"
            )));
        };
        if (b, c, h, w) != (tgt.batch, tgt.channels, tgt.height, tgt.width) {
            return Err(Error::Conditioning(format!(
                "conditioning latent {dims:?} does not fit the latent grid {:?}: batch, channels \
                 and the spatial size must match (is the image the video's size?)",
                tgt.dims()
            )));
        }
        if self.latent_idx + f > tgt.frames {
            return Err(Error::Conditioning(format!(
                "latent frames {}..{} are outside the video's {} latent frames",
                self.latent_idx,
                self.latent_idx + f,
                tgt.frames
            )));
        }
        let tokens = tools.patchifier.patchify(&self.latent)?;
        let start = tools
            .patchifier
            .get_token_count(&crate::types::VideoLatentShape {
                frames: self.latent_idx,
                ..tgt
            });
        let stop = start + tokens.dim(1)?;
        if stop > state.latent.dim(1)? {
            return Err(Error::Conditioning(format!(
                "tokens {start}..{stop} are outside the latent state's {} tokens",
                state.latent.dim(1)?
            )));
        }
        let write = |dst: &Tensor, src: &Tensor| -> Result<Tensor> {
            Ok(dst.slice_assign(
                &[0..b, start..stop, 0..dst.dim(2)?],
                &src.to_dtype(dst.dtype())?,
            )?)
        };
        let mask = &state.denoise_mask;
        let fill = Tensor::full(
            1.0 - self.strength,
            (b, stop - start, mask.dim(2)?),
            mask.device(),
        )?;
        Ok(LatentState {
            // reference 1.2.0 writes only the clean latent; the noiser takes these tokens from it
            latent: state.latent.clone(),
            clean_latent: write(&state.clean_latent, &tokens)?,
            denoise_mask: write(mask, &fill)?,
            positions: state.positions.clone(),
            attention_mask: state.attention_mask.clone(),
            keyframes_mask: state.keyframes_mask.clone(),
            frozen: state.frozen,
        })
    }
}
