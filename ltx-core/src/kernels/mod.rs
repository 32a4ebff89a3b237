//! Compute kernels for operations Candle lacks or runs slowly (no Python twin).

pub mod conv3d;
pub mod pixel_norm;
