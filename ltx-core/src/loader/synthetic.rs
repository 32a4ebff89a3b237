//! Synthetic checkpoints (no Python twin): deterministic random weights for any model, under
//! the exact keys and shapes the model asks for, saved like a released checkpoint. Used by the
//! benchmarks and the built-in tiny model.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::VarBuilder;

use crate::{Error, Result};

/// SplitMix64: a small, fast, reproducible generator (no dependency, same stream everywhere).
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f32 {
        let u1 = self.uniform().max(1e-7);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f32::consts::PI * u2).cos()
    }
}

/// How a weight is drawn, chosen from its key (the scheme of the reference fixture generator):
/// matrices and kernels U(±1/√fan_in); norm weights 1 + 0.1·N; biases 0.02·N; latent std-of-means
/// U(0.5, 1.5); the VAE's timestep multiplier 1000; everything else 0.1·N.
fn draw(name: &str, dims: &[usize], rng: &mut SplitMix64) -> Vec<f32> {
    let n: usize = dims.iter().product();
    let leaf = name.rsplit('.').next().unwrap_or(name);
    if name.ends_with("timestep_scale_multiplier") {
        return vec![1000.0; n];
    }
    if leaf == "std-of-means" {
        return (0..n).map(|_| 0.5 + rng.uniform()).collect();
    }
    if leaf == "bias" {
        return (0..n).map(|_| 0.02 * rng.normal()).collect();
    }
    if leaf == "weight" && dims.len() == 1 && name.contains("norm") {
        return (0..n).map(|_| 1.0 + 0.1 * rng.normal()).collect();
    }
    if leaf == "weight" && dims.len() >= 2 {
        let fan_in: usize = dims[1..].iter().product();
        let bound = 1.0 / (fan_in.max(1) as f32).sqrt();
        return (0..n)
            .map(|_| bound * (2.0 * rng.uniform() - 1.0))
            .collect();
    }
    (0..n).map(|_| 0.1 * rng.normal()).collect()
}

struct Recorder {
    rng: Mutex<SplitMix64>,
    tensors: Mutex<HashMap<String, Tensor>>,
    storage: DType,
}

impl SimpleBackend for Recorder {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let mut tensors = self.tensors.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = tensors.get(name) {
            return t.to_dtype(dtype)?.to_device(dev);
        }
        let data = draw(
            name,
            s.dims(),
            &mut self.rng.lock().unwrap_or_else(|e| e.into_inner()),
        );
        // Round through the storage dtype so the model sees exactly what the file will hold.
        let t = Tensor::from_vec(data, s, &Device::Cpu)?.to_dtype(self.storage)?;
        tensors.insert(name.to_string(), t.clone());
        t.to_dtype(dtype)?.to_device(dev)
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> candle_core::Result<Tensor> {
        candle_core::bail!("synthetic weights need a shape for `{name}`")
    }

    fn contains_tensor(&self, _: &str) -> bool {
        true
    }
}

/// Builds a model with `build` over random weights (seeded) and returns every tensor it asked
/// for, stored in `storage` dtype under `prefix` + its key.
pub fn random_weights<T>(
    seed: u64,
    storage: DType,
    prefix: &str,
    build: impl FnOnce(VarBuilder<'static>) -> Result<T>,
) -> Result<HashMap<String, Tensor>> {
    let recorder = std::sync::Arc::new(Recorder {
        rng: Mutex::new(SplitMix64::new(seed)),
        tensors: Mutex::new(HashMap::new()),
        storage,
    });
    struct Shared(std::sync::Arc<Recorder>);
    impl SimpleBackend for Shared {
        fn get(
            &self,
            s: Shape,
            n: &str,
            h: candle_nn::Init,
            d: DType,
            dev: &Device,
        ) -> candle_core::Result<Tensor> {
            self.0.get(s, n, h, d, dev)
        }
        fn get_unchecked(&self, n: &str, d: DType, dev: &Device) -> candle_core::Result<Tensor> {
            self.0.get_unchecked(n, d, dev)
        }
        fn contains_tensor(&self, n: &str) -> bool {
            self.0.contains_tensor(n)
        }
    }
    let vb = VarBuilder::from_backend(Box::new(Shared(recorder.clone())), storage, Device::Cpu);
    drop(build(vb)?);
    let tensors = std::mem::take(&mut *recorder.tensors.lock().unwrap_or_else(|e| e.into_inner()));
    Ok(tensors
        .into_iter()
        .map(|(k, v)| (format!("{prefix}{k}"), v))
        .collect())
}

/// Writes `tensors` and string `metadata` as one safetensors file.
pub fn save_safetensors(
    path: &Path,
    tensors: &HashMap<String, Tensor>,
    metadata: HashMap<String, String>,
) -> Result<()> {
    let mut items: Vec<(&String, &Tensor)> = tensors.iter().collect();
    items.sort_by(|a, b| a.0.cmp(b.0));
    safetensors::serialize_to_file(items, Some(metadata), path).map_err(|e| Error::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_shaped() {
        let build = |vb: VarBuilder<'static>| -> Result<()> {
            vb.get((4, 3, 3), "conv.weight")?;
            vb.get(4, "conv.bias")?;
            Ok(())
        };
        let a = random_weights(7, DType::F32, "m.", build).unwrap();
        let b = random_weights(7, DType::F32, "m.", build).unwrap();
        assert_eq!(a["m.conv.weight"].dims(), &[4, 3, 3]);
        let diff = (&a["m.conv.weight"] - &b["m.conv.weight"])
            .unwrap()
            .abs()
            .unwrap()
            .sum_all()
            .unwrap();
        assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0);
        let max = a["m.conv.weight"]
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(max <= 1.0 / 3.0, "{max}");
    }
}
