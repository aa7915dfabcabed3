"""OpenAI's Embeddings dialect at the edge (`POST /v1/embeddings`): request in, answer out.

`input` is a string, an array of strings, an array of token ids, or an array of token-id
arrays (at most 2,048 inputs, none empty), as OpenAI takes it; `dimensions` a positive
integer; `encoding_format` `float` (the default) or `base64` (little-endian float32, what
the official SDKs ask for and decode). The answer is OpenAI's `list` of `embedding` objects
with `usage` (`prompt_tokens`, `total_tokens`).
"""

from __future__ import annotations

from typing import Any, Literal

from oneflow_ai.api.validation import Fields, invalid
from oneflow_ai.domain.embeddings import EmbeddingInput, EmbeddingRequest, EmbeddingResponse
from oneflow_ai.domain.usage import Usage

__all__ = ["EMBEDDING_FIELDS", "parse_embedding_request", "render_embeddings"]

MAX_INPUTS = 2048
EMBEDDING_FIELDS = frozenset({"model", "input", "dimensions", "encoding_format", "user"})


def parse_embedding_request(body: dict[str, Any]) -> EmbeddingRequest:
    fields = Fields(body)
    fields.only(EMBEDDING_FIELDS)
    model = fields.req_str("model")
    encoding = fields.opt_str("encoding_format", choices=("float", "base64")) or "float"
    encoding_format: Literal["float", "base64"] = "base64" if encoding == "base64" else "float"
    return EmbeddingRequest(
        model=model,
        inputs=_inputs(body.get("input")),
        dimensions=fields.opt_int("dimensions", minimum=1),
        encoding_format=encoding_format,
        user=fields.opt_str("user"),
    )


def _inputs(value: object) -> list[EmbeddingInput]:
    if value is None:
        raise invalid("input", "field required")
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
