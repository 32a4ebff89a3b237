//! Compute kernels for operations Candle lacks or runs slowly (no Python twin).

pub mod activations;
pub mod attention;
pub mod conv3d;
pub mod pixel_norm;
pub mod rotary;
pub mod rows;
pub mod vexp;

/// A raw pointer that parallel tasks may share, for writes to disjoint elements (each use site
/// documents why its ranges are disjoint).
#[derive(Clone, Copy)]
pub(crate) struct SendPtr<T>(pub(crate) *mut T);
// SAFETY: only used for writes to disjoint elements / reads of immutable data, as documented at use.
unsafe impl<T> Send for SendPtr<T> {}
unsafe impl<T> Sync for SendPtr<T> {}

impl<T> SendPtr<T> {
    /// Method access makes closures capture the whole (Send + Sync) wrapper, not the raw field.
    #[inline(always)]
    pub(crate) fn get(self) -> *mut T {
        self.0
    }
}
