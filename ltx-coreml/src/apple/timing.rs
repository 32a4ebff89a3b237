//! Benchmark helpers: the median of a set of timings, and (on Apple targets) timed predictions.

use std::time::Duration;

#[cfg(target_vendor = "apple")]
use std::time::Instant;

#[cfg(target_vendor = "apple")]
use super::{CoreMlModel, RunnerError};

/// Median of `times` (sorted in place); the mean of the two middle values for an even count, and
/// zero for an empty slice.
pub fn median(times: &mut [Duration]) -> Duration {
    times.sort_unstable();
    let n = times.len();
    match n {
        0 => Duration::ZERO,
        _ if n % 2 == 1 => times[n / 2],
        _ => (times[n / 2 - 1] + times[n / 2]) / 2,
    }
}

/// Runs `warmup` untimed and then `runs` timed predictions of `model`, returning the wall time of
/// each timed one. A timing covers the whole [`CoreMlModel::predict`] call: filling the input
/// array, the prediction, and converting the output to dense `f32`.
#[cfg(target_vendor = "apple")]
pub fn time_predictions(
    model: &CoreMlModel,
    input_name: &str,
    input: &[f32],
    shape: &[usize],
    output_name: &str,
    warmup: usize,
    runs: usize,
) -> Result<Vec<Duration>, RunnerError> {
    for _ in 0..warmup {
        model.predict(input_name, input, shape, output_name)?;
    }
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        model.predict(input_name, input, shape, output_name)?;
        times.push(start.elapsed());
    }
    Ok(times)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(values: &[u64]) -> Vec<Duration> {
        values.iter().map(|&v| Duration::from_millis(v)).collect()
    }

    #[test]
    fn median_of_odd_count() {
        assert_eq!(median(&mut ms(&[30, 10, 20])), Duration::from_millis(20));
    }

    #[test]
    fn median_of_even_count_is_mean_of_middle() {
        assert_eq!(
            median(&mut ms(&[40, 10, 20, 30])),
            Duration::from_millis(25)
        );
    }

    #[test]
    fn median_of_empty_and_single() {
        assert_eq!(median(&mut []), Duration::ZERO);
        assert_eq!(median(&mut ms(&[7])), Duration::from_millis(7));
    }
}
