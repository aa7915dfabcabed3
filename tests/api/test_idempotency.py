"""Idempotency-Key on POST: one execution per caller and key, answers replayed byte for byte.

Runs against the real app (`create_app`, uvicorn on a free port) with a counting endpoint
added, on the in-process store and on Redis.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager

import httpx
import pytest
from fastapi import FastAPI, Request
from starlette.applications import Starlette
from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from oneflow_ai.api.idempotency import IdempotencyMiddleware
from oneflow_ai.app import create_app
from oneflow_ai.resilience import MemoryIdempotencyStore
from oneflow_ai.settings import DEFAULT_MASTER_KEY, Settings
from oneflow_ai.storage.redis import create_redis
from tests.conftest import MEMORY, REDIS, redis_server_url
from tests.support.billing_world import billing_world, chat_body, worst_case
from tests.support.server import LiveServer, live_server

AUTH = {"Authorization": f"Bearer {DEFAULT_MASTER_KEY}"}


class Counter:
    def __init__(self) -> None:
        self.runs = 0


def counting_app(settings: Settings, counter: Counter) -> FastAPI:
    app = create_app(settings, configure_logs=False)

    async def count(request: Request) -> Response:
        counter.runs += 1
        body = await request.json()
        await asyncio.sleep(float(body.get("work", 0.05)))
        status = int(body.get("status", 200))
        payload = {"run": counter.runs, "nonce": uuid.uuid4().hex, "echo": body.get("text")}
        return JSONResponse(payload, status_code=status, headers={"X-Run": str(counter.runs)})

    async def events(request: Request) -> StreamingResponse:
        counter.runs += 1
        size = int((await request.json()).get("size", 3))

        async def body() -> AsyncIterator[bytes]:
            for n in range(size):
                yield f'data: {{"n":{n},"run":{counter.runs}}}\n\n'.encode()
                await asyncio.sleep(0.001)
            yield b"data: [DONE]\n\n"

        return StreamingResponse(body(), media_type="text/event-stream")

    app.add_api_route("/test/count", count, methods=["POST"])
    app.add_api_route("/v1/test/events", events, methods=["POST"])
    return app


@pytest.fixture(params=[MEMORY, REDIS])
def backend(
    request: pytest.FixtureRequest, make_settings: Callable[..., Settings], redis_prefix: str
) -> Iterator[Callable[..., Settings]]:
    """Settings factory for the store under test; Redis keys are removed afterwards."""
    if request.param == "memory":
        yield make_settings
        return
    url = redis_server_url()

    def build(**overrides: object) -> Settings:
        return make_settings(redis_url=url, redis_key_prefix=redis_prefix, **overrides)

    yield build
    asyncio.run(_clean_redis(url, redis_prefix))


async def _clean_redis(url: str | None, prefix: str) -> None:
    assert url is not None
    client = create_redis(url)
    keys = [k async for k in client.scan_iter(match=f"{prefix}*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@contextmanager
def running(settings: Settings) -> Iterator[tuple[LiveServer, Counter]]:
    counter = Counter()
    with live_server(counting_app(settings, counter)) as server:
        yield server, counter


async def post(
    client: httpx.AsyncClient, path: str, body: object, key: str | None = "key-1", **headers: str
) -> httpx.Response:
    sent = dict(AUTH)
    if key is not None:
        sent["Idempotency-Key"] = key
    sent.update(headers)
    return await client.post(path, json=body, headers=sent)


async def test_fifty_concurrent_duplicates_run_once_and_get_one_answer(
    backend: Callable[..., Settings],
) -> None:
    with running(backend()) as (server, counter):
        limits = httpx.Limits(max_connections=60)
        async with httpx.AsyncClient(base_url=server.url, timeout=30, limits=limits) as client:
            responses = await asyncio.gather(
                *(post(client, "/test/count", {"text": "hi", "work": 0.3}) for _ in range(50))
            )
            later = await post(client, "/test/count", {"text": "hi", "work": 0.3})
    assert counter.runs == 1
    assert {r.status_code for r in responses} == {200}
    assert len({r.content for r in responses}) == 1  # 50 identical answers
    assert responses[0].json()["run"] == 1
    replayed = [r.headers.get("idempotent-replayed") for r in responses]
    assert replayed.count(None) == 1 and replayed.count("true") == 49
    assert {r.headers["x-run"] for r in responses} == {"1"}  # the app's headers are kept
    assert len({r.headers["x-request-id"] for r in responses}) == 50  # each its own request
    assert later.content == responses[0].content
    assert later.headers["idempotent-replayed"] == "true"


async def test_the_same_key_with_another_body_is_422(backend: Callable[..., Settings]) -> None:
    with running(backend()) as (server, counter):
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            first = await post(client, "/test/count", {"text": "one"})
            other = await post(client, "/test/count", {"text": "two"})
            other_path = await post(client, "/test/count?x=1", {"text": "one"})
    assert first.status_code == 200
    assert other.status_code == 422 and other_path.status_code == 422
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    assert counter.runs == 1


async def test_a_caller_that_will_not_wait_gets_409_while_it_runs(
    backend: Callable[..., Settings],
) -> None:
    with running(backend()) as (server, counter):
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            first = asyncio.create_task(post(client, "/test/count", {"work": 0.5}))
            for _ in range(500):  # until the first one runs
                if counter.runs:
                    break
                await asyncio.sleep(0.01)
            impatient = await post(
                client, "/test/count", {"work": 0.5}, **{"Idempotency-Wait": "false"}
            )
            assert (await first).status_code == 200
    assert impatient.status_code == 409
    assert impatient.json()["error"]["code"] == "idempotency_request_in_progress"
    assert impatient.headers["retry-after"] == "1"
    assert counter.runs == 1


#: Answers that mean nothing was done, and may not hold on a retry: the key is released.
NOT_STORED = (401, 402, 403, 408, 409, 413, 425, 429, 500, 502, 503, 504)
#: Answers of something done, or refusals of the request itself: replayed.
STORED = (200, 201, 400, 404, 422)


async def test_answers_that_mean_nothing_was_done_are_not_stored(
    backend: Callable[..., Settings],
) -> None:
    with running(backend()) as (server, counter):
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            for status in NOT_STORED:
                key = f"refused-{status}"
                first = await post(client, "/test/count", {"status": status}, key=key)
                again = await post(client, "/test/count", {"status": status}, key=key)
                assert (first.status_code, again.status_code) == (status, status)
                assert "idempotent-replayed" not in again.headers, status
                assert again.json()["run"] == first.json()["run"] + 1, status  # ran afresh
            # Once the cause is gone, the retry with the same key succeeds (and that is kept).
            done = await post(client, "/test/count", {"status": 200}, key="refused-402")
            repeat = await post(client, "/test/count", {"status": 200}, key="refused-402")
    assert done.status_code == 200 and "idempotent-replayed" not in done.headers
    assert repeat.headers["idempotent-replayed"] == "true" and repeat.content == done.content
    assert counter.runs == 2 * len(NOT_STORED) + 1


async def test_answers_of_something_done_and_refusals_of_the_request_are_replayed(
    backend: Callable[..., Settings],
) -> None:
    with running(backend()) as (server, counter):
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            for status in STORED:
                key = f"kept-{status}"
                first = await post(client, "/test/count", {"status": status}, key=key)
                again = await post(client, "/test/count", {"status": status}, key=key)
                assert (first.status_code, again.status_code) == (status, status)
                assert again.headers["idempotent-replayed"] == "true", status
                assert again.content == first.content, status
    assert counter.runs == len(STORED)


async def test_a_402_is_not_replayed_after_a_top_up(database_url: str) -> None:
    """Through the gateway: a prepaid project without enough credits, a keyed request, a
    top-up, the same request again: it runs and is charged once."""
    with billing_world(database_url) as world:
        project, key = world.project()
        world.top_up(project, 1)  # one micro-credit: prepaid, and too little for anything
        headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": "after-top-up"}
        async with httpx.AsyncClient(base_url=world.url, timeout=30, headers=headers) as client:
            refused = await client.post("/v1/chat/completions", json=chat_body(20))
            world.top_up(project, 100 * worst_case(20))
            retried = await client.post("/v1/chat/completions", json=chat_body(20))
            repeated = await client.post("/v1/chat/completions", json=chat_body(20))
        assert refused.status_code == 402
        assert retried.status_code == 200 and "idempotent-replayed" not in retried.headers
        assert repeated.headers["idempotent-replayed"] == "true"
        assert repeated.content == retried.content
        charges = await world.charges(project)
        assert [c.request_id for c in charges] == [retried.headers["x-oneflow-request-id"]]


async def test_a_stream_is_stored_whole_and_replayed_byte_for_byte(
    backend: Callable[..., Settings],
) -> None:
    with running(backend()) as (server, counter):
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            first = await post(client, "/v1/test/events", {"size": 20})
            second = await post(client, "/v1/test/events", {"size": 20})
    assert first.headers["content-type"].startswith("text/event-stream")
    assert first.content.endswith(b"data: [DONE]\n\n") and first.content.count(b"data:") == 21
    assert second.content == first.content
    assert second.headers["content-type"] == first.headers["content-type"]
    assert second.headers["idempotent-replayed"] == "true"
    assert counter.runs == 1


async def test_an_answer_too_large_to_keep_is_not_run_twice(
    backend: Callable[..., Settings],
) -> None:
    with running(backend(idempotency_max_response_bytes=200)) as (server, counter):
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            first = await post(client, "/v1/test/events", {"size": 50})
            second = await post(client, "/v1/test/events", {"size": 50})
    assert first.status_code == 200 and len(first.content) > 200
    assert second.status_code == 409
    assert second.json()["error"]["code"] == "idempotent_response_not_stored"
    assert counter.runs == 1


async def test_keys_expire(backend: Callable[..., Settings]) -> None:
    with running(backend(idempotency_ttl_seconds=1.0)) as (server, counter):
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            first = await post(client, "/test/count", {"text": "a", "work": 0})
            replay = await post(client, "/test/count", {"text": "a", "work": 0})
            await asyncio.sleep(1.1)
            after = await post(client, "/test/count", {"text": "a", "work": 0})
            # once expired, the key is free for another body too
            await asyncio.sleep(1.1)
            reused = await post(client, "/test/count", {"text": "b", "work": 0})
    assert replay.content == first.content
    assert "idempotent-replayed" not in after.headers and after.json()["run"] == 2
    assert reused.status_code == 200 and reused.json()["echo"] == "b"
    assert counter.runs == 3


async def test_requests_without_a_key_or_caller_pass_through(
    make_settings: Callable[..., Settings],
) -> None:
    with running(make_settings()) as (server, counter):
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            plain = [await post(client, "/test/count", {"work": 0}, key=None) for _ in range(2)]
            anonymous = [
                await client.post("/test/count", json={"work": 0}, headers={"Idempotency-Key": "k"})
                for _ in range(2)
            ]
            bad = await post(client, "/test/count", {}, key="spaces are not allowed")
            messages_bad = await post(client, "/v1/messages", {}, key="x" * 256)
    assert [r.json()["run"] for r in plain] == [1, 2]
    # no authenticated caller: no idempotency scope, the route decides (this one is open)
    assert [r.json()["run"] for r in anonymous] == [3, 4]
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "Idempotency-Key"
    assert messages_bad.status_code == 400 and messages_bad.json()["type"] == "error"  # dialect
    assert counter.runs == 4


def test_two_tenants_never_share_a_key() -> None:
    runs = itertools.count(1)

    async def handler(request: Request) -> Response:
        return JSONResponse({"run": next(runs), "tenant": request.headers["x-tenant"]})

    async def tenant_of(connection: HTTPConnection) -> str | None:
        return connection.headers.get("x-tenant")

    app = Starlette(routes=[Route("/do", handler, methods=["POST"])])
    wrapped = IdempotencyMiddleware(app, resolve_caller=tenant_of, store=MemoryIdempotencyStore())
    with live_server(wrapped) as server:
        headers = {"Idempotency-Key": "same-key"}
        a = httpx.post(f"{server.url}/do", json={}, headers={**headers, "x-tenant": "a"})
        b = httpx.post(f"{server.url}/do", json={}, headers={**headers, "x-tenant": "b"})
        a_again = httpx.post(f"{server.url}/do", json={}, headers={**headers, "x-tenant": "a"})
    assert a.json() == {"run": 1, "tenant": "a"}
    assert b.json() == {"run": 2, "tenant": "b"}
    assert a_again.json() == a.json() and a_again.headers["idempotent-replayed"] == "true"


async def test_a_keyed_request_authenticates_its_caller_once(
    make_settings: Callable[..., Settings],
) -> None:
    """The middleware finds the caller to scope the key; the endpoint uses the same one."""
    app = counting_app(make_settings(fake_providers="on"), Counter())
    with live_server(app) as server:
        identity = app.state.services.identity
        original = identity.authenticate
        seen: list[object] = []

        async def counting(credential: object) -> object:
            seen.append(credential)
            return await original(credential)

        identity.authenticate = counting
        body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            keyed = await post(client, "/v1/chat/completions", body, key="once")
            plain = await post(client, "/v1/chat/completions", body, key=None)
    assert (keyed.status_code, plain.status_code) == (200, 200)
    assert len(seen) == 2  # one per request, keyed or not
