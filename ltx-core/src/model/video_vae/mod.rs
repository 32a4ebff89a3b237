//! Port of `ltx_core/model/video_vae/`: the causal 3-D video VAE (encoder, decoder, tiling).

pub mod convolution;
pub mod decoder;
pub mod encoder;
pub mod model_configurator;
pub mod ops;
pub mod presets;
pub mod resnet;
pub mod sampling;
mod tiled;
pub mod tiling;

pub use decoder::{DecodeInputs, VideoDecoder};
pub use encoder::VideoEncoder;
pub use model_configurator::{vae_decoder_keys_filter, vae_encoder_keys_filter, VideoVaeConfig};
pub use tiling::TilingConfig;

/// A video decoder behind another runtime (e.g. an exported Core ML package): normalised latent
/// `[1, C, F', H', W']` in, pixels `[1, 3, F, H, W]` (about [-1, 1], f32) out, on the latent's
/// device. The pipelines use one in place of [`VideoDecoder`] when given.
pub trait LatentVideoDecoder: Send + Sync {
    /// What the progress output calls it.
    fn name(&self) -> &str;
    /// Checks a latent shape `[C, F', H', W']` before any work (fixed-shape backends).
    fn check_latent_shape(&self, shape: [usize; 4]) -> crate::Result<()>;
    fn decode(&self, latent: &candle_core::Tensor) -> crate::Result<candle_core::Tensor>;
}
