//! Port of `ltx_core/model/audio_vae/`: the audio VAE (mel-spectrogram encoder and decoder), the
//! mel front-end and the vocoders.

pub mod anti_alias;
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

use candle_core::Tensor;

use crate::types::Audio;

/// `decode_audio`: latent -> mel (decoder) -> waveform (vocoder) at the vocoder's rate, batch
/// element dimension kept (`[B, 2, samples]`, f32).
pub fn decode_audio(
    latent: &Tensor,
    decoder: &AudioDecoder,
    vocoder: &vocoder::VocoderModel,
) -> crate::Result<Audio> {
    let mel = decoder.forward(latent)?;
    let waveform = vocoder.forward(&mel)?.to_dtype(candle_core::DType::F32)?;
    Ok(Audio {
        waveform,
        sampling_rate: vocoder.output_sampling_rate() as u32,
    })
}

/// `encode_audio`: waveform at any rate -> log-mel at the encoder's rate -> latent.
pub fn encode_audio(
    audio: &Audio,
    encoder: &AudioEncoder,
    processor: &ops::AudioProcessor,
) -> crate::Result<Tensor> {
    let mel = processor.waveform_to_mel(&audio.waveform, audio.sampling_rate as usize)?;
    encoder.forward(&mel)
}
