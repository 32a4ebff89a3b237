//! Every refused input is refused before any download or model load: each case runs with the
//! network off against an empty Hugging Face cache, so an input that was not checked first would
//! fail on the missing weights instead of on itself.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;

fn ltx(hf_cache: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ltx"));
    c.env("RUST_BACKTRACE", "0")
        .env("HF_HUB_CACHE", hf_cache)
        .env("HF_HUB_OFFLINE", "1")
        .args(["--device", "cpu"]);
    c
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A small valid PNG.
fn png(path: &Path) {
    image::RgbImage::from_fn(64, 64, |x, y| image::Rgb([x as u8, y as u8, 7]))
        .save(path)
        .unwrap();
}

struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new() -> Self {
        let f = Self {
            dir: tempfile::tempdir().unwrap(),
        };
        png(&f.path("ok.png"));
        std::fs::write(f.path("junk.png"), b"not an image").unwrap();
        std::fs::write(f.path("junk.safetensors"), b"not safetensors").unwrap();
        f
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn s(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }
}

/// Runs `cmd` on the Hub model with `extra` and checks it fails on `expect`, not on the weights.
fn refused(files: &Files, cmd: &str, extra: &[String], expect: &str) {
    let out = files.path("out.mp4");
    let mut c = ltx(&files.path("hf-cache"));
    c.arg(cmd);
    if cmd != "retake" {
        c.args(["--prompt", "a cat"]);
    }
    let o = c
        .args(["--model", "Lightricks/LTX-2", "--offline"])
        .arg("--output-path")
        .arg(&out)
        .args(extra)
        .output()
        .unwrap();
    let e = stderr(&o);
    assert!(!o.status.success(), "{cmd} {extra:?} succeeded");
    assert!(
        e.contains(expect),
        "{cmd} {extra:?}: expected `{expect}` in: {e}"
    );
    assert!(
        !e.contains("Hugging Face cache"),
        "{cmd} {extra:?}: reached the weights before refusing: {e}"
    );
    assert!(!out.exists());
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[test]
fn bad_inputs_are_refused_before_the_weights() {
    let f = Files::new();
    let ok_png = f.s("ok.png");
    let lora_missing = f.s("missing.safetensors");
    let cases: Vec<(&str, Vec<String>, String)> = vec![
        (
            "generate",
            args(&["--image", "/nonexistent.png", "0", "1.0"]),
            "does not exist".into(),
        ),
        (
            "generate",
            args(&["--image", &f.s("junk.png"), "0", "1.0"]),
            "junk.png".into(),
        ),
        (
            "generate",
            args(&["--image", &ok_png, "0", "1.5"]),
            "outside [0, 1]".into(),
        ),
        (
            "generate",
            args(&["--image", &ok_png, "0", "nan"]),
            "not a finite number".into(),
        ),
        (
            "generate",
            args(&["--lora", &lora_missing]),
            "does not exist".into(),
        ),
        (
            "generate",
            args(&["--lora", &f.s("junk.safetensors")]),
            "not a readable safetensors file".into(),
        ),
        (
            "generate",
            args(&["--lora", &ok_png, "inf"]),
            "not a finite number".into(),
        ),
        ("generate", args(&["--num-frames", "120"]), "8k + 1".into()),
        (
            "distilled",
            args(&["--auto-duration", "5", "2"]),
            "must be <= MAX_SECONDS".into(),
        ),
        (
            "keyframe-interpolation",
            args(&["--image", &ok_png, "0", "1", "--auto-duration", "1", "5"]),
            "not keyframe-interpolation".into(),
        ),
        (
            "generate",
            args(&["--max-memory", "0"]),
            "not a positive number of gigabytes".into(),
        ),
        (
            "distilled",
            args(&["--offload", "ram"]),
            "invalid value 'ram'".into(),
        ),
        (
            "generate",
            args(&["--width", "700"]),
            "divisible by 64".into(),
        ),
        (
            "generate",
            args(&[
                "--enhance-prompt",
                "--enhance-system-prompt",
                "/nonexistent.txt",
            ]),
            "nonexistent.txt".into(),
        ),
        (
            "one-stage",
            args(&["--num-inference-steps", "1"]),
            "at least 2 steps".into(),
        ),
        (
            "one-stage",
            args(&["--video-cfg-guidance-scale", "nan"]),
            "cfg_scale".into(),
        ),
        (
            "two-stage",
            args(&["--distilled-lora", &lora_missing]),
            "does not exist".into(),
        ),
        (
            "a2vid",
            args(&["--audio-path", "/nonexistent.wav"]),
            "does not exist".into(),
        ),
        (
            "ic-lora",
            args(&["--video-conditioning", "/nonexistent.mp4", "1.0"]),
            "does not exist".into(),
        ),
        (
            "ic-lora",
            args(&[
                "--video-conditioning",
                &ok_png,
                "1.0",
                "--conditioning-attention-mask",
                "/nonexistent.mp4",
                "0.5",
            ]),
            "does not exist".into(),
        ),
        (
            "retake",
            args(&[
                "--video-path",
                "/nonexistent.mp4",
                "--prompt",
                "a cat",
                "--start-time",
                "0",
                "--end-time",
                "1",
            ]),
            "does not exist".into(),
        ),
    ];
    for (cmd, extra, expect) in &cases {
        refused(&f, cmd, extra, expect);
    }
    // an output folder that does not exist
    let o = ltx(&f.path("hf-cache"))
        .args([
            "generate",
            "--prompt",
            "a cat",
            "--model",
            "Lightricks/LTX-2",
        ])
        .arg("--output-path")
        .arg(f.path("no/such/dir/out.mp4"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("does not exist") && !e.contains("Hugging Face cache"),
        "{e}"
    );
}

/// A copy of the tiny checkpoint without its `model_version` metadata.
fn unversioned_tiny(dir: &Path) -> (PathBuf, PathBuf) {
    let cache = std::env::temp_dir().join("ltx-rs-test-cache");
    let tiny = ltx_pipelines::tiny::ensure_tiny_model(&cache).unwrap();
    let tensors =
        candle_core::safetensors::load(&tiny.checkpoint, &candle_core::Device::Cpu).unwrap();
    let files = ltx_core::loader::SafetensorsFiles::open(&[&tiny.checkpoint]).unwrap();
    let config = files.metadata_entry("config").unwrap().to_string();
    let path = dir.join("unversioned.safetensors");
    let meta = std::collections::HashMap::from([("config".to_string(), config)]);
    ltx_core::loader::synthetic::save_safetensors(&path, &tensors, meta).unwrap();
    (path, tiny.gemma_root)
}

#[test]
fn stg_blocks_are_checked_against_the_model_and_a_missing_version_warns() {
    let dir = tempfile::tempdir().unwrap();
    let (checkpoint, gemma) = unversioned_tiny(dir.path());
    let out = dir.path().join("out.mp4");
    // the tiny transformer has 2 blocks: block 2 does not exist
    let o = ltx(&dir.path().join("hf"))
        .args([
            "one-stage",
            "--prompt",
            "a cat",
            "--video-stg-blocks",
            "0",
            "2",
        ])
        .arg("--checkpoint-path")
        .arg(&checkpoint)
        .arg("--gemma-root")
        .arg(&gemma)
        .arg("--output-path")
        .arg(&out)
        .output()
        .unwrap();
    let e = stderr(&o);
    assert!(!o.status.success(), "{e}");
    assert!(
        e.contains("--video-stg-blocks: block 2 does not exist") && e.contains("2 blocks"),
        "{e}"
    );
    assert!(
        e.contains("no `model_version`") && e.contains("assuming LTX-2"),
        "{e}"
    );
    assert!(!out.exists());
}

/// `ltx distilled --prompt "a cat"` at 64x64 on the tiny model, into `out`.
fn tiny_command(dir: &Path, out: &Path) -> Command {
    let mut c = ltx(&dir.join("hf"));
    c.args(["distilled", "--prompt", "a cat"])
        .args(["--height", "64", "--width", "64"]);
    common::tiny_model_flags(&mut c, &common::tiny_model())
        .arg("--output-path")
        .arg(out);
    c
}

/// Runs the tiny distilled pipeline (9 frames) with `extra` into `out`.
fn tiny_distilled(dir: &Path, out: &Path, extra: &[&str]) -> Output {
    tiny_command(dir, out)
        .env("RUST_LOG", "ltx_pipelines=info")
        .args(["--num-frames", "9"])
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn offloaded_runs_match_resident_ones_and_short_budgets_are_refused_first() {
    use ltx_pipelines::utils::model_ledger::ModelLedger;
    let dir = tempfile::tempdir().unwrap();
    let cache = std::env::temp_dir().join("ltx-rs-test-cache");
    let tiny = ltx_pipelines::tiny::ensure_tiny_model(&cache).unwrap();
    let ledger = ModelLedger::new(
        candle_core::DType::F32,
        candle_core::Device::Cpu,
        tiny.checkpoint.clone(),
        None,
        None,
        vec![],
    )
    .unwrap();
    let size = ledger.transformer_size().unwrap();
    let gb = |bytes: u64| format!("{}", bytes as f64 / (1u64 << 30) as f64);
    // every block streamed: what is outside the blocks plus the the block in use and the next one as stored
    let floor = size.resident
        + size.blocks.iter().max().unwrap()
        + size.blocks_stored.iter().max().unwrap();
    let resident = dir.path().join("resident.mp4");
    let o = tiny_distilled(dir.path(), &resident, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let streamed = dir.path().join("streamed.mp4");
    let budget = gb(floor + 1024);
    let o = tiny_distilled(
        dir.path(),
        &streamed,
        &["--offload", "disk", "--max-memory", &budget],
    );
    let e = stderr(&o);
    assert!(o.status.success(), "{e}");
    assert!(e.contains("0 of 2 blocks resident"), "{e}");
    assert_eq!(
        std::fs::read(&resident).unwrap(),
        std::fs::read(&streamed).unwrap()
    );
    // a budget under the floor, or under the whole model without offload: refused before the
    // text encoder runs, naming the transformer
    let short = dir.path().join("short.mp4");
    for extra in [
        vec!["--offload", "disk", "--max-memory", "0.0000001"],
        vec!["--max-memory", "0.0000001"],
    ] {
        let o = tiny_distilled(dir.path(), &short, &extra);
        let e = stderr(&o);
        assert!(!o.status.success(), "{e}");
        assert!(
            e.contains("the transformer needs") && e.contains("over the budget"),
            "{e}"
        );
        assert!(!e.contains("encoding") && !short.exists(), "{e}");
    }
}

#[test]
fn auto_duration_needs_a_duration_head() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.mp4");
    let o = tiny_command(dir.path(), &out)
        .args(["--auto-duration", "1", "3"])
        .output()
        .unwrap();
    let e = stderr(&o);
    assert!(!o.status.success(), "{e}");
    assert!(e.contains("needs a duration head"), "{e}");
    assert!(!e.contains("encoding") && !out.exists(), "{e}");
}

/// The tiny checkpoint given as the transformer, video VAE and audio VAE of a split set, the tiny
/// Gemma root as its text encoder unless `text_encoder` is false.
fn tiny_split<'c>(
    c: &'c mut std::process::Command,
    tiny: &ltx_pipelines::tiny::TinyModel,
    text_encoder: bool,
) -> &'c mut std::process::Command {
    for flag in ["--transformer-path", "--video-vae-path", "--audio-vae-path"] {
        c.arg(flag).arg(&tiny.checkpoint);
    }
    if text_encoder {
        c.arg("--text-encoder-path").arg(&tiny.gemma_root);
    }
    c
}

#[test]
fn split_flags_exclude_the_checkpoint_and_name_a_missing_part() {
    let dir = tempfile::tempdir().unwrap();
    let cache = std::env::temp_dir().join("ltx-rs-test-cache");
    let tiny = ltx_pipelines::tiny::ensure_tiny_model(&cache).unwrap();
    let out = dir.path().join("out.mp4");
    // the split flags and --checkpoint-path exclude each other
    let o = tiny_command(dir.path(), &out)
        .arg("--audio-vae-path")
        .arg(&tiny.checkpoint)
        .output()
        .unwrap();
    let e = stderr(&o);
    assert!(
        !o.status.success() && e.contains("cannot be combined"),
        "{e}"
    );
    // a split set without the text encoder: named before anything loads
    let mut c = ltx(&dir.path().join("hf"));
    c.args(["distilled", "--prompt", "a cat", "--num-frames", "9"]);
    let o = tiny_split(&mut c, &tiny, false)
        .arg("--output-path")
        .arg(&out)
        .output()
        .unwrap();
    let e = stderr(&o);
    assert!(!o.status.success(), "{e}");
    assert!(
        e.contains("no text encoder given (--text-encoder-path)"),
        "{e}"
    );
    assert!(!e.contains("encoding") && !out.exists(), "{e}");
    // the tiny checkpoint given as every part of a split set runs like the checkpoint
    let mut c = ltx(&dir.path().join("hf"));
    c.args(["distilled", "--prompt", "a cat", "--num-frames", "9"])
        .args(["--height", "64", "--width", "64"]);
    let o = tiny_split(&mut c, &tiny, true)
        .arg("--spatial-upsampler-path")
        .arg(&tiny.spatial_upsampler)
        .arg("--output-path")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let whole = dir.path().join("whole.mp4");
    let o = tiny_distilled(dir.path(), &whole, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&whole).unwrap());
}

/// A random duration head over the tiny model's contexts (both 24 wide), as its own file.
fn tiny_duration_head(dir: &Path) -> PathBuf {
    use ltx_core::model::duration_head::{DurationHead, DurationHeadConfig};
    let config = serde_json::json!({
        "transformer": {"cross_attention_dim": 24, "audio_cross_attention_dim": 24},
        "duration_head": {"pooler_hidden_dim": 8, "num_queries": 1, "num_pooler_heads": 2, "mlp_hidden": 8}
    });
    let cfg = DurationHeadConfig::from_checkpoint_config(&config).unwrap();
    let weights = ltx_core::loader::synthetic::random_weights(
        5,
        candle_core::DType::F32,
        "duration_head.",
        |vb| DurationHead::new(&cfg, vb),
    )
    .unwrap();
    let head = dir.join("head.safetensors");
    let meta = std::collections::HashMap::from([("config".to_string(), config.to_string())]);
    ltx_core::loader::synthetic::save_safetensors(&head, &weights, meta).unwrap();
    head
}

#[test]
fn the_guided_pipelines_predict_the_frame_count_with_a_duration_head() {
    let dir = tempfile::tempdir().unwrap();
    let cache = std::env::temp_dir().join("ltx-rs-test-cache");
    let tiny = ltx_pipelines::tiny::ensure_tiny_model(&cache).unwrap();
    let head = tiny_duration_head(dir.path());
    let out = dir.path().join("out.mp4");
    let mut c = ltx(&dir.path().join("hf"));
    c.args([
        "one-stage",
        "--prompt",
        "a cat",
        "--num-inference-steps",
        "2",
    ])
    .args([
        "--height",
        "64",
        "--width",
        "64",
        "--auto-duration",
        "0.3",
        "0.4",
    ])
    .args(["--video-stg-blocks", "1", "--audio-stg-blocks", "1"]);
    let o = tiny_split(&mut c, &tiny, true)
        .arg("--duration-head-path")
        .arg(&head)
        .arg("--output-path")
        .arg(&out)
        .output()
        .unwrap();
    let e = stderr(&o);
    assert!(o.status.success(), "{e}");
    // [0.3, 0.4] s at the tiny model's 24 fps: 9 frames on the 8k + 1 grid, whatever the head says
    assert!(e.contains("(9 frames 64x64"), "{e}");
}
