//! One file per component (LTX-2.5's layout): the built-in tiny checkpoint cut into a transformer,
//! a video VAE (bare `encoder.` / `decoder.` keys, as the released split VAE) and an audio VAE file
//! generates exactly what the checkpoint does; mismatched parts are refused from their headers.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use ltx_core::components::noisers::NoiseKind;
use ltx_core::loader::SafetensorsFiles;
use ltx_pipelines::distilled::{DistilledPipeline, GenerationRequest, RunIo};
use ltx_pipelines::utils::model_ledger::ModelLedger;
use ltx_pipelines::utils::model_paths::{ModelPaths, PathFlags};
use ltx_pipelines::Error;

struct Tiny {
    checkpoint: PathBuf,
    gemma_root: PathBuf,
    upsampler: PathBuf,
    tensors: HashMap<String, Tensor>,
    config: String,
}

fn tiny(dir: &Path) -> Tiny {
    let t = ltx_pipelines::tiny::ensure_tiny_model(&dir.join("tiny")).unwrap();
    let files = SafetensorsFiles::open(&[&t.checkpoint]).unwrap();
    let sd = files
        .state_dict(&ltx_core::loader::SDOps::identity())
        .unwrap();
    let tensors = sd
        .keys()
        .into_iter()
        .map(|k| {
            let v = sd.raw_tensor(&k, &Device::Cpu).unwrap();
            (k, v)
        })
        .collect();
    Tiny {
        checkpoint: t.checkpoint,
        gemma_root: t.gemma_root,
        upsampler: t.spatial_upsampler,
        tensors,
        config: files.config().unwrap().to_string(),
    }
}

/// The tensors of `tiny` whose key starts with one of `prefixes`, renamed by `rename`, saved with
/// the config and `metadata`.
fn part(
    tiny: &Tiny,
    path: &Path,
    prefixes: &[&str],
    rename: impl Fn(&str) -> String,
    metadata: &[(&str, &str)],
) -> PathBuf {
    let tensors: HashMap<String, Tensor> = tiny
        .tensors
        .iter()
        .filter(|(k, _)| prefixes.iter().any(|p| k.starts_with(p)))
        .map(|(k, v)| (rename(k), v.clone()))
        .collect();
    assert!(!tensors.is_empty(), "{prefixes:?}");
    let mut meta = HashMap::from([("config".to_string(), tiny.config.clone())]);
    meta.extend(metadata.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    ltx_core::loader::synthetic::save_safetensors(path, &tensors, meta).unwrap();
    path.to_path_buf()
}

fn transformer(tiny: &Tiny, dir: &Path, metadata: &[(&str, &str)]) -> PathBuf {
    part(
        tiny,
        &dir.join("transformer.safetensors"),
        // the tiny model's LTX-2 projection stays with the transformer (a Gemma-3 root carries none)
        &["model.diffusion_model.", "text_embedding_projection."],
        str::to_string,
        metadata,
    )
}

fn video_vae(tiny: &Tiny, dir: &Path, metadata: &[(&str, &str)]) -> PathBuf {
    part(
        tiny,
        &dir.join("video_vae.safetensors"),
        &["vae."],
        |k| k.trim_start_matches("vae.").to_string(),
        metadata,
    )
}

fn audio_vae(tiny: &Tiny, dir: &Path) -> PathBuf {
    part(
        tiny,
        &dir.join("audio_vae.safetensors"),
        &["audio_vae.", "vocoder."],
        str::to_string,
        &[],
    )
}

fn split(tiny: &Tiny, transformer: PathBuf, video_vae: PathBuf, audio_vae: PathBuf) -> ModelPaths {
    ModelPaths::from_flags(PathFlags {
        transformer: Some(transformer),
        text_encoder: Some(tiny.gemma_root.clone()),
        video_vae: Some(video_vae),
        audio_vae: Some(audio_vae),
        ..Default::default()
    })
    .unwrap()
    .unwrap()
}

fn ledger(tiny: &Tiny, paths: ModelPaths) -> ModelLedger {
    ModelLedger::from_paths(
        DType::F32,
        Device::Cpu,
        paths,
        Some(tiny.upsampler.clone()),
        vec![],
    )
    .unwrap()
}

fn generate(ledger: ModelLedger) -> (Vec<f32>, Vec<f32>) {
    let req = GenerationRequest {
        prompt: "a red ball".into(),
        seed: 3,
        noise: NoiseKind::default(),
        height: 64,
        width: 64,
        num_frames: 9,
        frame_rate: 24.0,
        images: vec![],
        tiling: None,
        enhance_prompt: None,
        auto_duration: None,
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
    let audio = DistilledPipeline::new(ledger).run(&req, io).unwrap();
    let audio = audio.waveform.flatten_all().unwrap().to_vec1().unwrap();
    (frames, audio)
}

#[test]
fn a_split_set_generates_what_the_checkpoint_does() {
    let dir = tempfile::tempdir().unwrap();
    let tiny = tiny(dir.path());
    let paths = split(
        &tiny,
        transformer(&tiny, dir.path(), &[]),
        video_vae(&tiny, dir.path(), &[]),
        audio_vae(&tiny, dir.path()),
    );
    let l = ledger(&tiny, paths);
    l.check_compatibility().unwrap();
    let monolith = ModelPaths::monolith(tiny.checkpoint.clone(), Some(tiny.gemma_root.clone()));
    let expected = generate(ledger(&tiny, monolith));
    assert!(!expected.0.is_empty() && !expected.1.is_empty());
    assert_eq!(generate(l), expected);
}

fn incompatible(case: &str, l: &ModelLedger) -> String {
    match l.check_compatibility() {
        Err(e @ Error::Incompatible { .. }) => e.to_string(),
        other => panic!("{case}: expected an incompatibility, got {other:?}"),
    }
}

#[test]
fn mismatched_parts_are_refused_from_their_headers() {
    let dir = tempfile::tempdir().unwrap();
    let tiny = tiny(dir.path());
    let (vae, audio) = (
        video_vae(&tiny, dir.path(), &[]),
        audio_vae(&tiny, dir.path()),
    );
    // an LTX-2.5 transformer trained with Gemma-4, given the tiny Gemma-3 root
    let t25 = transformer(
        &tiny,
        dir.path(),
        &[
            ("model_version", "2.5.0"),
            (
                "gemma_source_checkpoint",
                r#"{"gemma_version": "gemma4-12b-ltx-v1"}"#,
            ),
        ],
    );
    let e = incompatible(
        "Gemma-3 for 2.5",
        &ledger(&tiny, split(&tiny, t25, vae.clone(), audio.clone())),
    );
    assert!(
        e.contains("gemma4-12b-ltx-v1") && e.contains("transformer.safetensors"),
        "{e}"
    );
    // a 2.5 transformer must name its text encoder when the text encoder names its version (the
    // reference only warns when neither does)
    let bare = transformer(&tiny, dir.path(), &[("model_version", "2.5.0")]);
    let l = ledger(
        &tiny,
        split(&tiny, bare.clone(), vae.clone(), audio.clone()),
    );
    l.check_compatibility().unwrap();
    let versioned = dir.path().join("gemma");
    std::fs::create_dir_all(&versioned).unwrap();
    for f in ["model.safetensors", "tokenizer.json"] {
        std::fs::copy(tiny.gemma_root.join(f), versioned.join(f)).unwrap();
    }
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tiny.gemma_root.join("config.json")).unwrap())
            .unwrap();
    config["gemma_version"] = "gemma3-tiny".into();
    std::fs::write(versioned.join("config.json"), config.to_string()).unwrap();
    let mut paths = split(&tiny, bare, vae.clone(), audio.clone());
    paths.text_encoder = Some(versioned);
    let e = incompatible("2.5 without gemma_source_checkpoint", &ledger(&tiny, paths));
    assert!(e.contains("gemma_source_checkpoint"), "{e}");
    // a video VAE of another generation than the transformer's
    let t23 = transformer(&tiny, dir.path(), &[("model_version", "2.3.0")]);
    let vae2 = video_vae(&tiny, dir.path(), &[("model_version", "2.0.0")]);
    let e = incompatible(
        "VAE of LTX-2",
        &ledger(&tiny, split(&tiny, t23, vae2, audio)),
    );
    assert!(
        e.contains("LTX-2.3") && e.contains("video VAE is LTX-2"),
        "{e}"
    );
}
