//! GGUF checkpoints, memory-mapped: the header is parsed once (Candle's `gguf_file`), each tensor
//! is read from the mapping only when the model asks for it — never the whole file at once.
//!
//! Names: the community LTX GGUF files use ComfyUI-native transformer names without the
//! `model.diffusion_model.` prefix the safetensors files carry; [`checkpoint_key`] puts it back
//! so one set of key renames (`SDOps`) serves both formats.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{Content, TensorInfo, Value};
use candle_core::quantized::{ggml_file, GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};

use crate::{Error, Result};

/// The magic of every GGUF file (`GGUF`, little endian).
const MAGIC: &[u8; 4] = b"GGUF";

/// The prefix of the transformer's keys in the safetensors checkpoints.
pub const DIFFUSION_MODEL_PREFIX: &str = "model.diffusion_model.";

/// Whether `path` starts with the GGUF magic (unreadable files are not GGUF).
pub fn is_gguf(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok_and(|_| &magic == MAGIC)
}

/// Top-level prefixes of a checkpoint's other components, kept as they are in a GGUF file.
const OTHER_COMPONENTS: [&str; 4] = [
    "text_embedding_projection.",
    "vae.",
    "audio_vae.",
    "vocoder.",
];

/// A tensor name of a GGUF file as the safetensors checkpoints spell it: transformer names get
/// the `model.diffusion_model.` prefix back, other components' names stay.
pub fn checkpoint_key(name: &str) -> String {
    if name.starts_with("model.")
        || name.contains("diffusion_model.")
        || OTHER_COMPONENTS.iter().any(|p| name.starts_with(p))
    {
        name.to_string()
    } else {
        format!("{DIFFUSION_MODEL_PREFIX}{name}")
    }
}

/// One memory-mapped GGUF file with its parsed header.
pub struct GgufFile {
    pub(crate) path: PathBuf,
    mmap: memmap2::Mmap,
    content: Content,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("tensors", &self.content.tensor_infos.len())
            .finish()
    }
}

impl GgufFile {
    /// Maps and validates the file: the magic, every tensor's type (one Candle knows) and every
    /// tensor's data inside the file. Nothing else is read.
    pub fn open(path: &Path) -> Result<Self> {
        let invalid = |reason: String| Error::InvalidGguf {
            path: path.to_path_buf(),
            reason,
        };
        let file = std::fs::File::open(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        // SAFETY: read-only mapping, no mutable views handed out (as for the safetensors shards).
        let mmap =
            unsafe { memmap2::MmapOptions::new().map(&file) }.map_err(|source| Error::Io {
                path: path.to_path_buf(),
                source,
            })?;
        if mmap.len() < 4 || &mmap[..4] != MAGIC {
            return Err(invalid("no GGUF magic at the start of the file".into()));
        }
        let content = Content::read(&mut std::io::Cursor::new(&mmap[..]))
            .map_err(|e| invalid(e.to_string()))?;
        let gguf = Self {
            path: path.to_path_buf(),
            mmap,
            content,
        };
        for (name, info) in &gguf.content.tensor_infos {
            let range = gguf
                .range(info)
                .map_err(|e| invalid(format!("tensor `{name}`: {e}")))?;
            if range.end > gguf.mmap.len() {
                return Err(invalid(format!(
                    "tensor `{name}` ends at byte {} but the file has {} bytes (truncated?)",
                    range.end,
                    gguf.mmap.len()
                )));
            }
        }
        Ok(gguf)
    }

    /// The byte range of a tensor's data.
    fn range(&self, info: &TensorInfo) -> std::result::Result<std::ops::Range<usize>, String> {
        let elems = info.shape.elem_count();
        let block = info.ggml_dtype.block_size();
        if elems % block != 0 {
            return Err(format!(
                "{elems} elements are not a whole number of {:?} blocks of {block}",
                info.ggml_dtype
            ));
        }
        let len = elems / block * info.ggml_dtype.type_size();
        let start = self.content.tensor_data_offset as usize + info.offset as usize;
        Ok(start..start + len)
    }

    /// Every tensor name as stored, sorted.
    pub fn tensor_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.content.tensor_infos.keys().cloned().collect();
        names.sort();
        names
    }

    pub(crate) fn info(&self, name: &str) -> Option<&TensorInfo> {
        self.content.tensor_infos.get(name)
    }

    /// Shape (row-major, as PyTorch writes it) and block type of a tensor.
    pub fn describe(&self, name: &str) -> Option<(Vec<usize>, GgmlDType)> {
        self.info(name)
            .map(|i| (i.shape.dims().to_vec(), i.ggml_dtype))
    }

    /// The stored bytes of a tensor (validated in [`GgufFile::open`]).
    pub(crate) fn bytes(&self, info: &TensorInfo) -> &[u8] {
        let range = self.range(info).expect("validated on open");
        &self.mmap[range]
    }

    /// A tensor as a [`QTensor`] on `device` (a copy of its stored blocks).
    pub(crate) fn qtensor(
        &self,
        info: &TensorInfo,
        device: &Device,
    ) -> candle_core::Result<QTensor> {
        ggml_file::qtensor_from_ggml(
            info.ggml_dtype,
            self.bytes(info),
            info.shape.dims().to_vec(),
            device,
        )
    }

    /// A tensor as a dense [`Tensor`] on `device`: float types in their own dtype, block types
    /// dequantized to f32.
    pub(crate) fn dense(&self, info: &TensorInfo, device: &Device) -> candle_core::Result<Tensor> {
        let dtype = match info.ggml_dtype {
            GgmlDType::F32 => Some(DType::F32),
            GgmlDType::F16 => Some(DType::F16),
            GgmlDType::BF16 => Some(DType::BF16),
            _ => None,
        };
        match dtype {
            Some(d) => Tensor::from_raw_buffer(self.bytes(info), d, info.shape.dims(), device),
            None => self.qtensor(info, &Device::Cpu)?.dequantize(device),
        }
    }

    /// The metadata entries, each value as text (strings as they are, numbers and arrays
    /// formatted), for `config`, `model_version` and `ltx info`.
    pub fn metadata(&self) -> HashMap<String, String> {
        self.content
            .metadata
            .iter()
            .map(|(k, v)| (k.clone(), value_text(v)))
            .collect()
    }
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(a) if a.len() > 16 => format!("[{} values]", a.len()),
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(value_text).collect::<Vec<_>>().join(", ")
        ),
        Value::U8(x) => x.to_string(),
        Value::I8(x) => x.to_string(),
        Value::U16(x) => x.to_string(),
        Value::I16(x) => x.to_string(),
        Value::U32(x) => x.to_string(),
        Value::I32(x) => x.to_string(),
        Value::U64(x) => x.to_string(),
        Value::I64(x) => x.to_string(),
        Value::F32(x) => x.to_string(),
        Value::F64(x) => x.to_string(),
        Value::Bool(x) => x.to_string(),
    }
}

/// Bytes a tensor of `elems` elements takes in a block type.
pub fn stored_bytes(elems: usize, t: GgmlDType) -> u64 {
    (elems / t.block_size() * t.type_size()) as u64
}

#[cfg(test)]
mod tests {
    use candle_core::quantized::gguf_file;

    use super::*;
    use crate::loader::{SafetensorsFiles, StoredForm};
    use crate::model::transformer::ltxv_model_comfy_renaming_map;

    fn write(path: &Path, tensors: &[(&str, QTensor)], metadata: &[(&str, Value)]) {
        let mut f = std::fs::File::create(path).unwrap();
        let t: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, q)| (*n, q)).collect();
        let m: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (*k, v)).collect();
        gguf_file::write(&mut f, &m, &t).unwrap();
    }

    fn ramp(shape: &[usize]) -> Tensor {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 64.0)
            .collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    #[test]
    fn community_names_and_types_read_one_tensor_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ltx-2-tiny-Q8_0.gguf");
        let w = ramp(&[4, 64]);
        let b = ramp(&[4]);
        let table = ramp(&[6, 4]).to_dtype(DType::F16).unwrap();
        let q = QTensor::quantize(&w, GgmlDType::Q8_0).unwrap();
        write(
            &path,
            &[
                ("transformer_blocks.0.attn1.to_q.weight", q),
                (
                    "transformer_blocks.0.attn1.to_q.bias",
                    QTensor::quantize(&b, GgmlDType::F32).unwrap(),
                ),
                (
                    "transformer_blocks.0.scale_shift_table",
                    QTensor::quantize(&table, GgmlDType::F16).unwrap(),
                ),
            ],
            &[("general.architecture", Value::String("ltxv".into()))],
        );
        assert!(is_gguf(&path));
        let files = SafetensorsFiles::open(&[&path]).unwrap();
        assert!(files.is_gguf());
        // no config in the file: the layout is inferred from the names
        assert_eq!(files.metadata_entry("model_version"), Some("2.0.0"));
        assert!(files.config().unwrap().get("transformer").is_some());
        assert!(files
            .keys()
            .iter()
            .all(|k| k.starts_with(DIFFUSION_MODEL_PREFIX)));
        let sd = files.state_dict(&ltxv_model_comfy_renaming_map()).unwrap();
        let key = "transformer_blocks.0.attn1.to_q.weight";
        assert_eq!(
            sd.stored_form(key),
            Some(StoredForm::Blocks(GgmlDType::Q8_0))
        );
        assert_eq!(
            sd.stored_form("transformer_blocks.0.attn1.to_q.bias"),
            Some(StoredForm::Wide)
        );
        let dense = sd.raw_tensor(key, &Device::Cpu).unwrap();
        let expected = QTensor::quantize(&w, GgmlDType::Q8_0)
            .unwrap()
            .dequantize(&Device::Cpu)
            .unwrap();
        let diff = (dense - expected)
            .unwrap()
            .abs()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert_eq!(diff, 0.0);
        let t = sd
            .raw_tensor("transformer_blocks.0.scale_shift_table", &Device::Cpu)
            .unwrap();
        assert_eq!(t.dtype(), DType::F16);
        assert_eq!(
            t.to_vec2::<half::f16>().unwrap(),
            table.to_vec2::<half::f16>().unwrap()
        );
        // staged blocks stay blocks
        let staged = sd
            .filtered(|_| true)
            .with_prefix_in_memory("transformer_blocks.")
            .unwrap();
        assert_eq!(
            staged.stored_form(key),
            Some(StoredForm::Blocks(GgmlDType::Q8_0))
        );
        assert_eq!(
            sd.bytes_where(|k| k == key, Some(DType::F32)),
            stored_bytes(256, GgmlDType::Q8_0)
        );
    }

    #[test]
    fn bad_files_are_typed_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.gguf");
        let q = QTensor::quantize(&ramp(&[4, 64]), GgmlDType::Q8_0).unwrap();
        write(&path, &[("transformer_blocks.0.attn1.to_q.weight", q)], &[]);
        let bytes = std::fs::read(&path).unwrap();
        // truncated inside the tensor data
        std::fs::write(&path, &bytes[..bytes.len() - 40]).unwrap();
        let err = GgufFile::open(&path).unwrap_err();
        assert!(
            matches!(err, Error::InvalidGguf { .. }) && err.to_string().contains("truncated"),
            "{err}"
        );
        // an unknown tensor type (the type id follows the name and dims of the only tensor)
        let mut bad = bytes.clone();
        let name = b"transformer_blocks.0.attn1.to_q.weight";
        let at = bad.windows(name.len()).position(|w| w == name).unwrap() + name.len() + 4 + 16;
        bad[at..at + 4].copy_from_slice(&99u32.to_le_bytes());
        std::fs::write(&path, &bad).unwrap();
        let err = GgufFile::open(&path).unwrap_err();
        assert!(matches!(err, Error::InvalidGguf { .. }), "{err}");
        // a layout with no blocks of a released model: no config can be inferred
        let cfg_less = dir.path().join("y.gguf");
        let q = QTensor::quantize(&ramp(&[4, 64]), GgmlDType::Q8_0).unwrap();
        write(
            &cfg_less,
            &[
                ("transformer_blocks.0.attn1.to_q.weight", q),
                (
                    "keyframes_abs_pos_embedding",
                    QTensor::quantize(&ramp(&[1, 4]), GgmlDType::F32).unwrap(),
                ),
            ],
            &[],
        );
        let err = SafetensorsFiles::open(&[&cfg_less]).err().unwrap();
        assert!(err.to_string().contains("LTX-2.5"), "{err}");
    }
}
