//! Port of `ltx_core/guidance/perturbations.py`.
