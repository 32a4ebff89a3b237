//! `fp8_cast` fixtures (the reference's fp8-cast downcast and `Fp8CastLinear` on one block
//! linear) and `gguf_read` fixtures (a GGUF file written by llama.cpp's gguf-py, read back).

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;

use candle_core::{DType, Device, Module};
use ltx_core::loader::{SafetensorsFiles, StateDict, StoredForm};
use ltx_core::model::transformer::ltxv_model_comfy_renaming_map;
use ltx_core::quantization::{LinearSource, Quantization};

use super::{Fixture, Outputs};
use crate::Result;

pub(super) fn run_fp8_cast(
    fx: &Fixture,
    inputs: &Arc<StateDict>,
    device: &Device,
) -> Result<Outputs> {
    let key = fx.call_str("key")?;
    // the stored bf16 values (widening to f32 is exact, so narrowing either gives the same bits)
    let weight = fx.input(inputs, "weight", device)?;
    let bias = fx.input(inputs, "bias", device)?;
    let x = fx.input(inputs, "x", device)?;
    let (out_dim, in_dim) = weight.dims2()?;
    let (w_key, b_key) = (format!("{key}.weight"), format!("{key}.bias"));
    let sd = Arc::new(
        StateDict::from_tensors(HashMap::from([
            (w_key.clone(), weight),
            (b_key.clone(), bias),
        ]))
        .with_quantization(Quantization::Fp8Cast),
    );
    let vb = sd.var_builder(DType::F32, device);
    let linear = LinearSource::new(&sd).linear(in_dim, out_dim, true, vb.pp(key))?;
    if linear.form() != StoredForm::Fp8 {
        return Err(fx.bad(format!("`{key}` is not on the fp8-cast allow-list")));
    }
    Ok(vec![
        (
            "weight_fp8".into(),
            sd.fp8_tensor(&w_key, &[out_dim, in_dim], device)?,
        ),
        (
            "bias_fp8".into(),
            sd.fp8_tensor(&b_key, &[out_dim], device)?,
        ),
        ("y".into(), linear.forward(&x)?),
    ])
}

pub(super) fn run_gguf_read(
    fx: &Fixture,
    inputs: &Arc<StateDict>,
    device: &Device,
) -> Result<Outputs> {
    let bytes = inputs.raw_tensor("file", &Device::Cpu)?;
    if bytes.dtype() != DType::U8 {
        return Err(fx.bad("input.file must be the GGUF file's bytes (U8)"));
    }
    let bytes = bytes.to_vec1::<u8>()?;
    let dir = tempfile::tempdir().map_err(|e| fx.bad(format!("temporary folder: {e}")))?;
    // named like a community file
    let path = dir.path().join("ltx-2-tiny-Q4_K_M.gguf");
    std::fs::File::create(&path)
        .and_then(|mut f| f.write_all(&bytes))
        .map_err(|e| fx.bad(format!("writing the GGUF: {e}")))?;
    let files = SafetensorsFiles::open(&[&path])?;
    let sd = files.state_dict(&ltxv_model_comfy_renaming_map())?;
    let mut out = Outputs::new();
    for name in fx.call_array("tensors")? {
        let name = name
            .as_str()
            .ok_or_else(|| fx.bad("call.tensors must be names"))?;
        let dense = sd.raw_tensor(name, device)?.to_dtype(DType::F32)?;
        if let Some(StoredForm::Blocks(_)) = sd.stored_form(name) {
            // the blocks as the quantized linears hold them, dequantized
            let q = sd.block_tensor(name, dense.dims(), device)?;
            out.push((format!("{name}@blocks"), q.dequantize(device)?));
        }
        out.push((name.to_string(), dense));
    }
    Ok(out)
}
