"""Types shared by the fixture generator and its per-component case modules (`math_cases/`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch


@dataclass(frozen=True)
class CaseContext:
    seed: int
    offset: int
    full_size: bool
    f64_check: bool = True

    def stream_seed(self, stream: int) -> int:
        """Seed of one random stream of this case (stream 0..9): seed*1000 + 10*offset + stream for offsets
        below 100; offsets 100..999 live in a disjoint range, 10**8 + seed*10000 + 10*offset + stream."""
        assert 0 <= stream < 10 and 0 <= self.offset < 1000
        if self.offset < 100:
            return self.seed * 1000 + 10 * self.offset + stream
        return 10**8 + self.seed * 10000 + 10 * self.offset + stream

    def generator(self, stream: int) -> torch.Generator:
        return torch.Generator(device="cpu").manual_seed(self.stream_seed(stream))


# random streams used by every case
STREAM_WEIGHTS = 0
STREAM_INPUT = 1
STREAM_NOISE = 2




@dataclass
class FixtureResult:
    component: str
    config: dict
    call: dict
    atol: str
    rtol: str
    tensors: dict[str, torch.Tensor]
    extra_metadata: dict[str, str]



@dataclass(frozen=True)
class Case:
    name: str
    component: str
    offset: int  # unique per case, < 1000: see CaseContext.stream_seed
    description: str
    build: Callable[[CaseContext], FixtureResult]
    full_size: bool = False
    # cases whose files this one's reads (written whenever this one is)
    requires: tuple[str, ...] = ()


