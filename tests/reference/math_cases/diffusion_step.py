"""`diffusion_step` fixtures: Euler and res_2s steps (ltx_core/components/diffusion_steps.py), to_velocity /
to_denoised, the res_2s coefficients (ltx_pipelines/utils/res2s.py), the sampler helpers
(post_process_latent, timesteps_from_mask, the SDE noise normalisation and injection, the gradient-estimation
update) and GaussianNoiser, on seeded random inputs.

call: {"op": "euler" | "res2s" | "sampler", ...}; inputs / outputs keep the reference's dtypes (f32, bf16 or
f64). Tolerance: exact for the element-wise f32 / f64 arithmetic ported operation by operation (atol 1e-7
allows the last-ulp differences of bf16 rounding paths); 1e-6 where a reduction is involved."""

from __future__ import annotations

import torch

from fixture_common import STREAM_INPUT, STREAM_NOISE, Case, CaseContext, FixtureResult

SIGMAS = [1.0, 0.8, 0.55, 0.3, 0.0]


def euler_case(ctx: CaseContext) -> FixtureResult:
    from ltx_core.components.diffusion_steps import EulerDiffusionStep
    from ltx_core.utils import to_denoised, to_velocity

    gen = ctx.generator(STREAM_INPUT)
    sigmas = torch.tensor(SIGMAS, dtype=torch.float32)
    inputs = {"sample": torch.randn(1, 12, 8, generator=gen), "denoised": torch.randn(1, 12, 8, generator=gen)}
    inputs["sample_bf16"] = inputs["sample"].to(torch.bfloat16)
    inputs["denoised_bf16"] = inputs["denoised"].to(torch.bfloat16)
    inputs["timesteps"] = torch.rand(1, 12, 1, generator=gen) * 0.9 + 0.05
    step = EulerDiffusionStep()
    out = {}
    for i in range(len(SIGMAS) - 1):
        out[f"euler_{i}"] = step.step(inputs["sample"], inputs["denoised"], sigmas, i)
        out[f"euler_bf16_{i}"] = step.step(inputs["sample_bf16"], inputs["denoised_bf16"], sigmas, i)
    out["velocity"] = to_velocity(inputs["sample"], sigmas[1], inputs["denoised"])
    out["velocity_bf16"] = to_velocity(inputs["sample_bf16"], sigmas[2], inputs["denoised_bf16"])
    out["denoised_scalar"] = to_denoised(inputs["sample"], out["velocity"], sigmas[1])
    out["denoised_pertoken"] = to_denoised(inputs["sample"], out["velocity"], inputs["timesteps"])
    tensors = {f"input.{k}": v for k, v in inputs.items()} | {f"output.{k}": v for k, v in out.items()}
    return FixtureResult("diffusion_step", {}, {"op": "euler", "sigmas": SIGMAS}, "1e-7", "0", tensors, {})


HS = [0.0, 1e-12, 0.05, 0.3, 0.9, 2.5]
SDE_NEXT = [0.9, 0.5, 0.1, 0.0011, 0.0, 1.0]


def res2s_case(ctx: CaseContext) -> FixtureResult:
    from ltx_core.components.diffusion_steps import Res2sDiffusionStep
    from ltx_pipelines.utils.res2s import get_res2s_coefficients, phi
    from ltx_pipelines.utils.samplers import _inject_sde_noise
    from ltx_pipelines.utils.types import LatentState

    gen = ctx.generator(STREAM_INPUT)
    step = Res2sDiffusionStep()
    out = {}
    nxt = torch.tensor(SDE_NEXT, dtype=torch.float32)
    up = nxt * 0.7
    down = nxt * 0.6
    for name, kw in (("up", {"sigma_up": up.clone()}), ("down", {"sigma_down": down.clone()}), ("none", {})):
        a, d, u = step.get_sde_coeff(nxt.clone(), **kw)
        out[f"sde_{name}_alpha"], out[f"sde_{name}_down"], out[f"sde_{name}_up"] = a, d, u
    # clamp branch: sigma_up above 0.9999 sigma_next
    a, d, u = step.get_sde_coeff(nxt.clone(), sigma_up=nxt * 1.5)
    out["sde_clamp_alpha"], out["sde_clamp_down"], out["sde_clamp_up"] = a, d, u

    inputs = {
        "sample": torch.randn(1, 12, 8, generator=gen, dtype=torch.float64),
        "denoised": torch.randn(1, 12, 8, generator=gen, dtype=torch.float64),
        "noise": torch.randn(1, 12, 8, generator=gen, dtype=torch.float64),
        "clean": torch.randn(1, 12, 8, generator=gen, dtype=torch.float32),
    }
    mask = torch.ones(1, 12, 1)
    mask[:, :4] = 0.0
    inputs["mask"] = mask
    sigmas = torch.tensor([1.0, 0.7, 0.4, 0.0011, 0.0], dtype=torch.float32)
    for i in range(4):
        out[f"step_{i}"] = step.step(inputs["sample"], inputs["denoised"], sigmas, i, inputs["noise"])
    # the loop's substep stacks two float64 sigmas
    sub = torch.stack([sigmas[1].double(), torch.sqrt(sigmas[1].double() * sigmas[2].double())])
    out["step_substep"] = step.step(inputs["sample"], inputs["denoised"], sub, 0, inputs["noise"])
    state = LatentState(
        latent=inputs["sample"].float(), denoise_mask=mask, positions=torch.zeros(1, 3, 12, 2), clean_latent=inputs["clean"]
    )
    for legacy in (True, False):
        x = _inject_sde_noise(
            state, inputs["sample"], inputs["denoised"], None, lambda latent, g: inputs["noise"], step, sigmas, 1, legacy
        )
        out[f"inject_legacy{int(legacy)}"] = x
    out["phi"] = torch.tensor([[phi(j, -h) for h in HS] for j in (1, 2, 3)], dtype=torch.float64)
    cache: dict = {}
    out["coefficients"] = torch.tensor([get_res2s_coefficients(h, cache, 0.5) for h in HS], dtype=torch.float64)
    tensors = {f"input.{k}": v for k, v in inputs.items()} | {f"output.{k}": v.clone() for k, v in out.items()}
    call = {"op": "res2s", "sde_next": SDE_NEXT, "sigmas": [1.0, 0.7, 0.4, 0.0011, 0.0], "hs": HS}
    return FixtureResult("diffusion_step", {}, call, "1e-7", "1e-7", tensors, {})


def sampler_case(ctx: CaseContext) -> FixtureResult:
    from ltx_core.components.noisers import GaussianNoiser
    from ltx_pipelines.utils.helpers import post_process_latent, timesteps_from_mask
    from ltx_pipelines.utils.samplers import _channelwise_normalize
    from ltx_pipelines.utils.types import LatentState
    from ltx_core.utils import to_denoised, to_velocity

    gen = ctx.generator(STREAM_INPUT)
    inputs = {
        "denoised_bf16": torch.randn(1, 12, 8, generator=gen).to(torch.bfloat16),
        "clean": torch.randn(1, 12, 8, generator=gen),
        "mask": (torch.rand(1, 12, 1, generator=gen) > 0.4).float() * 0.8,
        "raw_noise": torch.randn(2, 12, 8, generator=gen, dtype=torch.float64) * 1.7 + 0.3,
        "latent_bf16": torch.randn(1, 12, 8, generator=gen).to(torch.bfloat16),
        "noisy_0": torch.randn(1, 12, 8, generator=gen),
        "denoised_0": torch.randn(1, 12, 8, generator=gen),
        "noisy_1": torch.randn(1, 12, 8, generator=gen),
        "denoised_1": torch.randn(1, 12, 8, generator=gen),
    }
    out = {}
    out["post_processed"] = post_process_latent(inputs["denoised_bf16"], inputs["mask"], inputs["clean"])
    out["timesteps"] = timesteps_from_mask(inputs["mask"], torch.tensor(0.55))
    out["timesteps_f64"] = timesteps_from_mask(inputs["mask"].double(), torch.tensor(0.55).double())
    # _get_new_noise after its draw
    noise = inputs["raw_noise"].clone()
    noise = (noise - noise.mean()) / noise.std()
    out["sde_noise"] = _channelwise_normalize(noise)
    # GaussianNoiser draws with torch.randn from its generator: the same seed draws the same noise
    seed = ctx.stream_seed(STREAM_NOISE)
    state = LatentState(
        latent=inputs["latent_bf16"], denoise_mask=inputs["mask"], positions=torch.zeros(1, 3, 12, 2), clean_latent=inputs["latent_bf16"]
    )
    inputs["noise_bf16"] = torch.randn(
        *state.latent.shape, dtype=torch.bfloat16, generator=torch.Generator().manual_seed(seed)
    )
    out["noised"] = GaussianNoiser(torch.Generator().manual_seed(seed))(state, noise_scale=0.9).latent
    # gradient estimation (ge_gamma 2): step 0 has no previous velocity
    sigmas = torch.tensor([0.9, 0.6], dtype=torch.float32)
    prev = None
    for i in range(2):
        noisy, den, sigma = inputs[f"noisy_{i}"], inputs[f"denoised_{i}"], sigmas[i]
        current = to_velocity(noisy, sigma, den)
        if prev is not None:
            den = to_denoised(noisy, 2.0 * (current - prev) + prev, sigma)
        prev = current
        out[f"ge_velocity_{i}"] = current
        out[f"ge_denoised_{i}"] = den
    tensors = {f"input.{k}": v for k, v in inputs.items()} | {f"output.{k}": v.clone() for k, v in out.items()}
    call = {"op": "sampler", "sigma": 0.55, "noise_scale": 0.9, "ge_gamma": 2.0, "ge_sigmas": [0.9, 0.6]}
    return FixtureResult("diffusion_step", {}, call, "1e-6", "1e-6", tensors, {})


CASES: list[Case] = [
    Case("diffusion_step_euler", "diffusion_step", 80, "Euler steps (f32 and bf16 samples), to_velocity, to_denoised", euler_case),
    Case(
        "diffusion_step_res2s",
        "diffusion_step",
        81,
        "get_sde_coeff (all branches, clamp, NaN), Res2s steps (f32 sigmas / f64 samples, final step, f64 substep "
        "sigmas), SDE injection legacy and per-token, phi and res_2s coefficients",
        res2s_case,
    ),
    Case(
        "diffusion_step_sampler",
        "diffusion_step",
        82,
        "post_process_latent, timesteps_from_mask, SDE noise normalisation, GaussianNoiser, gradient estimation",
        sampler_case,
    ),
]
