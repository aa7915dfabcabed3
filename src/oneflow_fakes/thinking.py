"""Extended thinking on the fake Anthropic API, and reasoning effort on the fake OpenAI API.

Anthropic: a request with `thinking: {"type": "enabled", "budget_tokens": N}` to a model that
thinks (N at least 1,024 and below `max_tokens`) gets a `thinking` block before its answer,
with a `signature` over the thinking text. A later turn that sends a thinking block back must
send it unchanged: a block whose signature does not match its text is refused with 400, as
the real API refuses one that was altered. Models that do not think refuse `thinking`.

OpenAI: `reasoning_effort` is taken by reasoning models only (others answer 400); a reasoning
model reports `completion_tokens_details.reasoning_tokens` by effort (`REASONING_TOKENS`),
unless a usage marker names the count (`usage_marker.py`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac

__all__ = [
    "REASONING_TOKENS",
    "altered_thinking",
    "sign",
    "thinking_budget",
    "thinking_text",
]

_KEY = b"oneflow-fake-thinking"
MIN_BUDGET = 1024
EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")

#: Reasoning tokens a fake OpenAI reasoning model reports, by effort (medium when none given).
REASONING_TOKENS = {"none": 0, "minimal": 8, "low": 32, "medium": 96, "high": 256, "xhigh": 512}


def sign(text: str) -> str:
    digest = hmac.new(_KEY, text.encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def thinking_text(source: str, budget: int) -> str:
    """The thinking of an answer: a few words about the prompt, more for a bigger budget."""
    words = source.split()[:8] or ["nothing"]
    steps = max(1, min(budget // 1024, 8))
    return " ".join(f"Step {i + 1}: consider {' '.join(words)}." for i in range(steps))


def thinking_budget(thinking: object, max_tokens: int, thinks: bool) -> int | str | None:
    """The budget a `thinking` field asks for, None for none, or the reason it is refused."""
    if thinking is None:
        return None
    if not isinstance(thinking, dict) or thinking.get("type") not in ("enabled", "disabled"):
        return "thinking: Input tag does not match any of the expected tags: 'disabled', 'enabled'"
    if thinking["type"] == "disabled":
        return None
    if not thinks:
        return "thinking: this model does not support extended thinking"
    budget = thinking.get("budget_tokens")
    if not isinstance(budget, int) or isinstance(budget, bool) or budget < MIN_BUDGET:
        return "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024"
    if budget >= max_tokens:
        return "`max_tokens` must be greater than `thinking.budget_tokens`"
    return budget


def altered_thinking(messages: list[object]) -> str | None:
    """Where a thinking block sent back does not match its signature, or None."""
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") != "assistant":
            continue
        content = message.get("content")
        for j, block in enumerate(content if isinstance(content, list) else ()):
            if not isinstance(block, dict) or block.get("type") != "thinking":
                continue
            text, signature = block.get("thinking"), block.get("signature")
            if not isinstance(text, str) or not isinstance(signature, str):
                return f"messages.{i}.content.{j}.thinking: thinking and signature are required"
            if not hmac.compare_digest(sign(text), signature):
                return f"messages.{i}.content.{j}: Invalid `signature` in `thinking` block"
    return None
