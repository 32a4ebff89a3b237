//! Port of `ltx_core/conditioning/mask_utils.py`.
