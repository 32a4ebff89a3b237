//! Port of `ltx_pipelines/utils/constants.py` (sigma lists so far).

/// The distilled model's 8-step schedule.
pub const DISTILLED_SIGMA_VALUES: [f32; 9] = [
    1.0, 0.99375, 0.9875, 0.98125, 0.975, 0.909375, 0.725, 0.421875, 0.0,
];

/// The stage-2 (super-resolution) schedule: the tail of [`DISTILLED_SIGMA_VALUES`].
pub const STAGE_2_DISTILLED_SIGMA_VALUES: [f32; 4] = [0.909375, 0.725, 0.421875, 0.0];
