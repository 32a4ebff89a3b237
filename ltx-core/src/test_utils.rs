//! Helpers shared by the unit tests.

use candle_core::Tensor;

/// `max |a − b|` over all elements (f32 view).
pub(crate) fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .and_then(|d| d.abs())
        .and_then(|d| d.max_all())
        .and_then(|d| d.to_dtype(candle_core::DType::F32))
        .and_then(|d| d.to_scalar::<f32>())
        .expect("comparable tensors")
}
