use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use serde_json::json;

use super::test_files::*;
use super::*;

fn gemma_error(r: Result<GemmaAssets>) -> GemmaError {
    match r {
        Err(Error::Gemma(e)) => e,
        other => panic!("expected a Gemma assets error, got {other:?}"),
    }
}

fn meta(config: &Value) -> HashMap<String, String> {
    HashMap::from([(GEMMA_CONFIG_METADATA_KEY.to_string(), config.to_string())])
}

#[test]
fn packed_file_errors_name_the_file() {
    let dir = tempdir("packed-errors");
    let tok = tokenizer_json(false);
    let file = dir.join("te.safetensors");
    let err = |w: HashMap<String, Tensor>, t, s: &[(&str, String)], m| {
        write_packed(&file, w, t, s, m);
        let e = gemma_error(GemmaAssets::load(&file));
        assert!(e.to_string().contains("te.safetensors"), "{e}");
        e
    };
    let sidecars = required_sidecars();
    let cfg = gemma4_config();
    let e = err(HashMap::new(), Some(&tok), &sidecars, HashMap::new());
    assert!(matches!(e, GemmaError::MissingConfig { .. }), "{e}");
    let e = err(HashMap::new(), None, &sidecars, meta(&cfg));
    assert!(matches!(e, GemmaError::MissingTokenizer { .. }), "{e}");
    let e = err(HashMap::new(), Some(&tok), &sidecars[..1], meta(&cfg));
    assert!(
        matches!(&e, GemmaError::MissingSidecars { names, .. } if names == "processor_config.json"),
        "{e}"
    );
    let mut dense = cfg.clone();
    dense["model_type"] = json!("gemma4");
    let e = err(HashMap::new(), Some(&tok), &sidecars, meta(&dense));
    assert!(
        matches!(&e, GemmaError::UnsupportedModelType { found, .. } if found == "gemma4"),
        "{e}"
    );
    assert!(e.to_string().contains("not ported"), "{e}");
    let bad = HashMap::from([(GEMMA_CONFIG_METADATA_KEY.to_string(), "{oops".to_string())]);
    let e = err(HashMap::new(), Some(&tok), &sidecars, bad);
    assert!(matches!(e, GemmaError::InvalidJson { .. }), "{e}");
    let floats = HashMap::from([(
        TOKENIZER_JSON_TENSOR_KEY.to_string(),
        Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap(),
    )]);
    let e = err(floats, None, &sidecars, meta(&cfg));
    assert!(matches!(e, GemmaError::BadAssetTensor { .. }), "{e}");
    let e = gemma_error(GemmaAssets::load(&dir.join("missing.bin")));
    assert!(matches!(e, GemmaError::NotFound { .. }), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn packed_file_assets_and_metadata_fallback() -> Result<()> {
    let dir = tempdir("packed-ok");
    let file = dir.join("te.safetensors");
    let tok = tokenizer_json(false);
    let cfg = gemma4_config();
    // the sidecars as metadata strings (older packs), tokenizer_json stored as I64
    let mut m = meta(&cfg);
    for (name, text) in required_sidecars() {
        m.insert(name.to_string(), text);
    }
    m.insert(
        "generation_config.json".into(),
        json!({"top_k": 5}).to_string(),
    );
    let wide: Vec<i64> = tok.bytes().map(i64::from).collect();
    let n = wide.len();
    let weights = HashMap::from([(
        TOKENIZER_JSON_TENSOR_KEY.to_string(),
        Tensor::from_vec(wide, n, &Device::Cpu)?,
    )]);
    write_packed(&file, weights, None, &[], m);
    let a = GemmaAssets::load(&file)?;
    assert_eq!(a.tokenizer_json(), tok.as_bytes());
    assert_eq!(a.model_type(), "gemma4_unified");
    assert_eq!(a.gemma_version(), Some("gemma4-test"));
    assert_eq!((a.dims().hidden_size, a.dims().num_hidden_layers), (8, 2));
    assert_eq!(a.weight_paths(), std::slice::from_ref(&file));
    assert_eq!(a.generation_config(), Some(json!({"top_k": 5})));
    assert_eq!(
        a.sidecar_json("tokenizer_config.json")?,
        Some(tokenizer_config())
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

#[test]
fn root_without_config_is_the_12b_gemma3() -> Result<()> {
    let dir = tempdir("root");
    std::fs::write(dir.join("tokenizer.json"), tokenizer_json(true)).unwrap();
    std::fs::create_dir_all(dir.join("b")).unwrap();
    std::fs::write(dir.join("b/tokenizer_config.json"), "{}").unwrap();
    std::fs::write(dir.join("a.safetensors"), "").unwrap();
    let a = GemmaAssets::load(&dir)?;
    assert_eq!(a.model_type(), "gemma3");
    assert_eq!(a.dims(), GemmaDims::default());
    assert!(a.config_json().is_none() && a.gemma_version().is_none());
    assert_eq!(a.sidecar("tokenizer_config.json"), Some(&b"{}"[..]));
    std::fs::write(
        dir.join("config.json"),
        json!({"model_type": "t5"}).to_string(),
    )
    .unwrap();
    let e = gemma_error(GemmaAssets::load(&dir));
    assert!(matches!(e, GemmaError::UnsupportedModelType { .. }), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ltx-assets-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
