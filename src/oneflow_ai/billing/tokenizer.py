"""Counting tokens before a request runs, offline.

OpenAI models (``cl100k_base``: gpt-4, gpt-4-turbo, gpt-3.5-turbo; ``o200k_base``: gpt-4o)
are counted exactly with OpenAI's own encodings (see :mod:`oneflow_ai.billing.encoding`).

Chat messages follow the rule OpenAI publishes in the cookbook "How to count tokens with
tiktoken" for these models: every message costs 3 tokens of framing plus the tokens of each of
its string values (role, content, name, ...), a ``name`` costs 1 token more, and every reply is
primed with 3 tokens (``<|start|>assistant<|message|>``). Tool definitions (``tools``) follow
the cookbook's companion rule (per function 7 tokens on gpt-4o, 10 on the older models, 3 per
property set and per property, -3 + 3 per item for an enum, 12 at the end). A count is marked
``exact=False`` when a message carries something the rules do not cover: content split into
several parts (counted part by part), image parts (counted
as a 1024x1024 image, 765 tokens, or 85 at ``detail: low``), other non-text parts and tool
calls given as objects (counted as their compact JSON), nested tool parameters.

Claude (``claude_approx``): Anthropic publishes no offline tokenizer for Claude 3, so OneFlow
estimates with ``ceil(1.15 * cl100k_base tokens)``, and the same message framing as above. The
15% margin reflects that Claude 3's smaller vocabulary splits typical text into more tokens than
``cl100k_base`` does; it errs towards reserving too much. Claude counts are always
``exact=False``; billing uses the provider-reported usage whenever the response carries it.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from oneflow_ai.billing.encoding import EncodingName, get_encoding, is_loaded
from oneflow_ai.billing.errors import TokenCountError
from oneflow_ai.catalog import Catalog, TokenizerName, packaged_catalog
from oneflow_ai.domain.chat import ChatRequest, Message, TextPart

__all__ = ["TokenCount", "TokenCounter", "count_tokens"]

TOKENS_PER_MESSAGE: Final = 3
TOKENS_PER_NAME: Final = 1
REPLY_PRIMING: Final = 3
#: Image parts: OpenAI bills 85 tokens at ``detail: low`` and 85 + 170 per 512px tile otherwise;
#: without the image's size OneFlow assumes a 1024x1024 image (4 tiles).
IMAGE_TOKENS_LOW: Final = 85
IMAGE_TOKENS_HIGH: Final = 85 + 170 * 4
#: Claude estimate: cl100k_base tokens x 23/20 (= 1.15), rounded up.
CLAUDE_FACTOR: Final = (23, 20)

_TOOL_FRAMING: Final[dict[EncodingName, int]] = {"o200k_base": 7, "cl100k_base": 10}
_PROP_INIT: Final = 3
_PROP_KEY: Final = 3
_ENUM_INIT: Final = -3
_ENUM_ITEM: Final = 3
_TOOLS_END: Final = 12


@dataclass(frozen=True, slots=True)
class TokenCount:
    """A token count and how far to trust it.

    ``exact`` is true when the count follows OpenAI's encoding and published rules for
    everything in the input, false for estimates (Claude, image parts, unusual tool shapes).
    """

    tokens: int
    exact: bool
    tokenizer: TokenizerName


def count_tokens(text: str, encoding: EncodingName) -> int:
    """Tokens of ``text`` in ``encoding``; special-token text such as ``<|endoftext|>`` counts
    as ordinary text, as it does in a request to the provider."""
    return len(get_encoding(encoding).encode_ordinary(text))


@functools.lru_cache(maxsize=64)
def _role_tokens(role: str, encoding: EncodingName) -> int:
    """Tokens of a message's role: one of a few words, counted on every message of every
    request, so each is encoded once."""
    return count_tokens(role, encoding)


class TokenCounter:
    """Counts prompts and chat messages for catalog models (by id or alias)."""

    __slots__ = ("_catalog",)

    def __init__(self, catalog: Catalog | None = None) -> None:
        self._catalog = catalog if catalog is not None else packaged_catalog()

    def tokenizer_for(self, model: str) -> TokenizerName:
        """The tokenizer of text model ``model``; :class:`TokenCountError` for other models."""
        entry = self._catalog.get(model)
        if entry.tokenizer is None:
            raise TokenCountError(f"model {entry.id!r} is an {entry.modality} model; no tokens")
        return entry.tokenizer

    def ready(self, tokenizer: TokenizerName) -> bool:
        """Whether counting with ``tokenizer`` needs no encoding built first."""
        return is_loaded(_encoding_of(tokenizer))

    def load(self, tokenizer: TokenizerName) -> None:
        """Build the encoding ``tokenizer`` counts with (blocking: about a second, once)."""
        get_encoding(_encoding_of(tokenizer))

    async def prepare(self, tokenizers: Iterable[TokenizerName | None]) -> None:
        """Build, in a thread, the encodings these tokenizers count with that are not built
        yet: a count on the event loop then never waits for one."""
        for tokenizer in {t for t in tokenizers if t is not None}:
            if not self.ready(tokenizer):
                await asyncio.to_thread(self.load, tokenizer)

    def count_text(self, model: str, text: str) -> TokenCount:
        """Tokens of a plain prompt ``text`` on ``model``."""
        if not isinstance(text, str):
            raise TokenCountError(f"text must be a str, not {type(text).__name__}")
        tokenizer = self.tokenizer_for(model)
        counter = _Count(_encoding_of(tokenizer))
        counter.add_text(text)
        return counter.result(tokenizer)

    def count_messages(
        self,
        model: str,
        messages: Sequence[Mapping[str, object]],
        tools: Sequence[Mapping[str, object]] | None = None,
    ) -> TokenCount:
        """Prompt tokens of a chat request: ``messages`` (and ``tools``) in OpenAI's format.

        Message content may be a string, ``None`` or a list of content parts; text parts
        (``{"type": "text", "text": ...}``) are counted exactly, other parts estimated.
        """
        tokenizer = self.tokenizer_for(model)
        counter = _Count(_encoding_of(tokenizer))
        if isinstance(messages, str | bytes) or not isinstance(messages, Sequence):
            raise TokenCountError("messages must be a list of message objects")
        for index, message in enumerate(messages):
            if not isinstance(message, Mapping):
                raise TokenCountError(f"messages[{index}] must be an object")
            counter.add_message(message, where=f"messages[{index}]")
        counter.tokens += REPLY_PRIMING
        if tools:
            counter.add_tools(tools)
        return counter.result(tokenizer)

    def count_chat(self, model: str, request: ChatRequest) -> TokenCount:
        """Prompt tokens of a canonical chat request on ``model``, by the same rules as
        :meth:`count_messages` (each message as OpenAI's format writes it; whichever dialect
        the request came in, the count is the same)."""
        tokenizer = self.tokenizer_for(model)
        counter = _Count(_encoding_of(tokenizer))
        for message in request.messages:
            if message.content or message.tool_calls or message.role != "assistant":
                counter.add_canonical(message)
        counter.tokens += REPLY_PRIMING
        if request.tools:
            for tool in request.tools:
                counter.add_function(tool.name, tool.description, tool.parameters)
            counter.tokens += _TOOLS_END
        return counter.result(tokenizer)


def _encoding_of(tokenizer: TokenizerName) -> EncodingName:
    return "cl100k_base" if tokenizer == "claude_approx" else tokenizer


class _Count:
    __slots__ = ("encoding", "exact", "tokens")

    def __init__(self, encoding: EncodingName) -> None:
        self.encoding: EncodingName = encoding
        self.tokens = 0
        self.exact = True

    def result(self, tokenizer: TokenizerName) -> TokenCount:
        if tokenizer == "claude_approx":
            numerator, denominator = CLAUDE_FACTOR
            return TokenCount(-(-self.tokens * numerator // denominator), False, tokenizer)
        return TokenCount(self.tokens, self.exact, tokenizer)

    def add_text(self, text: str) -> None:
        self.tokens += count_tokens(text, self.encoding)

    def add_estimate(self, value: object) -> None:
        self.exact = False
        self.add_text(json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str))

    def add_message(self, message: Mapping[str, object], *, where: str) -> None:
        self.tokens += TOKENS_PER_MESSAGE
        for key, value in message.items():
            if value is None:
                continue
            if key == "content" and not isinstance(value, str):
                self.add_content_parts(value, where=f"{where}.content")
            elif isinstance(value, str):
                self.add_text(value)
            else:
                self.add_estimate(value)
            if key == "name":
                self.tokens += TOKENS_PER_NAME

    def add_content_parts(self, parts: object, *, where: str) -> None:
        if isinstance(parts, str | bytes) or not isinstance(parts, Sequence):
            raise TokenCountError(f"{where} must be a string, null or a list of content parts")
        if len(parts) > 1:
            self.exact = False  # how the provider joins several parts is not published
        for part in parts:
            if isinstance(part, Mapping) and part.get("type") == "text":
                text = part.get("text")
                if not isinstance(text, str):
                    raise TokenCountError(f"{where}: a text part needs a string 'text'")
                self.add_text(text)
            elif isinstance(part, Mapping) and part.get("type") == "image_url":
                self.exact = False
                self.tokens += _image_tokens(part.get("image_url"))
            else:
                self.add_estimate(part)

    def add_canonical(self, message: Message) -> None:
        """A canonical message, counted as :meth:`add_message` counts it in OpenAI's format
        (role, content, name, the tool call's id, tool calls as their compact JSON)."""
        self.tokens += TOKENS_PER_MESSAGE + _role_tokens(message.role, self.encoding)
        if message.role == "tool":
            self.add_text(message.tool_call_id or "")
            self.add_text(message.text)
            return
        parts = message.content
        if all(isinstance(part, TextPart) for part in parts):
            self.add_text(message.text)
        else:
            self.exact = self.exact and len(parts) <= 1
            for part in parts:
                if isinstance(part, TextPart):
                    self.add_text(part.text)
                else:
                    self.exact = False
                    self.tokens += IMAGE_TOKENS_LOW if part.detail == "low" else IMAGE_TOKENS_HIGH
        if message.name:
            self.add_text(message.name)
            self.tokens += TOKENS_PER_NAME
        if message.tool_calls:
            calls = [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments},
                }
                for c in message.tool_calls
            ]
            self.add_estimate(calls)

    def add_tools(self, tools: Sequence[Mapping[str, object]]) -> None:
        for tool in tools:
            function = tool.get("function") if isinstance(tool, Mapping) else None
            if not isinstance(function, Mapping):
                self.add_estimate(tool)
                continue
            self.add_function(
                str(function.get("name", "")),
                function.get("description"),
                function.get("parameters"),
            )
        self.tokens += _TOOLS_END

    def add_function(self, name: str, description: object, parameters: object) -> None:
        self.tokens += _TOOL_FRAMING[self.encoding]
        self.add_text(f"{name}:{_without_final_period(description)}")
        properties = parameters.get("properties") if isinstance(parameters, Mapping) else None
        if isinstance(properties, Mapping) and properties:
            self.tokens += _PROP_INIT
            for key, spec in properties.items():
                self.add_property(str(key), spec)

    def add_property(self, key: str, spec: object) -> None:
        self.tokens += _PROP_KEY
        if not isinstance(spec, Mapping):
            self.add_estimate(spec)
            return
        if not set(spec) <= {"type", "description", "enum"} or not isinstance(
            spec.get("type"), str
        ):
            self.exact = False  # nested schemas are outside the published rule
        enum = spec.get("enum")
        if isinstance(enum, Sequence) and not isinstance(enum, str):
            self.tokens += _ENUM_INIT
            for item in enum:
                self.tokens += _ENUM_ITEM
                self.add_text(str(item))
        type_name = spec.get("type")
        description = _without_final_period(spec.get("description"))
        self.add_text(f"{key}:{type_name if isinstance(type_name, str) else ''}:{description}")


def _image_tokens(image_url: object) -> int:
    detail = image_url.get("detail") if isinstance(image_url, Mapping) else None
    return IMAGE_TOKENS_LOW if detail == "low" else IMAGE_TOKENS_HIGH


def _without_final_period(value: object) -> str:
    text = value if isinstance(value, str) else ""
    return text.removesuffix(".")
