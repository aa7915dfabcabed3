"""Provider-neutral embeddings: texts (or token arrays) in, vectors out."""

from __future__ import annotations

import base64
from array import array
from dataclasses import dataclass
from sys import byteorder
from typing import Literal

from oneflow_ai.domain.usage import Usage

__all__ = ["EmbeddingInput", "EmbeddingRequest", "EmbeddingResponse", "Vector"]

#: One input: a text, or a text already split into tokens (token ids of the model's encoding).
EmbeddingInput = str | tuple[int, ...]


@dataclass(slots=True)
class EmbeddingRequest:
    """`inputs` in the caller's order; `dimensions` asks for shorter vectors (models whose
    catalog entry has `reducible_dimensions`); `encoding_format` is how the caller wants the
    vectors written (the provider is always asked for base64, the compact exact form)."""

    model: str
    inputs: list[EmbeddingInput]
    dimensions: int | None = None
    encoding_format: Literal["float", "base64"] = "float"
    user: str | None = None


@dataclass(frozen=True, slots=True)
class Vector:
    """One embedding as little-endian float32 values (the form OpenAI's base64 carries)."""

    data: bytes

    @classmethod
    def of_floats(cls, values: list[float]) -> Vector:
        packed = array("f", values)
        if byteorder != "little":  # pragma: no cover - every supported platform is little-endian
            packed.byteswap()
        return cls(packed.tobytes())

    @classmethod
    def of_base64(cls, text: str) -> Vector:
        data = base64.b64decode(text, validate=True)
        if len(data) % 4:
            raise ValueError("a base64 embedding must hold whole float32 values")
        return cls(data)

    def __len__(self) -> int:
        return len(self.data) // 4

    def floats(self) -> list[float]:
        values = array("f")
        values.frombytes(self.data)
        if byteorder != "little":  # pragma: no cover
            values.byteswap()
        return values.tolist()

    def base64(self) -> str:
        return base64.b64encode(self.data).decode("ascii")


@dataclass(slots=True)
class EmbeddingResponse:
    vectors: list[Vector]  # one per input, in the inputs' order
    usage: Usage  # input_tokens
    model: str = ""
