//! Activations Candle runs single-threaded with scalar libm calls on the CPU.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

const SQRT_2_OVER_PI: f32 = 0.797_884_6;
const CHUNK: usize = 4096;

#[inline(always)]
fn gelu_tanh_f32(x: f32) -> f32 {
    let y = SQRT_2_OVER_PI * x * (1.0 + 0.044_715 * x * x);
    // tanh(y) = 1 − 2 / (e^{2y} + 1): saturates correctly for large |y| (e = ∞ or 0)
    let t = 1.0 - 2.0 / (super::vexp::exp(2.0 * y) + 1.0);
    0.5 * x * (1.0 + t)
}

#[inline(always)]
fn gelu_tanh_body(o: &mut [f32], s: &[f32]) {
    for (o, &x) in o.iter_mut().zip(s) {
        *o = gelu_tanh_f32(x);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn gelu_tanh_avx2(o: &mut [f32], s: &[f32]) {
    gelu_tanh_body(o, s)
}

fn gelu_tanh_slice(o: &mut [f32], s: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked above)
        return unsafe { gelu_tanh_avx2(o, s) };
    }
    gelu_tanh_body(o, s)
}

struct GeluTanh;

impl CustomOp1 for GeluTanh {
    fn name(&self) -> &'static str {
        "ltx-gelu-tanh"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(data) = storage else {
            candle_core::bail!("ltx-gelu-tanh: f32 only")
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("ltx-gelu-tanh: contiguous input only")
        };
        let src = &data[start..end];
        let mut out = vec![0f32; src.len()];
        out.par_chunks_mut(CHUNK)
            .zip(src.par_chunks(CHUNK))
            .for_each(|(o, s)| gelu_tanh_slice(o, s));
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }
}

/// `torch.nn.functional.gelu(x, approximate="tanh")`. On the CPU in f32 a parallel kernel (tanh
/// through one vectorised `exp`, within ~2e-7 of libm's `tanhf`); elsewhere Candle's `gelu`.
pub fn gelu_tanh(x: &Tensor) -> Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == candle_core::DType::F32 && x.is_contiguous() {
        x.apply_op1_no_bwd(&GeluTanh)
    } else {
        x.gelu()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn matches_candle_gelu() -> Result<()> {
        let x = (Tensor::arange(-4000f32, 4000f32, &Device::Cpu)? / 300.0)?;
        let a = gelu_tanh(&x)?;
        let b = x.gelu()?;
        let d = (a - b)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(d < 2e-6, "{d}");
        let big = Tensor::new(&[-100f32, 100.0, 0.0], &Device::Cpu)?;
        assert_eq!(gelu_tanh(&big)?.to_vec1::<f32>()?, [-0.0, 100.0, 0.0]);
        Ok(())
    }
}
