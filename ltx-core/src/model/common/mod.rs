//! Port of `ltx_core/model/common/`.

pub mod normalization;
