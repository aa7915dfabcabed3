"""OpenAI's BPE encodings, built offline from rank files shipped in the package.

``tiktoken.get_encoding`` downloads its rank files on first use; OneFlow never does. The
official ``cl100k_base`` and ``o200k_base`` rank files are vendored gzip-compressed in
``oneflow_ai/billing/encodings/`` (provenance in the README there). On first use in a process
each file is decompressed, checked against the SHA-256 that tiktoken itself records for it, and
turned into a ``tiktoken.Encoding`` with the same split pattern and special tokens as tiktoken's
own definition (``tiktoken_ext/openai_public.py``, tiktoken 0.14.0). The encodings are cached for
the life of the process, built on first use (a process holds only the encodings it counts
with), and are safe to share between threads; they cannot be pickled (their
Python copy of the ranks is dropped once the encoder is built, to save memory). tiktoken itself
(its compiled core, ~1.4 MiB resident) is imported with the first encoding built.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import threading
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Final, Literal, get_args

if TYPE_CHECKING:
    import tiktoken

__all__ = [
    "ENCODING_NAMES",
    "EncodingIntegrityError",
    "EncodingName",
    "get_encoding",
    "is_loaded",
]

EncodingName = Literal["cl100k_base", "o200k_base"]
ENCODING_NAMES: Final[tuple[EncodingName, ...]] = get_args(EncodingName)

_ENDOFTEXT = "<|endoftext|>"
_FIM_PREFIX = "<|fim_prefix|>"
_FIM_MIDDLE = "<|fim_middle|>"
_FIM_SUFFIX = "<|fim_suffix|>"
_ENDOFPROMPT = "<|endofprompt|>"


@dataclass(frozen=True, slots=True)
class _Spec:
    file: str
    sha256: str  # of the uncompressed rank file, as in tiktoken's ``expected_hash``
    pat_str: str
    special_tokens: dict[str, int]


_SPECS: Final[dict[EncodingName, _Spec]] = {
    "cl100k_base": _Spec(
        file="cl100k_base.tiktoken.gz",
        sha256="223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
        pat_str=(
            r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++"""
            r"""[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
        ),
        special_tokens={
            _ENDOFTEXT: 100257,
            _FIM_PREFIX: 100258,
            _FIM_MIDDLE: 100259,
            _FIM_SUFFIX: 100260,
            _ENDOFPROMPT: 100276,
        },
    ),
    "o200k_base": _Spec(
        file="o200k_base.tiktoken.gz",
        sha256="446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
        pat_str="|".join(
            [
                r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
                r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
                r"""\p{N}{1,3}""",
                r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
                r"""\s*[\r\n]+""",
                r"""\s+(?!\S)""",
                r"""\s+""",
            ]
        ),
        special_tokens={_ENDOFTEXT: 199999, _ENDOFPROMPT: 200018},
    ),
}

_cache: dict[EncodingName, tiktoken.Encoding] = {}
_lock = threading.Lock()


class EncodingIntegrityError(RuntimeError):
    """A vendored rank file is missing or does not match its recorded SHA-256."""


def is_loaded(name: EncodingName) -> bool:
    """Whether ``name`` is built already (the first :func:`get_encoding` of each takes about a
    second and 25-45 MiB: callers on an event loop build it in a thread first)."""
    return name in _cache


def get_encoding(name: EncodingName) -> tiktoken.Encoding:
    """The ``tiktoken.Encoding`` called ``name``, built from the vendored ranks (cached)."""
    encoding = _cache.get(name)
    if encoding is not None:
        return encoding
    spec = _SPECS.get(name)
    if spec is None:
        raise ValueError(f"unknown encoding {name!r}; OneFlow ships {', '.join(ENCODING_NAMES)}")
    with _lock:
        encoding = _cache.get(name)
        if encoding is None:
            import tiktoken

            encoding = tiktoken.Encoding(
                name,
                pat_str=spec.pat_str,
                mergeable_ranks=_load_ranks(spec),
                special_tokens=spec.special_tokens,
            )
            # The encoder (tiktoken's compiled core) holds its own copy of the ranks; the
            # Python dict is kept only for pickling the Encoding, which OneFlow never does.
            # Dropping it returns 40-45 MiB of the gateway's resident memory (both encodings).
            encoding._mergeable_ranks = {}
            _cache[name] = encoding
    return encoding


def _load_ranks(spec: _Spec) -> dict[bytes, int]:
    try:
        compressed = (
            resources.files("oneflow_ai.billing").joinpath("encodings", spec.file).read_bytes()
        )
        contents = gzip.decompress(compressed)
    except (OSError, EOFError) as exc:
        raise EncodingIntegrityError(f"cannot read vendored rank file {spec.file}: {exc}") from exc
    digest = hashlib.sha256(contents).hexdigest()
    if digest != spec.sha256:
        raise EncodingIntegrityError(
            f"vendored rank file {spec.file} has sha256 {digest}, expected {spec.sha256}"
        )
    # Line by line (not splitlines()): the build's peak stays ~4 MiB lower for o200k_base.
    ranks: dict[bytes, int] = {}
    for line in io.BytesIO(contents):
        if line.strip():
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks
