//! Port of `ltx_core/model/transformer/modality.py`: one stream's input to the transformer.

use candle_core::Tensor;

use super::text_kv_cache::ContextKey;

/// One modality's input: tokens, noise level and conditioning.
#[derive(Clone, Debug)]
pub struct Modality {
    /// Patchified latent tokens `[B, T, C]`.
    pub latent: Tensor,
    /// Noise level `[B]` or a scalar (0-d / `[1]`): drives the cross-modal AdaLN of the other
    /// stream and the prompt AdaLN.
    pub sigma: Tensor,
    /// Per-token timesteps `[B, T, 1]` (`σ · denoise_mask`) or `[B, 1]`.
    pub timesteps: Tensor,
    /// Token positions `[B, axes, T, 2]`.
    pub positions: Tensor,
    /// Text context `[B, S, D_ctx]`.
    pub context: Tensor,
    pub enabled: bool,
    /// Optional text mask `[B, S]` (integer 1 = keep, or an additive float bias).
    pub context_mask: Option<Tensor>,
    /// Optional self-attention weights `[B, T, T]` in `[0, 1]`.
    pub attention_mask: Option<Tensor>,
    /// Optional `[B, T, 1]` marker of the tokens that encode a single pixel frame (the first
    /// latent frame, generated keyframe slots): they get the model's keyframe embedding, where
    /// it has one.
    pub keyframes_mask: Option<Tensor>,
    /// Identity of `context` across the steps of a stage ([`ContextKey::of`] the prompt's
    /// tensor): layers with a text K/V cache compute its keys and values once. `None`: always
    /// computed.
    pub context_key: Option<ContextKey>,
}
