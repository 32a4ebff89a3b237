//! Every committed reference fixture, run through the same code as `ltx parity`, plus the
//! typed errors a bad checkpoint, config or input must produce.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use ltx_core::loader::synthetic::save_safetensors;
use ltx_core::loader::SafetensorsFiles;
use ltx_core::model::video_vae::{
    vae_decoder_keys_filter, DecodeInputs, VideoDecoder, VideoEncoder, VideoVaeConfig,
};
use ltx_parity::Error;
use ltx_parity::{collect_fixtures, run_fixture};

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

fn fixture(name: &str) -> PathBuf {
    fixtures_dir().join(format!("{name}.safetensors"))
}

#[test]
fn every_committed_fixture_matches_the_reference() {
    let files = collect_fixtures(&[fixtures_dir()]).unwrap();
    assert!(
        files.len() >= 96,
        "expected the committed fixtures, found {}",
        files.len()
    );
    let mut components = std::collections::BTreeSet::new();
    let mut failures = Vec::new();
    for f in &files {
        match run_fixture(f, &Device::Cpu) {
            Ok(checks) => {
                assert!(!checks.is_empty(), "{} compared nothing", f.display());
                for c in checks {
                    components.insert(c.component.clone());
                    if !c.pass {
                        failures.push(format!(
                            "{}: {} max_abs {:.3e}",
                            f.display(),
                            c.output,
                            c.max_abs
                        ));
                    }
                }
            }
            Err(e) => failures.push(format!("{}: {e}", f.display())),
        }
    }
    assert!(
        failures.is_empty(),
        "parity failures:\n{}",
        failures.join("\n")
    );
    for needed in [
        "video_encoder",
        "video_decoder",
        "scheduler",
        "guider",
        "diffusion_step",
        "patchifier",
        "conditioning",
        "pipeline_params",
        "transformer",
        "transformer_manifest",
        "latent_upsampler",
        "embeddings_processor",
        "gemma_text_encoder",
        "gemma4_text_encoder",
        "gemma4_tokenizer",
        "gemma4_prompt_encoding",
        "gemma_tokenizer",
        "audio_encoder",
        "audio_decoder",
        "audio_processor",
        "audio_filters",
        "vocoder",
        "denoise_loop",
        "lora_fuse",
        "media_resize",
        "ic_lora_mask",
        "retake_mask",
        "gemma_generate",
        "noise",
        "duration_head",
        "pipeline",
        "pipeline_model",
    ] {
        assert!(components.contains(needed), "no fixture covers {needed}");
    }
    // the LTX-2.5 builds of shared components, by file: a component name alone would pass on 2.3's
    let stems: std::collections::BTreeSet<String> = files
        .iter()
        .filter_map(|f| f.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .collect();
    for needed in [
        "video_encoder_ltx25",
        "video_decoder_ltx25",
        "audio_encoder_ltx25",
        "audio_decoder_ltx25",
        "vocoder_bwe_ltx25",
        "latent_upsampler_spatial_ltx25",
        "latent_upsampler_temporal_ltx25",
    ] {
        assert!(stems.contains(needed), "no committed fixture {needed}");
    }
}

/// Copies a fixture with its tensors edited by `edit` (metadata kept).
fn edited_fixture(
    dir: &Path,
    name: &str,
    edit: impl FnOnce(&mut HashMap<String, Tensor>),
) -> PathBuf {
    let src = fixture(name);
    let meta = SafetensorsFiles::open(&[&src]).unwrap().metadata();
    let mut tensors = candle_core::safetensors::load(&src, &Device::Cpu).unwrap();
    edit(&mut tensors);
    let out = dir.join(format!("{name}.safetensors"));
    save_safetensors(&out, &tensors, meta).unwrap();
    out
}

fn expect_core(err: Error) -> ltx_core::Error {
    match err {
        Error::Core(e) => e,
        other => panic!("expected a core error, got {other}"),
    }
}

#[test]
fn missing_and_misshaped_weights_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let key = "vae.decoder.conv_in.conv.weight";
    let missing = edited_fixture(dir.path(), "video_decoder_ltx2", |t| {
        t.remove(key);
    });
    match expect_core(run_fixture(&missing, &Device::Cpu).unwrap_err()) {
        ltx_core::Error::MissingWeight { key: k, expected } => {
            assert_eq!(k, "conv_in.conv.weight");
            assert_eq!(expected.len(), 5);
        }
        other => panic!("unexpected {other}"),
    }
    let dir2 = tempfile::tempdir().unwrap();
    let misshaped = edited_fixture(dir2.path(), "video_decoder_ltx2", |t| {
        let w = t[key].clone();
        t.insert(key.into(), w.narrow(0, 0, 1).unwrap());
    });
    let err = expect_core(run_fixture(&misshaped, &Device::Cpu).unwrap_err());
    assert!(
        matches!(err, ltx_core::Error::ShapeMismatch { ref key, .. } if key == "conv_in.conv.weight"),
        "{err}"
    );
}

#[test]
fn corrupt_files_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(fixture("video_decoder_ltx23")).unwrap();
    let truncated = dir.path().join("truncated.safetensors");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let err = expect_core(run_fixture(&truncated, &Device::Cpu).unwrap_err());
    assert!(
        matches!(err, ltx_core::Error::InvalidSafetensors { .. }),
        "{err}"
    );

    let not_json = dir.path().join("header.safetensors");
    let mut b = 16u64.to_le_bytes().to_vec();
    b.extend_from_slice(b"this is not json");
    std::fs::write(&not_json, b).unwrap();
    let err = expect_core(run_fixture(&not_json, &Device::Cpu).unwrap_err());
    assert!(
        matches!(err, ltx_core::Error::InvalidSafetensors { .. }),
        "{err}"
    );

    let absent = dir.path().join("absent.safetensors");
    let err = expect_core(run_fixture(&absent, &Device::Cpu).unwrap_err());
    assert!(matches!(err, ltx_core::Error::Io { .. }), "{err}");
}

#[test]
fn bad_configs_are_typed_errors() {
    let files = SafetensorsFiles::open(&[fixture("video_decoder_ltx2")]).unwrap();
    let mut config = files.config().unwrap();
    config["vae"]["decoder_blocks"][0][0] = "res_y".into();
    let err = VideoVaeConfig::from_checkpoint_config(&config).unwrap_err();
    assert!(err.to_string().contains("res_y"), "{err}");
    config["vae"]["decoder_blocks"][0][0] = "res_x".into();
    config["vae"]["dims"] = 2.into();
    let err = VideoVaeConfig::from_checkpoint_config(&config).unwrap_err();
    assert!(
        matches!(err, ltx_core::Error::UnsupportedConfig { .. }),
        "{err}"
    );
}

#[test]
fn bad_video_and_latent_shapes_are_typed_errors() {
    let dev = Device::Cpu;
    let files = SafetensorsFiles::open(&[fixture("video_decoder_ltx2")]).unwrap();
    let cfg = VideoVaeConfig::from_checkpoint_config(&files.config().unwrap()).unwrap();
    let sd = std::sync::Arc::new(files.state_dict(&vae_decoder_keys_filter()).unwrap());
    let decoder = VideoDecoder::new(&cfg, sd.var_builder(candle_core::DType::F32, &dev)).unwrap();
    let wrong_channels = Tensor::zeros((1, 3, 2, 2, 2), candle_core::DType::F32, &dev).unwrap();
    let err = decoder
        .forward(&wrong_channels, DecodeInputs::default())
        .unwrap_err();
    assert!(matches!(err, ltx_core::Error::InvalidInput(_)), "{err}");

    let enc_files = SafetensorsFiles::open(&[fixture("video_encoder_ltx2")]).unwrap();
    let cfg = VideoVaeConfig::from_checkpoint_config(&enc_files.config().unwrap()).unwrap();
    let sd = std::sync::Arc::new(
        enc_files
            .state_dict(&ltx_core::model::video_vae::vae_encoder_keys_filter())
            .unwrap(),
    );
    let encoder = VideoEncoder::new(&cfg, sd.var_builder(candle_core::DType::F32, &dev)).unwrap();
    let odd_size = Tensor::zeros((1, 3, 9, 48, 64), candle_core::DType::F32, &dev).unwrap();
    let err = encoder.forward(&odd_size).unwrap_err();
    assert!(err.to_string().contains("48x64"), "{err}");
    let rank4 = Tensor::zeros((3, 9, 64, 64), candle_core::DType::F32, &dev).unwrap();
    assert!(matches!(
        encoder.forward(&rank4).unwrap_err(),
        ltx_core::Error::InvalidInput(_)
    ));
}

#[test]
fn unknown_component_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let src = fixture("video_decoder_ltx23");
    let mut meta = SafetensorsFiles::open(&[&src]).unwrap().metadata();
    meta.insert("component".into(), "flux_capacitor".into());
    let tensors = candle_core::safetensors::load(&src, &Device::Cpu).unwrap();
    let out = dir.path().join("x.safetensors");
    save_safetensors(&out, &tensors, meta).unwrap();
    assert!(matches!(
        run_fixture(&out, &Device::Cpu).unwrap_err(),
        Error::UnknownComponent { .. }
    ));
}

#[test]
fn sharded_checkpoints_load_and_reject_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let src = fixture("video_decoder_ltx23");
    let meta = SafetensorsFiles::open(&[&src]).unwrap().metadata();
    let tensors = candle_core::safetensors::load(&src, &Device::Cpu).unwrap();
    let mut keys: Vec<&String> = tensors.keys().collect();
    keys.sort();
    let (a, b) = keys.split_at(keys.len() / 2);
    let pick = |ks: &[&String]| -> HashMap<String, Tensor> {
        ks.iter()
            .map(|k| ((*k).clone(), tensors[*k].clone()))
            .collect()
    };
    let (p1, p2) = (
        dir.path().join("part-1.safetensors"),
        dir.path().join("part-2.safetensors"),
    );
    save_safetensors(&p1, &pick(a), meta.clone()).unwrap();
    save_safetensors(&p2, &pick(b), HashMap::new()).unwrap();

    let files = SafetensorsFiles::open(&[&p1, &p2]).unwrap();
    let cfg = VideoVaeConfig::from_checkpoint_config(&files.config().unwrap()).unwrap();
    let sd = std::sync::Arc::new(files.state_dict(&vae_decoder_keys_filter()).unwrap());
    VideoDecoder::new(&cfg, sd.var_builder(candle_core::DType::F32, &Device::Cpu)).unwrap();

    let dup = SafetensorsFiles::open(&[&p1, &p1]).unwrap();
    let err = match dup.state_dict(&vae_decoder_keys_filter()) {
        Err(e) => e,
        Ok(_) => panic!("a key stored twice must be rejected"),
    };
    assert!(
        matches!(err, ltx_core::Error::DuplicateWeight { .. }),
        "{err}"
    );
}

#[test]
fn quantized_runs_report_their_error_and_skip_what_they_cannot_quantize() {
    use candle_core::quantized::GgmlDType;
    use ltx_core::quantization::Quantization;
    use ltx_parity::{quantized_tolerance, run_fixture_quantized};

    let f = fixture("transformer_ltx23_av");
    let exact = run_fixture(&f, &Device::Cpu).unwrap();
    assert!(exact.iter().all(|c| c.pass && c.rel_rms < 1e-5));
    // the tiny model's 32-wide rows take fp8-cast and Q8_0 (blocks of 32), not Q4_K (256)
    for q in [Quantization::Fp8Cast, Quantization::Gguf(GgmlDType::Q8_0)] {
        let checks = run_fixture_quantized(&f, &Device::Cpu, q).unwrap();
        assert_eq!(checks.len(), exact.len());
        for c in &checks {
            assert!(
                c.rel_rms > 1e-5,
                "{q:?} {}: nothing was quantized",
                c.output
            );
            assert_eq!(
                c.pass,
                c.rel_rms <= quantized_tolerance(q),
                "{q:?} {}",
                c.output
            );
        }
    }
    let err = run_fixture_quantized(
        &fixture("scheduler_ltx2"),
        &Device::Cpu,
        Quantization::Fp8Cast,
    )
    .unwrap_err();
    assert!(matches!(err, Error::NotQuantizable { .. }), "{err}");
}

/// Copies a fixture with its `call` metadata edited by `edit` (tensors kept).
fn with_call(dir: &Path, name: &str, edit: impl FnOnce(&mut serde_json::Value)) -> PathBuf {
    let src = fixture(name);
    let mut meta = SafetensorsFiles::open(&[&src]).unwrap().metadata();
    let mut call: serde_json::Value = serde_json::from_str(&meta["call"]).unwrap();
    edit(&mut call);
    meta.insert("call".into(), call.to_string());
    let tensors = candle_core::safetensors::load(&src, &Device::Cpu).unwrap();
    let out = dir.join(format!("{name}.safetensors"));
    save_safetensors(&out, &tensors, meta.clone()).unwrap();
    // a pipeline fixture reads the model bundle beside it
    if let Some(model) = meta.get("model_file") {
        std::fs::copy(fixtures_dir().join(model), dir.join(model)).unwrap();
    }
    out
}

/// The reason of a `BadFixture` error.
fn bad_fixture_reason(path: &Path) -> String {
    match run_fixture(path, &Device::Cpu) {
        Err(Error::BadFixture { reason, .. }) => reason,
        Err(other) => panic!("expected a fixture error, got {other}"),
        Ok(_) => panic!("{} ran", path.display()),
    }
}

#[test]
fn a_call_key_the_runner_does_not_read_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    // `upsample_video: true` is not the `op` the runner reads: it must not run `forward` silently
    let upsampler = with_call(dir.path(), "latent_upsampler_spatial", |c| {
        c["upsample_video"] = true.into();
    });
    let reason = bad_fixture_reason(&upsampler);
    assert!(
        reason.contains("\"upsample_video\"") && reason.contains("latent_upsampler runner"),
        "{reason}"
    );
    // a key that only another branch of the runner reads
    let scheduler = with_call(dir.path(), "scheduler_constants", |c| {
        c["cases"] = serde_json::json!([{"steps": 8}]);
    });
    let reason = bad_fixture_reason(&scheduler);
    assert!(
        reason.contains("\"cases\"") && reason.contains("scheduler runner"),
        "{reason}"
    );
    // a runner that takes the whole call as its argument list
    let gemma4 = with_call(dir.path(), "gemma4_tokenizer", |c| {
        c["padding_side"] = "right".into();
    });
    let reason = bad_fixture_reason(&gemma4);
    assert!(reason.contains("call.padding_side"), "{reason}");
}

/// Every runner, on every committed fixture: an added `call` key is refused by name.
#[test]
fn every_runner_refuses_a_call_key_it_does_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let mut accepted = Vec::new();
    for f in collect_fixtures(&[fixtures_dir()]).unwrap() {
        let name = f.file_stem().unwrap().to_string_lossy().into_owned();
        let extra = with_call(dir.path(), &name, |c| c["zz_unread"] = 1.into());
        match run_fixture(&extra, &Device::Cpu) {
            Err(Error::BadFixture { reason, .. }) if reason.contains("zz_unread") => {}
            other => accepted.push(format!("{name}: {:?}", other.map(|c| c.len()))),
        }
    }
    assert!(accepted.is_empty(), "not refused:\n{}", accepted.join("\n"));
}

#[test]
fn an_unknown_nested_call_key_or_a_non_object_call_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let tiled = with_call(dir.path(), "video_encoder_tiled", |c| {
        c["tiling"]["spatial"]["tile_stride_in_pixels"] = 32.into();
    });
    let reason = bad_fixture_reason(&tiled);
    assert!(
        reason.contains("call.tiling.spatial.tile_stride_in_pixels"),
        "{reason}"
    );
    let guided = with_call(dir.path(), "denoise_loop_euler_cfg", |c| {
        c["guidance"]["rescale_scale"] = 0.7.into();
    });
    let reason = bad_fixture_reason(&guided);
    assert!(reason.contains("call.guidance.rescale_scale"), "{reason}");
    let listed = with_call(dir.path(), "scheduler_constants", |c| {
        *c = serde_json::json!(["constants"]);
    });
    let reason = bad_fixture_reason(&listed);
    assert!(reason.contains("must be a JSON object"), "{reason}");
}

/// A pipeline fixture runs on the model bundle it was made with, and nothing else.
#[test]
fn a_pipeline_fixture_refuses_a_missing_or_foreign_model_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let name = "pipeline_distilled";
    let meta = SafetensorsFiles::open(&[&fixture(name)])
        .unwrap()
        .metadata();
    let tensors = candle_core::safetensors::load(fixture(name), &Device::Cpu).unwrap();
    let write = |edit: &dyn Fn(&mut HashMap<String, String>)| {
        let mut m = meta.clone();
        edit(&mut m);
        let out = dir.path().join(format!("{name}.safetensors"));
        save_safetensors(&out, &tensors, m).unwrap();
        out
    };
    // no bundle beside it
    let alone = write(&|_| {});
    assert!(run_fixture(&alone, &Device::Cpu).is_err());
    std::fs::copy(
        fixture("pipeline_model"),
        dir.path().join("pipeline_model.safetensors"),
    )
    .unwrap();
    let foreign = write(&|m| {
        m.insert("model_id".into(), "0".repeat(64));
    });
    let reason = bad_fixture_reason(&foreign);
    assert!(reason.contains("model_id"), "{reason}");
    let escaping = write(&|m| {
        m.insert("model_file".into(), "../pipeline_model.safetensors".into());
    });
    let reason = bad_fixture_reason(&escaping);
    assert!(reason.contains("not a file name"), "{reason}");
    let unknown = write(&|m| {
        let mut call: serde_json::Value = serde_json::from_str(&m["call"]).unwrap();
        call["pipeline"] = "dfr".into();
        m.insert("call".into(), call.to_string());
    });
    let reason = bad_fixture_reason(&unknown);
    assert!(reason.contains("\"dfr\""), "{reason}");
}
