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
}
