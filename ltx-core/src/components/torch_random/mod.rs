//! torch's random normals, reproduced: the same seed gives the same `torch.randn` as the
//! reference (no Python twin; the reference's noisers call `torch.randn(shape, generator=g,
//! dtype=..., device=...)` on a `torch.Generator(device).manual_seed(seed)`).
//!
//! - [`TorchGenerator::cpu`]: `torch.Generator("cpu")`, MT19937 ([`mt19937`]) and ATen's CPU
//!   `normal_` ([`cpu_normal`]). Bit-exact against torch 2.11 on x86-64 (AVX2) for f32, f64, bf16
//!   and f16, any shape, and successive draws from one generator (`docs/parity.md`, `noise`).
//! - [`TorchGenerator::cuda`]: `torch.Generator("cuda")`, Philox4x32-10 ([`philox`]) and the CUDA
//!   kernel's grid-stride layout ([`cuda_normal`]), which depends on the GPU's multiprocessor
//!   count. Exact in layout and random words, approximate (~1e-6) in value: see [`cuda_normal`].
//!
//! A draw fills the tensor in row-major order, as `torch.randn` fills a contiguous tensor; the
//! values are made on the CPU and then moved to `device`, so they do not depend on it.

mod avx_math;
pub mod cpu_normal;
pub mod cuda_normal;
pub mod mt19937;
pub mod philox;

use candle_core::{DType, Device, Shape, Tensor};

pub use cpu_normal::CpuKernel;
pub use cuda_normal::{CudaGenerator, CudaLaunchLayout};
pub use mt19937::CpuGenerator;

use crate::error::{Error, Result};

/// A seeded torch generator and the device type it stands for.
#[derive(Clone, Debug)]
pub enum TorchGenerator {
    /// `torch.Generator("cpu")`, drawing with the given f32 kernel.
    Cpu(CpuGenerator, CpuKernel),
    /// `torch.Generator("cuda")` on a GPU of the generator's launch layout.
    Cuda(CudaGenerator),
}

impl TorchGenerator {
    /// `torch.Generator("cpu").manual_seed(seed)`, as torch's x86-64 build draws (AVX2).
    pub fn cpu(seed: u64) -> Self {
        Self::Cpu(CpuGenerator::new(seed), CpuKernel::Avx2)
    }

    /// `torch.Generator("cuda").manual_seed(seed)` on a GPU of `layout`.
    pub fn cuda(seed: u64, layout: CudaLaunchLayout) -> Self {
        Self::Cuda(CudaGenerator::new(seed, layout))
    }

    /// The seed the generator was made with.
    pub fn seed(&self) -> u64 {
        match self {
            Self::Cpu(g, _) => g.seed(),
            Self::Cuda(g) => g.seed(),
        }
    }

    /// `torch.randn(*shape, dtype=dtype, generator=self)` (f32, f64, bf16 or f16), moved to
    /// `device`; advances the generator as torch does.
    pub fn randn(
        &mut self,
        shape: impl Into<Shape>,
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor> {
        let shape: Shape = shape.into();
        let n = shape.elem_count();
        let cpu = &Device::Cpu;
        let t = match (self, dtype) {
            (Self::Cpu(g, k), DType::F32) => {
                Tensor::from_vec(cpu_normal::normal_f32(g, n, *k), shape, cpu)
            }
            (Self::Cpu(g, _), DType::F64) => {
                Tensor::from_vec(cpu_normal::normal_f64(g, n), shape, cpu)
            }
            (Self::Cpu(g, _), DType::BF16) => {
                Tensor::from_vec(cpu_normal::normal_bf16(g, n), shape, cpu)
            }
            (Self::Cpu(g, _), DType::F16) => {
                Tensor::from_vec(cpu_normal::normal_f16(g, n), shape, cpu)
            }
            (Self::Cuda(g), DType::F32) => Tensor::from_vec(g.normal_f32(n), shape, cpu),
            (Self::Cuda(g), DType::F64) => Tensor::from_vec(g.normal_f64(n), shape, cpu),
            (Self::Cuda(g), DType::BF16) => Tensor::from_vec(g.normal_bf16(n), shape, cpu),
            (Self::Cuda(g), DType::F16) => Tensor::from_vec(g.normal_f16(n), shape, cpu),
            (_, other) => {
                return Err(Error::InvalidInput(format!(
                    "torch.randn draws floating-point tensors, not {other:?}"
                )))
            }
        }?;
        Ok(t.to_device(device)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn randn_shapes_dtypes_and_state() -> Result<()> {
        let cpu = Device::Cpu;
        let mut g = TorchGenerator::cpu(0);
        let a = g.randn((2, 3, 4), DType::F32, &cpu)?;
        assert_eq!(a.dims(), [2, 3, 4]);
        let b = g.randn(24, DType::F32, &cpu)?;
        // successive draws continue the stream
        let both = TorchGenerator::cpu(0).randn(48, DType::F32, &cpu)?;
        assert_ne!(both.to_vec1::<f32>()?[24..], b.to_vec1::<f32>()?);
        let mut again = TorchGenerator::cpu(0);
        again.randn(24, DType::F32, &cpu)?;
        assert_eq!(
            again.randn(24, DType::F32, &cpu)?.to_vec1::<f32>()?,
            b.to_vec1::<f32>()?
        );
        for dtype in [DType::F64, DType::BF16, DType::F16] {
            assert_eq!(g.randn(5, dtype, &cpu)?.dtype(), dtype);
            let mut c = TorchGenerator::cuda(1, CudaLaunchLayout::H100);
            assert_eq!(c.randn((3, 7), dtype, &cpu)?.dims(), [3, 7]);
        }
        assert!(g.randn(4, DType::U8, &cpu).is_err());
        assert_eq!(g.randn(0, DType::F32, &cpu)?.elem_count(), 0);
        Ok(())
    }

    /// Values printed by torch 2.11.0+cu130 (x86-64, AVX2) with `g = torch.Generator().manual_seed(0);
    /// a = torch.randn(4, generator=g); b = torch.randn(20, generator=g);
    /// [float(x) for x in a], [float(x) for x in b]` (a: per-element path, b: `normal_fill_AVX2`
    /// with a redrawn tail). The full comparison is the `noise` fixture.
    #[test]
    fn torch_seed_0_known_values() -> Result<()> {
        let cpu = Device::Cpu;
        let mut g = TorchGenerator::cpu(0);
        let small = g.randn(4, DType::F32, &cpu)?.to_vec1::<f32>()?;
        let big = g.randn(20, DType::F32, &cpu)?.to_vec1::<f32>()?;
        assert_eq!(
            small,
            [1.540_996_1, -0.293_428_9, -2.178_789_4, 0.568_431_26]
        );
        assert_eq!(big[..2], [-0.356_128_36, 0.437_222_72]);
        assert_eq!(big[18..], [-0.289_667_7, 0.052_507_486]);
        Ok(())
    }
}
