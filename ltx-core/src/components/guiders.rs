//! Port of `ltx_core/components/guiders.py`: classifier-free guidance and its variants, and the
//! multi-modal guider the pipelines use (CFG + STG + modality isolation + rescale), with
//! sigma-binned parameters.
//!
//! Arithmetic follows the reference's tensor/scalar order (Python floats multiply f32 tensors as
//! f32), and tensors broadcast like torch's (right-aligned), so the reference's shape quirks (a
//! `[B, 1]` projection coefficient against `[B, T, C]`) carry over.

use candle_core::{DType, Result as CResult, Tensor};

use crate::error::{bad_shape, Error, Result};

fn check_scale(name: &str, value: f64) -> Result<()> {
    if !value.is_finite() || value < 0.0 {
        return Err(Error::InvalidGuidance {
            name: name.to_string(),
            value,
            reason: "must be a finite number >= 0".into(),
        });
    }
    Ok(())
}

fn check_same_shape(cond: &Tensor, uncond: &Tensor) -> Result<()> {
    if cond.dims() != uncond.dims() {
        return Err(bad_shape(
            "unconditional prediction",
            uncond.dims(),
            format!("{:?} (the conditional prediction's shape)", cond.dims()),
        ));
    }
    Ok(())
}

/// A guider returns the correction added to the conditional prediction.
pub trait Guider {
    /// The guidance delta for `cond` and its unconditional / perturbed counterpart.
    fn delta(&mut self, cond: &Tensor, uncond: &Tensor) -> Result<Tensor>;
    /// Whether the guider changes anything (e.g. CFG with scale 1 does not).
    fn enabled(&self) -> bool;
}

/// `Σ(p·o) / (Σ(o²) + 1e-8)` per batch element, `[B, 1]`.
pub fn projection_coef(to_project: &Tensor, project_onto: &Tensor) -> Result<Tensor> {
    let b = to_project.dim(0)?;
    let p = to_project.reshape((b, ()))?;
    let o = project_onto.reshape((b, ()))?;
    let dot = (&p * &o)?.sum_keepdim(1)?;
    let sq = (o.sqr()?.sum_keepdim(1)? + 1e-8)?;
    Ok(dot.div(&sq)?)
}

/// Classifier-free guidance: `(scale − 1)·(cond − uncond)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CfgGuider {
    pub scale: f64,
}

impl CfgGuider {
    pub fn new(scale: f64) -> Result<Self> {
        check_scale("cfg_scale", scale)?;
        Ok(Self { scale })
    }
}

impl Guider for CfgGuider {
    fn delta(&mut self, cond: &Tensor, uncond: &Tensor) -> Result<Tensor> {
        check_same_shape(cond, uncond)?;
        Ok(((cond - uncond)? * (self.scale - 1.0))?)
    }

    fn enabled(&self) -> bool {
        self.scale != 1.0
    }
}

/// CFG* : the unconditional prediction is first rescaled by its projection coefficient onto the
/// conditional one, `(scale − 1)·(cond − c·uncond)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CfgStarRescalingGuider {
    pub scale: f64,
}

impl CfgStarRescalingGuider {
    pub fn new(scale: f64) -> Result<Self> {
        check_scale("cfg_scale", scale)?;
        Ok(Self { scale })
    }
}

impl Guider for CfgStarRescalingGuider {
    fn delta(&mut self, cond: &Tensor, uncond: &Tensor) -> Result<Tensor> {
        check_same_shape(cond, uncond)?;
        let rescaled = projection_coef(cond, uncond)?.broadcast_mul(uncond)?;
        Ok((cond.broadcast_sub(&rescaled)? * (self.scale - 1.0))?)
    }

    fn enabled(&self) -> bool {
        self.scale != 1.0
    }
}

/// Spatio-temporal guidance: `scale·(cond − perturbed)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StgGuider {
    pub scale: f64,
}

impl StgGuider {
    pub fn new(scale: f64) -> Result<Self> {
        check_scale("stg_scale", scale)?;
        Ok(Self { scale })
    }
}

impl Guider for StgGuider {
    fn delta(&mut self, cond: &Tensor, perturbed: &Tensor) -> Result<Tensor> {
        check_same_shape(cond, perturbed)?;
        Ok(((cond - perturbed)? * self.scale)?)
    }

    fn enabled(&self) -> bool {
        self.scale != 0.0
    }
}

/// Clips `guidance` to L2 norm `threshold` over its last three dims (the reference's
/// `norm(dim=[-1, -2, -3])`; for a 3-D tensor that is every dim).
fn clip_norm(guidance: &Tensor, threshold: f64) -> CResult<Tensor> {
    let rank = guidance.rank();
    let mut norm = guidance.sqr()?;
    for d in (rank.saturating_sub(3)..rank).rev() {
        norm = norm.sum_keepdim(d)?;
    }
    let norm = norm.sqrt()?;
    let t = Tensor::new(threshold, guidance.device())?.to_dtype(guidance.dtype())?;
    let factor = t.broadcast_div(&norm)?.clamp(f64::NEG_INFINITY, 1.0)?;
    guidance.broadcast_mul(&factor)
}

/// Splits `guidance` into parts parallel and orthogonal to `cond` and returns
/// `eta·parallel + orthogonal`.
fn apg_direction(guidance: &Tensor, cond: &Tensor, eta: f64) -> Result<Tensor> {
    let parallel = projection_coef(guidance, cond)?.broadcast_mul(cond)?;
    let orthogonal = guidance.broadcast_sub(&parallel)?;
    Ok(((parallel * eta)? + orthogonal)?)
}

/// Adaptive projected guidance: `(scale − 1)·(eta·g∥ + g⊥)` with `g = cond − uncond` (optionally
/// norm-clipped) split against `cond`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LtxApgGuider {
    pub scale: f64,
    pub eta: f64,
    pub norm_threshold: f64,
}

impl LtxApgGuider {
    pub fn new(scale: f64, eta: f64, norm_threshold: f64) -> Result<Self> {
        check_scale("apg_scale", scale)?;
        check_scale("eta", eta)?;
        check_scale("norm_threshold", norm_threshold)?;
        Ok(Self {
            scale,
            eta,
            norm_threshold,
        })
    }
}

impl Guider for LtxApgGuider {
    fn delta(&mut self, cond: &Tensor, uncond: &Tensor) -> Result<Tensor> {
        check_same_shape(cond, uncond)?;
        let mut g = (cond - uncond)?;
        if self.norm_threshold > 0.0 {
            g = clip_norm(&g, self.norm_threshold)?;
        }
        Ok((apg_direction(&g, cond, self.eta)? * (self.scale - 1.0))?)
    }

    fn enabled(&self) -> bool {
        self.scale != 1.0
    }
}

/// The older APG with a momentum running average of the guidance, `scale·(eta·g∥ + g⊥)`. It keeps
/// state across calls: use one instance per denoising run and modality.
#[derive(Clone, Debug)]
pub struct LegacyStatefulApgGuider {
    pub scale: f64,
    pub eta: f64,
    pub norm_threshold: f64,
    pub momentum: f64,
    running_avg: Option<Tensor>,
}

impl LegacyStatefulApgGuider {
    /// The reference's defaults: `norm_threshold` 5, `momentum` 0.
    pub fn new(scale: f64, eta: f64, norm_threshold: f64, momentum: f64) -> Result<Self> {
        check_scale("apg_scale", scale)?;
        check_scale("eta", eta)?;
        check_scale("norm_threshold", norm_threshold)?;
        if !momentum.is_finite() {
            return Err(Error::InvalidGuidance {
                name: "momentum".into(),
                value: momentum,
                reason: "must be finite".into(),
            });
        }
        Ok(Self {
            scale,
            eta,
            norm_threshold,
            momentum,
            running_avg: None,
        })
    }
}

impl Guider for LegacyStatefulApgGuider {
    fn delta(&mut self, cond: &Tensor, uncond: &Tensor) -> Result<Tensor> {
        check_same_shape(cond, uncond)?;
        let mut g = (cond - uncond)?;
        if self.momentum != 0.0 {
            let avg = match &self.running_avg {
                None => g.clone(),
                Some(prev) => ((prev * self.momentum)? + &g)?,
            };
            g = avg.clone();
            self.running_avg = Some(avg);
        }
        if self.norm_threshold > 0.0 {
            g = clip_norm(&g, self.norm_threshold)?;
        }
        Ok((apg_direction(&g, cond, self.eta)? * self.scale)?)
    }

    fn enabled(&self) -> bool {
        self.scale != 0.0
    }
}

/// Guidance settings of one modality.
#[derive(Clone, Debug, PartialEq)]
pub struct MultiModalGuiderParams {
    /// Classifier-free guidance scale (1: off).
    pub cfg_scale: f64,
    /// Spatio-temporal guidance scale (0: off).
    pub stg_scale: f64,
    /// Blocks whose self-attention STG skips.
    pub stg_blocks: Option<Vec<usize>>,
    /// Blend of the prediction rescaled to the conditional prediction's std (0: off).
    pub rescale_scale: f64,
    /// Guidance away from the prediction without the other modality (1: off).
    pub modality_scale: f64,
    /// Guide only every `skip_step + 1` steps (0: every step).
    pub skip_step: usize,
}

impl Default for MultiModalGuiderParams {
    fn default() -> Self {
        Self {
            cfg_scale: 1.0,
            stg_scale: 0.0,
            stg_blocks: Some(Vec::new()),
            rescale_scale: 0.0,
            modality_scale: 1.0,
            skip_step: 0,
        }
    }
}

impl MultiModalGuiderParams {
    /// Every scale finite and non-negative.
    pub fn validate(&self) -> Result<()> {
        check_scale("cfg_scale", self.cfg_scale)?;
        check_scale("stg_scale", self.stg_scale)?;
        check_scale("rescale_scale", self.rescale_scale)?;
        check_scale("modality_scale", self.modality_scale)?;
        Ok(())
    }
}

/// An unconditional prediction, or the scalar the reference passes for a skipped pass.
#[derive(Clone, Copy, Debug)]
pub enum Uncond<'a> {
    Tensor(&'a Tensor),
    Scalar(f64),
}

/// Python's `math.isclose(a, b)` with its defaults (relative 1e-9, absolute 0).
fn is_close(a: f64, b: f64) -> bool {
    a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

/// Unbiased standard deviation of all elements (accumulated in f64).
fn std_all(x: &Tensor) -> CResult<f64> {
    let v = x.to_dtype(DType::F64)?.flatten_all()?;
    let n = v.dim(0)? as f64;
    let mean = v.mean_all()?;
    let var = v
        .broadcast_sub(&mean)?
        .sqr()?
        .sum_all()?
        .to_scalar::<f64>()?
        / (n - 1.0);
    Ok(var.sqrt())
}

/// The pipelines' guider: one set of parameters (see [`MultiModalGuiderFactory`] for
/// sigma-dependent ones).
#[derive(Clone, Debug)]
pub struct MultiModalGuider {
    pub params: MultiModalGuiderParams,
    pub negative_context: Option<Tensor>,
}

impl MultiModalGuider {
    /// `cond + (cfg−1)(cond−u_text) + stg(cond−u_perturbed) + (mod−1)(cond−u_modality)`, then, with a
    /// rescale scale `r`, times `r·std(cond)/std(pred) + (1 − r)`.
    pub fn calculate(
        &self,
        cond: &Tensor,
        uncond_text: Uncond,
        uncond_perturbed: Uncond,
        uncond_modality: Uncond,
    ) -> Result<Tensor> {
        let diff = |u: Uncond| -> Result<Tensor> {
            match u {
                Uncond::Tensor(t) => {
                    check_same_shape(cond, t)?;
                    Ok((cond - t)?)
                }
                Uncond::Scalar(s) => Ok(cond.affine(1.0, -s)?),
            }
        };
        let p = &self.params;
        let mut pred = (cond + (diff(uncond_text)? * (p.cfg_scale - 1.0))?)?;
        pred = (pred + (diff(uncond_perturbed)? * p.stg_scale)?)?;
        pred = (pred + (diff(uncond_modality)? * (p.modality_scale - 1.0))?)?;
        if p.rescale_scale != 0.0 {
            // the reference's 0-d float32 arithmetic
            let factor = std_all(cond)? as f32 / std_all(&pred)? as f32;
            let factor = p.rescale_scale as f32 * factor + (1.0 - p.rescale_scale) as f32;
            pred = (pred * factor as f64)?;
        }
        Ok(pred)
    }

    pub fn do_unconditional_generation(&self) -> bool {
        !is_close(self.params.cfg_scale, 1.0)
    }

    pub fn do_perturbed_generation(&self) -> bool {
        !is_close(self.params.stg_scale, 0.0)
    }

    pub fn do_isolated_modality_generation(&self) -> bool {
        !is_close(self.params.modality_scale, 1.0)
    }

    /// With `skip_step = k > 0`, guidance runs on steps `0, k+1, 2(k+1), …` only.
    pub fn should_skip_step(&self, step: usize) -> bool {
        self.params.skip_step != 0 && step % (self.params.skip_step + 1) != 0
    }
}

/// Guider parameters binned by sigma: each entry `(upper bound, params)` applies to sigmas in
/// `(next lower bound, upper bound]`; a sigma above every bound uses the highest bin.
#[derive(Clone, Debug)]
pub struct MultiModalGuiderFactory {
    pub negative_context: Option<Tensor>,
    params_by_sigma: Vec<(f64, MultiModalGuiderParams)>,
}

impl MultiModalGuiderFactory {
    /// The same parameters for every sigma.
    pub fn constant(
        params: MultiModalGuiderParams,
        negative_context: Option<Tensor>,
    ) -> Result<Self> {
        Self::from_pairs(vec![(f64::INFINITY, params)], negative_context)
    }

    /// From `(sigma upper bound, params)` pairs (any order; NaN bounds are rejected).
    pub fn from_pairs(
        mut pairs: Vec<(f64, MultiModalGuiderParams)>,
        negative_context: Option<Tensor>,
    ) -> Result<Self> {
        if pairs.is_empty() {
            return Err(Error::InvalidInput(
                "guider schedule must not be empty".into(),
            ));
        }
        for (sigma, p) in &pairs {
            if sigma.is_nan() {
                return Err(Error::InvalidGuidance {
                    name: "sigma bound".into(),
                    value: *sigma,
                    reason: "must be a number".into(),
                });
            }
            p.validate()?;
        }
        pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
        Ok(Self {
            negative_context,
            params_by_sigma: pairs,
        })
    }

    /// The bins, highest bound first.
    pub fn bins(&self) -> &[(f64, MultiModalGuiderParams)] {
        &self.params_by_sigma
    }

    /// The parameters in effect at `sigma`: the bin with the smallest bound ≥ `sigma`.
    pub fn params(&self, sigma: f64) -> &MultiModalGuiderParams {
        self.params_by_sigma
            .iter()
            .rev()
            .find(|(k, _)| *k >= sigma)
            .map_or(&self.params_by_sigma[0].1, |(_, p)| p)
    }

    pub fn build_from_sigma(&self, sigma: f64) -> MultiModalGuider {
        MultiModalGuider {
            params: self.params(sigma).clone(),
            negative_context: self.negative_context.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn t(v: &[f32]) -> Tensor {
        Tensor::from_slice(v, (1, v.len()), &Device::Cpu).unwrap()
    }

    #[test]
    fn bad_scales_are_typed_errors() {
        for bad in [f64::NAN, -1.0, f64::INFINITY] {
            assert!(matches!(
                CfgGuider::new(bad),
                Err(Error::InvalidGuidance { .. })
            ));
            assert!(StgGuider::new(bad).is_err());
            assert!(CfgStarRescalingGuider::new(bad).is_err());
            assert!(LtxApgGuider::new(bad, 1.0, 0.0).is_err());
            assert!(LegacyStatefulApgGuider::new(2.0, 1.0, 5.0, bad).is_err() || bad == -1.0);
            let p = MultiModalGuiderParams {
                cfg_scale: bad,
                ..Default::default()
            };
            assert!(p.validate().is_err());
        }
        assert!(MultiModalGuiderFactory::from_pairs(vec![], None).is_err());
    }

    #[test]
    fn shape_mismatch_is_a_typed_error() {
        let mut g = CfgGuider::new(3.0).unwrap();
        let err = g.delta(&t(&[1.0, 2.0]), &t(&[1.0, 2.0, 3.0])).unwrap_err();
        assert!(matches!(err, Error::TensorShape { .. }), "{err}");
    }

    #[test]
    fn cfg_and_bins() -> Result<()> {
        let mut g = CfgGuider::new(3.0)?;
        let d = g.delta(&t(&[1.0, 2.0]), &t(&[0.0, 1.0]))?;
        assert_eq!(d.flatten_all()?.to_vec1::<f32>()?, [2.0, 2.0]);
        let p = |cfg: f64| MultiModalGuiderParams {
            cfg_scale: cfg,
            ..Default::default()
        };
        let f = MultiModalGuiderFactory::from_pairs(vec![(0.5, p(2.0)), (1.0, p(3.0))], None)?;
        assert_eq!(f.params(0.9).cfg_scale, 3.0);
        assert_eq!(f.params(0.5).cfg_scale, 2.0);
        assert_eq!(f.params(0.1).cfg_scale, 2.0);
        assert_eq!(f.params(2.0).cfg_scale, 3.0);
        let guider = f.build_from_sigma(0.2);
        assert!(guider.do_unconditional_generation() && !guider.do_perturbed_generation());
        let skip = MultiModalGuider {
            params: MultiModalGuiderParams {
                skip_step: 2,
                ..Default::default()
            },
            negative_context: None,
        };
        assert_eq!(
            (0..6).map(|s| skip.should_skip_step(s)).collect::<Vec<_>>(),
            [false, true, true, false, true, true]
        );
        Ok(())
    }
}
