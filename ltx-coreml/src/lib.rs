//! Core ML export of the video VAE and latent upsamplers (not yet implemented; see issue tracker).
