"""Quantized weight fixtures.

`fp8_cast`: the reference's `fp8-cast` policy on one transformer block linear: its load-time downcast
(`TRANSFORMER_LINEAR_DOWNCAST_MAP`: weight and bias `.to(float8_e4m3fn)`, round to nearest even, NaN past 464)
and `Fp8CastLinear.forward` (upcast to the input's dtype, then `F.linear`).
call: {"key": module key of the linear, e.g. "transformer_blocks.0.attn1.to_q"}; inputs `weight [out, in]`,
`bias [out]` (bf16, as released checkpoints store them; including values at the F8E4M3 range edges), `x [..., in]`
(f32); outputs `weight_fp8`, `bias_fp8` (F8_E4M3, as the downcast stores them), `y` (the forward).

`gguf_read`: a GGUF file written by the independent `gguf` package (llama.cpp's gguf-py) with ComfyUI-native
transformer names (no `model.diffusion_model.` prefix, as the community LTX files) and one tensor of each block
type: Q8_0 and Q4_0 quantized from floats by gguf-py, the K types (Q3_K..Q6_K) as random blocks with finite
scales, F16 / BF16 / F32. call: {"tensors": [names]}; input `file` (the GGUF bytes, U8); outputs `<name>` for
each name: gguf-py's `dequantize` of the stored blocks (f32), in PyTorch's row-major shape."""

from __future__ import annotations

import os
import tempfile

import numpy as np
import torch

from fixture_common import STREAM_INPUT, STREAM_WEIGHTS, Case, CaseContext, FixtureResult


def _edge_values() -> torch.Tensor:
    """Values where F8E4M3 rounding is delicate: range edges (448, the tie 464, NaN from 465), ties between
    neighbours, subnormals (below 2^-6) and the smallest subnormal's half, signed zeros."""
    return torch.tensor(
        [448.0, 464.0, -464.0, 465.0, 0.0, -0.0, 2.0**-9, 2.0**-10, 1.5 * 2.0**-9, 2.0**-6, 1.0625, 1.1875, -3.25, 240.0]
    )


def fp8_cast_case(ctx: CaseContext, key: str, shape: tuple[int, int], x_shape: tuple[int, ...]) -> FixtureResult:
    from ltx_core.quantization.fp8_cast import TRANSFORMER_LINEAR_DOWNCAST_MAP, Fp8CastLinear

    out_f, in_f = shape
    gen = ctx.generator(STREAM_WEIGHTS)
    weight = torch.randn(out_f, in_f, generator=gen) * 0.5
    flat = weight.view(-1)
    edges = _edge_values()
    flat[: edges.numel()] = edges
    weight = weight.to(torch.bfloat16)
    bias = (torch.randn(out_f, generator=gen) * 0.1).to(torch.bfloat16)
    x = torch.randn(*x_shape, in_f, generator=ctx.generator(STREAM_INPUT))
    narrowed = {}
    for name, value in (("weight", weight), ("bias", bias)):
        results = TRANSFORMER_LINEAR_DOWNCAST_MAP.apply_to_key_value(f"{key}.{name}", value)
        assert len(results) == 1 and results[0].new_value.dtype == torch.float8_e4m3fn, f"{key}.{name} not narrowed"
        narrowed[name] = results[0].new_value
    layer = torch.nn.Linear(in_f, out_f, bias=True)
    layer.__class__ = Fp8CastLinear
    layer._with_stochastic_rounding = False
    layer._seed = 0
    layer.weight = torch.nn.Parameter(narrowed["weight"], requires_grad=False)
    layer.bias = torch.nn.Parameter(narrowed["bias"], requires_grad=False)
    with torch.inference_mode():
        y = layer(x)
    tensors = {
        "input.weight": weight,
        "input.bias": bias,
        "input.x": x,
        "output.weight_fp8": narrowed["weight"],
        "output.bias_fp8": narrowed["bias"],
        "output.y": y,
    }
    # the weight contains NaNs (465 -> NaN): the output rows they reach are NaN on both sides
    return FixtureResult("fp8_cast", {}, {"key": key}, "1e-6", "1e-5", tensors, {})


def _k_blocks(qtype, rows: int, cols: int, gen: torch.Generator) -> np.ndarray:
    """Random blocks of a K type with finite f16 scales (`d`, `dmin`): any bytes are valid blocks except
    non-finite scales."""
    from gguf import GGML_QUANT_SIZES

    block, size = GGML_QUANT_SIZES[qtype]
    n_blocks = rows * cols // block
    raw = torch.randint(0, 256, (n_blocks, size), generator=gen, dtype=torch.uint8).numpy()
    scales = (torch.rand(n_blocks, 2, generator=gen) * 0.02 + 0.001).numpy().astype(np.float16).view(np.uint8)
    name = qtype.name
    # where each type keeps its f16 scales: the block's last bytes (Q3_K, Q6_K: d) or first (Q4_K, Q5_K: d, dmin)
    if name in ("Q4_K", "Q5_K"):
        raw[:, 0:4] = scales.reshape(n_blocks, 4)
    elif name == "Q2_K":
        raw[:, size - 4 : size] = scales.reshape(n_blocks, 4)
    else:
        raw[:, size - 2 : size] = scales.reshape(n_blocks, 4)[:, :2]
    return raw.reshape(rows, cols // block * size)


def gguf_read_case(ctx: CaseContext) -> FixtureResult:
    import gguf
    from gguf import GGMLQuantizationType as T
    from gguf import quants

    gen = ctx.generator(STREAM_WEIGHTS)
    rows, cols = 4, 512
    floats = lambda: torch.randn(rows, cols, generator=gen).numpy().astype(np.float32) * 0.05  # noqa: E731
    plan = [
        ("transformer_blocks.0.attn1.to_q.weight", T.Q8_0),
        ("transformer_blocks.0.attn1.to_k.weight", T.Q4_0),
        ("transformer_blocks.0.attn1.to_v.weight", T.Q4_K),
        ("transformer_blocks.0.attn1.to_out.0.weight", T.Q5_K),
        ("transformer_blocks.0.ff.net.0.proj.weight", T.Q6_K),
        ("transformer_blocks.0.ff.net.2.weight", T.Q3_K),
        ("transformer_blocks.0.attn2.to_q.weight", T.Q2_K),
        ("transformer_blocks.0.attn2.to_k.weight", T.F16),
        ("transformer_blocks.0.attn2.to_v.weight", T.BF16),
        ("transformer_blocks.0.scale_shift_table", T.F32),
    ]
    fd, path = tempfile.mkstemp(suffix=".gguf")
    os.close(fd)
    expected = {}
    try:
        writer = gguf.GGUFWriter(path, arch="ltxv")
        for name, qtype in plan:
            if qtype in (T.Q8_0, T.Q4_0, T.F16, T.BF16):
                data = quants.quantize(floats(), qtype)
            elif qtype == T.F32:
                data = floats()
            else:
                data = _k_blocks(qtype, rows, cols, gen)
            writer.add_tensor(name, data, raw_dtype=qtype)
            expected[name] = torch.from_numpy(np.ascontiguousarray(quants.dequantize(data, qtype).astype(np.float32)))
            assert tuple(expected[name].shape) == (rows, cols), name
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        file_bytes = torch.frombuffer(bytearray(open(path, "rb").read()), dtype=torch.uint8)
    finally:
        os.unlink(path)
    tensors = {"input.file": file_bytes}
    for name, value in expected.items():
        assert torch.isfinite(value).all(), name
        tensors[f"output.{name}"] = value
    call = {"tensors": [n for n, _ in plan]}
    return FixtureResult("gguf_read", {}, call, "1e-7", "1e-6", tensors, {"gguf_writer": f"gguf {_gguf_version()}"})


def _gguf_version() -> str:
    from importlib.metadata import version

    return version("gguf")


CASES: list[Case] = [
    Case("fp8_cast_linear", "fp8_cast", 170,
         "fp8-cast downcast + Fp8CastLinear on a block's attn1.to_q: bf16 weight [24,32] with F8E4M3 edge values, x [2,3,32]",
         lambda ctx: fp8_cast_case(ctx, "transformer_blocks.0.attn1.to_q", (24, 32), (2, 3))),
    Case("fp8_cast_linear_ff", "fp8_cast", 171,
         "fp8-cast on an audio feed-forward's net.2: bf16 weight [16,64], x [5,64]",
         lambda ctx: fp8_cast_case(ctx, "transformer_blocks.1.audio_ff.net.2", (16, 64), (5,))),
    Case("gguf_read", "gguf_read", 172,
         "a GGUF written by gguf-py with community names: Q8_0, Q4_0, Q2_K..Q6_K, F16, BF16, F32 tensors [4,512]",
         gguf_read_case),
]
