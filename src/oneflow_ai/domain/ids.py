"""Identifiers made on the hot path.

A request makes several (its request id, a reservation id, an upstream idempotency key). Each
reads 16 bytes of a block of `os.urandom` read once for many ids, instead of asking the
kernel each time: a system call per id costs more than the rest of making it. The bytes are
the kernel's CSPRNG's all the same; an id is never a secret. A block is handed out once: each
id takes its own slice by a counter (`next` on an `itertools.count` is atomic), so threads
never share one, and a forked child starts on a block of its own.

A request's id (:func:`time_ordered_hex`) starts with the time, as a version-7 UUID does: the
indexes that hold request ids (a charge's, a usage record's) then take each new one at their
end, where the batch's other new ids are, instead of at a random leaf page each, which SQLite
and PostgreSQL would both write out (a page per request, not per batch).
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Iterator

__all__ = ["time_ordered_hex", "uuid4_hex"]

_ID_BYTES = 16
_IDS_PER_BLOCK = 256


class _Block:
    __slots__ = ("data", "taken")

    def __init__(self, ids: int) -> None:
        self.data = os.urandom(_ID_BYTES * ids)
        self.taken: Iterator[int] = itertools.count()


_EMPTY = _Block(0)
_block = _EMPTY


def _random_16() -> bytes:
    """16 random bytes never handed out before, in this process."""
    global _block
    block = _block  # one read: a thread that swaps in a new block leaves this one whole
    index = next(block.taken) * _ID_BYTES
    if index >= len(block.data):
        block = _block = _Block(_IDS_PER_BLOCK)
        index = next(block.taken) * _ID_BYTES
    return block.data[index : index + _ID_BYTES]


def _forget_block() -> None:
    global _block
    _block = _EMPTY


os.register_at_fork(after_in_child=_forget_block)  # a child never repeats its parent's ids


def time_ordered_hex() -> str:
    """32 hex digits: the Unix time in milliseconds (12 digits), then 80 random bits; ids made
    later sort after (a millisecond apart or more)."""
    return f"{time.time_ns() // 1_000_000:012x}{_random_16()[:10].hex()}"


def uuid4_hex() -> str:
    """A random version-4 UUID in hex, as ``uuid.uuid4().hex`` gives (16 random bytes with its
    version and variant bits), without building a ``UUID``."""
    raw = bytearray(_random_16())
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    return raw.hex()
