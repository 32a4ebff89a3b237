#!/usr/bin/env python3
"""PyTorch-reference fixture generator for ltx-rs.

Builds reference components of ltx-core 1.0.0 from small (or, with --full-size, released-width) configs,
draws weights / inputs / noise from a torch.Generator seeded from --seed, saves the weights under the real
checkpoint key names, rebuilds the reference component from those saved tensors through the reference's own
SDOps key filter (strict load), runs it and writes one .safetensors fixture per case.

Fixture format (see docs/parity.md):
  metadata: component, config (checkpoint-style JSON), call (JSON of non-tensor args), atol, rtol, case, seed
            (+ provenance keys: generator, ltx_core_version, torch_version, weights_dtype, f64_max_abs_err,
            f64_frames_diff, tiled_chunk_frames)
  tensors:  weights under real checkpoint key names, inputs as `input.<name>`, outputs as `output.<name>`.
            Tiny cases: weights and drawn inputs F16 (f32 draws rounded to f16; the f32 reference runs on exactly
            those values), decoder noise F32 (the reference's own draw), float outputs F32, `output.frames` U8.
            Full-size cases: weights BF16, inputs F32.

Usage:
  generate.py --seed N [--out DIR] [--only COMPONENT_OR_CASE ...] [--full-size] [--list]

The math is never re-implemented here: every output comes from the reference classes
(VideoEncoderConfigurator / VideoDecoderConfigurator, VideoEncoder.forward / tiled_encode,
VideoDecoder.forward / tiled_decode, TilingConfig, VAE_{ENCODER,DECODER}_COMFY_KEYS_FILTER).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import logging
import math
import sys
import time
from dataclasses import dataclass, replace
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from safetensors import safe_open
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from safetensors.torch import save_file as st_save_file

from ltx_core.model.video_vae import (
    VAE_DECODER_COMFY_KEYS_FILTER,
    VAE_ENCODER_COMFY_KEYS_FILTER,
    VideoDecoderConfigurator,
    VideoEncoderConfigurator,
)
from ltx_core.loader.sd_ops import SDOps
from ltx_core.model.audio_vae.model_configurator import (
    AUDIO_VAE_DECODER_COMFY_KEYS_FILTER,
    AUDIO_VAE_ENCODER_COMFY_KEYS_FILTER,
    AudioDecoderConfigurator,
    AudioEncoderConfigurator,
    VOCODER_COMFY_KEYS_FILTER,
    VocoderConfigurator,
)
from ltx_core.model.transformer import LTXV_MODEL_COMFY_RENAMING_MAP
from ltx_core.model.upsampler import LatentUpsamplerConfigurator
from ltx_core.text_encoders.gemma.encoders.encoder_configurator import EMBEDDINGS_PROCESSOR_KEY_OPS

import math_cases
import pipeline_cases
import ref_compat
from fixture_common import STREAM_INPUT, STREAM_NOISE, STREAM_WEIGHTS, Case, CaseContext, FixtureResult

LOG = logging.getLogger("generate")

# Latent upsampler files have no key prefix; these are its top-level modules (fixture inputs/outputs excluded).
UPSAMPLER_KEYS = SDOps("LATENT_UPSAMPLER_KEYS")
for _prefix in ("initial_conv.", "initial_norm.", "res_blocks.", "upsampler.", "post_upsample_res_blocks.", "final_conv."):
    UPSAMPLER_KEYS = UPSAMPLER_KEYS.with_matching(prefix=_prefix)
SCRIPT_DIR = Path(__file__).resolve().parent
DEFAULT_OUT = SCRIPT_DIR.parent / "fixtures"
GENERATOR_ID = "tests/reference/generate.py"

# Tolerances (numpy.allclose semantics: |actual - expected| <= atol + rtol * |expected|, elementwise).
# Every case is also run in float64 by the same reference code; the max abs deviation of the float32 output
# from that run (`f64_max_abs_err`) measures how much f32 rounding the case amplifies (PixelNorm over a few
# channels divides by small RMS values at some pixels). atol = max(base atol, 10 x that deviation), rounded
# up to one significant digit, so a correct f32 port with another summation order passes.
TINY_ATOL = 1e-4
TINY_RTOL = 1e-4
# Full-size models (bf16-rounded weights stored, f32 compute): wide PixelNorms are well conditioned, the
# measured float64 deviation is ~2e-6 on O(1) outputs, so the same base tolerance applies.
FULL_ATOL = 1e-4
FULL_RTOL = 1e-4
F64_ERR_FACTOR = 10.0


# ---------------------------------------------------------------------------------------------------------
# Configs
# ---------------------------------------------------------------------------------------------------------


def _res_x(n: int, decoder: bool = False) -> list:
    cfg: dict[str, Any] = {"num_layers": n}
    if decoder:
        cfg["inject_noise"] = False
    return ["res_x", cfg]


def tiny_ltx2_vae(**overrides: Any) -> dict:
    """LTX-2 (19B) video-VAE layout at tiny widths.

    Encoder: res_x, compress_space_res, res_x, compress_time_res, res_x, compress_all_res, res_x,
    compress_all_res, res_x (the released file uses multipliers 2/2/2/2 and widths 128..2048; here 1/1/1/2,
    widths 8,8,8,8,16 so the file stays small). Decoder: res_x + 3x compress_all(residual) as released,
    multipliers 2/1/2 (built reversed: 16 -> 8 -> 8 -> 4 channels; residual needs in_channels % 8 == 0;
    decoder_base_channels 2 on 1.0.0, 4 on 1.2.0).
    No "spatial_padding_mode" key: encoder defaults to zeros, decoder to reflect.
    """
    vae = {
        "dims": 3,
        "in_channels": 3,
        "out_channels": 3,
        "latent_channels": 8,
        "patch_size": 4,
        "norm_layer": "pixel_norm",
        "latent_log_var": "uniform",
        "causal_decoder": False,
        "timestep_conditioning": False,
        "encoder_blocks": [
            _res_x(1),
            ["compress_space_res", {"multiplier": 1}],
            _res_x(1),
            ["compress_time_res", {"multiplier": 1}],
            _res_x(2),
            ["compress_all_res", {"multiplier": 1}],
            _res_x(1),
            ["compress_all_res", {"multiplier": 2}],
            _res_x(1),
        ],
        "decoder_blocks": [
            _res_x(1, True),
            ["compress_all", {"residual": True, "multiplier": 2}],
            _res_x(2, True),
            ["compress_all", {"residual": True, "multiplier": 1}],
            _res_x(1, True),
            ["compress_all", {"residual": True, "multiplier": 2}],
            _res_x(1, True),
        ],
    }
    # conv_in widens the latent to 16 channels (the residual upsamplers need widths divisible by 8)
    vae["decoder_base_channels"] = ref_compat.decoder_base_channels(16, vae["decoder_blocks"])
    vae.update(overrides)
    return {"vae": vae}


def tiny_ltx23_vae(**overrides: Any) -> dict:
    """LTX-2.3 (22B) video-VAE layout at tiny widths.

    Encoder as released (space_res, time_res, all_res, all_res) with multipliers 2/2/1/1 (released 2/2/2/1),
    latent 4, widths 4,8,16,16,16. Decoder (listed order, built reversed) res_x, compress_space(m1),
    res_x, compress_time(m1), res_x, compress_all(m1), res_x, compress_all(m2), res_x, no residual:
    8 -> 4 -> 4 -> 4 -> 4 channels (decoder_base_channels 1 on 1.0.0, 4 on 1.2.0; the released file has
    compress_space m2 and compress_time m2 with base 128; 2-channel stages would make the
    tiny model ill-conditioned, float64 deviation ~4e-4). spatial_padding_mode "zeros" plus the extra keys
    the released 2.3 config carries (ignored by ltx-core 1.0.0).
    """
    vae = {
        "_class_name": "CausalVideoAutoencoder",
        "dims": 3,
        "in_channels": 3,
        "out_channels": 3,
        "latent_channels": 4,
        "encoder_blocks": [
            _res_x(2),
            ["compress_space_res", {"multiplier": 2}],
            _res_x(1),
            ["compress_time_res", {"multiplier": 2}],
            _res_x(1),
            ["compress_all_res", {"multiplier": 1}],
            _res_x(1),
            ["compress_all_res", {"multiplier": 1}],
            _res_x(1),
        ],
        "decoder_blocks": [
            _res_x(1),
            ["compress_space", {"multiplier": 1}],
            _res_x(1),
            ["compress_time", {"multiplier": 1}],
            _res_x(2),
            ["compress_all", {"multiplier": 1}],
            _res_x(1),
            ["compress_all", {"multiplier": 2}],
            _res_x(1),
        ],
        "scaling_factor": 1.0,
        "norm_layer": "pixel_norm",
        "patch_size": 4,
        "latent_log_var": "uniform",
        "use_quant_conv": False,
        "causal_decoder": False,
        "timestep_conditioning": False,
        "normalize_latent_channels": False,
        "encoder_base_channels": 128,
        "spatial_padding_mode": "zeros",
    }
    # conv_in widens the latent to 8 channels
    vae["decoder_base_channels"] = ref_compat.decoder_base_channels(8, vae["decoder_blocks"])
    vae.update(overrides)
    return {"vae": vae}


def full_ltx2_vae() -> dict:
    """LTX-2 19B video VAE at released widths (LTX-ARCH.md 2.4; padding key absent as documented)."""
    return {
        "vae": {
            "dims": 3,
            "in_channels": 3,
            "out_channels": 3,
            "latent_channels": 128,
            "patch_size": 4,
            "norm_layer": "pixel_norm",
            "latent_log_var": "uniform",
            "causal_decoder": False,
            "timestep_conditioning": False,
            "decoder_base_channels": 128,
            "encoder_blocks": [
                _res_x(4),
                ["compress_space_res", {"multiplier": 2}],
                _res_x(6),
                ["compress_time_res", {"multiplier": 2}],
                _res_x(6),
                ["compress_all_res", {"multiplier": 2}],
                _res_x(2),
                ["compress_all_res", {"multiplier": 2}],
                _res_x(2),
            ],
            "decoder_blocks": [
                _res_x(5, True),
                ["compress_all", {"residual": True, "multiplier": 2}],
                _res_x(5, True),
                ["compress_all", {"residual": True, "multiplier": 2}],
                _res_x(5, True),
                ["compress_all", {"residual": True, "multiplier": 2}],
                _res_x(5, True),
            ],
        }
    }


def full_ltx23_vae() -> dict:
    """LTX-2.3 22B video VAE at released widths (LTX-ARCH.md 2.4 / the released metadata dump)."""
    return {
        "vae": {
            "_class_name": "CausalVideoAutoencoder",
            "dims": 3,
            "in_channels": 3,
            "out_channels": 3,
            "latent_channels": 128,
            "encoder_blocks": [
                _res_x(4),
                ["compress_space_res", {"multiplier": 2}],
                _res_x(6),
                ["compress_time_res", {"multiplier": 2}],
                _res_x(4),
                ["compress_all_res", {"multiplier": 2}],
                _res_x(2),
                ["compress_all_res", {"multiplier": 1}],
                _res_x(2),
            ],
            "decoder_blocks": [
                _res_x(4),
                ["compress_space", {"multiplier": 2}],
                _res_x(6),
                ["compress_time", {"multiplier": 2}],
                _res_x(4),
                ["compress_all", {"multiplier": 1}],
                _res_x(2),
                ["compress_all", {"multiplier": 2}],
                _res_x(2),
            ],
            "scaling_factor": 1.0,
            "norm_layer": "pixel_norm",
            "patch_size": 4,
            "latent_log_var": "uniform",
            "use_quant_conv": False,
            "causal_decoder": False,
            "timestep_conditioning": False,
            "normalize_latent_channels": False,
            "encoder_base_channels": 128,
            "decoder_base_channels": 128,
            "spatial_padding_mode": "zeros",
        }
    }


# ---------------------------------------------------------------------------------------------------------
# Generic helpers
# ---------------------------------------------------------------------------------------------------------


def _uniform(shape: torch.Size, low: float, high: float, gen: torch.Generator) -> torch.Tensor:
    return torch.rand(shape, generator=gen, dtype=torch.float32) * (high - low) + low


def _normal(shape: torch.Size, gen: torch.Generator) -> torch.Tensor:
    return torch.randn(shape, generator=gen, dtype=torch.float32)


def _stft_basis(n_fft: int) -> torch.Tensor:
    n_freqs = n_fft // 2 + 1
    n = torch.arange(n_fft, dtype=torch.float64)
    f = torch.arange(n_freqs, dtype=torch.float64)[:, None]
    window = torch.hann_window(n_fft, periodic=True, dtype=torch.float64)
    angle = 2 * math.pi * f * n / n_fft
    basis = torch.cat([torch.cos(angle), -torch.sin(angle)], dim=0) * window
    return basis[:, None, :].float()


@torch.no_grad()
def det_init(model: torch.nn.Module, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """Deterministic init of every state-dict entry, visited in sorted-name order (PYTORCH-REFERENCE.md 2).

    Linear/Conv weights U(+-1/sqrt(fan_in)); 1-d *norm*.weight 1+0.1N; biases 0.02N; per_channel_statistics
    std-of-means U(0.5,1.5), mean-of-means 0.1N; 0-d params keep their constructor value; everything else
    (scale_shift_tables, ...) 0.1N. Returns the (module-side) state dict.
    """
    state = model.state_dict(keep_vars=True)
    for name in sorted(state):
        t = state[name]
        shape = t.shape
        leaf = name.rsplit(".", 1)[-1]
        if leaf == "std-of-means":
            value = _uniform(shape, 0.5, 1.5, gen)
        elif leaf == "mean-of-means":
            value = 0.1 * _normal(shape, gen)
        elif t.dim() == 0 or leaf in ("kernel", "filter"):
            # 0-d parameters and fixed filter buffers (the upsampler's binomial blur, the vocoder's kaiser-sinc
            # anti-aliasing filters) keep their values
            continue
        elif leaf in ("forward_basis", "inverse_basis"):
            # the BWE's causal STFT: real DFT rows then imaginary rows, times a periodic Hann window
            value = _stft_basis(shape[-1])
        elif leaf == "mel_basis":
            # a non-negative filterbank (the released one is a slaney mel bank)
            value = _uniform(shape, 0.0, 2.0 / shape[1], gen)
        elif leaf == "weight" and t.dim() >= 2:
            fan_in = shape[1:].numel()
            bound = 1.0 / fan_in**0.5
            value = _uniform(shape, -bound, bound, gen)
        elif leaf == "bias":
            value = 0.02 * _normal(shape, gen)
        elif leaf == "weight" and t.dim() == 1 and "norm" in name:
            value = 1.0 + 0.1 * _normal(shape, gen)
        else:
            value = 0.1 * _normal(shape, gen)
        t.copy_(value)
    return {k: v.detach() for k, v in model.state_dict().items()}


def to_checkpoint_keys(state: dict[str, torch.Tensor], prefix: Any, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Module-side VAE keys -> released-checkpoint keys (`vae.encoder.*` / `vae.decoder.*`,
    `vae.per_channel_statistics.*` shared, stored once)."""
    out = {}
    for key, value in state.items():
        if callable(prefix):
            new_key = prefix(key)
        elif key.startswith("per_channel_statistics."):
            new_key = "vae." + key
        else:
            new_key = prefix + key
        if not value.is_floating_point():
            raise RuntimeError(f"non-float tensor {key} ({value.dtype}) in a VAE state dict")
        out[new_key] = value.to(dtype).contiguous().clone()
    return out


def checkpoint_roundtrip(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Serialise through safetensors and read back, as a checkpoint file would be."""
    blob = st_save(tensors)
    loaded = st_load(blob)
    del blob
    return loaded


def build_from_checkpoint(configurator: Any, sd_ops: Any, config: dict, tensors: dict[str, torch.Tensor]) -> Any:
    """Build a reference model the way a checkpoint is loaded: meta-device model from the config, keys mapped
    by the reference SDOps filter, strict load (weights cast to float32; the model runs in float32)."""
    state = {}
    for key, value in tensors.items():
        new_key = sd_ops.apply_to_key(key)
        if new_key is None:
            continue
        # key-value operations run after the renames, as in the reference's safetensors loader; fresh,
        # aligned float32 storage (tensors straight from a safetensors buffer can be unaligned, which makes
        # oneDNN pick other kernels)
        for kv in sd_ops.apply_to_key_value(new_key, value):
            state[kv.new_key] = kv.new_value.to(torch.float32).clone()
    with torch.device("meta"):
        model = ref_compat.build_model(configurator, config)
    model.load_state_dict(state, strict=True, assign=True)
    leftover = [n for n, t in list(model.named_parameters()) + list(model.named_buffers()) if t.is_meta]
    if leftover:
        raise RuntimeError(f"uninitialised tensors after load: {leftover}")
    return model.eval()


def make_tiling(
    spatial: tuple[int, int] | None,
    temporal: tuple[int, int] | None,
) -> dict:
    return {
        "spatial": None
        if spatial is None
        else {"tile_size_in_pixels": spatial[0], "tile_overlap_in_pixels": spatial[1]},
        "temporal": None
        if temporal is None
        else {"tile_size_in_frames": temporal[0], "tile_overlap_in_frames": temporal[1]},
    }


@contextlib.contextmanager
def patched_randn(replacement: torch.Tensor | None = None) -> Iterator[list[torch.Tensor]]:
    """Record every torch.randn draw made inside the block (or, with `replacement`, return that tensor instead,
    cast to the requested dtype, for the float64 cross-check)."""
    original = torch.randn
    draws: list[torch.Tensor] = []

    def wrapper(*args: Any, **kwargs: Any) -> torch.Tensor:
        if replacement is not None:
            size = args[0] if args else kwargs["size"]
            if tuple(size) != tuple(replacement.shape):
                raise RuntimeError(f"unexpected randn size {tuple(size)}")
            out = replacement.to(dtype=kwargs.get("dtype") or torch.float32).clone()
        else:
            out = original(*args, **kwargs)
        draws.append(out.detach().clone())
        return out

    torch.randn = wrapper
    try:
        yield draws
    finally:
        torch.randn = original


def max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max())


def _pkg_version(name: str) -> str:
    try:
        return importlib_metadata.version(name)
    except importlib_metadata.PackageNotFoundError:
        return "unknown"


def write_fixture(
    path: Path,
    *,
    component: str,
    config: dict,
    call: dict,
    atol: str,
    rtol: str,
    case: str,
    seed: int,
    tensors: dict[str, torch.Tensor],
    extra_metadata: dict[str, str],
) -> None:
    metadata = {
        "component": component,
        "config": json.dumps(config, sort_keys=True),
        "call": json.dumps(call, sort_keys=True),
        "atol": atol,
        "rtol": rtol,
        "case": case,
        "seed": str(seed),
        "generator": GENERATOR_ID,
        "ltx_core_version": _pkg_version("ltx-core"),
        "reference_version": ref_compat.REFERENCE_VERSION,
        "torch_version": torch.__version__.split("+")[0],
    }
    metadata.update(extra_metadata)
    ordered = {k: tensors[k].contiguous() for k in sorted(tensors)}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    st_save_file(ordered, str(tmp), metadata=metadata)
    tmp.replace(path)


# ---------------------------------------------------------------------------------------------------------
# Components: how a fixture's weights are keyed, how the reference model is built and called
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Component:
    name: str
    configurator: Any  # has from_config(config); or a callable call -> such an object (see configurator_for)
    sd_ops: Any
    weight_prefix: str
    # run(model, inputs, call, generator, optional_outputs) -> (outputs, extra metadata); inputs/outputs
    # without the "input."/"output." prefix; optional_outputs names extra outputs to produce (e.g. "frames")
    run: Callable[[Any, dict[str, torch.Tensor], dict, torch.Generator | None, frozenset], tuple[dict, dict]]


def run_video_encoder(
    model: Any,
    inputs: dict[str, torch.Tensor],
    call: dict,
    generator: torch.Generator | None,
    optional_outputs: frozenset = frozenset(),
) -> tuple[dict, dict]:
    del generator
    if optional_outputs:
        raise ValueError(f"video_encoder has no optional outputs, asked for {sorted(optional_outputs)}")
    tiling = ref_compat.encoder_tiling(call.get("tiling"))
    video = inputs["video"].to(next(model.parameters()).dtype)
    with torch.inference_mode():
        latent = model(video) if tiling is None else model.tiled_encode(video, tiling)
    return {"latent": latent}, {}


def run_video_decoder(
    model: Any,
    inputs: dict[str, torch.Tensor],
    call: dict,
    generator: torch.Generator | None,
    optional_outputs: frozenset = frozenset(),
) -> tuple[dict, dict]:
    latent = inputs["latent"].to(next(model.parameters()).dtype)
    tiling = ref_compat.decoder_tiling(call.get("tiling"), latent.shape)
    t = call.get("timestep")
    timestep = None if t is None else torch.full((latent.shape[0],), float(t), dtype=latent.dtype)
    unknown = set(optional_outputs) - {"frames"}
    if unknown:
        raise ValueError(f"video_decoder has no optional outputs {sorted(unknown)}")
    with torch.inference_mode():
        if tiling is None:
            outputs = {"video": model(latent, timestep, generator)}
            if "frames" in optional_outputs:
                # decode_video(latent, decoder, tiling_config=None, generator): uint8 [F, H, W, 3] of batch
                # element 0. It calls the decoder without a timestep, so only non-TC decoders qualify (a TC
                # decoder would need a second noise draw and the default timestep).
                if bool(getattr(model, "timestep_conditioning", False)) or t is not None:
                    raise ValueError("output.frames is only generated for decoders without timestep conditioning")
                frames = ref_compat.decode_video_frames(model, latent, generator)
                # the same forward ran twice: decode_video's frames are the uint8 mapping of output.video
                expect = (((outputs["video"] + 1.0) / 2.0).clamp(0.0, 1.0) * 255.0).to(torch.uint8)
                if not torch.equal(frames, expect[0].permute(1, 2, 3, 0)):
                    raise RuntimeError("decode_video frames differ from the uint8 mapping of the forward output")
                outputs["frames"] = frames
            return outputs, {}
        if "frames" in optional_outputs:
            raise ValueError("output.frames is only generated for non-tiled decodes")
        chunks = list(model.tiled_decode(latent, tiling, timestep=timestep, generator=generator))
    extra = {"tiled_chunk_frames": json.dumps([int(c.shape[2]) for c in chunks])}
    return {"video": torch.cat(chunks, dim=2)}, extra


COMPONENTS: dict[str, Component] = {
    "vocoder": Component(
        "vocoder", lambda call: vocoder_configurator(call), VOCODER_COMFY_KEYS_FILTER, "vocoder.", lambda *a: run_vocoder(*a)
    ),
    "audio_encoder": Component(
        "audio_encoder",
        AudioEncoderConfigurator,
        AUDIO_VAE_ENCODER_COMFY_KEYS_FILTER,
        lambda key: audio_vae_checkpoint_key("encoder")(key),
        lambda *a: run_audio_encoder(*a),
    ),
    "audio_decoder": Component(
        "audio_decoder",
        AudioDecoderConfigurator,
        AUDIO_VAE_DECODER_COMFY_KEYS_FILTER,
        lambda key: audio_vae_checkpoint_key("decoder")(key),
        lambda *a: run_audio_decoder(*a),
    ),
    "embeddings_processor": Component(
        "embeddings_processor",
        lambda call: _EmbeddingsProcessorConfigurator(call),
        EMBEDDINGS_PROCESSOR_KEY_OPS,
        lambda key: embeddings_processor_checkpoint_key(key),
        lambda *a: run_embeddings_processor(*a),
    ),
    "latent_upsampler": Component(
        "latent_upsampler", LatentUpsamplerConfigurator, UPSAMPLER_KEYS, "", lambda *a: run_latent_upsampler(*a)
    ),
    "transformer": Component(
        "transformer",
        lambda call: transformer_configurator(call),
        LTXV_MODEL_COMFY_RENAMING_MAP,
        "model.diffusion_model.",
        lambda *a: run_transformer(*a),
    ),
    "video_encoder": Component(
        "video_encoder", VideoEncoderConfigurator, VAE_ENCODER_COMFY_KEYS_FILTER, "vae.encoder.", run_video_encoder
    ),
    "video_decoder": Component(
        "video_decoder", VideoDecoderConfigurator, VAE_DECODER_COMFY_KEYS_FILTER, "vae.decoder.", run_video_decoder
    ),
}


def configurator_for(component: Component, call: dict) -> Any:
    """The configurator of a component: fixed, or chosen by the call (the transformer's model type)."""
    c = component.configurator
    return c if ref_compat.is_configurator(c) else c(call)


def split_io(tensors: dict[str, torch.Tensor], kind: str) -> dict[str, torch.Tensor]:
    prefix = kind + "."
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


def run_with_noise_input(
    component: Component,
    model: Any,
    inputs: dict[str, torch.Tensor],
    call: dict,
    optional_outputs: frozenset = frozenset(),
) -> tuple[dict, dict]:
    """Run a component; if the fixture has `input.noise`, every torch.randn inside returns exactly it."""
    noise = inputs.get("noise")
    with patched_randn(noise) as draws:
        outputs, extra = component.run(model, inputs, call, None, optional_outputs)
    if noise is None and draws:
        raise RuntimeError(f"{component.name} drew random numbers but the fixture has no input.noise")
    if noise is not None and len(draws) != 1:
        raise RuntimeError(f"{component.name} drew {len(draws)} random tensors, expected 1")
    return outputs, extra


# ---------------------------------------------------------------------------------------------------------
# Case builders
# ---------------------------------------------------------------------------------------------------------


def _weights_dtype(ctx: CaseContext) -> torch.dtype:
    """Stored weight dtype: bf16 for full-size cases (like the released checkpoints), f16 for tiny ones (half
    the bytes; the drawn values are rounded to f16 and the reference runs on exactly those values in f32)."""
    return torch.bfloat16 if ctx.full_size else torch.float16


def _input_dtype(ctx: CaseContext) -> torch.dtype:
    """Stored dtype of the drawn inputs (video, latent): f16-rounded for tiny cases, f32 for full-size ones.
    The reference is called with them upcast to f32. Decoder noise is never rounded: it is the reference's own
    f32 draw from its generator."""
    return torch.float32 if ctx.full_size else torch.float16


def _fmt_tol(x: float) -> str:
    """Round up to one significant digit: 1.23e-4 -> '2e-4', 1e-4 -> '1e-4'."""
    exponent = math.floor(math.log10(x))
    mantissa = math.ceil(round(x / 10.0**exponent, 6))
    if mantissa >= 10:
        mantissa, exponent = 1, exponent + 1
    return f"{mantissa}e{exponent}"


def _tolerances(ctx: CaseContext, f64_err: float | None) -> tuple[str, str]:
    atol, rtol = (FULL_ATOL, FULL_RTOL) if ctx.full_size else (TINY_ATOL, TINY_RTOL)
    if f64_err is not None:
        atol = max(atol, F64_ERR_FACTOR * f64_err)
    return _fmt_tol(atol), _fmt_tol(rtol)


def make_weights(component: Component, config: dict, ctx: CaseContext, call: dict) -> dict[str, torch.Tensor]:
    """Build the reference model from the config, det_init it, return its tensors under checkpoint keys
    (bf16-rounded for full-size cases)."""
    model = ref_compat.build_model(configurator_for(component, call), config)
    if any(t.is_meta for t in model.state_dict().values()):
        # the transformer configurator builds its caption projections on the meta device; det_init fills all
        model = model.to_empty(device="cpu")
    state = det_init(model, ctx.generator(STREAM_WEIGHTS))
    weights = to_checkpoint_keys(state, component.weight_prefix, _weights_dtype(ctx))
    del model, state
    gc.collect()
    return weights


def reference_case(
    ctx: CaseContext,
    component_name: str,
    config: dict,
    inputs: dict[str, torch.Tensor],
    call: dict,
    noise_seed: int | None = None,
    optional_outputs: frozenset = frozenset(),
) -> FixtureResult:
    """Weights -> checkpoint-keyed tensors -> safetensors round trip -> reference model via the SDOps filter
    (strict) -> outputs. With `noise_seed`, the model is given a torch.Generator seeded with it and the single
    torch.randn draw it makes must equal inputs["noise"] bit for bit."""
    component = COMPONENTS[component_name]
    weights = make_weights(component, config, ctx, call)
    model = build_from_checkpoint(
        configurator_for(component, call), component.sd_ops, config, checkpoint_roundtrip(weights)
    )

    generator = None if noise_seed is None else torch.Generator(device="cpu").manual_seed(noise_seed)
    with patched_randn() as draws:
        outputs, extra = component.run(model, inputs, call, generator, optional_outputs)
    if "noise" in inputs:
        if len(draws) != 1 or not torch.equal(draws[0], inputs["noise"]):
            raise RuntimeError("the reference's noise draw does not match input.noise")
    elif draws:
        raise RuntimeError("the reference drew random numbers but the case stores no input.noise")

    extra = dict(extra)
    extra["weights_dtype"] = str(_weights_dtype(ctx)).removeprefix("torch.")
    f64_err = None
    pinned = ref_compat.float32_only(model)
    if pinned:
        extra["f64_check"] = f"skipped: {pinned}"
    if ctx.f64_check and not pinned:
        # same reference code in float64 (noise fed back in): the size of the float32 rounding error
        model64 = model.double()
        inputs64 = {k: v.double() for k, v in inputs.items()}
        outputs64, _ = run_with_noise_input(component, model64, inputs64, call, optional_outputs)
        f64_err = max(max_abs_diff(outputs[k], outputs64[k]) for k in outputs if outputs[k].is_floating_point())
        extra["f64_max_abs_err"] = f"{f64_err:.3e}"
        if "frames" in outputs:
            # informative: how many uint8 values the float64 run puts on the other side of an integer boundary
            flips = (outputs["frames"].int() - outputs64["frames"].int()).abs()
            extra["f64_frames_diff"] = json.dumps({"max": int(flips.max()), "count": int((flips > 0).sum())})
        del model64, outputs64
    del model
    gc.collect()

    atol, rtol = _tolerances(ctx, f64_err)
    tensors = dict(weights)
    tensors.update({"input." + k: v.contiguous() for k, v in inputs.items()})
    tensors.update(
        {"output." + k: (v.float() if v.is_floating_point() else v).contiguous() for k, v in outputs.items()}
    )
    return FixtureResult(component_name, config, call, atol, rtol, tensors, extra)


def video_encoder_case(
    ctx: CaseContext,
    config: dict,
    video_shape: tuple[int, ...],
    tiling: dict | None = None,
) -> FixtureResult:
    video = _uniform(torch.Size(video_shape), -1.0, 1.0, ctx.generator(STREAM_INPUT)).to(_input_dtype(ctx))
    return reference_case(ctx, "video_encoder", config, {"video": video}, {"tiling": tiling})


def video_decoder_case(
    ctx: CaseContext,
    config: dict,
    latent_shape: tuple[int, ...],
    timestep: float | None = None,
    tiling: dict | None = None,
    frames: bool = False,
) -> FixtureResult:
    """`frames`: also store `output.frames`, the uint8 result of the reference's `decode_video`."""
    # VideoDecoderConfigurator defaults timestep_conditioning to True when the key is missing
    timestep_conditioning = bool(config["vae"].get("timestep_conditioning", True))
    if timestep_conditioning and tiling is not None:
        # tiled_decode draws a fresh noise tensor per tile; one `input.noise` cannot describe that
        raise ValueError("tiling with timestep conditioning is not representable in the fixture format")
    if timestep is not None and not timestep_conditioning:
        raise ValueError("timestep given for a decoder without timestep conditioning")

    inputs = {"latent": _normal(torch.Size(latent_shape), ctx.generator(STREAM_INPUT)).to(_input_dtype(ctx))}
    noise_seed = None
    if timestep_conditioning:
        # the draw VideoDecoder.forward makes: torch.randn(sample.size(), generator=generator, dtype=sample.dtype)
        noise_seed = ctx.stream_seed(STREAM_NOISE)
        inputs["noise"] = torch.randn(latent_shape, generator=ctx.generator(STREAM_NOISE), dtype=torch.float32)
    call = {"timestep": timestep, "tiling": tiling}
    optional = frozenset({"frames"}) if frames else frozenset()
    return reference_case(
        ctx, "video_decoder", config, inputs, call, noise_seed=noise_seed, optional_outputs=optional
    )


# ---------------------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------------------
# Schedulers (component "scheduler"): no weights, no inputs; call = {"scheduler", "cases": [kwargs...]},
# outputs output.sigmas_<i> (float32), one per case, from the reference's own execute().
# ---------------------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------------------
# Transformer (LTXModel): tiny 19B-style and 2.3-style configs, inputs built with the reference latent tools
# ---------------------------------------------------------------------------------------------------------

# every key LTXModelConfigurator asserts with check_config_value (they must be present in a checkpoint)
_TRANSFORMER_CHECKED = {
    "dropout": 0.0,
    "attention_bias": True,
    "num_vector_embeds": None,
    "activation_fn": "gelu-approximate",
    "num_embeds_ada_norm": 1000,
    "use_linear_projection": False,
    "only_cross_attention": False,
    "cross_attention_norm": True,
    "double_self_attention": False,
    "upcast_attention": False,
    "standardization_norm": "rms_norm",
    "norm_elementwise_affine": False,
    "qk_norm": "rms_norm",
    "positional_embedding_type": "rope",
    "use_audio_video_cross_attention": True,
    "share_ff": False,
    "av_cross_ada_norm": True,
    "use_middle_indices_grid": True,
}


def tiny_ltx2_transformer(**overrides: Any) -> dict:
    """19B layout at tiny widths (PYTORCH-REFERENCE.md 5): split RoPE on a float64 grid, A/V gate multiplier
    1000, caption projections inside the transformer."""
    cfg = {
        **_TRANSFORMER_CHECKED,
        "num_attention_heads": 2,
        "attention_head_dim": 16,
        "in_channels": 128,
        "out_channels": 128,
        "num_layers": 2,
        "cross_attention_dim": 32,
        "caption_channels": 24,
        "audio_num_attention_heads": 2,
        "audio_attention_head_dim": 8,
        "audio_in_channels": 128,
        "audio_out_channels": 128,
        "audio_cross_attention_dim": 16,
        "positional_embedding_theta": 10000.0,
        "positional_embedding_max_pos": [20, 2048, 2048],
        "audio_positional_embedding_max_pos": [20],
        "timestep_scale_multiplier": 1000,
        "av_ca_timestep_scale_multiplier": 1000.0,
        "rope_type": "split",
        "frequencies_precision": "float64",
        "norm_eps": 1e-6,
    }
    cfg.update(overrides)
    return {"transformer": {k: v for k, v in cfg.items() if v is not _ABSENT}}


def tiny_ltx23_transformer(**overrides: Any) -> dict:
    """2.3 layout at tiny widths: gated attention, cross-attention AdaLN (9 rows + prompt AdaLN), caption
    projection moved to the text connector (contexts arrive at the inner widths)."""
    return tiny_ltx2_transformer(
        apply_gated_attention=True,
        cross_attention_adaln=True,
        caption_proj_before_connector=True,
        caption_projection_first_linear=False,
        caption_proj_input_norm=False,
        caption_projection_second_linear=False,
        caption_channels=_ABSENT,
        **overrides,
    )


_ABSENT = object()


def tiny_ltx25_transformer(**overrides: Any) -> dict:
    """2.5 layout at tiny widths: the 2.3 layout with bias-free video feed-forwards and the keyframe
    absolute-position embedding (the released header's two new keys; its prompt AdaLN stays on)."""
    return tiny_ltx23_transformer(ff_bias=False, use_keyframes_abs_pos_embedding=True, **overrides)


RELEASED_LTX25 = Path(__file__).resolve().parent / "released_ltx25"


def released_ltx25_metadata(name: str) -> dict:
    """The `__metadata__` of a released Lightricks/LTX-2.5 file (read from the file's header; license text left
    out), JSON strings decoded: `released_ltx25/<name>.metadata.json`."""
    raw = json.loads((RELEASED_LTX25 / f"{name}.metadata.json").read_text())["__metadata__"]
    out = {}
    for key, value in raw.items():
        try:
            out[key] = json.loads(value)
        except (TypeError, json.JSONDecodeError):
            out[key] = value
    return out


def full_ltx25_transformer() -> dict:
    """The released LTX-2.5 22B transformer config, verbatim from its header."""
    return {"transformer": released_ltx25_metadata("ltx-2.5-22b-distilled-transformer-bf16")["config"]["transformer"]}


def full_transformer(v23: bool) -> dict:
    """Released LTX-2 19B / LTX-2.3 22B transformer configs (LTX-ARCH.md 2.2)."""
    cfg = {
        **_TRANSFORMER_CHECKED,
        "num_attention_heads": 32,
        "attention_head_dim": 128,
        "in_channels": 128,
        "out_channels": 128,
        "num_layers": 48,
        "cross_attention_dim": 4096,
        "caption_channels": 3840,
        "audio_num_attention_heads": 32,
        "audio_attention_head_dim": 64,
        "audio_in_channels": 128,
        "audio_out_channels": 128,
        "audio_cross_attention_dim": 2048,
        "positional_embedding_theta": 10000.0,
        "positional_embedding_max_pos": [20, 2048, 2048],
        "audio_positional_embedding_max_pos": [20],
        "timestep_scale_multiplier": 1000,
        "av_ca_timestep_scale_multiplier": 1000.0,
        "rope_type": "split",
        "frequencies_precision": "float64",
        "norm_eps": 1e-6,
    }
    if v23:
        cfg.update(
            apply_gated_attention=True,
            cross_attention_adaln=True,
            caption_proj_before_connector=True,
            caption_projection_first_linear=False,
            caption_proj_input_norm=False,
            caption_projection_second_linear=False,
        )
        del cfg["caption_channels"]
    return {"transformer": cfg}


def _with_layers(config: dict, n: int) -> dict:
    """A config with only the first `n` blocks (full-width checks of the 48-block models)."""
    return {"transformer": {**config["transformer"], "num_layers": n}}


class _AudioOnlyConfigurator:
    """1.0.0 has no audio-only configurator; this builds `LTXModel(model_type=AudioOnly)` with the same argument
    mapping as `LTXModelConfigurator` (test shim). 1.2.0's own `LTXAudioOnlyModelConfigurator` replaces it."""

    @classmethod
    def from_config(cls, config: dict) -> Any:
        from ltx_core.model.transformer.model import LTXModel, LTXModelType
        from ltx_core.model.transformer.model_configurator import _build_caption_projections
        from ltx_core.model.transformer.rope import LTXRopeType

        _, audio_caption_projection = _build_caption_projections(config, is_av=True)
        t = config.get("transformer", {})
        return LTXModel(
            model_type=LTXModelType.AudioOnly,
            num_layers=t.get("num_layers", 48),
            norm_eps=t.get("norm_eps", 1e-06),
            **ref_compat.attention_kwargs(t),
            positional_embedding_theta=t.get("positional_embedding_theta", 10000.0),
            timestep_scale_multiplier=t.get("timestep_scale_multiplier", 1000),
            use_middle_indices_grid=t.get("use_middle_indices_grid", True),
            audio_num_attention_heads=t.get("audio_num_attention_heads", 32),
            audio_attention_head_dim=t.get("audio_attention_head_dim", 64),
            audio_in_channels=t.get("audio_in_channels", 128),
            audio_out_channels=t.get("audio_out_channels", 128),
            audio_cross_attention_dim=t.get("audio_cross_attention_dim", 2048),
            audio_positional_embedding_max_pos=t.get("audio_positional_embedding_max_pos", [20]),
            rope_type=LTXRopeType(t.get("rope_type", "interleaved")),
            double_precision_rope=t.get("frequencies_precision", False) == "float64",
            apply_gated_attention=t.get("apply_gated_attention", False),
            audio_caption_projection=audio_caption_projection,
            cross_attention_adaln=t.get("cross_attention_adaln", False),
        )


def transformer_configurator(call: dict) -> Any:
    from ltx_core.model.transformer import LTXModelConfigurator, LTXVideoOnlyModelConfigurator

    return {
        "audio_video": LTXModelConfigurator,
        "video_only": LTXVideoOnlyModelConfigurator,
        "audio_only": ref_compat.audio_only_configurator() or _AudioOnlyConfigurator,
    }[call["model_type"]]


def _perturbations(call: dict, batch: int, num_blocks: int, dtype: torch.dtype) -> Any:
    return ref_compat.batched_perturbations(call.get("perturbations"), batch, num_blocks, dtype)


def run_transformer(
    model: Any,
    inputs: dict[str, torch.Tensor],
    call: dict,
    generator: torch.Generator | None,
    optional_outputs: frozenset = frozenset(),
) -> tuple[dict, dict]:
    """LTXModel velocities and X0Model denoised predictions. `call.dtype` bfloat16 runs the model and its
    latent/context/position inputs in bf16 (as the pipelines do); timesteps and sigma stay float32."""
    from ltx_core.model.transformer import Modality, X0Model

    del generator
    if optional_outputs:
        raise ValueError(f"transformer has no optional outputs, asked for {sorted(optional_outputs)}")
    dtype = next(model.parameters()).dtype
    if call.get("dtype") == "bfloat16":
        dtype = torch.bfloat16
        model = model.to(dtype)
    modalities = {}
    for name in ("video", "audio"):
        if f"{name}_latent" not in inputs:
            continue
        ts_dtype = torch.float64 if dtype == torch.float64 else torch.float32
        mask = inputs.get(f"{name}_context_mask")
        attention = inputs.get(f"{name}_attention_mask")
        extra = {}
        if f"{name}_keyframes_mask" in inputs:
            extra["keyframes_mask"] = inputs[f"{name}_keyframes_mask"].to(dtype)
        modalities[name] = Modality(
            latent=inputs[f"{name}_latent"].to(dtype),
            sigma=inputs[f"{name}_sigma"].to(ts_dtype),
            timesteps=inputs[f"{name}_timesteps"].to(ts_dtype),
            positions=inputs[f"{name}_positions"].to(dtype),
            context=inputs[f"{name}_context"].to(dtype),
            enabled=True,
            context_mask=None if mask is None else mask.to(torch.int64),
            attention_mask=None if attention is None else attention.to(dtype),
            **extra,
        )
    batch = next(iter(modalities.values())).latent.shape[0]
    perturbations = _perturbations(call, batch, len(model.transformer_blocks), dtype)
    video, audio = modalities.get("video"), modalities.get("audio")
    with torch.inference_mode():
        vx, ax = model(video, audio, perturbations)
        vd, ad = X0Model(model)(video, audio, perturbations)
        legacy = (None, None)
        if call.get("legacy_x0"):
            from ltx_core.model.transformer.model import LegacyX0Model

            sigma = float(next(iter(modalities.values())).sigma.flatten()[0])
            legacy = LegacyX0Model(model)(video, audio, perturbations, sigma)
    outputs = {}
    for name, value in (
        ("video", vx),
        ("audio", ax),
        ("video_x0", vd),
        ("audio_x0", ad),
        ("video_x0_legacy", legacy[0]),
        ("audio_x0_legacy", legacy[1]),
    ):
        if value is not None:
            outputs[name] = value
    return outputs, {}


def transformer_inputs(
    ctx: CaseContext,
    config: dict,
    *,
    batch: int = 1,
    video: tuple[int, int, int] | None = (2, 2, 3),
    audio_frames: int | None = 7,
    sigma: tuple[float, ...] = (0.7,),
    fps: float = 24.0,
    pertoken: bool = False,
    keyframe_attention: float | None = None,
    context_len: int = 16,
    context_mask_valid: int | None = None,
    keyframes_mask: bool = False,
) -> dict[str, torch.Tensor]:
    """Latents, contexts (N(0,1)), positions from the reference latent tools, per-token timesteps
    sigma·denoise_mask. `pertoken`: an image-conditioned first latent frame (mask 0 there);
    `keyframe_attention`: a keyframe appended through ConditioningItemAttentionStrengthWrapper (self-attention
    mask); `context_mask_valid`: left-padded int64 text masks; `keyframes_mask`: the video state's
    `keyframes_mask` (1.2.0's tools mark the first latent frame; appended keyframe tokens unmarked) as the input
    `video_keyframes_mask` [B, T, 1]."""
    from ltx_core.components.patchifiers import AudioPatchifier, VideoLatentPatchifier
    from ltx_core.conditioning import (
        ConditioningItemAttentionStrengthWrapper,
        VideoConditionByKeyframeIndex,
        VideoConditionByLatentIndex,
    )
    from ltx_core.tools import AudioLatentTools, VideoLatentTools
    from ltx_core.types import AudioLatentShape, VideoLatentShape

    t = config["transformer"]
    gen = ctx.generator(STREAM_INPUT)
    dt = _input_dtype(ctx)
    sig = torch.tensor(sigma if len(sigma) == batch else sigma * batch, dtype=torch.float32)
    inputs: dict[str, torch.Tensor] = {}
    # contexts arrive at caption_channels only where the transformer has the caption projections (19B); the 22B
    # headers keep a caption_channels key for the text encoder's projection
    caption = None if t.get("caption_proj_before_connector", False) else t.get("caption_channels")

    def context(width: int) -> torch.Tensor:
        return _normal(torch.Size([batch, context_len, width]), gen).to(dt)

    def cmask() -> torch.Tensor:
        m = torch.zeros(batch, context_len, dtype=torch.int64)
        m[:, context_len - context_mask_valid :] = 1
        return m

    if video is not None:
        f, h, w = video
        shape = VideoLatentShape(batch, t["in_channels"], f, h, w)
        tools = VideoLatentTools(VideoLatentPatchifier(patch_size=1), shape, fps)
        latent = _normal(torch.Size(shape), gen).to(dt).float()
        state = tools.create_initial_state(torch.device("cpu"), torch.float32, latent)
        if pertoken:
            first = latent[:, :, :1].clone()
            state = VideoConditionByLatentIndex(first, 1.0, 0).apply_to(state, tools)
        if keyframe_attention is not None:
            kf = _normal(torch.Size([batch, t["in_channels"], 1, h, w]), gen).to(dt).float()
            item = ConditioningItemAttentionStrengthWrapper(
                VideoConditionByKeyframeIndex(kf, (f - 1) * 8, 1.0), attention_mask=keyframe_attention
            )
            state = item.apply_to(state, tools)
        inputs["video_latent"] = state.latent
        inputs["video_positions"] = state.positions
        inputs["video_timesteps"] = state.denoise_mask * sig.view(batch, 1, 1)
        inputs["video_sigma"] = sig
        inputs["video_context"] = context(caption or t["num_attention_heads"] * t["attention_head_dim"])
        if state.attention_mask is not None:
            inputs["video_attention_mask"] = state.attention_mask
        if keyframes_mask:
            if state.keyframes_mask is None:
                raise RuntimeError("the reference's video tools made no keyframes_mask")
            inputs["video_keyframes_mask"] = state.keyframes_mask
        if context_mask_valid is not None:
            inputs["video_context_mask"] = cmask()
    if audio_frames is not None:
        shape = AudioLatentShape(batch, 8, audio_frames, t.get("audio_in_channels", 128) // 8)
        tools = AudioLatentTools(AudioPatchifier(patch_size=1), shape)
        latent = _normal(torch.Size(shape), gen).to(dt).float()
        state = tools.create_initial_state(torch.device("cpu"), torch.float32, latent)
        inputs["audio_latent"] = state.latent
        inputs["audio_positions"] = state.positions
        inputs["audio_timesteps"] = state.denoise_mask * sig.view(batch, 1, 1)
        inputs["audio_sigma"] = sig
        inputs["audio_context"] = context(caption or t["audio_num_attention_heads"] * t["audio_attention_head_dim"])
        if context_mask_valid is not None:
            inputs["audio_context_mask"] = cmask()
    return {k: v.contiguous().clone() for k, v in inputs.items()}


def transformer_case(ctx: CaseContext, config: dict, call: dict, **input_kw: Any) -> FixtureResult:
    if call.get("dtype") == "bfloat16":
        ctx = replace(ctx, f64_check=False)
    inputs = transformer_inputs(ctx, config, **input_kw)
    result = reference_case(ctx, "transformer", config, inputs, call)
    if call.get("dtype") == "bfloat16":
        # bf16 rounding of every activation: compare against the bf16 reference with a bf16-sized tolerance
        result.atol, result.rtol = "3e-2", "3e-2"
    return result


def transformer_manifest_case(ctx: CaseContext, v23: bool, config: dict | None = None) -> FixtureResult:
    """Parameter names and shapes of the released model, from a meta-device reference model."""
    from ltx_core.model.transformer import LTXModelConfigurator

    config = config if config is not None else full_transformer(v23)
    with torch.device("meta"):
        model = ref_compat.build_model(LTXModelConfigurator, config)
    params = sorted([name, list(t.shape)] for name, t in model.state_dict().items())
    total = sum(math.prod(shape) for _, shape in params)
    call = {"model_type": "audio_video", "params": params}
    tensors = {"output.param_count": torch.tensor([total], dtype=torch.int64)}
    return FixtureResult("transformer_manifest", config, call, "0", "0", tensors, {})


_SKIP_V_SELF = "skip_video_self_attn"
_SKIP_A_SELF = "skip_audio_self_attn"
_SKIP_A2V = "skip_a2v_cross_attn"
_SKIP_V2A = "skip_v2a_cross_attn"

# ---------------------------------------------------------------------------------------------------------
# Denoising loops (ltx_pipelines.utils.helpers / samplers) on a tiny AV transformer
# ---------------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def recorded_randn(gen: torch.Generator, replay: list[torch.Tensor] | None = None) -> Iterator[list[torch.Tensor]]:
    """Every torch.randn inside the block draws from `gen` (whatever generator the caller passed) and is recorded;
    with `replay`, the recorded tensors are returned again in order (cast to the requested dtype)."""
    original = torch.randn
    draws: list[torch.Tensor] = []

    def wrapper(*args: Any, **kwargs: Any) -> torch.Tensor:
        if args and isinstance(args[0], int):
            size = tuple(args)
        else:
            size = tuple(args[0] if args else kwargs["size"])
        dtype = kwargs.get("dtype") or torch.float32
        if replay is not None:
            out = replay[len(draws)]
            if tuple(out.shape) != size:
                raise RuntimeError(f"replayed randn has shape {tuple(out.shape)}, the draw wants {size}")
            out = out.to(device=kwargs.get("device"), dtype=dtype).clone()
        else:
            out = original(size, generator=gen, dtype=dtype)
        if kwargs.get("device") is not None:
            # drawn on the CPU generator, moved where the caller asked (a CUDA bench run)
            out = out.to(kwargs["device"])
        draws.append(out.detach().clone())
        return out

    torch.randn = wrapper
    try:
        yield draws
    finally:
        torch.randn = original


def _loop_inputs(model: Any, inputs: dict, call: dict, device: torch.device) -> tuple:
    """What both loop versions share: the model's dtype, its X0Model, the output shape, the contexts present and the
    optional image condition, on `device`."""
    from ltx_core.conditioning import VideoConditionByLatentIndex
    from ltx_core.model.transformer import X0Model
    from ltx_core.types import VideoPixelShape

    dtype = next(model.parameters()).dtype
    shape = VideoPixelShape(batch=1, frames=call["frames"], width=call["width"], height=call["height"], fps=call["fps"])
    names = ("video_context", "audio_context", "video_context_neg", "audio_context_neg")
    ctx = {k: inputs[k].to(device=device, dtype=dtype) for k in names if k in inputs}
    conditionings = []
    if "cond_latent" in inputs:
        cond = inputs["cond_latent"].to(device=device, dtype=dtype)
        conditionings.append(VideoConditionByLatentIndex(cond, call["cond_strength"], 0))
    return dtype, X0Model(model), shape, ctx, conditionings


def _run_denoise_loop_1_0(
    model: Any,
    inputs: dict,
    call: dict,
    replay: list[torch.Tensor] | None,
    gen: torch.Generator,
    device: torch.device,
) -> tuple[dict, list]:
    """`denoise_audio_video` with the call's loop: `euler` + `simple_denoising_func` (the distilled pipeline's one
    pass), `euler` + `guider_denoising_func(CFGGuider)`, `euler` + `multi_modal_guider_denoising_func`, or
    `res2s_audio_video_denoising_loop` (+ the multimodal guider). The model runs in the dtype of its weights (float32
    here; float64 for the cross-check; bf16 in `bench_component.py` on CUDA) on `device`."""
    from ltx_core.components.diffusion_steps import EulerDiffusionStep, Res2sDiffusionStep
    from ltx_core.components.guiders import CFGGuider, MultiModalGuider, MultiModalGuiderParams
    from ltx_core.components.noisers import GaussianNoiser
    from ltx_pipelines.utils.helpers import (
        denoise_audio_video,
        guider_denoising_func,
        multi_modal_guider_denoising_func,
        simple_denoising_func,
    )
    from ltx_pipelines.utils.samplers import euler_denoising_loop, res2s_audio_video_denoising_loop
    from ltx_pipelines.utils.types import PipelineComponents

    dtype, x0, shape, ctx, conditionings = _loop_inputs(model, inputs, call, device)
    sigmas = torch.tensor(call["sigmas"], dtype=torch.float32)
    guidance = call["guidance"]
    if guidance["kind"] == "simple":
        denoise_fn = simple_denoising_func(ctx["video_context"], ctx["audio_context"], x0)
    elif guidance["kind"] == "cfg":
        denoise_fn = guider_denoising_func(
            CFGGuider(guidance["cfg_scale"]),
            ctx["video_context"], ctx["video_context_neg"], ctx["audio_context"], ctx["audio_context_neg"], x0,
        )
    elif guidance["kind"] == "multimodal":
        vp = MultiModalGuiderParams(**guidance["video"])
        ap = MultiModalGuiderParams(**guidance["audio"])
        denoise_fn = multi_modal_guider_denoising_func(
            MultiModalGuider(vp, ctx["video_context_neg"]),
            MultiModalGuider(ap, ctx["audio_context_neg"]),
            ctx["video_context"], ctx["audio_context"], x0,
        )
    else:
        raise ValueError(f"unknown guidance kind {guidance['kind']!r}")

    def loop(sig: torch.Tensor, video_state: Any, audio_state: Any, stepper: Any) -> Any:
        if call["loop"] == "euler":
            return euler_denoising_loop(sig, video_state, audio_state, stepper, denoise_fn)
        return res2s_audio_video_denoising_loop(
            sig, video_state, audio_state, stepper, denoise_fn, noise_seed=0, model_dtype=dtype
        )

    stepper = EulerDiffusionStep() if call["loop"] == "euler" else Res2sDiffusionStep()
    with torch.inference_mode(), recorded_randn(gen, replay) as draws:
        video_state, audio_state = denoise_audio_video(
            output_shape=shape,
            conditionings=conditionings,
            noiser=GaussianNoiser(generator=torch.Generator().manual_seed(0)),
            sigmas=sigmas,
            stepper=stepper,
            denoising_loop_fn=loop,
            components=PipelineComponents(dtype=dtype, device=device),
            dtype=dtype,
            device=device,
            noise_scale=call.get("noise_scale", 1.0),
        )
    return {"video_latent": video_state.latent, "audio_latent": audio_state.latent}, draws


def _run_denoise_loop_1_2(
    model: Any,
    inputs: dict,
    call: dict,
    replay: list[torch.Tensor] | None,
    gen: torch.Generator,
    device: torch.device,
) -> tuple[dict, list]:
    """1.2.0's form of the same run (what `DiffusionStage.__call__` does): noised states from the latent tools
    and `create_noised_state` (video, then audio), the loop with the transformer and a `GuidedDenoiser`, then
    `clear_conditioning` + `unpatchify`. CFG-only guidance is a `MultiModalGuider` with only `cfg_scale` set
    (1.2.0 has no denoising function around `CFGGuider`)."""
    from ltx_core.components.diffusion_steps import EulerDiffusionStep, Res2sDiffusionStep
    from ltx_core.components.guiders import MultiModalGuider, MultiModalGuiderParams
    from ltx_core.components.noisers import GaussianNoiser
    from ltx_core.components.patchifiers import AudioPatchifier, VideoLatentPatchifier
    from ltx_core.tools import AudioLatentTools, VideoLatentTools
    from ltx_core.types import AudioLatentShape, VideoLatentShape
    from ltx_pipelines.utils.denoisers import GuidedDenoiser, SimpleDenoiser
    from ltx_pipelines.utils.helpers import create_noised_state
    from ltx_pipelines.utils.samplers import (
        euler_ancestral_denoising_loop,
        euler_denoising_loop,
        res2s_audio_video_denoising_loop,
    )

    dtype, x0, shape, ctx, conditionings = _loop_inputs(model, inputs, call, device)
    sigmas = torch.tensor(call["sigmas"], dtype=torch.float32, device=device)
    guidance = call["guidance"]
    if guidance["kind"] == "simple":
        denoiser = SimpleDenoiser(ctx["video_context"], ctx["audio_context"])
    else:
        if guidance["kind"] == "cfg":
            vp = ap = MultiModalGuiderParams(cfg_scale=guidance["cfg_scale"])
        elif guidance["kind"] == "multimodal":
            vp, ap = MultiModalGuiderParams(**guidance["video"]), MultiModalGuiderParams(**guidance["audio"])
        else:
            raise ValueError(f"unknown guidance kind {guidance['kind']!r}")
        denoiser = GuidedDenoiser(
            ctx["video_context"],
            ctx["audio_context"],
            video_guider=MultiModalGuider(vp, ctx["video_context_neg"]),
            audio_guider=MultiModalGuider(ap, ctx["audio_context_neg"]),
        )
    video_tools = VideoLatentTools(VideoLatentPatchifier(patch_size=1), VideoLatentShape.from_pixel_shape(shape), shape.fps)
    audio_tools = AudioLatentTools(AudioPatchifier(patch_size=1), AudioLatentShape.from_video_pixel_shape(shape))
    noiser = GaussianNoiser(generator=torch.Generator().manual_seed(0))
    noise_scale = call.get("noise_scale", 1.0)
    with torch.inference_mode(), recorded_randn(gen, replay) as draws:
        video_state = create_noised_state(video_tools, conditionings, noiser, dtype, device, noise_scale)
        audio_state = create_noised_state(audio_tools, [], noiser, dtype, device, noise_scale)
        loop_args = (sigmas, video_state, audio_state)
        if call["loop"] == "euler":
            video_state, audio_state = euler_denoising_loop(*loop_args, EulerDiffusionStep(), x0, denoiser)
        elif call["loop"] == "euler_ancestral":
            # the distilled pipeline's stage 1 on 2.5 checkpoints (its noise seed is irrelevant: draws are recorded)
            from ltx_core.components.diffusion_steps import EulerAncestralDiffusionStep

            stepper = EulerAncestralDiffusionStep(eta=call["eta"], s_noise=call["s_noise"])
            video_state, audio_state = euler_ancestral_denoising_loop(
                *loop_args, stepper, x0, denoiser, noise_seed=10000, model_dtype=dtype
            )
        elif call["loop"] == "res2s":
            video_state, audio_state = res2s_audio_video_denoising_loop(
                *loop_args, Res2sDiffusionStep(), x0, denoiser, noise_seed=0, model_dtype=dtype
            )
        else:
            raise ValueError(f"unknown loop {call['loop']!r}")
        video_state = video_tools.unpatchify(video_tools.clear_conditioning(video_state))
        audio_state = audio_tools.unpatchify(audio_tools.clear_conditioning(audio_state))
    return {"video_latent": video_state.latent, "audio_latent": audio_state.latent}, draws


def run_denoise_loop(
    model: Any,
    inputs: dict,
    call: dict,
    replay: list[torch.Tensor] | None,
    gen: torch.Generator,
    device: torch.device = torch.device("cpu"),
) -> tuple[dict, list]:
    run = _run_denoise_loop_1_2 if ref_compat.NEW_API else _run_denoise_loop_1_0
    return run(model, inputs, call, replay, gen, device)


def denoise_loop_case(ctx: CaseContext, call: dict, conditioned: bool = False) -> FixtureResult:
    config = tiny_ltx2_transformer()
    call = {"model_type": "audio_video", "frames": 9, "height": 64, "width": 64, "fps": 24.0, **call}
    component = COMPONENTS["transformer"]
    weights = make_weights(component, config, ctx, call)
    model = build_from_checkpoint(
        configurator_for(component, call), component.sd_ops, config, checkpoint_roundtrip(weights)
    )
    gen = ctx.generator(STREAM_INPUT)
    width = config["transformer"]["caption_channels"]
    names = ["video_context", "audio_context"]
    if call["guidance"]["kind"] != "simple":
        names += ["video_context_neg", "audio_context_neg"]
    inputs = {name: _normal(torch.Size([1, 16, width]), gen).to(_input_dtype(ctx)).float() for name in names}
    if conditioned:
        inputs["cond_latent"] = _normal(torch.Size([1, 128, 1, 2, 2]), gen).to(_input_dtype(ctx)).float()
    outputs, draws = run_denoise_loop(model, inputs, call, None, ctx.generator(STREAM_NOISE))
    for i, d in enumerate(draws):
        inputs[f"noise_{i}"] = d
    extra: dict[str, str] = {"weights_dtype": str(_weights_dtype(ctx)).removeprefix("torch."), "noise_draws": str(len(draws))}
    f64_err = None
    if ctx.f64_check:
        model64 = model.double()
        in64 = {k: v.double() for k, v in inputs.items()}
        out64, _ = run_denoise_loop(model64, in64, call, [d.double() for d in draws], ctx.generator(STREAM_NOISE))
        f64_err = max(max_abs_diff(outputs[k], out64[k]) for k in outputs)
        extra["f64_max_abs_err"] = f"{f64_err:.3e}"
    atol, rtol = _tolerances(ctx, f64_err)
    tensors = dict(weights)
    tensors.update({"input." + k: v.contiguous() for k, v in inputs.items()})
    tensors.update({"output." + k: v.float().contiguous() for k, v in outputs.items()})
    return FixtureResult("denoise_loop", config, call, atol, rtol, tensors, extra)


# ---------------------------------------------------------------------------------------------------------
# LoRA fusing (ltx_core.loader.fuse_loras.apply_loras) on the tiny transformer's bf16 weights
# ---------------------------------------------------------------------------------------------------------

# (module, rank) per LoRA; the first module is shared, so its deltas are summed
_LORA_MODULES = [
    [("transformer_blocks.0.attn1.to_q", 4), ("transformer_blocks.1.ff.net.0.proj", 2), ("audio_patchify_proj", 3)],
    [("transformer_blocks.0.attn1.to_q", 2), ("transformer_blocks.1.audio_attn2.to_out.0", 4)],
]


def lora_fuse_case(ctx: CaseContext, target: str, strengths: list[float]) -> FixtureResult:
    from ltx_core.loader.primitives import LoraStateDictWithStrength
    from ltx_core.loader.primitives import StateDict as RefStateDict
    from ltx_core.loader.sd_ops import LTXV_LORA_COMFY_RENAMING_MAP

    config = tiny_ltx2_transformer()
    # 1.0.0 fused into a target dtype; 1.2.0 aggregates in the rule's dtype and keeps the weights' bf16
    dtype_key = "aggregation_dtype" if ref_compat.NEW_API else "target_dtype"
    call = {"model_type": "audio_video", dtype_key: target, "strengths": strengths}
    component = COMPONENTS["transformer"]
    # released checkpoints and LoRAs are bf16; the reference fuses only into bf16 (or fp8) weights
    weights = {k: v.to(torch.bfloat16) for k, v in make_weights(component, config, ctx, call).items()}
    model_sd = {}
    for key, value in weights.items():
        new_key = component.sd_ops.apply_to_key(key)
        if new_key is not None:
            model_sd[new_key] = value
    gen = ctx.generator(STREAM_INPUT)
    touched = sorted({m + ".weight" for mods in _LORA_MODULES for m, _ in mods})
    untouched = "transformer_blocks.0.attn1.to_k.weight"
    # only the weights the LoRAs touch (and one they do not) are stored: the file stays small
    keep = set(touched) | {untouched}
    tensors: dict[str, torch.Tensor] = {k: v for k, v in weights.items() if component.sd_ops.apply_to_key(k) in keep}
    loras = []
    for i, modules in enumerate(_LORA_MODULES):
        lsd = {}
        for module, rank in modules:
            out_f, in_f = model_sd[module + ".weight"].shape
            a = (_normal(torch.Size([rank, in_f]), gen) / in_f**0.5).to(torch.bfloat16)
            b = (0.5 * _normal(torch.Size([out_f, rank]), gen)).to(torch.bfloat16)
            for name, t in (("lora_A", a), ("lora_B", b)):
                ckpt_key = f"diffusion_model.{module}.{name}.weight"
                tensors[f"input.lora{i}.{ckpt_key}"] = t
                lsd[LTXV_LORA_COMFY_RENAMING_MAP.apply_to_key(ckpt_key)] = t
        loras.append(LoraStateDictWithStrength(RefStateDict(lsd, torch.device("cpu"), 0, set()), strengths[i]))
    out = ref_compat.apply_loras(RefStateDict(model_sd, torch.device("cpu"), 0, set()), loras, target)
    for key in touched:
        tensors[f"output.fused.{key}"] = out.sd[key].float().contiguous()
    # an untouched weight is at most cast
    assert torch.equal(out.sd[untouched].float(), model_sd[untouched].float())
    return FixtureResult("lora_fuse", config, call, "0", "8e-3", tensors, {"weights_dtype": "bfloat16"})


LORA_CASES: list[Case] = [
    Case(
        "lora_fuse_bf16",
        "lora_fuse",
        114,
        "apply_loras: two ComfyUI-named LoRAs (strengths 0.8, -0.5; one module shared, ranks 2-4) fused into the tiny "
        "transformer's bf16 weights, target bf16",
        lambda ctx: lora_fuse_case(ctx, "bfloat16", [0.8, -0.5]),
    ),
    Case(
        "lora_fuse_f32",
        "lora_fuse",
        115,
        "the same LoRAs (strengths 1.0, 0.25) fused with target float32 (products rounded in bf16, sums in f32)",
        lambda ctx: lora_fuse_case(ctx, "float32", [1.0, 0.25]),
    ),
]


_MM_OFF = {"cfg_scale": 1.0, "stg_scale": 0.0, "stg_blocks": [], "rescale_scale": 0.0, "modality_scale": 1.0, "skip_step": 0}

DENOISE_CASES: list[Case] = [
    Case(
        "denoise_loop_euler_cfg",
        "denoise_loop",
        110,
        "denoise_audio_video, 3 Euler steps, CFG 3.0 on both modalities (guider_denoising_func), 9x64x64 @24 fps",
        lambda ctx: denoise_loop_case(ctx, {"loop": "euler", "sigmas": [1.0, 0.7, 0.4, 0.0], "guidance": {"kind": "cfg", "cfg_scale": 3.0}}),
    ),
    Case(
        "denoise_loop_euler_multimodal",
        "denoise_loop",
        111,
        "3 Euler steps, multimodal guidance: video CFG 3 + STG 1 (block 1) + modality 3 + rescale 0.7, audio CFG 7 + "
        "modality 3 (multi_modal_guider_denoising_func)",
        lambda ctx: denoise_loop_case(
            ctx,
            {
                "loop": "euler",
                "sigmas": [1.0, 0.8, 0.5, 0.0],
                "guidance": {
                    "kind": "multimodal",
                    "video": {**_MM_OFF, "cfg_scale": 3.0, "stg_scale": 1.0, "stg_blocks": [1], "modality_scale": 3.0, "rescale_scale": 0.7},
                    "audio": {**_MM_OFF, "cfg_scale": 7.0, "modality_scale": 3.0},
                },
            },
        ),
    ),
    Case(
        "denoise_loop_euler_simple",
        "denoise_loop",
        125,
        "the distilled pipeline's loop: 3 Euler steps, one conditional pass per step (simple_denoising_func)",
        lambda ctx: denoise_loop_case(ctx, {"loop": "euler", "sigmas": [1.0, 0.72, 0.42, 0.0], "guidance": {"kind": "simple"}}),
    ),
    Case(
        "denoise_loop_euler_ancestral",
        "denoise_loop",
        130,
        "LTX-2.5 distilled stage 1: 3 Euler ancestral steps (eta 1, s_noise 1) ending at 0, one pass per step, an "
        "image latent at frame 0 (strength 0.8: the clean latent re-blended after each noise injection)",
        lambda ctx: denoise_loop_case(
            ctx,
            {
                "loop": "euler_ancestral",
                "eta": 1.0,
                "s_noise": 1.0,
                "sigmas": [1.0, 0.7, 0.4, 0.0],
                "guidance": {"kind": "simple"},
                "cond_strength": 0.8,
            },
            conditioned=True,
        ),
    ),
    Case(
        "denoise_loop_res2s",
        "denoise_loop",
        112,
        "res2s loop, 2 steps (schedule ending at 0: 0.0011 + a final denoise), SDE noise at substep and step, bong "
        "iteration, video CFG 2 + STG 1, audio CFG 2",
        lambda ctx: denoise_loop_case(
            ctx,
            {
                "loop": "res2s",
                "sigmas": [1.0, 0.6, 0.0],
                "guidance": {
                    "kind": "multimodal",
                    "video": {**_MM_OFF, "cfg_scale": 2.0, "stg_scale": 1.0, "stg_blocks": [0]},
                    "audio": {**_MM_OFF, "cfg_scale": 2.0},
                },
            },
        ),
    ),
    Case(
        "denoise_loop_conditioned",
        "denoise_loop",
        113,
        "3 Euler steps with an image latent at frame 0 (VideoConditionByLatentIndex, strength 0.8), CFG 2, "
        "noise scale 0.9",
        lambda ctx: denoise_loop_case(
            ctx,
            {"loop": "euler", "sigmas": [0.9, 0.6, 0.3, 0.0], "guidance": {"kind": "cfg", "cfg_scale": 2.0}, "cond_strength": 0.8, "noise_scale": 0.9},
            conditioned=True,
        ),
    ),
]


TRANSFORMER_CASES: list[Case] = [
    Case(
        "transformer_ltx2_av",
        "transformer",
        20,
        "19B-style tiny AV: split RoPE (f64 grid), caption projections, A/V gate x1000; 12 video + 7 audio tokens; "
        "X0Model and LegacyX0Model predictions",
        lambda ctx: transformer_case(ctx, tiny_ltx2_transformer(), {"model_type": "audio_video", "legacy_x0": True}),
    ),
    Case(
        "transformer_ltx23_av",
        "transformer",
        21,
        "2.3-style tiny AV: gated attention, cross-attention AdaLN + prompt AdaLN, contexts at inner widths",
        lambda ctx: transformer_case(ctx, tiny_ltx23_transformer(), {"model_type": "audio_video"}),
    ),
    Case(
        "transformer_video_only",
        "transformer",
        22,
        "LTXVideoOnlyModelConfigurator (19B-style), 3 latent frames 2x2",
        lambda ctx: transformer_case(
            ctx, tiny_ltx2_transformer(), {"model_type": "video_only"}, video=(3, 2, 2), audio_frames=None
        ),
    ),
    Case(
        "transformer_audio_only",
        "transformer",
        23,
        "LTXModel(model_type=AudioOnly) (2.3-style), 9 audio tokens",
        lambda ctx: transformer_case(
            ctx, tiny_ltx23_transformer(), {"model_type": "audio_only"}, video=None, audio_frames=9
        ),
    ),
    Case(
        "transformer_conditioned",
        "transformer",
        24,
        "19B-style AV: per-token timesteps (first latent frame conditioned), a keyframe appended with attention "
        "strength 0.5 (self-attention mask), left-padded int64 text masks",
        lambda ctx: transformer_case(
            ctx,
            tiny_ltx2_transformer(),
            {"model_type": "audio_video"},
            pertoken=True,
            keyframe_attention=0.5,
            context_mask_valid=11,
        ),
    ),
    Case(
        "transformer_perturbed_b2",
        "transformer",
        25,
        "2.3-style AV, batch 2 with sigmas 0.7/0.4: sample 1 skips video self-attn on block 1, audio self-attn on "
        "block 0 and A2V everywhere (STG mixed-batch masks)",
        lambda ctx: transformer_case(
            ctx,
            tiny_ltx23_transformer(),
            {
                "model_type": "audio_video",
                "perturbations": [
                    [],
                    [
                        {"type": _SKIP_V_SELF, "blocks": [1]},
                        {"type": _SKIP_A_SELF, "blocks": [0]},
                        {"type": _SKIP_A2V, "blocks": None},
                    ],
                ],
            },
            batch=2,
            sigma=(0.7, 0.4),
        ),
    ),
    Case(
        "transformer_all_perturbed_b2",
        "transformer",
        26,
        "19B-style AV, batch 2, both samples skip video self-attn on block 0 (value pass-through) and V2A "
        "everywhere (the exchange skipped)",
        lambda ctx: transformer_case(
            ctx,
            tiny_ltx2_transformer(),
            {
                "model_type": "audio_video",
                "perturbations": [
                    [{"type": _SKIP_V_SELF, "blocks": [0]}, {"type": _SKIP_V2A, "blocks": None}],
                    [{"type": _SKIP_V_SELF, "blocks": [0]}, {"type": _SKIP_V2A, "blocks": None}],
                ],
            },
            batch=2,
        ),
    ),
    Case(
        "transformer_configurator_defaults",
        "transformer",
        27,
        "no rope_type / frequencies_precision / av_ca_timestep_scale_multiplier keys: interleaved RoPE, f32 grid, "
        "gate multiplier 1 (the configurator defaults), fps 25",
        lambda ctx: transformer_case(
            ctx,
            tiny_ltx2_transformer(
                rope_type=_ABSENT, frequencies_precision=_ABSENT, av_ca_timestep_scale_multiplier=_ABSENT
            ),
            {"model_type": "audio_video"},
            fps=25.0,
        ),
    ),
    Case(
        "transformer_ltx2_bf16",
        "transformer",
        28,
        "19B-style AV in bf16 (weights, latents, contexts, positions); tolerance 3e-2 abs + 3e-2 rel",
        lambda ctx: transformer_case(ctx, tiny_ltx2_transformer(), {"model_type": "audio_video", "dtype": "bfloat16"}),
    ),
    Case(
        "transformer_ltx2_full",
        "transformer",
        32,
        "LTX-2 19B transformer at released widths with 1 of its 48 blocks, bf16 weights; 32 video + 10 audio "
        "tokens, 32 context tokens",
        lambda ctx: transformer_case(
            ctx,
            _with_layers(full_transformer(v23=False), 1),
            {"model_type": "audio_video"},
            video=(2, 4, 4),
            audio_frames=10,
            context_len=32,
        ),
        full_size=True,
    ),
    Case(
        "transformer_ltx23_full",
        "transformer",
        33,
        "LTX-2.3 22B transformer at released widths with 1 of its 48 blocks, bf16 weights; 32 video + 10 audio "
        "tokens, 32 context tokens",
        lambda ctx: transformer_case(
            ctx,
            _with_layers(full_transformer(v23=True), 1),
            {"model_type": "audio_video"},
            video=(2, 4, 4),
            audio_frames=10,
            context_len=32,
        ),
        full_size=True,
    ),
    Case(
        "transformer_ltx25_av",
        "transformer",
        131,
        "2.5-style tiny AV: bias-free video feed-forward, keyframe embedding on the tokens the tools' keyframes_mask "
        "marks (first latent frame; an appended keyframe unmarked), first frame image-conditioned",
        lambda ctx: transformer_case(
            ctx,
            tiny_ltx25_transformer(),
            {"model_type": "audio_video"},
            pertoken=True,
            keyframe_attention=0.5,
            keyframes_mask=True,
        ),
    ),
    Case(
        "transformer_kv_cacheable",
        "transformer",
        132,
        "use_prompt_adaln_single false (text K/V modulated by the per-block table only) and audio_ff_bias false, "
        "2.5-style tiny AV, batch 2 with sigmas 0.7/0.3",
        lambda ctx: transformer_case(
            ctx,
            tiny_ltx25_transformer(use_prompt_adaln_single=False, audio_ff_bias=False),
            {"model_type": "audio_video"},
            batch=2,
            sigma=(0.7, 0.3),
            keyframes_mask=True,
        ),
    ),
    Case(
        "transformer_ltx25_video_only",
        "transformer",
        133,
        "LTXVideoOnlyModelConfigurator with the 2.5 keys (bias-free feed-forward, keyframe embedding), 3 latent "
        "frames 2x2",
        lambda ctx: transformer_case(
            ctx,
            tiny_ltx25_transformer(),
            {"model_type": "video_only"},
            video=(3, 2, 2),
            audio_frames=None,
            keyframes_mask=True,
        ),
    ),
    Case(
        "transformer_ltx25_full",
        "transformer",
        134,
        "LTX-2.5 22B transformer, the released header's config, 1 of its 48 blocks, bf16 weights; 32 video + 10 "
        "audio tokens (first frame marked), 32 context tokens",
        lambda ctx: transformer_case(
            ctx,
            _with_layers(full_ltx25_transformer(), 1),
            {"model_type": "audio_video"},
            video=(2, 4, 4),
            audio_frames=10,
            context_len=32,
            keyframes_mask=True,
        ),
        full_size=True,
    ),
    Case(
        "transformer_manifest_ltx25",
        "transformer_manifest",
        135,
        "released LTX-2.5 22B transformer (header config): every parameter name and shape (meta-device reference "
        "model)",
        lambda ctx: transformer_manifest_case(ctx, v23=True, config=full_ltx25_transformer()),
    ),
    Case(
        "transformer_manifest_ltx2",
        "transformer_manifest",
        30,
        "released LTX-2 19B transformer: every parameter name and shape (meta-device reference model)",
        lambda ctx: transformer_manifest_case(ctx, v23=False),
    ),
    Case(
        "transformer_manifest_ltx23",
        "transformer_manifest",
        31,
        "released LTX-2.3 22B transformer: every parameter name and shape (meta-device reference model)",
        lambda ctx: transformer_manifest_case(ctx, v23=True),
    ),
]


# ---------------------------------------------------------------------------------------------------------
# Latent upsampler: flat file config, no key prefix
# ---------------------------------------------------------------------------------------------------------



def tiny_upsampler(**overrides: Any) -> dict:
    """PYTORCH-REFERENCE.md 5: in 8, mid 32, one block per stage, Conv3d stages, spatial x2."""
    cfg = {
        "in_channels": 8,
        "mid_channels": 32,
        "num_blocks_per_stage": 1,
        "dims": 3,
        "spatial_upsample": True,
        "temporal_upsample": False,
        "spatial_scale": 2.0,
        "rational_resampler": False,
    }
    cfg.update(overrides)
    return cfg


def full_upsampler(**overrides: Any) -> dict:
    """Released widths (in 128, mid 1024, 4 blocks per stage; LTX-ARCH.md 2.7 / PYTORCH-REFERENCE.md 7)."""
    return tiny_upsampler(in_channels=128, mid_channels=1024, num_blocks_per_stage=4, **overrides)


def run_latent_upsampler(
    model: Any,
    inputs: dict[str, torch.Tensor],
    call: dict,
    generator: torch.Generator | None,
    optional_outputs: frozenset = frozenset(),
) -> tuple[dict, dict]:
    """`forward`, or `upsample_video` with the encoder statistics given as inputs."""
    from types import SimpleNamespace

    from ltx_core.model.upsampler import upsample_video
    from ltx_core.model.video_vae.ops import PerChannelStatistics

    del generator
    if optional_outputs:
        raise ValueError(f"latent_upsampler has no optional outputs, asked for {sorted(optional_outputs)}")
    dtype = next(model.parameters()).dtype
    latent = inputs["latent"].to(dtype)
    with torch.inference_mode():
        if call.get("op", "forward") == "forward":
            return {"latent": model(latent)}, {}
        stats = PerChannelStatistics(latent.shape[1]).to(dtype)
        stats.get_buffer("std-of-means").copy_(inputs["std_of_means"])
        stats.get_buffer("mean-of-means").copy_(inputs["mean_of_means"])
        encoder = SimpleNamespace(per_channel_statistics=stats)
        return {"latent": upsample_video(latent, encoder, model)}, {}


def latent_upsampler_case(
    ctx: CaseContext, config: dict, latent_shape: tuple[int, ...], op: str = "forward"
) -> FixtureResult:
    gen = ctx.generator(STREAM_INPUT)
    inputs = {"latent": _normal(torch.Size(latent_shape), gen).to(_input_dtype(ctx))}
    if op == "upsample_video":
        c = latent_shape[1]
        inputs["std_of_means"] = _uniform(torch.Size([c]), 0.5, 1.5, gen).to(_input_dtype(ctx))
        inputs["mean_of_means"] = (0.1 * _normal(torch.Size([c]), gen)).to(_input_dtype(ctx))
    return reference_case(ctx, "latent_upsampler", config, inputs, {"op": op})


UPSAMPLER_CASES: list[Case] = [
    Case(
        "latent_upsampler_spatial",
        "latent_upsampler",
        35,
        "spatial x2 (Conv3d stages, per-frame Conv2d + 2-D pixel shuffle), latent [1,8,3,2,3]",
        lambda ctx: latent_upsampler_case(ctx, tiny_upsampler(), (1, 8, 3, 2, 3)),
    ),
    Case(
        "latent_upsampler_spatial_video",
        "latent_upsampler",
        36,
        "upsample_video with encoder statistics around the spatial x2 upsampler (no res blocks), batch 2",
        lambda ctx: latent_upsampler_case(
            ctx, tiny_upsampler(num_blocks_per_stage=0), (2, 8, 2, 3, 2), op="upsample_video"
        ),
    ),
    Case(
        "latent_upsampler_temporal",
        "latent_upsampler",
        37,
        "temporal x2 (no res blocks), first frame dropped: [1,8,3,2,3] -> 5 frames",
        lambda ctx: latent_upsampler_case(
            ctx, tiny_upsampler(spatial_upsample=False, temporal_upsample=True, num_blocks_per_stage=0), (1, 8, 3, 2, 3)
        ),
    ),
    Case(
        "latent_upsampler_spatiotemporal",
        "latent_upsampler",
        38,
        "spatial + temporal x2 (Conv3d to 8x channels, 3-D pixel shuffle)",
        lambda ctx: latent_upsampler_case(
            ctx, tiny_upsampler(temporal_upsample=True, num_blocks_per_stage=0), (1, 8, 2, 2, 2)
        ),
    ),
    Case(
        "latent_upsampler_rational_1_5",
        "latent_upsampler",
        39,
        "rational x1.5 (pixel shuffle 3, binomial blur stride 2), latent [1,8,2,4,6]",
        lambda ctx: latent_upsampler_case(
            ctx, tiny_upsampler(rational_resampler=True, spatial_scale=1.5, num_blocks_per_stage=0), (1, 8, 2, 4, 6)
        ),
    ),
    Case(
        "latent_upsampler_rational_0_75",
        "latent_upsampler",
        40,
        "rational x0.75 (shuffle 3, blur stride 4)",
        lambda ctx: latent_upsampler_case(
            ctx, tiny_upsampler(rational_resampler=True, spatial_scale=0.75, num_blocks_per_stage=0), (1, 8, 1, 4, 8)
        ),
    ),
    Case(
        "latent_upsampler_rational_4",
        "latent_upsampler",
        41,
        "rational x4 (shuffle 4, no blur)",
        lambda ctx: latent_upsampler_case(
            ctx, tiny_upsampler(rational_resampler=True, spatial_scale=4.0, num_blocks_per_stage=0), (1, 8, 1, 2, 2)
        ),
    ),
    Case(
        "latent_upsampler_dims2",
        "latent_upsampler",
        42,
        "dims 2: Conv2d stages per frame, spatial x2",
        lambda ctx: latent_upsampler_case(ctx, tiny_upsampler(dims=2), (1, 8, 2, 2, 3)),
    ),
    Case(
        "latent_upsampler_spatial_full",
        "latent_upsampler",
        43,
        "spatial x2 at released widths (in 128, mid 1024, 4 blocks per stage), bf16 weights, latent [1,128,2,4,4]",
        lambda ctx: latent_upsampler_case(ctx, full_upsampler(), (1, 128, 2, 4, 4)),
        full_size=True,
    ),
    Case(
        "latent_upsampler_temporal_full",
        "latent_upsampler",
        44,
        "temporal x2 at released widths, bf16 weights, latent [1,128,3,4,4]",
        lambda ctx: latent_upsampler_case(
            ctx, full_upsampler(spatial_upsample=False, temporal_upsample=True), (1, 128, 3, 4, 4)
        ),
        full_size=True,
    ),
]


# ---------------------------------------------------------------------------------------------------------
# Text path: feature extractors + embeddings connectors (EmbeddingsProcessor) on stand-in Gemma hidden states
# ---------------------------------------------------------------------------------------------------------

_CONNECTOR_V1 = {
    "connector_num_attention_heads": 2,
    "connector_attention_head_dim": 12,
    "connector_num_layers": 2,
    "connector_positional_embedding_max_pos": [4096],
}
_CONNECTOR_V2 = {
    **_CONNECTOR_V1,
    "connector_apply_gated_attention": True,
    "connector_attention_head_dim": 16,
    "audio_connector_num_attention_heads": 2,
    "audio_connector_attention_head_dim": 8,
}
# tiny Gemma stand-in: hidden 24, 3 layers (+ embeddings = 4 hidden states); PYTORCH-REFERENCE.md 5
TINY_GEMMA_DIMS = {"gemma_hidden_size": 24, "gemma_num_hidden_layers": 3}


class _EmbeddingsProcessorConfigurator:
    def __init__(self, call: dict) -> None:
        self.call = call

    def from_config(self, config: dict) -> Any:
        dims = (self.call["gemma_hidden_size"], self.call["gemma_num_hidden_layers"])
        with ref_compat.embeddings_processor_configurator(*dims) as configurator:
            return ref_compat.build_model(configurator, config)


def embeddings_processor_checkpoint_key(key: str) -> str:
    """Module-side EmbeddingsProcessor keys -> released checkpoint keys (the inverse of
    EMBEDDINGS_PROCESSOR_KEY_OPS)."""
    for module, checkpoint in (
        ("feature_extractor.", "text_embedding_projection."),
        ("video_connector.", "model.diffusion_model.video_embeddings_connector."),
        ("audio_connector.", "model.diffusion_model.audio_embeddings_connector."),
    ):
        if key.startswith(module):
            return checkpoint + key[len(module) :]
    raise KeyError(key)


def run_embeddings_processor(
    model: Any,
    inputs: dict[str, torch.Tensor],
    call: dict,
    generator: torch.Generator | None,
    optional_outputs: frozenset = frozenset(),
) -> tuple[dict, dict]:
    """`op` = `process` (EmbeddingsProcessor.process_hidden_states, plus the feature extractor's outputs) or
    `feature_extractor` (only the features, `padding_side` from the call)."""
    del generator, optional_outputs
    dtype = next(model.parameters()).dtype
    hidden = inputs["hidden_states"].to(dtype)
    states = tuple(hidden[..., i] for i in range(hidden.shape[-1]))
    mask = inputs["attention_mask"]
    side = call.get("padding_side", "left")
    with torch.inference_mode():
        video_f, audio_f = model.feature_extractor(states, mask, side)
        outputs = {"video_features": video_f, "audio_features": audio_f}
        if call["op"] == "process":
            out = model.process_hidden_states(states, mask, side)
            outputs.update(
                video_encoding=out.video_encoding, audio_encoding=out.audio_encoding, attention_mask=out.attention_mask
            )
    # V1 returns one tensor as both features: store separate copies
    return {k: v.clone() for k, v in outputs.items() if v is not None}, {}


FULL_GEMMA_DIMS = {"gemma_hidden_size": 3840, "gemma_num_hidden_layers": 48}


def full_connectors(v23: bool) -> dict:
    """Released connector widths (LTX-ARCH.md 2.3) with 1 layer each (the released 2 / 8 do not fit a 24 GB
    machine in float32 next to the 188160-wide projections)."""
    base = {"connector_positional_embedding_max_pos": [4096], "connector_num_layers": 1}
    if not v23:
        return {**base, "connector_num_attention_heads": 30, "connector_attention_head_dim": 128}
    return {
        **base,
        "connector_num_attention_heads": 32,
        "connector_attention_head_dim": 128,
        "connector_apply_gated_attention": True,
        "audio_connector_num_attention_heads": 32,
        "audio_connector_attention_head_dim": 64,
        "audio_connector_num_layers": 1,
    }


def embeddings_processor_case(
    ctx: CaseContext, config: dict, op: str, valid: int, side: str = "left", dims: dict | None = None
) -> FixtureResult:
    call = {"op": op, "padding_side": side, **(dims or TINY_GEMMA_DIMS)}
    gen = ctx.generator(STREAM_INPUT)
    t, d, layers = 128, call["gemma_hidden_size"], call["gemma_num_hidden_layers"] + 1
    hidden = _normal(torch.Size([1, t, d, layers]), gen).to(_input_dtype(ctx))
    mask = torch.zeros(1, t, dtype=torch.int64)
    if side == "left":
        mask[:, t - valid :] = 1
    else:
        mask[:, :valid] = 1
    return reference_case(ctx, "embeddings_processor", config, {"hidden_states": hidden, "attention_mask": mask}, call)


TEXT_CASES: list[Case] = [
    Case(
        "embeddings_processor_v1",
        "embeddings_processor",
        45,
        "19B text path: FeatureExtractorV1 (masked mean/range norm, shared projection), video + audio connectors "
        "(split RoPE, f64 grid, max_pos 4096, 128 registers); 128 tokens, 37 valid (left padded)",
        lambda ctx: embeddings_processor_case(ctx, tiny_ltx2_transformer(**_CONNECTOR_V1), "process", 37),
    ),
    Case(
        "embeddings_processor_v2",
        "embeddings_processor",
        46,
        "2.3 text path: FeatureExtractorV2 (per-token RMS, rescaled video/audio projections), gated connectors "
        "of different widths; 128 tokens, 90 valid",
        lambda ctx: embeddings_processor_case(ctx, tiny_ltx23_transformer(**_CONNECTOR_V2), "process", 90),
    ),
    Case(
        "feature_extractor_v1_right",
        "embeddings_processor",
        47,
        "FeatureExtractorV1 with right padding (the masked statistics on the other side), 20 valid tokens",
        lambda ctx: embeddings_processor_case(
            ctx, tiny_ltx2_transformer(**_CONNECTOR_V1), "feature_extractor", 20, side="right"
        ),
    ),
    Case(
        "embeddings_processor_v1_full",
        "embeddings_processor",
        48,
        "19B text path at released widths (Gemma 3840 x 49 states, aggregate_embed 188160->3840, 30x128 connectors "
        "with 1 layer), bf16 weights; 128 tokens, 37 valid",
        lambda ctx: embeddings_processor_case(
            ctx, {"transformer": {**full_transformer(False)["transformer"], **full_connectors(False)}}, "process", 37,
            dims=FULL_GEMMA_DIMS,
        ),
        full_size=True,
    ),
    Case(
        "embeddings_processor_v2_full",
        "embeddings_processor",
        49,
        "2.3 text path at released widths (V2 projections 188160->4096/2048, gated 32x128 / 32x64 connectors with "
        "1 layer), bf16 weights; 128 tokens, 90 valid",
        lambda ctx: embeddings_processor_case(
            ctx, {"transformer": {**full_transformer(True)["transformer"], **full_connectors(True)}}, "process", 90,
            dims=FULL_GEMMA_DIMS,
        ),
        full_size=True,
    ),
]


# ---------------------------------------------------------------------------------------------------------
# Audio VAE (encoder / decoder)
# ---------------------------------------------------------------------------------------------------------


def tiny_audio_vae(**dd: Any) -> dict:
    """PYTORCH-REFERENCE.md 5: ch 8, ch_mult [1, 2, 2], 1 res block, z 2 (double_z), pixel norm, causal on time,
    16 mel bins; `dd` overrides ddconfig keys."""
    ddconfig = {
        "ch": 8,
        "out_ch": 2,
        "in_channels": 2,
        "ch_mult": [1, 2, 2],
        "num_res_blocks": 1,
        "attn_resolutions": [],
        "resolution": 256,
        "z_channels": 2,
        "double_z": True,
        "norm_type": "pixel",
        "causality_axis": "height",
        "dropout": 0.0,
        "mid_block_add_attention": False,
        "mel_bins": 16,
    }
    ddconfig.update(dd)
    return {
        "audio_vae": {
            "model": {"params": {"sampling_rate": 16000, "ddconfig": ddconfig}},
            "preprocessing": {"stft": {"hop_length": 160, "filter_length": 1024, "causal": True}, "mel": {"n_mel_channels": 16}},
        }
    }


def audio_vae_checkpoint_key(part: str) -> Callable[[str], str]:
    def key(k: str) -> str:
        if k.startswith("per_channel_statistics."):
            return "audio_vae." + k
        return f"audio_vae.{part}." + k

    return key


def run_audio_encoder(model: Any, inputs: dict, call: dict, generator: Any, optional_outputs: frozenset = frozenset()) -> tuple[dict, dict]:
    del call, generator, optional_outputs
    with torch.inference_mode():
        return {"latent": model(inputs["mel"].to(next(model.parameters()).dtype))}, {}


def run_audio_decoder(model: Any, inputs: dict, call: dict, generator: Any, optional_outputs: frozenset = frozenset()) -> tuple[dict, dict]:
    del call, generator, optional_outputs
    with torch.inference_mode():
        return {"mel": model(inputs["latent"].to(next(model.parameters()).dtype))}, {}


def audio_case(ctx: CaseContext, component: str, config: dict, shape: tuple[int, ...]) -> FixtureResult:
    name = "latent" if component == "audio_decoder" else "mel"
    inputs = {name: _normal(torch.Size(shape), ctx.generator(STREAM_INPUT)).to(_input_dtype(ctx))}
    return reference_case(ctx, component, config, inputs, {})


TINY_VOCODER = {
    "resblock": "1",
    "stereo": True,
    "upsample_initial_channel": 16,
    "upsample_rates": [5, 4],
    "upsample_kernel_sizes": [15, 8],
    "resblock_kernel_sizes": [3, 7],
    "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5]],
    "output_sampling_rate": 24000,
}


class _GeneratorOnly:
    """One `Vocoder` built straight from the flat `vocoder` section (`_vocoder_from_config`): the BigVGAN
    generators the configurator only builds inside `VocoderWithBWE`."""

    def __init__(self, apply_final_activation: bool) -> None:
        self.apply_final_activation = apply_final_activation

    def from_config(self, config: dict) -> Any:
        from ltx_core.model.audio_vae.model_configurator import _vocoder_from_config

        return _vocoder_from_config(config["vocoder"], apply_final_activation=self.apply_final_activation)


def vocoder_configurator(call: dict) -> Any:
    if "generator_only" in call:
        return _GeneratorOnly(call["generator_only"].get("apply_final_activation", True))
    return VocoderConfigurator


def tiny_amp(ch: int, rates: list[int], kernels: list[int], **kw: Any) -> dict:
    cfg = {
        "resblock": "AMP1",
        "stereo": True,
        "activation": "snakebeta",
        "upsample_initial_channel": ch,
        "upsample_rates": rates,
        "upsample_kernel_sizes": kernels,
        "resblock_kernel_sizes": [3, 5],
        "resblock_dilation_sizes": [[1, 3, 5], [1, 2, 3]],
        "use_tanh_at_final": False,
        "use_bias_at_final": False,
    }
    cfg.update(kw)
    return cfg


def tiny_bwe(pad_path: bool) -> dict:
    """LTX-2.3 layout at tiny width: AMP1/snakebeta vocoder -> 16 kHz, causal STFT (n_fft 16, hop 4, 64 mels),
    BWE generator (x12 = hop x ratio 3) -> 48 kHz. With `pad_path` the vocoder's hop (6) is not a multiple of the
    STFT hop, so the reference pads the 16 kHz signal and crops the result."""
    voc = tiny_amp(16, [2, 3], [4, 5]) if pad_path else tiny_amp(16, [2, 2], [4, 4])
    bwe = tiny_amp(8, [3, 2, 2], [5, 4, 4])
    bwe.update({"n_fft": 16, "hop_length": 4, "num_mels": 64, "input_sampling_rate": 16000, "output_sampling_rate": 48000})
    return {"vocoder": {"vocoder": voc, "bwe": bwe}}


def full_bwe() -> dict:
    """The released LTX-2.3 vocoder (LTX-ARCH.md 2.6)."""
    dil = [[1, 3, 5], [1, 3, 5], [1, 3, 5]]
    voc = tiny_amp(1536, [5, 2, 2, 2, 2, 2], [11, 4, 4, 4, 4, 4], resblock_kernel_sizes=[3, 7, 11], resblock_dilation_sizes=dil)
    bwe = tiny_amp(512, [6, 5, 2, 2, 2], [12, 11, 4, 4, 4], resblock_kernel_sizes=[3, 7, 11], resblock_dilation_sizes=dil)
    bwe.update({"n_fft": 512, "hop_length": 80, "num_mels": 64, "input_sampling_rate": 16000, "output_sampling_rate": 48000})
    return {"vocoder": {"vocoder": voc, "bwe": bwe}}


FULL_HIFIGAN = {
    "resblock": "1",
    "stereo": True,
    "upsample_initial_channel": 1024,
    "upsample_rates": [6, 5, 2, 2, 2],
    "upsample_kernel_sizes": [16, 15, 8, 4, 4],
    "resblock_kernel_sizes": [3, 7, 11],
    "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]],
    "output_sampling_rate": 24000,
}


def vocoder_case(ctx: CaseContext, config: dict, shape: tuple[int, ...], call: dict | None = None) -> FixtureResult:
    # log-mel-like input: around -4 (the decoder's typical level), unit spread
    inputs = {"mel": (_normal(torch.Size(shape), ctx.generator(STREAM_INPUT)) - 4.0).to(_input_dtype(ctx))}
    return reference_case(ctx, "vocoder", config, inputs, call or {})


def run_vocoder(model: Any, inputs: dict, call: dict, generator: Any, optional_outputs: frozenset = frozenset()) -> tuple[dict, dict]:
    del call, generator, optional_outputs
    with torch.inference_mode():
        return {"waveform": model(inputs["mel"].to(next(model.parameters()).dtype))}, {}


AUDIO_CASES: list[Case] = [
    Case(
        "vocoder_hifigan",
        "vocoder",
        0,
        "LTX-2 HiFi-GAN vocoder (resblock 1, stereo) at tiny width: mel [1,2,12,64] -> waveform [1,2,240]",
        lambda ctx: audio_case(ctx, "vocoder", {"vocoder": TINY_VOCODER}, (1, 2, 12, 64)),
    ),
    Case(
        "vocoder_bigvgan_snake",
        "vocoder",
        29,
        "BigVGAN-v2 generator (AMP1, Snake, tanh, final bias) at tiny width: mel [1,2,7,64] -> [1,2,28]",
        lambda ctx: vocoder_case(
            ctx,
            {"vocoder": tiny_amp(16, [2, 2], [4, 4], activation="snake", use_tanh_at_final=True, use_bias_at_final=True)},
            (1, 2, 7, 64),
            {"generator_only": {"apply_final_activation": True}},
        ),
    ),
    Case(
        "vocoder_bigvgan_snakebeta",
        "vocoder",
        34,
        "BigVGAN-v2 generator (AMP1, SnakeBeta, no final activation, no final bias; the BWE generator's form), "
        "batch 2, mel [2,2,5,64] -> [2,2,30]",
        lambda ctx: vocoder_case(
            ctx, {"vocoder": tiny_amp(16, [3, 2], [5, 4])}, (2, 2, 5, 64), {"generator_only": {"apply_final_activation": False}}
        ),
    ),
    Case(
        "vocoder_bwe",
        "vocoder",
        50,
        "LTX-2.3 VocoderWithBWE at tiny width: AMP vocoder x4 -> causal STFT (n_fft 16, hop 4) -> BWE x12 + hann x3 "
        "skip, clamp; mel [1,2,6,64] -> [1,2,72]",
        lambda ctx: vocoder_case(ctx, tiny_bwe(False), (1, 2, 6, 64)),
    ),
    Case(
        "vocoder_bwe_pad",
        "vocoder",
        67,
        "VocoderWithBWE whose vocoder hop (6) is not a multiple of the STFT hop (4): pad, BWE, crop; "
        "mel [1,2,7,64] -> [1,2,126]",
        lambda ctx: vocoder_case(ctx, tiny_bwe(True), (1, 2, 7, 64)),
    ),
    Case(
        "vocoder_hifigan_full",
        "vocoder",
        68,
        "LTX-2 HiFi-GAN vocoder at released width, bf16 weights, mel [1,2,20,64] -> 4800 samples at 24 kHz",
        lambda ctx: vocoder_case(ctx, {"vocoder": FULL_HIFIGAN}, (1, 2, 20, 64)),
        full_size=True,
    ),
    Case(
        "vocoder_bwe_full",
        "vocoder",
        69,
        "LTX-2.3 VocoderWithBWE at released widths, bf16 weights, mel [1,2,20,64] -> 9600 samples at 48 kHz",
        lambda ctx: vocoder_case(ctx, full_bwe(), (1, 2, 20, 64)),
        full_size=True,
    ),
    Case(
        "audio_encoder",
        "audio_encoder",
        6,
        "audio VAE encoder (released layout at tiny width: causal on time, pixel norm, double_z), mel [1,2,33,16]",
        lambda ctx: audio_case(ctx, "audio_encoder", tiny_audio_vae(), (1, 2, 33, 16)),
    ),
    Case(
        "audio_encoder_attn",
        "audio_encoder",
        7,
        "audio encoder with attention at the first level and in the mid block, batch 2, mel [2,2,20,16]",
        lambda ctx: audio_case(
            ctx, "audio_encoder", tiny_audio_vae(attn_resolutions=[256], mid_block_add_attention=True), (2, 2, 20, 16)
        ),
    ),
    Case(
        "audio_decoder",
        "audio_decoder",
        8,
        "audio VAE decoder, latent [1,2,9,4] -> mel [1,2,33,16] (4T-3 frames)",
        lambda ctx: audio_case(ctx, "audio_decoder", tiny_audio_vae(), (1, 2, 9, 4)),
    ),
    Case(
        "audio_decoder_attn",
        "audio_decoder",
        9,
        "audio decoder with attention (first level, mid block), latent [1,2,7,4] -> 25 frames",
        lambda ctx: audio_case(
            ctx, "audio_decoder", tiny_audio_vae(attn_resolutions=[256], mid_block_add_attention=True), (1, 2, 7, 4)
        ),
    ),
    Case(
        "audio_decoder_noncausal",
        "audio_decoder",
        10,
        "non-causal audio decoder with GroupNorm (ch 32, z 8: the statistics cover z x mel/4 = 32 features), "
        "latent [1,8,3,4] -> 12 frames",
        lambda ctx: audio_case(
            ctx,
            "audio_decoder",
            tiny_audio_vae(ch=32, ch_mult=[1, 1, 1], z_channels=8, causality_axis=None, norm_type="group"),
            (1, 8, 3, 4),
        ),
    ),
]


VAE_CASES: list[Case] = [
    # ----- video_encoder ---------------------------------------------------------------------------------
    Case(
        "video_encoder_ltx2",
        "video_encoder",
        1,
        "LTX-2 encoder layout, tiny widths, no spatial_padding_mode key (zeros), 9 frames, non-square 64x32",
        lambda ctx: video_encoder_case(ctx, tiny_ltx2_vae(), (1, 3, 9, 64, 32)),
    ),
    Case(
        "video_encoder_ltx23",
        "video_encoder",
        2,
        "LTX-2.3 encoder layout, tiny widths, latent 4, spatial_padding_mode zeros, 9 frames, 32x32",
        lambda ctx: video_encoder_case(ctx, tiny_ltx23_vae(), (1, 3, 9, 32, 32)),
    ),
    Case(
        "video_encoder_crop",
        "video_encoder",
        3,
        "12 input frames: the reference crops the last 3 (-> 9 frames, latent F 2) with a warning",
        lambda ctx: video_encoder_case(ctx, tiny_ltx2_vae(), (1, 3, 12, 32, 32)),
    ),
    Case(
        "video_encoder_tiled",
        "video_encoder",
        4,
        "tiled_encode, spatial 96/64 px + temporal 24/16 frames on 25x128x32: 2 tiles in H, 1 in W, 2 in time "
        "(latent grid, causal time split, complementary trapezoids)",
        lambda ctx: video_encoder_case(
            ctx, tiny_ltx2_vae(), (1, 3, 25, 128, 32), tiling=make_tiling((96, 64), (24, 16))
        ),
    ),
    Case(
        "video_encoder_tiled_w",
        "video_encoder",
        5,
        "tiled_encode of a single frame 32x160, spatial 128/96 px (2 tiles in W, 3 latents ramped), no temporal",
        lambda ctx: video_encoder_case(ctx, tiny_ltx2_vae(), (1, 3, 1, 32, 160), tiling=make_tiling((128, 96), None)),
    ),
    Case(
        "video_encoder_tiled_t",
        "video_encoder",
        105,
        "tiled_encode, temporal 24/16 frames only on 33x32x32: 3 tiles in time whose masks do not sum to 1 "
        "(causal left ramp 3 meets right ramp 2), so the blend is normalised",
        lambda ctx: video_encoder_case(ctx, tiny_ltx2_vae(), (1, 3, 33, 32, 32), tiling=make_tiling(None, (24, 16))),
    ),
    # ----- video_decoder ---------------------------------------------------------------------------------
    Case(
        "video_decoder_ltx2",
        "video_decoder",
        11,
        "LTX-2 decoder layout (res_x + 3x compress_all residual), tiny, no padding key (reflect), no TC, "
        "plus output.frames (decode_video uint8)",
        lambda ctx: video_decoder_case(ctx, tiny_ltx2_vae(), (1, 8, 2, 2, 2), frames=True),
    ),
    Case(
        "video_decoder_ltx2_tc",
        "video_decoder",
        12,
        "LTX-2 layout with timestep_conditioning, default timestep (0.05), input.noise, single latent frame",
        lambda ctx: video_decoder_case(ctx, tiny_ltx2_vae(timestep_conditioning=True), (1, 8, 1, 2, 2)),
    ),
    Case(
        "video_decoder_ltx2_tc_t",
        "video_decoder",
        13,
        "LTX-2 layout with timestep_conditioning, explicit timestep 0.3, batch 2, single latent frame",
        lambda ctx: video_decoder_case(ctx, tiny_ltx2_vae(timestep_conditioning=True), (2, 8, 1, 2, 2), timestep=0.3),
    ),
    Case(
        "video_decoder_ltx23",
        "video_decoder",
        14,
        "LTX-2.3 decoder layout (non-residual compress_all m2, compress_all m1, compress_time, compress_space), "
        "tiny, latent 4, spatial_padding_mode zeros, no TC, 2 latent frames at 1x1",
        lambda ctx: video_decoder_case(ctx, tiny_ltx23_vae(), (1, 4, 2, 1, 1)),
    ),
    Case(
        "video_decoder_causal",
        "video_decoder",
        15,
        "LTX-2.3 layout with causal_decoder true (first frame replicated twice in front), 2 latent frames at 1x1, "
        "plus output.frames (decode_video uint8)",
        lambda ctx: video_decoder_case(ctx, tiny_ltx23_vae(causal_decoder=True), (1, 4, 2, 1, 1), frames=True),
    ),
    Case(
        "video_decoder_replicate",
        "video_decoder",
        16,
        "LTX-2.3 layout with spatial_padding_mode replicate, single latent frame, 64x64",
        lambda ctx: video_decoder_case(ctx, tiny_ltx23_vae(spatial_padding_mode="replicate"), (1, 4, 1, 2, 2)),
    ),
    Case(
        "video_decoder_tiled",
        "video_decoder",
        17,
        "tiled_decode, spatial 64/32 px + temporal 16/8 frames on latent 3x3x1: 2 tiles in H x 2 in time "
        "(latents [0,2) and [0,3), ramped blend, chunks of 0 + 17 frames)",
        lambda ctx: video_decoder_case(
            ctx, tiny_ltx23_vae(), (1, 4, 3, 3, 1), tiling=make_tiling((64, 32), (16, 8))
        ),
    ),
    Case(
        "video_decoder_tiled_t16",
        "video_decoder",
        19,
        "tiled_decode, temporal only 16/8 frames (2/1 latents) on 4 latent frames: 3 tiles, latents [0,2), "
        "[0,3) (shifted back to latent 0: degenerate, 0-frame first chunk) and [1,4) (regular ramped split); "
        "chunks of 0 + 8 + 17 frames",
        lambda ctx: video_decoder_case(ctx, tiny_ltx23_vae(), (1, 4, 4, 1, 1), tiling=make_tiling(None, (16, 8))),
    ),
    Case(
        "video_decoder_tiled_spatial_only_temporal_whole",
        "video_decoder",
        18,
        "tiled_decode of a single latent frame 3x6, spatial 160/32 px (H tile round(2.5)=2 -> 2 tiles, "
        "W tile 5 -> 2 tiles), temporal 16/8 covering everything (spatial-only config crashes upstream)",
        lambda ctx: video_decoder_case(
            ctx, tiny_ltx23_vae(), (1, 4, 1, 3, 6), tiling=make_tiling((160, 32), (16, 8))
        ),
    ),
    # ----- full-size (released widths, bf16-rounded weights) -------------------------------------------
    Case(
        "video_decoder_ltx2_full",
        "video_decoder",
        51,
        "LTX-2 19B decoder, released widths, bf16 weights, latent [1,128,2,4,4]",
        lambda ctx: video_decoder_case(ctx, full_ltx2_vae(), (1, 128, 2, 4, 4)),
        full_size=True,
    ),
    Case(
        "video_decoder_ltx23_full",
        "video_decoder",
        52,
        "LTX-2.3 22B decoder, released widths, bf16 weights, latent [1,128,2,4,4]",
        lambda ctx: video_decoder_case(ctx, full_ltx23_vae(), (1, 128, 2, 4, 4)),
        full_size=True,
    ),
    Case(
        "video_encoder_ltx2_full",
        "video_encoder",
        53,
        "LTX-2 19B encoder, released widths, bf16 weights, video [1,3,9,128,128]",
        lambda ctx: video_encoder_case(ctx, full_ltx2_vae(), (1, 3, 9, 128, 128)),
        full_size=True,
    ),
    Case(
        "video_encoder_ltx23_full",
        "video_encoder",
        54,
        "LTX-2.3 22B encoder, released widths, bf16 weights, video [1,3,9,128,128]",
        lambda ctx: video_encoder_case(ctx, full_ltx23_vae(), (1, 3, 9, 128, 128)),
        full_size=True,
    ),
]


# ---------------------------------------------------------------------------------------------------------
# LTX-2.5: the conv video VAE, the audio VAE + vocoder and the latent upsamplers at the released headers'
# configs (tests/reference/released_ltx25/*.metadata.json). Tiny cases change only the widths.
# ---------------------------------------------------------------------------------------------------------

LTX25_CONV_VAE = "ltx-2.5-video-vae-conv-bf16"
LTX25_AUDIO_VAE = "ltx-2.5-audio-vae-bf16"
LTX25_SPATIAL_UPSAMPLER = "ltx-2.5-latent-spatial-upscaler-x2-bf16-1.0"
LTX25_TEMPORAL_UPSAMPLER = "ltx-2.5-latent-temporal-upscaler-x2-bf16-1.0"


def ltx25_config(name: str) -> dict:
    """The `config` metadata of a released LTX-2.5 file, verbatim (a fresh copy)."""
    return json.loads(json.dumps(released_ltx25_metadata(name)["config"]))


def tiny_ltx25_vae() -> dict:
    """The 2.5 conv VAE header (block list, `latent_log_var: uniform`, zeros padding, non-causal decoder, no
    timestep conditioning) with latent 4 instead of 128: encoder widths 4, 8, 16, 32, 32 (multipliers 2/2/2/1
    as released), decoder base 4 (bottleneck 4 x 2*1*2*2 = 32 -> 16 -> 16 -> 8 -> 4)."""
    config = ltx25_config(LTX25_CONV_VAE)
    config["vae"].update({"latent_channels": 4, "encoder_base_channels": 4, "decoder_base_channels": 4})
    return config


def tiny_ltx25_audio_vae() -> dict:
    """The 2.5 audio VAE header's `audio_vae` section at tiny widths: ch 8, z 2, 16 mels (released 128, 8, 64;
    the latent statistics are `ch` wide and cover z x mels/4 features, so the three shrink together). ch_mult
    [1,2,4], 2 res blocks, double_z, no attention, causal on time, pixel norm: as released."""
    audio = ltx25_config(LTX25_AUDIO_VAE)["audio_vae"]
    audio["model"]["params"]["ddconfig"].update({"ch": 8, "z_channels": 2, "mel_bins": 16})
    audio["preprocessing"]["mel"]["n_mel_channels"] = 16
    return {"audio_vae": audio}


def tiny_ltx25_vocoder() -> dict:
    """The 2.5 header's `vocoder` section (BigVGAN AMP1/snakebeta x160, resblock kernels 3/7/11 -> causal STFT,
    hop 80, 64 mels -> BWE x240 -> 48 kHz) with initial widths 64 (vocoder, released 1536) and 32 (BWE, released
    512), which the six / five upsampling stages halve to 1, and an STFT of 128 instead of 512 (its stored DFT
    bases would be 1 MB)."""
    vocoder = ltx25_config(LTX25_AUDIO_VAE)["vocoder"]
    vocoder["vocoder"]["upsample_initial_channel"] = 64
    vocoder["bwe"].update({"upsample_initial_channel": 32, "n_fft": 128, "win_size": 128})
    return {"vocoder": vocoder}


def tiny_ltx25_upsampler(name: str) -> dict:
    """A 2.5 upsampler header with in 8 / mid 32 instead of 128 / 1024 (spatial) or 128 / 512 (temporal) and 2
    blocks per stage instead of 4 (half the fixture)."""
    config = ltx25_config(name)
    config.update({"in_channels": 8, "mid_channels": 32, "num_blocks_per_stage": 2})
    return config


LTX25_CASES: list[Case] = [
    Case(
        "video_encoder_ltx25",
        "video_encoder",
        150,
        "LTX-2.5 conv VAE encoder from the released header (blocks, uniform log-var, zeros padding), latent 4, "
        "widths 4..32, video [1,3,9,64,32]",
        lambda ctx: video_encoder_case(ctx, tiny_ltx25_vae(), (1, 3, 9, 64, 32)),
    ),
    Case(
        "video_decoder_ltx25",
        "video_decoder",
        151,
        "LTX-2.5 conv VAE decoder from the released header (compress_all m2/m1, compress_time, compress_space, "
        "non-causal, no TC), latent 4, base 4, latent [1,4,2,1,2] -> [1,3,9,32,64]",
        lambda ctx: video_decoder_case(ctx, tiny_ltx25_vae(), (1, 4, 2, 1, 2)),
    ),
    Case(
        "audio_encoder_ltx25",
        "audio_encoder",
        152,
        "LTX-2.5 audio VAE encoder from the released header, ch 8, z 2, 16 mels, mel [1,2,17,16] -> [1,2,5,4]",
        lambda ctx: audio_case(ctx, "audio_encoder", tiny_ltx25_audio_vae(), (1, 2, 17, 16)),
    ),
    Case(
        "audio_decoder_ltx25",
        "audio_decoder",
        153,
        "LTX-2.5 audio VAE decoder from the released header, ch 8, z 2, 16 mels, latent [1,2,6,4] -> mel [1,2,21,16]",
        lambda ctx: audio_case(ctx, "audio_decoder", tiny_ltx25_audio_vae(), (1, 2, 6, 4)),
    ),
    Case(
        "vocoder_bwe_ltx25",
        "vocoder",
        154,
        "LTX-2.5 VocoderWithBWE from the released header (rates, kernels, hop verbatim), initial widths 64 / 32, "
        "n_fft 128, mel [1,2,4,64] -> [1,2,1920] at 48 kHz",
        lambda ctx: vocoder_case(ctx, tiny_ltx25_vocoder(), (1, 2, 4, 64)),
    ),
    Case(
        "latent_upsampler_spatial_ltx25",
        "latent_upsampler",
        155,
        "LTX-2.5 spatial x2 upsampler from the released header, in 8, mid 32, 2 blocks per stage, "
        "latent [1,8,2,3,2] -> [1,8,2,6,4]",
        lambda ctx: latent_upsampler_case(ctx, tiny_ltx25_upsampler(LTX25_SPATIAL_UPSAMPLER), (1, 8, 2, 3, 2)),
    ),
    Case(
        "latent_upsampler_temporal_ltx25",
        "latent_upsampler",
        156,
        "LTX-2.5 temporal x2 upsampler from the released header (rational_resampler true, ignored without spatial "
        "upsampling), in 8, mid 32, 2 blocks per stage, latent [1,8,3,2,3] -> 5 frames",
        lambda ctx: latent_upsampler_case(ctx, tiny_ltx25_upsampler(LTX25_TEMPORAL_UPSAMPLER), (1, 8, 3, 2, 3)),
    ),
    # ----- full size: the header configs verbatim, bf16 weights, small inputs ---------------------------
    Case(
        "video_decoder_ltx25_full",
        "video_decoder",
        160,
        "LTX-2.5 conv VAE decoder, released header config verbatim, bf16 weights, latent [1,128,2,4,4]",
        lambda ctx: video_decoder_case(ctx, ltx25_config(LTX25_CONV_VAE), (1, 128, 2, 4, 4)),
        full_size=True,
    ),
    Case(
        "video_encoder_ltx25_full",
        "video_encoder",
        161,
        "LTX-2.5 conv VAE encoder, released header config verbatim, bf16 weights, video [1,3,9,128,128]",
        lambda ctx: video_encoder_case(ctx, ltx25_config(LTX25_CONV_VAE), (1, 3, 9, 128, 128)),
        full_size=True,
    ),
    Case(
        "audio_decoder_ltx25_full",
        "audio_decoder",
        162,
        "LTX-2.5 audio VAE decoder, released header config verbatim, bf16 weights, latent [1,8,10,16] -> 37 frames",
        lambda ctx: audio_case(ctx, "audio_decoder", ltx25_config(LTX25_AUDIO_VAE), (1, 8, 10, 16)),
        full_size=True,
    ),
    Case(
        "audio_encoder_ltx25_full",
        "audio_encoder",
        163,
        "LTX-2.5 audio VAE encoder, released header config verbatim, bf16 weights, mel [1,2,37,64]",
        lambda ctx: audio_case(ctx, "audio_encoder", ltx25_config(LTX25_AUDIO_VAE), (1, 2, 37, 64)),
        full_size=True,
    ),
    Case(
        "vocoder_bwe_ltx25_full",
        "vocoder",
        164,
        "LTX-2.5 VocoderWithBWE, released header config verbatim, bf16 weights, mel [1,2,20,64] -> 9600 samples",
        lambda ctx: vocoder_case(ctx, ltx25_config(LTX25_AUDIO_VAE), (1, 2, 20, 64)),
        full_size=True,
    ),
    Case(
        "latent_upsampler_spatial_ltx25_full",
        "latent_upsampler",
        165,
        "LTX-2.5 spatial x2 upsampler, released header config verbatim, bf16 weights, latent [1,128,2,4,4]",
        lambda ctx: latent_upsampler_case(ctx, ltx25_config(LTX25_SPATIAL_UPSAMPLER), (1, 128, 2, 4, 4)),
        full_size=True,
    ),
    Case(
        "latent_upsampler_temporal_ltx25_full",
        "latent_upsampler",
        166,
        "LTX-2.5 temporal x2 upsampler (mid 512, rational_resampler true), released header config verbatim, "
        "bf16 weights, latent [1,128,3,4,4]",
        lambda ctx: latent_upsampler_case(ctx, ltx25_config(LTX25_TEMPORAL_UPSAMPLER), (1, 128, 3, 4, 4)),
        full_size=True,
    ),
]


CASES: list[Case] = (
    VAE_CASES + TRANSFORMER_CASES + UPSAMPLER_CASES + TEXT_CASES + AUDIO_CASES + DENOISE_CASES + LORA_CASES
    + LTX25_CASES + math_cases.all_cases() + pipeline_cases.CASES
)


def _check_registry() -> None:
    names = [c.name for c in CASES]
    offsets = [c.offset for c in CASES]
    assert len(set(names)) == len(names), "duplicate case name"
    assert len(set(offsets)) == len(offsets), "duplicate case offset"
    assert all(0 <= o < 1000 for o in offsets)


# ---------------------------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------------------------


def _rss_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def _reset_peak_rss() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def select_cases(only: list[str] | None, full_size: bool) -> list[Case]:
    cases = [c for c in CASES if c.full_size == full_size]
    if only:
        known = {c.component for c in CASES} | {c.name for c in CASES}
        unknown = [o for o in only if o not in known]
        if unknown:
            raise SystemExit(f"unknown component/case for --only: {unknown}; known: {sorted(known)}")
        cases = [c for c in cases if c.component in only or c.name in only]
        required = {r for c in cases for r in c.requires}
        cases = [c for c in CASES if c in cases or c.name in required]
    return cases


def verify_fixture(path: Path) -> float:
    """Re-read a written fixture, rebuild the reference model from the file alone (metadata config + weights
    through the SDOps filter, strict), re-run it with the stored inputs/call and return the max abs deviation
    from the stored outputs (expected 0)."""
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    component = COMPONENTS[meta["component"]]
    config = json.loads(meta["config"])
    call = json.loads(meta["call"])
    model = build_from_checkpoint(configurator_for(component, call), component.sd_ops, config, tensors)
    expected = split_io(tensors, "output")
    optional = frozenset(k for k in expected if k == "frames")
    outputs, _ = run_with_noise_input(component, model, split_io(tensors, "input"), call, optional)
    if set(outputs) != set(expected):
        raise RuntimeError(f"{path.name}: outputs {sorted(outputs)} != stored {sorted(expected)}")
    return max(max_abs_diff(outputs[k], expected[k]) for k in outputs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, required=True, help="seed all weights/inputs/noise are drawn from")
    parser.add_argument("--out", type=Path, default=None, help=f"output folder (default: {DEFAULT_OUT})")
    parser.add_argument("--only", nargs="+", default=None, help="component names (or case names) to generate")
    parser.add_argument("--full-size", action="store_true", help="released widths, bf16 weights (GBs per file)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    parser.add_argument("--no-f64-check", action="store_true", help="skip the float64 re-run of each case")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    _check_registry()
    if args.list:
        for c in CASES:
            print(f"{c.name:52s} {c.component:14s} {'full' if c.full_size else 'tiny'}  {c.description}")
        return 0
    if args.seed < 0:
        raise SystemExit("--seed must be >= 0")

    torch.set_num_threads(args.threads)
    out_dir = (args.out if args.out is not None else DEFAULT_OUT).resolve()
    if args.full_size and args.out is None:
        raise SystemExit("--full-size writes GB-sized files: pass --out DIR explicitly (not tests/fixtures)")
    cases = select_cases(args.only, args.full_size)
    if not cases:
        raise SystemExit("no cases selected")

    LOG.info("seed %d -> %s (%d cases)", args.seed, out_dir, len(cases))
    summary = []
    for case in cases:
        ctx = CaseContext(
            seed=args.seed, offset=case.offset, full_size=case.full_size, f64_check=not args.no_f64_check
        )
        gc.collect()
        _reset_peak_rss()
        t0 = time.perf_counter()
        result = case.build(ctx)
        t_build = time.perf_counter() - t0
        path = out_dir / f"{case.name}.safetensors"
        write_fixture(
            path,
            component=result.component,
            config=result.config,
            call=result.call,
            atol=result.atol,
            rtol=result.rtol,
            case=case.description,
            seed=args.seed,
            tensors=result.tensors,
            extra_metadata=result.extra_metadata,
        )
        path.chmod(0o644)
        if not case.full_size and result.component in COMPONENTS:
            dev = verify_fixture(path)
            if dev > 1e-6:
                raise RuntimeError(f"{path.name}: re-run from the written file deviates by {dev:.3e}")
        elapsed = time.perf_counter() - t0
        size = path.stat().st_size
        peak = _rss_mb("VmHWM")
        shapes = {k: list(v.shape) for k, v in result.tensors.items() if k.startswith(("input.", "output."))}
        LOG.info(
            "%s: %.1f s (reference %.1f s), %d bytes, peak RSS %.0f MB, f64 err %s, atol %s rtol %s, %s",
            case.name,
            elapsed,
            t_build,
            size,
            peak,
            result.extra_metadata.get("f64_max_abs_err", "-"),
            result.atol,
            result.rtol,
            shapes,
        )
        summary.append(
            {
                "case": case.name,
                "seconds": round(elapsed, 2),
                "bytes": size,
                "peak_rss_mb": round(peak),
                "f64_max_abs_err": result.extra_metadata.get("f64_max_abs_err"),
                "atol": result.atol,
                "rtol": result.rtol,
                "shapes": shapes,
            }
        )
        del result
        gc.collect()
    total = sum(s["bytes"] for s in summary)
    LOG.info("wrote %d files, %d bytes total", len(summary), total)
    print(json.dumps({"seed": args.seed, "out": str(out_dir), "total_bytes": total, "cases": summary}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
