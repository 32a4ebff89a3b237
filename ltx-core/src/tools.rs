//! Port of `ltx_core/tools.py`.
