//! Port of `ltx_core/model/upsampler/blur_downsample.py`.

use candle_core::{Device, Result, Tensor};

/// Anti-aliased spatial downsampling of `[N, C, H, W]` by an integer stride: a depthwise
/// `k × k` binomial filter (row `k − 1` of Pascal's triangle, outer product, normalised), zero
/// padding `k / 2`.
#[derive(Clone, Debug)]
pub struct BlurDownsample {
    stride: usize,
    kernel_size: usize,
    kernel: Tensor,
}

fn binomial(n: usize, k: usize) -> f64 {
    (0..k).fold(1.0, |acc, i| acc * (n - i) as f64 / (i + 1) as f64)
}

impl BlurDownsample {
    pub fn new(stride: usize, kernel_size: usize, device: &Device) -> Result<Self> {
        if stride == 0 || kernel_size < 3 || kernel_size % 2 == 0 {
            candle_core::bail!("blur downsample: stride {stride}, kernel {kernel_size}")
        }
        let row: Vec<f64> = (0..kernel_size)
            .map(|k| binomial(kernel_size - 1, k))
            .collect();
        let total: f64 = row.iter().sum::<f64>().powi(2);
        let k2d: Vec<f32> = row
            .iter()
            .flat_map(|a| row.iter().map(move |b| (a * b / total) as f32))
            .collect();
        Ok(Self {
            stride,
            kernel_size,
            kernel: Tensor::from_vec(k2d, (1, 1, kernel_size, kernel_size), device)?,
        })
    }

    /// Uses a stored `[1, 1, k, k]` kernel (the reference keeps it as a checkpoint buffer).
    pub fn with_kernel(mut self, kernel: Tensor) -> Result<Self> {
        let k = self.kernel_size;
        self.kernel = kernel.reshape((1, 1, k, k))?;
        Ok(self)
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if self.stride == 1 {
            return Ok(x.clone());
        }
        let c = x.dim(1)?;
        let k = self.kernel_size;
        let weight = self
            .kernel
            .to_dtype(x.dtype())?
            .to_device(x.device())?
            .broadcast_as((c, 1, k, k))?
            .contiguous()?;
        x.conv2d(&weight, k / 2, self.stride, 1, c)
    }
}
