"""CPU the gateway's own code spends per request, without the network.

Calls the ASGI application directly (no sockets, no uvicorn) with an upstream client that
answers from memory, and reports CPU microseconds per non-streamed chat completion, for the
whole app and for a bare ASGI app doing the same JSON round trip (the floor). With `--stream`
the request asks for a stream with usage (`stream_options.include_usage`, as `make bench`
does) and the upstream answers with OpenAI's server-sent events, one event per read: a role
chunk, 20 content deltas, the finish chunk, the usage chunk (the stream of
`bench/stream_encode_bench.py`) and `data: [DONE]`; the tool then reports CPU microseconds
per streamed completion, and the floor is a bare ASGI app sending the same events, one body
message each. The pipeline is the one `make bench` drives: a prepaid project's key with
request and token limits (never refusing), the ledger on SQLite, metrics, JSON access logs
(sent to /dev/null). Useful on a busy machine where wall-clock benchmarks are noisy: process
CPU time is not, and it is what to compare before and after a change to the hot path. With
`--profile` it prints the top functions by cumulative time (cProfile); `--master` uses the
(unlimited) master key instead.

With `--concurrency N` N connections send their requests at once, so that the ledger's
settlement batches gather several requests as they do under load (default 1: one at a time).
On PostgreSQL it also counts the round trips to the database per request (each statement
asyncpg executes or prepares, and each ``BEGIN``, ``COMMIT`` or ``ROLLBACK``).

Usage: `python -m bench.gateway_cpu [--requests 5000] [--concurrency 1] [--stream]
[--profile FILE.prof] [--master] [--database-url URL] [--redis-url URL]`.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import orjson

from bench.stream_encode_bench import wire_stream
from oneflow_ai.app import create_app
from oneflow_ai.providers.upstream import UpstreamRequest, UpstreamResponse, UpstreamStream
from oneflow_ai.settings import ProviderSettings, Settings

KEY = "sk-bench-master-key-0123456789"
REQUEST = orjson.dumps(
    {"model": "gpt-4o", "messages": [{"role": "user", "content": "Say hello to the benchmark"}]}
)
ANSWER = orjson.dumps(
    {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o-2024-08-06",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello, benchmark!", "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 4, "total_tokens": 16},
    }
)

STREAM_REQUEST = orjson.dumps(
    {**orjson.loads(REQUEST), "stream": True, "stream_options": {"include_usage": True}}
)


#: OpenAI's server-sent events for a 20-piece answer with usage, one `bytes` per event.
EVENTS = (*(b"data: " + event.data + b"\n\n" for event in wire_stream(20)), b"data: [DONE]\n\n")


class MemoryUpstream:
    """An UpstreamClient answering every request with the same chat completion, or with the
    same stream of events (one per read)."""

    def __init__(self, provider: str) -> None:
        self.provider = provider

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        return UpstreamResponse(200, {"content-type": "application/json"}, ANSWER)

    @asynccontextmanager
    async def stream(self, request: UpstreamRequest) -> AsyncIterator[UpstreamStream]:
        events = iter(EVENTS)

        async def read_chunk() -> bytes:
            return next(events, b"")

        yield UpstreamStream(200, {"content-type": "text/event-stream"}, read_chunk)

    async def aclose(self) -> None:
        return None


def _memory_client(settings: ProviderSettings, headers: Mapping[str, str]) -> MemoryUpstream:
    return MemoryUpstream(settings.name)


Send = Callable[[dict[str, Any]], Awaitable[None]]
App = Callable[[dict[str, Any], Any, Send], Awaitable[None]]


HIGH = "1000000000"


def _caller_key(database_url: str, workdir: str, master: bool) -> str:
    """A migrated database and, unless `master`, a prepaid project's member key with high
    request and token limits (see bench/run.py)."""
    oneflow = str(Path(sys.executable).with_name("oneflow"))
    env = {**os.environ, "DATABASE_URL": database_url, "ONEFLOW_MASTER_KEY": KEY}
    limits = ["--rpm", HIGH, "--rph", HIGH, "--tpm", HIGH]
    setup = [["db", "upgrade"]]
    if not master:
        setup += [
            ["projects", "create", "bench", "--id", "bench", *limits],
            ["credits", "topup", "bench", HIGH],
        ]
    for argv in setup:
        subprocess.run([oneflow, *argv], env=env, cwd=workdir, check=True, capture_output=True)
    if master:
        return KEY
    out = subprocess.run(
        [oneflow, "keys", "create", "--project", "bench", "--name", "bench", "--json"],
        env=env,
        cwd=workdir,
        check=True,
        capture_output=True,
        text=True,
    )
    return str(orjson.loads(out.stdout)["key"])


def _scope(key: str, body: bytes) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/chat/completions",
        "raw_path": b"/v1/chat/completions",
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"bench"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"authorization", f"Bearer {key}".encode()),
        ],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
    }


async def _client(app: App, scope: dict[str, Any], body: bytes, requests: int) -> None:
    """One connection's requests, one after another."""
    status = 0
    ended = False
    read = False

    async def receive() -> dict[str, Any]:
        nonlocal read
        if read:  # as uvicorn does after the body: wait for the client to go away
            await asyncio.get_running_loop().create_future()
        read = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status, ended
        if message["type"] == "http.response.start":
            status, ended = message["status"], False
        elif message["type"] == "http.response.body":
            ended = not message.get("more_body", False)

    for _ in range(requests):
        read = False
        await app(dict(scope, state={}), receive, send)
        assert status == 200 and ended, status


async def _drive(
    app: App, requests: int, key: str = KEY, body: bytes = REQUEST, concurrency: int = 1
) -> float:
    """CPU per request of ``requests`` requests from ``concurrency`` connections at once (as
    under load, where the ledger's batches gather several requests)."""
    scope = _scope(key, body)
    each = max(1, requests // concurrency)
    requests = each * concurrency
    started, started_main, wall = time.process_time(), time.thread_time(), time.perf_counter()
    times = os.times()
    await asyncio.gather(*(_client(app, scope, body, each) for _ in range(concurrency)))
    main_thread = (time.thread_time() - started_main) / requests * 1e6
    wall = (time.perf_counter() - wall) / requests * 1e6
    ended = os.times()
    user = (ended.user - times.user) / requests * 1e6
    system = (ended.system - times.system) / requests * 1e6
    print(f"  event loop thread {main_thread:8.1f} us, wall {wall:8.1f} us per request")
    # The kernel's share: on loopback a database's or Redis's round trip costs mostly that.
    print(f"  user {user:8.1f} us, system {system:8.1f} us per request")
    return (time.process_time() - started) / requests * 1e6


async def _bare(scope: dict[str, Any], receive: Any, send: Send) -> None:
    body = (await receive())["body"]
    request = orjson.loads(body)
    answer = orjson.loads(ANSWER)
    answer["model"] = request["model"]
    payload = orjson.dumps(answer)
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(payload))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


async def _bare_stream(scope: dict[str, Any], receive: Any, send: Send) -> None:
    orjson.loads((await receive())["body"])
    headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    for event in EVENTS:
        await send({"type": "http.response.body", "body": event, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _measure(
    settings: Settings,
    key: str,
    body: bytes,
    bare_app: App,
    requests: int,
    profile: str | None,
    concurrency: int = 1,
) -> tuple[float, float]:
    """CPU per request of the bare app and of the gateway, in microseconds."""
    from oneflow_ai.gateway import services

    app = create_app(settings, configure_logs=True)
    start = services.Services.start

    async def start_in_memory(
        cls_settings: Settings, redactor: Any = None, telemetry: Any = None, **_: Any
    ) -> Any:
        return await start(cls_settings, redactor, telemetry, transport=_memory_client)

    services.Services.start = start_in_memory  # type: ignore[assignment]
    async with app.router.lifespan_context(app):
        await _drive(app, 500, key, body, concurrency)  # warm up
        bare = await _drive(bare_app, requests, body=body, concurrency=concurrency)
        profiler = cProfile.Profile()
        if profile:
            profiler.enable()
        with _round_trips() as round_trips:
            gateway = await _drive(app, requests, key, body, concurrency)
        if profile:
            profiler.disable()
            profiler.dump_stats(profile)
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(45)
    if settings.database_url.startswith("postgresql"):
        print(f"  PostgreSQL round trips per request: {len(round_trips) / requests:.2f}")
    return bare, gateway


@contextmanager
def _round_trips() -> Iterator[list[str]]:
    """The round trips asyncpg makes to PostgreSQL meanwhile (their first words): every
    statement a prepared statement or a connection executes (``BEGIN`` and ``COMMIT`` are the
    connection's ``execute``), and every statement prepared (``PREPARE``)."""
    from asyncpg.connection import Connection
    from asyncpg.prepared_stmt import PreparedStatement

    made: list[str] = []
    patched = [
        (PreparedStatement, "fetch", lambda self, *_: self.get_query()),
        (Connection, "execute", lambda _, query, *__: query),
        (Connection, "executemany", lambda _, query, *__: query),
        (Connection, "prepare", lambda *_: "PREPARE"),  # a statement not prepared before
    ]
    originals = [(owner, name, getattr(owner, name)) for owner, name, _ in patched]

    def counting(original: Any, query_of: Any) -> Any:
        async def count(self: Any, *args: Any, **kwargs: Any) -> Any:
            made.append(str(query_of(self, *args)).split(maxsplit=1)[0].rstrip(";"))
            return await original(self, *args, **kwargs)

        return count

    for (owner, name, query_of), (_, _, original) in zip(patched, originals, strict=True):
        setattr(owner, name, counting(original, query_of))
    try:
        yield made
    finally:
        for owner, name, original in originals:
            setattr(owner, name, original)


async def _main(
    requests: int,
    profile: str | None,
    master: bool,
    database_url: str,
    stream: bool,
    redis_url: str = "",
    concurrency: int = 1,
) -> None:
    body, bare_app = (STREAM_REQUEST, _bare_stream) if stream else (REQUEST, _bare)
    with tempfile.TemporaryDirectory() as tmp:
        database_url = database_url or f"sqlite+aiosqlite:///{tmp}/bench.db"
        key = _caller_key(database_url, tmp, master)
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            database_url=database_url,
            redis_url=redis_url or None,
            oneflow_master_key=KEY,
            openai_api_key="sk-memory",
            fake_providers="off",
            log_format="json",
            log_requests=True,
            enable_metrics=True,
            rate_limit_per_minute=int(HIGH),
            rate_limit_per_hour=int(HIGH),
            rate_limit_tokens_per_minute=int(HIGH),
        )
        stderr = os.dup(2)  # the access log goes to /dev/null, the report to the terminal
        os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
        try:
            bare, gateway = await _measure(
                settings, key, body, bare_app, requests, profile, concurrency
            )
        finally:
            os.dup2(stderr, 2)
    kind = "streamed" if stream else "non-streamed"
    print(
        f"CPU per {kind} chat completion, {requests} requests, {concurrency} at once, no network:"
    )
    print(f"  bare ASGI {'SSE' if stream else 'JSON round trip':15} {bare:8.1f} us")
    print(f"  OneFlow gateway            {gateway:8.1f} us")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--profile", metavar="FILE.prof", default=None)
    parser.add_argument("--master", action="store_true")
    parser.add_argument("--stream", action="store_true", help="streamed chat completions")
    parser.add_argument("--database-url", default="", help="an empty database (default SQLite)")
    parser.add_argument("--redis-url", default="", help="Redis for the shared state (default none)")
    parser.add_argument(
        "--concurrency", type=int, default=1, help="requests in flight at once (default 1)"
    )
    args = parser.parse_args()
    asyncio.run(
        _main(
            args.requests,
            args.profile,
            args.master,
            args.database_url,
            args.stream,
            args.redis_url,
            max(1, args.concurrency),
        )
    )


if __name__ == "__main__":
    main()
