"""`diffusion_step` fixtures (see docs/parity.md)."""

from __future__ import annotations

from fixture_common import Case

CASES: list[Case] = []
