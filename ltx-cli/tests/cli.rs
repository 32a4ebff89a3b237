//! The `ltx` binary end to end: exit codes and output lines of `ltx parity`.

use std::path::Path;
use std::process::Command;

fn ltx() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ltx"))
}

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(format!("{name}.safetensors"))
        .display()
        .to_string()
}

#[test]
fn parity_passes_on_a_good_fixture() {
    let out = ltx()
        .args(["--device", "cpu", "parity", &fixture("video_decoder_ltx23")])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("video_decoder video ") && l.contains(" PASS")),
        "{stdout}"
    );
    assert_eq!(stdout.lines().last(), Some("1 passed, 0 failed"));
}

#[test]
fn parity_fails_cleanly_on_a_corrupt_fixture() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("corrupt.safetensors");
    let bytes = std::fs::read(fixture("video_decoder_ltx23")).unwrap();
    std::fs::write(&bad, &bytes[..100]).unwrap();
    let out = ltx()
        .args([
            "--device",
            "cpu",
            "parity",
            &bad.display().to_string(),
            &fixture("video_decoder_ltx23"),
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("not a valid safetensors file"), "{stdout}");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
    assert_eq!(stdout.lines().last(), Some("1 passed, 1 failed"));
}

#[test]
fn bench_rejects_bad_shapes() {
    let out = ltx()
        .args(["--device", "cpu", "bench", "vae-decode", "--frames", "10"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 + 8k"));
}
