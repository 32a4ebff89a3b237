//! Exports every component from the committed PyTorch fixtures, runs the packages through the
//! reference interpreter and compares with the Candle modules and with the fixtures' expected
//! outputs; checks the typed errors; and (when the coremltools venv exists) validates every
//! package with coremltools' milproto loader.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use ltx_coreml::check::FP32_CANDLE_TOL;
use ltx_coreml::interp::max_abs_diff;
use ltx_coreml::{
    candle_forward, check_fixture, export, to_time_major, Component, ConvForm, CoreMlError,
    ExportOptions, Interpreter, PackageMeta, Precision, ShapeSpec,
};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(format!("{name}.safetensors"))
}

fn tensors(path: &Path) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(path, &Device::Cpu).unwrap()
}

fn opts(
    component: Component,
    checkpoint: PathBuf,
    latent: [usize; 3],
    precision: Precision,
    conv_form: ConvForm,
    out: PathBuf,
) -> ExportOptions {
    ExportOptions {
        component,
        checkpoint,
        upsampler: None,
        shape: ShapeSpec::Latent(latent),
        precision,
        conv_form,
        out,
        force: false,
    }
}

/// Max |a − b| relative to max |b|.
fn rel(a: &Tensor, b: &Tensor) -> (f32, f32) {
    let d = max_abs_diff(a, b).unwrap();
    let scale = b
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    (d, d / scale.max(1e-12))
}

/// Tolerance of an fp16 package against Candle f32, relative to the output's largest value.
/// fp16 keeps 11 significant bits (≈ 4.9e-4 per rounding) and a VAE chains a few dozen rounded
/// layers. The fixture decoders are extremely narrow (PixelNorm over 2–4 channels, which is close
/// to `sign(x)` and so amplifies rounding near zero): they reach 1–2e-2, while the 16-channel
/// LTX-2 fixture decoder, the encoders and the upsamplers stay near 1e-3.
const FP16_REL_TOL: f32 = 3e-2;

struct Case {
    name: &'static str,
    component: Component,
    fixture: &'static str,
    input: &'static str,
    output: &'static str,
}

const CASES: &[Case] = &[
    Case {
        name: "decoder",
        component: Component::VideoDecoder,
        fixture: "video_decoder_ltx2",
        input: "input.latent",
        output: "output.video",
    },
    Case {
        name: "decoder_ltx23",
        component: Component::VideoDecoder,
        fixture: "video_decoder_ltx23",
        input: "input.latent",
        output: "output.video",
    },
    Case {
        name: "decoder_causal",
        component: Component::VideoDecoder,
        fixture: "video_decoder_causal",
        input: "input.latent",
        output: "output.video",
    },
    Case {
        name: "encoder",
        component: Component::VideoEncoder,
        fixture: "video_encoder_ltx2",
        input: "input.video",
        output: "output.latent",
    },
    Case {
        name: "encoder_ltx23",
        component: Component::VideoEncoder,
        fixture: "video_encoder_ltx23",
        input: "input.video",
        output: "output.latent",
    },
    Case {
        name: "upsampler_spatial",
        component: Component::LatentUpsampler,
        fixture: "latent_upsampler_spatial",
        input: "input.latent",
        output: "output.latent",
    },
    Case {
        name: "upsampler_temporal",
        component: Component::LatentUpsampler,
        fixture: "latent_upsampler_temporal",
        input: "input.latent",
        output: "output.latent",
    },
    Case {
        name: "upsampler_spatiotemporal",
        component: Component::LatentUpsampler,
        fixture: "latent_upsampler_spatiotemporal",
        input: "input.latent",
        output: "output.latent",
    },
    Case {
        name: "upsampler_dims2",
        component: Component::LatentUpsampler,
        fixture: "latent_upsampler_dims2",
        input: "input.latent",
        output: "output.latent",
    },
];

/// Latent `(F', H', W')` of a case, from the fixture's latent tensor.
fn latent_dims(case: &Case, t: &HashMap<String, Tensor>) -> [usize; 3] {
    let key = if case.component == Component::VideoEncoder {
        case.output
    } else {
        case.input
    };
    let d = t[key].dims();
    [d[2], d[3], d[4]]
}

/// Every case in both precisions and both conv forms through `check_fixture`: the package run
/// by the interpreter against the PyTorch fixture's output and against the Candle module (the
/// criteria of `FixtureCheck::pass`, the same `ltx-coreml parity` applies to fixtures of any
/// seed).
#[test]
fn packages_match_the_reference_and_candle() {
    let dir = tempfile::tempdir().unwrap();
    for case in CASES {
        for precision in [Precision::Fp32, Precision::Fp16] {
            for form in [ConvForm::ChannelFold, ConvForm::PerTap] {
                let c = check_fixture(&fixture(case.fixture), precision, form, dir.path())
                    .unwrap_or_else(|e| panic!("{}: {e}", case.name));
                println!(
                    "{:<26} {:<5} {:<12} vs reference max {:.3e} (rel {:.3e}, rms {:.3e}) | vs \
                     candle f32 {:.3e}, f64 {:.3e}",
                    case.name,
                    precision.name(),
                    form.name(),
                    c.vs_reference.0,
                    c.vs_reference.1,
                    c.rms_rel,
                    c.vs_candle.0,
                    c.vs_candle_f64
                );
                assert!(c.pass(), "{}: {c:?}", case.name);
                if precision == Precision::Fp32 {
                    assert!(c.vs_candle_f64 <= FP32_CANDLE_TOL, "{c:?}");
                }
            }
        }
    }
}

/// `--upsampler` with `--checkpoint`: the upsampler between the VAE's un-normalise/normalise.
#[test]
fn upsample_video_with_vae_statistics() {
    let dir = tempfile::tempdir().unwrap();
    let t = tensors(&fixture("latent_upsampler_spatial_video"));
    let stats = HashMap::from([
        (
            "vae.per_channel_statistics.std-of-means".to_string(),
            t["input.std_of_means"].to_dtype(DType::F32).unwrap(),
        ),
        (
            "vae.per_channel_statistics.mean-of-means".to_string(),
            t["input.mean_of_means"].to_dtype(DType::F32).unwrap(),
        ),
    ]);
    let ckpt = dir.path().join("vae_stats.safetensors");
    candle_core::safetensors::save(&stats, &ckpt).unwrap();
    let latent = t["input.latent"].narrow(0, 0, 1).unwrap();
    let expected = t["output.latent"].narrow(0, 0, 1).unwrap();
    for precision in [Precision::Fp32, Precision::Fp16] {
        let out = dir
            .path()
            .join(format!("up_video_{}.mlpackage", precision.name()));
        let mut o = opts(
            Component::LatentUpsampler,
            ckpt.clone(),
            [2, 3, 2],
            precision,
            ConvForm::ChannelFold,
            out.clone(),
        );
        o.upsampler = Some(fixture("latent_upsampler_spatial_video"));
        let meta = export(&o).unwrap();
        let input = to_time_major(&latent.to_dtype(DType::F32).unwrap()).unwrap();
        let got = Interpreter::load(&out).unwrap().run(&input).unwrap();
        let candle = candle_forward(&meta, &input, &Device::Cpu).unwrap();
        let want = to_time_major(&expected).unwrap();
        let (a, r) = rel(&got, &candle);
        let (fa, fr) = rel(&got, &want);
        println!(
            "upsample_video {:<5} vs candle max_abs {a:.3e} rel {r:.3e} | vs fixture max_abs {fa:.3e} rel {fr:.3e}",
            precision.name()
        );
        match precision {
            Precision::Fp32 => assert!(a <= FP32_CANDLE_TOL && fa <= 1e-4, "{a} {fa}"),
            Precision::Fp16 => assert!(r <= FP16_REL_TOL && fr <= FP16_REL_TOL, "{r} {fr}"),
        }
    }
}

/// The fp16 PixelNorm must not overflow where `x²` would (|x| ≥ 256 → x² > 65504).
#[test]
fn fp16_pixel_norm_survives_large_activations() {
    let dir = tempfile::tempdir().unwrap();
    let path = fixture("video_decoder_ltx2");
    let out = dir.path().join("big.mlpackage");
    export(&opts(
        Component::VideoDecoder,
        path,
        [2, 2, 2],
        Precision::Fp16,
        ConvForm::ChannelFold,
        out.clone(),
    ))
    .unwrap();
    let meta = PackageMeta::read(&out).unwrap();
    let input = (Tensor::randn(0f32, 1.0, meta.input_shape.clone(), &Device::Cpu).unwrap()
        * 3000.0)
        .unwrap();
    let got = Interpreter::load(&out).unwrap().run(&input).unwrap();
    let candle = candle_forward(&meta, &input, &Device::Cpu).unwrap();
    let finite = got
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .iter()
        .all(|v| v.is_finite());
    assert!(finite, "fp16 output has inf/NaN");
    let (_, r) = rel(&got, &candle);
    println!("large-input fp16 decoder rel error {r:.3e}");
    assert!(r <= 5e-2, "{r}");
}

#[test]
fn bad_inputs_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let dec = fixture("video_decoder_ltx2");
    let out = dir.path().join("x.mlpackage");
    let base = opts(
        Component::VideoDecoder,
        dec.clone(),
        [2, 2, 2],
        Precision::Fp32,
        ConvForm::ChannelFold,
        out.clone(),
    );
    assert!(matches!(
        "video-vocoder".parse::<Component>(),
        Err(CoreMlError::UnsupportedComponent(_))
    ));
    for shape in [
        ShapeSpec::Pixels([10, 64, 64]),
        ShapeSpec::Pixels([9, 65, 64]),
        ShapeSpec::Pixels([9, 64, 48]),
        ShapeSpec::Latent([0, 2, 2]),
    ] {
        let e = export(&ExportOptions {
            shape,
            ..base.clone()
        })
        .unwrap_err();
        assert!(matches!(e, CoreMlError::InvalidShape(_)), "{shape:?}: {e}");
    }
    // Pixel-space shapes that fit are accepted.
    export(&ExportOptions {
        shape: ShapeSpec::Pixels([9, 64, 64]),
        ..base.clone()
    })
    .unwrap();
    // The output now exists: refused without --force, replaced with it.
    let e = export(&base).unwrap_err();
    assert!(matches!(e, CoreMlError::OutputExists(_)), "{e}");
    export(&ExportOptions {
        force: true,
        ..base.clone()
    })
    .unwrap();
    let e = export(&ExportOptions {
        out: dir.path().join("x.bin"),
        ..base.clone()
    })
    .unwrap_err();
    assert!(matches!(e, CoreMlError::InvalidOutput { .. }), "{e}");

    // Missing and misshaped weights: typed loader errors, and nothing left behind.
    let mut w = tensors(&dec);
    let config = safetensors_config(&dec);
    let key = "vae.decoder.conv_in.conv.weight";
    let original = w.remove(key).unwrap();
    let broken = dir.path().join("broken");
    std::fs::create_dir(&broken).unwrap();
    let missing = broken.join("missing.safetensors");
    save_with_config(&w, &config, &missing);
    let e = export(&ExportOptions {
        checkpoint: missing,
        out: broken.join("m.mlpackage"),
        ..base.clone()
    })
    .unwrap_err();
    assert!(
        matches!(e, CoreMlError::Model(ltx_core::Error::MissingWeight { .. })),
        "{e}"
    );
    w.insert(key.to_string(), original.narrow(0, 0, 1).unwrap());
    let misshaped = broken.join("misshaped.safetensors");
    save_with_config(&w, &config, &misshaped);
    let e = export(&ExportOptions {
        checkpoint: misshaped,
        out: broken.join("m.mlpackage"),
        ..base.clone()
    })
    .unwrap_err();
    assert!(
        matches!(e, CoreMlError::Model(ltx_core::Error::ShapeMismatch { .. })),
        "{e}"
    );
    let left: Vec<_> = std::fs::read_dir(&broken)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().contains("mlpackage"))
        .collect();
    assert!(left.is_empty(), "failed exports left {left:?}");

    // Unsupported models: a timestep-conditioned decoder and a rational upsampler.
    let e = export(&ExportOptions {
        checkpoint: fixture("video_decoder_ltx2_tc"),
        out: dir.path().join("tc.mlpackage"),
        shape: ShapeSpec::Latent([1, 2, 2]),
        ..base.clone()
    })
    .unwrap_err();
    assert!(matches!(e, CoreMlError::UnsupportedModel(_)), "{e}");
    let e = export(&ExportOptions {
        component: Component::LatentUpsampler,
        checkpoint: fixture("latent_upsampler_rational_1_5"),
        out: dir.path().join("r.mlpackage"),
        ..base.clone()
    })
    .unwrap_err();
    assert!(matches!(e, CoreMlError::UnsupportedModel(_)), "{e}");
}

fn safetensors_config(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    meta.metadata().as_ref().unwrap()["config"].clone()
}

fn save_with_config(w: &HashMap<String, Tensor>, config: &str, path: &Path) {
    let metadata = HashMap::from([("config".to_string(), config.to_string())]);
    ltx_core::loader::synthetic::save_safetensors(path, w, metadata).unwrap();
}

#[test]
fn corrupt_blobs_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("c.mlpackage");
    export(&opts(
        Component::LatentUpsampler,
        fixture("latent_upsampler_spatial"),
        [3, 2, 3],
        Precision::Fp32,
        ConvForm::ChannelFold,
        out.clone(),
    ))
    .unwrap();
    let blob = out.join("Data/com.apple.CoreML/weights/weight.bin");
    let good = std::fs::read(&blob).unwrap();
    let input = Tensor::zeros((3, 8, 2, 3), DType::F32, &Device::Cpu).unwrap();
    // A bad sentinel on the first record.
    let mut bad = good.clone();
    bad[64] ^= 0xff;
    std::fs::write(&blob, &bad).unwrap();
    let e = Interpreter::load(&out)
        .and_then(|i| i.run(&input))
        .unwrap_err();
    assert!(
        matches!(e, CoreMlError::CorruptBlob { ref reason, .. } if reason.contains("sentinel")),
        "{e}"
    );
    // A truncated file: offsets point past its end.
    std::fs::write(&blob, &good[..good.len() / 2]).unwrap();
    let e = Interpreter::load(&out)
        .and_then(|i| i.run(&input))
        .unwrap_err();
    assert!(
        matches!(e, CoreMlError::CorruptBlob { ref reason, .. } if reason.contains("out of range")),
        "{e}"
    );
    // A wrong storage version in the header.
    let mut bad = good;
    bad[4] = 7;
    std::fs::write(&blob, &bad).unwrap();
    assert!(matches!(
        Interpreter::load(&out).err(),
        Some(CoreMlError::CorruptBlob { .. })
    ));
}

fn coremltools_python() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("LTX_COREMLTOOLS_PYTHON") {
        return Some(PathBuf::from(p));
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let p = root.join("target/coremltools-venv/bin/python");
    p.exists().then_some(p)
}

/// Every package form loads through coremltools' milproto loader (full type/shape inference of
/// every op and a read of every blob).
#[test]
fn packages_load_in_coremltools() {
    let Some(python) = coremltools_python() else {
        // CI (`.ci/run`) makes the venv and requires it: the check cannot pass by skipping there
        assert!(
            std::env::var_os("LTX_REQUIRE_COREMLTOOLS").is_none(),
            "LTX_REQUIRE_COREMLTOOLS is set but there is no coremltools venv at \
             target/coremltools-venv (nor LTX_COREMLTOOLS_PYTHON)"
        );
        println!(
            "SKIPPED packages_load_in_coremltools: no coremltools venv at \
             target/coremltools-venv (run .ci/run, or set LTX_COREMLTOOLS_PYTHON)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut pkgs = Vec::new();
    for case in CASES {
        let t = tensors(&fixture(case.fixture));
        for precision in [Precision::Fp32, Precision::Fp16] {
            for form in [ConvForm::ChannelFold, ConvForm::PerTap] {
                let out = dir.path().join(format!(
                    "{}_{}_{}.mlpackage",
                    case.name,
                    precision.name(),
                    form.name()
                ));
                export(&opts(
                    case.component,
                    fixture(case.fixture),
                    latent_dims(case, &t),
                    precision,
                    form,
                    out.clone(),
                ))
                .unwrap();
                pkgs.push(out);
            }
        }
    }
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/coreml/validate_mlpackage.py");
    let res = std::process::Command::new(&python)
        .arg(script)
        .args(&pkgs)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&res.stdout);
    println!("{stdout}");
    assert!(
        res.status.success(),
        "coremltools rejected a package:\n{stdout}\n{}",
        String::from_utf8_lossy(&res.stderr)
    );
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("OK ")).count(),
        pkgs.len()
    );
    assert!(stdout
        .lines()
        .all(|l| !l.starts_with("OK ") || l.ends_with("max_rank=4")));
}
