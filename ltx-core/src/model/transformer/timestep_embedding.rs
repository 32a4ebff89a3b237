//! Port of `ltx_core/model/transformer/timestep_embedding.py`.

use candle_core::{DType, Module, Result, Tensor, D};
use candle_nn::{Linear, VarBuilder};

/// Sinusoidal embedding of `timesteps` `[N]` → `[N, dim]` (f32), as `get_timestep_embedding`.
pub fn timestep_embedding(
    timesteps: &Tensor,
    dim: usize,
    flip_sin_to_cos: bool,
    downscale_freq_shift: f64,
    scale: f64,
    max_period: f64,
) -> Result<Tensor> {
    if timesteps.rank() != 1 {
        candle_core::bail!("timesteps must be 1-D, got shape {:?}", timesteps.dims())
    }
    let half = dim / 2;
    let dev = timesteps.device();
    // exp(-ln(max_period) * i / (half - shift)) computed in f32 like the reference.
    let exponent =
        (Tensor::arange(0u32, half as u32, dev)?.to_dtype(DType::F32)? * (-(max_period.ln())))?;
    let freqs = (exponent / (half as f64 - downscale_freq_shift))?.exp()?;
    let args = timesteps
        .to_dtype(DType::F32)?
        .unsqueeze(1)?
        .broadcast_mul(&freqs.unsqueeze(0)?)?;
    let args = (args * scale)?;
    let (sin, cos) = (args.sin()?, args.cos()?);
    let emb = if flip_sin_to_cos {
        Tensor::cat(&[cos, sin], D::Minus1)?
    } else {
        Tensor::cat(&[sin, cos], D::Minus1)?
    };
    if dim % 2 == 1 {
        emb.pad_with_zeros(D::Minus1, 0, 1)
    } else {
        Ok(emb)
    }
}

/// `TimestepEmbedding`: linear → SiLU → linear.
#[derive(Clone, Debug)]
pub struct TimestepEmbedding {
    linear_1: Linear,
    linear_2: Linear,
}

impl TimestepEmbedding {
    pub fn new(in_channels: usize, time_embed_dim: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            linear_1: candle_nn::linear(in_channels, time_embed_dim, vb.pp("linear_1"))?,
            linear_2: candle_nn::linear(time_embed_dim, time_embed_dim, vb.pp("linear_2"))?,
        })
    }
}

impl Module for TimestepEmbedding {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.linear_2.forward(&self.linear_1.forward(x)?.silu()?)
    }
}

/// `PixArtAlphaCombinedTimestepSizeEmbeddings` with `size_emb_dim = 0`: a 256-channel sinusoid
/// (cos first, no frequency shift) projected to `embedding_dim`.
#[derive(Clone, Debug)]
pub struct PixArtAlphaCombinedTimestepSizeEmbeddings {
    timestep_embedder: TimestepEmbedding,
}

impl PixArtAlphaCombinedTimestepSizeEmbeddings {
    const PROJ_CHANNELS: usize = 256;

    pub fn new(embedding_dim: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            timestep_embedder: TimestepEmbedding::new(
                Self::PROJ_CHANNELS,
                embedding_dim,
                vb.pp("timestep_embedder"),
            )?,
        })
    }

    /// `timestep` `[N]` → `[N, embedding_dim]` in `dtype`.
    pub fn forward(&self, timestep: &Tensor, dtype: DType) -> Result<Tensor> {
        let proj = timestep_embedding(timestep, Self::PROJ_CHANNELS, true, 0.0, 1.0, 10000.0)?;
        self.timestep_embedder.forward(&proj.to_dtype(dtype)?)
    }
}
