"""Token classes a test asks the fake providers to report, by a marker in the prompt.

A request whose body contains `[fake-usage cached=120 reasoning=30 write_5m=40 write_1h=10]`
(in any message or the system prompt; every key optional) gets those token classes in its
answer's usage, in the provider's wire format:

- OpenAI: `prompt_tokens_details.cached_tokens` = cached (at most the prompt), and `reasoning`
  tokens added to `completion_tokens` and named in `completion_tokens_details.reasoning_tokens`;
  `write_5m` / `write_1h` are ignored (OpenAI reports no cache writes).
- Anthropic: `cache_read_input_tokens` = cached, `cache_creation_input_tokens` = write_5m +
  write_1h with the split in `cache_creation`, and `input_tokens` the rest of the prompt
  (each part cut to what the prompt holds, in that order); `reasoning` tokens are added to
  `output_tokens` (Anthropic counts thinking as output and names no part of it).

`extra.NAME=N` adds a usage field NAME the real APIs do not send (for tests of unknown fields).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["UsageMarker", "read_marker"]

_MARKER = re.compile(rb"\[fake-usage((?:\s+[a-z0-9_.]+=\d{1,9})*)\s*\]")
_PAIR = re.compile(rb"([a-z0-9_.]+)=(\d{1,9})")


@dataclass(frozen=True, slots=True)
class UsageMarker:
    cached: int = 0
    reasoning: int = 0
    write_5m: int = 0
    write_1h: int = 0
    extra: dict[str, int] = field(default_factory=dict)

    def openai(self, prompt: int, completion: int) -> dict[str, object]:
        """OpenAI's usage object for a prompt and an answer of these sizes (`completion`
        without the reasoning tokens)."""
        total_out = completion + self.reasoning
        return {
            "prompt_tokens": prompt,
            "completion_tokens": total_out,
            "total_tokens": prompt + total_out,
            "prompt_tokens_details": {"cached_tokens": min(self.cached, prompt), "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": self.reasoning,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
            **self.extra,
        }

    def anthropic(self, prompt: int, output: int | None) -> dict[str, object]:
        """Anthropic's usage object for a prompt of `prompt` tokens (`output` without the
        thinking tokens; None leaves output_tokens out)."""
        read = min(self.cached, prompt)
        five = min(self.write_5m, prompt - read)
        hour = min(self.write_1h, prompt - read - five)
        usage: dict[str, object] = {
            "input_tokens": prompt - read - five - hour,
            "cache_creation_input_tokens": five + hour,
            "cache_read_input_tokens": read,
            "cache_creation": {
                "ephemeral_5m_input_tokens": five,
                "ephemeral_1h_input_tokens": hour,
            },
        }
        if output is not None:
            usage["output_tokens"] = output + self.reasoning
        usage.update(self.extra)
        return usage


def read_marker(body: bytes) -> UsageMarker:
    """The marker in a request body (no marker: nothing but the plain counts)."""
    found = _MARKER.search(body)
    if found is None:
        return UsageMarker()
    values: dict[str, int] = {}
    extra: dict[str, int] = {}
    for key, number in _PAIR.findall(found.group(1)):
        name = key.decode()
        if name.startswith("extra."):
            extra[name.removeprefix("extra.")] = int(number)
        else:
            values[name] = int(number)
    return UsageMarker(
        cached=values.get("cached", 0),
        reasoning=values.get("reasoning", 0),
        write_5m=values.get("write_5m", 0),
        write_1h=values.get("write_1h", 0),
        extra=extra,
    )
