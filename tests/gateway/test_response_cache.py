"""The exact response cache end to end: the gateway over HTTP in front of the fake providers,
with the cache in Redis and in process (docs/cache.md)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from oneflow_ai.domain.embeddings import Vector
from oneflow_ai.domain.money import micro_credits_to_credits
from tests.conftest import redis_server_url
from tests.support.billing_world import CHAT_PATHS, MODEL, BillingWorld, billing_world
from tests.support.databases import migrated_sqlite_url
from tests.support.redis_server import PrivateRedis

STORES = [
    pytest.param("memory", id="memory"),
    pytest.param("redis", id="redis", marks=pytest.mark.redis),
]
#: Projects of these tests (unique per test: a shared Redis outlives a test).
CACHED, SHARED, PRICED, OFF = "cached", "shared", "priced", "off"


def _ids() -> dict[str, str]:
    run = uuid.uuid4().hex[:8]
    return {name: f"{name}-{run}" for name in (CACHED, SHARED, PRICED, OFF)}


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


@pytest.fixture
def projects() -> dict[str, str]:
    return _ids()


@pytest.fixture
def world(store: str, projects: dict[str, str], tmp_path: Path) -> Iterator[BillingWorld]:
    extra: dict[str, object] = {}
    if store == "redis":
        extra = {"redis_url": redis_server_url(), "redis_key_prefix": f"t{uuid.uuid4().hex}:"}
    policies = {
        projects[CACHED]: {},
        projects[SHARED]: {"shared": True},
        projects[PRICED]: {"hit_fraction": "0.25", "allow_temperature": True},
    }
    with billing_world(
        migrated_sqlite_url(tmp_path / "cache.db"),
        reply_words=30,
        cache_projects=policies,
        **extra,
    ) as world:
        for project in projects.values():
            world.admin_call("POST", "/api/v1/projects", {"name": project, "id": project})
        yield world


def _body(dialect: str, *, stream: bool = False, prompt: str = "Cache me") -> dict[str, object]:
    body: dict[str, object] = {
        "model": MODEL,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": 50,
    }
    if stream:
        body["stream"] = True
        if dialect == "openai":
            body["stream_options"] = {"include_usage": True}
    return body


def _post(world: BillingWorld, key: str, path: str, body: object, **headers: str) -> httpx.Response:
    response = httpx.post(
        f"{world.url}{path}",
        json=body,
        headers={"Authorization": f"Bearer {key}", **headers},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return response


def _without_ids(body: dict[str, object]) -> dict[str, object]:
    """A non-streamed answer without the fields that differ between a hit and the miss."""
    return {k: v for k, v in body.items() if k not in ("id", "created")}


def _events(dialect: str, text: str) -> list[dict[str, object]]:
    """The JSON events of an SSE body (OpenAI's `[DONE]` left out), ids blanked."""
    events: list[dict[str, object]] = []
    for line in text.splitlines():
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        event = json.loads(line[len("data: ") :])
        event.pop("id", None)
        event.pop("created", None)
        if dialect == "anthropic" and event.get("type") == "message_start":
            event["message"].pop("id", None)
        events.append(event)
    return events


def _streamed_text(dialect: str, events: list[dict[str, object]]) -> str:
    parts: list[str] = []
    for event in events:
        if dialect == "openai":
            for choice in event.get("choices", []):  # type: ignore[attr-defined]
                parts.append(choice["delta"].get("content") or "")
        elif event.get("type") == "content_block_delta":
            parts.append(event["delta"].get("text", ""))  # type: ignore[index]
    return "".join(parts)


def _usage_of(dialect: str, events: list[dict[str, object]]) -> tuple[int, int]:
    if dialect == "openai":
        usage = next(e["usage"] for e in reversed(events) if e.get("usage"))
        return usage["prompt_tokens"], usage["completion_tokens"]  # type: ignore[index]
    start = next(e for e in events if e["type"] == "message_start")
    delta = next(e for e in reversed(events) if e["type"] == "message_delta")
    return (
        start["message"]["usage"]["input_tokens"],  # type: ignore[index]
        delta["usage"]["output_tokens"],  # type: ignore[index]
    )


@pytest.mark.parametrize("dialect", ["openai", "anthropic"])
def test_a_repeated_answer_comes_from_the_cache_with_the_same_body(
    world: BillingWorld, projects: dict[str, str], dialect: str
) -> None:
    key = world.key(projects[CACHED])
    path = CHAT_PATHS[dialect]
    first = _post(world, key, path, _body(dialect))
    second = _post(world, key, path, _body(dialect))
    assert first.headers["x-oneflow-cache"] == "miss"
    assert second.headers["x-oneflow-cache"] == "hit"
    assert world.fakes.call_count() == 1
    assert second.json()["id"] != first.json()["id"]
    assert _without_ids(second.json()) == _without_ids(first.json())


@pytest.mark.parametrize("dialect", ["openai", "anthropic"])
def test_a_cached_answer_is_replayed_as_a_well_formed_stream(
    world: BillingWorld, projects: dict[str, str], dialect: str
) -> None:
    key = world.key(projects[CACHED])
    path = CHAT_PATHS[dialect]
    live = _post(world, key, path, _body(dialect, stream=True))
    replayed = _post(world, key, path, _body(dialect, stream=True))
    plain = _post(world, key, path, _body(dialect))  # the stream's answer serves a plain call
    assert [r.headers["x-oneflow-cache"] for r in (live, replayed, plain)] == [
        "miss",
        "hit",
        "hit",
    ]
    assert world.fakes.call_count() == 1
    live_events, replay_events = _events(dialect, live.text), _events(dialect, replayed.text)
    assert _streamed_text(dialect, replay_events) == _streamed_text(dialect, live_events)
    assert _usage_of(dialect, replay_events) == _usage_of(dialect, live_events)
    if dialect == "anthropic":  # the same event types, in the same order, usage at the end
        kinds = [e["type"] for e in replay_events]
        assert kinds == list(dict.fromkeys(e["type"] for e in live_events))
        assert kinds[-2:] == ["message_delta", "message_stop"]
        text = plain.json()["content"][0]["text"]
    else:
        assert "data: [DONE]" in replayed.text
        assert replay_events[-1]["usage"]
        text = plain.json()["choices"][0]["message"]["content"]
    assert text == _streamed_text(dialect, live_events)


def test_the_official_sdks_read_hits_plain_and_streamed(
    world: BillingWorld, projects: dict[str, str]
) -> None:
    key = world.key(projects[CACHED])
    client = world.openai(key)
    messages = [{"role": "user", "content": "Through the SDK"}]
    live = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=40)  # type: ignore[arg-type]
    cached = client.chat.completions.with_raw_response.create(
        model=MODEL,
        messages=messages,  # type: ignore[arg-type]
        max_tokens=40,
    )
    assert cached.headers["x-oneflow-cache"] == "hit"
    assert cached.parse().choices[0].message.content == live.choices[0].message.content
    stream = client.chat.completions.create(
        model=MODEL,
        messages=messages,  # type: ignore[arg-type]
        max_tokens=40,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == (
        live.choices[0].message.content
    )
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == live.usage.completion_tokens  # type: ignore[union-attr]
    with world.anthropic(key).messages.stream(
        model=MODEL, max_tokens=40, messages=[{"role": "user", "content": "Through the SDK"}]
    ) as streamed:
        final = streamed.get_final_message()
    assert final.content[0].text == live.choices[0].message.content  # type: ignore[union-attr]
    assert world.fakes.call_count() == 1


async def test_a_hit_is_billed_at_the_fraction_and_the_saving_is_in_usage(
    world: BillingWorld, projects: dict[str, str]
) -> None:
    project = projects[PRICED]
    key = world.key(project)
    body = {**_body("openai"), "temperature": 0.7}  # the project allows temperature > 0
    _post(world, key, CHAT_PATHS["openai"], body)
    hit = _post(world, key, CHAT_PATHS["openai"], body)
    assert hit.headers["x-oneflow-cache"] == "hit"
    live_charge, hit_charge = await world.charges(project)
    assert live_charge.micro_credits > 0
    expected = sum(
        int((Decimal(part) * Decimal("0.25")).to_integral_value())
        for part in _line_items(live_charge.input_tokens or 0, live_charge.output_tokens or 0)
    )
    assert hit_charge.micro_credits == expected
    assert (hit_charge.input_tokens, hit_charge.output_tokens) == (
        live_charge.input_tokens,
        live_charge.output_tokens,
    )
    saved = live_charge.micro_credits - hit_charge.micro_credits
    report = world.admin_call("GET", "/api/v1/usage", project=project, group_by="key,model").json()
    (group,) = report["groups"]
    assert group["model"] == MODEL
    assert (group["requests"], group["cache_hits"], group["cache_hit_rate"]) == (2, 1, 0.5)
    assert Decimal(group["credits_saved"]) == micro_credits_to_credits(saved)
    csv_text = world.admin_call(
        "GET", "/api/v1/usage.csv", project=project, group_by="project"
    ).text
    header, row = csv_text.strip().splitlines()
    values = dict(zip(header.split(","), row.split(","), strict=True))
    assert values["cache_hits"] == "1"
    assert Decimal(values["credits_saved"]) == micro_credits_to_credits(saved)
    assert world.metric("oneflow_cache_requests_total", result="hit") == 1
    assert world.metric("oneflow_cache_requests_total", result="miss") == 1
    assert world.metric("oneflow_cache_credits_saved_total") == pytest.approx(
        float(micro_credits_to_credits(saved))
    )


def _line_items(input_tokens: int, output_tokens: int) -> list[Decimal]:
    """The exact micro-credits of MODEL's input and output lines."""
    from oneflow_ai.domain.usage import Usage
    from tests.support.billing_world import pricing

    cost = pricing.price(MODEL, Usage(input_tokens=input_tokens, output_tokens=output_tokens))
    return [item.exact_usd * 100 * 1_000_000 for item in cost.line_items]


async def test_a_hit_is_free_by_default(world: BillingWorld, projects: dict[str, str]) -> None:
    project = projects[CACHED]
    key = world.key(project)
    for _ in range(2):
        _post(world, key, CHAT_PATHS["anthropic"], _body("anthropic"))
    live_charge, hit_charge = await world.charges(project)
    assert live_charge.micro_credits > 0 and hit_charge.micro_credits == 0


def test_no_store_and_no_cache_bypass_the_cache(
    world: BillingWorld, projects: dict[str, str]
) -> None:
    key = world.key(projects[CACHED])
    path = CHAT_PATHS["openai"]
    body = _body("openai")
    no_store = _post(world, key, path, body, **{"Cache-Control": "no-store"})
    assert no_store.headers["x-oneflow-cache"] == "bypass"
    assert _post(world, key, path, body).headers["x-oneflow-cache"] == "miss"  # nothing kept
    no_cache = _post(world, key, path, body, **{"Cache-Control": "no-cache"})
    assert no_cache.headers["x-oneflow-cache"] == "bypass"
    assert _post(world, key, path, body).headers["x-oneflow-cache"] == "hit"
    assert world.fakes.call_count() == 3


def test_keys_share_entries_only_when_their_project_says_so(
    world: BillingWorld, projects: dict[str, str]
) -> None:
    path, body = CHAT_PATHS["openai"], _body("openai")
    own_a, own_b = world.key(projects[CACHED]), world.key(projects[CACHED])
    assert _post(world, own_a, path, body).headers["x-oneflow-cache"] == "miss"
    assert _post(world, own_b, path, body).headers["x-oneflow-cache"] == "miss"
    shared_a, shared_b = world.key(projects[SHARED]), world.key(projects[SHARED])
    assert _post(world, shared_a, path, body).headers["x-oneflow-cache"] == "miss"
    assert _post(world, shared_b, path, body).headers["x-oneflow-cache"] == "hit"
    other_project = world.key(projects[PRICED])  # never another project's entries
    assert _post(world, other_project, path, body).headers["x-oneflow-cache"] == "miss"


def test_temperature_and_projects_that_did_not_opt_in(
    world: BillingWorld, projects: dict[str, str]
) -> None:
    path = CHAT_PATHS["openai"]
    key = world.key(projects[CACHED])
    warm = {**_body("openai"), "temperature": 0.8}
    assert _post(world, key, path, warm).headers["x-oneflow-cache"] == "bypass"
    assert _post(world, key, path, warm).headers["x-oneflow-cache"] == "bypass"
    cold = {**_body("openai"), "temperature": 0}
    assert _post(world, key, path, cold).headers["x-oneflow-cache"] == "miss"
    off = world.key(projects[OFF])
    for _ in range(2):
        assert "x-oneflow-cache" not in _post(world, off, path, _body("openai")).headers
    assert world.fakes.call_count() == 5


def test_the_ttl_header_and_a_bad_one(world: BillingWorld, projects: dict[str, str]) -> None:
    key = world.key(projects[CACHED])
    for dialect, kind in (
        ("openai", "invalid_request_error"),
        ("anthropic", "invalid_request_error"),
    ):
        bad = httpx.post(
            f"{world.url}{CHAT_PATHS[dialect]}",
            json=_body(dialect),
            headers={"Authorization": f"Bearer {key}", "X-OneFlow-Cache-TTL": "soon"},
        )
        assert bad.status_code == 400
        assert bad.json()["error"]["type"] == kind
    ttl = {"X-OneFlow-Cache-TTL": "120"}
    assert (
        _post(world, key, CHAT_PATHS["openai"], _body("openai"), **ttl).headers["x-oneflow-cache"]
        == "miss"
    )
    assert 100 < _remaining_ttl(world) <= 120  # not the configured hour


def _remaining_ttl(world: BillingWorld) -> float:
    """The seconds the gateway's one cached entry has left (in Redis or in process)."""
    import time

    import redis

    from oneflow_ai.gateway.cache_hook import ResponseCache
    from oneflow_ai.storage.response_cache import MemoryResponseCache

    services = world.app.state.services
    (hook,) = [h for h in services.pipeline.hooks if isinstance(h, ResponseCache)]
    store = hook.store
    if isinstance(store, MemoryResponseCache):
        ((expires_at, _),) = store._entries.values()
        return expires_at - time.monotonic()
    settings = services.settings
    client = redis.Redis.from_url(settings.redis_url)
    try:
        (name,) = list(client.scan_iter(match=f"{settings.redis_key_prefix}cache:*"))
        return float(client.ttl(name))
    finally:
        client.close()


def test_images_are_cached(world: BillingWorld, projects: dict[str, str]) -> None:
    key = world.key(projects[CACHED])
    body = {"model": "dall-e-3", "prompt": "a lighthouse", "size": "1024x1024"}
    first = _post(world, key, "/v1/images/generations", body)
    second = _post(world, key, "/v1/images/generations", body)
    assert (first.headers["x-oneflow-cache"], second.headers["x-oneflow-cache"]) == ("miss", "hit")
    assert second.json()["data"] == first.json()["data"]
    assert world.fakes.call_count() == 1


async def test_embeddings_are_cached(world: BillingWorld, projects: dict[str, str]) -> None:
    project = projects[CACHED]
    key = world.key(project)
    body: dict[str, object] = {"model": "text-embedding-3-small", "input": ["one", "two"]}
    first = _post(world, key, "/v1/embeddings", body)
    second = _post(world, key, "/v1/embeddings", body)
    assert (first.headers["x-oneflow-cache"], second.headers["x-oneflow-cache"]) == ("miss", "hit")
    assert second.json() == first.json()
    assert world.fakes.call_count() == 1
    # The same vectors written as base64 share the entry; other dimensions or inputs do not.
    encoded = _post(world, key, "/v1/embeddings", {**body, "encoding_format": "base64"})
    assert encoded.headers["x-oneflow-cache"] == "hit"
    for item, plain in zip(encoded.json()["data"], first.json()["data"], strict=True):
        vector = Vector.of_base64(item["embedding"]).floats()
        assert vector == pytest.approx(plain["embedding"], abs=1e-6)
    shorter = _post(world, key, "/v1/embeddings", {**body, "dimensions": 256})
    assert shorter.headers["x-oneflow-cache"] == "miss"
    assert len(shorter.json()["data"][0]["embedding"]) == 256
    tokens = _post(world, key, "/v1/embeddings", {**body, "input": [[1, 2], [3]]})
    assert tokens.headers["x-oneflow-cache"] == "miss"
    assert world.fakes.call_count() == 3
    live, *hits = (await world.charges(project))[:3]
    assert live.micro_credits > 0 and [hit.micro_credits for hit in hits] == [0, 0]
    assert [hit.input_tokens for hit in hits] == [live.input_tokens] * 2
    report = world.admin_call("GET", "/api/v1/usage", project=project, group_by="model").json()
    (group,) = report["groups"]
    assert (group["requests"], group["cache_hits"]) == (5, 2)
    assert Decimal(group["credits_saved"]) == 2 * micro_credits_to_credits(live.micro_credits)


@pytest.mark.parametrize("stream", [False, True])
def test_an_answer_with_thinking_blocks_is_not_stored(
    world: BillingWorld, projects: dict[str, str], stream: bool
) -> None:
    key = world.key(projects[CACHED])
    body: dict[str, object] = {
        "model": "claude-sonnet-5-5",
        "max_tokens": 4000,
        "thinking": {"type": "enabled", "budget_tokens": 2048},
        "messages": [{"role": "user", "content": "Think, then answer"}],
    }
    if stream:
        body["stream"] = True
    first = _post(world, key, "/v1/messages", body)
    second = _post(world, key, "/v1/messages", body)
    assert (first.headers["x-oneflow-cache"], second.headers["x-oneflow-cache"]) == ("miss", "miss")
    assert "thinking" in second.text  # the provider answered again, thinking and all
    assert world.fakes.call_count() == 2
    plain = {k: v for k, v in body.items() if k not in ("thinking", "stream")}
    assert _post(world, key, "/v1/messages", plain).headers["x-oneflow-cache"] == "miss"
    assert _post(world, key, "/v1/messages", plain).headers["x-oneflow-cache"] == "hit"


@pytest.mark.redis  # a redis-server of its own, stopped mid-run (CI has one)
def test_redis_stopped_mid_run_bypasses_with_no_errors(tmp_path: Path) -> None:
    redis = PrivateRedis()
    project = f"cached-{uuid.uuid4().hex[:8]}"
    try:
        with billing_world(
            migrated_sqlite_url(tmp_path / "outage.db"),
            reply_words=20,
            redis_url=redis.url,
            cache_projects={project: {}},
        ) as world:
            world.admin_call("POST", "/api/v1/projects", {"name": project, "id": project})
            key = world.key(project)
            path, body = CHAT_PATHS["openai"], _body("openai")
            assert _post(world, key, path, body).headers["x-oneflow-cache"] == "miss"
            assert _post(world, key, path, body).headers["x-oneflow-cache"] == "hit"
            redis.stop()
            results = []
            for dialect in ("openai", "anthropic"):
                for stream in (False, True):
                    response = httpx.post(
                        f"{world.url}{CHAT_PATHS[dialect]}",
                        json=_body(dialect, stream=stream),
                        headers={"Authorization": f"Bearer {key}"},
                        timeout=30,
                    )
                    results.append((response.status_code, response.headers.get("x-oneflow-cache")))
            assert results == [(200, "bypass")] * 4
            assert world.metric("oneflow_cache_requests_total", result="bypass") == 4
    finally:
        redis.remove()


def test_a_stream_cut_off_is_not_stored(world: BillingWorld, projects: dict[str, str]) -> None:
    key = world.key(projects[CACHED])
    path, body = CHAT_PATHS["openai"], _body("openai", stream=True)
    world.fakes.add_fault(provider="openai", drop_after_chunks=2, times=1)
    cut = httpx.post(
        f"{world.url}{path}", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=30
    )
    assert cut.headers["x-oneflow-cache"] == "miss"
    assert '"error"' in cut.text  # the stream ended with an error event
    again = _post(world, key, path, body)
    assert again.headers["x-oneflow-cache"] == "miss"  # the broken answer was not kept
    assert _post(world, key, path, body).headers["x-oneflow-cache"] == "hit"
    assert world.fakes.call_count() == 2


@pytest.mark.parametrize("counted", [True, False])
def test_cached_requests_count_against_rate_limits_unless_configured(
    tmp_path: Path, counted: bool
) -> None:
    project = f"cached-{uuid.uuid4().hex[:8]}"
    with billing_world(
        migrated_sqlite_url(tmp_path / "limits.db"),
        reply_words=10,
        rate_limit_per_minute=3,
        cache_projects={project: {}},
        cache_counts_rate_limits=counted,
    ) as world:
        world.admin_call("POST", "/api/v1/projects", {"name": project, "id": project})
        key = world.key(project)
        statuses = [
            httpx.post(
                f"{world.url}{CHAT_PATHS['openai']}",
                json=_body("openai"),
                headers={"Authorization": f"Bearer {key}"},
                timeout=30,
            ).status_code
            for _ in range(5)
        ]
    assert statuses == ([200, 200, 200, 429, 429] if counted else [200] * 5)


async def test_a_hit_needs_only_the_credits_it_will_cost(tmp_path: Path) -> None:
    project = f"cached-{uuid.uuid4().hex[:8]}"
    with billing_world(
        migrated_sqlite_url(tmp_path / "prepaid.db"),
        reply_words=10,
        cache_projects={project: {}},
    ) as world:
        world.admin_call("POST", "/api/v1/projects", {"name": project, "id": project})
        world.admin_call("PATCH", f"/api/v1/projects/{project}/credits", {"mode": "prepaid"})
        world.top_up(project, 2_000_000)  # 2 credits: one live call's worst case, not two
        key = world.key(project)
        path = CHAT_PATHS["openai"]
        big = {**_body("openai"), "max_tokens": 16_000}
        send = lambda body: httpx.post(  # noqa: E731
            f"{world.url}{path}", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=30
        )
        assert send(_body("openai")).status_code == 200
        assert send(big).status_code == 402  # its worst case is past the balance
        world.top_up(project, 100_000_000)
        assert send(big).headers["x-oneflow-cache"] == "miss"
        account = world.admin_call("GET", f"/api/v1/projects/{project}/credits").json()
        left = int(account["balance"]["micro_credits"])
        drain = {"credits": f"-{micro_credits_to_credits(left - 1)}", "kind": "adjustment"}
        world.admin_call("POST", f"/api/v1/projects/{project}/credits", drain)
        hit = send(big)  # free from the cache: the worst case no longer applies
        assert (hit.status_code, hit.headers["x-oneflow-cache"]) == (200, "hit")
        assert send({**_body("openai"), "max_tokens": 7}).status_code == 402
        await world.consistent(project)


def test_a_project_opts_in_through_the_projects_api(tmp_path: Path) -> None:
    project = f"api-{uuid.uuid4().hex[:8]}"
    with billing_world(migrated_sqlite_url(tmp_path / "api.db"), reply_words=10) as world:
        made = world.admin_call(
            "POST", "/api/v1/projects", {"name": project, "id": project, "cache": {}}
        ).json()
        assert made["cache"] == {}
        key_a, key_b = world.key(project), world.key(project)
        path, body = CHAT_PATHS["openai"], _body("openai")
        results = [_post(world, key_a, path, body).headers["x-oneflow-cache"] for _ in range(2)]
        results.append(_post(world, key_b, path, body).headers["x-oneflow-cache"])
        assert results == ["miss", "hit", "miss"]  # each key its own entries

        policy = {"shared": True, "hit_fraction": "0.5"}
        changed = world.admin_call("PATCH", f"/api/v1/projects/{project}", {"cache": policy})
        assert changed.json()["cache"] == policy
        key_c = world.key(project)
        _post(world, key_a, path, {**body, "max_tokens": 9})
        assert (
            _post(world, key_c, path, {**body, "max_tokens": 9}).headers["x-oneflow-cache"] == "hit"
        )  # shared now (keys already in use see the change too)
        _user_id, token = world.user(project)
        assert (
            _post(world, token, path, {**body, "max_tokens": 9}).headers["x-oneflow-cache"] == "hit"
        )  # a signed-in user of the project as well

        bad = world.admin.patch(
            f"/api/v1/projects/{project}", json={"cache": {"hit_fraction": "2"}}
        )
        assert bad.status_code == 400 and bad.json()["error"]["param"].startswith("cache")
        world.admin_call("PATCH", f"/api/v1/projects/{project}", {"cache": None})
        off = _post(world, key_a, path, body)
        assert "x-oneflow-cache" not in off.headers


def test_the_access_line_says_what_the_cache_did(tmp_path: Path) -> None:
    from structlog.testing import capture_logs

    from tests.support.access_lines import access_lines

    project = f"log-{uuid.uuid4().hex[:8]}"
    policies = {project: {"hit_fraction": "0.5"}}
    with billing_world(
        migrated_sqlite_url(tmp_path / "log.db"),
        reply_words=10,
        log_requests=True,
        cache_projects=policies,
    ) as world:
        world.admin_call("POST", "/api/v1/projects", {"name": project, "id": project})
        key = world.key(project)
        with capture_logs() as logs:
            for _ in range(2):
                _post(world, key, CHAT_PATHS["openai"], _body("openai"))
            miss, hit = access_lines(logs, CHAT_PATHS["openai"], count=2)
    assert (miss["cache"], hit["cache"]) == ("miss", "hit")
    assert "credits_saved" not in miss
    assert Decimal(hit["credits_saved"]) + Decimal(hit["credits"]) == Decimal(miss["credits"])


def test_a_replayed_stream_of_a_prepaid_project_is_not_cut_by_oneflows_own_count(
    tmp_path: Path,
) -> None:
    """The provider said 1 output token; OneFlow counts more in the text. A live stream is
    held to what was reserved as it runs, a replayed one is charged what the entry says."""
    project = f"prepaid-{uuid.uuid4().hex[:8]}"
    with billing_world(
        migrated_sqlite_url(tmp_path / "replay.db"),
        count_tokens=lambda text: 1,
        reply_words=12,
        cache_projects={project: {"hit_fraction": "0.5"}},
    ) as world:
        world.admin_call("POST", "/api/v1/projects", {"name": project, "id": project})
        world.admin_call("PATCH", f"/api/v1/projects/{project}/credits", {"mode": "prepaid"})
        world.top_up(project, 100_000_000)
        key = world.key(project)
        path, body = CHAT_PATHS["anthropic"], _body("anthropic", stream=True)
        live = _post(world, key, path, body)
        replayed = _post(world, key, path, body)
        assert replayed.headers["x-oneflow-cache"] == "hit"
        assert '"error"' not in replayed.text
        live_text = _streamed_text("anthropic", _events("anthropic", live.text))
        assert _streamed_text("anthropic", _events("anthropic", replayed.text)) == live_text


@pytest.mark.redis
def test_replicas_share_the_redis_cache(tmp_path: Path) -> None:
    database = migrated_sqlite_url(tmp_path / "replicas.db")
    project = f"replicas-{uuid.uuid4().hex[:8]}"
    shared = {
        "redis_url": redis_server_url(),
        "redis_key_prefix": f"t{uuid.uuid4().hex}:",
        "cache_projects": {project: {}},
        "reply_words": 10,
    }
    with billing_world(database, **shared) as first, billing_world(database, **shared) as second:
        first.admin_call("POST", "/api/v1/projects", {"name": project, "id": project})
        key = first.key(project)
        path, body = CHAT_PATHS["openai"], _body("openai")
        answer = _post(first, key, path, body)
        again = _post(second, key, path, body)
        streamed = _post(second, key, path, _body("openai", stream=True))
    assert (answer.headers["x-oneflow-cache"], again.headers["x-oneflow-cache"]) == ("miss", "hit")
    assert streamed.headers["x-oneflow-cache"] == "hit"
    assert _without_ids(again.json()) == _without_ids(answer.json())
    assert (first.fakes.call_count(), second.fakes.call_count()) == (1, 0)


@pytest.mark.parametrize("coalesce", [True, False])
async def test_identical_misses_at_once_call_the_provider_once_when_coalescing(
    store: str, tmp_path: Path, coalesce: bool
) -> None:
    import asyncio

    project = f"together-{uuid.uuid4().hex[:8]}"
    extra: dict[str, object] = {}
    if store == "redis":
        extra = {"redis_url": redis_server_url(), "redis_key_prefix": f"t{uuid.uuid4().hex}:"}
    with billing_world(
        migrated_sqlite_url(tmp_path / "together.db"),
        reply_words=10,
        cache_projects={project: {"coalesce": coalesce}},
        **extra,
    ) as world:
        world.admin_call("POST", "/api/v1/projects", {"name": project, "id": project})
        key = world.key(project)
        world.fakes.add_fault(provider="openai", latency_ms=400)
        async with world.client(key) as client:
            answers = await asyncio.gather(
                *(client.post(CHAT_PATHS["openai"], json=_body("openai")) for _ in range(4))
            )
        calls = world.fakes.call_count()
    assert [a.status_code for a in answers] == [200] * 4
    results = sorted(a.headers["x-oneflow-cache"] for a in answers)
    if coalesce:
        assert (calls, results) == (1, ["hit", "hit", "hit", "miss"])
        texts = {a.json()["choices"][0]["message"]["content"] for a in answers}
        assert len(texts) == 1
    else:
        assert (calls, results) == (4, ["miss"] * 4)


async def test_a_failed_first_call_hands_its_claim_to_a_waiting_one(tmp_path: Path) -> None:
    import asyncio

    project = f"together-{uuid.uuid4().hex[:8]}"
    with billing_world(
        migrated_sqlite_url(tmp_path / "failed.db"),
        reply_words=10,
        cache_projects={project: {"coalesce": True}},
    ) as world:
        world.admin_call("POST", "/api/v1/projects", {"name": project, "id": project})
        key = world.key(project)
        world.fakes.add_fault(provider="openai", latency_ms=300, status=500, times=1)
        world.fakes.add_fault(provider="openai", latency_ms=300)
        async with world.client(key) as client:
            answers = await asyncio.gather(
                *(client.post(CHAT_PATHS["openai"], json=_body("openai")) for _ in range(4))
            )
        calls = world.fakes.call_count()
    statuses = sorted(a.status_code for a in answers)
    assert statuses[:3] == [200, 200, 200] and statuses[3] >= 500
    results = sorted(a.headers["x-oneflow-cache"] for a in answers if a.status_code == 200)
    assert (calls, results) == (2, ["hit", "hit", "miss"])
