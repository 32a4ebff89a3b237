//! Port of `ltx_core/model/transformer/adaln.py`: AdaLN-single (PixArt-α) modulation from a
//! timestep.

use candle_core::{DType, Module, Result, Tensor};
use candle_nn::{Linear, VarBuilder};

use super::timestep_embedding::PixArtAlphaCombinedTimestepSizeEmbeddings;

/// Modulation rows per block: shift/scale/gate for self-attention and feed-forward (6), plus
/// shift/scale/gate of the text cross-attention query with the cross-attention AdaLN (9).
pub fn adaln_embedding_coefficient(cross_attention_adaln: bool) -> usize {
    if cross_attention_adaln {
        9
    } else {
        6
    }
}

/// Timestep -> (`coefficient · dim` modulation, `dim` embedded timestep).
#[derive(Clone, Debug)]
pub struct AdaLayerNormSingle {
    emb: PixArtAlphaCombinedTimestepSizeEmbeddings,
    linear: Linear,
}

impl AdaLayerNormSingle {
    pub fn new(embedding_dim: usize, coefficient: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            emb: PixArtAlphaCombinedTimestepSizeEmbeddings::new(embedding_dim, vb.pp("emb"))?,
            linear: candle_nn::linear(embedding_dim, coefficient * embedding_dim, vb.pp("linear"))?,
        })
    }

    /// `timestep` `[N]` (already scaled by the timestep multiplier) -> (`[N, k·D]`, `[N, D]`),
    /// the sinusoid computed in f32 and the MLP in `dtype`.
    pub fn forward(&self, timestep: &Tensor, dtype: DType) -> Result<(Tensor, Tensor)> {
        let embedded = self.emb.forward(timestep, dtype)?;
        let modulation = self.linear.forward(&embedded.silu()?)?;
        Ok((modulation, embedded))
    }
}
