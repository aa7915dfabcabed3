"""Token estimates for when no provider count exists yet (routing) or ever (a broken stream).

`TokenEstimator` is the interface; `CharacterEstimator` the default: about four characters
per token, plus OpenAI's published framing of chat messages (3 tokens per message, 3 to prime
the reply). Billing's exact tokenizer can take its place without touching the pipeline.
Estimates are marked as such wherever they are billed (`Usage.estimated`).
"""

from __future__ import annotations

from typing import Protocol

from oneflow_ai.catalog import ModelEntry
from oneflow_ai.domain.chat import ChatRequest, ImagePart, TextPart

__all__ = ["CharacterEstimator", "TokenEstimator"]

_CHARS_PER_TOKEN = 4
_PER_MESSAGE = 3
_REPLY_PRIMING = 3
_IMAGE_TOKENS = 765  # a 1024x1024 image at high detail (OpenAI's tile rule)
_IMAGE_TOKENS_LOW = 85


class TokenEstimator(Protocol):
    def prompt_tokens(self, request: ChatRequest, model: ModelEntry | None) -> int:
        """Input tokens of a chat request on `model` (None: before a model is chosen)."""
        ...

    def text_tokens(self, text: str, model: ModelEntry | None) -> int:
        """Tokens of generated text."""
        ...


class CharacterEstimator:
    """About four characters per token; deterministic and free of I/O."""

    def prompt_tokens(self, request: ChatRequest, model: ModelEntry | None) -> int:
        chars = 0
        tokens = _REPLY_PRIMING
        for message in request.messages:
            tokens += _PER_MESSAGE
            for part in message.content:
                if isinstance(part, TextPart):
                    chars += len(part.text)
                elif isinstance(part, ImagePart):
                    tokens += _IMAGE_TOKENS_LOW if part.detail == "low" else _IMAGE_TOKENS
            for call in message.tool_calls:
                chars += len(call.name) + len(call.arguments)
        for tool in request.tools:
            chars += len(tool.name) + len(tool.description or "") + 8 * len(tool.parameters)
        return tokens + _ceil_div(chars, _CHARS_PER_TOKEN)

    def text_tokens(self, text: str, model: ModelEntry | None) -> int:
        return _ceil_div(len(text), _CHARS_PER_TOKEN)


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)
