//! Port of `ltx_core/model/video_vae/`: the causal 3-D video VAE (encoder, decoder, tiling).

pub mod convolution;
pub mod decoder;
pub mod encoder;
pub mod model_configurator;
pub mod ops;
pub mod presets;
pub mod resnet;
pub mod sampling;
pub mod tiling;

pub use decoder::{DecodeInputs, VideoDecoder};
pub use encoder::VideoEncoder;
pub use model_configurator::{vae_decoder_keys_filter, vae_encoder_keys_filter, VideoVaeConfig};
pub use tiling::TilingConfig;
