"""What the access line of a model call says about it, besides method, path and status.

The edge middleware writes one JSON line per request; for a model call it adds, from the
pipeline's `Call` (left in the request's state by `api/calls.py`):

    model_requested  the model as the caller named it (an id, an alias, `auto`, a strategy)
    model, provider  the model that answered (or the last one tried) and its provider
    route            why that model (as `X-OneFlow-Route` says it)
    fallbacks        how many candidates were passed before it
    input_tokens, output_tokens (chat), input_tokens (embedding), images (image),
    characters (speech), audio_seconds (transcription)
    credits          charged (a decimal string)
    cache            what the response cache did (`hit`, `miss`, `bypass`), when it looked,
                     and `credits_saved` by a hit; `cache_similarity` for a semantic hit,
                     `cache_embedding_credits` when the semantic cache embedded the question
    ignored_params   the caller's parameters the answering model could not honour, if any
    error            the kind of error the call ended with, if it did
"""

from __future__ import annotations

from oneflow_ai.domain.money import micro_credits_to_credits
from oneflow_ai.gateway.call import Call

__all__ = ["CALL_STATE", "add_call_fields"]

#: The request-state entry holding the request's `Call` until the access line is written.
CALL_STATE = "call"


def add_call_fields(fields: dict[str, object], call: Call) -> None:
    """The call's fields, added to the access line's `fields` (after those it has)."""
    fields["model_requested"] = call.model
    route = call.route
    if route is not None:
        fields["model"] = route.model
        fields["provider"] = route.provider_name
        if call.route_reason is not None:
            fields["route"] = call.route_reason.text
        fallbacks = call.fallbacks
        if call.outcome == "error":  # the last model tried: how far down the chain it was
            chain = [candidate.model for candidate in call.candidates]
            fallbacks = chain.index(route.model) if route.model in chain else 0
        fields["fallbacks"] = fallbacks
    usage = call.usage
    if usage is not None:
        if call.operation == "chat":
            fields["input_tokens"] = usage.input_tokens
            fields["output_tokens"] = usage.output_tokens
        elif call.operation == "embedding":
            fields["input_tokens"] = usage.input_tokens
        elif call.operation == "transcription":
            fields["audio_seconds"] = usage.audio_seconds
        elif call.operation == "image":
            fields["images"] = usage.images
        else:
            fields["characters"] = usage.characters
    if call.cost is not None:
        fields["credits"] = str(call.cost.credits)
    cache = call.cache
    if cache is not None:
        fields["cache"] = cache.result
        if cache.hit:
            fields["credits_saved"] = str(micro_credits_to_credits(cache.saved_micro_credits))
        if cache.similarity is not None:
            fields["cache_similarity"] = round(cache.similarity, 4)
        if cache.embedding_cost is not None:
            fields["cache_embedding_credits"] = str(cache.embedding_cost.credits)
    ignored = call.ignored_params
    if ignored:
        fields["ignored_params"] = list(ignored)
    if call.error is not None:
        fields["error"] = call.error.kind
