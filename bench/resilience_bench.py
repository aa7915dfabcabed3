"""What routing and resilience add to a request (a benchmark, not a test).

    .venv/bin/python bench/resilience_bench.py [--requests 3000] [--redis redis://127.0.0.1:6379/0]

Reports, each as the median of 5 rounds:

- ``IntelligentRouter.route`` per strategy on the packaged catalog (µs per decision);
- one breaker pass (``acquire`` + ``release`` for a provider and a model) in process and, with
  ``--redis``, shared through Redis on the cached hot path (µs per call);
- ``ResilientHTTPClient.post`` against a local zero-latency aiohttp server, next to a bare
  pooled ``aiohttp.ClientSession`` posting the same body in the same run (the baseline), at one
  request at a time: µs per request for each and the difference.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable

import aiohttp
from aiohttp import web

from oneflow_ai import IntelligentRouter, PricingEngine, ResilientHTTPClient, RoutingStrategy
from oneflow_ai.resilience import CircuitBreakers, Outcome, RedisBreakerStore
from oneflow_ai.storage.redis import create_redis

ROUNDS = 5
BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Write a haiku about AI"}]}
ANSWER = b'{"id":"chatcmpl-1","object":"chat.completion","choices":[]}'


def median_us(samples: list[float]) -> float:
    return statistics.median(samples) * 1e6


def bench_router(n: int) -> None:
    router = IntelligentRouter(PricingEngine())
    print("IntelligentRouter.route (7 text candidates)")
    for strategy in RoutingStrategy:
        rounds = []
        for _ in range(ROUNDS):
            started = time.perf_counter()
            for i in range(n):
                router.route(input_tokens=1000 + i % 500, output_tokens=500, strategy=strategy)
            rounds.append((time.perf_counter() - started) / n)
        print(f"  {strategy.value:<18} {median_us(rounds):8.1f} µs")


async def bench_breakers(n: int, redis_url: str | None) -> None:
    print("CircuitBreakers acquire + release (provider and model)")
    targets: list[tuple[str, CircuitBreakers]] = [("in process", CircuitBreakers())]
    client = None
    if redis_url:
        client = create_redis(redis_url)
        store = RedisBreakerStore(client, prefix="oneflowbench:")
        targets.append(("redis, cached", CircuitBreakers(store)))
    for label, breakers in targets:
        rounds = []
        for _ in range(ROUNDS):
            started = time.perf_counter()
            for _ in range(n):
                permit = await breakers.acquire("openai", "gpt-4o")
                await breakers.release(permit, Outcome.SUCCESS)
            rounds.append((time.perf_counter() - started) / n)
        await breakers.aclose()
        print(f"  {label:<18} {median_us(rounds):8.1f} µs")
    if client is not None:
        keys = [k async for k in client.scan_iter(match="oneflowbench:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


async def timed(n: int, call: Callable[[], Awaitable[object]]) -> float:
    started = time.perf_counter()
    for _ in range(n):
        await call()
    return (time.perf_counter() - started) / n


async def bench_http(n: int) -> None:
    async def answer(_request: web.Request) -> web.Response:
        return web.Response(body=ANSWER, content_type="application/json")

    app = web.Application()
    app.router.add_post("/v1/chat/completions", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    headers = {"Authorization": "Bearer sk-bench"}

    import orjson

    payload = orjson.dumps(BODY)
    async with aiohttp.ClientSession() as session:

        async def bare() -> bytes:
            async with session.post(
                url, data=payload, headers={**headers, "Content-Type": "application/json"}
            ) as response:
                return await response.read()

        client = ResilientHTTPClient("openai")

        async def resilient() -> object:
            return await client.post(url, json=BODY, headers=headers, idempotency_key="req-1")

        await timed(200, bare)
        await timed(200, resilient)
        base, ours = [], []
        for _ in range(ROUNDS):
            base.append(await timed(n, bare))
            ours.append(await timed(n, resilient))
        await client.aclose()
    await runner.cleanup()
    b, o = median_us(base), median_us(ours)
    print("HTTP POST to a local zero-latency server, one at a time (server in the same process)")
    print(f"  bare aiohttp       {b:8.1f} µs")
    print(f"  ResilientHTTPClient {o:7.1f} µs  (+{o - b:.1f} µs)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--redis", default=None)
    args = parser.parse_args()
    bench_router(args.requests)
    asyncio.run(bench_breakers(args.requests, args.redis))
    asyncio.run(bench_http(args.requests // 3))


if __name__ == "__main__":
    main()
