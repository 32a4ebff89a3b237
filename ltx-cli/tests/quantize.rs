//! `ltx quantize`, `ltx info` on GGUF files, `--quantization` and `--transformer-path X.gguf` on
//! the tiny model, and the refusals around them.

use std::path::Path;
use std::process::{Command, Output};

mod common;

fn ltx() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ltx"));
    c.env("RUST_BACKTRACE", "0").args(["--device", "cpu"]);
    c
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The tiny distilled pipeline (9 frames) with `extra`, into `out`.
fn tiny_distilled(out: &Path, extra: &[&str]) -> Output {
    let mut c = ltx();
    c.args(["distilled", "--prompt", "a cat", "--num-frames", "9"]);
    common::tiny_model_flags(&mut c, &common::tiny_model())
        .arg("--output-path")
        .arg(out)
        .args(extra)
        .output()
        .unwrap()
}

/// [`tiny_distilled`] at 64x64, which must succeed; the MP4's bytes.
fn tiny_run(out: &Path, extra: &[&str]) -> Vec<u8> {
    let o = tiny_distilled(out, &[&["--height", "64", "--width", "64"], extra].concat());
    assert!(o.status.success(), "{extra:?}: {}", text(&o));
    std::fs::read(out).unwrap()
}

/// `ltx quantize --input INPUT --output OUTPUT` with `extra`.
fn quantize(input: &Path, output: &Path, extra: &[&str]) -> Output {
    ltx()
        .arg("quantize")
        .arg("--input")
        .arg(input)
        .arg("--output")
        .arg(output)
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn a_quantized_gguf_runs_like_quantizing_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let tiny = common::tiny_model();
    let gguf = dir.path().join("ltx-tiny-Q8_0.gguf");
    let quantize = |extra: &[&str]| quantize(&tiny.checkpoint, &gguf, extra);
    let o = quantize(&["--type", "q8_0"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("in q8_0"), "{}", text(&o));
    // an existing output needs --force; a non-block type is refused
    let o = quantize(&["--type", "q8_0"]);
    assert!(
        !o.status.success() && text(&o).contains("--force"),
        "{}",
        text(&o)
    );
    let o = quantize(&["--type", "fp8-cast", "--force"]);
    assert!(
        !o.status.success() && text(&o).contains("GGUF block type"),
        "{}",
        text(&o)
    );
    let o = quantize(&["--type", "q4", "--force"]);
    assert!(
        !o.status.success() && text(&o).contains("q4_k"),
        "{}",
        text(&o)
    );
    // ltx info reads the GGUF header
    let o = ltx().arg("info").arg(&gguf).output().unwrap();
    let info = text(&o);
    assert!(o.status.success(), "{info}");
    assert!(
        info.contains("GGUF tensor types") && info.contains("q8_0:"),
        "{info}"
    );
    assert!(info.contains("transformer: 2 layers"), "{info}");

    let wide = tiny_run(&dir.path().join("wide.mp4"), &[]);
    let at_load = tiny_run(&dir.path().join("q8.mp4"), &["--quantization", "q8_0"]);
    assert_ne!(wide, at_load, "q8_0 changes the numbers");
    let g = gguf.to_str().unwrap();
    assert_eq!(
        tiny_run(&dir.path().join("gguf.mp4"), &["--transformer-path", g]),
        at_load
    );
    assert_eq!(
        tiny_run(
            &dir.path().join("gguf-disk.mp4"),
            &["--transformer-path", g, "--offload", "disk"]
        ),
        at_load
    );
    let fp8 = tiny_run(&dir.path().join("fp8.mp4"), &["--quantization", "fp8-cast"]);
    assert_ne!(fp8, wide);
}

#[test]
fn bad_quantized_inputs_are_refused_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let tiny = common::tiny_model();
    let out = dir.path().join("out.mp4");
    let run = |extra: &[&str]| tiny_distilled(&out, extra);
    let o = run(&["--quantization", "int3"]);
    assert!(
        !o.status.success() && text(&o).contains("fp8-cast"),
        "{}",
        text(&o)
    );
    // a truncated GGUF and a file that is GGUF in name only
    let gguf = dir.path().join("t.gguf");
    let o = quantize(&tiny.checkpoint, &gguf, &["--type", "q8_0"]);
    assert!(o.status.success(), "{}", text(&o));
    let bytes = std::fs::read(&gguf).unwrap();
    std::fs::write(&gguf, &bytes[..bytes.len() / 2]).unwrap();
    let o = run(&["--transformer-path", gguf.to_str().unwrap()]);
    assert!(
        !o.status.success() && text(&o).contains("not a usable GGUF file"),
        "{}",
        text(&o)
    );
    // a GGUF holds a transformer only: as a whole checkpoint it is refused up front
    std::fs::write(&gguf, &bytes).unwrap();
    let as_checkpoint = ltx_pipelines::tiny::TinyModel {
        checkpoint: gguf.clone(),
        spatial_upsampler: tiny.spatial_upsampler.clone(),
        gemma_root: tiny.gemma_root.clone(),
    };
    let mut c = ltx();
    c.args(["distilled", "--prompt", "a cat", "--num-frames", "9"]);
    let o = common::tiny_model_flags(&mut c, &as_checkpoint)
        .arg("--output-path")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        !o.status.success() && text(&o).contains("holds a transformer only"),
        "{}",
        text(&o)
    );
    let fake = dir.path().join("fake.gguf");
    std::fs::write(&fake, b"GGUF\x03\x00\x00\x00garbage").unwrap();
    let o = ltx().arg("info").arg(&fake).output().unwrap();
    assert!(
        !o.status.success() && text(&o).contains("not a usable GGUF file"),
        "{}",
        text(&o)
    );
    assert!(!out.exists());
}
