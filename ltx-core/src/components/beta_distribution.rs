//! The Beta distribution's quantile function (SciPy `beta.ppf`), for `BetaScheduler`.
