//! Port of the numeric helpers of `ltx_core/utils.py` (and torch behaviours the ports rely on).

/// `torch.linspace(start, end, steps)` in f32, with torch's two-sided CPU formula (values past the
/// midpoint are computed from the end). Short ranges match torch bit for bit; in long ones torch's
/// vectorised kernel can round an interior point one ulp differently.
pub fn linspace_f32(start: f32, end: f32, steps: usize) -> Vec<f32> {
    match steps {
        0 => Vec::new(),
        1 => vec![start],
        _ => {
            let step = (end - start) / (steps - 1) as f32;
            let half = steps / 2;
            (0..steps)
                .map(|i| {
                    if i < half {
                        start + step * i as f32
                    } else {
                        end - step * (steps - i - 1) as f32
                    }
                })
                .collect()
        }
    }
}
