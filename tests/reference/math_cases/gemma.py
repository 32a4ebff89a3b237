"""`gemma_text_encoder` fixtures: a tiny Gemma-3 (transformers' `Gemma3ForConditionalGeneration` built from the
reference's `GEMMA3_CONFIG_FOR_LTX` with small widths) run the way `GemmaTextEncoder.encode` runs it:
`model.model(input_ids, attention_mask, output_hidden_states=True)`, on a left-padded batch of 2.

The reference's own loading hook (`GEMMA_MODEL_OPS` / `create_and_populate`) fails with transformers 5.23
(`SiglipVisionModel` has no `vision_model`); the buffers it would set (embedding scale, local and global RoPE
frequencies) are the ones transformers computes itself, so the model is used as built.

Weights: the language model only, under the checkpoint keys `language_model.model.*` (F16, the reference runs on
the same rounded values in f32). Inputs `input_ids` (int64), `attention_mask` (int64). Output `hidden_states`
`[B, T, hidden, layers + 1]` with padded positions zeroed (a padded query attends to nothing; its values are
implementation-defined)."""

from __future__ import annotations

import torch

import ref_compat
from fixture_common import STREAM_INPUT, STREAM_WEIGHTS, Case, CaseContext, FixtureResult

TEXT = {
    "vocab_size": 300,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 8,
    "query_pre_attn_scalar": 16,
    "sliding_window": 4,
    "layer_types": ["sliding_attention", "full_attention", "sliding_attention", "sliding_attention"],
}


FULL_TEXT = {
    # the released 12B widths with 2 of its 48 layers (one sliding, one global) and a reduced vocabulary
    "vocab_size": 4096,
    "hidden_size": 3840,
    "intermediate_size": 15360,
    "num_hidden_layers": 2,
    "num_attention_heads": 16,
    "num_key_value_heads": 8,
    "head_dim": 256,
    "query_pre_attn_scalar": 256,
    "sliding_window": 1024,
    "layer_types": ["sliding_attention", "full_attention"],
}


def _tiny_gemma(ctx: CaseContext, text: dict):
    """A Gemma-3 built from the reference's config with `text` widths and seeded weights (stored rounded to f16 for
    the tiny widths, bf16 at full size; the model runs on the rounded values in f32)."""
    from transformers.models.gemma3 import Gemma3ForConditionalGeneration

    vision = dict(
        hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=28, patch_size=14
    )
    config = ref_compat.gemma3_root_config(_text_config(text)["text_config"], vision, mm_tokens_per_image=4)
    model = Gemma3ForConditionalGeneration(config).eval()
    gen = ctx.generator(STREAM_WEIGHTS)
    weights = {}
    for name, p in sorted(model.model.language_model.state_dict(keep_vars=True).items()):
        value = (0.3 if p.dim() == 1 else 0.08) * torch.randn(p.shape, generator=gen)
        value = value.half() if text is TEXT else value.bfloat16()
        with torch.no_grad():
            p.copy_(value.float())
        weights["language_model.model." + name] = value
    return model, weights


def _text_config(text: dict) -> dict:
    return {"text_config": {**text, "rope_theta": 1_000_000.0, "rope_local_base_freq": 10_000.0,
                            "rope_scaling": {"rope_type": "linear", "factor": 8.0}, "rms_norm_eps": 1e-6}}


def gemma_case(ctx: CaseContext, pads: tuple[int, int], t: int, text: dict | None = None) -> FixtureResult:
    text = TEXT if text is None else text
    model, weights = _tiny_gemma(ctx, text)
    gen = ctx.generator(STREAM_INPUT)
    ids = torch.randint(1, text["vocab_size"], (2, t), generator=gen)
    mask = torch.ones(2, t, dtype=torch.int64)
    for row, pad in enumerate(pads):
        mask[row, :pad] = 0
        ids[row, :pad] = 0
    with torch.inference_mode():
        out = model.model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    states = torch.stack(out.hidden_states, dim=-1) * mask[:, :, None, None]
    tensors = dict(weights)
    tensors.update({"input.input_ids": ids, "input.attention_mask": mask, "output.hidden_states": states.float()})
    cfg = _text_config(text)
    dtype = "float16" if text is TEXT else "bfloat16"
    return FixtureResult("gemma_text_encoder", cfg, {}, "1e-4", "1e-4", tensors, {"weights_dtype": dtype})


def generate_case(ctx: CaseContext, prompt_len: int, new_tokens: int) -> FixtureResult:
    """Greedy decoding with `transformers`' `generate` (KV cache, sliding-window layers) on the tiny Gemma's language
    model and tied head: the generated ids and the raw logits of every step. Prompts are drawn until every step's
    top-2 logit gap exceeds 1e-2, so the arg-max cannot flip on rounding."""
    model, weights = _tiny_gemma(ctx, TEXT)
    gen = ctx.generator(STREAM_INPUT)
    for _ in range(50):
        ids = torch.randint(3, TEXT["vocab_size"], (1, prompt_len), generator=gen)
        with torch.inference_mode():
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens,
                                 min_new_tokens=new_tokens, do_sample=False, output_logits=True,
                                 return_dict_in_generate=True, eos_token_id=None, pad_token_id=0)
        logits = torch.cat(out.logits, dim=0).float()
        top2 = logits.topk(2, dim=-1).values
        if bool(((top2[:, 0] - top2[:, 1]) > 1e-2).all()):
            break
    else:
        raise RuntimeError("no prompt without a near-tie in 50 draws")
    tokens = out.sequences[0, prompt_len:]
    tensors = dict(weights)
    tensors.update({"input.prompt_ids": ids[0], "output.tokens": tokens, "output.logits": logits})
    return FixtureResult("gemma_generate", _text_config(TEXT), {"new_tokens": new_tokens}, "2e-4", "1e-4", tensors,
                         {"weights_dtype": "float16"})


CASES: list[Case] = [
    Case(
        "gemma_text_encoder",
        "gemma_text_encoder",
        55,
        "tiny Gemma-3: 4 layers (sliding, full, sliding, sliding; window 4), GQA 4/2 heads, scale 16^-1/2, linear "
        "RoPE scaling on the full layer; 2 x 16 tokens, the first row left-padded by 5",
        lambda ctx: gemma_case(ctx, (5, 0), 16),
    ),
    Case(
        "gemma_text_encoder_full",
        "gemma_text_encoder",
        57,
        "Gemma-3 12B widths (3840 wide, 16/8 heads of 256, MLP 15360) with 2 layers (sliding, global) and a 4096-token "
        "vocabulary, bf16 weights; 2 x 64 tokens, the first row left-padded by 20",
        lambda ctx: gemma_case(ctx, (20, 0), 64, FULL_TEXT),
        full_size=True,
    ),
    Case(
        "gemma_generate",
        "gemma_generate",
        120,
        "greedy generation with the tiny Gemma-3 (window 4): a 9-token prompt, 8 new tokens, ids and raw logits",
        lambda ctx: generate_case(ctx, 9, 8),
    ),
]


PROMPTS = [
    "A cat walks across a sunlit kitchen floor.",
    "  leading and trailing spaces are stripped   ",
    "",
    "Ünïcödé, emoji 🎬 and punctuation!?",
    "a long prompt " * 12,
]


def tokenizer_case(ctx: CaseContext, max_length: int) -> FixtureResult:
    """A small BPE tokenizer in Gemma's shape (`<pad>`=0, `<eos>`=1, `<bos>`=2, a BOS-adding template), trained
    here on a few sentences and loaded the way the reference loads Gemma's (`LTXVGemmaTokenizer`: AutoTokenizer,
    left padding to `max_length`, truncation). The tokenizer.json text is stored in the metadata."""
    import tempfile
    from pathlib import Path

    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=200, special_tokens=["<pad>", "<eos>", "<bos>", "<unk>"])
    corpus = [
        "A cat walks across a sunlit kitchen floor.",
        "The camera pans slowly over a misty mountain lake at dawn.",
        "a woman speaks softly, birds sing in the background",
        "long prompts are truncated to the maximum length",
    ] * 20
    tok.train_from_iterator(corpus, trainer)
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 2)])
    with tempfile.TemporaryDirectory() as tmp:
        tok.save(str(Path(tmp) / "tokenizer.json"))
        (Path(tmp) / "tokenizer_config.json").write_text(
            '{"tokenizer_class": "PreTrainedTokenizerFast", "pad_token": "<pad>", "eos_token": "<eos>", '
            '"bos_token": "<bos>", "unk_token": "<unk>"}'
        )
        ref = ref_compat.gemma_tokenizer(tmp, max_length)
        ids, masks = [], []
        for p in PROMPTS:
            pairs = ref.tokenize_with_weights(p)["gemma"]
            ids.append([int(t) for t, _ in pairs])
            masks.append([int(w) for _, w in pairs])
        tokenizer_json = (Path(tmp) / "tokenizer.json").read_text()
    tensors = {
        "output.input_ids": torch.tensor(ids, dtype=torch.int64),
        "output.attention_mask": torch.tensor(masks, dtype=torch.int64),
    }
    call = {"prompts": PROMPTS, "max_length": max_length}
    return FixtureResult("gemma_tokenizer", {}, call, "0", "0", tensors, {"tokenizer_json": tokenizer_json})


CASES.append(
    Case(
        "gemma_tokenizer",
        "gemma_tokenizer",
        56,
        "LTXVGemmaTokenizer on a generated BPE tokenizer.json: left padding to 24, BOS, strip, empty prompt, unicode, "
        "truncation of a long prompt",
        lambda ctx: tokenizer_case(ctx, 24),
    )
)
