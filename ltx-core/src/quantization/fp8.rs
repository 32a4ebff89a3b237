//! F8E4M3 (`float8_e4m3fn`) conversions with torch's rounding: round to nearest even, subnormals
//! below 2⁻⁶, and NaN — not saturation — past 464 (the half-way point beyond the largest finite
//! value, 448). On the CPU Candle's own casts are unusable here: fp32 → fp8 saturates (465 → 448)
//! and some fp8 / bf16 conversions never return (seen with Candle 0.11 / float8 0.7), so both
//! directions go through these functions (a 256-entry table for widening).

use candle_core::{DType, Device, Result, Tensor};

/// torch's `c10::detail::fp8e4m3fn_from_fp32_value`: the E4M3FN bits of `f`.
pub fn fp8_e4m3fn_bits(f: f32) -> u8 {
    // 480.0: from here on the rounded value has the all-ones pattern, which is NaN in E4M3FN
    const FP8_MAX: u32 = 1087 << 20;
    // 2^14 as f32: adding it pushes a subnormal's bits into the low mantissa, rounded by the FPU
    const DENORM_MASK: u32 = 141 << 23;
    let mut bits = f.to_bits();
    let sign = bits & 0x8000_0000;
    bits ^= sign;
    let magnitude = if bits >= FP8_MAX {
        0x7f
    } else if bits < (121 << 23) {
        let sum = (f32::from_bits(bits) + f32::from_bits(DENORM_MASK)).to_bits();
        sum.wrapping_sub(DENORM_MASK) as u8
    } else {
        let mant_odd = (bits >> 20) & 1;
        let rounded = bits
            .wrapping_add(((7u32).wrapping_sub(127) << 23).wrapping_add(0x7ffff))
            .wrapping_add(mant_odd);
        (rounded >> 20) as u8
    };
    magnitude | (sign >> 24) as u8
}

/// `t` narrowed to F8E4M3 (on `t`'s device) with torch's rounding; an F8E4M3 tensor is returned as is.
pub fn narrow(t: &Tensor) -> Result<Tensor> {
    if t.dtype() == DType::F8E4M3 {
        return Ok(t.clone());
    }
    let values = t
        .to_device(&Device::Cpu)?
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    let bits: Vec<u8> = values.into_iter().map(fp8_e4m3fn_bits).collect();
    Tensor::from_raw_buffer(&bits, DType::F8E4M3, t.dims(), &Device::Cpu)?.to_device(t.device())
}

/// The f32 value of E4M3FN bits (NaN for `0x7f` / `0xff`).
pub fn fp8_e4m3fn_value(bits: u8) -> f32 {
    let sign = if bits & 0x80 != 0 { -1.0 } else { 1.0 };
    let (exp, mant) = ((bits >> 3) & 0xf, bits & 0x7);
    if exp == 0xf && mant == 0x7 {
        return f32::NAN;
    }
    let magnitude = if exp == 0 {
        mant as f32 * 2f32.powi(-9)
    } else {
        (1.0 + mant as f32 / 8.0) * 2f32.powi(exp as i32 - 7)
    };
    sign * magnitude
}

fn table() -> &'static [f32; 256] {
    static TABLE: std::sync::OnceLock<[f32; 256]> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| std::array::from_fn(|b| fp8_e4m3fn_value(b as u8)))
}

/// `t` (any float dtype, F8E4M3 included) in `dtype`; fp8 on the CPU widens through the table
/// (other devices use their own cast).
pub fn widen(t: &Tensor, dtype: DType) -> Result<Tensor> {
    if t.dtype() != DType::F8E4M3 || dtype == DType::F8E4M3 {
        return t.to_dtype(dtype);
    }
    if !t.device().is_cpu() {
        return t.to_dtype(DType::F32)?.to_dtype(dtype);
    }
    use rayon::prelude::*;
    let table = table();
    let stored = t.flatten_all()?.to_vec1::<float8::F8E4M3>()?;
    let values: Vec<f32> = stored
        .par_iter()
        .with_min_len(1 << 16)
        .map(|v| table[v.to_bits() as usize])
        .collect();
    Tensor::from_vec(values, t.dims(), t.device())?.to_dtype(dtype)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pattern_round_trips() {
        for b in 0..=255u8 {
            let v = fp8_e4m3fn_value(b);
            if v.is_nan() {
                assert_eq!(b & 0x7f, 0x7f);
            } else {
                assert_eq!(fp8_e4m3fn_bits(v), b, "{b:#x} = {v}");
            }
        }
        assert_eq!(fp8_e4m3fn_value(0x7e), 448.0);
        assert_eq!(fp8_e4m3fn_value(0x01), 2f32.powi(-9));
    }

    #[test]
    fn rounding_matches_torch() {
        // torch.tensor([...]).to(torch.float8_e4m3fn) bit patterns
        for (f, bits) in [
            (448.0f32, 0x7e),
            (464.0, 0x7e),
            (465.0, 0x7f),
            (500.0, 0x7f),
            (-465.0, 0xff),
            (f32::INFINITY, 0x7f),
            (0.0, 0x00),
            (-0.0, 0x80),
            (1.0, 0x38),
            (1.0625, 0x38),
            (1.1875, 0x3a),
            (2f32.powi(-9), 0x01),
            (2f32.powi(-10), 0x00),
            (1.5 * 2f32.powi(-9), 0x02),
            (2f32.powi(-6), 0x08),
        ] {
            assert_eq!(fp8_e4m3fn_bits(f), bits, "{f}");
        }
        let t = Tensor::new(&[1.0f32, 470.0, -3.25], &Device::Cpu)
            .unwrap()
            .to_dtype(DType::BF16)
            .unwrap();
        let n = narrow(&t).unwrap();
        assert_eq!(n.dtype(), DType::F8E4M3);
        let back = widen(&n, DType::BF16)
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap();
        let v = back.to_vec1::<f32>().unwrap();
        assert_eq!((v[0], v[1].is_nan(), v[2]), (1.0, true, -3.25));
    }
}
