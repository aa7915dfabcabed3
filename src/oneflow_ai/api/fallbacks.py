"""The models a caller names to stand in for its model, in the body or a header.

- OpenRouter's way, in a chat body of either dialect: `"models": ["gpt-4o", "claude-3-haiku"]`.
  With `model` also set, `model` is tried first and `models` after it; without `model`, the
  first of `models` is the model; `"models": []` means no fallbacks. The field is OneFlow's
  to read: it is taken out of the body before the body reaches a provider (which would refuse
  an unknown field).
- Any model endpoint: `X-OneFlow-Fallbacks: claude-3-haiku, gpt-4o-mini`.

Giving both is a 400 (which list would win is not obvious). A list replaces the fallbacks the
catalog configures for the model; the pipeline checks every name (unknown: 400, not allowed to
the key: 403, naming it; `gateway.planning.plan_fallbacks`).
"""

from __future__ import annotations

from typing import Any

from oneflow_ai.api.validation import invalid
from oneflow_ai.errors import BadRequestError
from oneflow_ai.gateway.planning import MAX_REQUESTED_FALLBACKS

__all__ = ["FALLBACKS_FIELD", "FALLBACKS_HEADER", "RequestedFallbacks", "take_models"]

FALLBACKS_HEADER = "X-OneFlow-Fallbacks"
FALLBACKS_FIELD = "models"

RequestedFallbacks = tuple[tuple[str, ...], str] | None
"""The names a caller gave and where it gave them (the field or header, for errors)."""


def take_models(body: dict[str, Any]) -> tuple[str, ...] | None:
    """Remove `models` from a chat body and return it (None when absent); without `model`,
    the first of them becomes `model`. A malformed list is a 400 naming the field."""
    if FALLBACKS_FIELD not in body:
        return None
    value = body.pop(FALLBACKS_FIELD)
    if not isinstance(value, list):
        raise invalid(FALLBACKS_FIELD, "must be an array of model names")
    if not value and "model" not in body:
        raise invalid(FALLBACKS_FIELD, "names no model, and the body has no 'model'")
    names: list[str] = []
    for index, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            raise invalid(f"{FALLBACKS_FIELD}[{index}]", "must be a model name")
        names.append(item.strip())
    if "model" not in body:
        body["model"] = names.pop(0)
    return _checked(tuple(names), FALLBACKS_FIELD)


def requested_fallbacks(
    header: str | None, from_body: tuple[str, ...] | None
) -> RequestedFallbacks:
    """The caller's fallback list (the body's, or the `X-OneFlow-Fallbacks` header's value)
    and where it came from, or None."""
    if header is not None and from_body is not None:
        raise BadRequestError(
            f"Give fallback models in the body's '{FALLBACKS_FIELD}' or the {FALLBACKS_HEADER} "
            "header, not both",
            param=FALLBACKS_FIELD,
        )
    if from_body is not None:
        return from_body, FALLBACKS_FIELD
    if header is None:
        return None
    names = tuple(name.strip() for name in header.split(","))
    if not any(names) or not all(names):
        raise BadRequestError(
            f"Invalid {FALLBACKS_HEADER} header: a comma-separated list of model names",
            param=FALLBACKS_HEADER,
        )
    return _checked(names, FALLBACKS_HEADER), FALLBACKS_HEADER


def _checked(names: tuple[str, ...], where: str) -> tuple[str, ...]:
    if len(names) > MAX_REQUESTED_FALLBACKS:
        raise BadRequestError(
            f"Invalid request: '{where}': at most {MAX_REQUESTED_FALLBACKS} fallback models",
            param=where,
        )
    return tuple(dict.fromkeys(names))  # a name given twice is tried once
