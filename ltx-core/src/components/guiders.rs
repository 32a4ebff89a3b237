//! Port of `ltx_core/components/guiders.py`.
