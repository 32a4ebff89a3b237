//! Device and compute-dtype selection, made once at start (`--device`, `--dtype`).

use std::str::FromStr;

use candle_core::{DType, Device};

use crate::{Error, Result};

/// Which device to run on. `Auto` prefers CUDA, then Metal, then the CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DeviceChoice {
    #[default]
    Auto,
    Cpu,
    Cuda,
    Metal,
}

impl FromStr for DeviceChoice {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda),
            "metal" => Ok(Self::Metal),
            other => Err(crate::error::unsupported(
                "device",
                other,
                "auto|cpu|cuda|metal",
            )),
        }
    }
}

impl DeviceChoice {
    /// Opens the chosen device. An explicit `cuda`/`metal` that is not compiled in or not present
    /// is an error; `auto` falls back to the CPU.
    pub fn open(self) -> Result<Device> {
        match self {
            Self::Cpu => Ok(Device::Cpu),
            Self::Cuda => Device::new_cuda(0)
                .map_err(|e| Error::DeviceUnavailable("cuda".into(), e.to_string())),
            Self::Metal => {
                bound_metal_command_buffers(None);
                Device::new_metal(0)
                    .map_err(|e| Error::DeviceUnavailable("metal".into(), e.to_string()))
            }
            Self::Auto => {
                if candle_core::utils::cuda_is_available() {
                    if let Ok(d) = Device::new_cuda(0) {
                        return Ok(d);
                    }
                }
                if candle_core::utils::metal_is_available() {
                    bound_metal_command_buffers(None);
                    if let Ok(d) = Device::new_metal(0) {
                        return Ok(d);
                    }
                }
                Ok(Device::Cpu)
            }
        }
    }
}

/// Kernels per Metal command buffer. macOS kills a command buffer that keeps the GPU busy for too
/// long while a display is attached (the "Impacting Interactivity" watchdog, the most reported
/// failure of the Mac ports); Candle commits its command buffer every
/// `CANDLE_METAL_COMPUTE_PER_BUFFER` kernels (50 by default), and 50 full-size DiT or VAE kernels
/// can run for seconds. 16 keeps each buffer short at a small cost in commits.
pub const METAL_KERNELS_PER_COMMAND_BUFFER: usize = 16;

const METAL_PER_BUFFER_ENV: &str = "CANDLE_METAL_COMPUTE_PER_BUFFER";

/// Bounds the kernels per Metal command buffer before the Metal device is created (Candle reads
/// the limit once, when it opens the device): `kernels`, else the user's own
/// `CANDLE_METAL_COMPUTE_PER_BUFFER`, else [`METAL_KERNELS_PER_COMMAND_BUFFER`]. Returns the
/// limit in force. Call it before any thread is spawned (it sets an environment variable).
pub fn bound_metal_command_buffers(kernels: Option<usize>) -> usize {
    let current = std::env::var(METAL_PER_BUFFER_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&v| v > 0);
    let limit = match (kernels.filter(|&k| k > 0), current) {
        (Some(k), _) => k,
        (None, Some(c)) => return c,
        (None, None) => METAL_KERNELS_PER_COMMAND_BUFFER,
    };
    std::env::set_var(METAL_PER_BUFFER_ENV, limit.to_string());
    limit
}

/// The compute dtype. `None` in [`resolve_dtype`] picks bf16 on GPUs and f32 on the CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DTypeChoice {
    F32,
    F16,
    BF16,
}

impl FromStr for DTypeChoice {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "f32" => Ok(Self::F32),
            "f16" => Ok(Self::F16),
            "bf16" => Ok(Self::BF16),
            other => Err(crate::error::unsupported("dtype", other, "f32|f16|bf16")),
        }
    }
}

impl From<DTypeChoice> for DType {
    fn from(d: DTypeChoice) -> Self {
        match d {
            DTypeChoice::F32 => DType::F32,
            DTypeChoice::F16 => DType::F16,
            DTypeChoice::BF16 => DType::BF16,
        }
    }
}

/// The compute dtype for `device`: the explicit choice, else bf16 on CUDA/Metal and f32 on the CPU.
pub fn resolve_dtype(choice: Option<DTypeChoice>, device: &Device) -> DType {
    match choice {
        Some(c) => c.into(),
        None if device.is_cpu() => DType::F32,
        None => DType::BF16,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        assert_eq!("cpu".parse::<DeviceChoice>().unwrap(), DeviceChoice::Cpu);
        assert_eq!("bf16".parse::<DTypeChoice>().unwrap(), DTypeChoice::BF16);
        let err = "tpu".parse::<DeviceChoice>().unwrap_err();
        assert!(err.to_string().contains("tpu"), "{err}");
        assert!("f64".parse::<DTypeChoice>().is_err());
    }

    #[test]
    fn metal_command_buffers_are_bounded() {
        // the only test touching this variable
        std::env::remove_var(METAL_PER_BUFFER_ENV);
        assert_eq!(
            bound_metal_command_buffers(None),
            METAL_KERNELS_PER_COMMAND_BUFFER
        );
        assert_eq!(std::env::var(METAL_PER_BUFFER_ENV).unwrap(), "16");
        // the user's own setting is kept, an explicit value wins
        std::env::set_var(METAL_PER_BUFFER_ENV, "4");
        assert_eq!(bound_metal_command_buffers(None), 4);
        assert_eq!(bound_metal_command_buffers(Some(32)), 32);
        assert_eq!(std::env::var(METAL_PER_BUFFER_ENV).unwrap(), "32");
        std::env::remove_var(METAL_PER_BUFFER_ENV);
    }

    #[test]
    fn cpu_defaults_to_f32() {
        let dev = DeviceChoice::Cpu.open().unwrap();
        assert_eq!(resolve_dtype(None, &dev), DType::F32);
        assert_eq!(resolve_dtype(Some(DTypeChoice::F16), &dev), DType::F16);
    }
}
