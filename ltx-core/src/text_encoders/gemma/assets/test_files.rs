//! Synthetic packed text-encoder files for the tests of the assets, the tokenizer and the encoder.

use std::collections::HashMap;

use candle_core::{Device, Tensor};
use serde_json::{json, Value};

use super::*;
use crate::loader::synthetic::save_safetensors;

/// A WordLevel tokenizer in Gemma's shape (`<pad>` 0, `<eos>` 1, `<bos>` 2); `bos_template`:
/// Gemma-3's BOS-adding post-processor, else none (Gemma-4's).
pub fn tokenizer_json(bos_template: bool) -> String {
    let post = if bos_template {
        r#"{"type":"TemplateProcessing","single":[{"SpecialToken":{"id":"<bos>","type_id":0}},{"Sequence":{"id":"A","type_id":0}}],
          "pair":[{"Sequence":{"id":"A","type_id":0}}],"special_tokens":{"<bos>":{"id":"<bos>","ids":[2],"tokens":["<bos>"]}}}"#
    } else {
        "null"
    };
    format!(
        r#"{{"version":"1.0","truncation":null,"padding":null,
      "added_tokens":[{{"id":0,"content":"<pad>","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true}},
                      {{"id":1,"content":"<eos>","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true}},
                      {{"id":2,"content":"<bos>","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true}}],
      "normalizer":null,"pre_tokenizer":{{"type":"Whitespace"}},"post_processor":{post},"decoder":null,
      "model":{{"type":"WordLevel","vocab":{{"<pad>":0,"<eos>":1,"<bos>":2,"<unk>":3,"a":4,"cat":5,"walks":6}},"unk_token":"<unk>"}}}}"#
    )
}

pub fn tokenizer_config() -> Value {
    json!({"bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>", "padding_side": "left"})
}

/// A tiny `gemma4_unified` config (vocab 7, hidden 8, 2 layers: sliding then full).
pub fn gemma4_config() -> Value {
    json!({"model_type": "gemma4_unified", "gemma_version": "gemma4-test",
        "image_token_id": 100, "video_token_id": 101, "audio_token_id": 102,
        "text_config": {"model_type": "gemma4_unified_text", "vocab_size": 7, "hidden_size": 8,
        "intermediate_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
        "num_key_value_heads": 1, "head_dim": 4, "global_head_dim": 8,
        "num_global_key_value_heads": 1, "attention_k_eq_v": true, "sliding_window": 2,
        "layer_types": ["sliding_attention", "full_attention"]}})
}

pub fn bytes_tensor(bytes: &[u8]) -> Tensor {
    Tensor::from_vec(bytes.to_vec(), bytes.len(), &Device::Cpu).expect("u8 tensor")
}

/// Writes a packed file: `weights`, the tokenizer, `sidecars` as `hf_asset__` tensors and
/// `metadata` (add `gemma_config` there).
pub fn write_packed(
    path: &Path,
    mut weights: HashMap<String, Tensor>,
    tokenizer: Option<&str>,
    sidecars: &[(&str, String)],
    metadata: HashMap<String, String>,
) {
    if let Some(t) = tokenizer {
        weights.insert(TOKENIZER_JSON_TENSOR_KEY.into(), bytes_tensor(t.as_bytes()));
    }
    for (name, text) in sidecars {
        weights.insert(
            format!("{HF_ASSET_TENSOR_PREFIX}{name}"),
            bytes_tensor(text.as_bytes()),
        );
    }
    save_safetensors(path, &weights, metadata).expect("written");
}

/// The two required sidecars.
pub fn required_sidecars() -> Vec<(&'static str, String)> {
    vec![
        ("tokenizer_config.json", tokenizer_config().to_string()),
        (
            "processor_config.json",
            json!({"processor_class": "Gemma4UnifiedProcessor"}).to_string(),
        ),
    ]
}
