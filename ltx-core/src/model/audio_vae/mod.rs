//! Port of `ltx_core/model/audio_vae/`: the audio VAE (mel-spectrogram encoder and decoder) so far.

pub mod attention;
#[allow(clippy::module_inception)]
pub mod audio_vae;
pub mod causal_conv_2d;
pub mod downsample;
pub mod model_configurator;
pub mod ops;
pub mod resnet;
pub mod upsample;
pub mod vocoder;

pub use audio_vae::{AudioDecoder, AudioEncoder};
pub use model_configurator::{
    audio_vae_decoder_keys_filter, audio_vae_encoder_keys_filter, AudioVaeConfig, CausalityAxis,
    NormType,
};
