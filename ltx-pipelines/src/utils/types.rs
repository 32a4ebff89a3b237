//! Port of `ltx_pipelines/utils/types.py`: what the pipelines' building blocks hand each other —
//! progress events, noise sources, the denoiser protocol and denoising loops.

use std::collections::VecDeque;

use candle_core::{DType, Device, Tensor};
use ltx_core::components::noisers::{NoiseKind, SeededNoise};
use ltx_core::types::LatentState;

use crate::{Error, Result};

/// What a pipeline reports while it runs.
#[derive(Clone, Debug, PartialEq)]
pub enum ProgressEvent {
    /// A stage starts; `total` steps (0: no step count).
    Stage { name: &'static str, total: usize },
    /// `done` of the stage's `total` steps are finished.
    Step { done: usize, total: usize },
    /// Gemma rewrote the prompt (`--enhance-prompt`); the generation uses this text.
    EnhancedPrompt(String),
}

/// Where a running pipeline reports: its progress events, and the decoded video as `[f, H, W, 3]`
/// f32 chunks in [0, 1], in order (1.2.0's `decode_video`; [`rgb_frames_to_uint8`] makes the
/// 8-bit frames).
///
/// [`rgb_frames_to_uint8`]: ltx_core::model::video_vae::decoder::rgb_frames_to_uint8
pub struct RunIo<'a> {
    pub progress: &'a mut dyn FnMut(ProgressEvent),
    pub sink: &'a mut dyn FnMut(Tensor) -> Result<()>,
}

/// A source of Gaussian noise for the noiser and the SDE samplers.
pub trait NoiseSource {
    fn randn(&mut self, shape: &[usize], dtype: DType, device: &Device) -> Result<Tensor>;

    /// The kind of seeded generator this is (`None`: not a seeded generator, e.g. recorded
    /// noise). A stage that seeds generators of its own (res_2s) makes them of this kind, as the
    /// reference makes them on the pipeline's device.
    fn kind(&self) -> Option<NoiseKind> {
        None
    }
}

/// The dtype every reference pipeline holds its latents in (`dtype = torch.bfloat16`), and so the
/// dtype its noiser draws `torch.randn` in.
pub const REFERENCE_LATENT_DTYPE: DType = DType::BF16;

/// The generator a pipeline's noiser draws from. With torch's generators it draws in
/// [`REFERENCE_LATENT_DTYPE`] whatever the run's dtype and casts the draw: torch computes bf16
/// normals in bf16 (they are not f32 normals rounded), so an f32 run starts from the reference's
/// noise too. ltx-rs's own generator draws in the requested dtype.
#[derive(Clone, Debug)]
pub struct PipelineNoise(pub SeededNoise);

impl PipelineNoise {
    /// `torch.Generator(device).manual_seed(seed)` of the pipeline, of `kind`.
    pub fn new(kind: NoiseKind, seed: u64) -> Self {
        Self(SeededNoise::new(kind, seed))
    }
}

impl NoiseSource for PipelineNoise {
    fn randn(&mut self, shape: &[usize], dtype: DType, device: &Device) -> Result<Tensor> {
        let draw = match (&self.0, dtype) {
            (SeededNoise::Torch(_), DType::F32 | DType::F16 | DType::BF16) => {
                REFERENCE_LATENT_DTYPE
            }
            _ => dtype,
        };
        Ok(self.0.randn(shape, draw, device)?.to_dtype(dtype)?)
    }

    fn kind(&self) -> Option<NoiseKind> {
        Some(self.0.kind())
    }
}

impl NoiseSource for SeededNoise {
    fn randn(&mut self, shape: &[usize], dtype: DType, device: &Device) -> Result<Tensor> {
        Ok(SeededNoise::randn(self, shape, dtype, device)?)
    }

    fn kind(&self) -> Option<NoiseKind> {
        Some(SeededNoise::kind(self))
    }
}

/// Replays recorded noise tensors in order (fixtures, or noise chosen by the caller).
#[derive(Debug, Default)]
pub struct ReplayNoise {
    queue: VecDeque<Tensor>,
}

impl ReplayNoise {
    pub fn new(tensors: impl IntoIterator<Item = Tensor>) -> Self {
        Self {
            queue: tensors.into_iter().collect(),
        }
    }

    pub fn remaining(&self) -> usize {
        self.queue.len()
    }
}

impl NoiseSource for ReplayNoise {
    fn randn(&mut self, shape: &[usize], dtype: DType, device: &Device) -> Result<Tensor> {
        let t = self.queue.pop_front().ok_or_else(|| {
            Error::InvalidArgument(format!("no recorded noise left for a draw of {shape:?}"))
        })?;
        if t.dims() != shape {
            return Err(Error::InvalidArgument(format!(
                "recorded noise has shape {:?}, the draw wants {shape:?}",
                t.dims()
            )));
        }
        Ok(t.to_dtype(dtype)?.to_device(device)?)
    }
}

/// The (video, audio) latent states a denoiser sees.
pub type States<'a> = (&'a LatentState, &'a LatentState);

/// A (video, audio) pair of tensors.
pub type Pair = (Tensor, Tensor);

/// The `Denoiser` protocol: `(video_state, audio_state), sigmas, step_index -> (denoised video,
/// denoised audio)`.
pub trait DenoisingFunc {
    fn denoise(&mut self, states: States, sigmas: &Tensor, step: usize) -> Result<Pair>;
}

/// The loop a stage runs on its noised states. It is handed the noise source the initial states
/// were drawn from (a stochastic loop may keep drawing from it, or use its own).
pub trait DenoisingLoop {
    fn run(
        &mut self,
        video: LatentState,
        audio: LatentState,
        noise: &mut dyn NoiseSource,
    ) -> Result<(LatentState, LatentState)>;
}

impl<F> DenoisingLoop for F
where
    F: FnMut(LatentState, LatentState, &mut dyn NoiseSource) -> Result<(LatentState, LatentState)>,
{
    fn run(
        &mut self,
        video: LatentState,
        audio: LatentState,
        noise: &mut dyn NoiseSource,
    ) -> Result<(LatentState, LatentState)> {
        self(video, audio, noise)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipeline_noise_draws_torchs_bf16_for_any_latent_dtype() -> Result<()> {
        let cpu = Device::Cpu;
        let bf16 = SeededNoise::new(NoiseKind::TorchCpu, 4).randn(&[3, 40], DType::BF16, &cpu)?;
        let mut p = PipelineNoise::new(NoiseKind::TorchCpu, 4);
        assert_eq!(p.kind(), Some(NoiseKind::TorchCpu));
        let f32 = p.randn(&[3, 40], DType::F32, &cpu)?;
        assert_eq!(f32.dtype(), DType::F32);
        let same = f32.to_dtype(DType::BF16)?.to_dtype(DType::F32)?;
        assert_eq!(
            same.flatten_all()?.to_vec1::<f32>()?,
            bf16.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?
        );
        // ltx-rs's own generator keeps the requested dtype
        let mut l = PipelineNoise::new(NoiseKind::Ltx, 4);
        let want = SeededNoise::new(NoiseKind::Ltx, 4).randn(&[5], DType::F32, &cpu)?;
        assert_eq!(
            l.randn(&[5], DType::F32, &cpu)?.to_vec1::<f32>()?,
            want.to_vec1::<f32>()?
        );
        assert_eq!(ReplayNoise::default().kind(), None);
        Ok(())
    }

    #[test]
    fn replay_noise_checks_shapes() {
        let mut r = ReplayNoise::new([Tensor::zeros((2, 3), DType::F32, &Device::Cpu).unwrap()]);
        assert!(r.randn(&[3, 2], DType::F32, &Device::Cpu).is_err());
        assert_eq!(r.remaining(), 0);
        assert!(r.randn(&[2, 3], DType::F32, &Device::Cpu).is_err());
    }
}
