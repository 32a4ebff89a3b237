"""Fixture cases of the pure-math components (no checkpoint weights): one module per component, each
exporting `CASES: list[Case]`. Offsets (unique, < 100) are reserved per module:
scheduler 70-74, guider 75-79, diffusion_step 80-84, patchifier 85-89, conditioning 90-96,
pipeline_params 97-99, gemma_text_encoder 55-59, audio_processor 60-64, audio_filters 65-66, media_resize 100-104, ic_lora_mask 116-117, retake_mask 118-119, gemma_generate 120-121, noise 122-124, diffusion_step 126 (Euler ancestral), duration_head 127-129 (self-contained model cases also live here), gemma4_text_encoder 136-139, gemma4_tokenizer 140, gemma4_prompt_encoding 141, fp8_cast 170-171, gguf_read 172."""

from __future__ import annotations

from fixture_common import Case

from . import audio_filters, audio_processor, conditioning, diffusion_step, duration_head, gemma, gemma4, gemma4_prompt, guider, media, noise, patchifier, pipeline_masks, pipeline_params, quantization, scheduler

OFFSET_RANGES = {
    "scheduler": range(70, 75),
    "guider": range(75, 80),
    "diffusion_step": [*range(80, 85), 126],
    "patchifier": range(85, 90),
    "conditioning": range(90, 97),
    "pipeline_params": range(97, 100),
    "gemma_text_encoder": range(55, 60),
    "gemma_tokenizer": range(55, 60),
    "audio_processor": range(60, 65),
    "audio_filters": range(65, 67),
    "media_resize": range(100, 105),
    "ic_lora_mask": range(116, 118),
    "retake_mask": range(118, 120),
    "gemma_generate": range(120, 122),
    "noise": range(122, 125),
    "duration_head": range(127, 130),
    "gemma4_text_encoder": range(136, 140),
    "gemma4_tokenizer": range(140, 141),
    "gemma4_prompt_encoding": range(141, 142),
    "fp8_cast": range(170, 172),
    "gguf_read": range(172, 173),
}


def all_cases() -> list[Case]:
    cases: list[Case] = []
    for module in (scheduler, guider, diffusion_step, patchifier, conditioning, pipeline_params, gemma, gemma4, gemma4_prompt, audio_processor, audio_filters, media, pipeline_masks, noise, duration_head, quantization):
        for case in module.CASES:
            allowed = OFFSET_RANGES[case.component]
            assert case.offset in allowed, f"{case.name}: offset {case.offset} outside {allowed}"
        cases += module.CASES
    return cases
