"""OpenAI's Embeddings dialect at the edge (`POST /v1/embeddings`): request in, answer out.

`input` is a string, an array of strings, an array of token ids, or an array of token-id
arrays (at most 2,048 inputs, none empty), as OpenAI takes it; `dimensions` a positive
integer; `encoding_format` `float` (the default) or `base64` (little-endian float32, what
the official SDKs ask for and decode). The answer is OpenAI's `list` of `embedding` objects
with `usage` (`prompt_tokens`, `total_tokens`).
"""

from __future__ import annotations

from typing import Any, Literal

from oneflow_ai.api.body_schema import Field, Int, Obj, Str, Value
from oneflow_ai.api.validation import invalid
from oneflow_ai.domain.embeddings import EmbeddingInput, EmbeddingRequest, EmbeddingResponse
from oneflow_ai.domain.usage import Usage

__all__ = ["EMBEDDING_REQUEST", "parse_embedding_request", "render_embeddings"]

MAX_INPUTS = 2048
_TOKENS = {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 1}
_INPUT = {
    "anyOf": [
        {"type": "string", "minLength": 1},
        {
            "type": "array",
            "items": {"type": "string", "minLength": 1},
            "minItems": 1,
            "maxItems": MAX_INPUTS,
        },
        _TOKENS,
        {"type": "array", "items": _TOKENS, "minItems": 1, "maxItems": MAX_INPUTS},
    ]
}

#: The body of `POST /v1/embeddings`: its check (unknown fields refused) and its schema.
EMBEDDING_REQUEST = Obj(
    (
        Field("model", Str(), required=True, examples=("text-embedding-3-small",)),
        Field(
            "input",
            Value(_INPUT),  # its union is read by _inputs below
            required=True,
            description="A text, texts, token ids, or arrays of token ids (at most 2,048 inputs)",
        ),
        Field("dimensions", Int(minimum=1), description="Shorter vectors (text-embedding-3)"),
        Field("encoding_format", Str(choices=("float", "base64"))),
        Field("user", Str()),
    ),
    name="EmbeddingRequestBody",
    closed=True,
)


def parse_embedding_request(body: dict[str, Any]) -> EmbeddingRequest:
    EMBEDDING_REQUEST.read(body)
    dimensions = body.get("dimensions")
    encoding_format: Literal["float", "base64"] = (
        "base64" if body.get("encoding_format") == "base64" else "float"
    )
    return EmbeddingRequest(
        model=body["model"],
        inputs=_inputs(body["input"]),
        dimensions=None if dimensions is None else int(dimensions),
        encoding_format=encoding_format,
        user=body.get("user"),
    )


def _inputs(value: object) -> list[EmbeddingInput]:
    if isinstance(value, str):
        return [_text(value, "input")]
    if not isinstance(value, list):
        raise invalid("input", _EXPECTED)
    if not value:
        raise invalid("input", "must not be empty")
    if len(value) > MAX_INPUTS:
        raise invalid("input", f"must have at most {MAX_INPUTS} items")
    if all(_is_token(item) for item in value):  # one text as token ids
        return [tuple(value)]
    inputs: list[EmbeddingInput] = []
    for index, item in enumerate(value):
        where = f"input[{index}]"
        if isinstance(item, str):
            inputs.append(_text(item, where))
        elif isinstance(item, list) and item and all(_is_token(token) for token in item):
            inputs.append(tuple(item))
        elif isinstance(item, list) and not item:
            raise invalid(where, "must not be empty")
        else:
            raise invalid(where, "must be a string or an array of token ids (integers >= 0)")
    return inputs


_EXPECTED = "must be a string, an array of strings, or an array of token ids"


def _text(value: str, where: str) -> str:
    if not value:
        raise invalid(where, "must not be empty")
    return value


def _is_token(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def render_embeddings(
    response: EmbeddingResponse, request: EmbeddingRequest, model: str, usage: Usage
) -> dict[str, Any]:
    as_base64 = request.encoding_format == "base64"
    return {
        "object": "list",
        "data": [
            {
                "object": "embedding",
                "index": index,
                "embedding": vector.base64() if as_base64 else vector.floats(),
            }
            for index, vector in enumerate(response.vectors)
        ],
        "model": model,
        "usage": {"prompt_tokens": usage.input_tokens, "total_tokens": usage.input_tokens},
    }
