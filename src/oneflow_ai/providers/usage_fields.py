"""Provider usage objects -> canonical usage, token classes included.

OpenAI (Chat Completions, and every OpenAI-compatible API): `prompt_tokens` is the whole
prompt, `prompt_tokens_details.cached_tokens` the part read from its prompt cache;
`completion_tokens` the whole answer, `completion_tokens_details.reasoning_tokens` the part
spent reasoning. Anthropic (Messages): `input_tokens` is only the prompt the cache did not
touch; `cache_read_input_tokens` and `cache_creation_input_tokens` come beside it, the latter
split by lifetime in `cache_creation.ephemeral_5m_input_tokens` / `ephemeral_1h_input_tokens`
(a write without that split is a 5-minute write, the API's default lifetime).

A count that is not a non-negative integer counts as 0, and a class larger than its total is
cut to it (`Usage.of_tokens`): an odd report is billed, never refused. Fields this module does
not know are logged once per provider and model (`UnknownUsageFields`) and not billed.
"""

from __future__ import annotations

from collections.abc import Mapping

import structlog

from oneflow_ai.domain.chat import StreamUsage
from oneflow_ai.domain.usage import Usage

__all__ = [
    "UnknownUsageFields",
    "anthropic_stream_usage",
    "anthropic_usage",
    "openai_stream_usage",
    "openai_usage",
]

log = structlog.get_logger("oneflow.providers")

_OPENAI_KNOWN = {
    "": frozenset(
        {
            "prompt_tokens",
            "completion_tokens",
            "total_tokens",
            "prompt_tokens_details",
            "completion_tokens_details",
        }
    ),
    "prompt_tokens_details.": frozenset(
        {"cached_tokens", "audio_tokens", "text_tokens", "image_tokens"}
    ),
    "completion_tokens_details.": frozenset(
        {
            "reasoning_tokens",
            "audio_tokens",
            "text_tokens",
            "accepted_prediction_tokens",
            "rejected_prediction_tokens",
        }
    ),
}
_ANTHROPIC_KNOWN = {
    "": frozenset(
        {
            "input_tokens",
            "output_tokens",
            "cache_creation_input_tokens",
            "cache_read_input_tokens",
            "cache_creation",
            "server_tool_use",
            "service_tier",
            "inference_geo",
        }
    ),
    "cache_creation.": frozenset({"ephemeral_5m_input_tokens", "ephemeral_1h_input_tokens"}),
}

#: At most this many (provider, model) pairs are remembered (a bound on the memory a stream
#: of odd model names can take; past it, unknown fields are logged again).
_REMEMBERED = 1024


class UnknownUsageFields:
    """Logs the usage fields a provider sent that OneFlow does not know, once per model."""

    __slots__ = ("_provider", "_seen")

    def __init__(self, provider: str) -> None:
        self._provider = provider
        self._seen: set[tuple[str, str]] = set()

    def check(self, model: str, usage: Mapping[str, object], dialect: str) -> None:
        known = _OPENAI_KNOWN if dialect == "openai" else _ANTHROPIC_KNOWN
        unknown = sorted(_unknown(usage, known, ""))
        if not unknown:
            return
        key = (model, ",".join(unknown))
        if key in self._seen:
            return
        if len(self._seen) >= _REMEMBERED:
            self._seen.clear()
        self._seen.add(key)
        log.warning(
            "usage_fields_unknown",
            provider=self._provider,
            model=model,
            fields=unknown,
            note="not billed; the known token classes are",
        )


def _unknown(usage: Mapping[str, object], known: Mapping[str, frozenset[str]], at: str) -> set[str]:
    names = known.get(at, frozenset())
    found: set[str] = set()
    for name, value in usage.items():
        if name not in names:
            found.add(f"{at}{name}")
        elif type(value) is not int and isinstance(value, Mapping) and f"{at}{name}." in known:
            found |= _unknown(value, known, f"{at}{name}.")  # (most values: a count)
    return found


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _part(usage: Mapping[str, object], name: str, field: str) -> int:
    details = usage.get(name)
    if details is None:
        return 0
    return _count(details.get(field)) if isinstance(details, Mapping) else 0


# ---- OpenAI ---------------------------------------------------------------------------------


def openai_usage(usage: Mapping[str, object]) -> Usage:
    """The canonical usage of an OpenAI `usage` object."""
    return Usage.of_tokens(
        _count(usage.get("prompt_tokens")),
        _count(usage.get("completion_tokens")),
        cached_input_tokens=_part(usage, "prompt_tokens_details", "cached_tokens"),
        reasoning_tokens=_part(usage, "completion_tokens_details", "reasoning_tokens"),
    )


def openai_stream_usage(usage: Mapping[str, object]) -> StreamUsage:
    """The report of a stream's usage chunk (it is whole: OpenAI sends it once, at the end)."""
    return StreamUsage.of(openai_usage(usage))


# ---- Anthropic ------------------------------------------------------------------------------


def _anthropic_classes(usage: Mapping[str, object]) -> tuple[int, int, int, int]:
    """Uncached input, cache reads, 5-minute and 1-hour cache writes."""
    written = _count(usage.get("cache_creation_input_tokens"))
    split = usage.get("cache_creation")
    one_hour = _part(usage, "cache_creation", "ephemeral_1h_input_tokens")
    if isinstance(split, Mapping):
        five = _part(usage, "cache_creation", "ephemeral_5m_input_tokens")
        written = max(written, five + one_hour)
        five = written - min(one_hour, written)
    else:
        five, one_hour = written, 0
    return (
        _count(usage.get("input_tokens")),
        _count(usage.get("cache_read_input_tokens")),
        five,
        min(one_hour, written),
    )


def anthropic_usage(usage: Mapping[str, object]) -> Usage:
    """The canonical usage of an Anthropic `usage` object: its input tokens are the plain
    input plus the cache reads and writes."""
    plain, read, five, one_hour = _anthropic_classes(usage)
    return Usage.of_tokens(
        plain + read + five + one_hour,
        _count(usage.get("output_tokens")),
        cached_input_tokens=read,
        cache_write_5m_tokens=five,
        cache_write_1h_tokens=one_hour,
    )


def anthropic_stream_usage(usage: Mapping[str, object]) -> StreamUsage:
    """A `message_start` or `message_delta` usage report: the input side only when it names
    `input_tokens` (message_delta usually carries only `output_tokens`)."""
    output = usage.get("output_tokens")
    if "input_tokens" not in usage:
        return StreamUsage(output_tokens=_count(output) if output is not None else None)
    plain, read, five, one_hour = _anthropic_classes(usage)
    return StreamUsage(
        input_tokens=plain + read + five + one_hour,
        output_tokens=_count(output) if output is not None else None,
        cached_input_tokens=read,
        cache_write_5m_tokens=five,
        cache_write_1h_tokens=one_hour,
    )
