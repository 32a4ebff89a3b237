"""The tiny model the `pipeline` fixtures run on, and the changes the generator makes to the reference's run.

The architecture is the built-in tiny model's (`ltx-pipelines/src/tiny/tiny_model.json`, read by ltx-rs too); the
weights are drawn from the case's seed (one stream per component). The bundle is a monolithic checkpoint, a spatial
upsampler, a Gemma-3 root (word-level tokenizer) and a rank-2 stand-in for the distilled LoRA; `write_model` lays it
out as the files a user has. See `pipeline_cases.py` and docs/parity.md §4r.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any, Iterator

import torch
from safetensors.torch import save_file

from fixture_common import CaseContext

REPO = Path(__file__).resolve().parents[2]
TINY_MODEL_JSON = REPO / "ltx-pipelines" / "src" / "tiny" / "tiny_model.json"

UPSAMPLER_PREFIX = "spatial_upsampler."
GEMMA_PREFIX = "gemma."
# Gemma root files stored as metadata (`gemma_file:<name>`); the weights go under GEMMA_PREFIX
GEMMA_FILE_PREFIX = "gemma_file:"

# one weight stream per component (CaseContext streams 0..9)
STREAMS = {
    "transformer": 0,
    "video_encoder": 1,
    "video_decoder": 2,
    "audio_encoder": 3,
    "audio_decoder": 4,
    "vocoder": 5,
    "embeddings_processor": 6,
    "latent_upsampler": 7,
    "gemma": 8,
    "distilled_lora": 9,
}

# the reference's vision tower is never run (no image is given to Gemma), but the root must hold one
GEMMA_VISION = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=28,
                    patch_size=14)
GEMMA_MM_TOKENS = 4


def tiny_model() -> dict:
    return json.loads(TINY_MODEL_JSON.read_text())


def _component_weights(ctx: CaseContext, name: str, config: dict, call: dict) -> dict[str, torch.Tensor]:
    import generate

    component = generate.COMPONENTS[name]
    model = generate.ref_compat.build_model(generate.configurator_for(component, call), config)
    if any(t.is_meta for t in model.state_dict().values()):
        model = model.to_empty(device="cpu")
    state = generate.det_init(model, ctx.generator(STREAMS[name]))
    weights = generate.to_checkpoint_keys(state, component.weight_prefix, torch.float16)
    if name == "transformer":
        # the reference builds the transformer without a dtype cast (it runs in the file's dtype): float32 storage
        # of the f16-rounded values
        weights = {k: v.float() for k, v in weights.items()}
    return weights


def checkpoint_tensors(ctx: CaseContext, config: dict, gemma_text: dict) -> dict[str, torch.Tensor]:
    """Every component of the monolithic checkpoint under its released keys (F16; the transformer's F32 holding
    f16-rounded values). The VAEs' shared
    `per_channel_statistics` come from the encoder's draw (a checkpoint stores them once)."""
    gemma_dims = {"gemma_hidden_size": gemma_text["hidden_size"],
                  "gemma_num_hidden_layers": gemma_text["num_hidden_layers"]}
    parts = [
        ("transformer", {"model_type": "audio_video"}),
        ("embeddings_processor", gemma_dims),
        ("video_encoder", {}),
        ("video_decoder", {}),
        ("audio_encoder", {}),
        ("audio_decoder", {}),
        ("vocoder", {}),
    ]
    tensors: dict[str, torch.Tensor] = {}
    for name, call in parts:
        for key, value in _component_weights(ctx, name, config, call).items():
            tensors.setdefault(key, value)
    return tensors


SPECIAL = ["<pad>", "<eos>", "<bos>", "<unk>"]
# the image tokens Gemma-3's processor requires of its tokenizer (never in a prompt)
IMAGE_TOKENS = {"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>", "image_token": "<image_soft_token>"}


def gemma_vocab(words: list[str]) -> dict[str, int]:
    vocab = {t: i for i, t in enumerate(SPECIAL)}
    for w in [*words, *IMAGE_TOKENS.values()]:
        vocab.setdefault(w, len(vocab))
    return vocab


def gemma_root_files(words: list[str], text: dict) -> tuple[dict[str, str], dict]:
    """The tiny Gemma-3 root's JSON files (a word-level tokenizer over `words`, lower-casing, BOS prepended, like
    the built-in tiny model's) and its text config."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    vocab = gemma_vocab(words)
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A", pair="<bos> $A $B", special_tokens=[("<bos>", 2)])
    tok.add_special_tokens([*SPECIAL, *IMAGE_TOKENS.values()])
    text_config = {
        **text,
        "vocab_size": len(vocab),
        "rope_theta": 1_000_000.0,
        "rope_local_base_freq": 10_000.0,
        "rope_scaling": {"rope_type": "linear", "factor": 8.0},
        "rms_norm_eps": 1e-6,
    }
    config = {
        "model_type": "gemma3",
        "architectures": ["Gemma3ForConditionalGeneration"],
        "text_config": {"model_type": "gemma3_text", "hidden_activation": "gelu_pytorch_tanh", **text_config},
        "vision_config": {"model_type": "siglip_vision_model", **GEMMA_VISION},
        "mm_tokens_per_image": GEMMA_MM_TOKENS,
        "image_token_index": vocab[IMAGE_TOKENS["image_token"]],
        "boi_token_index": vocab[IMAGE_TOKENS["boi_token"]],
        "eoi_token_index": vocab[IMAGE_TOKENS["eoi_token"]],
    }
    files = {
        "config.json": json.dumps(config, sort_keys=True),
        "tokenizer.json": tok.to_str(),
        "tokenizer_config.json": json.dumps({
            "tokenizer_class": "GemmaTokenizer", "bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>",
            "unk_token": "<unk>", "padding_side": "left", "add_bos_token": True, "add_eos_token": False,
            "extra_special_tokens": IMAGE_TOKENS,
        }, sort_keys=True),
        "processor_config.json": json.dumps({"processor_class": "Gemma3Processor", "image_seq_length": GEMMA_MM_TOKENS},
                                            sort_keys=True),
        "preprocessor_config.json": json.dumps({
            "image_processor_type": "Gemma3ImageProcessor", "size": {"height": 28, "width": 28},
            "do_resize": True, "do_rescale": True, "do_normalize": True, "image_mean": [0.5, 0.5, 0.5],
            "image_std": [0.5, 0.5, 0.5], "rescale_factor": 1 / 255, "resample": 2,
        }, sort_keys=True),
    }
    return files, config


def _released_gemma_key(key: str) -> str | None:
    """transformers 5 `Gemma3ForConditionalGeneration` keys -> the released root's (transformers 4.5x) keys."""
    for module, released in (
        ("model.language_model.", "language_model.model."),
        ("model.vision_tower.", "vision_tower.vision_model."),
        ("model.multi_modal_projector.", "multi_modal_projector."),
    ):
        if key.startswith(module):
            return released + key[len(module):]
    if key == "lm_head.weight":
        return None  # tied to the embedding
    raise KeyError(key)


def gemma_tensors(ctx: CaseContext, config: dict) -> dict[str, torch.Tensor]:
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration

    model = Gemma3ForConditionalGeneration(Gemma3Config.from_dict(config)).eval()
    gen = ctx.generator(STREAMS["gemma"])
    out = {}
    for name, p in sorted(model.state_dict().items()):
        key = _released_gemma_key(name)
        if key is None or not p.is_floating_point():
            continue
        value = (0.3 if p.dim() == 1 else 0.08) * torch.randn(p.shape, generator=gen)
        out[key] = value.half()
    return out


LORA_PREFIX = "distilled_lora."
# the modules the tiny distilled LoRA adapts (rank 2): video and audio attention and feed-forwards of both blocks
LORA_MODULES = [
    f"transformer_blocks.{b}.{m}"
    for b in range(2)
    for m in ("attn1.to_q", "attn1.to_v", "attn2.to_k", "ff.net.2", "audio_attn1.to_out.0", "audio_ff.net.0.proj")
]
LORA_RANK = 2


def distilled_lora_tensors(ctx: CaseContext, checkpoint: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A rank-2 LoRA (bf16, ComfyUI `diffusion_model.*` keys, like the released distilled LoRAs) standing in for the
    distilled LoRA the two-stage pipelines fuse into stage 2."""
    gen = ctx.generator(STREAMS["distilled_lora"])
    out = {}
    for module in LORA_MODULES:
        out_f, in_f = checkpoint[f"model.diffusion_model.{module}.weight"].shape
        a = torch.randn(LORA_RANK, in_f, generator=gen) / in_f**0.5
        b = 0.5 * torch.randn(out_f, LORA_RANK, generator=gen)
        out[f"diffusion_model.{module}.lora_A.weight"] = a.bfloat16()
        out[f"diffusion_model.{module}.lora_B.weight"] = b.bfloat16()
    return out


class _Float32Torch(ModuleType):
    """`torch` as the pipeline modules see it during a fixture run: `torch.bfloat16` is float32."""

    def __init__(self) -> None:
        super().__init__("torch")

    def __getattr__(self, name: str) -> Any:
        return torch.float32 if name == "bfloat16" else getattr(torch, name)


@contextlib.contextmanager
def reference_run_patches(*modules: ModuleType) -> Iterator[None]:
    """The three changes to the reference's run listed in the module docstring."""
    from ltx_core.components import noisers
    from ltx_pipelines.utils import samplers

    originals = [(m, m.torch) for m in modules]
    # the samplers' `model_dtype=torch.bfloat16` defaults (bound at import)
    loops = [f for f in vars(samplers).values() if callable(f) and getattr(f, "__module__", "") == samplers.__name__]
    defaults = [(f, f.__defaults__, f.__kwdefaults__) for f in loops if hasattr(f, "__defaults__")]

    def f32(values: Any) -> Any:
        if values is None:
            return None
        if isinstance(values, dict):
            return {k: torch.float32 if v is torch.bfloat16 else v for k, v in values.items()}
        return tuple(torch.float32 if v is torch.bfloat16 else v for v in values)
    sample = noisers.GaussianNoiser._sample_noise
    sync = torch.cuda.synchronize

    def bf16_noise(self: Any, latent_state: Any) -> torch.Tensor:
        latent = latent_state.latent
        noise = torch.randn(*latent.shape, device=latent.device, dtype=torch.bfloat16, generator=self.generator)
        return noise.to(latent.dtype)

    try:
        for m in modules:
            m.torch = _Float32Torch()
        noisers.GaussianNoiser._sample_noise = bf16_noise
        torch.cuda.synchronize = lambda *a, **k: None
        for f, d, kd in defaults:
            f.__defaults__, f.__kwdefaults__ = f32(d), f32(kd)
        yield
    finally:
        for f, d, kd in defaults:
            f.__defaults__, f.__kwdefaults__ = d, kd
        for m, t in originals:
            m.torch = t
        noisers.GaussianNoiser._sample_noise = sample
        torch.cuda.synchronize = sync


MODEL_FILE = "pipeline_model.safetensors"
# both sides compute in float32 (measured: the video within 3e-6 and the waveform within 2e-8 on seeds 0-2); the tiny
# vocoder's waveform peaks near 0.02, so the base 1e-4 would hide a wrong audio path
PIPELINE_ATOL = "2e-5"
MODEL_OFFSET = 180


def model_context(ctx: CaseContext) -> CaseContext:
    """The weights' streams: the model case's, whichever pipeline case asks."""
    return CaseContext(seed=ctx.seed, offset=MODEL_OFFSET, full_size=False)


def tiny_bundle(ctx: CaseContext) -> SimpleNamespace:
    """The tiny model of this seed: checkpoint, upsampler and Gemma-root tensors, configs and root files."""
    tiny = tiny_model()
    ctx = model_context(ctx)
    config = tiny["checkpoint_config"]
    up_config = tiny["spatial_upsampler_config"]
    gemma_files, gemma_config = gemma_root_files(tiny["tokenizer_words"], tiny["gemma_text_config"])
    bundle = SimpleNamespace(
        config=config,
        up_config=up_config,
        gemma_files=gemma_files,
        checkpoint=checkpoint_tensors(ctx, config, tiny["gemma_text_config"]),
        upsampler=_component_weights(ctx, "latent_upsampler", up_config, {}),
        gemma=gemma_tensors(ctx, gemma_config),
    )
    bundle.distilled_lora = distilled_lora_tensors(ctx, bundle.checkpoint)
    bundle.tensors = {
        **bundle.checkpoint,
        **{UPSAMPLER_PREFIX + k: v for k, v in bundle.upsampler.items()},
        **{GEMMA_PREFIX + k: v for k, v in bundle.gemma.items()},
        **{LORA_PREFIX + k: v for k, v in bundle.distilled_lora.items()},
    }
    digest = hashlib.sha256()
    for name in sorted(bundle.tensors):
        t = bundle.tensors[name].contiguous()
        digest.update(f"{name}:{t.dtype}:{list(t.shape)}:".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.dim() else t.reshape(1).view(torch.uint8).numpy().tobytes())
    bundle.model_id = digest.hexdigest()
    return bundle


def write_model(root: Path, bundle: SimpleNamespace) -> SimpleNamespace:
    """The bundle as the files a user would have: checkpoint, upsampler, Gemma root."""
    paths = SimpleNamespace(checkpoint=root / "checkpoint.safetensors", upsampler=root / "upsampler.safetensors",
                            gemma=root / "gemma", distilled_lora=root / "distilled_lora.safetensors")
    save_file(bundle.distilled_lora, str(paths.distilled_lora))
    save_file(bundle.checkpoint, str(paths.checkpoint), metadata={"config": json.dumps(bundle.config, sort_keys=True)})
    save_file(bundle.upsampler, str(paths.upsampler), metadata={"config": json.dumps(bundle.up_config, sort_keys=True)})
    paths.gemma.mkdir()
    for name, text in bundle.gemma_files.items():
        (paths.gemma / name).write_text(text)
    save_file(bundle.gemma, str(paths.gemma / "model.safetensors"))
    return paths
