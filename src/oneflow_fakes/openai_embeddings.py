"""The fake OpenAI Embeddings endpoint (`POST /openai/v1/embeddings`).

Vectors are derived from the input alone (SHA-256 of the model and the text, or of the token
ids, stretched to the model's length and normalised to unit length), so the same input always
gets the same vector and different inputs different ones; a `{{near:TOPIC:S}}` marker in a
text sets its similarity to other texts of the topic (`fake_vector`). `dimensions` shortens a
text-embedding-3 vector the way OpenAI's does (the leading values, normalised again);
`encoding_format: base64` answers little-endian float32 bytes, base64-encoded. With
`any_model`, an unknown model makes vectors of 1,024 values. Texts are
counted with the server's `count_tokens` (`FakeConfig`); a token array counts its length.
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
import struct
from collections.abc import Callable

from aiohttp import web

from oneflow_fakes.errors import ErrorAnswer, openai_error
from oneflow_fakes.exchange import Exchange, FakeState, random_id, read_json
from oneflow_fakes.models import OPENAI_EMBEDDING_MODELS
from oneflow_fakes.openai_common import (
    check_openai_key,
    missing_parameter,
    openai_headers,
    unsupported_value,
)

__all__ = ["OpenAIEmbeddings", "fake_vector"]

_MAX_TOKENS = 8192
_MAX_INPUTS = 2048
#: What an unknown model is with `any_model` (an OpenAI-compatible server's own model).
_ANY_MODEL = (1024, True)


#: `{{near:TOPIC}}` or `{{near:TOPIC:0.97}}` in a text: see `fake_vector`.
_NEAR = re.compile(r"\{\{near:([^:}]+)(?::([0-9.]+))?\}\}")


def fake_vector(model: str, item: str | list[int], length: int) -> list[float]:
    """The unit vector the fake answers for `item` on `model` (`length` leading values).

    A text holding `{{near:TOPIC:S}}` (S from 0 to 1; `{{near:TOPIC}}` is 1) gets a vector
    whose cosine similarity with TOPIC's own vector is exactly S: two texts of one TOPIC with
    S=1 and S=0.97 are 0.97 similar, whatever else they say (the rest of the vector is the
    text's own, made orthogonal to TOPIC's). Tests of the semantic cache control similarity so.
    """
    near = _NEAR.search(item) if isinstance(item, str) else None
    if near is None:
        return _random_unit(model, item, length)
    topic = _random_unit(model, "near:" + near.group(1), length)
    closeness = min(1.0, float(near.group(2) or 1))
    own = _random_unit(model, item, length)
    along = sum(a * b for a, b in zip(own, topic, strict=True))
    rest = [a - along * b for a, b in zip(own, topic, strict=True)]
    norm = math.sqrt(sum(v * v for v in rest)) or 1.0
    other = math.sqrt(max(0.0, 1 - closeness * closeness))
    return [closeness * t + other * r / norm for t, r in zip(topic, rest, strict=True)]


def _random_unit(model: str, item: str | list[int], length: int) -> list[float]:
    seed = hashlib.sha256(
        model.encode() + b"\0" + (item.encode() if isinstance(item, str) else repr(item).encode())
    ).digest()
    values: list[float] = []
    block = 0
    while len(values) < length:
        digest = hashlib.sha256(seed + block.to_bytes(4, "little")).digest()
        values.extend((word / 0x7FFF_FFFF) - 1.0 for word in struct.unpack("<8I", digest))
        block += 1
    values = values[:length]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


class OpenAIEmbeddings:
    def __init__(self, state: FakeState) -> None:
        self.state = state

    async def create(self, request: web.Request) -> web.StreamResponse:
        body = await read_json(request)
        model = body.string("model")
        exchange = Exchange(
            self.state,
            request,
            provider="openai",
            endpoint="embeddings",
            model=model,
            stream=False,
            body=body.recorded,
            request_id=random_id("req_", 32),
        )
        interfered = await exchange.interfere(openai_error, model=model)
        if interfered is not None:
            return interfered
        refused = check_openai_key(
            request, self.state.config.api_key, self.state.config.openai_auth
        )
        if refused is None and not body.is_object:
            refused = openai_error(400, "invalid_request_error", "Invalid JSON body.")
        if refused is not None:
            return exchange.error(refused)
        checked = _validate(
            body.data, model, self.state.count_tokens, any_model=self.state.config.any_model
        )
        if isinstance(checked, ErrorAnswer):
            return exchange.error(checked)
        inputs, length, as_base64 = checked
        data: list[dict[str, object]] = []
        tokens = 0
        for index, item in enumerate(inputs):
            vector = fake_vector(model, item, length)
            tokens += self.state.count_tokens(item) if isinstance(item, str) else len(item)
            encoded: object = (
                base64.b64encode(struct.pack(f"<{length}f", *vector)).decode()
                if as_base64
                else vector
            )
            data.append({"object": "embedding", "index": index, "embedding": encoded})
        answer = {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        return exchange.json(answer, openai_headers())


def _validate(
    data: dict[str, object],
    model: str,
    count_tokens: Callable[[str], int],
    *,
    any_model: bool = False,
) -> ErrorAnswer | tuple[list[str | list[int]], int, bool]:
    if not model:
        return missing_parameter("model")
    known = OPENAI_EMBEDDING_MODELS.get(model, _ANY_MODEL if any_model else None)
    if known is None:
        return openai_error(404, "model_not_found", model=model)
    native, reducible = known
    inputs = _inputs(data.get("input"))
    if isinstance(inputs, ErrorAnswer):
        return inputs
    for item in inputs:
        tokens = count_tokens(item) if isinstance(item, str) else len(item)
        if tokens > _MAX_TOKENS:
            return openai_error(
                400,
                "invalid_request_error",
                f"This model's maximum context length is {_MAX_TOKENS} tokens, however you "
                f"requested {tokens} tokens in the input. Please reduce your input.",
                param="input",
            )
    dimensions = data.get("dimensions")
    length = native
    if dimensions is not None:
        if not reducible:
            return openai_error(
                400,
                "invalid_request_error",
                "This model does not support specifying dimensions.",
                param="dimensions",
            )
        if isinstance(dimensions, bool) or not isinstance(dimensions, int) or dimensions < 1:
            return openai_error(
                400,
                "invalid_value",
                "Invalid 'dimensions': expected an integer.",
                param="dimensions",
            )
        if dimensions > native:
            return openai_error(
                400,
                "invalid_value",
                f"Invalid 'dimensions': must be at most {native} for this model.",
                param="dimensions",
            )
        length = dimensions
    encoding = data.get("encoding_format") or "float"
    if encoding not in ("float", "base64"):
        return unsupported_value(encoding, ("float", "base64"), "encoding_format")
    return inputs, length, encoding == "base64"


def _inputs(value: object) -> ErrorAnswer | list[str | list[int]]:
    wrong = openai_error(
        400,
        "invalid_request_error",
        "'$.input' is invalid. Please check the API reference: "
        "https://platform.openai.com/docs/api-reference.",
        param="input",
    )
    if isinstance(value, str):
        return [value] if value else wrong
    if not isinstance(value, list) or not value or len(value) > _MAX_INPUTS:
        return wrong
    if all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return [[int(v) for v in value]]
    out: list[str | list[int]] = []
    for item in value:
        if isinstance(item, str) and item:
            out.append(item)
        elif (
            isinstance(item, list)
            and item
            and all(isinstance(v, int) and not isinstance(v, bool) for v in item)
        ):
            out.append([int(v) for v in item])
        else:
            return wrong
    return out
