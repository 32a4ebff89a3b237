//! What a checkpoint's `model_version` switches on: the distilled stage-1 sampler (Euler
//! ancestral from LTX-2.5 on, seeded with the pipeline seed + 10000) and the default image CRF
//! (18 from LTX-2.4 on), on the built-in tiny model re-tagged with other versions.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use ltx_core::components::noisers::NoiseKind;
use ltx_core::loader::SafetensorsFiles;
use ltx_pipelines::distilled::{DistilledPipeline, GenerationRequest, RunIo};
use ltx_pipelines::utils::duration::AutoDuration;
use ltx_pipelines::utils::model_ledger::ModelLedger;
use ltx_pipelines::utils::stages::Sampler;

/// The tiny checkpoint with its `model_version` replaced by `version`.
fn retagged(dir: &Path, version: &str) -> PathBuf {
    let tiny = ltx_pipelines::tiny::ensure_tiny_model(&dir.join("tiny")).unwrap();
    let files = SafetensorsFiles::open(&[&tiny.checkpoint]).unwrap();
    let sd = files
        .state_dict(&ltx_core::loader::SDOps::identity())
        .unwrap();
    let tensors: HashMap<String, Tensor> = sd
        .keys()
        .into_iter()
        .map(|k| {
            let t = sd.raw_tensor(&k, &Device::Cpu).unwrap();
            (k, t)
        })
        .collect();
    let metadata = HashMap::from([
        ("config".to_string(), files.config().unwrap().to_string()),
        ("model_version".to_string(), version.to_string()),
    ]);
    let path = dir.join(format!("tiny-{version}.safetensors"));
    ltx_core::loader::synthetic::save_safetensors(&path, &tensors, metadata).unwrap();
    path
}

fn ledger(dir: &Path, version: &str) -> ModelLedger {
    let tiny = ltx_pipelines::tiny::ensure_tiny_model(&dir.join("tiny")).unwrap();
    ModelLedger::new(
        DType::F32,
        Device::Cpu,
        retagged(dir, version),
        Some(tiny.gemma_root),
        Some(tiny.spatial_upsampler),
        vec![],
    )
    .unwrap()
}

fn generate(ledger: ModelLedger) -> Vec<f32> {
    generate_with(ledger, None)
}

fn generate_with(ledger: ModelLedger, auto_duration: Option<AutoDuration>) -> Vec<f32> {
    try_generate(ledger, auto_duration).unwrap()
}

fn try_generate(
    ledger: ModelLedger,
    auto_duration: Option<AutoDuration>,
) -> ltx_pipelines::Result<Vec<f32>> {
    let req = GenerationRequest {
        prompt: "a red ball".into(),
        seed: 7,
        noise: NoiseKind::default(),
        height: 64,
        width: 64,
        num_frames: 9,
        frame_rate: 24.0,
        images: vec![],
        tiling: None,
        enhance_prompt: None,
        auto_duration,
    };
    let mut frames = Vec::new();
    let mut sink = |t: Tensor| {
        frames.extend(t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?);
        Ok(())
    };
    let io = RunIo {
        progress: &mut |_| {},
        sink: &mut sink,
    };
    DistilledPipeline::new(ledger).run(&req, io)?;
    Ok(frames)
}

#[test]
fn versions_select_the_sampler_and_the_image_crf() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("2.3.0", Sampler::Euler, 33),
        ("2.4-rc2", Sampler::Euler, 18),
        ("2.5.0", Sampler::EulerAncestral { noise_seed: 10_007 }, 18),
    ];
    for (version, sampler, crf) in cases {
        let l = ledger(dir.path(), version);
        let got = DistilledPipeline::stage_1_sampler(&l, 7).unwrap();
        assert_eq!(got, sampler, "{version}");
        assert_eq!(l.default_image_crf().unwrap(), crf, "{version}");
    }
}

#[test]
fn ltx_2_5_distilled_run_samples_stage_1_ancestrally() {
    let dir = tempfile::tempdir().unwrap();
    let euler = generate(ledger(dir.path(), "2.3.0"));
    let ancestral = generate(ledger(dir.path(), "2.5.0"));
    assert_eq!(euler.len(), ancestral.len());
    assert!(!euler.is_empty());
    // the injected noise changes the video; the same seed reproduces it
    assert_ne!(euler, ancestral);
    assert_eq!(ancestral, generate(ledger(dir.path(), "2.5.0")));
}

#[test]
fn an_automatic_duration_comes_from_the_duration_head() {
    use ltx_core::model::duration_head::{DurationHead, DurationHeadConfig};
    let dir = tempfile::tempdir().unwrap();
    // a random head over the tiny model's contexts (both 24 wide)
    let config = serde_json::json!({
        "transformer": {"cross_attention_dim": 24, "audio_cross_attention_dim": 24},
        "duration_head": {"pooler_hidden_dim": 8, "num_queries": 1, "num_pooler_heads": 2, "mlp_hidden": 8}
    });
    let cfg = DurationHeadConfig::from_checkpoint_config(&config).unwrap();
    let weights =
        ltx_core::loader::synthetic::random_weights(5, DType::F32, "duration_head.", |vb| {
            DurationHead::new(&cfg, vb)
        })
        .unwrap();
    let head = dir.path().join("head.safetensors");
    let meta = HashMap::from([("config".to_string(), config.to_string())]);
    ltx_core::loader::synthetic::save_safetensors(&head, &weights, meta).unwrap();

    let mut l = ledger(dir.path(), "2.5.0");
    // the tiny checkpoint has no head: an automatic duration is refused before any work
    let window = AutoDuration {
        min_seconds: 0.3,
        max_seconds: 0.4,
    };
    let err = try_generate(ledger(dir.path(), "2.5.0"), Some(window)).unwrap_err();
    assert!(err.to_string().contains("no duration head"), "{err}");
    l.paths.duration_head = Some(head);
    // [0.3, 0.4] s at 24 fps is [7, 10] frames: whatever the prediction, 9 frames on the grid
    let frames = generate_with(l, Some(window));
    assert_eq!(frames.len(), 9 * 64 * 64 * 3);
}
