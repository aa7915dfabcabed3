"""OpenAI's Embeddings API (`POST /embeddings`), for OpenAI and every OpenAI-compatible API.

The provider is always asked for `encoding_format: base64` (little-endian float32, exact and a
quarter of the size of JSON floats); an API that answers with float arrays anyway is read too.
The vectors come back in the inputs' order whatever order the answer lists them in (each item
carries its `index`).
"""

from __future__ import annotations

from typing import TypedDict

import orjson

from oneflow_ai.domain.embeddings import EmbeddingRequest, EmbeddingResponse, Vector
from oneflow_ai.domain.usage import Usage
from oneflow_ai.providers.engine import read_answer
from oneflow_ai.providers.upstream import ErrorMapper, UpstreamClient, UpstreamRequest

__all__ = ["EmbeddingsMixin", "embedding_body"]


class _Item(TypedDict):
    index: int
    embedding: str | list[float]


class _Usage(TypedDict, total=False):
    prompt_tokens: int
    total_tokens: int


class _EmbeddingsAnswer(TypedDict, total=False):
    data: list[_Item]
    model: str
    usage: _Usage


def embedding_body(request: EmbeddingRequest, model: str) -> dict[str, object]:
    """The request body of `request` for `model`."""
    inputs = [item if isinstance(item, str) else list(item) for item in request.inputs]
    body: dict[str, object] = {"model": model, "input": inputs, "encoding_format": "base64"}
    if request.dimensions is not None:
        body["dimensions"] = request.dimensions
    if request.user is not None:
        body["user"] = request.user
    return body


def _parse(body: bytes, count: int, model: str) -> EmbeddingResponse:
    answer: _EmbeddingsAnswer = orjson.loads(body)
    vectors: list[Vector | None] = [None] * count
    for item in answer["data"]:
        embedding = item["embedding"]
        try:
            vector = (
                Vector.of_base64(embedding)
                if isinstance(embedding, str)
                else Vector.of_floats([float(v) for v in embedding])
            )
        except ValueError as exc:  # not base64, not numbers: a malformed answer
            raise TypeError(str(exc)) from exc
        vectors[int(item["index"])] = vector
    if any(v is None for v in vectors):
        raise LookupError("the answer lacks the embedding of an input")
    usage = answer.get("usage") or {}
    return EmbeddingResponse(
        vectors=[v for v in vectors if v is not None],
        usage=Usage(input_tokens=int(usage.get("prompt_tokens") or 0)),
        model=str(answer.get("model") or model),
    )


class EmbeddingsMixin:
    """`embed` (an `EmbeddingCapable`) for an adapter with an OpenAI-style upstream client."""

    name: str
    _client: UpstreamClient
    _map_error: ErrorMapper

    async def embed(self, request: EmbeddingRequest, model: str) -> EmbeddingResponse:
        response = await self._client.send(
            UpstreamRequest(
                "POST",
                "/embeddings",
                self._map_error,
                body=orjson.dumps(embedding_body(request, model)),
                model=model,
            )
        )
        count = len(request.inputs)
        return read_answer(self.name, model, response.body, lambda b: _parse(b, count, model))
