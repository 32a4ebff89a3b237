//! Port of `ltx_core/components/patchifiers.py`.
