//! The `ltx-coreml` binary: a successful export and clear failures.

use std::path::Path;
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ltx-coreml"))
}

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(format!("{name}.safetensors"))
        .to_string_lossy()
        .into_owned()
}

#[test]
fn export_from_pixel_shape_and_refuse_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("dec.mlpackage");
    let ckpt = fixture("video_decoder_ltx2");
    let args = |extra: &[&str]| {
        let mut c = bin();
        c.args([
            "export",
            "--component",
            "video-decoder",
            "--checkpoint",
            &ckpt,
        ]);
        c.args(extra);
        c.output().unwrap()
    };
    let o = args(&[
        "--frames",
        "9",
        "--height",
        "64",
        "--width",
        "64",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.join("Manifest.json").exists());
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("[9, 3, 64, 64]"), "{stdout}");

    for (extra, needle) in [
        (vec!["--latent-shape", "2,2,2"], "already exists"),
        (
            vec!["--frames", "10", "--height", "64", "--width", "64"],
            "1 + 8k",
        ),
        (vec!["--latent-shape", "2,2"], "three values"),
    ] {
        let mut a = extra.clone();
        a.extend(["--out", out.to_str().unwrap()]);
        let o = args(&a);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            !o.status.success() && err.contains(needle),
            "{extra:?}: {err}"
        );
    }
    let o = bin()
        .args(["export", "--component", "vocoder", "--checkpoint", &ckpt])
        .args(["--latent-shape", "2,2,2", "--out", "x.mlpackage"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("unsupported component"),
        "{err}"
    );
}

#[cfg(not(target_vendor = "apple"))]
#[test]
fn bench_needs_macos() {
    let o = bin()
        .args(["bench", "--package", "x.mlpackage"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("needs macOS with Core ML"),
        "{err}"
    );
}

#[test]
fn parity_checks_fixtures_and_skips_other_components() {
    let o = bin()
        .args([
            "parity",
            &fixture("video_encoder_ltx2"),
            &fixture("latent_upsampler_temporal"),
            &fixture("scheduler_ltx2"),
            "--precision",
            "fp32",
        ])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        out.lines().filter(|l| l.ends_with("PASS")).count(),
        4,
        "{out}"
    );
    assert!(out.contains("4 passed, 0 failed, 2 skipped"), "{out}");
    let o = bin()
        .args(["parity", "/nonexistent.safetensors"])
        .output()
        .unwrap();
    assert!(!o.status.success());
}
