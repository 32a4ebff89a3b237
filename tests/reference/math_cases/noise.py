"""torch's own random normals: what `torch.randn(shape, dtype=..., generator=g)` draws from a
`torch.Generator(device).manual_seed(seed)`, the stream every reference noiser and SDE sampler uses.

call: {"kind": "torch-cpu" | "torch-cuda", "generators": [{"seed": int, "draws": [[shape, dtype], ...]}, ...]}
(plus, for torch-cuda, the GPU's "multiprocessors" and "max_threads_per_multiprocessor"): each generator
is seeded once (a Python int: negative seeds and seeds >= 2**32 as `manual_seed` takes them) and draws in
order; outputs `g<j>_d<i> [shape]` in the draw's dtype (f32, f64, bf16, f16), the raw draw of generator j.

The CPU cases cover both ATen paths (below 16 elements the per-element Box-Muller with its cached second
value, which survives bulk draws in between; from 16 on `normal_fill` with its redrawn tail block), f32 / f64 /
bf16 / f16 (bf16 and f16 are computed in the reduced type, not cast from f32), a latent-like patchified bf16
draw, the f64 draws of the res_2s SDE noise, and seeds whose high bits or sign mt19937 ignores. Tolerance 0.

`cuda_noise_fixture` builds the same plan on a CUDA device (tests/reference/cuda_noise.py; needs a GPU)."""

from __future__ import annotations

import torch

from fixture_common import STREAM_NOISE, Case, CaseContext, FixtureResult

DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16, "float16": torch.float16}


def draw_plan(ctx: CaseContext) -> list[dict]:
    """The generators and their draws; every seed follows --seed."""
    base = ctx.stream_seed(STREAM_NOISE)
    return [
        # f32: per-element (3 leaves a cached value, 1 takes it), a whole block, a redrawn tail, a large draw
        {"seed": base, "draws": [[[3], "float32"], [[1], "float32"], [[16], "float32"], [[37], "float32"],
                                 [[2, 128, 8, 16], "float32"], [[5], "float32"], [[4, 3], "float32"]]},
        # bf16 as the noiser draws it: a patchified video latent [B, T, C], then small and tail draws
        {"seed": base + 1, "draws": [[[1, 24, 128], "bfloat16"], [[7], "bfloat16"], [[16], "bfloat16"],
                                     [[45], "bfloat16"]]},
        # f64 as res_2s draws its SDE noise
        {"seed": base + 2, "draws": [[[1, 8, 16], "float64"], [[9], "float64"], [[40], "float64"]]},
        # mixed dtypes from one generator (the cached value crosses dtypes and bulk draws); a seed with high
        # bits set (mt19937 keeps the low 32)
        {"seed": base + 3 + (5 << 32), "draws": [[[5], "float16"], [[33], "float16"], [[3], "float64"],
                                                  [[20], "float32"], [[1], "bfloat16"], [[64], "float16"]]},
        # a negative seed (manual_seed(-1) is how res_2s seeds its step noise)
        {"seed": -base - 1, "draws": [[[2, 3, 5], "float32"], [[2], "float32"]]},
    ]


def _draw(plan: list[dict], device: str) -> dict[str, torch.Tensor]:
    tensors = {}
    for j, gen in enumerate(plan):
        g = torch.Generator(device=device).manual_seed(gen["seed"])
        for i, (shape, dtype) in enumerate(gen["draws"]):
            t = torch.randn(*shape, generator=g, dtype=DTYPES[dtype], device=device)
            tensors[f"output.g{j}_d{i}"] = t.cpu().contiguous()
    return tensors


def noise_case(ctx: CaseContext) -> FixtureResult:
    plan = draw_plan(ctx)
    call = {"kind": "torch-cpu", "generators": plan}
    return FixtureResult("noise", {}, call, "0", "0", _draw(plan, "cpu"), {})


def cuda_noise_fixture(ctx: CaseContext) -> FixtureResult:
    """The same plan on the current CUDA device; tolerance from the hardware sin/cos (see docs/parity.md)."""
    props = torch.cuda.get_device_properties(torch.cuda.current_device())
    plan = draw_plan(ctx)
    call = {
        "kind": "torch-cuda",
        "generators": plan,
        "multiprocessors": props.multi_processor_count,
        "max_threads_per_multiprocessor": props.max_threads_per_multi_processor,
    }
    extra = {"cuda_device": props.name}
    return FixtureResult("noise", {}, call, "5e-6", "0", _draw(plan, "cuda"), extra)


CASES: list[Case] = [
    Case("noise_torch_cpu", "noise", 122, "torch.Generator('cpu') randn: f32/f64/bf16/f16, both ATen paths, 5 generators",
         noise_case),
]
