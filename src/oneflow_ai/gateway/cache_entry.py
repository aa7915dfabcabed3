"""The response cache's keys and entries (docs/cache.md).

A key is the SHA-256 of the canonical JSON (sorted keys, no spaces) of: the entry schema
version, the operation, the model as the caller asked for it (a catalog id, an alias, `auto`)
and the strategy, the scope (the project, and the key or user unless the project shares its
cache), and the request fields that change the answer:

- chat: `messages` (roles, text and image parts, names, tool calls and results), `max_tokens`,
  `temperature`, `top_p`, `stop`, `tools`, `tool_choice`, `response_format`,
  `parallel_tool_calls`, the reasoning setting (`reasoning_effort` / `thinking`) and, by value,
  every other field the caller set that OneFlow does not translate
  (`ChatRequest.dialect_only`: Anthropic's `top_k`, OpenAI's `seed`, ...);
- images: `prompt`, `n`, `size`, `quality`, `style`, `response_format`, `negative_prompt`,
  `seed`;
- embeddings: `input` (texts and token arrays, in order) and `dimensions`.

Left out: `stream` and `stream_options` (a streamed and a plain request share their entry),
an embedding's `encoding_format` (the vectors are the same; only how they are written differs)
and `user`. An answer that carried thinking blocks (Claude's `thinking`, `redacted_thinking`)
is not stored: a replay could not give them back with their signatures. An entry is JSON
carrying its schema version and its own key: an entry of another version, of another key, or
one that does not decode is a miss, never an error.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from dataclasses import asdict, dataclass, replace
from typing import Any, Final, get_args

from oneflow_ai.domain.chat import (
    ChatRequest,
    ChatResponse,
    FinishReason,
    StreamEvent,
    StreamFinish,
    StreamStart,
    TextDelta,
    TextPart,
    ThinkingDelta,
    ToolCall,
    ToolCallDelta,
    WireDialect,
    WireEvent,
)
from oneflow_ai.domain.embeddings import EmbeddingRequest, EmbeddingResponse, Vector
from oneflow_ai.domain.media import GeneratedImage, ImageRequest, ImageResponse
from oneflow_ai.domain.usage import Usage
from oneflow_ai.gateway.call import Call

__all__ = [
    "SCHEMA_VERSION",
    "CacheEntry",
    "cache_key",
    "has_thinking",
    "response_from_events",
    "semantic_question",
]

#: Bumped when the entry format changes: entries of other versions are misses.
SCHEMA_VERSION = 1

#: What a stored answer's `finish_reason` and `raw_dialect` may be (another: not an entry).
_FINISH_REASONS: Final[dict[str, FinishReason]] = {
    reason: reason for reason in get_args(FinishReason)
}
_DIALECTS: Final[dict[str | None, WireDialect | None]] = {
    None: None,
    **{dialect: dialect for dialect in get_args(WireDialect)},
}

CachedAnswer = ChatResponse | ImageResponse | EmbeddingResponse


def cache_key(call: Call, *, shared: bool) -> str | None:
    """The key of `call`'s answer, or None when the cache does not apply to its operation."""
    request = call.request
    fields: dict[str, object]
    if isinstance(request, ChatRequest):
        fields = _chat_fields(request)
    elif isinstance(request, ImageRequest):
        fields = {
            name: getattr(request, name)
            for name in (
                "prompt", "n", "size", "quality", "style", "response_format",
                "negative_prompt", "seed",
            )
        }  # fmt: skip
    elif isinstance(request, EmbeddingRequest):
        fields = {"input": request.inputs, "dimensions": request.dimensions}
    else:
        return None
    return _digest(call, call.operation, shared, fields)


def _digest(call: Call, operation: str, shared: bool, fields: dict[str, object]) -> str:
    principal = call.principal
    scope = [principal.project_id, "" if shared else principal.subject]
    document = {
        "v": SCHEMA_VERSION,
        "op": operation,
        "model": call.model,
        "strategy": call.strategy,
        "scope": scope,
        "request": fields,
    }
    return hashlib.sha256(_canonical(document)).hexdigest()


def semantic_question(call: Call, *, shared: bool, embedder: str) -> tuple[str, str] | None:
    """The semantic cache's scope and question for `call`: the key of everything but the last
    user turn's text (with the embedding model), and that text. None when the semantic cache
    does not apply: not a chat call, a Responses call, or a last turn that is not a user's
    text alone (an image, a tool result, an assistant's prefill)."""
    request = call.request
    if not isinstance(request, ChatRequest) or request.raw_dialect == "responses":
        return None
    last = request.messages[-1] if request.messages else None
    if last is None or last.role != "user" or not last.content:
        return None
    if not all(isinstance(part, TextPart) for part in last.content) or not last.text.strip():
        return None
    fields = _chat_fields(replace(request, messages=request.messages[:-1]))
    fields["last_turn"] = {"name": last.name, "embedder": embedder}
    return _digest(call, "semantic", shared, fields), last.text


def _chat_fields(request: ChatRequest) -> dict[str, object]:
    raw = request.raw or {}
    return {
        "messages": [asdict(message) for message in request.messages],
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
        "top_p": request.top_p,
        "stop": request.stop,
        "tools": [asdict(tool) for tool in request.tools],
        "tool_choice": request.tool_choice,
        "response_format": (
            asdict(request.response_format) if request.response_format is not None else None
        ),
        "parallel_tool_calls": request.parallel_tool_calls,
        "reasoning": asdict(request.reasoning) if request.reasoning is not None else None,
        "dialect": {name: raw.get(name) for name in sorted(request.dialect_only)},
        "responses": _responses_fields(raw) if request.raw_dialect == "responses" else None,
    }


#: A Responses body's fields that do not change the answer (`store`: a hit is stored again
#: under its new id; `previous_response_id`: the conversation it names is in `input`).
_RESPONSES_IGNORED = frozenset({"stream", "stream_options", "store", "previous_response_id"})


def _responses_fields(raw: dict[str, Any]) -> dict[str, object]:
    """A Responses request's body as the key sees it: every field that changes the answer,
    the input items without their ids (OneFlow gives stored items new ids)."""
    fields = {name: value for name, value in raw.items() if name not in _RESPONSES_IGNORED}
    items = fields.get("input")
    if isinstance(items, list):
        fields["input"] = [
            {k: v for k, v in item.items() if k != "id"} if isinstance(item, dict) else item
            for item in items
        ]
    return fields


def _canonical(document: object) -> bytes:
    return json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    ).encode()


@dataclass(frozen=True, slots=True)
class CacheEntry:
    """A stored answer: the catalog model that gave it, what it used, and the answer."""

    key: str
    model: str
    usage: Usage
    answer: CachedAnswer

    def encode(self) -> bytes:
        answer = self.answer
        body: dict[str, object]
        if isinstance(answer, ChatResponse):
            body = {
                "kind": "chat",
                "id": answer.id,
                "model": answer.model,
                "text": answer.text,
                "finish_reason": answer.finish_reason,
                "tool_calls": [asdict(tool) for tool in answer.tool_calls],
                "raw": answer.raw,
                "raw_dialect": answer.raw_dialect,
            }
        elif isinstance(answer, EmbeddingResponse):
            body = {
                "kind": "embedding",
                "model": answer.model,
                "vectors": [vector.base64() for vector in answer.vectors],
            }
        else:
            body = {
                "kind": "image",
                "created": answer.created,
                "model": answer.model,
                "images": [asdict(image) for image in answer.images],
            }
        document = {
            "v": SCHEMA_VERSION,
            "key": self.key,
            "model": self.model,
            "usage": asdict(self.usage),
            "answer": body,
        }
        return _canonical(document)

    @classmethod
    def decode(cls, data: bytes, key: str) -> CacheEntry | None:
        """The entry in `data`, or None if it is not a well-formed entry of this version and
        of `key`."""
        try:
            document = json.loads(data)
            if document.get("v") != SCHEMA_VERSION or document.get("key") != key:
                return None
            usage = Usage(**document["usage"])
            body = document["answer"]
            answer: CachedAnswer
            if body["kind"] == "chat":
                answer = ChatResponse(
                    id=str(body["id"]),
                    model=str(body["model"]),
                    text=str(body["text"]),
                    finish_reason=_FINISH_REASONS[body["finish_reason"]],
                    usage=usage,
                    tool_calls=[ToolCall(**tool) for tool in body["tool_calls"]],
                    raw=_mapping_or_none(body["raw"]),
                    raw_dialect=_DIALECTS[body["raw_dialect"]],
                )
            elif body["kind"] == "image":
                answer = ImageResponse(
                    created=int(body["created"]),
                    images=[GeneratedImage(**image) for image in body["images"]],
                    usage=usage,
                    model=str(body["model"]),
                )
            elif body["kind"] == "embedding":
                answer = EmbeddingResponse(
                    vectors=[Vector.of_base64(str(text)) for text in body["vectors"]],
                    usage=usage,
                    model=str(body["model"]),
                )
            else:
                return None
            return cls(key=key, model=str(document["model"]), usage=usage, answer=answer)
        except (ValueError, TypeError, KeyError, AttributeError):  # binascii.Error is a ValueError
            return None

    def fresh_answer(self) -> CachedAnswer:
        """The stored answer as a new one: a new id (chat) and the current time (chat, images;
        an embedding has neither)."""
        answer, now = self.answer, int(time.time())
        if isinstance(answer, EmbeddingResponse):
            return replace(answer)
        if isinstance(answer, ImageResponse):
            return replace(answer, created=now)
        new_id = _new_id(answer.id)
        raw = answer.raw
        if raw is not None:
            raw = {**raw, "id": new_id}
            if "created" in raw:
                raw["created"] = now
        return replace(answer, id=new_id, raw=raw)


def _mapping_or_none(value: object) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise TypeError("raw is not an object")
    return value


def _new_id(old: str) -> str:
    """An id like `old` (its prefix kept: `chatcmpl-`, `msg_`) that no other answer has."""
    cut = max(old.rfind("-"), old.rfind("_"))
    prefix = old[: cut + 1] if cut >= 0 else ""
    return prefix + "cache" + secrets.token_hex(12)


def has_thinking(answer: ChatResponse) -> bool:
    """Whether a plain answer carried thinking: Claude's thinking blocks or a Responses
    answer's reasoning items (kept only in the provider's body), or reasoning text."""
    if answer.reasoning:
        return True
    raw = answer.raw or {}
    blocks = raw.get("output") if answer.raw_dialect == "responses" else raw.get("content")
    return isinstance(blocks, list) and any(
        isinstance(block, dict) and block.get("type") in _THINKING_BLOCKS for block in blocks
    )


_THINKING_BLOCKS = ("thinking", "redacted_thinking", "reasoning")


def response_from_events(events: list[StreamEvent], usage: Usage) -> ChatResponse | None:
    """The complete answer a stream gave (None if it did not finish, or if it carried thinking:
    a replay could not give it back). An OpenAI model's Responses stream leaves its final
    `response` object as the answer's `raw` body."""
    answer_id, model, finish = "", "", None
    native: dict[str, Any] | None = None
    text: list[str] = []
    tools: dict[int, list[str]] = {}
    names: dict[int, tuple[str, str]] = {}
    for event in events:
        if isinstance(event, StreamStart):
            answer_id, model = event.id, event.model
        elif isinstance(event, TextDelta):
            text.append(event.text)
        elif isinstance(event, ToolCallDelta):
            tools.setdefault(event.index, []).append(event.arguments)
            if event.id or event.name:
                known = names.get(event.index, ("", ""))
                names[event.index] = (event.id or known[0], event.name or known[1])
        elif isinstance(event, StreamFinish):
            finish = event.reason
        elif isinstance(event, ThinkingDelta):
            return None
        elif isinstance(event, WireEvent):
            native = _completed(event) or native
    if finish is None:
        return None
    tool_calls = [
        ToolCall(
            id=names.get(i, ("", ""))[0], name=names.get(i, ("", ""))[1], arguments="".join(parts)
        )
        for i, parts in sorted(tools.items())
    ]
    answer = ChatResponse(
        id=answer_id or "chatcmpl-cache",
        model=model,
        text="".join(text),
        finish_reason=finish,
        usage=usage,
        tool_calls=tool_calls,
        raw=native,
        raw_dialect="responses" if native is not None else None,
    )
    return None if has_thinking(answer) else answer


def _completed(event: WireEvent) -> dict[str, Any] | None:
    """The whole response object of a Responses stream's final event."""
    data = event.data
    if event.dialect != "responses" or data.get("type") != "response.completed":
        return None
    response = data.get("response")
    return response if isinstance(response, dict) else None
