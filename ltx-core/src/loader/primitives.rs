//! Port of `ltx_core/loader/primitives.py`: the state dict a component is built from, and the
//! strict [`VarBuilder`] backend over it.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use candle_core::safetensors::Load;
use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::VarBuilder;
use safetensors::tensor::{TensorInfo, TensorView};

use super::sft_loader::Shard;
use crate::Error;

/// Where a tensor's data lives.
#[derive(Clone)]
pub(crate) enum TensorSource {
    /// Inside a memory-mapped shard (loaded lazily, once, when the model asks for it).
    Mapped {
        shard: Arc<Shard>,
        info: TensorInfo,
        checkpoint_key: String,
    },
    /// Already in memory (tests, synthetic checkpoints).
    Memory(Tensor),
}

impl TensorSource {
    fn shape(&self) -> Vec<usize> {
        match self {
            Self::Mapped { info, .. } => info.shape.clone(),
            Self::Memory(t) => t.dims().to_vec(),
        }
    }

    /// The stored dtype, if Candle has a type for it.
    fn dtype(&self) -> Option<DType> {
        match self {
            Self::Mapped { info, .. } => DType::try_from(info.dtype).ok(),
            Self::Memory(t) => Some(t.dtype()),
        }
    }

    fn dtype_name(&self) -> String {
        match self {
            Self::Mapped { info, .. } => format!("{:?}", info.dtype),
            Self::Memory(t) => format!("{:?}", t.dtype()),
        }
    }

    fn load(&self, key: &str, device: &Device) -> candle_core::Result<Tensor> {
        match self {
            Self::Memory(t) => t.to_device(device),
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
}

/// Why a stored tensor could not be loaded: a dtype Candle has no type for, or (any other
/// failure) the device could not take it, which is a lack of memory in practice.
fn load_error(key: &str, info: &TensorInfo, device: &Device, err: &candle_core::Error) -> Error {
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

/// The weights of one component under module-side names (after its [`super::SDOps`]).
///
/// It remembers which keys the model asked for, so what the checkpoint holds beyond the model
/// can be reported ([`StateDict::unused_keys`]).
pub struct StateDict {
    ops_name: &'static str,
    entries: HashMap<String, TensorSource>,
    used: Mutex<BTreeSet<String>>,
}

impl StateDict {
    pub(crate) fn new(ops_name: &'static str, entries: HashMap<String, TensorSource>) -> Self {
        Self {
            ops_name,
            entries,
            used: Mutex::new(BTreeSet::new()),
        }
    }

    /// A state dict over in-memory tensors (tests and synthetic checkpoints).
    pub fn from_tensors(tensors: HashMap<String, Tensor>) -> Self {
        let entries = tensors
            .into_iter()
            .map(|(k, t)| (k, TensorSource::Memory(t)))
            .collect();
        Self::new("IN_MEMORY", entries)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn contains(&self, key: &str) -> bool {
        self.entries.contains_key(key)
    }

    /// A strict [`VarBuilder`]: every weight is checked against the shape the model expects and
    /// cast once to `dtype` on `device`. F8_E4M3 weights are upcast here.
    pub fn var_builder(self: &Arc<Self>, dtype: DType, device: &Device) -> VarBuilder<'static> {
        VarBuilder::from_backend(
            Box::new(StrictBackend {
                sd: self.clone(),
                check_only: false,
            }),
            dtype,
            device.clone(),
        )
    }

    /// A tensor in its stored dtype (any dtype, no shape check), for data that is not a weight
    /// (e.g. a fixture's inputs and outputs).
    pub fn raw_tensor(&self, name: &str, device: &Device) -> crate::Result<Tensor> {
        let source = self.entries.get(name).ok_or_else(|| Error::MissingWeight {
            key: name.to_string(),
            expected: Vec::new(),
        })?;
        Ok(source.load(name, device)?)
    }

    /// The state dict with `tensors` replacing (or adding) entries, e.g. LoRA-fused weights; the
    /// other entries stay where they are (memory-mapped ones are still loaded lazily).
    pub fn with_overrides(mut self, tensors: HashMap<String, Tensor>) -> Self {
        for (k, t) in tensors {
            self.entries.insert(k, TensorSource::Memory(t));
        }
        self
    }

    /// The entries whose key passes `keep` (e.g. one transformer block), sharing the same
    /// storage: memory-mapped entries stay mapped and are read when the part is built.
    pub fn filtered(&self, keep: impl Fn(&str) -> bool) -> Self {
        let entries = self
            .entries
            .iter()
            .filter(|(k, _)| keep(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Self::new(self.ops_name, entries)
    }

    /// The state dict with the memory-mapped entries under `prefix` read into memory on the CPU in
    /// their stored dtype (no widening), so building that part later does not touch the file.
    pub fn with_prefix_in_memory(mut self, prefix: &str) -> crate::Result<Self> {
        for (key, source) in self.entries.iter_mut() {
            if key.starts_with(prefix) && matches!(source, TensorSource::Mapped { .. }) {
                *source = TensorSource::Memory(source.load(key, &Device::Cpu)?);
            }
        }
        Ok(self)
    }

    /// Bytes the entries passing `keep` take once cast to `dtype` (`None`: as stored).
    pub fn bytes_where(&self, keep: impl Fn(&str) -> bool, dtype: Option<DType>) -> u64 {
        self.entries
            .iter()
            .filter(|(k, _)| keep(k))
            .map(|(_, v)| {
                let bits = match (dtype, v) {
                    (Some(d), _) => d.size_in_bytes() * 8,
                    (None, TensorSource::Mapped { info, .. }) => info.dtype.bitsize(),
                    (None, TensorSource::Memory(t)) => t.dtype().size_in_bytes() * 8,
                };
                (v.shape().iter().product::<usize>() as u64 * bits as u64).div_ceil(8)
            })
            .sum()
    }

    /// A [`VarBuilder`] that checks every weight the model asks for (present, of the expected
    /// shape, a float dtype) exactly as [`StateDict::var_builder`] does, without reading any
    /// data: the model it builds holds zero-stride placeholders. Used to refuse a checkpoint
    /// before a streamed model would meet the bad weight mid-run.
    pub fn checking_var_builder(
        self: &Arc<Self>,
        dtype: DType,
        device: &Device,
    ) -> VarBuilder<'static> {
        VarBuilder::from_backend(
            Box::new(StrictBackend {
                sd: self.clone(),
                check_only: true,
            }),
            dtype,
            device.clone(),
        )
    }

    /// Shape of a stored tensor.
    pub fn shape_of(&self, key: &str) -> Option<Vec<usize>> {
        self.entries.get(key).map(TensorSource::shape)
    }

    /// Every key, sorted.
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.entries.keys().cloned().collect();
        keys.sort();
        keys
    }

    /// Keys present in the state dict that the model never asked for, sorted.
    pub fn unused_keys(&self) -> Vec<String> {
        let used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        let mut unused: Vec<String> = self
            .entries
            .keys()
            .filter(|k| !used.contains(*k))
            .cloned()
            .collect();
        unused.sort();
        unused
    }

    /// Logs the unused keys at debug level (the reference loads with `strict=False` and ignores
    /// them silently; here they are at least visible with `RUST_LOG=debug`).
    pub fn report_unused(&self, component: &str) {
        let unused = self.unused_keys();
        if !unused.is_empty() {
            tracing::debug!(
                component,
                ops = self.ops_name,
                count = unused.len(),
                keys = ?unused,
                "checkpoint keys not used by the model"
            );
        }
    }

    fn fetch(
        &self,
        name: &str,
        expected: Option<&Shape>,
        (dtype, dev): (DType, &Device),
        check_only: bool,
    ) -> candle_core::Result<Tensor> {
        let Some(source) = self.entries.get(name) else {
            return Err(Error::MissingWeight {
                key: name.to_string(),
                expected: expected.map(|s| s.dims().to_vec()).unwrap_or_default(),
            }
            .into_candle());
        };
        if let Some(expected) = expected {
            let found = source.shape();
            if found != expected.dims() {
                return Err(Error::ShapeMismatch {
                    key: name.to_string(),
                    expected: expected.dims().to_vec(),
                    found,
                }
                .into_candle());
            }
        }
        if check_only {
            let stored = source.dtype();
            if !stored.is_some_and(is_float) {
                return Err(Error::UnsupportedWeightDtype {
                    key: name.to_string(),
                    dtype: source.dtype_name(),
                }
                .into_candle());
            }
            self.used
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(name.to_string());
            return Tensor::zeros((), dtype, dev)?.broadcast_as(source.shape());
        }
        let tensor = source.load(name, dev)?;
        if !is_float(tensor.dtype()) {
            return Err(Error::UnsupportedWeightDtype {
                key: name.to_string(),
                dtype: format!("{:?}", tensor.dtype()),
            }
            .into_candle());
        }
        self.used
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string());
        tensor.to_dtype(dtype)
    }
}

fn is_float(dtype: DType) -> bool {
    matches!(
        dtype,
        DType::F32 | DType::F16 | DType::BF16 | DType::F64 | DType::F8E4M3
    )
}

struct StrictBackend {
    sd: Arc<StateDict>,
    /// Check the weights, read nothing (see [`StateDict::checking_var_builder`]).
    check_only: bool,
}

impl SimpleBackend for StrictBackend {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _h: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        self.sd.fetch(name, Some(&s), (dtype, dev), self.check_only)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.sd.fetch(name, None, (dtype, dev), self.check_only)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.sd.contains(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sd(pairs: &[(&str, Tensor)]) -> Arc<StateDict> {
        Arc::new(StateDict::from_tensors(
            pairs
                .iter()
                .map(|(k, t)| (k.to_string(), t.clone()))
                .collect(),
        ))
    }

    #[test]
    fn strict_errors_are_typed() {
        let dev = Device::Cpu;
        let sd = sd(&[
            ("a.weight", Tensor::zeros((2, 3), DType::F32, &dev).unwrap()),
            ("ids", Tensor::zeros(4, DType::U32, &dev).unwrap()),
            ("extra", Tensor::zeros(1, DType::F32, &dev).unwrap()),
        ]);
        let vb = sd.var_builder(DType::F32, &dev);
        let missing: Error = vb.get((2, 3), "b.weight").unwrap_err().into();
        assert!(
            matches!(missing, Error::MissingWeight { ref key, .. } if key == "b.weight"),
            "{missing}"
        );
        let shape: Error = vb.get((3, 2), "a.weight").unwrap_err().into();
        match shape {
            Error::ShapeMismatch {
                key,
                expected,
                found,
            } => {
                assert_eq!(
                    (key.as_str(), expected, found),
                    ("a.weight", vec![3, 2], vec![2, 3])
                )
            }
            other => panic!("unexpected {other}"),
        }
        let dtype: Error = vb.get(4, "ids").unwrap_err().into();
        // a failure for another reason than the dtype says what was being loaded, where, and why
        let info = TensorInfo {
            dtype: safetensors::Dtype::F32,
            shape: vec![1024, 1024],
            data_offsets: (0, 4 << 20),
        };
        let oom = candle_core::Error::Msg("CUDA_ERROR_OUT_OF_MEMORY".into());
        let e = super::load_error("w", &info, &Device::Cpu, &oom).to_string();
        assert!(
            e.contains("memory") && e.contains("4 MB") && e.contains("CUDA_ERROR_OUT_OF_MEMORY"),
            "{e}"
        );
        assert!(
            matches!(dtype, Error::UnsupportedWeightDtype { .. }),
            "{dtype}"
        );
        vb.get((2, 3), "a.weight").unwrap();
        assert_eq!(
            sd.unused_keys(),
            vec!["extra".to_string(), "ids".to_string()]
        );
    }

    #[test]
    fn checking_builder_refuses_like_the_loading_one_and_reads_nothing() {
        let dev = Device::Cpu;
        let sd = sd(&[
            (
                "a.weight",
                Tensor::zeros((2, 3), DType::BF16, &dev).unwrap(),
            ),
            ("ids", Tensor::zeros(4, DType::U32, &dev).unwrap()),
        ]);
        let vb = sd.checking_var_builder(DType::F32, &dev);
        let ok = vb.get((2, 3), "a.weight").unwrap();
        assert_eq!((ok.dims(), ok.dtype()), (&[2, 3][..], DType::F32));
        assert_eq!(ok.stride(), &[0, 0], "a placeholder, not a copy");
        let err = |e: candle_core::Error| -> Error { e.into() };
        assert!(matches!(
            err(vb.get((3, 2), "a.weight").unwrap_err()),
            Error::ShapeMismatch { .. }
        ));
        assert!(matches!(
            err(vb.get(1, "b.weight").unwrap_err()),
            Error::MissingWeight { .. }
        ));
        assert!(matches!(
            err(vb.get(4, "ids").unwrap_err()),
            Error::UnsupportedWeightDtype { .. }
        ));
        // sizes from the header: as stored and in a compute dtype
        assert_eq!(sd.bytes_where(|k| k == "a.weight", None), 12);
        assert_eq!(
            sd.bytes_where(|k| k.ends_with("weight"), Some(DType::F32)),
            24
        );
        let part = sd.filtered(|k| k.starts_with("a."));
        assert_eq!(part.keys(), vec!["a.weight".to_string()]);
    }

    #[test]
    fn casts_to_compute_dtype_and_upcasts_fp8() {
        let dev = Device::Cpu;
        let w = Tensor::new(&[0.5f32, -1.25, 3.0], &dev).unwrap();
        let sd = sd(&[("w8", w.to_dtype(DType::F8E4M3).unwrap()), ("w", w.clone())]);
        let vb = sd.var_builder(DType::BF16, &dev);
        assert_eq!(vb.get(3, "w").unwrap().dtype(), DType::BF16);
        let up = sd.var_builder(DType::F32, &dev).get(3, "w8").unwrap();
        assert_eq!(up.to_vec1::<f32>().unwrap(), vec![0.5, -1.25, 3.0]);
    }
}
