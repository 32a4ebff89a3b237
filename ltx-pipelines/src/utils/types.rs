//! Port of `ltx_pipelines/utils/types.py`: what the pipelines' building blocks hand each other —
//! progress events, noise sources, the denoiser protocol and denoising loops.

use std::collections::VecDeque;

use candle_core::{DType, Device, Tensor};
use ltx_core::components::noisers::NoiseGenerator;
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
/// u8 chunks in order.
pub struct RunIo<'a> {
    pub progress: &'a mut dyn FnMut(ProgressEvent),
    pub sink: &'a mut dyn FnMut(Tensor) -> Result<()>,
}

/// A source of Gaussian noise for the noiser and the SDE samplers.
pub trait NoiseSource {
    fn randn(&mut self, shape: &[usize], dtype: DType, device: &Device) -> Result<Tensor>;
}

impl NoiseSource for NoiseGenerator {
    fn randn(&mut self, shape: &[usize], dtype: DType, device: &Device) -> Result<Tensor> {
        Ok(NoiseGenerator::randn(self, shape, dtype, device)?)
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
    fn replay_noise_checks_shapes() {
        let mut r = ReplayNoise::new([Tensor::zeros((2, 3), DType::F32, &Device::Cpu).unwrap()]);
        assert!(r.randn(&[3, 2], DType::F32, &Device::Cpu).is_err());
        assert_eq!(r.remaining(), 0);
        assert!(r.randn(&[2, 3], DType::F32, &Device::Cpu).is_err());
    }
}
