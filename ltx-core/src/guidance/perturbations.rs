//! Port of `ltx_core/guidance/perturbations.py`: which attention paths a sample skips (STG and
//! the modality-isolation passes), per block and per batch element.

use candle_core::{DType, Device, Result, Tensor};

/// An attention path that can be skipped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PerturbationType {
    SkipA2vCrossAttn,
    SkipV2aCrossAttn,
    SkipVideoSelfAttn,
    SkipAudioSelfAttn,
}

impl PerturbationType {
    /// The reference's string value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SkipA2vCrossAttn => "skip_a2v_cross_attn",
            Self::SkipV2aCrossAttn => "skip_v2a_cross_attn",
            Self::SkipVideoSelfAttn => "skip_video_self_attn",
            Self::SkipAudioSelfAttn => "skip_audio_self_attn",
        }
    }

    pub fn parse(s: &str) -> crate::Result<Self> {
        [
            Self::SkipA2vCrossAttn,
            Self::SkipV2aCrossAttn,
            Self::SkipVideoSelfAttn,
            Self::SkipAudioSelfAttn,
        ]
        .into_iter()
        .find(|t| t.as_str() == s)
        .ok_or_else(|| crate::Error::InvalidInput(format!("unknown perturbation type `{s}`")))
    }
}

/// One skipped path in some blocks (`None`: every block).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Perturbation {
    pub kind: PerturbationType,
    pub blocks: Option<Vec<usize>>,
}

impl Perturbation {
    pub fn is_perturbed(&self, kind: PerturbationType, block: usize) -> bool {
        self.kind == kind && self.blocks.as_ref().is_none_or(|b| b.contains(&block))
    }
}

/// The perturbations of one sample (`None` or empty: none).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PerturbationConfig {
    pub perturbations: Option<Vec<Perturbation>>,
}

impl PerturbationConfig {
    pub fn new(perturbations: Vec<Perturbation>) -> Self {
        Self {
            perturbations: Some(perturbations),
        }
    }

    pub fn empty() -> Self {
        Self::new(Vec::new())
    }

    pub fn is_perturbed(&self, kind: PerturbationType, block: usize) -> bool {
        self.perturbations
            .iter()
            .flatten()
            .any(|p| p.is_perturbed(kind, block))
    }
}

/// Per-sample perturbations of a batch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchedPerturbationConfig {
    pub perturbations: Vec<PerturbationConfig>,
}

impl BatchedPerturbationConfig {
    pub fn new(perturbations: Vec<PerturbationConfig>) -> Self {
        Self { perturbations }
    }

    /// No perturbation for any of `batch` samples.
    pub fn empty(batch: usize) -> Self {
        Self::new(vec![PerturbationConfig::empty(); batch])
    }

    pub fn len(&self) -> usize {
        self.perturbations.len()
    }

    pub fn is_empty(&self) -> bool {
        self.perturbations.is_empty()
    }

    /// `[B]`: 0 where the sample skips `kind` in `block`, else 1.
    pub fn mask(
        &self,
        kind: PerturbationType,
        block: usize,
        device: &Device,
        dtype: DType,
    ) -> Result<Tensor> {
        let v: Vec<f32> = self
            .perturbations
            .iter()
            .map(|p| {
                if p.is_perturbed(kind, block) {
                    0.0
                } else {
                    1.0
                }
            })
            .collect();
        Tensor::from_vec(v, self.perturbations.len(), device)?.to_dtype(dtype)
    }

    /// [`Self::mask`] shaped `[B, 1, ..]` to broadcast against `values`.
    pub fn mask_like(
        &self,
        kind: PerturbationType,
        block: usize,
        values: &Tensor,
    ) -> Result<Tensor> {
        let m = self.mask(kind, block, values.device(), values.dtype())?;
        let mut shape = vec![1usize; values.rank().max(1)];
        shape[0] = self.perturbations.len();
        m.reshape(shape)
    }

    pub fn any_in_batch(&self, kind: PerturbationType, block: usize) -> bool {
        self.perturbations
            .iter()
            .any(|p| p.is_perturbed(kind, block))
    }

    pub fn all_in_batch(&self, kind: PerturbationType, block: usize) -> bool {
        self.perturbations
            .iter()
            .all(|p| p.is_perturbed(kind, block))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_per_sample_and_block() -> Result<()> {
        let stg = Perturbation {
            kind: PerturbationType::SkipVideoSelfAttn,
            blocks: Some(vec![1]),
        };
        let all_a2v = Perturbation {
            kind: PerturbationType::SkipA2vCrossAttn,
            blocks: None,
        };
        let b = BatchedPerturbationConfig::new(vec![
            PerturbationConfig::empty(),
            PerturbationConfig::new(vec![stg, all_a2v]),
            PerturbationConfig {
                perturbations: None,
            },
        ]);
        let v = Tensor::zeros((3, 4, 2), DType::F32, &Device::Cpu)?;
        let m = b.mask_like(PerturbationType::SkipVideoSelfAttn, 1, &v)?;
        assert_eq!(m.dims(), &[3, 1, 1]);
        assert_eq!(m.flatten_all()?.to_vec1::<f32>()?, [1.0, 0.0, 1.0]);
        assert!(!b.any_in_batch(PerturbationType::SkipVideoSelfAttn, 0));
        assert!(b.any_in_batch(PerturbationType::SkipA2vCrossAttn, 7));
        assert!(!b.all_in_batch(PerturbationType::SkipA2vCrossAttn, 7));
        assert!(
            BatchedPerturbationConfig::empty(2)
                .mask(
                    PerturbationType::SkipV2aCrossAttn,
                    0,
                    &Device::Cpu,
                    DType::F32
                )?
                .to_vec1::<f32>()?
                == [1.0, 1.0]
        );
        assert!(PerturbationType::parse("skip_v2a_cross_attn").is_ok());
        assert!(PerturbationType::parse("skip_everything").is_err());
        Ok(())
    }
}
