"""`audio_processor` fixtures: the reference's `AudioProcessor.waveform_to_mel` (torchaudio resampling and
MelSpectrogram, log clamp, `[B, C, T, mels]` layout) on seeded waveforms at several input rates.

call: {"sample_rate", "target_sample_rate", "mel_bins", "hop_length", "n_fft"}; input `waveform [B, 2, N]` (f32);
outputs `mel` and, when the rates differ, `resampled` (torchaudio.functional.resample)."""

from __future__ import annotations

import torch

from fixture_common import STREAM_INPUT, Case, CaseContext, FixtureResult


def processor_case(ctx: CaseContext, rate: int, samples: int, mel_bins: int, batch: int = 1) -> FixtureResult:
    import torchaudio

    from ltx_core.model.audio_vae.ops import AudioProcessor
    from ltx_core.types import Audio

    gen = ctx.generator(STREAM_INPUT)
    waveform = 0.3 * torch.randn(batch, 2, samples, generator=gen)
    proc = AudioProcessor(target_sample_rate=16000, mel_bins=mel_bins, mel_hop_length=160, n_fft=1024)
    tensors = {"input.waveform": waveform}
    with torch.inference_mode():
        tensors["output.mel"] = proc.waveform_to_mel(Audio(waveform=waveform, sampling_rate=rate))
        if rate != 16000:
            tensors["output.resampled"] = torchaudio.functional.resample(waveform, rate, 16000)
    call = {"sample_rate": rate, "target_sample_rate": 16000, "mel_bins": mel_bins, "hop_length": 160, "n_fft": 1024}
    return FixtureResult("audio_processor", {}, call, "1e-4", "1e-4", tensors, {})


CASES: list[Case] = [
    Case("audio_processor_16k", "audio_processor", 60, "16 kHz stereo, 64 mels, 4000 samples (26 frames)",
         lambda ctx: processor_case(ctx, 16000, 4000, 64)),
    Case("audio_processor_24k", "audio_processor", 61, "24 kHz -> 16 kHz, 64 mels, batch 2",
         lambda ctx: processor_case(ctx, 24000, 2400, 64, batch=2)),
    Case("audio_processor_44k", "audio_processor", 62, "44.1 kHz -> 16 kHz (gcd 100), 16 mels",
         lambda ctx: processor_case(ctx, 44100, 4410, 16)),
    Case("audio_processor_48k", "audio_processor", 63, "48 kHz -> 16 kHz, 64 mels",
         lambda ctx: processor_case(ctx, 48000, 6000, 64)),
    Case("audio_processor_8k", "audio_processor", 64, "8 kHz -> 16 kHz (upsampling), 64 mels",
         lambda ctx: processor_case(ctx, 8000, 2000, 64)),
]
