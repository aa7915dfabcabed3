"""The response cache: a cached chat answer's req/s against a live one, in the same run.

    python -m bench.cache_bench [--duration 6] [--rounds 2] [--concurrency 1,10]
                                [--redis-url redis://...] [--database-url URL]

Starts the fake providers and `oneflow serve` (one worker) as real processes, pinned like
`make bench` (bench/run.py: the gateway on one core, the fakes and `wrk` on the other), with a
prepaid project's key whose project opts into the cache (`CACHE_PROJECTS`). Then, for plain and
streamed chat at each concurrency, interleaved and repeated `--rounds` times (median shown):

    live     the same request with `Cache-Control: no-store`: the whole pipeline and the
             upstream call, nothing read from or written to the cache
    cached   the same request without it: every answer but the first is a hit

and prints req/s, p50/p99 and the ratio cached/live (no assertion: a report). The cache is in
process unless `--redis-url` is given (then shared by replicas, one Redis round trip a hit).

Then the semantic cache (the project's policy has `semantic`, the fake embeddings' markers set
the similarity), `--semantic N` sequential requests of each kind (p50 shown):

    live      a new question with `Cache-Control: no-store`: no cache, no embedding
    miss      a new question: embedded, answered live, stored and indexed
    hit       a new paraphrase of one stored question (similarity 0.99): embedded, answered
              from the cache
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.procs import (
    BIN,
    SERVER_CORE,
    Server,
    measure,
    pinned,
    processes,
    serve_on_port_0,
    wait_http,
)
from bench.procs import LOAD_CORE as FAKES_CORE
from bench.report import Cell
from bench.targets import gateway_env, project_key

MODEL = "gpt-4o"
PROMPT = "Write one sentence about the sea."


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", default="1,10")
    parser.add_argument("--redis-url", default=None)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--semantic", type=int, default=50)
    args = parser.parse_args()
    policy = {"semantic": {"model": "text-embedding-3-small", "threshold": 0.95}}
    args.env = [f"CACHE_PROJECTS={json.dumps({'bench': policy})}"]
    args.workers = 1
    if args.redis_url:
        args.env.append(f"REDIS_URL={args.redis_url}")
        args.env.append(f"REDIS_KEY_PREFIX=oneflow-bench-{secrets.token_hex(4)}:")
    levels = [int(level) for level in args.concurrency.split(",")]
    with tempfile.TemporaryDirectory(prefix="oneflow-cache-bench-") as folder, processes() as start:
        workdir = Path(folder)
        fakes_argv = [str(BIN / "oneflow"), "fake-providers"]
        _, fake_port = serve_on_port_0(start, pinned(FAKES_CORE, fakes_argv), workdir / "fakes.log")
        fake = f"http://127.0.0.1:{fake_port}"
        wait_http(f"{fake}/_fake/calls")
        database = args.database_url or f"sqlite+aiosqlite:///{workdir / 'oneflow.db'}"
        env = gateway_env(fake, {"DATABASE_URL": database}, args.env)
        env["LOG_REQUESTS"] = "false"
        key = project_key(env, workdir)
        serve = [str(BIN / "oneflow"), "serve", "--no-migrate"]
        process, gw_port = serve_on_port_0(
            start, pinned(SERVER_CORE, serve), workdir / "gateway.log", env=env, cwd=workdir
        )
        gw = f"http://127.0.0.1:{gw_port}"
        wait_http(f"{gw}/health")
        server = Server("gateway", process, f"{gw}/v1/chat/completions", {})
        auth = {"Authorization": f"Bearer {key}"}
        chat = {"model": MODEL, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 64}
        bodies = {
            "chat": chat,
            "chat_stream": {**chat, "stream": True, "stream_options": {"include_usage": True}},
        }
        for body in bodies.values():  # warm the cache: the cached runs are all hits
            warm = httpx.post(server.chat_url, json=body, headers=auth, timeout=30)
            assert warm.status_code == 200, warm.text
        variants = {"live": {**auth, "Cache-Control": "no-store"}, "cached": auth}
        samples: dict[tuple[str, str, int], list[Cell]] = {}
        for _ in range(args.rounds):
            for scenario, body in bodies.items():
                for level in levels:
                    for name, headers in variants.items():
                        variant = Server(name, server.process, server.chat_url, headers)
                        cell = measure(variant, scenario, body, level, args.duration, workdir)
                        samples.setdefault((scenario, name, level), []).append(cell)
        hits = httpx.get(f"{gw}/metrics", timeout=10).text
        report(samples, levels, bodies, hits)
        if args.semantic > 0:
            semantic_latency(server.chat_url, auth, args.semantic)
    return 0


def semantic_latency(url: str, auth: dict[str, str], count: int) -> None:
    """p50 of `count` sequential requests of each kind (see the module documentation)."""

    client = httpx.Client(timeout=30)  # one connection, kept alive

    def timed(text: str, headers: dict[str, str]) -> tuple[float, str]:
        body = {"model": MODEL, "messages": [{"role": "user", "content": text}], "max_tokens": 64}
        started = time.perf_counter()
        response = client.post(url, json=body, headers=headers)
        assert response.status_code == 200, response.text
        return (time.perf_counter() - started) * 1000, response.headers.get("x-oneflow-cache", "")

    timed("Tell me about the sea. {{near:sea}}", auth)  # the question the hits paraphrase
    no_store = {**auth, "Cache-Control": "no-store"}
    kinds = {
        "live": [timed(f"Question {i}", no_store) for i in range(count)],
        "miss": [timed(f"Other {i} {{{{near:topic{i}}}}}", auth) for i in range(count)],
        "hit": [timed(f"Sea, {i} ways {{{{near:sea:0.99}}}}", auth) for i in range(count)],
    }
    client.close()
    print(f"semantic cache, {count} sequential requests of each kind: p50 ms (results)")
    for name, timings in kinds.items():
        results = sorted({result for _, result in timings})
        p50 = statistics.median(ms for ms, _ in timings)
        print(f"{name:<6} {p50:>8.2f} ms  {','.join(results)}")


def report(
    samples: dict[tuple[str, str, int], list[Cell]],
    levels: list[int],
    bodies: dict[str, object],
    metrics: str,
) -> None:
    columns = ("live req/s", "cached req/s", "ratio", "live p50", "cached p50", "live p99")
    print(
        f"{'scenario':<12} {'c':>3} " + " ".join(f"{c:>11}" for c in columns), "cached p99 errors"
    )
    for scenario in bodies:
        for level in levels:
            live, cached = samples[(scenario, "live", level)], samples[(scenario, "cached", level)]

            def med(cells: list[Cell], name: str) -> float:
                return float(statistics.median(getattr(cell, name) for cell in cells))

            errors = sum(c.errors + c.non_2xx for c in (*live, *cached))
            live_rps, cached_rps = med(live, "rps"), med(cached, "rps")
            ratio = cached_rps / live_rps if live_rps else float("nan")
            print(
                f"{scenario:<12} {level:>3} {live_rps:>11.1f} {cached_rps:>11.1f} {ratio:>11.2f} "
                f"{med(live, 'p50_ms'):>9.2f}ms {med(cached, 'p50_ms'):>9.2f}ms "
                f"{med(live, 'p99_ms'):>9.2f}ms {med(cached, 'p99_ms'):>8.2f}ms {errors:>6}"
            )
    for line in metrics.splitlines():
        if line.startswith("oneflow_cache_requests_total{"):
            print(line)


if __name__ == "__main__":
    sys.exit(main())
