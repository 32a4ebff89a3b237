"""Writes the small audio files the audio-decoding tests read (tests/media/): 0.25 s of a stereo test tone
(440 Hz left, 660 Hz right, amplitude 0.5) at 22050 Hz in FLAC, MP3 and AAC (M4A), encoded by ffmpeg's
libraries through PyAV, and a mono 8 kHz MP3. Run with the reference venv:

  .venv-ref/bin/python tests/reference/make_audio_samples.py tests/media
"""

from __future__ import annotations

import sys
from pathlib import Path

import av
import numpy as np


def tone(rate: int, seconds: float, channels: int) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    freqs = [440.0, 660.0][:channels]
    return np.stack([0.5 * np.sin(2 * np.pi * f * t) for f in freqs]).astype(np.float32)


def write(path: Path, codec: str, rate: int, samples: np.ndarray) -> None:
    layout = "stereo" if samples.shape[0] == 2 else "mono"
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.layout = layout
        fmt = stream.codec_context.codec.audio_formats[0].name
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples), format="fltp", layout=layout)
        frame.sample_rate = rate
        resampler = av.AudioResampler(format=fmt, layout=layout, rate=rate)
        for f in resampler.resample(frame) + resampler.resample(None):
            for packet in stream.encode(f):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def main() -> None:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    write(out / "tone_stereo_22k.flac", "flac", 22050, tone(22050, 0.25, 2))
    write(out / "tone_stereo_22k.mp3", "libmp3lame", 22050, tone(22050, 0.25, 2))
    write(out / "tone_stereo_22k.m4a", "aac", 22050, tone(22050, 0.25, 2))
    write(out / "tone_mono_8k.mp3", "libmp3lame", 8000, tone(8000, 0.25, 1))


if __name__ == "__main__":
    main()
