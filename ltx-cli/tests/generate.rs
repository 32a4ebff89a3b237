//! `ltx generate` end to end on the built-in tiny model, and its input checks.

use std::path::{Path, PathBuf};
use std::process::Command;

use ltx_pipelines::media::video::probe_mp4;

mod common;
use common::{write_lora, write_png};

fn ltx() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ltx"));
    c.env("RUST_BACKTRACE", "0");
    c
}

fn cache() -> PathBuf {
    // shared by the tests of this file (the model is generated once, atomically)
    std::env::temp_dir().join("ltx-rs-test-cache")
}

fn generate(out: &Path, extra: &[&str]) -> std::process::Output {
    run_cmd("generate", out, extra)
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// No half-written files next to the output.
fn only_file(dir: &Path, name: Option<&str>) {
    let names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    match name {
        Some(n) => assert_eq!(names, vec![n.to_string()], "{names:?}"),
        None => assert!(names.is_empty(), "{names:?}"),
    }
}

#[test]
fn tiny_model_writes_an_mp4_with_audio() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.mp4");
    let o = generate(
        &out,
        &[
            "--height",
            "128",
            "--width",
            "192",
            "--num-frames",
            "17",
            "--seed",
            "3",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    only_file(dir.path(), Some("out.mp4"));
    let info = probe_mp4(&out).unwrap();
    assert_eq!((info.width, info.height), (192, 128));
    assert_eq!(info.frame_count, 17);
    assert!((info.fps - 24.0).abs() < 1e-6, "{}", info.fps);
    let audio = info.audio.expect("an audio track");
    assert_eq!((audio.sample_rate, audio.channels), (24000, 2));
    // 17 frames at 24 fps
    assert!(
        (audio.duration - 17.0 / 24.0).abs() < 0.05,
        "{}",
        audio.duration
    );

    // an existing output is kept unless --force
    let o = generate(
        &out,
        &["--height", "128", "--width", "192", "--num-frames", "9"],
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--force"), "{}", stderr(&o));
}

#[test]
fn bad_inputs_fail_before_any_work_and_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.mp4");
    let small = ["--height", "128", "--width", "192"];
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--num-frames", "16"], "8k + 1"),
        (vec!["--height", "96", "--width", "192"], "divisible by 64"),
        (
            vec![
                "--checkpoint-path",
                "/nonexistent/ltx.safetensors",
                "--gemma-root",
                "/tmp",
                "--spatial-upsampler-path",
                "/nonexistent/up.safetensors",
            ],
            "does not exist",
        ),
        (
            vec!["--checkpoint-path", "/nonexistent/ltx.safetensors"],
            "--gemma-root",
        ),
        (
            [
                &small[..],
                &[
                    "--num-frames",
                    "9",
                    "--image",
                    "/nonexistent.png",
                    "20",
                    "1.0",
                ],
            ]
            .concat(),
            "frame 20",
        ),
        (
            [
                &small[..],
                &[
                    "--num-frames",
                    "9",
                    "--image",
                    "/nonexistent.png",
                    "0",
                    "1.0",
                ],
            ]
            .concat(),
            "does not exist",
        ),
        (
            [
                &small[..],
                &["--num-frames", "9", "--lora", "/nonexistent.safetensors"],
            ]
            .concat(),
            "does not exist",
        ),
    ];
    for (args, expect) in cases {
        let o = generate(&out, &args);
        assert!(!o.status.success(), "{args:?} succeeded");
        let e = stderr(&o);
        assert!(e.contains(expect), "{args:?}: expected `{expect}` in: {e}");
        only_file(dir.path(), None);
    }
    // an unwritable output location
    let o = generate(&dir.path().join("no/such/dir/out.mp4"), &small);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("does not exist"), "{}", stderr(&o));
}

#[test]
fn loras_are_fused_or_refused() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.safetensors");
    let bad = dir.path().join("bad.safetensors");
    // the tiny transformer's video self-attention is 2 heads x 16 wide
    write_lora(&good, "transformer_blocks.0.attn1.to_q", 32, 32);
    write_lora(&bad, "no_such_block.proj", 8, 8);
    let small = ["--height", "128", "--width", "192", "--num-frames", "9"];
    let out = dir.path().join("out.mp4");
    let o = generate(
        &out,
        &[&small[..], &["--lora", good.to_str().unwrap(), "0.5"]].concat(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(out.is_file());
    let out2 = dir.path().join("out2.mp4");
    let o = generate(
        &out2,
        &[&small[..], &["--lora", bad.to_str().unwrap()]].concat(),
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("matches no weight"), "{}", stderr(&o));
    assert!(!out2.exists());
}

fn run_cmd(cmd: &str, out: &Path, extra: &[&str]) -> std::process::Output {
    let mut c = ltx();
    c.args(["--device", "cpu", cmd, "--prompt", "a dog runs in the snow"])
        .arg("--output-path")
        .arg(out)
        .arg("--cache-dir")
        .arg(cache())
        .args(extra);
    c.output().expect("the ltx binary runs")
}

#[test]
fn one_stage_two_stage_and_hq_pipelines_run_on_the_tiny_model() {
    let dir = tempfile::tempdir().unwrap();
    // one-stage takes multiples of 32, two-stage multiples of 64
    for (cmd, h, w) in [
        ("one-stage", "96", "160"),
        ("two-stage", "128", "192"),
        ("two-stage-hq", "128", "192"),
    ] {
        let out = dir.path().join(format!("{cmd}.mp4"));
        let o = run_cmd(
            cmd,
            &out,
            &[
                "--height",
                h,
                "--width",
                w,
                "--num-frames",
                "9",
                "--num-inference-steps",
                "2",
            ],
        );
        assert!(o.status.success(), "{cmd}: {}", stderr(&o));
        let info = probe_mp4(&out).unwrap();
        assert_eq!(info.frame_count, 9, "{cmd}");
        assert_eq!(
            (info.height.to_string(), info.width.to_string()),
            (h.to_string(), w.to_string())
        );
        assert!(info.audio.is_some());
    }
    // the two-stage pipeline still needs multiples of 64
    let o = run_cmd(
        "two-stage",
        &dir.path().join("bad.mp4"),
        &["--height", "96", "--width", "160", "--num-frames", "9"],
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("divisible by 64"), "{}", stderr(&o));
    // a guidance scale that is not a number
    let o = run_cmd(
        "one-stage",
        &dir.path().join("bad2.mp4"),
        &[
            "--height",
            "96",
            "--width",
            "160",
            "--num-frames",
            "9",
            "--video-cfg-guidance-scale",
            "-1",
        ],
    );
    assert!(!o.status.success());
}

#[test]
fn info_reports_the_components_of_a_checkpoint() {
    let tiny = ltx_pipelines::tiny::ensure_tiny_model(&cache()).unwrap();
    let o = ltx().arg("info").arg(&tiny.checkpoint).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    for part in [
        "transformer",
        "video VAE decoder",
        "audio VAE encoder",
        "vocoder",
        "text connectors",
        "HiFi-GAN",
        "2 layers",
    ] {
        assert!(out.contains(part), "missing `{part}` in:\n{out}");
    }
    let o = ltx()
        .args(["info", "/nonexistent/ckpt.safetensors"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("cannot read"), "{}", stderr(&o));
}

#[test]
fn hub_model_offline_with_an_empty_cache_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.mp4");
    let hf = dir.path().join("hf-cache");
    let o = ltx()
        .env("HF_HUB_CACHE", &hf)
        .env("HF_HUB_OFFLINE", "1")
        .args([
            "--device",
            "cpu",
            "generate",
            "--prompt",
            "a cat",
            "--model",
            "Lightricks/LTX-2",
        ])
        .arg("--output-path")
        .arg(&out)
        .output()
        .unwrap();
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("ltx-2-19b-distilled.safetensors")
            && e.contains("not in the Hugging Face cache"),
        "{e}"
    );
    assert!(!out.exists());
    let o = ltx()
        .args([
            "--device",
            "cpu",
            "generate",
            "--prompt",
            "a cat",
            "--model",
            "someone/other",
            "--offline",
        ])
        .arg("--output-path")
        .arg(&out)
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("unknown model repository"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn image_conditioning_and_keyframe_interpolation() {
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("first.png");
    let last = dir.path().join("last.png");
    write_png(&first, 300, 200, 1);
    write_png(&last, 160, 240, 2);
    let small = ["--height", "128", "--width", "192", "--num-frames", "9"];
    // distilled with a first-frame image (H.264 round trip at CRF 33, then the VAE encoder)
    let out = dir.path().join("i2v.mp4");
    let o = generate(
        &out,
        &[
            &small[..],
            &["--image", first.to_str().unwrap(), "0", "1.0"],
        ]
        .concat(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(probe_mp4(&out).unwrap().frame_count, 9);
    // keyframes at both ends (CRF 0: no round trip)
    let out = dir.path().join("kf.mp4");
    let o = run_cmd(
        "keyframe-interpolation",
        &out,
        &[
            &small[..],
            &["--num-inference-steps", "2"],
            &["--image", first.to_str().unwrap(), "0", "1.0", "0"],
            &["--image", last.to_str().unwrap(), "8", "0.9"],
        ]
        .concat(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(probe_mp4(&out).unwrap().frame_count, 9);
    // keyframe interpolation without images is refused
    let o = run_cmd("keyframe-interpolation", &dir.path().join("x.mp4"), &small);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("at least one --image"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn audio_to_video_keeps_the_soundtrack() {
    use candle_core::{Device, Tensor};
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("tone.wav");
    let rate = 44100u32;
    let n = rate as usize; // 1 s
    let data: Vec<f32> = (0..2 * n)
        .map(|i| 0.3 * ((i % n) as f32 * 0.05).sin())
        .collect();
    ltx_pipelines::media::audio::write_wav(
        &wav,
        &ltx_core::types::Audio {
            waveform: Tensor::from_vec(data, (1, 2, n), &Device::Cpu).unwrap(),
            sampling_rate: rate,
        },
    )
    .unwrap();
    let small = ["--height", "128", "--width", "192", "--num-frames", "9"];
    let out = dir.path().join("a2v.mp4");
    let o = run_cmd(
        "a2vid",
        &out,
        &[
            &small[..],
            &[
                "--num-inference-steps",
                "2",
                "--audio-path",
                wav.to_str().unwrap(),
            ],
        ]
        .concat(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let info = probe_mp4(&out).unwrap();
    assert_eq!(info.frame_count, 9);
    let audio = info.audio.unwrap();
    // the input soundtrack, at its own rate and length
    assert_eq!(audio.sample_rate, rate);
    assert!((audio.duration - 1.0).abs() < 0.05, "{}", audio.duration);
    // too short a soundtrack, and an unreadable one
    let o = run_cmd(
        "a2vid",
        &dir.path().join("b.mp4"),
        &[
            &small[..],
            &[
                "--audio-path",
                wav.to_str().unwrap(),
                "--audio-max-duration",
                "0.1",
            ],
        ]
        .concat(),
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("lasts"), "{}", stderr(&o));
    let junk = dir.path().join("junk.mp3");
    std::fs::write(&junk, b"not audio").unwrap();
    let o = run_cmd(
        "a2vid",
        &dir.path().join("c.mp4"),
        &[&small[..], &["--audio-path", junk.to_str().unwrap()]].concat(),
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("junk.mp3"), "{}", stderr(&o));
    assert!(!dir.path().join("b.mp4").exists() && !dir.path().join("c.mp4").exists());
}

/// A tiny-model video to use as a control or source clip.
fn source_clip(dir: &Path, frames: &str) -> PathBuf {
    let src = dir.join(format!("src-{frames}.mp4"));
    let o = generate(
        &src,
        &["--height", "128", "--width", "192", "--num-frames", frames],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    src
}

fn write_ic_lora(path: &Path, downscale: Option<&str>) {
    use candle_core::{DType, Device, Tensor};
    let a = Tensor::ones((2, 32), DType::F32, &Device::Cpu).unwrap();
    let b = (Tensor::ones((32, 2), DType::F32, &Device::Cpu).unwrap() * 0.01).unwrap();
    let module = "diffusion_model.transformer_blocks.0.attn1.to_q";
    let tensors = std::collections::HashMap::from([
        (format!("{module}.lora_A.weight"), a),
        (format!("{module}.lora_B.weight"), b),
    ]);
    let mut meta = std::collections::HashMap::new();
    if let Some(d) = downscale {
        meta.insert("reference_downscale_factor".to_string(), d.to_string());
    }
    ltx_core::loader::synthetic::save_safetensors(path, &tensors, meta).unwrap();
}

#[test]
fn ic_lora_follows_a_control_video() {
    let dir = tempfile::tempdir().unwrap();
    let src = source_clip(dir.path(), "17");
    let control = src.to_str().unwrap();
    let ic = |name: &str, extra: &[&str]| {
        let out = dir.path().join(name);
        let o = run_cmd(
            "ic-lora",
            &out,
            &[
                &["--height", "256", "--width", "384", "--num-frames", "17"][..],
                &["--video-conditioning", control, "0.9"],
                extra,
            ]
            .concat(),
        );
        (out, o)
    };
    let (out, o) = ic("full.mp4", &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let info = probe_mp4(&out).unwrap();
    assert_eq!((info.width, info.height, info.frame_count), (384, 256, 17));

    // a mask video and an IC-LoRA trained on half-size references; stage 2 skipped: half size
    let lora = dir.path().join("ic.safetensors");
    write_ic_lora(&lora, Some("2"));
    let (out, o) = ic(
        "half.mp4",
        &[
            "--conditioning-attention-mask",
            control,
            "0.5",
            "--skip-stage-2",
            "--lora",
            lora.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let info = probe_mp4(&out).unwrap();
    assert_eq!((info.width, info.height, info.frame_count), (192, 128, 17));
    assert!(info.audio.is_some());

    // bad input, each refused before any output is written
    let other = dir.path().join("ic4.safetensors");
    write_ic_lora(&other, Some("4"));
    let bad = dir.path().join("bad.safetensors");
    write_ic_lora(&bad, Some("two"));
    let junk = dir.path().join("junk.mp4");
    std::fs::write(&junk, b"not a video").unwrap();
    for (args, needle) in [
        (
            vec![
                "--lora",
                lora.to_str().unwrap(),
                "--lora",
                other.to_str().unwrap(),
            ],
            "cannot be combined",
        ),
        (
            vec!["--lora", bad.to_str().unwrap()],
            "reference_downscale_factor",
        ),
        (vec!["--conditioning-attention-strength", "1.5"], "[0, 1]"),
        (
            vec!["--video-conditioning", "/nonexistent.mp4", "1.0"],
            "nonexistent.mp4",
        ),
        (
            vec!["--video-conditioning", junk.to_str().unwrap(), "1.0"],
            "junk.mp4",
        ),
    ] {
        let (out, o) = ic("refused.mp4", &args);
        assert!(!o.status.success(), "{args:?} was accepted");
        assert!(stderr(&o).contains(needle), "{args:?}: {}", stderr(&o));
        assert!(!out.exists());
    }
    // the reference at 1/4 of the 128x192 stage-1 size is not a multiple of 32
    let (_, o) = ic("refused.mp4", &["--lora", other.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("multiples of 32"), "{}", stderr(&o));
}

/// RGB frames of an MP4, decoded.
fn frames_of(path: &Path) -> Vec<u8> {
    let (t, _) = ltx_pipelines::media::decode_video_frames(path, None).unwrap();
    t.flatten_all().unwrap().to_vec1().unwrap()
}

fn audio_of(path: &Path) -> Vec<f32> {
    let a = ltx_pipelines::media::load_audio(path, 0.0, None).unwrap();
    let a = a.to_audio(&candle_core::Device::Cpu).unwrap();
    a.waveform.flatten_all().unwrap().to_vec1().unwrap()
}

#[test]
fn retake_regenerates_only_what_it_is_asked_to() {
    let dir = tempfile::tempdir().unwrap();
    let src = source_clip(dir.path(), "25");
    let retake = |name: &str, extra: &[&str]| {
        let out = dir.path().join(name);
        let o = run_cmd(
            "retake",
            &out,
            &[
                &["--video-path", src.to_str().unwrap()][..],
                &["--num-inference-steps", "2"],
                extra,
            ]
            .concat(),
        );
        (out, o)
    };
    let window = ["--start-time", "0.4", "--end-time", "0.8"];
    let (a, o) = retake("a.mp4", &[&window[..], &["--seed", "1"]].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    let info = probe_mp4(&a).unwrap();
    assert_eq!((info.width, info.height, info.frame_count), (192, 128, 25));
    assert!(info.audio.is_some());
    let (b, o) = retake("b.mp4", &[&window[..], &["--seed", "2"]].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    assert_ne!(
        frames_of(&a),
        frames_of(&b),
        "the window was not regenerated"
    );

    // the kept modality comes out of the same latents whatever the seed; the distilled mode too
    let keep = |name: &str, flag: &str, seed: &str| {
        let (out, o) = retake(
            name,
            &[&window[..], &[flag, "--distilled", "--seed", seed]].concat(),
        );
        assert!(o.status.success(), "{}", stderr(&o));
        out
    };
    let (v1, v2) = (
        keep("v1.mp4", "--keep-video", "1"),
        keep("v2.mp4", "--keep-video", "2"),
    );
    assert_eq!(frames_of(&v1), frames_of(&v2));
    assert_ne!(audio_of(&v1), audio_of(&v2));
    let (s1, s2) = (
        keep("s1.mp4", "--keep-audio", "1"),
        keep("s2.mp4", "--keep-audio", "2"),
    );
    assert_eq!(audio_of(&s1), audio_of(&s2));
    assert_ne!(frames_of(&s1), frames_of(&s2));

    // bad input
    let not_8k1 = source_clip(dir.path(), "9");
    let short = dir.path().join("short.mp4");
    {
        // 10 frames: not 8k+1
        use candle_core::{Device, Tensor};
        let mut w =
            ltx_pipelines::media::video::Mp4Writer::create(&short, 64, 64, 24.0, None).unwrap();
        w.write_frames(
            &Tensor::zeros((10, 64, 64, 3), candle_core::DType::U8, &Device::Cpu).unwrap(),
        )
        .unwrap();
        w.finish().unwrap();
    }
    drop(not_8k1);
    for (args, needle) in [
        (
            vec!["--start-time", "0.5", "--end-time", "0.5"],
            "start < end",
        ),
        (
            vec!["--start-time", "5", "--end-time", "6"],
            "after the video's end",
        ),
        (
            vec![
                "--keep-video",
                "--keep-audio",
                "--start-time",
                "0",
                "--end-time",
                "1",
            ],
            "nothing to regenerate",
        ),
    ] {
        let (out, o) = retake("refused.mp4", &args);
        assert!(!o.status.success(), "{args:?} was accepted");
        assert!(stderr(&o).contains(needle), "{args:?}: {}", stderr(&o));
        assert!(!out.exists());
    }
    let out = dir.path().join("refused.mp4");
    let o = run_cmd(
        "retake",
        &out,
        &[
            "--video-path",
            short.to_str().unwrap(),
            "--start-time",
            "0",
            "--end-time",
            "0.1",
        ],
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("8k+1"), "{}", stderr(&o));
    assert!(!out.exists());
}

#[test]
fn enhance_prompt_rewrites_the_prompt_reproducibly() {
    let dir = tempfile::tempdir().unwrap();
    let small = ["--height", "128", "--width", "192", "--num-frames", "9"];
    let enhanced = |name: &str, seed: &str| {
        let o = generate(
            &dir.path().join(name),
            &[&small[..], &["--enhance-prompt", "--seed", seed]].concat(),
        );
        assert!(o.status.success(), "{}", stderr(&o));
        let err = stderr(&o);
        err.lines()
            .find_map(|l| l.strip_prefix("enhanced prompt: ").map(str::to_string))
            .unwrap_or_else(|| panic!("no enhanced prompt printed:\n{err}"))
    };
    let a = enhanced("a.mp4", "5");
    assert!(!a.trim().is_empty());
    assert_eq!(a, enhanced("b.mp4", "5"), "same seed, same rewrite");
    assert_ne!(a, enhanced("c.mp4", "6"), "another seed, another rewrite");
    let out = dir.path().join("d.mp4");
    let o = generate(
        &out,
        &[
            &small[..],
            &[
                "--enhance-prompt",
                "--enhance-system-prompt",
                "/nonexistent.txt",
            ],
        ]
        .concat(),
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("nonexistent.txt"), "{}", stderr(&o));
    assert!(!out.exists());
}

#[test]
fn coreml_vae_backend_is_checked_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o.mp4");
    let small = ["--height", "128", "--width", "192", "--num-frames", "9"];
    let o = generate(&out, &[&small[..], &["--vae-backend", "coreml"]].concat());
    assert!(!o.status.success());
    let expected = if cfg!(target_vendor = "apple") {
        "--coreml-decoder"
    } else {
        "needs macOS"
    };
    assert!(stderr(&o).contains(expected), "{}", stderr(&o));
    let o = generate(
        &out,
        &[&small[..], &["--coreml-decoder", "x.mlpackage"]].concat(),
    );
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("--vae-backend coreml"),
        "{}",
        stderr(&o)
    );
    only_file(dir.path(), None);
}
