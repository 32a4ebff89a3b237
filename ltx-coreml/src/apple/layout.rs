//! Strided ⇄ dense copies of multi-array buffers, and f16 bit conversion.
//!
//! Pure `std` code with no Core ML dependency, so it builds and is tested on every host. The
//! Core ML runtime (`runtime.rs`) hands these functions the raw bytes of an `MLMultiArray`
//! together with its shape and strides (both counted in elements, as Core ML reports them).

use std::fmt;

/// Element type of a multi-array buffer that the runtime can convert to and from `f32`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScalarType {
    F16,
    F32,
    F64,
}

impl ScalarType {
    /// Size of one element in bytes.
    pub fn size(self) -> usize {
        match self {
            Self::F16 => 2,
            Self::F32 => 4,
            Self::F64 => 8,
        }
    }
}

/// A buffer, shape or stride list that does not describe a valid array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayoutError {
    /// `shape` and `strides` have different ranks.
    RankMismatch {
        shape_rank: usize,
        strides_rank: usize,
    },
    /// A dimension or stride reported as a negative number.
    Negative { what: &'static str, value: isize },
    /// Element or byte counts do not fit in `usize`.
    Overflow { shape: Vec<usize> },
    /// The buffer is smaller than the furthest element the strides address.
    BufferTooSmall {
        needed_bytes: usize,
        available_bytes: usize,
    },
    /// The number of values does not match the product of the shape.
    LengthMismatch {
        shape: Vec<usize>,
        expected: usize,
        got: usize,
    },
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::RankMismatch {
                shape_rank,
                strides_rank,
            } => write!(
                f,
                "shape has rank {shape_rank} but strides have rank {strides_rank}"
            ),
            Self::Negative { what, value } => write!(f, "negative {what} value {value}"),
            Self::Overflow { shape } => write!(f, "element count of shape {shape:?} overflows"),
            Self::BufferTooSmall {
                needed_bytes,
                available_bytes,
            } => write!(
                f,
                "buffer holds {available_bytes} bytes but the layout addresses {needed_bytes}"
            ),
            Self::LengthMismatch {
                shape,
                expected,
                got,
            } => write!(
                f,
                "shape {shape:?} holds {expected} elements but {got} values were given"
            ),
        }
    }
}

impl std::error::Error for LayoutError {}

/// Converts the signed integers Core ML reports (`NSInteger`) into dimensions or strides.
pub fn to_usize_dims(values: &[isize], what: &'static str) -> Result<Vec<usize>, LayoutError> {
    values
        .iter()
        .map(|&value| usize::try_from(value).map_err(|_| LayoutError::Negative { what, value }))
        .collect()
}

/// Number of elements of `shape` (1 for rank 0), with overflow checking.
pub fn element_count(shape: &[usize]) -> Result<usize, LayoutError> {
    shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| LayoutError::Overflow {
            shape: shape.to_vec(),
        })
}

/// Strides, in elements, of a dense row-major (C order) array of `shape`.
pub fn row_major_strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![1usize; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        strides[d] = strides[d + 1].saturating_mul(shape[d + 1]);
    }
    strides
}

/// Number of elements a buffer must hold for `shape` laid out with `strides`: one past the largest
/// addressed offset, or 0 when the array is empty.
pub fn strided_span(shape: &[usize], strides: &[usize]) -> Result<usize, LayoutError> {
    if shape.len() != strides.len() {
        return Err(LayoutError::RankMismatch {
            shape_rank: shape.len(),
            strides_rank: strides.len(),
        });
    }
    if shape.contains(&0) {
        return Ok(0);
    }
    let overflow = || LayoutError::Overflow {
        shape: shape.to_vec(),
    };
    shape
        .iter()
        .zip(strides)
        .try_fold(0usize, |acc, (&dim, &stride)| {
            (dim - 1).checked_mul(stride)?.checked_add(acc)
        })
        .and_then(|last| last.checked_add(1))
        .ok_or_else(overflow)
}

/// Checks that `bytes` can hold `shape`/`strides` elements of `scalar`; returns the element count.
fn check_buffer(
    len_bytes: usize,
    scalar: ScalarType,
    shape: &[usize],
    strides: &[usize],
) -> Result<usize, LayoutError> {
    let count = element_count(shape)?;
    let needed_bytes = strided_span(shape, strides)?
        .checked_mul(scalar.size())
        .ok_or_else(|| LayoutError::Overflow {
            shape: shape.to_vec(),
        })?;
    if len_bytes < needed_bytes {
        return Err(LayoutError::BufferTooSmall {
            needed_bytes,
            available_bytes: len_bytes,
        });
    }
    Ok(count)
}

/// Calls `visit` with the element offset of every index of `shape`, in row-major index order.
///
/// The caller must have validated the layout with [`strided_span`], so no offset overflows.
fn for_each_offset<F>(shape: &[usize], strides: &[usize], mut visit: F) -> Result<(), LayoutError>
where
    F: FnMut(usize) -> Result<(), LayoutError>,
{
    if shape.contains(&0) {
        return Ok(());
    }
    let (Some((&inner_len, outer_shape)), Some((&inner_stride, outer_strides))) =
        (shape.split_last(), strides.split_last())
    else {
        // Rank 0: a single scalar at offset 0.
        return visit(0);
    };
    let mut index = vec![0usize; outer_shape.len()];
    let mut base = 0usize;
    loop {
        for i in 0..inner_len {
            visit(base + i * inner_stride)?;
        }
        // Advance the outer index like an odometer, last outer axis fastest.
        let mut axis = outer_shape.len();
        loop {
            if axis == 0 {
                return Ok(());
            }
            axis -= 1;
            index[axis] += 1;
            // Wrapping arithmetic: a size-1 axis may carry any stride, and stepping one past the
            // end of an axis is undone on the next line, so only in-range offsets are visited.
            base = base.wrapping_add(outer_strides[axis]);
            if index[axis] < outer_shape[axis] {
                break;
            }
            base = base.wrapping_sub(outer_strides[axis].wrapping_mul(outer_shape[axis]));
            index[axis] = 0;
        }
    }
}

fn element_bytes<const N: usize>(bytes: &[u8], offset: usize) -> Result<[u8; N], LayoutError> {
    let start = offset * N;
    bytes
        .get(start..start + N)
        .and_then(|chunk| <[u8; N]>::try_from(chunk).ok())
        .ok_or(LayoutError::BufferTooSmall {
            needed_bytes: start + N,
            available_bytes: bytes.len(),
        })
}

fn gather_typed<const N: usize>(
    bytes: &[u8],
    shape: &[usize],
    strides: &[usize],
    count: usize,
    decode: impl Fn([u8; N]) -> f32,
) -> Result<Vec<f32>, LayoutError> {
    let mut out = Vec::with_capacity(count);
    for_each_offset(shape, strides, |offset| {
        out.push(decode(element_bytes::<N>(bytes, offset)?));
        Ok(())
    })?;
    Ok(out)
}

/// Reads a strided buffer of `scalar` elements (native byte order) into a dense row-major `f32`
/// vector of `element_count(shape)` values.
pub fn gather_to_f32(
    bytes: &[u8],
    scalar: ScalarType,
    shape: &[usize],
    strides: &[usize],
) -> Result<Vec<f32>, LayoutError> {
    let count = check_buffer(bytes.len(), scalar, shape, strides)?;
    match scalar {
        ScalarType::F16 => gather_typed::<2>(bytes, shape, strides, count, |b| {
            f16_bits_to_f32(u16::from_ne_bytes(b))
        }),
        ScalarType::F32 => gather_typed::<4>(bytes, shape, strides, count, f32::from_ne_bytes),
        ScalarType::F64 => gather_typed::<8>(bytes, shape, strides, count, |b| {
            f64::from_ne_bytes(b) as f32
        }),
    }
}

fn scatter_typed<const N: usize>(
    values: &[f32],
    shape: &[usize],
    strides: &[usize],
    bytes: &mut [u8],
    encode: impl Fn(f32) -> [u8; N],
) -> Result<(), LayoutError> {
    let available_bytes = bytes.len();
    let mut next = values.iter();
    for_each_offset(shape, strides, |offset| {
        let start = offset * N;
        let slot = bytes
            .get_mut(start..start + N)
            .ok_or(LayoutError::BufferTooSmall {
                needed_bytes: start + N,
                available_bytes,
            })?;
        // `values.len()` was checked against the shape, so the iterator cannot run dry.
        let value = next.next().copied().unwrap_or(0.0);
        slot.copy_from_slice(&encode(value));
        Ok(())
    })
}

/// Writes dense row-major `values` into a strided buffer of `scalar` elements (native byte order).
/// Elements of `bytes` not addressed by the layout are left untouched.
pub fn scatter_from_f32(
    values: &[f32],
    scalar: ScalarType,
    shape: &[usize],
    strides: &[usize],
    bytes: &mut [u8],
) -> Result<(), LayoutError> {
    let count = check_buffer(bytes.len(), scalar, shape, strides)?;
    if values.len() != count {
        return Err(LayoutError::LengthMismatch {
            shape: shape.to_vec(),
            expected: count,
            got: values.len(),
        });
    }
    match scalar {
        ScalarType::F16 => scatter_typed::<2>(values, shape, strides, bytes, |v| {
            f32_to_f16_bits(v).to_ne_bytes()
        }),
        ScalarType::F32 => scatter_typed::<4>(values, shape, strides, bytes, f32::to_ne_bytes),
        ScalarType::F64 => scatter_typed::<8>(values, shape, strides, bytes, |v| {
            f64::from(v).to_ne_bytes()
        }),
    }
}

/// Widens IEEE 754 binary16 bits to `f32` (exact).
pub fn f16_bits_to_f32(bits: u16) -> f32 {
    let sign = u32::from(bits & 0x8000) << 16;
    let exponent = u32::from((bits >> 10) & 0x1f);
    let mantissa = u32::from(bits & 0x03ff);
    match (exponent, mantissa) {
        (0, 0) => f32::from_bits(sign),
        (0, _) => {
            // Subnormal: mantissa · 2^-24, exactly representable in f32.
            let magnitude = mantissa as f32 * f32::from_bits(0x3380_0000);
            if sign == 0 {
                magnitude
            } else {
                -magnitude
            }
        }
        (0x1f, _) => f32::from_bits(sign | 0x7f80_0000 | (mantissa << 13)),
        _ => f32::from_bits(sign | ((exponent + 112) << 23) | (mantissa << 13)),
    }
}

/// Narrows `f32` to IEEE 754 binary16 bits, rounding to nearest with ties to even; overflow gives
/// infinity and NaN stays NaN.
pub fn f32_to_f16_bits(value: f32) -> u16 {
    let bits = value.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exponent = ((bits >> 23) & 0xff) as i32;
    let mantissa = bits & 0x007f_ffff;
    if exponent == 0xff {
        let nan = if mantissa != 0 {
            0x0200 | (mantissa >> 13) as u16
        } else {
            0
        };
        return sign | 0x7c00 | nan;
    }
    // Exponent re-biased for binary16.
    let half_exponent = exponent - 127 + 15;
    if half_exponent >= 0x1f {
        return sign | 0x7c00;
    }
    let round = |kept: u32, dropped: u32, halfway: u32| -> u32 {
        if dropped > halfway || (dropped == halfway && kept & 1 == 1) {
            kept + 1
        } else {
            kept
        }
    };
    if half_exponent <= 0 {
        // Below 2^-25 everything rounds to zero (2^-25 itself is a tie that goes to even zero).
        if half_exponent < -10 {
            return sign;
        }
        let full = mantissa | 0x0080_0000;
        let shift = (14 - half_exponent) as u32;
        let kept = full >> shift;
        let dropped = full & ((1 << shift) - 1);
        // A carry out of the subnormal range lands exactly on the smallest normal.
        return sign | round(kept, dropped, 1 << (shift - 1)) as u16;
    }
    let kept = ((half_exponent as u32) << 10) | (mantissa >> 13);
    // A carry into the exponent field is correct, including the step up to infinity.
    sign | round(kept, mantissa & 0x1fff, 0x1000) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f32_bytes(values: &[f32]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_ne_bytes()).collect()
    }

    #[test]
    fn row_major_strides_and_span() {
        assert_eq!(row_major_strides(&[2, 3, 4]), vec![12, 4, 1]);
        assert_eq!(row_major_strides(&[]), Vec::<usize>::new());
        assert_eq!(strided_span(&[2, 3, 4], &[12, 4, 1]), Ok(24));
        assert_eq!(strided_span(&[2, 3], &[8, 1]), Ok(11));
        assert_eq!(strided_span(&[2, 0, 3], &[8, 4, 1]), Ok(0));
        assert_eq!(strided_span(&[], &[]), Ok(1));
        assert!(matches!(
            strided_span(&[2, 3], &[1]),
            Err(LayoutError::RankMismatch { .. })
        ));
        assert!(matches!(
            strided_span(&[usize::MAX, 2], &[2, 1]),
            Err(LayoutError::Overflow { .. })
        ));
    }

    #[test]
    fn dense_f32_round_trips() {
        let values: Vec<f32> = (0..24).map(|i| i as f32).collect();
        let shape = [2, 3, 4];
        let strides = row_major_strides(&shape);
        let out = gather_to_f32(&f32_bytes(&values), ScalarType::F32, &shape, &strides).unwrap();
        assert_eq!(out, values);
    }

    #[test]
    fn padded_rows_are_skipped() {
        // A 2×3 array whose rows are padded to 4 elements (stride 4), padding marked -1.
        let buffer = f32_bytes(&[0.0, 1.0, 2.0, -1.0, 3.0, 4.0, 5.0, -1.0]);
        let out = gather_to_f32(&buffer, ScalarType::F32, &[2, 3], &[4, 1]).unwrap();
        assert_eq!(out, vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
    }

    #[test]
    fn transposed_layout_is_made_row_major() {
        // Storage is column-major for logical shape [2, 3]: element (i, j) at j * 2 + i.
        let buffer = f32_bytes(&[0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
        let out = gather_to_f32(&buffer, ScalarType::F32, &[2, 3], &[1, 2]).unwrap();
        assert_eq!(out, vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
    }

    #[test]
    fn four_d_strided_gather_matches_index_formula() {
        let shape = [2, 3, 2, 5];
        let strides = [64, 16, 8, 1]; // padded channel-last-ish layout
        let span = strided_span(&shape, &strides).unwrap();
        let storage: Vec<f32> = (0..span).map(|i| i as f32).collect();
        let out = gather_to_f32(&f32_bytes(&storage), ScalarType::F32, &shape, &strides).unwrap();
        let mut expected = Vec::new();
        for a in 0..2 {
            for b in 0..3 {
                for c in 0..2 {
                    for d in 0..5 {
                        expected.push((a * 64 + b * 16 + c * 8 + d) as f32);
                    }
                }
            }
        }
        assert_eq!(out, expected);
    }

    #[test]
    fn f16_and_f64_buffers_convert() {
        let halves: Vec<u8> = [1.0f32, -2.5, 0.5]
            .iter()
            .flat_map(|&v| f32_to_f16_bits(v).to_ne_bytes())
            .collect();
        let out = gather_to_f32(&halves, ScalarType::F16, &[3], &[1]).unwrap();
        assert_eq!(out, vec![1.0, -2.5, 0.5]);

        let doubles: Vec<u8> = [1.5f64, -3.0]
            .iter()
            .flat_map(|v| v.to_ne_bytes())
            .collect();
        let out = gather_to_f32(&doubles, ScalarType::F64, &[2], &[1]).unwrap();
        assert_eq!(out, vec![1.5, -3.0]);
    }

    #[test]
    fn short_buffer_is_an_error() {
        let buffer = f32_bytes(&[0.0; 5]);
        let err = gather_to_f32(&buffer, ScalarType::F32, &[2, 3], &[3, 1]).unwrap_err();
        assert_eq!(
            err,
            LayoutError::BufferTooSmall {
                needed_bytes: 24,
                available_bytes: 20
            }
        );
    }

    #[test]
    fn scatter_then_gather_round_trips_with_padding() {
        let values: Vec<f32> = (0..6).map(|i| i as f32 * 0.25).collect();
        let (shape, strides) = ([2, 3], [5, 1]);
        for scalar in [ScalarType::F16, ScalarType::F32, ScalarType::F64] {
            let mut bytes = vec![0u8; strided_span(&shape, &strides).unwrap() * scalar.size()];
            scatter_from_f32(&values, scalar, &shape, &strides, &mut bytes).unwrap();
            let back = gather_to_f32(&bytes, scalar, &shape, &strides).unwrap();
            assert_eq!(back, values, "{scalar:?}");
        }
    }

    #[test]
    fn scatter_checks_value_count() {
        let mut bytes = vec![0u8; 24];
        let err = scatter_from_f32(&[1.0; 5], ScalarType::F32, &[2, 3], &[3, 1], &mut bytes);
        assert!(matches!(
            err,
            Err(LayoutError::LengthMismatch {
                expected: 6,
                got: 5,
                ..
            })
        ));
    }

    #[test]
    fn negative_dims_are_rejected() {
        assert_eq!(to_usize_dims(&[1, 4], "stride"), Ok(vec![1, 4]));
        assert_eq!(
            to_usize_dims(&[1, -4], "stride"),
            Err(LayoutError::Negative {
                what: "stride",
                value: -4
            })
        );
    }

    #[test]
    fn rank_zero_is_one_scalar() {
        let out = gather_to_f32(&f32_bytes(&[7.0]), ScalarType::F32, &[], &[]).unwrap();
        assert_eq!(out, vec![7.0]);
    }

    #[test]
    fn f16_round_trips_every_finite_value() {
        for bits in 0..=u16::MAX {
            let is_nan = bits & 0x7c00 == 0x7c00 && bits & 0x03ff != 0;
            let wide = f16_bits_to_f32(bits);
            if is_nan {
                assert!(wide.is_nan());
                assert!(f16_bits_to_f32(f32_to_f16_bits(wide)).is_nan());
            } else {
                assert_eq!(f32_to_f16_bits(wide), bits, "bits {bits:#06x}");
            }
        }
    }

    #[test]
    fn f16_rounding_edges() {
        // Definitional binary16 encodings.
        assert_eq!(f32_to_f16_bits(1.0), 0x3c00);
        assert_eq!(f32_to_f16_bits(65504.0), 0x7bff);
        assert_eq!(f32_to_f16_bits(65520.0), 0x7c00); // halfway to 2^16 rounds up to infinity
        assert_eq!(f32_to_f16_bits(1e10), 0x7c00);
        assert_eq!(f32_to_f16_bits(-0.0), 0x8000);
        assert_eq!(f32_to_f16_bits(2f32.powi(-24)), 0x0001);
        assert_eq!(f32_to_f16_bits(2f32.powi(-25)), 0x0000); // tie to even
        assert_eq!(f32_to_f16_bits(2f32.powi(-25) * 1.5), 0x0001);
        // Smallest normal.
        assert_eq!(f32_to_f16_bits(2f32.powi(-14)), 0x0400);
        // 1 + 2^-11 is halfway between 1 and 1 + 2^-10: ties to the even mantissa (1.0).
        assert_eq!(f32_to_f16_bits(1.0 + 2f32.powi(-11)), 0x3c00);
        assert_eq!(f32_to_f16_bits(1.0 + 3.0 * 2f32.powi(-11)), 0x3c02);
    }
}
