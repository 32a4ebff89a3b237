//! Port of `ltx_core/components/`: schedulers (so far).

pub mod schedulers;
