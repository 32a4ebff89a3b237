//! Port of `ltx_pipelines/utils/constants.py`: sigma lists, pipeline parameter presets and
//! `detect_params`, and the defaults the pipelines share.

use std::path::Path;

use ltx_core::components::guiders::MultiModalGuiderParams;
use ltx_core::loader::SafetensorsFiles;

use crate::Result;

/// The distilled model's 8-step schedule.
pub const DISTILLED_SIGMA_VALUES: [f32; 9] = [
    1.0, 0.99375, 0.9875, 0.98125, 0.975, 0.909375, 0.725, 0.421875, 0.0,
];

/// The stage-2 (super-resolution) schedule: the tail of [`DISTILLED_SIGMA_VALUES`].
pub const STAGE_2_DISTILLED_SIGMA_VALUES: [f32; 4] = [0.909375, 0.725, 0.421875, 0.0];

/// Defaults of a generation: resolution, length, steps and the per-modality guidance.
#[derive(Clone, Debug, PartialEq)]
pub struct PipelineParams {
    pub seed: u64,
    pub stage_1_height: usize,
    pub stage_1_width: usize,
    pub num_frames: usize,
    pub frame_rate: f64,
    pub num_inference_steps: usize,
    pub video_guider_params: MultiModalGuiderParams,
    pub audio_guider_params: MultiModalGuiderParams,
    /// H.264 CRF of the round trip a conditioning image without its own CRF goes through.
    pub default_image_crf: u32,
}

impl PipelineParams {
    /// Stage 2 (after the x2 latent upsampler) renders at twice the stage-1 size.
    pub fn stage_2_height(&self) -> usize {
        self.stage_1_height * 2
    }

    pub fn stage_2_width(&self) -> usize {
        self.stage_1_width * 2
    }

    /// LTX-2 (19B) defaults: 768×512, 121 frames at 24 fps, 40 steps, video CFG 3 / audio CFG 7,
    /// STG 1 on block 29, rescale 0.7, modality 3.
    pub fn ltx_2() -> Self {
        let guider = |cfg_scale: f64| MultiModalGuiderParams {
            cfg_scale,
            stg_scale: 1.0,
            stg_blocks: Some(vec![29]),
            rescale_scale: 0.7,
            modality_scale: 3.0,
            skip_step: 0,
        };
        Self {
            seed: 10,
            stage_1_height: 512,
            stage_1_width: 768,
            num_frames: 121,
            frame_rate: 24.0,
            num_inference_steps: 40,
            video_guider_params: guider(3.0),
            audio_guider_params: guider(7.0),
            default_image_crf: DEFAULT_IMAGE_CRF,
        }
    }

    /// LTX-2.3 (22B) defaults: as LTX-2 with 30 steps and STG on block 28.
    pub fn ltx_2_3() -> Self {
        let mut p = Self::ltx_2();
        p.num_inference_steps = 30;
        p.video_guider_params.stg_blocks = Some(vec![28]);
        p.audio_guider_params.stg_blocks = Some(vec![28]);
        p
    }

    /// LTX-2.4 and later (2.5): the 2.3 knobs with image CRF 18.
    pub fn ltx_2_4() -> Self {
        Self {
            default_image_crf: LTX_2_4_IMAGE_CRF,
            ..Self::ltx_2_3()
        }
    }

    /// LTX-2.3 HQ (res_2s) defaults: 960×544 stage 1, 15 steps, no STG, rescale 0.45 (video) /
    /// 1.0 (audio).
    pub fn ltx_2_3_hq() -> Self {
        let guider = |cfg_scale: f64, rescale_scale: f64| MultiModalGuiderParams {
            cfg_scale,
            stg_scale: 0.0,
            stg_blocks: Some(vec![]),
            rescale_scale,
            modality_scale: 3.0,
            skip_step: 0,
        };
        Self {
            num_inference_steps: 15,
            stage_1_height: 1088 / 2,
            stage_1_width: 1920 / 2,
            video_guider_params: guider(3.0, 0.45),
            audio_guider_params: guider(7.0, 1.0),
            ..Self::ltx_2()
        }
    }
}

/// A checkpoint's `model_version` as comparable numbers (the reference's
/// `parse_model_version` after `detect_model_version`'s separator normalisation): `-` counts as
/// `.`, parsing stops at the first part that is not a plain integer (`"2.3.rc1"` → `[2, 3]`),
/// and an empty or non-numeric version is `[]`, below every real one. `Vec` ordering is the
/// tuple ordering the reference compares with (`[2, 3] < [2, 4, 0]`).
pub fn parse_model_version(version: &str) -> Vec<u32> {
    version
        .replace('-', ".")
        .split('.')
        .map_while(|part| {
            (!part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
                .then(|| part.parse::<u32>().ok())
                .flatten()
        })
        .collect()
}

/// The parsed `model_version` of a checkpoint (`[]` when it has none).
pub fn checkpoint_model_version(checkpoint: &SafetensorsFiles) -> Vec<u32> {
    checkpoint
        .metadata_entry("model_version")
        .map(parse_model_version)
        .unwrap_or_default()
}

/// The model generation a parsed `model_version` names (`None`: no version).
pub fn model_family(version: &[u32]) -> Option<&'static str> {
    Some(match version {
        [] => return None,
        v if v >= [2, 6].as_slice() => "LTX (newer than 2.5)",
        v if v >= [2, 5].as_slice() => "LTX-2.5",
        v if v >= [2, 4].as_slice() => "LTX-2.4",
        v if v >= [2, 3].as_slice() => "LTX-2.3",
        _ => "LTX-2",
    })
}

/// The generation from which the distilled pipeline samples stage 1 with the ancestral Euler
/// sampler (LTX-2.5).
pub const ANCESTRAL_SAMPLER_SINCE_VERSION: [u32; 2] = [2, 5];

/// Image CRF of LTX-2.4 and later checkpoints (`LTX_2_4_IMAGE_CRF`).
pub const LTX_2_4_IMAGE_CRF: u32 = 18;

/// Default parameters for a checkpoint: those of the newest generation its `model_version` is
/// at or above ([`PipelineParams::ltx_2_4`] from 2.4 — 2.5 included —, [`PipelineParams::ltx_2_3`]
/// from 2.3), else [`PipelineParams::ltx_2`].
pub fn detect_params(checkpoint: &SafetensorsFiles) -> PipelineParams {
    let raw = checkpoint.metadata_entry("model_version");
    let version = checkpoint_model_version(checkpoint);
    if version.as_slice() >= [2, 4].as_slice() {
        PipelineParams::ltx_2_4()
    } else if version.as_slice() >= [2, 3].as_slice() {
        PipelineParams::ltx_2_3()
    } else {
        match raw {
            Some(v) => tracing::info!(version = v, "using the LTX-2 pipeline defaults"),
            None => tracing::warn!(
                "the checkpoint has no `model_version` metadata: assuming LTX-2 and its pipeline \
                 defaults (steps, STG blocks, frame rate); pass the flags explicitly if it is \
                 another model"
            ),
        }
        PipelineParams::ltx_2()
    }
}

/// [`detect_params`] for a checkpoint file. Unlike the reference, which falls back to the LTX-2
/// defaults with a warning, an unreadable file is an error here: the pipeline could not load it
/// either, and a silent fallback would pick the wrong step count and STG block for LTX-2.3.
pub fn detect_params_from_path(path: &Path) -> Result<PipelineParams> {
    Ok(detect_params(&SafetensorsFiles::open(&[path])?))
}

/// Strength of a LoRA when none is given.
pub const DEFAULT_LORA_STRENGTH: f64 = 1.0;
/// H.264 CRF of the round trip conditioning images go through (as the reference does).
pub const DEFAULT_IMAGE_CRF: u32 = 33;
/// Channels of the video latent.
pub const VIDEO_LATENT_CHANNELS: usize = 128;

/// The reference's default negative prompt (1.2.0 put five caption tags in front of 1.0.0's list).
pub const DEFAULT_NEGATIVE_PROMPT: &str = "has_subtitles, has_blurbox, transition from black, \
transition to black, speech_ending_short, blurry, out of focus, overexposed, underexposed, low contrast, washed out colors, excessive noise, \
grainy texture, poor lighting, flickering, motion blur, distorted proportions, unnatural skin tones, \
deformed facial features, asymmetrical face, missing facial features, extra limbs, disfigured hands, \
wrong hand count, artifacts around text, inconsistent perspective, camera shake, incorrect depth of \
field, background too sharp, background clutter, distracting reflections, harsh shadows, inconsistent \
lighting direction, color banding, cartoonish rendering, 3D CGI look, unrealistic materials, uncanny \
valley effect, incorrect ethnicity, wrong gender, exaggerated expressions, wrong gaze direction, \
mismatched lip sync, silent or muted audio, distorted voice, robotic voice, echo, background noise, \
off-sync audio, incorrect dialogue, added dialogue, repetitive speech, jittery movement, awkward \
pauses, incorrect timing, unnatural transitions, inconsistent framing, tilted camera, flat lighting, \
inconsistent tone, cinematic oversaturation, stylized filters, or AI artifacts.";

#[cfg(test)]
mod tests {
    use super::*;

    fn checkpoint(dir: &Path, name: &str, version: Option<&str>) -> std::path::PathBuf {
        use candle_core::{Device, Tensor};
        let path = dir.join(name);
        let mut meta = std::collections::HashMap::new();
        if let Some(v) = version {
            meta.insert("model_version".to_string(), v.to_string());
        }
        let t = Tensor::zeros(2, candle_core::DType::F32, &Device::Cpu).unwrap();
        let tensors = std::collections::HashMap::from([("x".to_string(), t)]);
        ltx_core::loader::synthetic::save_safetensors(&path, &tensors, meta).unwrap();
        path
    }

    #[test]
    fn detects_ltx_2_3_from_model_version() {
        let dir = tempfile::tempdir().unwrap();
        let p = detect_params_from_path(&checkpoint(dir.path(), "a.safetensors", Some("2.3.0")))
            .unwrap();
        assert_eq!(p, PipelineParams::ltx_2_3());
        assert_eq!(p.num_inference_steps, 30);
        let p = detect_params_from_path(&checkpoint(dir.path(), "b.safetensors", Some("2.0.1")))
            .unwrap();
        assert_eq!(p, PipelineParams::ltx_2());
        let p = detect_params_from_path(&checkpoint(dir.path(), "c.safetensors", None)).unwrap();
        assert_eq!(p, PipelineParams::ltx_2());
        assert!(detect_params_from_path(&dir.path().join("missing.safetensors")).is_err());
        assert_eq!(PipelineParams::ltx_2_3_hq().stage_2_width(), 1920);
        // 2.4 and 2.5 (and an unknown newer generation) get the 2.4 row: 2.3's knobs, CRF 18
        for (name, v) in [("d", "2.5.0"), ("e", "2.4-rc2"), ("f", "3.0")] {
            let p = detect_params_from_path(&checkpoint(dir.path(), name, Some(v))).unwrap();
            assert_eq!(p, PipelineParams::ltx_2_4(), "{v}");
            assert_eq!((p.num_inference_steps, p.default_image_crf), (30, 18));
        }
        let p = detect_params_from_path(&checkpoint(dir.path(), "g", Some("2.3.rc1"))).unwrap();
        assert_eq!(p, PipelineParams::ltx_2_3());
    }

    #[test]
    fn parses_versions_as_the_reference() {
        assert_eq!(parse_model_version("2.5.0"), [2, 5, 0]);
        assert_eq!(parse_model_version("2.3.rc1"), [2, 3]);
        assert_eq!(parse_model_version("2.4-rc2"), [2, 4]);
        assert_eq!(parse_model_version("v2.5"), Vec::<u32>::new());
        assert_eq!(parse_model_version(""), Vec::<u32>::new());
        assert!(parse_model_version("2.3") < parse_model_version("2.4.0"));
        assert!(
            parse_model_version("2.5.0").as_slice() >= ANCESTRAL_SAMPLER_SINCE_VERSION.as_slice()
        );
        assert!(
            parse_model_version("2.3.1").as_slice() < ANCESTRAL_SAMPLER_SINCE_VERSION.as_slice()
        );
    }
}
