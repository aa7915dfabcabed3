"""Token estimates for when no provider count exists yet (routing) or ever (a broken stream).

`TokenEstimator` is the interface. `TokenizerEstimator` (the gateway's) counts the canonical
request with billing's `TokenCounter` (`count_chat`): exactly with OpenAI's encodings and
published message framing for GPT models, by billing's documented estimate for Claude.
`CharacterEstimator` (about four characters per token plus the same framing) serves before a
model is chosen and when a count fails. Estimates are marked as such wherever they are billed
(`Usage.estimated`).

`text_tokens_at_most` bounds `text_tokens` from the text's UTF-8 length alone, for the checks
that only need to know a count is still below a limit: a stream's output against what the
ledger reserved is counted exactly only once that bound reaches the limit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from oneflow_ai.billing.errors import TokenCountError
from oneflow_ai.billing.tokenizer import CLAUDE_FACTOR, TokenCounter
from oneflow_ai.catalog import ModelEntry
from oneflow_ai.domain.chat import ChatRequest, ImagePart, TextPart

__all__ = ["CharacterEstimator", "TokenEstimator", "TokenizerEstimator"]

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

    def text_tokens_at_most(self, utf8_bytes: int, model: ModelEntry | None) -> int:
        """At least `text_tokens` of any text of `utf8_bytes` bytes (UTF-8), computed without
        tokenizing; never more than the sum of the bounds of a split of the text into pieces
        (so that bounds add up piece by piece)."""
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

    def text_tokens_at_most(self, utf8_bytes: int, model: ModelEntry | None) -> int:
        return utf8_bytes  # a character is at least one byte


class TokenizerEstimator:
    """Counts with billing's tokenizers once the model is known (OpenAI's chat format, tools
    included), and with `fallback` before that or when a count fails."""

    def __init__(self, counter: TokenCounter, fallback: TokenEstimator | None = None) -> None:
        self._counter = counter
        self._fallback: TokenEstimator = fallback or CharacterEstimator()

    async def prepare(self, models: Sequence[ModelEntry]) -> None:
        """Build, in a thread, the encodings these models count with that are not built yet:
        the event loop never waits for one (the first build takes about a second)."""
        await self._counter.prepare(model.tokenizer for model in models)

    def prompt_tokens(self, request: ChatRequest, model: ModelEntry | None) -> int:
        if model is None or model.tokenizer is None:
            return self._fallback.prompt_tokens(request, model)
        try:
            return self._counter.count_chat(model.id, request).tokens
        except TokenCountError:
            return self._fallback.prompt_tokens(request, model)

    def text_tokens(self, text: str, model: ModelEntry | None) -> int:
        if model is None or model.tokenizer is None:
            return self._fallback.text_tokens(text, model)
        try:
            return self._counter.count_text(model.id, text).tokens
        except TokenCountError:
            return self._fallback.text_tokens(text, model)

    def text_tokens_at_most(self, utf8_bytes: int, model: ModelEntry | None) -> int:
        # A byte-level BPE token is at least one byte; Claude's estimate is that count
        # times 23/20, rounded up (billing/tokenizer.py); the fallback's, at most one a byte.
        fallback = self._fallback.text_tokens_at_most(utf8_bytes, model)
        if model is None or model.tokenizer is None:
            return fallback
        if model.tokenizer == "claude_approx":
            numerator, denominator = CLAUDE_FACTOR
            return max(fallback, _ceil_div(utf8_bytes * numerator, denominator))
        return max(fallback, utf8_bytes)


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)
