"""Reasoning settings for the model that answers: only the models that reason get them.

A caller's `reasoning_effort` (OpenAI) or `thinking` (Anthropic) reaches a model of the other
dialect that the catalog marks `reasoning: true` in that dialect's terms (the translators map
one to the other, docs/dialects.md); for a model of the other dialect that does not reason it
is left out and named in the answer's `X-OneFlow-Ignored-Params`, like any parameter the model
cannot honour; a Responses request (which names what it cannot honour, never drops it) is
refused with a 400 naming `reasoning.effort`. A body in the model's own dialect goes as
written: the provider judges it. A
reasoning model always gets a `Reasoning` (empty when the caller asked nothing), which tells
the OpenAI translator to send `max_completion_tokens`, the only limit those models take.
"""

from __future__ import annotations

from dataclasses import replace

from oneflow_ai.catalog import ModelEntry
from oneflow_ai.domain.chat import ChatRequest, Reasoning
from oneflow_ai.errors import BadRequestError

__all__ = ["for_model", "unhonoured_reasoning"]

_NONE = Reasoning()
#: The body field of each dialect that carries the setting.
_FIELD = {"openai": "reasoning_effort", "anthropic": "thinking"}


def for_model(request: ChatRequest, entry: ModelEntry) -> ChatRequest:
    """`request` as `entry`'s model takes it (the same object when nothing changes)."""
    if entry.reasoning:
        return request if request.reasoning is not None else replace(request, reasoning=_NONE)
    if request.reasoning is None:
        return request
    if request.raw_dialect == "responses" and request.reasoning.effort not in (None, "none"):
        raise BadRequestError(
            f"Model '{entry.id}' does not reason: leave out reasoning.effort",
            param="reasoning.effort",
        )
    return replace(request, reasoning=None)


def unhonoured_reasoning(request: ChatRequest, entry: ModelEntry, dialect: str) -> str | None:
    """The caller's reasoning field when a model of the other `dialect` that does not reason
    answers (so it was left out), else None."""
    if request.reasoning is None or entry.reasoning or request.raw_dialect == dialect:
        return None
    return _FIELD.get(request.raw_dialect or "")
