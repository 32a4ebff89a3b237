//! Port of `ltx_core/model/transformer/` (so far: the timestep embeddings the VAE decoder uses).

pub mod timestep_embedding;
