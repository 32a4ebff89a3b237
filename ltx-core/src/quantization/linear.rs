//! The linear layer of the transformer blocks, in whichever form its weight is held: wide
//! (Candle's `Linear`), F8E4M3 with an optional per-tensor scale (widened to the input's dtype in
//! every forward, as the reference's `Fp8CastLinear` does), or GGUF blocks (Candle's `QMatMul`).

use std::sync::Arc;

use candle_core::quantized::QMatMul;
use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::loader::{StateDict, StoredForm};

/// An fp8-held tensor: the stored F8E4M3 values and the scale they are multiplied by.
#[derive(Clone, Debug)]
pub struct Fp8Tensor {
    /// F8E4M3, on the compute device (on the CPU where the device has no fp8 dtype: Metal).
    values: Tensor,
    scale: Option<f64>,
}

impl Fp8Tensor {
    /// The values widened to `dtype` on `device`: `stored · scale`, computed in f32 and rounded
    /// once (the reference folds its scales the same way).
    fn widen(&self, dtype: DType, device: &Device) -> Result<Tensor> {
        let t = match self.scale {
            Some(s) => super::fp8::widen(&self.values, DType::F32)?
                .affine(s, 0.0)?
                .to_dtype(dtype)?,
            None => super::fp8::widen(&self.values, dtype)?,
        };
        t.to_device(device)
    }
}

/// A linear layer `y = x·Wᵀ + b`.
#[derive(Clone, Debug)]
pub enum Linear {
    Wide(candle_nn::Linear),
    /// Weight (and bias, when the checkpoint narrowed it too) in F8E4M3.
    Fp8 {
        weight: Fp8Tensor,
        bias: Option<Fp8OrWide>,
    },
    /// Weight in GGUF blocks; the bias wide.
    Blocks {
        weight: QMatMul,
        bias: Option<Tensor>,
    },
}

/// A bias held narrow or wide.
#[derive(Clone, Debug)]
pub enum Fp8OrWide {
    Fp8(Fp8Tensor),
    Wide(Tensor),
}

impl Linear {
    /// How the weight is held.
    pub fn form(&self) -> StoredForm {
        match self {
            Self::Wide(_) => StoredForm::Wide,
            Self::Fp8 { .. } => StoredForm::Fp8,
            Self::Blocks { weight, .. } => match weight {
                QMatMul::QTensor(q) => StoredForm::Blocks(q.dtype()),
                _ => StoredForm::Wide,
            },
        }
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Self::Wide(l) => l.forward(x),
            Self::Fp8 { weight, bias } => {
                let w = weight.widen(x.dtype(), x.device())?;
                let b = match bias {
                    Some(Fp8OrWide::Fp8(b)) => Some(b.widen(x.dtype(), x.device())?),
                    Some(Fp8OrWide::Wide(b)) => Some(b.clone()),
                    None => None,
                };
                candle_nn::Linear::new(w, b).forward(x)
            }
            Self::Blocks { weight, bias } => {
                // the block kernels take f32 activations (and quantize them to their dot type)
                let y = weight
                    .forward(&x.to_dtype(DType::F32)?.contiguous()?)?
                    .to_dtype(x.dtype())?;
                match bias {
                    Some(b) => y.broadcast_add(b),
                    None => Ok(y),
                }
            }
        }
    }
}

/// Where the linears of a model part take their weights from: with a state dict, each layer is
/// built in the form its weight is held there ([`StateDict::stored_form`]); without one (or for a
/// wide weight) it is Candle's `Linear` over the [`VarBuilder`].
#[derive(Clone, Default)]
pub struct LinearSource {
    sd: Option<Arc<StateDict>>,
}

impl LinearSource {
    /// Every layer wide, from the `VarBuilder` alone.
    pub fn wide() -> Self {
        Self::default()
    }

    /// Layers in the form `sd` holds their weights (the `VarBuilder` must read the same `sd`).
    pub fn new(sd: &Arc<StateDict>) -> Self {
        Self {
            sd: Some(sd.clone()),
        }
    }

    /// The linear `in_dim → out_dim` under `vb`'s prefix (keys `weight`, `bias`).
    pub fn linear(
        &self,
        in_dim: usize,
        out_dim: usize,
        bias: bool,
        vb: VarBuilder,
    ) -> Result<Linear> {
        let wide =
            |vb: VarBuilder| candle_nn::linear_b(in_dim, out_dim, bias, vb).map(Linear::Wide);
        let Some(sd) = &self.sd else {
            return wide(vb);
        };
        let prefix = vb.prefix();
        let key = |name: &str| {
            if prefix.is_empty() {
                name.to_string()
            } else {
                format!("{prefix}.{name}")
            }
        };
        let (w_key, b_key) = (key("weight"), key("bias"));
        let shape = [out_dim, in_dim];
        let device = vb.device();
        // Metal has no fp8 dtype: keep fp8 values on the CPU and widen there
        let fp8_device = if device.is_metal() {
            Device::Cpu
        } else {
            device.clone()
        };
        let fp8 = |k: &str, shape: &[usize]| -> Result<Fp8Tensor> {
            Ok(Fp8Tensor {
                values: sd.fp8_tensor(k, shape, &fp8_device)?,
                scale: sd.scale_of(k).map_err(crate::Error::into_candle)?,
            })
        };
        match sd.stored_form(&w_key) {
            None | Some(StoredForm::Wide) => wide(vb),
            Some(StoredForm::Fp8) => {
                let bias = if !bias {
                    None
                } else if sd.stored_form(&b_key) == Some(StoredForm::Fp8) {
                    Some(Fp8OrWide::Fp8(fp8(&b_key, &[out_dim])?))
                } else {
                    Some(Fp8OrWide::Wide(vb.get(out_dim, "bias")?))
                };
                Ok(Linear::Fp8 {
                    weight: fp8(&w_key, &shape)?,
                    bias,
                })
            }
            Some(StoredForm::Blocks(_)) => {
                let q = sd.block_tensor(&w_key, &shape, device)?;
                Ok(Linear::Blocks {
                    weight: QMatMul::from_arc(Arc::new(q))?,
                    bias: if bias {
                        Some(vb.get(out_dim, "bias")?)
                    } else {
                        None
                    },
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use candle_core::quantized::{GgmlDType, QTensor};

    use super::*;
    use crate::quantization::Quantization;

    const KEY: &str = "transformer_blocks.0.attn1.to_q";

    fn random(shape: &[usize], seed: u64) -> Tensor {
        let n: usize = shape.iter().product();
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let v: Vec<f32> = (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 40) as f32 / (1u64 << 24) as f32 - 0.5
            })
            .collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    fn source(tensors: Vec<(String, Tensor)>, q: Quantization) -> Arc<StateDict> {
        Arc::new(
            StateDict::from_tensors(tensors.into_iter().collect::<HashMap<_, _>>())
                .with_quantization(q),
        )
    }

    fn build(sd: &Arc<StateDict>, linears: &LinearSource) -> Linear {
        let vb = sd.var_builder(DType::F32, &Device::Cpu);
        linears.linear(64, 8, true, vb.pp(KEY)).unwrap()
    }

    /// `max |t|`.
    fn peak(t: &Tensor) -> f32 {
        t.abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar()
            .unwrap()
    }

    fn max_abs(a: &Tensor, b: &Tensor) -> f32 {
        peak(&(a - b).unwrap())
    }

    #[test]
    fn fp8_weights_stay_narrow_and_scaled() {
        let w = random(&[8, 64], 1);
        let b = random(&[8], 2);
        let x = random(&[2, 3, 64], 3);
        let w8 = super::super::fp8::narrow(&(&w * 4.0).unwrap()).unwrap();
        let scale = Tensor::new(0.25f32, &Device::Cpu).unwrap();
        let sd = source(
            vec![
                (format!("{KEY}.weight"), w8.clone()),
                (format!("{KEY}.weight_scale"), scale),
                (format!("{KEY}.bias"), b.clone()),
            ],
            Quantization::None,
        );
        let narrow = build(&sd, &LinearSource::new(&sd));
        assert_eq!(narrow.form(), StoredForm::Fp8);
        // the wide path (scale applied at load) gives the same numbers
        let wide = build(&sd, &LinearSource::wide());
        assert_eq!(wide.form(), StoredForm::Wide);
        let (yn, yw) = (narrow.forward(&x).unwrap(), wide.forward(&x).unwrap());
        assert_eq!(max_abs(&yn, &yw), 0.0);
        let expected = candle_nn::Linear::new(
            (super::super::fp8::widen(&w8, DType::F32).unwrap() * 0.25).unwrap(),
            Some(b),
        )
        .forward(&x)
        .unwrap();
        assert_eq!(max_abs(&yn, &expected), 0.0);
        assert!(sd.unused_keys().is_empty(), "{:?}", sd.unused_keys());
    }

    #[test]
    fn fp8_cast_narrows_allow_listed_weights_and_biases() {
        let w = random(&[8, 64], 4).to_dtype(DType::BF16).unwrap();
        let b = random(&[8], 5).to_dtype(DType::BF16).unwrap();
        let x = random(&[1, 5, 64], 6);
        let sd = source(
            vec![
                (format!("{KEY}.weight"), w.clone()),
                (format!("{KEY}.bias"), b.clone()),
            ],
            Quantization::Fp8Cast,
        );
        let l = build(&sd, &LinearSource::new(&sd));
        assert_eq!(l.form(), StoredForm::Fp8);
        let narrow = |t: &Tensor| {
            let n = super::super::fp8::narrow(t).unwrap();
            super::super::fp8::widen(&n, DType::F32).unwrap()
        };
        let expected = candle_nn::Linear::new(narrow(&w), Some(narrow(&b)))
            .forward(&x)
            .unwrap();
        assert_eq!(max_abs(&l.forward(&x).unwrap(), &expected), 0.0);
        // a key outside the allow-list stays wide
        let other = source(vec![("proj_out.weight".into(), w)], Quantization::Fp8Cast);
        assert_eq!(other.stored_form("proj_out.weight"), Some(StoredForm::Wide));
    }

    #[test]
    fn gguf_types_quantize_at_load_and_multiply_as_blocks() {
        let w = random(&[8, 64], 7);
        let b = random(&[8], 8);
        let x = random(&[2, 4, 64], 9);
        let sd = source(
            vec![
                (format!("{KEY}.weight"), w.clone()),
                (format!("{KEY}.bias"), b.clone()),
            ],
            Quantization::Gguf(GgmlDType::Q8_0),
        );
        let l = build(&sd, &LinearSource::new(&sd));
        assert_eq!(l.form(), StoredForm::Blocks(GgmlDType::Q8_0));
        let deq = QTensor::quantize(&w, GgmlDType::Q8_0)
            .unwrap()
            .dequantize(&Device::Cpu)
            .unwrap();
        let reference = candle_nn::Linear::new(deq, Some(b.clone()))
            .forward(&x)
            .unwrap();
        let y = l.forward(&x).unwrap();
        let rel = max_abs(&y, &reference) / peak(&reference);
        assert!(rel < 0.02, "q8_0 relative error {rel}");
        // the wide path reads the same blocks dequantized
        let wide = build(&sd, &LinearSource::wide());
        assert_eq!(max_abs(&wide.forward(&x).unwrap(), &reference), 0.0);
        // Q4_K needs rows of 256: a 64-wide row stays wide
        let k4 = source(
            vec![(format!("{KEY}.weight"), w)],
            Quantization::Gguf(GgmlDType::Q4K),
        );
        assert_eq!(
            k4.stored_form(&format!("{KEY}.weight")),
            Some(StoredForm::Wide)
        );
    }
}
