"""Response-cache keys, entries and the in-process store (docs/cache.md)."""

from __future__ import annotations

import json
from dataclasses import replace
from decimal import Decimal

import pytest

from oneflow_ai.auth.principal import Principal, PrincipalKind, Role
from oneflow_ai.billing.cost import fraction_of
from oneflow_ai.billing.pricing import PricingEngine
from oneflow_ai.catalog import load_catalog
from oneflow_ai.domain.chat import (
    ChatRequest,
    ChatResponse,
    ImagePart,
    Message,
    Reasoning,
    StreamFinish,
    StreamStart,
    TextDelta,
    TextPart,
    ThinkingDelta,
    WireEvent,
)
from oneflow_ai.domain.embeddings import EmbeddingRequest, EmbeddingResponse, Vector
from oneflow_ai.domain.usage import Usage
from oneflow_ai.gateway.cache_entry import (
    SCHEMA_VERSION,
    CacheEntry,
    cache_key,
    has_thinking,
    response_from_events,
    semantic_question,
)
from oneflow_ai.gateway.call import Call
from oneflow_ai.storage.response_cache import MemoryResponseCache


def _call(text: str = "hi", *, key: str = "k1", stream: bool = False, **fields: object) -> Call:
    principal = Principal(PrincipalKind.API_KEY, "p1", Role.MEMBER, key_id=key)
    request = ChatRequest(
        model="gpt-4o",
        messages=[Message("user", [TextPart(text)])],
        stream=stream,
        **fields,  # type: ignore[arg-type]
    )
    return Call("r1", principal, "chat", request, "gpt-4o", stream=stream)


def test_the_key_covers_what_changes_the_answer_and_nothing_else() -> None:
    base = cache_key(_call(), shared=False)
    assert base == cache_key(_call(stream=True), shared=False)  # plain and streamed share
    assert base == cache_key(_call(user="someone"), shared=False)
    assert base != cache_key(_call("hello"), shared=False)
    assert base != cache_key(_call(max_tokens=5), shared=False)
    assert base != cache_key(_call(temperature=0.0), shared=False)
    assert base != cache_key(_call(key="k2"), shared=False)
    assert cache_key(_call(), shared=True) == cache_key(_call(key="k2"), shared=True)


def test_the_reasoning_setting_is_part_of_the_key() -> None:
    base = cache_key(_call(), shared=False)
    low = cache_key(_call(reasoning=Reasoning(effort="low")), shared=False)
    high = cache_key(_call(reasoning=Reasoning(effort="high")), shared=False)
    budget = cache_key(_call(reasoning=Reasoning(budget_tokens=2048)), shared=False)
    assert len({base, low, high, budget}) == 4
    assert low == cache_key(_call(reasoning=Reasoning(effort="low")), shared=False)


def _embedding_call(*inputs: str | tuple[int, ...], **fields: object) -> Call:
    principal = Principal(PrincipalKind.API_KEY, "p1", Role.MEMBER, key_id="k1")
    request = EmbeddingRequest("text-embedding-3-small", list(inputs), **fields)  # type: ignore[arg-type]
    return Call("r1", principal, "embedding", request, "text-embedding-3-small")


def test_an_embedding_key_covers_its_inputs_and_dimensions_only() -> None:
    base = cache_key(_embedding_call("a", "b"), shared=False)
    assert base is not None
    assert base == cache_key(_embedding_call("a", "b", encoding_format="base64"), shared=False)
    assert base == cache_key(_embedding_call("a", "b", user="someone"), shared=False)
    assert base != cache_key(_embedding_call("b", "a"), shared=False)
    assert base != cache_key(_embedding_call("a", "b", dimensions=256), shared=False)
    assert base != cache_key(_embedding_call((1, 2), "b"), shared=False)


def test_an_embedding_entry_round_trips_and_a_bad_vector_is_a_miss() -> None:
    usage = Usage(input_tokens=2)
    vectors = [Vector.of_floats([0.25, -1.5, 3.0]), Vector.of_floats([1.0])]
    answer = EmbeddingResponse(vectors, usage, model="text-embedding-3-small")
    entry = CacheEntry(key="e", model="text-embedding-3-small", usage=usage, answer=answer)
    decoded = CacheEntry.decode(entry.encode(), "e")
    assert decoded == entry
    assert decoded.fresh_answer() == answer
    document = json.loads(entry.encode())
    document["answer"]["vectors"] = ["not base64!"]
    assert CacheEntry.decode(json.dumps(document).encode(), "e") is None


def test_an_answer_with_thinking_is_not_an_entry() -> None:
    usage = Usage(input_tokens=3, output_tokens=4)
    head = [StreamStart("msg_1", "claude-sonnet-4-5"), TextDelta("hi"), StreamFinish("stop")]
    assert response_from_events(head, usage) is not None
    thought = [*head[:1], ThinkingDelta("let me see"), *head[1:]]
    assert response_from_events(thought, usage) is None
    blocks = [{"type": "thinking", "thinking": "hm", "signature": "s"}, {"type": "text"}]
    plain = ChatResponse("msg_1", "claude-sonnet-4-5", "hi", "stop", usage, raw={"content": blocks})
    assert has_thinking(plain)
    redacted = ChatResponse(
        "msg_1", "m", "hi", "stop", usage, raw={"content": [{"type": "redacted_thinking"}]}
    )
    assert has_thinking(redacted)
    assert not has_thinking(_entry().answer)  # type: ignore[arg-type]


def _entry(key: str = "abc") -> CacheEntry:
    usage = Usage(input_tokens=3, output_tokens=4)
    answer = ChatResponse(
        "chatcmpl-1", "gpt-4o", "hello", "stop", usage, raw={"id": "chatcmpl-1", "created": 1}
    )
    return CacheEntry(key=key, model="gpt-4o", usage=usage, answer=answer)


def test_an_entry_round_trips_and_a_hit_has_a_new_id() -> None:
    entry = _entry()
    decoded = CacheEntry.decode(entry.encode(), "abc")
    assert decoded == entry
    fresh = entry.fresh_answer()
    assert isinstance(fresh, ChatResponse) and fresh.raw is not None
    assert fresh.id.startswith("chatcmpl-") and fresh.id != "chatcmpl-1"
    assert fresh.raw["id"] == fresh.id and fresh.raw["created"] > 1
    assert (fresh.text, fresh.usage) == ("hello", entry.usage)


@pytest.mark.parametrize(
    "data",
    [
        b"not json",
        b"[]",
        b'{"v": 1}',
        json.dumps({**json.loads(_entry().encode()), "v": SCHEMA_VERSION + 1}).encode(),
        _entry(key="another").encode(),  # a foreign entry under this key
        json.dumps({**json.loads(_entry().encode()), "usage": {"input_tokens": -1}}).encode(),
        json.dumps({**json.loads(_entry().encode()), "answer": {"kind": "video"}}).encode(),
    ],
)
def test_a_corrupted_or_foreign_entry_is_a_miss(data: bytes) -> None:
    assert CacheEntry.decode(data, "abc") is None


async def test_the_in_process_store_is_bounded_by_bytes_and_expires() -> None:
    now = [0.0]
    store = MemoryResponseCache(max_bytes=300, max_entry_bytes=150, clock=lambda: now[0])
    await store.put("a", b"x" * 100, 10)
    await store.put("b", b"x" * 100, 10)
    assert await store.get("a") is not None  # "a" is now the most recently used
    await store.put("c", b"x" * 100, 10)  # over 300 bytes: "b" goes
    assert await store.get("b") is None
    assert await store.get("a") is not None and await store.get("c") is not None
    assert store.size <= 300
    await store.put("big", b"x" * 200, 10)  # over the entry bound: not kept
    assert await store.get("big") is None
    now[0] = 11.0
    assert await store.get("a") is None and len(store) == 1


def test_a_fraction_of_a_cost_is_rounded_per_line_item() -> None:
    pricing = PricingEngine(load_catalog(None))
    cost = pricing.price("gpt-4o", Usage(input_tokens=1001, output_tokens=333))
    assert fraction_of(cost, Decimal(0)).micro_credits == 0
    assert fraction_of(cost, Decimal(1)) == cost
    half = fraction_of(cost, Decimal("0.5"))
    assert abs(half.micro_credits * 2 - cost.micro_credits) <= 2
    assert half.model == cost.model


class _BrokenStore:
    kind = "redis"

    async def get(self, key: str) -> bytes | None:
        raise ConnectionError("Redis is away")

    async def put(self, key: str, value: bytes, ttl_seconds: int) -> None:
        raise ConnectionError("Redis is away")


async def test_a_failing_store_is_a_bypass_logged_at_most_once_a_minute() -> None:
    from structlog.testing import capture_logs

    from oneflow_ai.gateway.cache_hook import ResponseCache
    from oneflow_ai.observability.metrics import NoopMetrics
    from oneflow_ai.settings import Settings

    now = [0.0]
    settings = Settings(_env_file=None, cache_projects={"p1": {}})  # type: ignore[call-arg]
    hook = ResponseCache(_BrokenStore(), settings, NoopMetrics(), monotonic=lambda: now[0])
    with capture_logs() as logs:
        for moment in (0.0, 1.0, 59.0, 61.0):
            now[0] = moment
            call = _call()
            assert await hook.before(call) is None
            assert call.cache is not None and call.cache.result == "bypass"
    assert [entry["failures"] for entry in logs if entry["event"] == "cache_unavailable"] == [1, 4]
    assert hook.failures == 4


def _conversation(*messages: Message, dialect: str | None = None) -> Call:
    principal = Principal(PrincipalKind.API_KEY, "p1", Role.MEMBER, key_id="k1")
    request = ChatRequest(model="gpt-4o", messages=list(messages))
    if dialect is not None:
        request.raw, request.raw_dialect = {"input": "hi"}, dialect  # type: ignore[assignment]
    return Call("r1", principal, "chat", request, "gpt-4o")


def test_the_semantic_scope_is_everything_but_the_last_turns_text() -> None:
    system = Message("system", [TextPart("Be brief.")])
    asked = semantic_question(
        _conversation(system, Message("user", [TextPart("Capital of France?")])),
        shared=False,
        embedder="text-embedding-3-small",
    )
    assert asked is not None and asked[1] == "Capital of France?"
    paraphrase = semantic_question(
        _conversation(system, Message("user", [TextPart("France's capital?")])),
        shared=False,
        embedder="text-embedding-3-small",
    )
    assert paraphrase is not None and paraphrase[0] == asked[0]
    other_system = semantic_question(
        _conversation(Message("system", [TextPart("Be long.")]), Message("user", [TextPart("x")])),
        shared=False,
        embedder="text-embedding-3-small",
    )
    other_embedder = semantic_question(
        _conversation(system, Message("user", [TextPart("x")])), shared=False, embedder="other"
    )
    assert other_system is not None and other_embedder is not None
    assert len({asked[0], other_system[0], other_embedder[0]}) == 3
    assert asked[0] != cache_key(
        _conversation(system, Message("user", [TextPart("Capital of France?")])), shared=False
    )


@pytest.mark.parametrize(
    "last",
    [
        Message("user", [TextPart("look"), ImagePart("https://example.com/a.png")]),
        Message("tool", [TextPart("42")], tool_call_id="call_1"),
        Message("assistant", [TextPart("The answer is")]),
        Message("user", [TextPart("  ")]),
    ],
)
def test_the_semantic_cache_asks_only_a_users_text(last: Message) -> None:
    assert semantic_question(_conversation(last), shared=False, embedder="e") is None


def test_a_responses_call_has_no_semantic_question() -> None:
    call = _conversation(Message("user", [TextPart("hi")]), dialect="responses")
    assert semantic_question(call, shared=False, embedder="e") is None
    assert cache_key(call, shared=False) is not None


def _completed(*output: dict[str, object]) -> WireEvent:
    response = {"id": "resp_1", "object": "response", "status": "completed", "output": list(output)}
    return WireEvent("responses", {"type": "response.completed", "response": response})


_MESSAGE = {
    "type": "message",
    "role": "assistant",
    "content": [{"type": "output_text", "text": "Hi"}],
}


def test_a_responses_stream_keeps_openais_final_response_as_the_answer() -> None:
    events = [
        StreamStart("resp_1", "gpt-4o"),
        TextDelta("Hi"),
        _completed(_MESSAGE),
        StreamFinish("stop"),
    ]
    answer = response_from_events(events, Usage(input_tokens=3, output_tokens=1))
    assert answer is not None and answer.text == "Hi"
    assert answer.raw_dialect == "responses" and answer.raw is not None
    assert answer.raw["output"] == [_MESSAGE]


def test_a_responses_answer_with_a_reasoning_item_is_not_stored() -> None:
    reasoning = {"type": "reasoning", "summary": [], "encrypted_content": "gAAA"}
    events = [StreamStart("resp_1", "o3"), _completed(reasoning, _MESSAGE), StreamFinish("stop")]
    assert response_from_events(events, Usage(input_tokens=3, output_tokens=1)) is None
    plain = ChatResponse(
        id="resp_1",
        model="o3",
        text="Hi",
        finish_reason="stop",
        usage=Usage(input_tokens=3, output_tokens=1),
        raw={"output": [reasoning, _MESSAGE]},
        raw_dialect="responses",
    )
    assert has_thinking(plain)
    assert not has_thinking(replace(plain, raw={"output": [_MESSAGE]}))
