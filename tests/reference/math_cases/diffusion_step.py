"""`diffusion_step` fixtures: the Euler and res_2s steps (ltx_core/components/diffusion_steps.py), to_velocity /
to_denoised (ltx_core/utils.py), the res_2s coefficients (ltx_pipelines/utils/res2s.py), the per-step helpers of
ltx_pipelines/utils/samplers.py and helpers.py (post_process_latent, timesteps_from_mask, the SDE noise
normalisation and injection, the gradient-estimation update) and GaussianNoiser, on seeded random inputs.

Every output comes from the reference functions themselves (the gradient-estimation update is the loop's own
nested function, rebuilt from its code object). call = {"op": "euler" | "euler_ancestral" | "res2s" | "coefficients" | "sampler" |
"sde_noise"}; inputs and outputs keep the reference's dtypes (f32, bf16 or f64); numbers the port must read
exactly (Python floats, sigma lists) are stored as tensors, never as JSON.

Tolerances: exact (0 / 0) for the element-wise arithmetic (Euler, to_velocity / to_denoised, the sampler helpers,
GaussianNoiser, phi and the res_2s coefficients). torch's CPU sqrt is not correctly rounded (about 1 ulp off
for ~20 % of f32 and ~1.4 % of f64 values), so the res_2s SDE coefficients and steps, which take square roots
of f32 sigmas, allow 1e-6 abs + 1e-6 rel; the SDE noise normalisation (f64 reductions) allows 1e-12."""

from __future__ import annotations

import types
from unittest import mock

import torch

import ref_compat
from fixture_common import STREAM_INPUT, STREAM_NOISE, Case, CaseContext, FixtureResult

TOKENS, CHANNELS = 8, 4


def _pack(inputs: dict[str, torch.Tensor], outputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    tensors = {f"input.{k}": v.clone().contiguous() for k, v in inputs.items()}
    tensors |= {f"output.{k}": v.clone().contiguous() for k, v in outputs.items()}
    return tensors


def _descending_sigmas(gen: torch.Generator, n: int) -> torch.Tensor:
    """`[1, n random values in (0.05, 0.95) descending, 0]` as float32."""
    inner = sorted((torch.rand(n, generator=gen, dtype=torch.float64) * 0.9 + 0.05).tolist(), reverse=True)
    return torch.tensor([1.0, *inner, 0.0], dtype=torch.float32)


def _step_inputs(ctx: CaseContext) -> tuple[torch.Generator, dict[str, torch.Tensor]]:
    """The input stream's generator and its first draws: a 5-value schedule, f32 and bf16 samples and
    predictions [1, TOKENS, CHANNELS] (the cases draw more from the same generator after these)."""
    gen = ctx.generator(STREAM_INPUT)
    shape = (1, TOKENS, CHANNELS)
    inputs = {
        "sigmas": _descending_sigmas(gen, 3),
        "sample": torch.randn(*shape, generator=gen),
        "denoised": torch.randn(*shape, generator=gen),
        "sample_bf16": torch.randn(*shape, generator=gen).to(torch.bfloat16),
        "denoised_bf16": torch.randn(*shape, generator=gen).to(torch.bfloat16),
    }
    return gen, inputs


def euler_case(ctx: CaseContext) -> FixtureResult:
    from ltx_core.components.diffusion_steps import EulerDiffusionStep
    from ltx_core.utils import to_denoised, to_velocity

    gen, inputs = _step_inputs(ctx)
    shape, sigmas = inputs["sample"].shape, inputs["sigmas"]
    inputs |= {
        "timesteps": torch.rand(1, TOKENS, 1, generator=gen) * 0.9 + 0.05,
        # a Python float that is not a float32 value (stored as a 0-d f64 tensor)
        "sigma_float": torch.rand((), generator=gen, dtype=torch.float64) * 0.9 + 0.05,
    }
    x, d, xb, db = inputs["sample"], inputs["denoised"], inputs["sample_bf16"], inputs["denoised_bf16"]
    sigma_float = inputs["sigma_float"].item()
    step = EulerDiffusionStep()
    out = {}
    for i in range(len(sigmas) - 1):
        out[f"euler_{i}"] = step.step(x, d, sigmas, i)
        out[f"euler_bf16_{i}"] = step.step(xb, db, sigmas, i)
    out["velocity"] = to_velocity(x, sigmas[1], d)
    out["velocity_float"] = to_velocity(x, sigma_float, d)
    out["velocity_bf16"] = to_velocity(xb, sigmas[2], db)
    out["denoised_scalar"] = to_denoised(x, out["velocity"], sigmas[1])
    out["denoised_float"] = to_denoised(x, out["velocity"], sigma_float)
    out["denoised_pertoken"] = to_denoised(x, out["velocity"], inputs["timesteps"])
    out["denoised_bf16"] = to_denoised(xb, out["velocity_bf16"], sigmas[2])
    assert out["euler_bf16_0"].dtype == torch.bfloat16 and out["velocity_bf16"].dtype == torch.bfloat16
    return FixtureResult("diffusion_step", {}, {"op": "euler"}, "0", "0", _pack(inputs, out), {})


# (eta, s_noise) of the ancestral cases: the distilled pipeline's (1, 1), a partial step, and eta 0 (no noise)
ANCESTRAL_PARAMS = [[1.0, 1.0], [0.5, 0.8], [0.0, 1.0]]


def euler_ancestral_case(ctx: CaseContext) -> FixtureResult:
    """EulerAncestralDiffusionStep at every index of a schedule ending at 0 (the last index returns the
    prediction), for f32 and bf16 samples; noise drawn per index from a seeded stream."""
    from ltx_core.components.diffusion_steps import EulerAncestralDiffusionStep

    gen, inputs = _step_inputs(ctx)
    shape, sigmas = inputs["sample"].shape, inputs["sigmas"]
    noise_gen = ctx.generator(STREAM_NOISE)
    for i in range(len(sigmas) - 1):
        inputs[f"noise_{i}"] = torch.randn(*shape, generator=noise_gen)
        inputs[f"noise_bf16_{i}"] = torch.randn(*shape, generator=noise_gen).to(torch.bfloat16)
    out = {}
    for p, (eta, s_noise) in enumerate(ANCESTRAL_PARAMS):
        step = EulerAncestralDiffusionStep(eta=eta, s_noise=s_noise)
        for i in range(len(sigmas) - 1):
            out[f"p{p}_{i}"] = step.step(inputs["sample"], inputs["denoised"], sigmas, i, noise=inputs[f"noise_{i}"])
            out[f"p{p}_bf16_{i}"] = step.step(
                inputs["sample_bf16"], inputs["denoised_bf16"], sigmas, i, noise=inputs[f"noise_bf16_{i}"]
            )
    assert out["p0_bf16_0"].dtype == torch.bfloat16
    call = {"op": "euler_ancestral", "params": ANCESTRAL_PARAMS}
    return FixtureResult("diffusion_step", {}, call, "0", "0", _pack(inputs, out), {})


def res2s_case(ctx: CaseContext) -> FixtureResult:
    from ltx_core.components.diffusion_steps import Res2sDiffusionStep
    from ltx_pipelines.utils.samplers import _inject_sde_noise
    from ltx_pipelines.utils.types import LatentState

    gen = ctx.generator(STREAM_INPUT)
    step = Res2sDiffusionStep()
    nan = float("nan")
    # σ_next with the edge values 0, 1 and the loop's 0.0011, plus random ones; sigma_up factors above 0.9999
    # hit the clamp
    nxt = torch.cat([torch.tensor([0.9, 0.5, 0.1, 0.0011, 0.0, 1.0]), torch.rand(6, generator=gen)])
    inputs = {
        "sde_next": nxt,
        "sde_up": nxt * (torch.rand(12, generator=gen) * 1.2 + 0.2),
        "sde_down": nxt * (torch.rand(12, generator=gen) * 0.75 + 0.2),
        # NaN / ±inf paths: 0/0 and x/0 in alpha_ratio, NaN sigma_down / sigma_up, 0/0 in sigma_down via sigma_max
        "special_next": torch.tensor([1.0, 0.5, 0.4, 0.2, 0.0, 0.3]),
        "special_down": torch.tensor([1.0, 1.0, nan, 0.3, 0.5, 0.1]),
        "special_up": torch.tensor([0.3, nan, 0.5, 0.1, 0.2, 0.6]),
        "special_max": torch.tensor([0.8, 0.8, 1.0, 0.2, 0.0, 0.3]),
        "pertoken_next": torch.rand(1, TOKENS, 1, generator=gen, dtype=torch.float64),
    }
    out = {}
    branches = {
        "up": (inputs["sde_next"], {"sigma_up": inputs["sde_up"]}),
        "down": (inputs["sde_next"], {"sigma_down": inputs["sde_down"]}),
        "none": (inputs["sde_next"], {}),
        "special_down": (inputs["special_next"], {"sigma_down": inputs["special_down"]}),
        "special_up": (inputs["special_next"], {"sigma_up": inputs["special_up"]}),
        "special_max": (inputs["special_next"], {"sigma_up": inputs["special_up"], "sigma_max": inputs["special_max"]}),
        "pertoken": (inputs["pertoken_next"], {"sigma_up": inputs["pertoken_next"] * 0.5}),
    }
    for name, (next_sigma, kw) in branches.items():
        # the reference mutates sigma_up / sigma_down in place: give it copies
        kw = {k: v.clone() for k, v in kw.items()}
        alpha, down, up = step.get_sde_coeff(next_sigma.clone(), **kw)
        out[f"sde_{name}_alpha"], out[f"sde_{name}_down"], out[f"sde_{name}_up"] = alpha, down, up

    shape = (1, TOKENS, CHANNELS)
    sigmas = _descending_sigmas(gen, 2)
    sigmas = torch.cat([sigmas[:-1], torch.tensor([0.0011, 0.0])])  # the loop's tail: ..., 0.0011, 0
    mask = torch.ones(1, TOKENS, 1)
    mask[:, :3] = 0.0
    mask[:, 3:6] = torch.rand(1, 3, 1, generator=gen) * 0.8 + 0.1
    inputs |= {
        "sigmas": sigmas,
        # the loop's substep sigmas: float64 σ and sqrt(σ·σ_next) from torch's own sqrt
        "sub_sigmas": torch.stack([sigmas[1].double(), torch.sqrt(sigmas[1].double() * sigmas[2].double())]),
        "sample": torch.randn(*shape, generator=gen, dtype=torch.float64),
        "denoised": torch.randn(*shape, generator=gen, dtype=torch.float64),
        "noise": torch.randn(*shape, generator=gen, dtype=torch.float64),
        "latent": torch.randn(*shape, generator=gen),
        "clean": torch.randn(*shape, generator=gen),
        "mask": mask,
        "mask_soft": torch.rand(1, TOKENS, 1, generator=gen) * 0.7 + 0.3,
    }
    x, d, noise = inputs["sample"], inputs["denoised"], inputs["noise"]
    for i in range(len(sigmas) - 1):  # the last one (σ_next = 0) returns `denoised` unchanged
        out[f"step_{i}"] = step.step(x, d, sigmas, i, noise)
    out["step_substep"] = step.step(x, d, inputs["sub_sigmas"], 0, noise)

    def stored_noise(latent: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        assert latent.shape == noise.shape
        return noise

    for mask_name in ("mask", "mask_soft"):
        state = LatentState(
            latent=inputs["latent"],
            denoise_mask=inputs[mask_name],
            positions=torch.zeros(1, 3, TOKENS, 2),
            clean_latent=inputs["clean"],
        )
        for legacy in (True, False):
            for where, sig, idx in (("step", sigmas, 1), ("substep", inputs["sub_sigmas"], 0)):
                out[f"inject_{mask_name}_{where}_legacy{int(legacy)}"] = _inject_sde_noise(
                    state, x, d, None, stored_noise, step, sig, idx, legacy
                )
    return FixtureResult("diffusion_step", {}, {"op": "res2s"}, "1e-6", "1e-6", _pack(inputs, out), {})


def coefficients_case(ctx: CaseContext) -> FixtureResult:
    from ltx_pipelines.utils.res2s import get_res2s_coefficients, phi

    gen = ctx.generator(STREAM_INPUT)
    # |h| < 1e-10 takes the Taylor limit; 1e-7 sits in the cancellation-prone range just above it
    fixed = [0.0, 1e-12, -5e-11, 1e-7, 0.05, 0.3, 0.9, 2.5]
    hs = torch.cat([torch.tensor(fixed, dtype=torch.float64), torch.rand(4, generator=gen, dtype=torch.float64) * 3])
    c2 = 0.25 + 0.5 * torch.rand((), generator=gen, dtype=torch.float64).item()
    c2s = torch.tensor([0.5, c2], dtype=torch.float64)
    inputs = {"hs": hs, "c2s": c2s}
    out = {"phi": torch.tensor([[phi(j, -h) for h in hs.tolist()] for j in (1, 2, 3)], dtype=torch.float64)}
    for k, c2 in enumerate(c2s.tolist()):
        cache: dict = {}
        out[f"coefficients_{k}"] = torch.tensor(
            [get_res2s_coefficients(h, cache, c2) for h in hs.tolist()], dtype=torch.float64
        )
    return FixtureResult("diffusion_step", {}, {"op": "coefficients"}, "0", "0", _pack(inputs, out), {})


def _ge_update_fn(ge_gamma: float):
    """`update_velocity_and_sample` of `gradient_estimating_euler_denoising_loop` (a nested function), rebuilt
    from the loop's code object with `ge_gamma` as its closure."""
    from ltx_pipelines.utils import samplers

    loop = samplers.gradient_estimating_euler_denoising_loop
    name = "update_velocity_and_sample"
    code = next(c for c in loop.__code__.co_consts if isinstance(c, types.CodeType) and c.co_name == name)
    assert code.co_freevars == ("ge_gamma",), code.co_freevars
    return types.FunctionType(code, samplers.__dict__, code.co_name, None, (types.CellType(ge_gamma),))


def _check_ge_against_loop(ge_gamma: float, sigmas: torch.Tensor, latent: torch.Tensor, denoised: list[torch.Tensor]):
    """Runs the real loop with a scripted denoiser and checks that the rebuilt nested function reproduces what the
    loop hands to its stepper, bit for bit."""
    from dataclasses import replace

    from ltx_core.components.diffusion_steps import EulerDiffusionStep
    from ltx_pipelines.utils import samplers
    from ltx_pipelines.utils.samplers import gradient_estimating_euler_denoising_loop
    from ltx_pipelines.utils.types import LatentState

    calls = []

    class Recorder(EulerDiffusionStep):
        def step(self, sample, denoised_sample, sigmas, step_index, **kw):
            calls.append((sample.clone(), denoised_sample.clone()))
            return super().step(sample, denoised_sample, sigmas, step_index, **kw)

    ones = torch.ones(1, latent.shape[1], 1)
    positions = torch.zeros(1, 3, latent.shape[1], 2)
    state = LatentState(latent=latent, denoise_mask=ones, positions=positions, clean_latent=latent)
    with mock.patch.object(samplers, "tqdm", lambda it: it):  # no progress bar in the generator's log
        if ref_compat.NEW_API:
            # 1.2.0: the loop calls denoiser(transformer, video, audio, sigmas, step) for results with `.denoised`
            def scripted(transformer, v, a, s, i):
                return types.SimpleNamespace(denoised=denoised[i]), types.SimpleNamespace(denoised=denoised[i])

            gradient_estimating_euler_denoising_loop(
                sigmas, state, replace(state), Recorder(), None, scripted, ge_gamma=ge_gamma
            )
        else:
            gradient_estimating_euler_denoising_loop(
                sigmas, state, replace(state), Recorder(), lambda v, a, s, i: (denoised[i], denoised[i]), ge_gamma=ge_gamma
            )
    update = _ge_update_fn(ge_gamma)
    prev = None
    for i, (noisy, handed) in enumerate(calls[::2]):
        prev, mine = update(noisy, denoised[i], sigmas[i], prev)
        assert torch.equal(mine, handed), "rebuilt update_velocity_and_sample differs from the loop"


def sampler_case(ctx: CaseContext) -> FixtureResult:
    from ltx_core.components.noisers import GaussianNoiser
    from ltx_pipelines.utils.helpers import post_process_latent, timesteps_from_mask
    from ltx_pipelines.utils.types import LatentState

    gen = ctx.generator(STREAM_INPUT)
    shape = (1, TOKENS, CHANNELS)
    mask = torch.rand(1, TOKENS, 1, generator=gen)
    mask[:, :3] = 0.0
    mask[:, 3:5] = 1.0
    inputs = {
        "mask": mask,
        "clean": torch.randn(*shape, generator=gen),
        "denoised": torch.randn(*shape, generator=gen),
        "denoised_bf16": torch.randn(*shape, generator=gen).to(torch.bfloat16),
        "denoised_f64": torch.randn(*shape, generator=gen, dtype=torch.float64),
        "sigma": torch.rand((), generator=gen) * 0.9 + 0.05,
        "sigma_float": torch.rand((), generator=gen, dtype=torch.float64) * 0.9 + 0.05,
        "latent": torch.randn(*shape, generator=gen),
        "latent_bf16": torch.randn(*shape, generator=gen).to(torch.bfloat16),
        "ge_sigmas": _descending_sigmas(gen, 2),
        "ge_gammas": torch.tensor([2.0, 1.7], dtype=torch.float64),
    }
    for i in range(3):
        inputs[f"ge_noisy_{i}"] = torch.randn(*shape, generator=gen)
        inputs[f"ge_denoised_{i}"] = torch.randn(*shape, generator=gen)
    out = {}
    for name in ("denoised", "denoised_bf16", "denoised_f64"):
        out[f"post_{name}"] = post_process_latent(inputs[name], mask, inputs["clean"])
    out["timesteps"] = timesteps_from_mask(mask, inputs["sigma"])
    out["timesteps_float"] = timesteps_from_mask(mask, inputs["sigma_float"].item())
    out["timesteps_f64"] = timesteps_from_mask(mask.double(), inputs["sigma"].double())

    # GaussianNoiser draws torch.randn(shape, dtype=latent dtype) from its generator: an identically seeded
    # generator gives the port the same noise
    for k, (name, scale) in enumerate((("latent_bf16", 0.9), ("latent", 1.0))):
        seed = ctx.stream_seed(STREAM_NOISE + k)
        latent = inputs[name]
        inputs[f"noise_{name}"] = torch.randn(
            *latent.shape, dtype=latent.dtype, generator=torch.Generator().manual_seed(seed)
        )
        inputs[f"noise_scale_{name}"] = torch.tensor(scale, dtype=torch.float64)
        positions = torch.zeros(1, 3, TOKENS, 2)
        state = LatentState(latent=latent, denoise_mask=mask, positions=positions, clean_latent=latent)
        out[f"noised_{name}"] = GaussianNoiser(torch.Generator().manual_seed(seed))(state, noise_scale=scale).latent

    # gradient estimation: the f32 path with γ = 2 and a bf16 path with γ = 1.7 (not a bf16 value)
    sigmas = inputs["ge_sigmas"]
    for g, (gamma, dtype) in enumerate(zip(inputs["ge_gammas"].tolist(), (torch.float32, torch.bfloat16), strict=True)):
        update = _ge_update_fn(gamma)
        noisy = [inputs[f"ge_noisy_{i}"].to(dtype) for i in range(3)]
        den = [inputs[f"ge_denoised_{i}"].to(dtype) for i in range(3)]
        prev = None
        for i in range(3):
            prev, out[f"ge{g}_denoised_{i}"] = update(noisy[i], den[i], sigmas[i], prev)
            out[f"ge{g}_velocity_{i}"] = prev
        _check_ge_against_loop(gamma, sigmas, noisy[0], den)
    return FixtureResult("diffusion_step", {}, {"op": "sampler"}, "0", "0", _pack(inputs, out), {})


def sde_noise_case(ctx: CaseContext) -> FixtureResult:
    from ltx_core.components.diffusion_steps import Res2sDiffusionStep
    from ltx_pipelines.utils.samplers import _get_new_noise, _inject_sde_noise
    from ltx_pipelines.utils.types import LatentState

    gen = ctx.generator(STREAM_INPUT)
    shape = (2, TOKENS, CHANNELS)
    inputs = {
        "latent": torch.randn(*shape, generator=gen),
        "sample": torch.randn(*shape, generator=gen, dtype=torch.float64),
        "denoised": torch.randn(*shape, generator=gen, dtype=torch.float64),
        "clean": torch.randn(*shape, generator=gen),
        "mask": torch.rand(2, TOKENS, 1, generator=gen) * 0.7 + 0.3,
        "sigmas": _descending_sigmas(gen, 3),
    }
    out = {}
    # _get_new_noise draws torch.randn(shape, float64) from its generator, then normalises: the port gets the
    # identically seeded raw draw
    for k in range(2):
        seed = ctx.stream_seed(STREAM_NOISE + k)
        raw_gen = torch.Generator().manual_seed(seed)
        inputs[f"raw_noise_{k}"] = torch.randn(shape, generator=raw_gen, dtype=torch.float64)
    out["sde_noise"] = _get_new_noise(inputs["latent"], torch.Generator().manual_seed(ctx.stream_seed(STREAM_NOISE)))
    # the whole per-token injection with the reference's own noise function (second seed)
    state = LatentState(
        latent=inputs["latent"],
        denoise_mask=inputs["mask"],
        positions=torch.zeros(2, 3, TOKENS, 2),
        clean_latent=inputs["clean"],
    )
    out["inject"] = _inject_sde_noise(
        state,
        inputs["sample"],
        inputs["denoised"],
        torch.Generator().manual_seed(ctx.stream_seed(STREAM_NOISE + 1)),
        _get_new_noise,
        Res2sDiffusionStep(),
        inputs["sigmas"],
        1,
        False,
    )
    return FixtureResult("diffusion_step", {}, {"op": "sde_noise"}, "1e-12", "1e-12", _pack(inputs, out), {})


CASES: list[Case] = [
    Case(
        "diffusion_step_euler_ancestral",
        "diffusion_step",
        126,
        "EulerAncestralDiffusionStep (eta, s_noise) = (1, 1), (0.5, 0.8), (0, 1) at every index incl. the final "
        "sigma 0, f32 and bf16 samples",
        euler_ancestral_case,
    ),
    Case(
        "diffusion_step_euler",
        "diffusion_step",
        80,
        "Euler steps at every index (f32 and bf16 samples), to_velocity / to_denoised with tensor, float and "
        "per-token sigmas",
        euler_case,
    ),
    Case(
        "diffusion_step_res2s",
        "diffusion_step",
        81,
        "get_sde_coeff (sigma_up incl. clamp, sigma_down, neither, NaN/inf, sigma_max, per-token f64), Res2s steps "
        "(f32 sigmas / f64 samples incl. the final early return, f64 substep sigmas), SDE injection legacy and "
        "per-token",
        res2s_case,
    ),
    Case(
        "diffusion_step_coefficients",
        "diffusion_step",
        82,
        "phi_1..3 and res_2s coefficients (two c2) for h incl. the |h| < 1e-10 limit",
        coefficients_case,
    ),
    Case(
        "diffusion_step_sampler",
        "diffusion_step",
        83,
        "post_process_latent (f32/bf16/f64), timesteps_from_mask, GaussianNoiser (bf16, f32), gradient estimation "
        "(f32 γ 2, bf16 γ 1.7)",
        sampler_case,
    ),
    Case(
        "diffusion_step_sde_noise",
        "diffusion_step",
        84,
        "_get_new_noise normalisation of a seeded f64 draw, per-token _inject_sde_noise with it",
        sde_noise_case,
    ),
]
