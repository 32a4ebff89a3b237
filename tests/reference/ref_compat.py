"""The reference APIs that changed between ltx-core 1.0.0 and 1.2.0, behind one interface.

generate.py and the case modules call these helpers instead of the renamed or removed reference APIs, so the
same cases run on either installed version. Everything here dispatches on what the installed `ltx_core`
offers; no case computes anything itself. `REFERENCE_VERSION` is written into every fixture
(`reference_version`).

1.0.0 -> 1.2.0 (CHANGELOG of the tag v1.2.0):
- `ModelConfigurator.from_config(config)` became `from_metadata({"config": config, ...})`.
- `SpatialTilingConfig` / `TemporalTilingConfig` (one spatial size for both axes) became per-axis
  `TileSizeConfig(frames=, height=, width=)` of `DimensionSizeConfig(tile_size, overlap)`; the decoder's
  long-side scaling of the spatial tile is `TileSizeConfig.from_long_side`.
- the function `decode_video(latent, decoder, ...)` (uint8 frames) became the method
  `ConvVideoDecoder.decode_video(latent, ...)` yielding float frames in [0, 1].
- `GEMMA3_CONFIG_FOR_LTX` was removed: the Gemma config is read from the Gemma root's `config.json`.
- `LTXVGemmaTokenizer(path)` became `LTXGemmaTokenizer(hf_tokenizer)`, which ensures a leading BOS itself.
- the denoising helpers (`denoise_audio_video`, `guider_denoising_func`, ...) became denoiser objects
  (`GuidedDenoiser`) passed to the loops with the transformer.
- `apply_loras(..., dtype=)` became `apply_loras(..., fuse_rule=)`.
"""

from __future__ import annotations

import contextlib
from importlib import metadata as importlib_metadata
from types import SimpleNamespace
from typing import Any, Iterator

import torch

REFERENCE_VERSION = importlib_metadata.version("ltx-core")
# versions the cases have been run on; another one may have moved an API again
SUPPORTED_VERSIONS = ("1.0.0", "1.2.0")
if REFERENCE_VERSION not in SUPPORTED_VERSIONS:
    raise SystemExit(f"ltx-core {REFERENCE_VERSION} is installed; the generator supports {SUPPORTED_VERSIONS}")
NEW_API = REFERENCE_VERSION != "1.0.0"


# ---------------------------------------------------------------------------------------------------------
# Configurators
# ---------------------------------------------------------------------------------------------------------


def build_model(configurator: Any, config: dict) -> Any:
    """A reference model from a checkpoint-style `config` (the file's `config` metadata)."""
    if hasattr(configurator, "from_metadata"):
        return configurator.from_metadata({"config": config})
    return configurator.from_config(config)


def is_configurator(obj: Any) -> bool:
    return hasattr(obj, "from_config") or hasattr(obj, "from_metadata")


def audio_only_configurator() -> Any:
    """1.2.0 has `LTXAudioOnlyModelConfigurator`; 1.0.0 had none (the test shim in generate.py stands in)."""
    if not NEW_API:
        return None
    from ltx_core.model.transformer import LTXAudioOnlyModelConfigurator

    return LTXAudioOnlyModelConfigurator


def attention_kwargs(transformer_config: dict) -> dict:
    """1.0.0's `LTXModel(attention_type=...)` (1.2.0 chooses attention through `ops`, default kept)."""
    if NEW_API:
        return {}
    from ltx_core.model.transformer.attention import AttentionFunction

    return {"attention_type": AttentionFunction(transformer_config.get("attention_type", "default"))}


# ---------------------------------------------------------------------------------------------------------
# Video VAE tiling
# ---------------------------------------------------------------------------------------------------------


def encoder_tiling(tiling: dict | None) -> Any:
    """The fixture's `call.tiling` (one spatial tile size for H and W, as 1.0.0 took it) for `tiled_encode`."""
    if tiling is None:
        return None
    spatial, temporal = tiling.get("spatial"), tiling.get("temporal")
    if not NEW_API:
        return _old_tiling(spatial, temporal)
    from ltx_core.tiling import DimensionSizeConfig, TileSizeConfig

    space = _size(spatial, "pixels")
    return TileSizeConfig(frames=_size(temporal, "frames"), height=space, width=space) if space or temporal else None


def decoder_tiling(tiling: dict | None, latent_shape: torch.Size) -> Any:
    """The fixture's `call.tiling` for `tiled_decode`: the spatial tile is scaled per axis by the latent's
    aspect (1.0.0 did this inside the decoder; 1.2.0 spells it `TileSizeConfig.from_long_side`)."""
    if tiling is None:
        return None
    spatial, temporal = tiling.get("spatial"), tiling.get("temporal")
    if not NEW_API:
        return _old_tiling(spatial, temporal)
    from ltx_core.tiling import TileSizeConfig
    from ltx_core.types import SpatioTemporalScaleFactors

    frames = _size(temporal, "frames")
    if spatial is None:
        return TileSizeConfig(frames=frames)
    scale = SpatioTemporalScaleFactors.default()
    return TileSizeConfig.from_long_side(
        long_side=_size(spatial, "pixels"),
        height=latent_shape[3] * scale.height,
        width=latent_shape[4] * scale.width,
        scale_factors=scale,
        frames=frames,
    )


def _old_tiling(spatial: dict | None, temporal: dict | None) -> Any:
    from ltx_core.model.video_vae import SpatialTilingConfig, TemporalTilingConfig, TilingConfig

    return TilingConfig(
        spatial_config=SpatialTilingConfig(**spatial) if spatial is not None else None,
        temporal_config=TemporalTilingConfig(**temporal) if temporal is not None else None,
    )


def _size(axis: dict | None, unit: str) -> Any:
    from ltx_core.tiling import DimensionSizeConfig

    if axis is None:
        return DimensionSizeConfig()
    return DimensionSizeConfig(tile_size=axis[f"tile_size_in_{unit}"], overlap=axis[f"tile_overlap_in_{unit}"])


def decode_video_frames(decoder: Any, latent: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """uint8 frames [F, H, W, 3] of batch element 0 from the reference's untiled `decode_video`.
    1.0.0 returned uint8 chunks itself (`(((x + 1) / 2).clamp(0, 1) * 255).to(uint8)`). 1.2.0 yields the float
    chunks `((x + 1) * 0.5).clamp(0, 1)` and leaves pixel conversion to the video writer; the fixture keeps
    1.0.0's truncating uint8 step on those floats (what a port that writes RGB frames does)."""
    if not NEW_API:
        from ltx_core.model.video_vae.video_vae import decode_video

        return torch.cat(list(decode_video(latent, decoder, tiling_config=None, generator=generator)), dim=0)
    chunks = list(decoder.decode_video(latent, tiling_config=None, generator=generator))
    return (torch.cat(chunks, dim=0) * 255.0).to(torch.uint8)


# ---------------------------------------------------------------------------------------------------------
# Gemma
# ---------------------------------------------------------------------------------------------------------


def gemma3_root_config(text: dict, vision: dict, mm_tokens_per_image: int) -> Any:
    """A `Gemma3Config` for a tiny Gemma root. 1.0.0 started from its hard-coded `GEMMA3_CONFIG_FOR_LTX`;
    1.2.0 reads the root's `config.json` through `build_gemma_hf_config`, so the tiny root's config is given in
    full here (`text` must hold every text key that matters: widths, layer types, RoPE, eps)."""
    from transformers import Gemma3Config

    if not NEW_API:
        import copy

        from ltx_core.text_encoders.gemma.config import GEMMA3_CONFIG_FOR_LTX

        data = copy.deepcopy(GEMMA3_CONFIG_FOR_LTX.to_dict())
        data["text_config"].update(text)
        data["vision_config"].update(vision)
        data["mm_tokens_per_image"] = mm_tokens_per_image
        return Gemma3Config.from_dict(data)
    from ltx_core.text_encoders.gemma import build_gemma_hf_config

    root = {
        "model_type": "gemma3",
        "text_config": {"model_type": "gemma3_text", "hidden_activation": "gelu_pytorch_tanh", **text},
        "vision_config": {"model_type": "siglip_vision_model", **vision},
        "mm_tokens_per_image": mm_tokens_per_image,
    }
    config = build_gemma_hf_config(SimpleNamespace(config_dict=root, source="tiny Gemma root"))
    if not isinstance(config, Gemma3Config):
        raise TypeError(f"tiny Gemma root built a {type(config).__name__}")
    return config


@contextlib.contextmanager
def embeddings_processor_configurator(gemma_hidden_size: int, gemma_num_hidden_layers: int) -> Iterator[Any]:
    """`EmbeddingsProcessorConfigurator` reading a stand-in Gemma of the given width and depth (1.0.0: patched
    into `GEMMA3_CONFIG_FOR_LTX`; 1.2.0: the config its Gemma root would hold)."""
    from ltx_core.text_encoders.gemma.encoders import encoder_configurator as ec

    if not NEW_API:
        from ltx_core.text_encoders.gemma.config import GEMMA3_CONFIG_FOR_LTX

        text = GEMMA3_CONFIG_FOR_LTX.text_config
        saved = (text.hidden_size, text.num_hidden_layers)
        text.hidden_size, text.num_hidden_layers = gemma_hidden_size, gemma_num_hidden_layers
        try:
            yield ec.EmbeddingsProcessorConfigurator
        finally:
            text.hidden_size, text.num_hidden_layers = saved
        return
    from transformers import Gemma3Config

    config = Gemma3Config(text_config={"hidden_size": gemma_hidden_size, "num_hidden_layers": gemma_num_hidden_layers})
    original = ec._load_gemma_config
    ec._load_gemma_config = lambda path: config
    try:
        yield ec.EmbeddingsProcessorConfigurator.with_gemma_model_path("tiny-gemma-root")
    finally:
        ec._load_gemma_config = original


def gemma_tokenizer(tokenizer_dir: str, max_length: int) -> Any:
    """The reference's Gemma tokenizer wrapper on a directory with `tokenizer.json` and `tokenizer_config.json`,
    built the way each version builds it from a Gemma root."""
    from pathlib import Path

    if not NEW_API:
        from ltx_core.text_encoders.gemma.tokenizer import LTXVGemmaTokenizer

        return LTXVGemmaTokenizer(tokenizer_dir, max_length=max_length)
    from ltx_core.text_encoders.gemma import GemmaAssets, build_gemma_hf_tokenizer
    from ltx_core.text_encoders.gemma.tokenizer import LTXGemmaTokenizer, PaddingSide

    root = Path(tokenizer_dir)
    assets = GemmaAssets(
        source=str(root),
        config_dict={"model_type": "gemma3"},
        tokenizer_json=(root / "tokenizer.json").read_bytes(),
        sidecars={"tokenizer_config.json": (root / "tokenizer_config.json").read_bytes()},
        weight_paths=(),
    )
    return LTXGemmaTokenizer(build_gemma_hf_tokenizer(assets, max_length), max_length, padding_side=PaddingSide.LEFT)


# ---------------------------------------------------------------------------------------------------------
# LoRA fusing
# ---------------------------------------------------------------------------------------------------------


def apply_loras(model_sd: Any, loras: list, target: str) -> Any:
    """`apply_loras` into bf16 weights. 1.0.0 took the output dtype (`target`); 1.2.0 takes a fuse rule whose
    aggregation dtype is bf16 (`bf16_fuse_rule`) or float32 (the rule it swaps in on MPS), and keeps the
    weights' dtype. `target` float32 maps to the float32-aggregating rule there."""
    from ltx_core.loader import fuse_loras

    dtype = {"bfloat16": torch.bfloat16, "float32": torch.float32}[target]
    if not NEW_API:
        return fuse_loras.apply_loras(model_sd, loras, dtype=dtype)
    from dataclasses import replace

    rule = replace(fuse_loras.bf16_fuse_rule, aggregation_dtype=dtype)
    return fuse_loras.apply_loras(model_sd, loras, fuse_rule=rule)




# ---------------------------------------------------------------------------------------------------------
# Perturbations (STG)
# ---------------------------------------------------------------------------------------------------------


def perturbation_type(name: str) -> Any:
    """A `PerturbationType` from its fixture name (`skip_video_self_attn`, ...): 1.0.0's enum values were those
    names; 1.2.0's are the row indices of its mask tensor, so the name is the member name in lower case."""
    from ltx_core.guidance.perturbations import PerturbationType

    return PerturbationType[name.upper()] if NEW_API else PerturbationType(name)


def batched_perturbations(
    samples: list[list[dict]] | None, batch: int, num_blocks: int, dtype: torch.dtype = torch.float32
) -> Any:
    """`BatchedPerturbationConfig` for `samples` (per sample a list of `{type, blocks}`; None = no perturbation
    for `batch` samples). 1.2.0 builds its per-block masks up front and needs the block count."""
    from ltx_core.guidance.perturbations import BatchedPerturbationConfig, Perturbation, PerturbationConfig

    extra = (num_blocks, None, dtype) if NEW_API else ()
    if samples is None:
        return BatchedPerturbationConfig.empty(batch, *extra)
    configs = [
        PerturbationConfig([Perturbation(perturbation_type(p["type"]), p["blocks"]) for p in sample])
        for sample in samples
    ]
    return BatchedPerturbationConfig(configs, *extra)


def perturbation_mask(cfg: Any, kind: Any, block: int, values: torch.Tensor) -> torch.Tensor:
    """The keep-mask of one (type, block) over the batch, flattened (1.0.0 `mask_like`, 1.2.0 `mask`)."""
    if NEW_API:
        return cfg.mask(kind, block).to(values.dtype).flatten()
    return cfg.mask_like(kind, block, values).flatten()


def float32_only(model: Any) -> str | None:
    """Why the reference cannot run `model` in float64 (the generator's float64 cross-check), or None.
    1.2.0's `VocoderWithBWE.forward` casts its input to float32 and runs under a float32 autocast."""
    if NEW_API and type(model).__name__ == "VocoderWithBWE":
        return "ltx-core 1.2.0 VocoderWithBWE runs in float32 whatever the weights' dtype"
    return None


# ---------------------------------------------------------------------------------------------------------
# IC-LoRA mask
# ---------------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def ic_lora_mask_source(ic: Any, pixels: torch.Tensor) -> Iterator[None]:
    """Make `ic._load_mask_video` see `pixels` ([1, 3, F, H, W] bf16 in [-1, 1]) as the decoded, resized and
    normalised mask clip. 1.0.0 got that clip from `load_video_conditioning`; 1.2.0 from
    `video_preprocess(decode_video_by_frame(...))`."""
    names = ("decode_video_by_frame", "video_preprocess") if NEW_API else ("load_video_conditioning",)
    saved = {n: getattr(ic, n) for n in names}
    if NEW_API:
        ic.decode_video_by_frame = lambda **_: iter(())
        ic.video_preprocess = lambda *a, **k: pixels.clone()
    else:
        ic.load_video_conditioning = lambda **_: pixels.clone()
    try:
        yield
    finally:
        for n, f in saved.items():
            setattr(ic, n, f)


def downsample_mask_to_latent(ic: Any, mask: torch.Tensor, shape: Any) -> torch.Tensor:
    """1.0.0 `ICLoraPipeline._downsample_mask_to_latent`, 1.2.0 `iclora_utils.downsample_mask_video_to_latent`."""
    if NEW_API:
        from ltx_pipelines.iclora_utils import downsample_mask_video_to_latent

        return downsample_mask_video_to_latent(mask=mask, target_latent_shape=shape)
    return ic.ICLoraPipeline._downsample_mask_to_latent(mask=mask, target_latent_shape=shape)


def decoder_base_channels(bottleneck: int, decoder_blocks: list) -> int:
    """`decoder_base_channels` that gives a conv video decoder `bottleneck` channels after `conv_in`.
    1.0.0 built `conv_in` with 8 x base channels whatever the blocks; 1.2.0 with base x the product of the
    upsampling blocks' channel multipliers (`compress_*` default 1, `res_x_y` default 2), i.e. base is the width
    at the pixel end. Equal for the released decoders (product 8), different for tiny ones."""
    if not NEW_API:
        product = 8
    else:
        product = 1
        for name, params in decoder_blocks:
            cfg = params if isinstance(params, dict) else {}
            if name in ("compress_time", "compress_space", "compress_all"):
                product *= cfg.get("multiplier", 1)
            elif name == "res_x_y":
                product *= cfg.get("multiplier", 2)
    if bottleneck % product != 0:
        raise ValueError(f"bottleneck {bottleneck} is not a multiple of the decoder's channel product {product}")
    return bottleneck // product
