//! The `vae` config sections of the released checkpoints (as reported in
//! `shared/reference/LTX-ARCH.md` §2.4), for benchmarks and synthetic checkpoints. A real
//! checkpoint always carries its own config; these are never used to load one.

use serde_json::{json, Value};

/// Which released VAE layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VaeLayout {
    /// LTX-2 (19B).
    Ltx2,
    /// LTX-2.3 (22B).
    Ltx23,
}

impl std::str::FromStr for VaeLayout {
    type Err = crate::Error;
    fn from_str(s: &str) -> crate::Result<Self> {
        match s {
            "ltx2" | "ltx-2" => Ok(Self::Ltx2),
            "ltx23" | "ltx-2.3" => Ok(Self::Ltx23),
            other => Err(crate::error::unsupported("layout", other, "ltx2|ltx23")),
        }
    }
}

fn res_x(n: usize) -> Value {
    json!(["res_x", {"num_layers": n}])
}

/// The full-width `{"vae": ...}` config of a released layout.
pub fn released_vae_config(layout: VaeLayout) -> Value {
    let (encoder, decoder, padding) = match layout {
        VaeLayout::Ltx2 => (
            vec![
                res_x(4),
                json!(["compress_space_res", {"multiplier": 2}]),
                res_x(6),
                json!(["compress_time_res", {"multiplier": 2}]),
                res_x(6),
                json!(["compress_all_res", {"multiplier": 2}]),
                res_x(2),
                json!(["compress_all_res", {"multiplier": 2}]),
                res_x(2),
            ],
            vec![
                json!(["res_x", {"num_layers": 5, "inject_noise": false}]),
                json!(["compress_all", {"residual": true, "multiplier": 2}]),
                json!(["res_x", {"num_layers": 5, "inject_noise": false}]),
                json!(["compress_all", {"residual": true, "multiplier": 2}]),
                json!(["res_x", {"num_layers": 5, "inject_noise": false}]),
                json!(["compress_all", {"residual": true, "multiplier": 2}]),
                json!(["res_x", {"num_layers": 5, "inject_noise": false}]),
            ],
            None,
        ),
        VaeLayout::Ltx23 => (
            vec![
                res_x(4),
                json!(["compress_space_res", {"multiplier": 2}]),
                res_x(6),
                json!(["compress_time_res", {"multiplier": 2}]),
                res_x(4),
                json!(["compress_all_res", {"multiplier": 2}]),
                res_x(2),
                json!(["compress_all_res", {"multiplier": 1}]),
                res_x(2),
            ],
            vec![
                res_x(4),
                json!(["compress_space", {"multiplier": 2}]),
                res_x(6),
                json!(["compress_time", {"multiplier": 2}]),
                res_x(4),
                json!(["compress_all", {"multiplier": 1}]),
                res_x(2),
                json!(["compress_all", {"multiplier": 2}]),
                res_x(2),
            ],
            Some("zeros"),
        ),
    };
    let mut vae = json!({
        "dims": 3,
        "in_channels": 3,
        "out_channels": 3,
        "latent_channels": 128,
        "patch_size": 4,
        "norm_layer": "pixel_norm",
        "latent_log_var": "uniform",
        "causal_decoder": false,
        "timestep_conditioning": false,
        "decoder_base_channels": 128,
        "encoder_blocks": encoder,
        "decoder_blocks": decoder,
    });
    if let Some(p) = padding {
        vae["spatial_padding_mode"] = json!(p);
    }
    json!({ "vae": vae })
}

/// The decoded `config` metadata of a released LTX-2.5 file
/// (`tests/reference/released_ltx25/<name>.metadata.json`, read from the file's header).
#[cfg(test)]
pub(crate) fn released_ltx25_config(name: &str) -> Value {
    let path = format!(
        "{}/../tests/reference/released_ltx25/{name}.metadata.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let header: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    serde_json::from_str(header["__metadata__"]["config"].as_str().unwrap()).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::video_vae::model_configurator::LogVarianceType;
    use crate::model::video_vae::VideoVaeConfig;
    use crate::types::SpatioTemporalScaleFactors;

    #[test]
    fn presets_parse() {
        for layout in [VaeLayout::Ltx2, VaeLayout::Ltx23] {
            let cfg = VideoVaeConfig::from_checkpoint_config(&released_vae_config(layout)).unwrap();
            assert_eq!(cfg.encoder_blocks().unwrap().len(), 9);
            assert!(!cfg.timestep_conditioning);
            let factors = SpatioTemporalScaleFactors::default();
            assert_eq!(cfg.encoder_scale_factors().unwrap(), factors);
            assert_eq!(cfg.decoder_scale_factors().unwrap(), factors);
        }
    }

    /// The LTX-2.5 conv VAE header (`ltx-2.5-video-vae-conv-bf16`) is the LTX-2.3 layout.
    #[test]
    fn ltx25_conv_vae_header_is_the_ltx23_layout() {
        let header = released_ltx25_config("ltx-2.5-video-vae-conv-bf16");
        let cfg = VideoVaeConfig::from_checkpoint_config(&header).unwrap();
        let v23 =
            VideoVaeConfig::from_checkpoint_config(&released_vae_config(VaeLayout::Ltx23)).unwrap();
        assert_eq!(cfg.encoder_blocks().unwrap(), v23.encoder_blocks().unwrap());
        assert_eq!(cfg.decoder_blocks().unwrap(), v23.decoder_blocks().unwrap());
        assert_eq!(cfg.latent_log_var, LogVarianceType::Uniform);
        assert!(!cfg.timestep_conditioning && !cfg.causal_decoder);
        assert_eq!(
            cfg.encoder_padding().unwrap(),
            v23.encoder_padding().unwrap()
        );
        assert_eq!(
            cfg.decoder_padding().unwrap(),
            v23.decoder_padding().unwrap()
        );
        assert_eq!(
            cfg.decoder_scale_factors().unwrap(),
            SpatioTemporalScaleFactors::default()
        );
    }
}
