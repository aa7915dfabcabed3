"""Readers that check the structure of the fakes' media files, byte by byte."""

from __future__ import annotations

import struct
import zlib


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height of a PNG, after checking its signature, every chunk's CRC and that
    the pixel data decompresses to exactly the rows the header promises."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    at, chunks = 8, {}
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        kind, body = data[at + 4 : at + 8], data[at + 8 : at + 8 + length]
        (crc,) = struct.unpack(">I", data[at + 8 + length : at + 12 + length])
        assert zlib.crc32(kind + body) == crc, kind
        chunks[kind] = chunks.get(kind, b"") + body
        at += 12 + length
    assert next(iter(chunks)) == b"IHDR" and list(chunks)[-1] == b"IEND"
    width, height, depth, colour_type = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[colour_type]
    row = 1 + (width * depth * channels + 7) // 8
    assert len(zlib.decompress(chunks[b"IDAT"])) == row * height
    return width, height


def jpeg_size(data: bytes) -> tuple[int, int]:
    """Width and height from a baseline JPEG's frame header, after walking its segments."""
    assert data[:2] == b"\xff\xd8" and data[-2:] == b"\xff\xd9"
    at, size = 2, None
    while data[at : at + 2] != b"\xff\xda":
        marker = data[at + 1]
        (length,) = struct.unpack(">H", data[at + 2 : at + 4])
        if marker == 0xC0:
            height, width = struct.unpack(">HH", data[at + 5 : at + 9])
            size = (width, height)
        at += 2 + length
    assert size is not None
    return size


def mp3_frames(data: bytes) -> int:
    """The number of MPEG-1 Layer III 44.1 kHz frames, each checked for its sync word."""
    count, at = 0, 0
    while at < len(data):
        header = data[at : at + 4]
        assert header[0] == 0xFF and header[1] & 0xE0 == 0xE0, at
        bitrate = [0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320][header[2] >> 4]
        at += 144 * bitrate * 1000 // 44100 + ((header[2] >> 1) & 1)
        count += 1
    assert at == len(data)
    return count
