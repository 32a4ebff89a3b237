//! `ltx noise` against torch's own draws (the committed `noise_torch_cpu` fixture), and its refusals
//! of bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use candle_core::{DType, Device};
use ltx_core::loader::SafetensorsFiles;
use serde_json::Value;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/noise_torch_cpu.safetensors")
}

fn ltx_noise(args: &[String]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ltx"))
        .env("RUST_BACKTRACE", "0")
        .args(["--device", "cpu", "noise"])
        .args(args)
        .output()
        .unwrap()
}

/// The fixture's draw dtype as `--draw-dtype`.
fn dtype_flag(torch_dtype: &str) -> &'static str {
    match torch_dtype {
        "float32" => "f32",
        "float64" => "f64",
        "bfloat16" => "bf16",
        "float16" => "f16",
        other => panic!("unknown dtype {other}"),
    }
}

#[test]
fn prints_torchs_draws_value_for_value() {
    let path = fixture();
    let call = SafetensorsFiles::open(&[&path])
        .unwrap()
        .metadata_json("call")
        .unwrap()
        .expect("the fixture has a call");
    assert_eq!(call["kind"], "torch-cpu");
    let tensors = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
    let mut checked = 0;
    for (j, gen) in call["generators"].as_array().unwrap().iter().enumerate() {
        let draws = gen["draws"].as_array().unwrap();
        let dtypes: Vec<&str> = draws.iter().map(|d| d[1].as_str().unwrap()).collect();
        // one `ltx noise` call draws one dtype; the mixed-dtype generator is the parity check's
        if dtypes.iter().any(|d| *d != dtypes[0]) {
            continue;
        }
        let seed = gen["seed"].as_i64().unwrap();
        let mut args = vec![
            "--kind".into(),
            "torch-cpu".into(),
            "--seed".into(),
            seed.to_string(),
            "--draw-dtype".into(),
            dtype_flag(dtypes[0]).into(),
        ];
        let mut want: Vec<f64> = Vec::new();
        for (i, d) in draws.iter().enumerate() {
            let shape: Vec<String> = d[0]
                .as_array()
                .unwrap()
                .iter()
                .map(|v: &Value| v.as_u64().unwrap().to_string())
                .collect();
            args.extend(["--shape".to_string(), shape.join(",")]);
            let t = &tensors[&format!("output.g{j}_d{i}")];
            let t = t.flatten_all().unwrap().to_dtype(DType::F64).unwrap();
            want.extend(t.to_vec1::<f64>().unwrap());
        }
        let o = ltx_noise(&args);
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let got: Vec<f64> = String::from_utf8(o.stdout)
            .unwrap()
            .lines()
            .map(|l| {
                if dtypes[0] == "float64" {
                    l.parse::<f64>().unwrap()
                } else {
                    l.parse::<f32>().unwrap() as f64
                }
            })
            .collect();
        assert_eq!(got.len(), want.len(), "{args:?}");
        let bad = got.iter().zip(&want).filter(|(a, b)| a != b).count();
        assert_eq!(bad, 0, "generator {j} ({args:?}): {bad} values differ");
        checked += 1;
    }
    assert!(checked >= 4, "only {checked} generators checked");
}

#[test]
fn refuses_bad_input_clearly() {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    for (args, expect) in [
        (s(&["--seed", "0", "--shape", ""]), "the shape is empty"),
        (s(&["--seed", "0", "--shape", "2,0"]), "size 0"),
        (
            s(&["--seed", "0", "--shape", "2,x"]),
            "`x` is not a positive integer",
        ),
        (
            s(&["--seed", "0", "--shape", "2.5"]),
            "is not a positive integer",
        ),
        (
            s(&["--seed", "zero", "--shape", "3"]),
            "is not an integer seed",
        ),
        (s(&["--seed", "0"]), "--shape"),
        (
            s(&["--seed", "0", "--shape", "3", "--kind", "numpy"]),
            "invalid value 'numpy'",
        ),
        (
            s(&[
                "--seed",
                "0",
                "--shape",
                "3",
                "--kind",
                "torch-cuda",
                "--sms",
                "0",
            ]),
            "--sms",
        ),
        (
            s(&["--seed", "0", "--shape", "99999999999,99999999999,99999"]),
            "too large",
        ),
    ] {
        let o = ltx_noise(&args);
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{args:?} succeeded");
        assert!(e.contains(expect), "{args:?}: expected `{expect}` in: {e}");
        assert!(o.stdout.is_empty(), "{args:?} printed values");
    }
}

#[test]
fn kinds_differ_and_successive_shapes_continue_the_stream() {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let run = |args: Vec<String>| String::from_utf8(ltx_noise(&args).stdout).unwrap();
    let whole = run(s(&["--seed", "3", "--shape", "40"]));
    let parts = run(s(&["--seed", "3", "--shape", "20", "--shape", "20"]));
    assert_eq!(whole.lines().count(), 40);
    assert_ne!(whole, parts, "a 40-value fill is not two 20-value fills");
    let again = run(s(&["--seed", "3", "--shape", "20", "--shape", "20"]));
    assert_eq!(parts, again);
    let cuda = run(s(&["--seed", "3", "--shape", "40", "--kind", "torch-cuda"]));
    let ltx = run(s(&["--seed", "3", "--shape", "40", "--kind", "ltx"]));
    assert_eq!(cuda.lines().count(), 40);
    assert!(whole != cuda && cuda != ltx && whole != ltx);
}
