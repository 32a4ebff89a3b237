//! The model blocks around the diffusion stages (the non-diffusion half of
//! `ltx_pipelines/utils/blocks.py`): prompt encoding (Gemma, optional prompt enhancement, the
//! embeddings processor), streamed video decoding, audio encoding and decoding. Each block builds
//! its components from the ledger and drops them when it returns.

use candle_core::{DType, Tensor};
use ltx_core::conditioning::ConditioningItem;
use ltx_core::model::audio_vae::decode_audio;
use ltx_core::model::video_vae::decoder::to_rgb_frames;
use ltx_core::model::video_vae::{DecodeInputs, TilingConfig, VideoEncoder};
use ltx_core::text_encoders::gemma::GemmaLayers::Resident;
use ltx_core::text_encoders::gemma::{GemmaAssets, GemmaTextEncoder, PaddingSide};
use ltx_core::types::Audio;

use super::duration::{require_num_frames_source, resolve_num_frames, NumFrames};
use super::helpers::{image_conditionings, ImageConditioningMode};
use super::model_ledger::ModelLedger;
use super::request::{GenerationRequest, ImageConditioningInput, PromptEnhancement};
use super::types::ProgressEvent;
use crate::{Error, Result};

/// Video and audio contexts of each prompt (`encode_prompts`): Gemma encodes every prompt and is
/// freed, then the embeddings processor runs and is freed. With `enhance`, Gemma first rewrites
/// the first prompt (sampling seeded with `seed`), reported as [`ProgressEvent::EnhancedPrompt`].
pub fn encode_prompts(
    ledger: &ModelLedger,
    prompts: &[&str],
    enhance: Option<&PromptEnhancement>,
    seed: u64,
    progress: &mut dyn FnMut(ProgressEvent),
) -> Result<Vec<(Tensor, Tensor)>> {
    let mut prompts: Vec<String> = prompts.iter().map(|p| p.to_string()).collect();
    let separate = enhance.and_then(|e| e.gemma.as_deref());
    if enhance.is_some() {
        check_prompt_enhancer(ledger, separate)?;
    }
    if let (Some(e), Some(root)) = (enhance, separate) {
        // a Gemma of its own rewrites the prompt, and is freed before the text encoder loads
        let enhancer = GemmaTextEncoder::load(root, ledger.dtype, &ledger.device, Resident)?;
        enhance_first(&enhancer, e, &mut prompts, seed, progress)?;
    }
    let hidden = {
        let encoder = ledger.text_encoder()?;
        if let (Some(e), None) = (enhance, separate) {
            enhance_first(&encoder, e, &mut prompts, seed, progress)?;
        }
        progress(ProgressEvent::Stage {
            name: "text encoder",
            total: prompts.len(),
        });
        let mut out = Vec::with_capacity(prompts.len());
        for (i, p) in prompts.iter().enumerate() {
            out.push(encoder.encode_stacked(p)?);
            progress(ProgressEvent::Step {
                done: i + 1,
                total: prompts.len(),
            });
        }
        out
    };
    let processor = ledger.embeddings_processor()?;
    hidden
        .iter()
        .map(|(h, m)| {
            let out = processor.process_hidden_states(h, m, PaddingSide::Left)?;
            let audio = out.audio_encoding.ok_or_else(|| {
                Error::InvalidArgument("the checkpoint has no audio text connector".into())
            })?;
            Ok((
                out.video_encoding.to_dtype(ledger.dtype)?,
                audio.to_dtype(ledger.dtype)?,
            ))
        })
        .collect()
}

/// Before any Gemma loads: the Gemma that rewrites the prompt (`separate`, else the text encoder)
/// must be one that generates — Gemma-3; LTX-2.5's Gemma-4 encoder is encode-only (as in the
/// reference, whose enhancement with it needs a separate `--prompt-enhancer-gemma-root`).
fn check_prompt_enhancer(ledger: &ModelLedger, separate: Option<&std::path::Path>) -> Result<()> {
    let assets = match separate {
        Some(p) => GemmaAssets::load(p)?,
        None => ledger.gemma_assets()?,
    };
    if assets.model_type() != "gemma3" {
        return Err(Error::InvalidArgument(format!(
            "prompt enhancement needs a Gemma-3 that generates text; `{}` is {} (encode-only): \
             pass a Gemma-3 root with --prompt-enhancer-gemma-root",
            assets.source().display(),
            assets.model_type()
        )));
    }
    Ok(())
}

/// Rewrites the first prompt with `encoder` (sampling seeded with `seed`), reported as
/// [`ProgressEvent::EnhancedPrompt`].
fn enhance_first(
    encoder: &GemmaTextEncoder,
    e: &PromptEnhancement,
    prompts: &mut [String],
    seed: u64,
    progress: &mut dyn FnMut(ProgressEvent),
) -> Result<()> {
    let Some(first) = prompts.first_mut() else {
        return Ok(());
    };
    if let Some(img) = &e.image {
        tracing::warn!(
            image = %img.display(),
            "Gemma's vision tower is not ported: the prompt is enhanced from its text only"
        );
    }
    let cfg = ltx_core::text_encoders::gemma::SamplingConfig::for_enhancement(encoder);
    let total = cfg.max_new_tokens;
    progress(ProgressEvent::Stage {
        name: "enhance prompt",
        total,
    });
    let text = encoder.enhance_t2v(first, e.system_prompt.as_deref(), seed, |done| {
        progress(ProgressEvent::Step { done, total })
    })?;
    progress(ProgressEvent::EnhancedPrompt(text.clone()));
    *first = text;
    Ok(())
}

/// [`encode_prompts`] for a request's prompt alone (the distilled pipelines: no negative prompt).
pub fn encode_prompt(
    ledger: &ModelLedger,
    req: &GenerationRequest,
    progress: &mut dyn FnMut(ProgressEvent),
) -> Result<(Tensor, Tensor)> {
    let enhance = req.enhancement();
    let mut v = encode_prompts(
        ledger,
        &[req.prompt.as_str()],
        enhance.as_ref(),
        req.seed,
        progress,
    )?;
    Ok(v.remove(0))
}

/// Before any work: an automatic duration needs a duration head (`require_num_frames_source`).
pub fn check_duration_source(ledger: &ModelLedger, req: &GenerationRequest) -> Result<()> {
    if req.auto_duration.is_none() {
        return Ok(());
    }
    let predictor = ledger.duration_predictor()?;
    let frames = NumFrames::Auto(req.auto_duration.unwrap_or_default());
    require_num_frames_source(frames, predictor.as_ref())
}

/// The request with its frame count known: as given, or — with an automatic duration — predicted
/// by the ledger's duration head from the prompt's encoded contexts (`resolve_num_frames`), then
/// checked as a given count is (images within the video, 8k+1).
pub fn resolve_duration(
    ledger: &ModelLedger,
    req: &GenerationRequest,
    (video, audio): (&Tensor, &Tensor),
    two_stage: bool,
) -> Result<GenerationRequest> {
    let Some(window) = req.auto_duration else {
        return Ok(req.clone());
    };
    let predictor = ledger.duration_predictor()?;
    let frames = resolve_num_frames(
        NumFrames::Auto(window),
        predictor.as_ref(),
        Some(video),
        Some(audio),
        req.frame_rate,
    )?;
    let resolved = GenerationRequest {
        num_frames: frames,
        auto_duration: None,
        ..req.clone()
    };
    resolved.validate(two_stage)?;
    Ok(resolved)
}

/// A ledger's video encoder, for what conditions a stage: images and control videos encoded in
/// the ledger's dtype on its device.
pub struct ConditioningEncoder<'a> {
    pub ledger: &'a ModelLedger,
    pub encoder: VideoEncoder,
}

impl<'a> ConditioningEncoder<'a> {
    pub fn new(ledger: &'a ModelLedger) -> Result<Self> {
        Ok(Self {
            ledger,
            encoder: ledger.video_encoder()?,
        })
    }

    /// The image conditionings of a stage at `(height, width)`.
    pub fn images(
        &self,
        mode: ImageConditioningMode,
        images: &[ImageConditioningInput],
        size: (usize, usize),
    ) -> Result<Vec<Box<dyn ConditioningItem>>> {
        let (dtype, device) = (self.ledger.dtype, &self.ledger.device);
        let crf = self.ledger.default_image_crf()?;
        image_conditionings(mode, images, crf, size, &self.encoder, dtype, device)
    }

    /// Pixels `[B, 3, F, H, W]` in [-1, 1] → their latent.
    pub fn encode(&self, pixels: &Tensor) -> Result<Tensor> {
        let pixels = pixels
            .to_dtype(self.ledger.dtype)?
            .to_device(&self.ledger.device)?;
        Ok(self.encoder.forward(&pixels)?)
    }
}

/// Decodes a video latent `[1, 128, F', H', W']` into `[f, H, W, 3]` f32 chunks in [0, 1] handed
/// to `sink` (1.2.0's `decode_video`).
pub fn decode_video_chunks(
    ledger: &ModelLedger,
    latent: &Tensor,
    tiling: Option<&TilingConfig>,
    progress: &mut dyn FnMut(ProgressEvent),
    sink: &mut dyn FnMut(Tensor) -> Result<()>,
) -> Result<()> {
    if let Some(backend) = &ledger.video_decoder_backend {
        if tiling.is_some() {
            return Err(Error::InvalidArgument(format!(
                "tiled decoding is not available with the {} video decoder (it decodes one fixed \
                 shape)",
                backend.0.name()
            )));
        }
        progress(ProgressEvent::Stage {
            name: "video decode",
            total: 1,
        });
        let video = backend.0.decode(&latent.to_dtype(DType::F32)?)?;
        sink(to_rgb_frames(&video)?)?;
        progress(ProgressEvent::Step { done: 1, total: 1 });
        return Ok(());
    }
    let decoder = ledger.video_decoder()?;
    let latent = latent.to_dtype(ledger.dtype)?;
    match tiling {
        Some(cfg) => {
            let frames = 1 + (latent.dim(2)? - 1) * 8;
            let total = cfg.video_chunks(frames);
            progress(ProgressEvent::Stage {
                name: "video decode",
                total,
            });
            let mut done = 0;
            let mut err: Option<Error> = None;
            decoder
                .tiled_decode(&latent, cfg, None, None, |chunk| {
                    done += 1;
                    progress(ProgressEvent::Step { done, total });
                    match to_rgb_frames(&chunk)
                        .map_err(Error::from)
                        .and_then(&mut *sink)
                    {
                        Ok(()) => Ok(()),
                        Err(e) => {
                            err = Some(e);
                            Err(ltx_core::Error::InvalidInput("output sink failed".into()))
                        }
                    }
                })
                .map_err(|e| err.take().unwrap_or(Error::Core(e)))?;
        }
        None => {
            progress(ProgressEvent::Stage {
                name: "video decode",
                total: 1,
            });
            let video = decoder.forward(&latent, DecodeInputs::default())?;
            sink(to_rgb_frames(&video)?)?;
            progress(ProgressEvent::Step { done: 1, total: 1 });
        }
    }
    Ok(())
}

/// Waveform -> audio latent `[1, 8, T, 16]` in the ledger's dtype: the checkpoint's audio
/// processor (resampling + log-mel) then the audio VAE encoder (`encode_audio`).
pub fn encode_audio_waveform(ledger: &ModelLedger, audio: &Audio) -> Result<Tensor> {
    use ltx_core::model::audio_vae::encode_audio;
    use ltx_core::model::audio_vae::ops::AudioProcessor;
    let cfg = ledger.audio_vae_config()?;
    let encoder = ledger.audio_encoder()?;
    let mel_bins = cfg
        .mel_bins
        .ok_or_else(|| Error::InvalidArgument("the audio VAE config has no mel_bins".into()))?;
    let processor = AudioProcessor::new(
        cfg.sample_rate,
        mel_bins,
        cfg.mel_hop_length,
        cfg.n_fft,
        &ledger.device,
    )?;
    let audio = Audio {
        waveform: audio.waveform.to_device(&ledger.device)?,
        sampling_rate: audio.sampling_rate,
    };
    Ok(encode_audio(&audio, &encoder, &processor)?.to_dtype(ledger.dtype)?)
}

/// Audio latent `[1, 8, T, 16]` -> stereo waveform at the vocoder's rate.
pub fn decode_audio_latent(
    ledger: &ModelLedger,
    latent: &Tensor,
    progress: &mut dyn FnMut(ProgressEvent),
) -> Result<Audio> {
    progress(ProgressEvent::Stage {
        name: "audio decode",
        total: 0,
    });
    let decoder = ledger.audio_decoder()?;
    let vocoder = ledger.vocoder()?;
    Ok(decode_audio(
        &latent.to_dtype(ledger.dtype)?,
        &decoder,
        &vocoder,
    )?)
}

/// The end of every pipeline: the video latent decoded into `sink`, then the audio latent into
/// the returned waveform.
pub fn decode_outputs(
    ledger: &ModelLedger,
    (video, audio): (&Tensor, &Tensor),
    tiling: Option<&TilingConfig>,
    progress: &mut dyn FnMut(ProgressEvent),
    sink: &mut dyn FnMut(Tensor) -> Result<()>,
) -> Result<Audio> {
    decode_video_chunks(ledger, video, tiling, progress, sink)?;
    decode_audio_latent(ledger, audio, progress)
}
