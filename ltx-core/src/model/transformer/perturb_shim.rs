//! TEMPORARY stand-in until guidance::perturbations lands.
use candle_core::{DType, Device, Result, Tensor};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PerturbationType {
    SkipA2vCrossAttn,
    SkipV2aCrossAttn,
    SkipVideoSelfAttn,
    SkipAudioSelfAttn,
}
#[derive(Clone, Debug)]
pub struct Perturbation {
    pub kind: PerturbationType,
    pub blocks: Option<Vec<usize>>,
}
impl Perturbation {
    pub fn is_perturbed(&self, kind: PerturbationType, block: usize) -> bool {
        self.kind == kind && self.blocks.as_ref().is_none_or(|b| b.contains(&block))
    }
}
#[derive(Clone, Debug)]
pub struct PerturbationConfig {
    pub perturbations: Option<Vec<Perturbation>>,
}
impl PerturbationConfig {
    pub fn is_perturbed(&self, kind: PerturbationType, block: usize) -> bool {
        self.perturbations
            .iter()
            .flatten()
            .any(|p| p.is_perturbed(kind, block))
    }
}
#[derive(Clone, Debug)]
pub struct BatchedPerturbationConfig {
    pub perturbations: Vec<PerturbationConfig>,
}
impl BatchedPerturbationConfig {
    pub fn empty(b: usize) -> Self {
        Self {
            perturbations: (0..b)
                .map(|_| PerturbationConfig {
                    perturbations: Some(vec![]),
                })
                .collect(),
        }
    }
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
    pub fn mask_like(
        &self,
        kind: PerturbationType,
        block: usize,
        values: &Tensor,
    ) -> Result<Tensor> {
        let m = self.mask(kind, block, values.device(), values.dtype())?;
        let mut shape = vec![1usize; values.rank()];
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
