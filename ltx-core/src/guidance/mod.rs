//! Port of `ltx_core/guidance/`.

pub mod perturbations;
