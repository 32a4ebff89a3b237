//! Port of `ltx_core/loader/primitives.py`: the state dict a component is built from, and the
//! strict [`VarBuilder`] backend over it.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::VarBuilder;

pub(crate) use super::tensor_source::TensorSource;
use crate::quantization::{fp8, Quantization};
use crate::Error;

/// How a weight is held once loaded (after the state dict's [`Quantization`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoredForm {
    /// Widened to the compute dtype at load.
    Wide,
    /// F8E4M3 (stored so, or narrowed by `fp8-cast`), widened per forward.
    Fp8,
    /// GGUF blocks (stored so, or quantized at load), multiplied as they are.
    Blocks(GgmlDType),
}

/// The weights of one component under module-side names (after its [`super::SDOps`]).
///
/// It remembers which keys the model asked for, so what the checkpoint holds beyond the model
/// can be reported ([`StateDict::unused_keys`]).
pub struct StateDict {
    ops_name: &'static str,
    entries: HashMap<String, TensorSource>,
    used: Mutex<BTreeSet<String>>,
    quantization: Quantization,
}

impl StateDict {
    pub(crate) fn new(ops_name: &'static str, entries: HashMap<String, TensorSource>) -> Self {
        Self {
            ops_name,
            entries,
            used: Mutex::new(BTreeSet::new()),
            quantization: Quantization::None,
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

    /// The state dict with `quantization` applied at load to the keys it narrows (see
    /// [`Quantization::narrows`]); the entries of other forms are untouched.
    pub fn with_quantization(mut self, quantization: Quantization) -> Self {
        self.quantization = quantization;
        self
    }

    pub fn quantization(&self) -> Quantization {
        self.quantization
    }

    /// How the weight `key` is held once loaded: as stored for fp8 and GGUF block entries,
    /// narrowed where the state dict's quantization covers it (a GGUF type only for 2-D weights
    /// whose rows are whole blocks), otherwise wide. `None` for a missing key.
    pub fn stored_form(&self, key: &str) -> Option<StoredForm> {
        self.entries.get(key).map(|s| self.form_of(key, s))
    }

    fn form_of(&self, key: &str, source: &TensorSource) -> StoredForm {
        if let Some(t) = source.block_type() {
            return StoredForm::Blocks(t);
        }
        if source.dtype() == Some(DType::F8E4M3) {
            return StoredForm::Fp8;
        }
        if !self.quantization.narrows(key) {
            return StoredForm::Wide;
        }
        match self.quantization {
            Quantization::Fp8Cast => StoredForm::Fp8,
            Quantization::Gguf(t) => {
                let shape = source.shape();
                if shape.len() == 2 && shape[1] % t.block_size() == 0 {
                    StoredForm::Blocks(t)
                } else {
                    StoredForm::Wide
                }
            }
            Quantization::None => StoredForm::Wide,
        }
    }

    /// A tensor as held (see [`StateDict::stored_form`]) in a dense dtype: fp8-cast keys narrowed
    /// to F8E4M3, keys quantized at load round-tripped through their blocks, GGUF blocks
    /// dequantized. The weight scale is not applied.
    fn held(
        &self,
        key: &str,
        source: &TensorSource,
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        let t = source.load(key, device)?;
        match (self.form_of(key, source), source.block_type()) {
            (StoredForm::Fp8, _) => fp8::narrow(&t),
            // blocks are made on the CPU (Candle quantizes there), then moved
            (StoredForm::Blocks(b), None) => {
                let cpu = t.to_device(&Device::Cpu)?.to_dtype(DType::F32)?;
                QTensor::quantize(&cpu, b)?.dequantize(device)
            }
            _ => Ok(t),
        }
    }

    /// A tensor as held in a dense dtype (any dtype, no shape check), for data that is not a
    /// weight (a fixture's inputs and outputs) and for LoRA fusing (fp8 stays fp8, unscaled).
    pub fn raw_tensor(&self, name: &str, device: &Device) -> crate::Result<Tensor> {
        let source = self.entries.get(name).ok_or_else(|| Error::MissingWeight {
            key: name.to_string(),
            expected: Vec::new(),
        })?;
        Ok(self.held(name, source, device)?)
    }

    /// The per-tensor scale of an fp8 weight (`<key>_scale`, a scalar), if the checkpoint has
    /// one: the weight's value is `stored · scale`. An `input_scale` beside it (used only by the
    /// reference's `fp8-scaled-mm`) is marked as read.
    pub fn scale_of(&self, key: &str) -> crate::Result<Option<f64>> {
        let scale_key = format!("{key}_scale");
        let Some(source) = self.entries.get(&scale_key) else {
            return Ok(None);
        };
        let shape = source.shape();
        if shape.iter().product::<usize>() != 1 {
            return Err(Error::ShapeMismatch {
                key: scale_key,
                expected: Vec::new(),
                found: shape,
            });
        }
        let s = source
            .load(&scale_key, &Device::Cpu)?
            .to_dtype(DType::F64)?
            .flatten_all()?
            .to_vec1::<f64>()?[0];
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        used.insert(scale_key);
        if let Some(module) = key.strip_suffix(".weight") {
            let input = format!("{module}.input_scale");
            if self.entries.contains_key(&input) {
                used.insert(input);
            }
        }
        Ok(Some(s))
    }

    /// Checks that `key` exists with the `expected` shape and marks it read.
    fn checked(&self, key: &str, expected: &[usize]) -> candle_core::Result<&TensorSource> {
        let Some(source) = self.entries.get(key) else {
            return Err(Error::MissingWeight {
                key: key.to_string(),
                expected: expected.to_vec(),
            }
            .into_candle());
        };
        let found = source.shape();
        if found != expected {
            return Err(Error::ShapeMismatch {
                key: key.to_string(),
                expected: expected.to_vec(),
                found,
            }
            .into_candle());
        }
        self.used
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.to_string());
        Ok(source)
    }

    /// A weight held in F8E4M3 ([`StoredForm::Fp8`]), unscaled, on `device`.
    pub fn fp8_tensor(
        &self,
        key: &str,
        expected: &[usize],
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        let source = self.checked(key, expected)?;
        let t = self.held(key, source, device)?;
        if t.dtype() != DType::F8E4M3 {
            candle_core::bail!("`{key}` is held as {:?}, not F8E4M3", t.dtype());
        }
        Ok(t)
    }

    /// A weight held in GGUF blocks ([`StoredForm::Blocks`]) on `device`: read from the file or
    /// quantized now from the wide stored tensor.
    pub fn block_tensor(
        &self,
        key: &str,
        expected: &[usize],
        device: &Device,
    ) -> candle_core::Result<QTensor> {
        let source = self.checked(key, expected)?;
        if let Some(q) = source.load_quantized(device)? {
            return Ok(q);
        }
        let StoredForm::Blocks(t) = self.form_of(key, source) else {
            candle_core::bail!("`{key}` is not held in GGUF blocks");
        };
        let wide = source.load(key, &Device::Cpu)?.to_dtype(DType::F32)?;
        QTensor::quantize_onto(&wide, t, device)
    }

    /// The state dict with `tensors` replacing (or adding) entries, e.g. LoRA-fused weights; the
    /// other entries stay where they are (memory-mapped ones are still loaded lazily). A
    /// replaced entry held in GGUF blocks is re-quantized to its block type.
    pub fn with_overrides(mut self, tensors: HashMap<String, Tensor>) -> crate::Result<Self> {
        for (k, t) in tensors {
            let source = match self.entries.get(&k).and_then(TensorSource::block_type) {
                Some(b) => TensorSource::Quantized(Arc::new(QTensor::quantize(
                    &t.to_device(&Device::Cpu)?.to_dtype(DType::F32)?,
                    b,
                )?)),
                None => TensorSource::Memory(t),
            };
            self.entries.insert(k, source);
        }
        Ok(self)
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
        Self::new(self.ops_name, entries).with_quantization(self.quantization)
    }

    /// The state dict with the file-backed entries under `prefix` read into memory on the CPU as
    /// they will be held (no widening; fp8-cast keys narrowed, GGUF blocks kept as blocks, keys
    /// quantized at load quantized), so building that part later does not touch the file.
    pub fn with_prefix_in_memory(mut self, prefix: &str) -> crate::Result<Self> {
        let keys: Vec<String> = self
            .entries
            .iter()
            .filter(|(k, s)| {
                k.starts_with(prefix)
                    && matches!(s, TensorSource::Mapped { .. } | TensorSource::Gguf { .. })
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            let source = &self.entries[&key];
            let cpu = Device::Cpu;
            let staged = match self.form_of(&key, source) {
                StoredForm::Blocks(_) => {
                    let shape = source.shape();
                    TensorSource::Quantized(Arc::new(
                        self.block_tensor_unmarked(&key, &shape, &cpu)?,
                    ))
                }
                _ => TensorSource::Memory(self.held(&key, source, &cpu)?),
            };
            self.entries.insert(key, staged);
        }
        Ok(self)
    }

    fn block_tensor_unmarked(
        &self,
        key: &str,
        shape: &[usize],
        device: &Device,
    ) -> crate::Result<QTensor> {
        let q = self.block_tensor(key, shape, device)?;
        self.used
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
        Ok(q)
    }

    /// Bytes the entries passing `keep` take once loaded with compute dtype `dtype` (fp8 and
    /// GGUF-block entries in their held form); `None`: as stored.
    pub fn bytes_where(&self, keep: impl Fn(&str) -> bool, dtype: Option<DType>) -> u64 {
        self.entries
            .iter()
            .filter(|(k, _)| keep(k))
            .map(|(k, v)| {
                let Some(d) = dtype else {
                    return v.stored_bytes();
                };
                let elems = v.shape().iter().product::<usize>();
                match self.form_of(k, v) {
                    StoredForm::Wide => (elems * d.size_in_bytes()) as u64,
                    StoredForm::Fp8 => elems as u64,
                    StoredForm::Blocks(b) => super::gguf::stored_bytes(elems, b),
                }
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
        // Metal has no fp8 dtype: such weights are widened on the CPU and then moved
        let fp8 = self.form_of(name, source) == StoredForm::Fp8;
        let load_dev = if fp8 && dev.is_metal() {
            &Device::Cpu
        } else {
            dev
        };
        let tensor = self.held(name, source, load_dev)?;
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
        let scale = if tensor.dtype() == DType::F8E4M3 {
            self.scale_of(name).map_err(Error::into_candle)?
        } else {
            None
        };
        let tensor = match scale {
            Some(scale) => fp8::widen(&tensor, DType::F32)?
                .affine(scale, 0.0)?
                .to_dtype(dtype)?,
            None => fp8::widen(&tensor, dtype)?,
        };
        tensor.to_device(dev)
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
        let info = safetensors::tensor::TensorInfo {
            dtype: safetensors::Dtype::F32,
            shape: vec![1024, 1024],
            data_offsets: (0, 4 << 20),
        };
        let oom = candle_core::Error::Msg("CUDA_ERROR_OUT_OF_MEMORY".into());
        let e =
            crate::loader::tensor_source::load_error("w", &info, &Device::Cpu, &oom).to_string();
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
        let sd = sd(&[("w8", fp8::narrow(&w).unwrap()), ("w", w.clone())]);
        let vb = sd.var_builder(DType::BF16, &dev);
        assert_eq!(vb.get(3, "w").unwrap().dtype(), DType::BF16);
        let up = sd.var_builder(DType::F32, &dev).get(3, "w8").unwrap();
        assert_eq!(up.to_vec1::<f32>().unwrap(), vec![0.5, -1.25, 3.0]);
    }
}
