"""Which fields of a chat body reach a model of the other dialect, and which cannot.

A body goes unchanged to a provider of its own dialect. For a provider of the other dialect
it is rebuilt from the canonical request (`domain/chat.py`), so only the fields the edge
parser reads into it are carried: the `*_CARRIED` sets below, each honoured by both
translators (`providers/openai.py`, `providers/anthropic.py`; docs/dialects.md has the
mapping). Any other field the caller set is named in the request's `dialect_only`, and an
answer from the other dialect names it in `X-OneFlow-Ignored-Params` and the access line.

A field set to its "off" value (`null`, `logprobs: false`, `presence_penalty: 0`, Claude's
`thinking: {"type": "disabled"}`, ...) asks for nothing and is not named.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["ANTHROPIC_CARRIED", "OPENAI_CARRIED", "dialect_only"]

#: Chat Completions fields the canonical request carries (api/openai_chat.py reads them).
OPENAI_CARRIED = frozenset(
    {
        "model",
        "messages",
        "n",  # 1 only: anything else is refused
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "stop",
        "stream",
        "stream_options",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "response_format",
        "user",
        "reasoning_effort",  # for the models that reason; Anthropic's gets `thinking`
    }
)

#: Messages fields the canonical request carries (api/anthropic_messages.py reads them).
ANTHROPIC_CARRIED = frozenset(
    {
        "model",
        "max_tokens",
        "messages",
        "system",
        "temperature",
        "top_p",
        "stop_sequences",
        "stream",
        "tools",
        "tool_choice",
        "metadata",
        "output_config",  # its `format` (structured output); other keys are named
        "thinking",  # `enabled` with a budget; another type is named
    }
)

# Values that ask for nothing (beyond null, which never does).
_OFF: Mapping[str, tuple[object, ...]] = {
    "logprobs": (False,),
    "top_logprobs": (0,),
    "presence_penalty": (0,),
    "frequency_penalty": (0,),
    "logit_bias": ({},),
    "store": (False,),
    "metadata": ({},),
    "service_tier": ("auto", "default"),
    "thinking": ({"type": "disabled"},),
}

#: At most this many names are reported (a body may hold any number of fields).
MAX_NAMED = 16


def dialect_only(
    body: Mapping[str, Any], carried: frozenset[str], also: Iterable[str] = ()
) -> tuple[str, ...]:
    """The fields of `body` outside `carried` that ask for something (see the module
    docstring), then `also` (parts of carried fields that are not), as printable ASCII; at
    most `MAX_NAMED`, then `...`."""
    names = [
        key
        for key, value in body.items()
        if key not in carried and value is not None and not _off(key, value)
    ]
    names.extend(also)
    if not names:
        return ()
    named = [_printable(name) for name in names[:MAX_NAMED]]
    if len(names) > MAX_NAMED:
        named.append("...")
    return tuple(named)


def _off(key: str, value: object) -> bool:
    return any(
        value == off and isinstance(value, bool) == isinstance(off, bool)
        for off in _OFF.get(key, ())
    )


def _printable(name: str) -> str:
    if name.isascii() and name.isprintable() and "," not in name and len(name) <= 64:
        return name
    return "".join(c if " " <= c <= "~" and c != "," else "?" for c in name[:64])
