//! `ltx quantize`: a transformer checkpoint written as a GGUF file like the community ones —
//! ComfyUI-native names (no `model.diffusion_model.` prefix), the block linears in a GGUF block
//! type, every other tensor in F32 — plus the checkpoint's own `config` / `model_version`
//! metadata, so nothing has to be inferred when it is read back. The text projection a
//! monolithic LTX-2.3 file keeps beside the transformer (`text_embedding_projection.*`) is
//! written too (F32), so the GGUF replaces the transformer file as the pipelines read it.
//!
//! The file is streamed: the header is computed from the shapes alone, then each tensor is read,
//! converted, written and dropped, so memory holds one tensor at a time. It is written next to
//! the output under a temporary name and renamed into place when complete.

use std::io::{BufWriter, Seek, Write};
use std::path::{Path, PathBuf};

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device};

use super::Quantization;
use crate::loader::gguf::{stored_bytes, DIFFUSION_MODEL_PREFIX};
use crate::loader::{SDOps, SafetensorsFiles, StateDict};
use crate::{Error, Result};

const ALIGNMENT: usize = 32;
const VERSION: u32 = 3;

/// GGML's type ids (`ggml.h`), for the types a file written here can hold.
fn type_id(t: GgmlDType) -> u32 {
    match t {
        GgmlDType::F32 => 0,
        GgmlDType::F16 => 1,
        GgmlDType::Q4_0 => 2,
        GgmlDType::Q4_1 => 3,
        GgmlDType::Q5_0 => 6,
        GgmlDType::Q5_1 => 7,
        GgmlDType::Q8_0 => 8,
        GgmlDType::Q8_1 => 9,
        GgmlDType::Q2K => 10,
        GgmlDType::Q3K => 11,
        GgmlDType::Q4K => 12,
        GgmlDType::Q5K => 13,
        GgmlDType::Q6K => 14,
        GgmlDType::Q8K => 15,
        GgmlDType::BF16 => 30,
    }
}

/// One tensor of the output: its name in the file, its shape and type.
#[derive(Clone, Debug)]
pub struct PlannedTensor {
    pub name: String,
    /// The state dict key it is read from.
    pub key: String,
    pub shape: Vec<usize>,
    pub dtype: GgmlDType,
}

/// What [`quantize_transformer`] wrote.
#[derive(Clone, Debug)]
pub struct QuantizeReport {
    pub tensors: usize,
    pub quantized: usize,
    pub bytes: u64,
}

/// The tensors of the transformer in `files` and the type each is written in: `quantization`'s
/// block type where it narrows the key (2-D block linears whose rows are whole blocks), F32
/// otherwise. Per-tensor fp8 scales are folded into their weights and not written.
pub fn plan(files: &SafetensorsFiles, t: GgmlDType) -> Result<(StateDict, Vec<PlannedTensor>)> {
    let ops = SDOps::new("GGUF_EXPORT")
        .with_matching(DIFFUSION_MODEL_PREFIX, "")
        .with_matching("text_embedding_projection.", "")
        .with_prefix_strip(DIFFUSION_MODEL_PREFIX);
    let sd = files
        .state_dict(&ops)?
        .with_quantization(Quantization::Gguf(t));
    if sd.is_empty() {
        return Err(Error::InvalidInput(format!(
            "`{}` holds no transformer weights (keys `{DIFFUSION_MODEL_PREFIX}…`)",
            files.paths()[0].display()
        )));
    }
    let mut planned = Vec::new();
    for key in sd.keys() {
        if key.ends_with("_scale") {
            continue;
        }
        let shape = sd.shape_of(&key).unwrap_or_default();
        let dtype = match sd.stored_form(&key) {
            Some(crate::loader::StoredForm::Blocks(b)) => b,
            _ => GgmlDType::F32,
        };
        planned.push(PlannedTensor {
            name: key.clone(),
            key,
            shape,
            dtype,
        });
    }
    Ok((sd, planned))
}

fn write_str(w: &mut impl Write, s: &str) -> std::io::Result<()> {
    w.write_all(&(s.len() as u64).to_le_bytes())?;
    w.write_all(s.as_bytes())
}

fn pad(w: &mut impl Write, written: usize) -> std::io::Result<usize> {
    let padding = (ALIGNMENT - written % ALIGNMENT) % ALIGNMENT;
    w.write_all(&vec![0u8; padding])?;
    Ok(padding)
}

fn tensor_bytes(t: &PlannedTensor) -> usize {
    stored_bytes(t.shape.iter().product(), t.dtype) as usize
}

/// Writes the planned tensors of `sd` to `out` as GGUF, with string metadata `metadata`;
/// `progress(i, n)` after each tensor.
fn write(
    out: &mut (impl Write + Seek),
    sd: &StateDict,
    metadata: &[(String, String)],
    tensors: &[PlannedTensor],
    progress: &mut dyn FnMut(usize, usize),
) -> Result<u64> {
    let io = |e: std::io::Error| Error::InvalidInput(format!("writing the GGUF file: {e}"));
    out.write_all(b"GGUF").map_err(io)?;
    out.write_all(&VERSION.to_le_bytes()).map_err(io)?;
    out.write_all(&(tensors.len() as u64).to_le_bytes())
        .map_err(io)?;
    out.write_all(&(metadata.len() as u64).to_le_bytes())
        .map_err(io)?;
    for (k, v) in metadata {
        write_str(out, k).map_err(io)?;
        // value type 8: string
        out.write_all(&8u32.to_le_bytes()).map_err(io)?;
        write_str(out, v).map_err(io)?;
    }
    let mut offset = 0usize;
    for t in tensors {
        write_str(out, &t.name).map_err(io)?;
        out.write_all(&(t.shape.len() as u32).to_le_bytes())
            .map_err(io)?;
        for &d in t.shape.iter().rev() {
            out.write_all(&(d as u64).to_le_bytes()).map_err(io)?;
        }
        out.write_all(&type_id(t.dtype).to_le_bytes()).map_err(io)?;
        out.write_all(&(offset as u64).to_le_bytes()).map_err(io)?;
        let len = tensor_bytes(t);
        offset += len + (ALIGNMENT - len % ALIGNMENT) % ALIGNMENT;
    }
    let header = out.stream_position().map_err(io)? as usize;
    pad(out, header).map_err(io)?;
    for (i, t) in tensors.iter().enumerate() {
        let q = match t.dtype {
            GgmlDType::F32 => {
                let dense = sd.raw_tensor(&t.key, &Device::Cpu)?;
                let dense = super::fp8::widen(&dense, DType::F32)?;
                let dense = match sd.scale_of(&t.key)? {
                    Some(s) => dense.affine(s, 0.0)?,
                    None => dense,
                };
                QTensor::quantize(&dense, GgmlDType::F32)?
            }
            _ => {
                // fp8 weights: widened with their scale first
                let dense = sd.raw_tensor(&t.key, &Device::Cpu)?;
                if dense.dtype() == DType::F8E4M3 {
                    let w = super::fp8::widen(&dense, DType::F32)?;
                    let w = match sd.scale_of(&t.key)? {
                        Some(s) => w.affine(s, 0.0)?,
                        None => w,
                    };
                    QTensor::quantize(&w, t.dtype)?
                } else {
                    sd.block_tensor(&t.key, &t.shape, &Device::Cpu)?
                }
            }
        };
        let data = q.data()?;
        if data.len() != tensor_bytes(t) {
            return Err(Error::InvalidInput(format!(
                "`{}`: {} bytes of {:?} blocks, planned {}",
                t.name,
                data.len(),
                t.dtype,
                tensor_bytes(t)
            )));
        }
        out.write_all(&data).map_err(io)?;
        pad(out, data.len()).map_err(io)?;
        progress(i + 1, tensors.len());
    }
    out.flush().map_err(io)?;
    out.stream_position().map_err(io)
}

/// A temporary name beside `path` (renamed to `path` once the file is complete).
fn partial_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    path.with_file_name(name)
}

/// Writes the transformer of `input` to `output` with its block linears in `t` (see the module
/// docs). `output` must not exist unless `force`; it appears whole or not at all.
pub fn quantize_transformer(
    input: &Path,
    output: &Path,
    t: GgmlDType,
    force: bool,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<QuantizeReport> {
    if output.exists() && !force {
        return Err(Error::InvalidInput(format!(
            "`{}` exists (pass --force to replace it)",
            output.display()
        )));
    }
    if matches!(
        t,
        GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16 | GgmlDType::Q8_1 | GgmlDType::Q8K
    ) {
        return Err(Error::Quantization {
            quantization: super::gguf_type_name(t),
            reason: "not a block type a GGUF transformer is written in".into(),
        });
    }
    let files = SafetensorsFiles::open(&[input])?;
    let (sd, tensors) = plan(&files, t)?;
    let mut metadata = vec![
        ("general.architecture".to_string(), "ltxv".to_string()),
        ("ltx.quantization".to_string(), super::gguf_type_name(t)),
    ];
    for key in ["config", "model_version", "gemma_source_checkpoint"] {
        if let Some(v) = files.metadata_entry(key) {
            metadata.push((key.to_string(), v.to_string()));
        }
    }
    let tmp = partial_path(output);
    let io = |source| Error::Io {
        path: tmp.clone(),
        source,
    };
    let file = std::fs::File::create(&tmp).map_err(io)?;
    let mut writer = BufWriter::new(file);
    let result = write(&mut writer, &sd, &metadata, &tensors, progress);
    let bytes = match result {
        Ok(b) => b,
        Err(e) => {
            drop(writer);
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    let file = writer.into_inner().map_err(|e| io(e.into_error()))?;
    file.sync_all().map_err(io)?;
    drop(file);
    std::fs::rename(&tmp, output).map_err(|source| Error::Io {
        path: output.to_path_buf(),
        source,
    })?;
    Ok(QuantizeReport {
        tensors: tensors.len(),
        quantized: tensors.iter().filter(|p| p.dtype != GgmlDType::F32).count(),
        bytes,
    })
}
