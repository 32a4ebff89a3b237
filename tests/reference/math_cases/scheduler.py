"""`scheduler` fixtures: sigma lists from the reference schedulers' own `execute()` and the pipelines'
constant sigma lists. Outputs `output.sigmas_<i>` (float32), one per case."""

from __future__ import annotations

import torch

from fixture_common import Case, CaseContext, FixtureResult


def seeded_choices(ctx: CaseContext, n: int, low: int, high: int) -> list[int]:
    gen = torch.Generator().manual_seed(ctx.seed * 1000 + 10 * ctx.offset)
    return [int(v) for v in torch.randint(low, high, (n,), generator=gen)]


def scheduler_case(ctx: CaseContext, name: str, cases: list[dict]) -> FixtureResult:
    from ltx_core.components.schedulers import BetaScheduler, LinearQuadraticScheduler, LTX2Scheduler

    tensors: dict[str, torch.Tensor] = {}
    for i, kwargs in enumerate(cases):
        if name == "ltx2":
            kw = dict(kwargs)
            tokens = kw.pop("tokens", None)
            latent = None if tokens is None else torch.zeros(1, 1, tokens)
            sigmas = LTX2Scheduler().execute(latent=latent, **kw)
        elif name == "linear_quadratic":
            sigmas = LinearQuadraticScheduler().execute(**kwargs)
        elif name == "beta":
            sigmas = BetaScheduler().execute(**kwargs)
        else:
            raise ValueError(name)
        tensors[f"output.sigmas_{i}"] = sigmas.to(torch.float32).contiguous()
    return FixtureResult("scheduler", {}, {"scheduler": name, "cases": cases}, "1e-6", "0", tensors, {})


def scheduler_constants_case(ctx: CaseContext) -> FixtureResult:
    from ltx_pipelines.utils import constants

    tensors = {
        "output.distilled": torch.tensor(constants.DISTILLED_SIGMA_VALUES, dtype=torch.float32),
        "output.stage_2_distilled": torch.tensor(constants.STAGE_2_DISTILLED_SIGMA_VALUES, dtype=torch.float32),
    }
    return FixtureResult("scheduler", {}, {"scheduler": "constants"}, "0", "0", tensors, {})


def ltx2_scheduler_cases(ctx: CaseContext) -> list[dict]:
    cases: list[dict] = [{"steps": s} for s in (1, 2, 3, 8, 20, 30, 40)]
    cases += [{"steps": 8, "tokens": t} for t in (384, 1024, 6144, 24576)]
    cases += [{"steps": 8, "stretch": False}, {"steps": 12, "terminal": 0.05, "tokens": 3072}]
    cases += [{"steps": 10, "max_shift": 1.5, "base_shift": 0.5}]
    steps = seeded_choices(ctx, 3, 1, 60)
    tokens = seeded_choices(ctx, 3, 1, 40000)
    cases += [{"steps": s, "tokens": t} for s, t in zip(steps, tokens, strict=True)]
    return cases


def linear_quadratic_cases(ctx: CaseContext) -> list[dict]:
    cases: list[dict] = [{"steps": s} for s in (1, 2, 3, 8, 20, 40)]
    cases += [{"steps": 10, "threshold_noise": 0.05}, {"steps": 10, "linear_steps": 3}, {"steps": 6, "linear_steps": 6}]
    cases += [{"steps": s} for s in seeded_choices(ctx, 3, 2, 80)]
    return cases



def beta_cases(ctx: CaseContext) -> list[dict]:
    cases: list[dict] = [{"steps": s} for s in (1, 2, 3, 8, 20, 30, 40, 100)]
    cases += [{"steps": 12, "alpha": a, "beta": b} for a, b in ((0.5, 0.5), (1.0, 1.0), (2.0, 0.7), (0.3, 3.0))]
    cases += [{"steps": s} for s in seeded_choices(ctx, 3, 2, 150)]
    return cases


PPF_GRID = [
    [p, a, b]
    for a, b in ((0.6, 0.6), (0.3, 0.3), (0.5, 2.0), (1.0, 1.0), (2.0, 5.0), (5.0, 0.5))
    for p in (1e-9, 1e-4, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.9999, 1 - 1e-9)
]


def beta_table_case(ctx: CaseContext) -> FixtureResult:
    import scipy.stats

    from ltx_core.components.schedulers import _precalculate_model_sampling_sigmas

    table = _precalculate_model_sampling_sigmas(2.37, 10000).to(torch.float32)
    ppf = torch.tensor([float(scipy.stats.beta.ppf(p, a, b)) for p, a, b in PPF_GRID], dtype=torch.float64)
    tensors = {"output.table": table.contiguous(), "output.ppf": ppf}
    return FixtureResult("scheduler", {}, {"scheduler": "beta_table", "ppf": PPF_GRID}, "1e-12", "0", tensors, {})


CASES: list[Case] = [
    # ----- scheduler -------------------------------------------------------------------------------------
    Case(
        "scheduler_ltx2",
        "scheduler",
        70,
        "LTX2Scheduler: step counts 1..40, token counts 384..24576, stretch off, terminal, shifts, 3 seeded cases",
        lambda ctx: scheduler_case(ctx, "ltx2", ltx2_scheduler_cases(ctx)),
    ),
    Case(
        "scheduler_linear_quadratic",
        "scheduler",
        71,
        "LinearQuadraticScheduler: step counts 1..40, threshold, linear_steps, 3 seeded step counts",
        lambda ctx: scheduler_case(ctx, "linear_quadratic", linear_quadratic_cases(ctx)),
    ),
    Case(
        "scheduler_beta",
        "scheduler",
        72,
        "BetaScheduler: steps 1..100 at alpha = beta = 0.6, four other (alpha, beta), 3 seeded step counts",
        lambda ctx: scheduler_case(ctx, "beta", beta_cases(ctx)),
    ),
    Case(
        "scheduler_beta_table",
        "scheduler",
        74,
        "BetaScheduler internals: the 10000-entry float32 flux_time_shift table and scipy.stats.beta.ppf on a grid",
        beta_table_case,
    ),
    Case(
        "scheduler_constants",
        "scheduler",
        73,
        "ltx_pipelines.utils.constants: DISTILLED_SIGMA_VALUES, STAGE_2_DISTILLED_SIGMA_VALUES",
        scheduler_constants_case,
    ),
]
