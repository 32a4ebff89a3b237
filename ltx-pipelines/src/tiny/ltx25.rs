//! A tiny LTX-2.5 split set: one file per component, named and laid out like the released
//! `Lightricks/LTX-2.5` files (the 2.5 transformer with its gated connectors, a packed Gemma-4
//! unified text encoder with the bundled V2 projection and its tokenizer, the conv video VAE, the
//! audio VAE with the BWE vocoder, a duration head), every config the released header's with
//! tiny widths and `model_version 2.5.0`. It runs the 2.5 code paths of every pipeline offline
//! (ancestral distilled stage, the Gemma-version check, the frame count from the duration head);
//! its output is noise-like.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use ltx_core::loader::synthetic::{random_weights, save_safetensors};
use ltx_core::model::audio_vae::vocoder::{VocoderModel, VocoderModelConfig};
use ltx_core::model::audio_vae::{AudioDecoder, AudioEncoder, AudioVaeConfig};
use ltx_core::model::duration_head::{DurationHead, DurationHeadConfig};
use ltx_core::model::transformer::{LtxModel, LtxModelConfig, LtxModelType};
use ltx_core::model::video_vae::{VideoDecoder, VideoEncoder, VideoVaeConfig};
use ltx_core::text_encoders::gemma::{
    EmbeddingsProcessor, Gemma4TextConfig, Gemma4TextModel, GemmaDims,
};
use serde_json::{json, Value};

use super::{
    build_upsampler, embeddings_key, ensure_built, rename, res_x, vae_keys, word_tokenizer_json,
    STORAGE,
};
use crate::Result;

/// Bumped whenever the generated files change, so stale caches are not reused.
const VERSION: &str = "tiny-ltx25-v1";
const MODEL_VERSION: &str = "2.5.0";
const GEMMA_VERSION: &str = "gemma4-12b-ltx-v1";
const GEMMA_HIDDEN: usize = 32;
const GEMMA_LAYERS: usize = 4;

/// Paths of the tiny LTX-2.5 split set.
#[derive(Clone, Debug, PartialEq)]
pub struct TinyLtx25 {
    pub transformer: PathBuf,
    pub text_encoder: PathBuf,
    pub video_vae: PathBuf,
    pub audio_vae: PathBuf,
    pub duration_head: PathBuf,
    pub spatial_upsampler: PathBuf,
}

impl TinyLtx25 {
    fn at(dir: &Path) -> Self {
        Self {
            transformer: dir.join("ltx-2.5-tiny-transformer.safetensors"),
            text_encoder: dir.join("gemma4-tiny-with-proj-ltx-2.5.safetensors"),
            video_vae: dir.join("ltx-2.5-tiny-video-vae-conv.safetensors"),
            audio_vae: dir.join("ltx-2.5-tiny-audio-vae.safetensors"),
            duration_head: dir.join("ltx-2.5-tiny-duration-head.safetensors"),
            spatial_upsampler: dir.join("ltx-2.5-tiny-latent-spatial-upscaler-x2.safetensors"),
        }
    }

    fn files(&self) -> [&Path; 6] {
        [
            &self.transformer,
            &self.text_encoder,
            &self.video_vae,
            &self.audio_vae,
            &self.duration_head,
            &self.spatial_upsampler,
        ]
    }
}

/// The tiny LTX-2.5 set under `cache_dir`, generated on first use (a few seconds).
pub fn ensure_tiny_ltx25(cache_dir: &Path) -> Result<TinyLtx25> {
    let dir = ensure_built(
        cache_dir,
        VERSION,
        |dir| TinyLtx25::at(dir).files().iter().all(|p| p.is_file()),
        |tmp| {
            let p = TinyLtx25::at(tmp);
            build_transformer(&p.transformer)?;
            build_text_encoder(&p.text_encoder)?;
            build_video_vae(&p.video_vae)?;
            build_audio_vae(&p.audio_vae)?;
            build_duration_head(&p.duration_head)?;
            build_upsampler(&p.spatial_upsampler)
        },
    )?;
    Ok(TinyLtx25::at(&dir))
}

/// The released 2.5 transformer header's `transformer` section at tiny widths: 2 blocks of 2
/// heads (16 video / 8 audio wide), one gated connector layer per modality as wide as the
/// cross-attention (no caption projection in 2.5), 128 learnable registers.
pub fn tiny_ltx25_transformer_config() -> Value {
    json!({"transformer": {
        "_class_name": "AVTransformer3DModel", "activation_fn": "gelu-approximate",
        "attention_bias": true, "attention_head_dim": 16, "num_attention_heads": 2,
        "caption_channels": GEMMA_HIDDEN, "cross_attention_dim": 32, "double_self_attention": false,
        "dropout": 0.0, "in_channels": 128, "out_channels": 128, "norm_elementwise_affine": false,
        "norm_eps": 1e-6, "num_embeds_ada_norm": 1000, "num_layers": 2, "num_vector_embeds": null,
        "only_cross_attention": false, "cross_attention_norm": true, "upcast_attention": false,
        "use_linear_projection": false, "qk_norm": "rms_norm", "standardization_norm": "rms_norm",
        "positional_embedding_type": "rope", "positional_embedding_theta": 10000.0,
        "positional_embedding_max_pos": [20, 2048, 2048], "timestep_scale_multiplier": 1000,
        "av_ca_timestep_scale_multiplier": 1000.0, "causal_temporal_positioning": true,
        "audio_num_attention_heads": 2, "audio_attention_head_dim": 8,
        "use_audio_video_cross_attention": true, "ff_bias": false, "share_ff": false,
        "audio_in_channels": 128, "audio_out_channels": 128, "audio_cross_attention_dim": 16,
        "audio_positional_embedding_max_pos": [20], "av_cross_ada_norm": true,
        "use_embeddings_connector": true, "connector_attention_head_dim": 16,
        "connector_num_attention_heads": 2, "connector_num_layers": 1,
        "connector_positional_embedding_max_pos": [4096], "connector_num_learnable_registers": 128,
        "connector_norm_output": true, "use_middle_indices_grid": true,
        "apply_gated_attention": true, "connector_apply_gated_attention": true,
        "caption_projection_first_linear": false, "caption_projection_second_linear": false,
        "caption_proj_input_norm": false, "connector_learnable_registers_std": 1,
        "caption_proj_before_connector": true, "audio_connector_attention_head_dim": 8,
        "audio_connector_num_attention_heads": 2, "cross_attention_adaln": true,
        "rope_type": "split", "frequencies_precision": "float64",
        "text_encoder_norm_type": "PER_TOKEN_RMS", "use_keyframes_abs_pos_embedding": true
    }})
}

/// A `gemma4_unified` config in the released one's shape (k = v on full layers, proportional
/// partial RoPE there, sliding layers between) at 32 wide, 4 layers, a 300-token vocabulary.
fn tiny_gemma4_config() -> Value {
    json!({"model_type": "gemma4_unified", "architectures": ["Gemma4UnifiedForConditionalGeneration"],
        "gemma_version": GEMMA_VERSION, "tie_word_embeddings": true, "eos_token_id": [1],
        "image_token_id": 297, "audio_token_id": 298, "video_token_id": 299,
        "text_config": {"model_type": "gemma4_unified_text", "attention_bias": false,
            "attention_k_eq_v": true, "enable_moe_block": false, "final_logit_softcapping": 30.0,
            "hidden_activation": "gelu_pytorch_tanh", "hidden_size_per_layer_input": 0,
            "num_kv_shared_layers": 0, "use_double_wide_mlp": false,
            "use_bidirectional_attention": "vision", "rms_norm_eps": 1e-6,
            "rope_parameters": {
                "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
                "full_attention": {"rope_type": "proportional", "rope_theta": 1000000.0,
                    "partial_rotary_factor": 0.25}},
            "pad_token_id": 0, "bos_token_id": 2, "eos_token_id": 1, "tie_word_embeddings": true,
            "vocab_size": 300, "hidden_size": GEMMA_HIDDEN, "intermediate_size": 64,
            "num_hidden_layers": GEMMA_LAYERS, "num_attention_heads": 4, "num_key_value_heads": 2,
            "head_dim": 8, "global_head_dim": 16, "num_global_key_value_heads": 1,
            "sliding_window": 4, "max_position_embeddings": 2048,
            "layer_types": ["sliding_attention", "full_attention", "sliding_attention",
                "full_attention"]},
        "vision_config": null, "audio_config": null})
}

/// The released conv VAE's block kinds (32x32x8, latent 128): one res layer per stage, the
/// encoder kept at the 128 channels it starts from (it starts at the latent width, which the
/// pipelines fix at 128; the released multipliers would widen it to 1024), the decoder at base 4.
fn tiny_ltx25_vae_config() -> Value {
    let compress = |kind: &str, m: usize| json!([kind, {"multiplier": m}]);
    json!({"vae": {"_class_name": "CausalVideoAutoencoder", "dims": 3, "in_channels": 3,
        "out_channels": 3, "latent_channels": 128,
        "encoder_blocks": [res_x(1, false), compress("compress_space_res", 1), res_x(1, false),
            compress("compress_time_res", 1), res_x(1, false), compress("compress_all_res", 1),
            res_x(1, false), compress("compress_all_res", 1), res_x(1, false)],
        "decoder_blocks": [["res_x", {"num_layers": 1}], compress("compress_space", 2),
            ["res_x", {"num_layers": 1}], compress("compress_time", 2),
            ["res_x", {"num_layers": 1}], compress("compress_all", 1),
            ["res_x", {"num_layers": 1}], compress("compress_all", 2),
            ["res_x", {"num_layers": 1}]],
        "scaling_factor": 1.0, "norm_layer": "pixel_norm", "patch_size": 4,
        "latent_log_var": "uniform", "use_quant_conv": false, "causal_decoder": false,
        "timestep_conditioning": false, "normalize_latent_channels": false,
        "encoder_base_channels": 4, "decoder_base_channels": 4, "spatial_padding_mode": "zeros"}})
}

/// The released audio VAE + BWE vocoder header: `ch` stays 128 (it sizes the 128 latent
/// statistics), one resolution level fewer wide, one res block; the vocoders 64 / 32 wide with a
/// 128-point STFT.
fn tiny_ltx25_audio_config() -> Value {
    let amp = |initial: usize, rates: Value, kernels: Value| {
        json!({"upsample_initial_channel": initial, "resblock": "AMP1", "upsample_rates": rates,
            "resblock_kernel_sizes": [3], "upsample_kernel_sizes": kernels,
            "resblock_dilation_sizes": [[1, 3, 5]], "stereo": true, "use_tanh_at_final": false,
            "activation": "snakebeta", "use_bias_at_final": false})
    };
    let mut bwe = amp(32, json!([6, 5, 2, 2, 2]), json!([12, 11, 4, 4, 4]));
    bwe.as_object_mut()
        .expect("an object")
        .extend(serde_json::Map::from_iter([
            ("apply_final_activation".to_string(), json!(false)),
            ("input_sampling_rate".to_string(), json!(16000)),
            ("output_sampling_rate".to_string(), json!(48000)),
            ("hop_length".to_string(), json!(80)),
            ("n_fft".to_string(), json!(128)),
            ("win_size".to_string(), json!(128)),
            ("num_mels".to_string(), json!(64)),
        ]));
    json!({
        "audio_vae": {"model": {"params": {"ddconfig": {"double_z": true, "mel_bins": 64,
            "z_channels": 8, "resolution": 256, "downsample_time": false, "in_channels": 2,
            "out_ch": 2, "ch": 128, "ch_mult": [1, 1, 1], "num_res_blocks": 1,
            "attn_resolutions": [], "dropout": 0.0, "mid_block_add_attention": false,
            "norm_type": "pixel", "causality_axis": "height"}, "sampling_rate": 16000}},
            "preprocessing": {"audio": {"sampling_rate": 16000, "max_wav_value": 32768.0,
                "duration": 5.12, "stereo": true, "causal_padding": 3},
                "stft": {"filter_length": 1024, "hop_length": 160, "win_length": 1024,
                    "causal": true},
                "mel": {"n_mel_channels": 64, "mel_fmin": 0, "mel_fmax": 8000}}},
        "vocoder": {
            "vocoder": amp(64, json!([5, 2, 2, 2, 2, 2]), json!([11, 4, 4, 4, 4, 4])),
            "bwe": bwe
        }
    })
}

fn metadata(config: &Value) -> HashMap<String, String> {
    HashMap::from([
        ("config".to_string(), config.to_string()),
        ("model_version".to_string(), MODEL_VERSION.to_string()),
    ])
}

fn gemma_dims() -> GemmaDims {
    GemmaDims {
        hidden_size: GEMMA_HIDDEN,
        num_hidden_layers: GEMMA_LAYERS,
    }
}

/// The transformer with the connectors (the projection lives in the text-encoder file).
fn build_transformer(path: &Path) -> Result<()> {
    let config = tiny_ltx25_transformer_config();
    let kind = LtxModelType::AudioVideo;
    let tcfg = LtxModelConfig::from_checkpoint_config(&config, kind)?;
    let mut all = random_weights(21, STORAGE, "model.diffusion_model.", |vb| {
        LtxModel::new(&tcfg, kind, vb).map_err(ltx_core::Error::from)
    })?;
    let emb = random_weights(22, STORAGE, "", |vb| {
        EmbeddingsProcessor::new(&config, gemma_dims(), true, vb)
    })?;
    all.extend(rename(emb, |k| {
        embeddings_key(k).filter(|ck| ck.starts_with("model.diffusion_model."))
    }));
    let mut meta = metadata(&config);
    meta.insert(
        "gemma_source_checkpoint".to_string(),
        json!({"ltx_version": MODEL_VERSION, "gemma_version": GEMMA_VERSION}).to_string(),
    );
    save_safetensors(path, &all, meta)?;
    Ok(())
}

fn bytes(text: &str) -> Result<Tensor> {
    let b = text.as_bytes();
    Ok(Tensor::from_vec(b.to_vec(), b.len(), &Device::Cpu)?)
}

/// The packed text encoder: the language model under the Comfy-flat `model.*` keys, the bundled
/// V2 projection, the tokenizer and the two required sidecars as byte tensors, `gemma_config`.
fn build_text_encoder(path: &Path) -> Result<()> {
    let gemma_config = tiny_gemma4_config();
    let cfg = Gemma4TextConfig::from_gemma_config(&gemma_config)?;
    let mut all = random_weights(23, STORAGE, "model.", |vb| Gemma4TextModel::new(&cfg, vb))?;
    let emb = random_weights(24, STORAGE, "", |vb| {
        EmbeddingsProcessor::new(&tiny_ltx25_transformer_config(), gemma_dims(), true, vb)
    })?;
    all.extend(rename(emb, |k| {
        embeddings_key(k).filter(|ck| ck.starts_with("text_embedding_projection."))
    }));
    let (tokenizer, _) = word_tokenizer_json(false);
    all.insert("tokenizer_json".to_string(), bytes(&tokenizer)?);
    let tokenizer_config = json!({"bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>",
        "padding_side": "left"});
    let processor_config = json!({"processor_class": "Gemma4UnifiedProcessor"});
    for (name, text) in [
        ("tokenizer_config.json", tokenizer_config.to_string()),
        ("processor_config.json", processor_config.to_string()),
    ] {
        all.insert(format!("hf_asset__{name}"), bytes(&text)?);
    }
    let meta = HashMap::from([
        ("format".to_string(), "pt".to_string()),
        ("gemma_config".to_string(), gemma_config.to_string()),
    ]);
    save_safetensors(path, &all, meta)?;
    Ok(())
}

fn build_video_vae(path: &Path) -> Result<()> {
    let config = tiny_ltx25_vae_config();
    let vcfg = VideoVaeConfig::from_checkpoint_config(&config)?;
    let enc = random_weights(25, STORAGE, "", |vb| VideoEncoder::new(&vcfg, vb))?;
    let mut all = rename(enc, vae_keys("vae", "encoder", true));
    let dec = random_weights(26, STORAGE, "", |vb| VideoDecoder::new(&vcfg, vb))?;
    all.extend(rename(dec, vae_keys("vae", "decoder", false)));
    save_safetensors(path, &all, metadata(&config))?;
    Ok(())
}

fn build_audio_vae(path: &Path) -> Result<()> {
    let config = tiny_ltx25_audio_config();
    let acfg = AudioVaeConfig::from_checkpoint_config(&config)?;
    let enc = random_weights(27, STORAGE, "", |vb| AudioEncoder::new(&acfg, vb))?;
    let mut all = rename(enc, vae_keys("audio_vae", "encoder", true));
    let dec = random_weights(28, STORAGE, "", |vb| AudioDecoder::new(&acfg, vb))?;
    all.extend(rename(dec, vae_keys("audio_vae", "decoder", false)));
    let voc_cfg = VocoderModelConfig::from_checkpoint_config(&config)?;
    all.extend(random_weights(29, STORAGE, "vocoder.", |vb| {
        VocoderModel::new(&voc_cfg, vb).map_err(ltx_core::Error::from)
    })?);
    save_safetensors(path, &all, metadata(&config))?;
    Ok(())
}

fn build_duration_head(path: &Path) -> Result<()> {
    let config = json!({
        "transformer": {"cross_attention_dim": 32, "audio_cross_attention_dim": 16},
        "duration_head": {"pooler_hidden_dim": 8, "num_queries": 1, "num_pooler_heads": 2,
            "mlp_hidden": 8}
    });
    let cfg = DurationHeadConfig::from_checkpoint_config(&config)?;
    let w = random_weights(30, STORAGE, "duration_head.", |vb| {
        DurationHead::new(&cfg, vb)
    })?;
    save_safetensors(path, &w, metadata(&config))?;
    Ok(())
}
