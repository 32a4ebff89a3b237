//! Core ML compute-unit choice (`MLComputeUnits`) as a parseable enum. Pure `std`.

use std::fmt;
use std::str::FromStr;

/// Which processors Core ML may schedule a model on (`MLModelConfiguration.computeUnits`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ComputeUnits {
    CpuOnly,
    CpuAndGpu,
    CpuAndNeuralEngine,
    All,
}

impl ComputeUnits {
    /// Every choice, in the order a benchmark sweeps them.
    pub const ALL: [ComputeUnits; 4] = [
        Self::CpuOnly,
        Self::CpuAndGpu,
        Self::CpuAndNeuralEngine,
        Self::All,
    ];

    /// The name used on the command line and in reports (coremltools' `ComputeUnit` spelling).
    pub fn name(self) -> &'static str {
        match self {
            Self::CpuOnly => "CPU_ONLY",
            Self::CpuAndGpu => "CPU_AND_GPU",
            Self::CpuAndNeuralEngine => "CPU_AND_NE",
            Self::All => "ALL",
        }
    }
}

impl fmt::Display for ComputeUnits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A compute-units name that is not one of `CPU_ONLY`, `CPU_AND_GPU`, `CPU_AND_NE`, `ALL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseComputeUnitsError {
    pub found: String,
}

impl fmt::Display for ParseComputeUnitsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown compute units `{}` (expected CPU_ONLY, CPU_AND_GPU, CPU_AND_NE or ALL)",
            self.found
        )
    }
}

impl std::error::Error for ParseComputeUnitsError {}

impl FromStr for ComputeUnits {
    type Err = ParseComputeUnitsError;

    /// Case-insensitive; `-` may stand for `_`; `CPU_AND_NEURAL_ENGINE` is accepted as well.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let normalized = s.trim().to_ascii_uppercase().replace('-', "_");
        match normalized.as_str() {
            "CPU_ONLY" => Ok(Self::CpuOnly),
            "CPU_AND_GPU" => Ok(Self::CpuAndGpu),
            "CPU_AND_NE" | "CPU_AND_NEURAL_ENGINE" => Ok(Self::CpuAndNeuralEngine),
            "ALL" => Ok(Self::All),
            _ => Err(ParseComputeUnitsError {
                found: s.to_string(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_round_trips_through_from_str() {
        for units in ComputeUnits::ALL {
            assert_eq!(units.to_string().parse::<ComputeUnits>(), Ok(units));
        }
    }

    #[test]
    fn parsing_is_lenient_about_case_and_dashes() {
        assert_eq!("cpu-and-ne".parse(), Ok(ComputeUnits::CpuAndNeuralEngine));
        assert_eq!(
            "CPU_AND_NEURAL_ENGINE".parse(),
            Ok(ComputeUnits::CpuAndNeuralEngine)
        );
        assert_eq!(" all ".parse(), Ok(ComputeUnits::All));
        assert_eq!("Cpu_Only".parse(), Ok(ComputeUnits::CpuOnly));
    }

    #[test]
    fn unknown_names_fail() {
        let err = "GPU".parse::<ComputeUnits>().unwrap_err();
        assert_eq!(err.found, "GPU");
        assert!(err.to_string().contains("CPU_AND_NE"));
    }

    #[test]
    fn names_are_distinct() {
        let names: Vec<_> = ComputeUnits::ALL.iter().map(|u| u.name()).collect();
        assert_eq!(names, ["CPU_ONLY", "CPU_AND_GPU", "CPU_AND_NE", "ALL"]);
    }
}
