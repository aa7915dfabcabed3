"""Small recordings for speech-to-text tests: a WAV of a given length, an MP3-looking file."""

from __future__ import annotations

import math
import struct

__all__ = ["mp3_like", "wav"]


def wav(seconds: float, *, rate: int = 8_000) -> bytes:
    """A mono 16-bit PCM WAV playing `seconds` (a 440 Hz tone)."""
    frames = round(seconds * rate)
    samples = b"".join(
        struct.pack("<h", int(8_000 * math.sin(2 * math.pi * 440 * i / rate)))
        for i in range(min(frames, rate))
    )
    data = (samples * (frames // rate + 1))[: frames * 2]
    header = b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVE"
    fmt = b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
    return header + fmt + b"data" + struct.pack("<I", len(data)) + data


def mp3_like(size: int) -> bytes:
    """`size` bytes that start like an MP3 file (an ID3 tag); the fakes take them to play at
    128 kbit/s (16,000 bytes a second)."""
    head = b"ID3\x04\x00\x00\x00\x00\x00\x00"
    return head + bytes((i * 7) % 256 for i in range(size - len(head)))
