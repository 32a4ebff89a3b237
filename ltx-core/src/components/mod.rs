//! Port of `ltx_core/components/`: schedulers, guiders, diffusion steps, noisers, patchifiers;
//! plus torch's random generators, which the noisers draw from.

mod beta_distribution;
pub mod diffusion_steps;
pub mod guiders;
pub mod noisers;
pub mod patchifiers;
pub mod schedulers;
pub mod torch_random;
