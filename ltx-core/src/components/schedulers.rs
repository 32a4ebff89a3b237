//! Port of `ltx_core/components/schedulers.py`: sigma schedules.
//!
//! The reference computes these with float32 torch tensors (and Python doubles for the scalars);
//! the arithmetic below follows the same types and operation order (e.g. `scalar / tensor` is
//! `tensor.reciprocal() * scalar` in torch). The committed fixtures match bit for bit except where
//! torch's vectorised `linspace` rounds an interior point differently (one f32 ulp, e.g. index 6 of
//! a 30-step schedule).

use crate::utils::linspace_f32;
use crate::{Error, Result};

/// Token counts anchoring the LTX-2 shift line (`BASE_SHIFT_ANCHOR`, `MAX_SHIFT_ANCHOR`).
pub const BASE_SHIFT_ANCHOR: usize = 1024;
pub const MAX_SHIFT_ANCHOR: usize = 4096;

fn check_steps(steps: usize) -> Result<()> {
    if steps == 0 {
        return Err(Error::InvalidInput(
            "a schedule needs at least one step".into(),
        ));
    }
    Ok(())
}

/// `LTX2Scheduler`: a token-count-dependent shift of `linspace(1, 0)`, optionally stretched so the
/// last non-zero sigma equals `terminal`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Ltx2Scheduler {
    pub max_shift: f64,
    pub base_shift: f64,
    pub stretch: bool,
    pub terminal: f64,
    /// Token count used when no latent is given (`default_number_of_tokens`).
    pub default_number_of_tokens: usize,
}

impl Default for Ltx2Scheduler {
    fn default() -> Self {
        Self {
            max_shift: 2.05,
            base_shift: 0.95,
            stretch: true,
            terminal: 0.1,
            default_number_of_tokens: MAX_SHIFT_ANCHOR,
        }
    }
}

impl Ltx2Scheduler {
    /// `steps + 1` sigmas from 1 to 0. `tokens` is the product of the latent's dims after the
    /// first two (the reference's `math.prod(latent.shape[2:])`); `None` uses the default.
    pub fn sigmas(&self, steps: usize, tokens: Option<usize>) -> Result<Vec<f32>> {
        check_steps(steps)?;
        if self.terminal.is_nan() || self.terminal >= 1.0 {
            return Err(Error::InvalidInput(format!(
                "terminal must be below 1, got {}",
                self.terminal
            )));
        }
        let tokens = tokens.unwrap_or(self.default_number_of_tokens) as f64;
        let (x1, x2) = (BASE_SHIFT_ANCHOR as f64, MAX_SHIFT_ANCHOR as f64);
        let mm = (self.max_shift - self.base_shift) / (x2 - x1);
        let b = self.base_shift - mm * x1;
        let shift = tokens * mm + b;
        // `exp(shift) / (exp(shift) + (1/s - 1))` on f32 tensors: Python scalars enter as f32,
        // `scalar / t` is `t.reciprocal() * scalar`.
        let e = shift.exp() as f32;
        let mut sigmas: Vec<f32> = linspace_f32(1.0, 0.0, steps + 1)
            .into_iter()
            .map(|s| {
                if s == 0.0 {
                    return 0.0;
                }
                let denom = e + (1.0 / s - 1.0);
                (1.0 / denom) * e
            })
            .collect();
        if self.stretch {
            let last = sigmas
                .iter()
                .rev()
                .find(|&&s| s != 0.0)
                .copied()
                .expect("the first sigma is non-zero");
            let scale = (1.0 - last) / (1.0 - self.terminal) as f32;
            for s in sigmas.iter_mut().filter(|s| **s != 0.0) {
                *s = 1.0 - (1.0 - *s) / scale;
            }
        }
        Ok(sigmas)
    }
}

/// `LinearQuadraticScheduler`: linear steps up to `threshold_noise`, then a quadratic curve.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinearQuadraticScheduler {
    pub threshold_noise: f64,
    /// Defaults to `steps / 2`.
    pub linear_steps: Option<usize>,
}

impl Default for LinearQuadraticScheduler {
    fn default() -> Self {
        Self {
            threshold_noise: 0.025,
            linear_steps: None,
        }
    }
}

impl LinearQuadraticScheduler {
    /// `steps + 1` sigmas from 1 to 0 (computed in f64 like the reference's Python floats, then
    /// rounded to f32).
    pub fn sigmas(&self, steps: usize) -> Result<Vec<f32>> {
        check_steps(steps)?;
        if steps == 1 {
            return Ok(vec![1.0, 0.0]);
        }
        let linear = self.linear_steps.unwrap_or(steps / 2);
        if linear == 0 || linear > steps {
            return Err(Error::InvalidInput(format!(
                "linear_steps must be in 1..={steps}, got {linear}"
            )));
        }
        let t = self.threshold_noise;
        let mut schedule: Vec<f64> = (0..linear).map(|i| i as f64 * t / linear as f64).collect();
        let diff = linear as f64 - t * steps as f64;
        let quadratic = steps - linear;
        if quadratic > 0 {
            let q2 = (quadratic * quadratic) as f64;
            let quadratic_coef = diff / (linear as f64 * q2);
            let linear_coef = t / linear as f64 - 2.0 * diff / q2;
            let constant = quadratic_coef * (linear * linear) as f64;
            schedule.extend((linear..steps).map(|i| {
                let i = i as f64;
                quadratic_coef * (i * i) + linear_coef * i + constant
            }));
        }
        schedule.push(1.0);
        Ok(schedule.into_iter().map(|x| (1.0 - x) as f32).collect())
    }
}

/// `BetaScheduler` (arXiv 2407.12173): sigmas at Beta(α, β) quantiles of a 10000-entry table of
/// `flux_time_shift(2.37, 1, t)`. Identical quantile indices are merged (keeping the first), so
/// the schedule can have fewer than `steps + 1` values.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BetaScheduler {
    pub alpha: f64,
    pub beta: f64,
}

impl Default for BetaScheduler {
    fn default() -> Self {
        Self {
            alpha: 0.6,
            beta: 0.6,
        }
    }
}

impl BetaScheduler {
    pub const SHIFT: f64 = 2.37;
    pub const TIMESTEPS_LENGTH: usize = 10_000;

    pub fn sigmas(&self, steps: usize) -> Result<Vec<f32>> {
        check_steps(steps)?;
        for (name, v) in [("alpha", self.alpha), ("beta", self.beta)] {
            if !(v.is_finite() && v > 0.0) {
                return Err(Error::InvalidInput(format!(
                    "beta scheduler {name} {v} must be a positive number"
                )));
            }
        }
        let table = beta_sigma_table();
        let last = (table.len() - 1) as f64;
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::with_capacity(steps + 1);
        for i in 0..steps {
            // numpy: 1 − linspace(0, 1, steps, endpoint=False)
            let p = 1.0 - i as f64 * (1.0 / steps as f64);
            let q = super::beta_distribution::beta_ppf(p, self.alpha, self.beta);
            let idx = (q * last).round_ties_even() as usize;
            if seen.insert(idx) {
                out.push(table[idx.min(table.len() - 1)]);
            }
        }
        out.push(0.0);
        Ok(out)
    }
}

/// The 10000 sigmas `flux_time_shift(2.37, 1, t)`, `t = k / 10000` for `k = 1..=10000`, in the
/// reference's f32 tensor arithmetic: `e^μ · (1 / (e^μ + (1/t − 1)))` with `e^μ` rounded to f32.
pub fn beta_sigma_table() -> &'static [f32] {
    static TABLE: std::sync::OnceLock<Vec<f32>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let e = BetaScheduler::SHIFT.exp() as f32;
        let n = BetaScheduler::TIMESTEPS_LENGTH;
        (1..=n)
            .map(|k| {
                let t = k as f32 / n as f32;
                let x = 1.0f32 / t - 1.0;
                (1.0f32 / (e + x)) * e
            })
            .collect()
    })
}

/// `scipy.stats.beta.ppf(p, a, b)`, exposed for the parity fixtures.
pub fn beta_ppf(p: f64, a: f64, b: f64) -> f64 {
    super::beta_distribution::beta_ppf(p, a, b)
}

/// `flux_time_shift(mu, sigma, t) = e^mu / (e^mu + (1/t − 1)^sigma)` in f64.
pub fn flux_time_shift(mu: f64, sigma: f64, t: f64) -> f64 {
    mu.exp() / (mu.exp() + (1.0 / t - 1.0).powf(sigma))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_steps_and_bad_parameters_are_errors() {
        assert!(Ltx2Scheduler::default().sigmas(0, None).is_err());
        assert!(BetaScheduler::default().sigmas(0).is_err());
        for bad in [0.0, -1.0, f64::NAN] {
            let b = BetaScheduler {
                alpha: bad,
                ..Default::default()
            };
            assert!(b.sigmas(8).is_err());
        }
        assert!(LinearQuadraticScheduler::default().sigmas(0).is_err());
        let bad = LinearQuadraticScheduler {
            linear_steps: Some(9),
            ..Default::default()
        };
        assert!(bad.sigmas(8).is_err());
        let term = Ltx2Scheduler {
            terminal: 1.0,
            ..Default::default()
        };
        assert!(term.sigmas(4, None).is_err());
    }

    #[test]
    fn shapes_and_endpoints() {
        let s = Ltx2Scheduler::default().sigmas(8, None).unwrap();
        assert_eq!(s.len(), 9);
        assert_eq!(*s.last().unwrap(), 0.0);
        // Stretching puts the last non-zero sigma at the terminal value (up to f32 rounding).
        assert!((s[7] - 0.1).abs() < 1e-6, "{s:?}");
        let lq = LinearQuadraticScheduler::default().sigmas(8).unwrap();
        assert_eq!((lq[0], lq[8]), (1.0, 0.0));
    }
}
