"""Embedding requests in the pipeline: which models can serve one, and what each is asked.

A concrete model serves a request when it can make vectors of the length asked for (its
native `dimensions`, or fewer when its catalog entry says `reducible_dimensions`) and every
input is within its token limit (`context_window`); otherwise the request is a 400 naming the
field. A strategy (`auto`, `cost_optimized`, ...) chooses only among models whose vectors have
the length the request names in `dimensions` (required then: vectors of different lengths
cannot be compared, so a fallback must not change it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from oneflow_ai.catalog import ModelEntry
from oneflow_ai.domain.embeddings import EmbeddingRequest
from oneflow_ai.errors import BadRequestError
from oneflow_ai.gateway.call import Call
from oneflow_ai.gateway.estimate import TokenEstimator

__all__ = ["check_embedding", "embedding_unfit", "for_model"]


def for_model(request: EmbeddingRequest, entry: ModelEntry) -> EmbeddingRequest:
    """`request` as `entry` is asked it: a model of fixed vector length is not sent
    `dimensions` (it refuses the parameter), which it already matches."""
    if request.dimensions is not None and not entry.reducible_dimensions:
        return replace(request, dimensions=None)
    return request


def check_embedding(
    call: Call, entry: ModelEntry, estimator: TokenEstimator, *, strategy: bool
) -> None:
    """An embedding request `entry` can serve: the vector length asked for, and each input
    within the model's token limit (a 400 naming the field otherwise)."""
    request = call.payload(EmbeddingRequest)
    native = entry.dimensions
    if strategy and request.dimensions is None:
        raise BadRequestError(
            "Routing an embedding request chooses among models of one vector length: give "
            "'dimensions' (or name a model)",
            param="dimensions",
        )
    if request.dimensions is not None and request.dimensions != native:
        if not entry.reducible_dimensions:
            raise BadRequestError(
                f"The model '{entry.id}' makes vectors of {native} dimensions only: leave out "
                "'dimensions' or give that number",
                param="dimensions",
            )
        if native is not None and request.dimensions > native:
            raise BadRequestError(
                f"The model '{entry.id}' makes vectors of at most {native} dimensions; "
                f"'dimensions' was {request.dimensions}",
                param="dimensions",
            )
    limit = entry.context_window
    if limit is None:
        return
    for index, tokens in enumerate(call.input_token_counts(estimator, entry)):
        if tokens > limit:
            where = "input" if len(request.inputs) == 1 else f"input[{index}]"
            raise BadRequestError(
                f"'{where}' has {tokens} tokens; the model '{entry.id}' takes at most {limit} "
                "tokens per input",
                param=where,
                code="context_length_exceeded",
            )


def embedding_unfit(call: Call, usable: Sequence[ModelEntry], estimator: TokenEstimator) -> None:
    """Raise why no embedding model fits (the request's vector length, or an input too long
    for all of them), as the model with the longest input limit (and vectors) tells it."""
    widest = max(usable, key=lambda e: (e.context_window or 0, e.dimensions or 0))
    check_embedding(call, widest, estimator, strategy=True)
