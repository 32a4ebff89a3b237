//! The `transformer` config sections of the released checkpoints (LTX-2 19B, LTX-2.3 22B; see
//! `shared/reference/LTX-ARCH.md` §2.2), for benchmarks and synthetic checkpoints. A real
//! checkpoint always carries its own config; these are never used to load one.

use serde_json::{json, Value};

/// Which released transformer layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransformerLayout {
    /// LTX-2 (19B): the caption projection inside the transformer (3840-wide contexts).
    Ltx2,
    /// LTX-2.3 (22B): gated attention, cross-attention AdaLN, contexts at the inner widths.
    Ltx23,
}

/// The full-width `{"transformer": ...}` config of a released layout with `num_layers` blocks
/// (48 in the released files).
pub fn released_transformer_config(layout: TransformerLayout, num_layers: usize) -> Value {
    let mut t = json!({
        "dropout": 0.0,
        "attention_bias": true,
        "num_vector_embeds": null,
        "activation_fn": "gelu-approximate",
        "num_embeds_ada_norm": 1000,
        "use_linear_projection": false,
        "only_cross_attention": false,
        "cross_attention_norm": true,
        "double_self_attention": false,
        "upcast_attention": false,
        "standardization_norm": "rms_norm",
        "norm_elementwise_affine": false,
        "qk_norm": "rms_norm",
        "positional_embedding_type": "rope",
        "use_audio_video_cross_attention": true,
        "share_ff": false,
        "av_cross_ada_norm": true,
        "use_middle_indices_grid": true,
        "num_attention_heads": 32,
        "attention_head_dim": 128,
        "in_channels": 128,
        "out_channels": 128,
        "num_layers": num_layers,
        "cross_attention_dim": 4096,
        "caption_channels": 3840,
        "audio_num_attention_heads": 32,
        "audio_attention_head_dim": 64,
        "audio_in_channels": 128,
        "audio_out_channels": 128,
        "audio_cross_attention_dim": 2048,
        "positional_embedding_theta": 10000.0,
        "positional_embedding_max_pos": [20, 2048, 2048],
        "audio_positional_embedding_max_pos": [20],
        "timestep_scale_multiplier": 1000,
        "av_ca_timestep_scale_multiplier": 1000.0,
        "rope_type": "split",
        "frequencies_precision": "float64",
        "norm_eps": 1e-6,
    });
    if layout == TransformerLayout::Ltx23 {
        let obj = t.as_object_mut().expect("an object");
        obj.remove("caption_channels");
        for (k, v) in [
            ("apply_gated_attention", true),
            ("cross_attention_adaln", true),
            ("caption_proj_before_connector", true),
            ("caption_projection_first_linear", false),
            ("caption_proj_input_norm", false),
            ("caption_projection_second_linear", false),
        ] {
            obj.insert(k.to_string(), json!(v));
        }
    }
    json!({ "transformer": t })
}

/// The `config` and `model_version` metadata of a transformer-only file that carries none (the
/// community GGUF files), inferred from its tensor names (without the `model.diffusion_model.`
/// prefix): LTX-2.3 where the blocks have gated attention, LTX-2 otherwise, the block count from
/// the names. `Err` names why no released layout fits.
pub fn infer_transformer_metadata(names: &[String]) -> Result<(Value, &'static str), String> {
    let has = |k: &str| names.iter().any(|n| n == k);
    if !has("transformer_blocks.0.attn1.to_q.weight") {
        return Err("it holds no LTX transformer blocks".into());
    }
    if has("keyframes_abs_pos_embedding") {
        return Err(
            "its layout is LTX-2.5's, whose config cannot be inferred from the tensor names;              use a file that carries its `config` metadata (as `ltx quantize` writes)"
                .into(),
        );
    }
    let num_layers = names
        .iter()
        .filter_map(|n| n.strip_prefix("transformer_blocks."))
        .filter_map(|n| n.split('.').next()?.parse::<usize>().ok())
        .max()
        .map_or(0, |i| i + 1);
    let (layout, version) = if has("transformer_blocks.0.attn1.to_gate_logits.weight") {
        (TransformerLayout::Ltx23, "2.3.0")
    } else {
        (TransformerLayout::Ltx2, "2.0.0")
    };
    Ok((released_transformer_config(layout, num_layers), version))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::transformer::{LtxModelConfig, LtxModelType};

    #[test]
    fn released_configs_parse_at_full_width() {
        for (layout, caption) in [
            (TransformerLayout::Ltx2, Some(3840)),
            (TransformerLayout::Ltx23, None),
        ] {
            let cfg = released_transformer_config(layout, 48);
            let c = LtxModelConfig::from_checkpoint_config(&cfg, LtxModelType::AudioVideo).unwrap();
            assert_eq!(
                (c.num_layers, c.inner_dim(), c.audio_inner_dim()),
                (48, 4096, 2048)
            );
            assert_eq!(c.caption_channels, caption);
        }
    }

    #[test]
    fn layouts_are_inferred_from_names() {
        let names = |extra: &[&str]| -> Vec<String> {
            let mut v: Vec<String> = (0..3)
                .map(|i| format!("transformer_blocks.{i}.attn1.to_q.weight"))
                .collect();
            v.extend(extra.iter().map(|s| s.to_string()));
            v
        };
        let (cfg, v) = infer_transformer_metadata(&names(&[])).unwrap();
        let c = LtxModelConfig::from_checkpoint_config(&cfg, LtxModelType::AudioVideo).unwrap();
        assert_eq!(
            (c.num_layers, c.caption_channels, v),
            (3, Some(3840), "2.0.0")
        );
        let (cfg, v) = infer_transformer_metadata(&names(&[
            "transformer_blocks.0.attn1.to_gate_logits.weight",
        ]))
        .unwrap();
        let c = LtxModelConfig::from_checkpoint_config(&cfg, LtxModelType::AudioVideo).unwrap();
        assert_eq!((c.num_layers, c.caption_channels, v), (3, None, "2.3.0"));
        assert!(infer_transformer_metadata(&names(&["keyframes_abs_pos_embedding"])).is_err());
        assert!(infer_transformer_metadata(&["vae.x".to_string()]).is_err());
    }
}
