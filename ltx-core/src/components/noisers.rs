//! Port of `ltx_core/components/noisers.py`, plus the seeded noise generator ltx-rs uses.
