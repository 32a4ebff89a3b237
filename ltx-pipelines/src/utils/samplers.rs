//! The per-step math of `ltx_pipelines/utils/samplers.py` and `helpers.py` (the loops themselves come
//! with the pipelines).
