//! All eight pipelines on an LTX-2.5 split set (the tiny one: every file laid out and configured like
//! the released `Lightricks/LTX-2.5` files at tiny widths), and the checks between its parts.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ltx_pipelines::media::video::probe_mp4;
use ltx_pipelines::tiny::{ensure_tiny_ltx25, ensure_tiny_model, TinyLtx25};

mod common;
use common::{write_lora, write_png};

fn cache() -> PathBuf {
    std::env::temp_dir().join("ltx-rs-test-cache")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `ltx --device cpu <cmd>` on a prompt, with the split flags of `set` and `extra`.
fn run(cmd: &str, set: &TinyLtx25, out: &Path, extra: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ltx"));
    c.env("RUST_BACKTRACE", "0")
        .env("HF_HUB_OFFLINE", "1")
        .args([
            "--device",
            "cpu",
            cmd,
            "--prompt",
            "a cat walks on the beach",
        ])
        .arg("--transformer-path")
        .arg(&set.transformer)
        .arg("--text-encoder-path")
        .arg(&set.text_encoder)
        .arg("--video-vae-path")
        .arg(&set.video_vae)
        .arg("--audio-vae-path")
        .arg(&set.audio_vae)
        .arg("--output-path")
        .arg(out)
        .args(extra);
    c.output().expect("the ltx binary runs")
}

/// Two steps of the guided pipelines, STG on the tiny transformer's last block (the released
/// defaults name blocks it does not have).
const GUIDED: [&str; 6] = [
    "--num-inference-steps",
    "2",
    "--video-stg-blocks",
    "1",
    "--audio-stg-blocks",
    "1",
];

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 temp path")
}

#[test]
fn distilled_predicts_the_frame_count_and_one_stage_runs_on_ltx25() {
    let set = ensure_tiny_ltx25(&cache()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // distilled: ancestral stage 1, the 2.5 upsampler, --num-frames omitted -> the duration head
    let out = dir.path().join("distilled.mp4");
    let o = run(
        "distilled",
        &set,
        &out,
        &[
            "--height",
            "64",
            "--width",
            "64",
            "--duration-head-path",
            path(&set.duration_head),
            "--spatial-upsampler-path",
            path(&set.spatial_upsampler),
        ],
    );
    let e = stderr(&o);
    assert!(o.status.success(), "{e}");
    let info = probe_mp4(&out).unwrap();
    // the default window is [1, 20] s at 24 fps, on the 8k + 1 grid
    assert_eq!(info.frame_count % 8, 1, "{}", info.frame_count);
    assert!(
        (25..=481).contains(&info.frame_count),
        "{}",
        info.frame_count
    );
    assert_eq!((info.height, info.width), (64, 64));
    assert!(info.audio.is_some());
    // one-stage, guided, a fixed frame count
    let out = dir.path().join("one-stage.mp4");
    let o = run(
        "one-stage",
        &set,
        &out,
        &[
            &["--height", "64", "--width", "96", "--num-frames", "9"][..],
            &GUIDED,
        ]
        .concat(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let info = probe_mp4(&out).unwrap();
    assert_eq!((info.frame_count, info.height, info.width), (9, 64, 96));
}

#[test]
fn the_two_stage_pipelines_and_keyframe_interpolation_run_on_ltx25() {
    let set = ensure_tiny_ltx25(&cache()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // a distilled LoRA on the 2.5 transformer's video self-attention (2 heads x 16)
    let lora = dir.path().join("distilled-lora.safetensors");
    write_lora(&lora, "transformer_blocks.0.attn1.to_q", 32, 32);
    let (first, last) = (dir.path().join("first.png"), dir.path().join("last.png"));
    write_png(&first, 80, 64, 1);
    write_png(&last, 64, 96, 2);
    let common = [
        "--height",
        "64",
        "--width",
        "128",
        "--num-frames",
        "9",
        "--distilled-lora",
        path(&lora),
        "--spatial-upsampler-path",
        path(&set.spatial_upsampler),
    ];
    let keyframes = [
        "--image",
        path(&first),
        "0",
        "1.0",
        "--image",
        path(&last),
        "8",
        "0.9",
    ];
    for (cmd, extra) in [
        ("two-stage", &[][..]),
        ("two-stage-hq", &[][..]),
        ("keyframe-interpolation", &keyframes[..]),
    ] {
        let out = dir.path().join(format!("{cmd}.mp4"));
        let o = run(cmd, &set, &out, &[&common[..], &GUIDED, extra].concat());
        assert!(o.status.success(), "{cmd}: {}", stderr(&o));
        let info = probe_mp4(&out).unwrap();
        assert_eq!(
            (info.frame_count, info.height, info.width),
            (9, 64, 128),
            "{cmd}"
        );
    }
}

#[test]
fn audio_to_video_ic_lora_and_retake_run_on_ltx25() {
    use candle_core::{Device, Tensor};
    let set = ensure_tiny_ltx25(&cache()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let upsampler = path(&set.spatial_upsampler).to_string();
    let size = ["--height", "64", "--width", "128"];
    let check = |o: Output, out: &Path, frames: usize, what: &str| {
        assert!(o.status.success(), "{what}: {}", stderr(&o));
        let info = probe_mp4(out).unwrap();
        assert_eq!(
            (info.frame_count, info.height, info.width),
            (frames, 64, 128),
            "{what}"
        );
        info
    };
    // a source clip from the 2.5 set itself
    let src = dir.path().join("src.mp4");
    let o = run(
        "distilled",
        &set,
        &src,
        &[
            &size[..],
            &["--num-frames", "17", "--spatial-upsampler-path", &upsampler],
        ]
        .concat(),
    );
    check(o, &src, 17, "source");
    // audio to video: a 1 s stereo tone
    let wav = dir.path().join("tone.wav");
    let n = 16000usize;
    let data: Vec<f32> = (0..2 * n)
        .map(|i| 0.3 * ((i % n) as f32 * 0.05).sin())
        .collect();
    ltx_pipelines::media::audio::write_wav(
        &wav,
        &ltx_core::types::Audio {
            waveform: Tensor::from_vec(data, (1, 2, n), &Device::Cpu).unwrap(),
            sampling_rate: 16000,
        },
    )
    .unwrap();
    // one LoRA on the video self-attention, as the distilled LoRA and as the IC-LoRA
    let lora = dir.path().join("lora.safetensors");
    write_lora(&lora, "transformer_blocks.0.attn1.to_q", 32, 32);
    let out = dir.path().join("a2v.mp4");
    let a2v = [
        "--num-frames",
        "9",
        "--audio-path",
        path(&wav),
        "--distilled-lora",
        path(&lora),
        "--spatial-upsampler-path",
        &upsampler,
    ];
    let o = run("a2vid", &set, &out, &[&size[..], &GUIDED, &a2v].concat());
    let info = check(o, &out, 9, "a2vid");
    assert_eq!(
        info.audio.unwrap().sample_rate,
        16000,
        "the input soundtrack"
    );
    // IC-LoRA on the source clip as the control video
    let out = dir.path().join("ic.mp4");
    let ic = [
        "--num-frames",
        "17",
        "--video-conditioning",
        path(&src),
        "0.9",
        "--lora",
        path(&lora),
        "--spatial-upsampler-path",
        &upsampler,
    ];
    let o = run("ic-lora", &set, &out, &[&size[..], &ic].concat());
    check(o, &out, 17, "ic-lora");
    // retake a window of the source clip
    let out = dir.path().join("retake.mp4");
    let window = [
        "--video-path",
        path(&src),
        "--start-time",
        "0.2",
        "--end-time",
        "0.5",
    ];
    let o = run("retake", &set, &out, &[&GUIDED[..], &window].concat());
    check(o, &out, 17, "retake");
}

/// A copy of `src` with `model_version` set to `version`.
fn relabel(src: &Path, dst: &Path, version: &str) {
    let files = ltx_core::loader::SafetensorsFiles::open(&[src]).unwrap();
    let mut meta = files.metadata();
    meta.insert("model_version".into(), version.into());
    let tensors = candle_core::safetensors::load(src, &candle_core::Device::Cpu).unwrap();
    ltx_core::loader::synthetic::save_safetensors(dst, &tensors, meta).unwrap();
}

#[test]
fn parts_of_other_generations_are_refused_before_loading() {
    let set = ensure_tiny_ltx25(&cache()).unwrap();
    let ltx2 = ensure_tiny_model(&cache()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let upsampler = path(&set.spatial_upsampler).to_string();
    let small = [
        "--height",
        "64",
        "--width",
        "64",
        "--num-frames",
        "9",
        "--spatial-upsampler-path",
        &upsampler,
    ];
    // a Gemma-3 root for a transformer trained on Gemma-4
    let mut gemma3 = set.clone();
    gemma3.text_encoder = ltx2.gemma_root.clone();
    // an LTX-2.3 video VAE (the 2.5 one relabelled: the layouts are alike) with the 2.5 transformer
    let mut old_vae = set.clone();
    old_vae.video_vae = dir.path().join("ltx-2.3-vae.safetensors");
    relabel(&set.video_vae, &old_vae.video_vae, "2.3.0");
    for (parts, expected) in [
        (gemma3, "gemma_version"),
        (old_vae, "the transformer is LTX-2.5"),
    ] {
        let out = dir.path().join("out.mp4");
        let o = run("distilled", &parts, &out, &small);
        let e = stderr(&o);
        assert!(!o.status.success(), "{e}");
        assert!(e.contains(expected), "{expected}: {e}");
        assert!(!out.exists());
    }
}

#[test]
fn info_names_the_component_and_version_of_each_ltx25_file() {
    let set = ensure_tiny_ltx25(&cache()).unwrap();
    for (file, expected) in [
        (&set.transformer, "transformer"),
        (&set.text_encoder, "Gemma"),
        (&set.video_vae, "video VAE"),
        (&set.audio_vae, "vocoder"),
        (&set.duration_head, "duration head"),
        (&set.spatial_upsampler, "spatial upsampler"),
    ] {
        let o = Command::new(env!("CARGO_BIN_EXE_ltx"))
            .arg("info")
            .arg(file)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(out.contains(expected), "missing `{expected}` in:\n{out}");
        if file != &set.text_encoder && file != &set.spatial_upsampler {
            assert!(out.contains("2.5"), "no version in:\n{out}");
        }
    }
}
