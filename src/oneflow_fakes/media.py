"""Small but valid media files: solid-colour PNG and JPEG images, silent audio.

Images have the requested size and a colour derived from the prompt; they stay small
(an indexed PNG, a JPEG whose blocks after the first are all alike) and cost microseconds.
Audio lasts as long as reading the text aloud would (about 15 characters a second) and is
silence in the requested format: MPEG audio frames, raw PCM, WAV, G.711, or Ogg Opus.
"""

from __future__ import annotations

import functools
import hashlib
import math
import struct
import zlib

__all__ = ["audio", "audio_content_type", "colour_for", "jpeg", "png", "speech_seconds"]

CHARACTERS_PER_SECOND = 15.0


def colour_for(text: str) -> tuple[int, int, int]:
    digest = hashlib.blake2b(text.encode(), digest_size=3).digest()
    return digest[0], digest[1], digest[2]


# ---- PNG --------------------------------------------------------------------------------


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


@functools.lru_cache(maxsize=64)
def _png_pixels(width: int, height: int) -> bytes:
    # One bit per pixel, every pixel palette entry 0.
    row = b"\x00" + bytes(math.ceil(width / 8))
    return _chunk(b"IDAT", zlib.compress(row * height, 9))


def png(width: int, height: int, colour: tuple[int, int, int]) -> bytes:
    """A `width` x `height` PNG of one colour (indexed, 1 bit per pixel)."""
    header = struct.pack(">IIBBBBB", width, height, 1, 3, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"PLTE", bytes(colour))
        + _png_pixels(width, height)
        + _chunk(b"IEND", b"")
    )


# ---- JPEG -------------------------------------------------------------------------------

# The standard luminance DC table (categories 0..11) and an AC table holding only EOB.
_DC_BITS = bytes([0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0])
_DC_VALUES = bytes(range(12))
_AC_BITS = bytes([1] + [0] * 15)
_AC_VALUES = b"\x00"


def _dc_codes() -> dict[int, str]:
    codes: dict[int, str] = {}
    code, k = 0, 0
    for length, count in enumerate(_DC_BITS, start=1):
        for _ in range(count):
            codes[_DC_VALUES[k]] = format(code, f"0{length}b")
            code += 1
            k += 1
        code <<= 1
    return codes


_DC_CODES = _dc_codes()


def _segment(marker: int, data: bytes) -> bytes:
    return struct.pack(">BBH", 0xFF, marker, len(data) + 2) + data


def _dc_bits(value: int) -> str:
    """A DC difference: its category's code, then its magnitude bits (one's complement for
    negative values)."""
    if value == 0:
        return _DC_CODES[0]
    size = abs(value).bit_length()
    magnitude = value if value > 0 else value + (1 << size) - 1
    return _DC_CODES[size] + format(magnitude, f"0{size}b")


def _bits_to_bytes(first: str, zeros: int) -> bytes:
    """The bits `first`, then `zeros` zero bits, then 1-bits up to a byte boundary."""
    align = (-len(first)) % 8
    if zeros <= align:
        bits = first + "0" * zeros
        bits += "1" * ((-len(bits)) % 8)
        return int(bits, 2).to_bytes(len(bits) // 8, "big")
    head = first + "0" * align
    full, rest = divmod(zeros - align, 8)
    out = int(head, 2).to_bytes(len(head) // 8, "big") + bytes(full)
    return out + (bytes([(1 << (8 - rest)) - 1]) if rest else b"")


def jpeg(width: int, height: int, colour: tuple[int, int, int]) -> bytes:
    """A baseline JPEG of one colour (YCbCr 4:4:4, quantisation 1)."""
    r, g, b = colour
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = 128 - 0.168736 * r - 0.331264 * g + 0.5 * b
    cr = 128 + 0.5 * r - 0.418688 * g - 0.081312 * b
    # A flat block's only coefficient is DC = 8 x (value - 128); later blocks differ by 0,
    # and "difference 0, end of block" is all zero bits with these tables.
    first = "".join(_dc_bits(round(8 * (v - 128))) + "0" for v in (y, cb, cr))
    zeros = 9 * (math.ceil(width / 8) * math.ceil(height / 8) - 1)
    entropy = _bits_to_bytes(first, zeros)
    stuffed = entropy.replace(b"\xff", b"\xff\x00")
    jfif = b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    frame = struct.pack(">BHHB", 8, height, width, 3) + b"\x01\x11\x00\x02\x11\x00\x03\x11\x00"
    scan = b"\x03\x01\x00\x02\x00\x03\x00\x00\x3f\x00"
    return (
        b"\xff\xd8"
        + _segment(0xE0, jfif)
        + _segment(0xDB, b"\x00" + bytes([1] * 64))
        + _segment(0xC0, frame)
        + _segment(0xC4, b"\x00" + _DC_BITS + _DC_VALUES)
        + _segment(0xC4, b"\x10" + _AC_BITS + _AC_VALUES)
        + _segment(0xDA, scan)
        + stuffed
        + b"\xff\xd9"
    )


# ---- audio ------------------------------------------------------------------------------

_MPEG1_BITRATES = {32: 1, 40: 2, 48: 3, 56: 4, 64: 5, 80: 6, 96: 7, 112: 8, 128: 9, 160: 10,
                   192: 11, 224: 12, 256: 13, 320: 14}  # fmt: skip
_MPEG2_BITRATES = {8: 1, 16: 2, 24: 3, 32: 4, 40: 5, 48: 6, 56: 7, 64: 8, 80: 9, 96: 10,
                   112: 11, 128: 12, 144: 13, 160: 14}  # fmt: skip
_MPEG1_RATES = {44100: 0, 48000: 1, 32000: 2}
_MPEG2_RATES = {22050: 0, 24000: 1, 16000: 2}


def speech_seconds(text: str) -> float:
    return max(len(text) / CHARACTERS_PER_SECOND, 0.5)


@functools.lru_cache(maxsize=32)
def _mp3_frame(sample_rate: int, kbps: int) -> tuple[bytes, int]:
    """One silent mono MPEG Layer III frame, and the samples it holds."""
    if sample_rate in _MPEG1_RATES:
        sync, bitrate, rate = 0xFFFB, _MPEG1_BITRATES[kbps], _MPEG1_RATES[sample_rate]
        samples, factor = 1152, 144
    else:
        sync, bitrate, rate = 0xFFF3, _MPEG2_BITRATES[kbps], _MPEG2_RATES[sample_rate]
        samples, factor = 576, 72
    size = factor * kbps * 1000 // sample_rate
    header = struct.pack(">HBB", sync, (bitrate << 4) | (rate << 2), 0xC4)  # mono, original
    # All-zero side information and main data decode as silence.
    return header + bytes(size - len(header)), samples


def _mp3(seconds: float, sample_rate: int, kbps: int) -> bytes:
    frame, samples = _mp3_frame(sample_rate, kbps)
    return frame * max(math.ceil(seconds * sample_rate / samples), 1)


def _wav(seconds: float, sample_rate: int) -> bytes:
    data = bytes(2 * round(seconds * sample_rate))
    fmt = struct.pack("<HHIIHH", 1, 1, sample_rate, sample_rate * 2, 2, 16)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


# Ogg pages use CRC-32 with polynomial 0x04C11DB7, not reflected.
def _ogg_table() -> list[int]:
    table = []
    for i in range(256):
        crc = i << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else crc << 1
        table.append(crc & 0xFFFFFFFF)
    return table


_OGG_TABLE = _ogg_table()


def _ogg_crc(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ _OGG_TABLE[(crc >> 24) ^ byte]
    return crc


def _ogg_page(packets: list[bytes], granule: int, sequence: int, flags: int) -> bytes:
    lacing = bytearray()
    for packet in packets:
        lacing += b"\xff" * (len(packet) // 255) + bytes([len(packet) % 255])
    header = struct.pack("<4sBBqIIIB", b"OggS", 0, flags, granule, 0x0F1F, sequence, 0, len(lacing))
    page = header + bytes(lacing) + b"".join(packets)
    crc = _ogg_crc(page)
    return page[:22] + struct.pack("<I", crc) + page[26:]


_OPUS_SILENCE = b"\xf8\xff\xfe"  # one 20 ms CELT frame of silence


def _opus(seconds: float) -> bytes:
    head = b"OpusHead" + struct.pack("<BBHIhB", 1, 1, 312, 48000, 0, 0)
    tags = b"OpusTags" + struct.pack("<I", 7) + b"OneFlow" + struct.pack("<I", 0)
    pages = [_ogg_page([head], 0, 0, 0x02), _ogg_page([tags], 0, 1, 0)]
    remaining = max(math.ceil(seconds / 0.02), 1)
    granule, sequence = 312, 2
    while remaining:
        count = min(remaining, 255)
        remaining -= count
        granule += 960 * count
        pages.append(_ogg_page([_OPUS_SILENCE] * count, granule, sequence, 0 if remaining else 4))
        sequence += 1
    return b"".join(pages)


def audio_content_type(output_format: str) -> str:
    codec = output_format.split("_", 1)[0]
    return {
        "mp3": "audio/mpeg",
        "pcm": "audio/pcm",
        "wav": "audio/wav",
        "opus": "audio/ogg",
        "ulaw": "audio/basic",
        "alaw": "audio/alaw",
    }[codec]


def audio(text: str, output_format: str) -> bytes:
    """Silence as long as `text` read aloud, in an ElevenLabs `output_format` such as
    `mp3_44100_128`, `pcm_24000`, `wav_44100`, `opus_48000_64` or `ulaw_8000`.
    Raises ValueError for a format it does not know."""
    seconds = speech_seconds(text)
    parts = output_format.split("_")
    try:
        codec, rate = parts[0], int(parts[1])
        if codec == "mp3" and len(parts) == 3:
            return _mp3(seconds, rate, int(parts[2]))
        if codec == "pcm" and len(parts) == 2:
            return bytes(2 * round(seconds * rate))
        if codec == "wav" and len(parts) == 2:
            return _wav(seconds, rate)
        if codec == "opus" and len(parts) == 3 and rate == 48000:
            return _opus(seconds)
        if codec in ("ulaw", "alaw") and len(parts) == 2 and rate == 8000:
            return (b"\xff" if codec == "ulaw" else b"\xd5") * round(seconds * rate)
    except (IndexError, KeyError, ValueError):
        pass
    raise ValueError(f"unknown output_format {output_format!r}")
