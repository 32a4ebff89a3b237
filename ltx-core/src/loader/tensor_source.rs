//! Where a state dict entry's data lives — a safetensors shard, a GGUF file, or memory — and how
//! it is read: dense (a [`Tensor`] in its stored dtype, GGUF blocks dequantized) or, for GGUF
//! block types, as a [`QTensor`].

use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::safetensors::Load;
use candle_core::{DType, Device, Tensor};
use safetensors::tensor::{TensorInfo, TensorView};

use super::gguf::GgufFile;
use super::sft_loader::Shard;
use crate::Error;

#[derive(Clone)]
pub(crate) enum TensorSource {
    /// Inside a memory-mapped safetensors shard (loaded lazily, once, when the model asks for it).
    Mapped {
        shard: Arc<Shard>,
        info: TensorInfo,
        checkpoint_key: String,
    },
    /// Inside a memory-mapped GGUF file, under its stored name.
    Gguf { file: Arc<GgufFile>, name: String },
    /// Already in memory (tests, synthetic checkpoints, staged blocks, LoRA-fused weights).
    Memory(Tensor),
    /// GGUF blocks already in memory (a staged block, a re-quantized LoRA-fused weight).
    Quantized(Arc<QTensor>),
}

impl TensorSource {
    fn gguf_info<'a>(
        file: &'a GgufFile,
        name: &str,
    ) -> &'a candle_core::quantized::gguf_file::TensorInfo {
        file.info(name)
            .expect("the entry was made from this file's header")
    }

    pub(crate) fn shape(&self) -> Vec<usize> {
        match self {
            Self::Mapped { info, .. } => info.shape.clone(),
            Self::Gguf { file, name } => Self::gguf_info(file, name).shape.dims().to_vec(),
            Self::Memory(t) => t.dims().to_vec(),
            Self::Quantized(q) => q.shape().dims().to_vec(),
        }
    }

    /// The GGUF block type, for entries stored in one (not the float GGUF types).
    pub(crate) fn block_type(&self) -> Option<GgmlDType> {
        let t = match self {
            Self::Gguf { file, name } => Self::gguf_info(file, name).ggml_dtype,
            Self::Quantized(q) => q.dtype(),
            _ => return None,
        };
        (!matches!(t, GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16)).then_some(t)
    }

    /// The dtype a dense read gives, if Candle has a type for it (block types read as f32).
    pub(crate) fn dtype(&self) -> Option<DType> {
        match self {
            Self::Mapped { info, .. } => DType::try_from(info.dtype).ok(),
            Self::Gguf { file, name } => Some(match Self::gguf_info(file, name).ggml_dtype {
                GgmlDType::F16 => DType::F16,
                GgmlDType::BF16 => DType::BF16,
                _ => DType::F32,
            }),
            Self::Memory(t) => Some(t.dtype()),
            Self::Quantized(_) => Some(DType::F32),
        }
    }

    pub(crate) fn dtype_name(&self) -> String {
        match self {
            Self::Mapped { info, .. } => format!("{:?}", info.dtype),
            Self::Gguf { file, name } => format!("{:?}", Self::gguf_info(file, name).ggml_dtype),
            Self::Memory(t) => format!("{:?}", t.dtype()),
            Self::Quantized(q) => format!("{:?}", q.dtype()),
        }
    }

    /// Bytes as stored.
    pub(crate) fn stored_bytes(&self) -> u64 {
        match self {
            Self::Mapped { info, .. } => (info.data_offsets.1 - info.data_offsets.0) as u64,
            Self::Gguf { file, name } => file.bytes(Self::gguf_info(file, name)).len() as u64,
            Self::Memory(t) => (t.elem_count() * t.dtype().size_in_bytes()) as u64,
            Self::Quantized(q) => q.storage_size_in_bytes() as u64,
        }
    }

    /// The data as a dense tensor in its stored dtype (GGUF blocks dequantized to f32).
    pub(crate) fn load(&self, key: &str, device: &Device) -> candle_core::Result<Tensor> {
        match self {
            Self::Memory(t) => t.to_device(device),
            Self::Quantized(q) => q.dequantize(device),
            Self::Gguf { file, name } => file
                .dense(Self::gguf_info(file, name), device)
                .map_err(|e| gguf_error(file, name, &e).into_candle()),
            Self::Mapped {
                shard,
                info,
                checkpoint_key,
            } => {
                let view = TensorView::new(info.dtype, info.shape.clone(), shard.bytes(info))
                    .map_err(|e| {
                        Error::InvalidSafetensors {
                            path: shard.path.clone(),
                            reason: format!("tensor `{checkpoint_key}`: {e}"),
                        }
                        .into_candle()
                    })?;
                let tensor = view
                    .load(device)
                    .map_err(|e| load_error(key, info, device, &e).into_candle())?;
                shard.release(info);
                Ok(tensor)
            }
        }
    }

    /// The data as GGUF blocks on `device` (`None` for entries not stored in a block type).
    pub(crate) fn load_quantized(&self, device: &Device) -> candle_core::Result<Option<QTensor>> {
        if self.block_type().is_none() {
            return Ok(None);
        }
        match self {
            Self::Gguf { file, name } => file
                .qtensor(Self::gguf_info(file, name), device)
                .map(Some)
                .map_err(|e| gguf_error(file, name, &e).into_candle()),
            Self::Quantized(q) => {
                let data = q.data()?;
                candle_core::quantized::ggml_file::qtensor_from_ggml(
                    q.dtype(),
                    &data,
                    q.shape().dims().to_vec(),
                    device,
                )
                .map(Some)
            }
            _ => Ok(None),
        }
    }
}

fn gguf_error(file: &GgufFile, name: &str, err: &candle_core::Error) -> Error {
    Error::InvalidGguf {
        path: file.path.clone(),
        reason: format!("tensor `{name}`: {err}"),
    }
}

/// Why a stored tensor could not be loaded: a dtype Candle has no type for, or (any other
/// failure) the device could not take it, which is a lack of memory in practice.
pub(crate) fn load_error(
    key: &str,
    info: &TensorInfo,
    device: &Device,
    err: &candle_core::Error,
) -> Error {
    if DType::try_from(info.dtype).is_err() {
        return Error::UnsupportedWeightDtype {
            key: key.to_string(),
            dtype: format!("{:?}", info.dtype),
        };
    }
    let bytes = info.data_offsets.1 - info.data_offsets.0;
    Error::WeightLoad {
        key: key.to_string(),
        megabytes: bytes.div_ceil(1 << 20),
        device: format!("{:?}", device.location()),
        reason: err.to_string(),
    }
}
