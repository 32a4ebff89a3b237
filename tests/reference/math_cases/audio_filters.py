"""`audio_filters` fixtures: the vocoder's fixed resampling filters and resamplers (`ltx_core.model.audio_vae.
vocoder`): the kaiser-sinc filters of BigVGAN's `Activation1d` (2x up / 2x down, 12 taps), the hann-sinc filter of
the BWE skip path (`UpSample1d(window_type="hann")`), and each resampler applied to a seeded signal.

call: {"ratio", "kernel_size", "hann_ratio"}; input `x [B, C, T]` (f32); outputs `kaiser_up_filter`,
`kaiser_down_filter`, `hann_filter`, `up` (UpSample1d kaiser), `down` (DownSample1d), `hann_up`."""

from __future__ import annotations

import torch

from fixture_common import STREAM_INPUT, Case, CaseContext, FixtureResult


def filters_case(ctx: CaseContext, ratio: int, kernel_size: int, hann_ratio: int, shape: tuple[int, int, int]) -> FixtureResult:
    from ltx_core.model.audio_vae.vocoder import DownSample1d, UpSample1d

    x = torch.randn(*shape, generator=ctx.generator(STREAM_INPUT))
    up = UpSample1d(ratio, kernel_size)
    down = DownSample1d(ratio, kernel_size)
    hann = UpSample1d(hann_ratio, persistent=False, window_type="hann")
    tensors = {"input.x": x}
    with torch.inference_mode():
        tensors["output.kaiser_up_filter"] = up.filter.flatten().clone()
        tensors["output.kaiser_down_filter"] = down.lowpass.filter.flatten().clone()
        tensors["output.hann_filter"] = hann.filter.flatten().clone()
        tensors["output.up"] = up(x)
        tensors["output.down"] = down(x)
        tensors["output.hann_up"] = hann(x)
    call = {"ratio": ratio, "kernel_size": kernel_size, "hann_ratio": hann_ratio}
    return FixtureResult("audio_filters", {}, call, "1e-6", "1e-5", tensors, {})


CASES: list[Case] = [
    Case("audio_filters", "audio_filters", 65, "BigVGAN 2x kaiser up/down (12 taps), BWE hann x3, on x [2,3,40]",
         lambda ctx: filters_case(ctx, 2, 12, 3, (2, 3, 40))),
    Case("audio_filters_odd", "audio_filters", 66, "3x kaiser up/down (kernel 18), hann x2, on x [1,2,7]",
         lambda ctx: filters_case(ctx, 3, 18, 2, (1, 2, 7))),
]
