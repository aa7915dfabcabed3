"""What an uploaded audio file is, and how long it plays, read from its bytes alone.

`audio_format` recognises the containers speech-to-text APIs take by their signatures (WAV,
MP3, FLAC, Ogg, MP4/M4A, WebM); anything else is not audio. `wav_duration` reads a WAV file's
`fmt ` and `data` chunks: the length is the data's size over the bytes per second, exactly.
Other formats carry their length in encoded frames; OneFlow does not decode them and takes the
provider's reported duration instead (docs/endpoints.md).
"""

from __future__ import annotations

import struct
from decimal import Decimal

__all__ = [
    "FLOOR_BYTES_PER_SECOND",
    "audio_format",
    "wav_duration",
    "whole_seconds",
    "worst_case_seconds",
]

#: The lowest bitrate assumed for compressed audio when its length is not known before the
#: call (16 kbit/s): a file of N bytes is taken to play at most N / 2,000 seconds.
FLOOR_BYTES_PER_SECOND = 2_000


def audio_format(data: bytes) -> str | None:
    """The container of `data` (`wav`, `mp3`, `flac`, `ogg`, `mp4`, `webm`), or None."""
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return "wav"
    if data[:3] == b"ID3" or (len(data) >= 2 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0):
        return "mp3"
    if data[:4] == b"fLaC":
        return "flac"
    if data[:4] == b"OggS":
        return "ogg"
    if len(data) >= 12 and data[4:8] == b"ftyp":
        return "mp4"
    if data[:4] == b"\x1a\x45\xdf\xa3":
        return "webm"
    return None


def wav_duration(data: bytes) -> Decimal | None:
    """The playing time of a WAV file in seconds (exact), or None when its chunks cannot be
    read (a truncated header, no `fmt ` before `data`, a zero byte rate)."""
    if audio_format(data) != "wav":
        return None
    offset = 12
    byte_rate = 0
    while offset + 8 <= len(data):
        chunk, size = struct.unpack_from("<4sI", data, offset)
        body = offset + 8
        if chunk == b"fmt ":
            if size < 16 or body + 16 > len(data):
                return None
            byte_rate = struct.unpack_from("<I", data, body + 8)[0]
        elif chunk == b"data":
            if byte_rate <= 0:
                return None
            # A streamed WAV may declare 0 or 0xFFFFFFFF: the data then runs to the end.
            available = len(data) - body
            length = available if size in (0, 0xFFFFFFFF) else min(size, available)
            return Decimal(length) / Decimal(byte_rate)
        offset = body + size + (size & 1)
    return None


def worst_case_seconds(data: bytes, duration: Decimal | None) -> int:
    """Whole seconds to reserve for transcribing `data`: its known length rounded up, or its
    size at the floor bitrate; at least one."""
    if duration is not None:
        return max(1, whole_seconds(duration))
    return max(1, -(-len(data) // FLOOR_BYTES_PER_SECOND))


def whole_seconds(value: Decimal) -> int:
    """`value` seconds rounded up to a whole second (how transcription is billed)."""
    whole = int(value)
    return whole if whole == value else whole + 1
