//! Port of `ltx_core/components/diffusion_steps.py`.
