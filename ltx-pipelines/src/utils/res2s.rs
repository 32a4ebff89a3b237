//! Port of `ltx_pipelines/utils/res2s.py`.
