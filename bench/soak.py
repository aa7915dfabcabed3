"""A soak: one gateway (`oneflow serve`, the full pipeline on PostgreSQL and Redis of its own,
a prepaid project's key) at half its measured maximum throughput for `--minutes` (30 by
default), sampling its resident memory and open file descriptors.

1. The maximum: a closed loop of `--concurrency` clients for `--probe-seconds` (after a short
   warm-up), the same mix as the soak: three plain chat requests to one streamed.
2. The soak: an open loop at half that rate (a request goes out on time whatever the previous
   ones do; at most `--max-in-flight` at once, beyond which a request is counted as not sent).
3. Every `--sample-seconds`: the gateway process's RSS (/proc/<pid>/status) and open file
   descriptors (/proc/<pid>/fd).

Reports per minute: requests, errors, p50 and p99 latency, RSS, descriptors; the slopes of RSS
(MiB per minute), descriptors (per minute) and p99 (ms per minute) by least squares over the
run after its first minute (start-up caches, pools filling); writes JSON to bench/results/.

    python -m bench.soak                 # 30 minutes
    python -m bench.soak --minutes 2     # a try

Uses tests/support/cluster.py for the servers (PostgreSQL's initdb/pg_ctl, redis-server and
HAProxy must be installed; the load goes to the replica directly, not through HAProxy).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import aiohttp
from tests.support.cluster import ClusterConfig, Replica, local_cluster
from tests.support.gateway_load import chat_body, new_prepaid_project

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


@dataclass
class Minute:
    minute: int
    requests: int = 0
    errors: int = 0
    not_sent: int = 0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    rss_mib: float = 0.0
    fds: int = 0
    sockets: int = 0
    client_sockets: int = 0
    cpu_ms_per_request: float = 0.0
    load1: float = 0.0
    latencies: list[float] = field(default_factory=list, repr=False)


@dataclass
class Sample:
    seconds: float
    rss_mib: float
    fds: int
    sockets: int
    client_sockets: int
    cpu_seconds: float
    load1: float


class Driver:
    """Sends the mix (plain, plain, plain, streamed) with one key; records each answer."""

    def __init__(self, session: aiohttp.ClientSession, url: str, key: str) -> None:
        self.session, self.url = session, url
        self.headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        self.sent = 0
        self.errors: dict[str, int] = {}

    async def one(self) -> float | None:
        """One request; its latency in ms, or None (an error, counted by kind)."""
        stream = self.sent % 4 == 3
        self.sent += 1
        started = time.perf_counter()
        try:
            async with self.session.post(
                f"{self.url}/v1/chat/completions",
                data=chat_body(stream=stream),
                headers=self.headers,
            ) as response:
                body = await response.read()
                if response.status != 200:
                    return self._error(f"HTTP {response.status}")
                if stream and b"[DONE]" not in body:
                    return self._error("stream cut")
        except (aiohttp.ClientError, TimeoutError) as exc:
            return self._error(type(exc).__name__)
        return (time.perf_counter() - started) * 1000

    def _error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1
        return None


def _local_ports() -> dict[str, int]:
    """Socket inode -> local TCP port, for every TCP socket of the machine."""
    ports: dict[str, int] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                ports[fields[9]] = int(fields[1].rsplit(":", 1)[1], 16)
    return ports


def process_sample(pid: int, since: float, port: int) -> Sample:
    """RSS, CPU time, descriptors of `pid`: all, sockets, and the sockets of its clients (on
    its listening `port`; the others go to the providers, the database and Redis)."""
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    rss_kib = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")
    links = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):  # closed between the listing and the look
            links.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
    inodes = [link[8:-1] for link in links if link.startswith("socket:[")]
    ports = _local_ports()
    return Sample(
        seconds=round(time.monotonic() - since, 1),
        rss_mib=round(rss_kib / 1024, 1),
        fds=len(links),
        sockets=len(inodes),
        client_sockets=sum(1 for inode in inodes if ports.get(inode) == port),
        cpu_seconds=cpu,
        load1=os.getloadavg()[0],
    )


async def measure_max(driver: Driver, concurrency: int, seconds: float) -> float:
    """Answers per second of a closed loop of `concurrency` clients (after 3 s of warm-up)."""

    async def loop(until: float, done: list[int]) -> None:
        while time.monotonic() < until:
            if await driver.one() is not None:
                done[0] += 1

    warm: list[int] = [0]
    await asyncio.gather(*(loop(time.monotonic() + 3, warm) for _ in range(concurrency)))
    done: list[int] = [0]
    started = time.monotonic()
    await asyncio.gather(*(loop(started + seconds, done) for _ in range(concurrency)))
    return done[0] / (time.monotonic() - started)


async def soak(
    driver: Driver, replica: Replica, rate: float, args: argparse.Namespace
) -> tuple[list[Minute], list[Sample]]:
    minutes = [Minute(m) for m in range(max(1, math.ceil(args.minutes)))]
    samples: list[Sample] = []
    started = time.monotonic()
    duration = args.minutes * 60
    in_flight: set[asyncio.Task[None]] = set()
    assert replica.pid is not None

    async def send(bucket: Minute) -> None:
        latency = await driver.one()
        bucket.requests += 1
        if latency is None:
            bucket.errors += 1
        else:
            bucket.latencies.append(latency)

    async def sampler() -> None:
        while time.monotonic() - started < duration:
            samples.append(process_sample(replica.pid or 0, started, replica.port))
            await asyncio.sleep(args.sample_seconds)

    sampling = asyncio.create_task(sampler())
    for n in range(int(duration * rate)):
        await asyncio.sleep(max(0.0, started + n / rate - time.monotonic()))
        bucket = minutes[min(len(minutes) - 1, int((time.monotonic() - started) // 60))]
        if len(in_flight) >= args.max_in_flight:
            bucket.not_sent += 1
            continue
        task = asyncio.create_task(send(bucket))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
    await asyncio.gather(*in_flight)
    await sampling
    _summarize(minutes, samples)
    return minutes, samples


def _summarize(minutes: list[Minute], samples: list[Sample]) -> None:
    for bucket in minutes:
        ordered = sorted(bucket.latencies)
        if ordered:
            bucket.p50_ms = round(statistics.median(ordered), 2)
            bucket.p99_ms = round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 2)
        mine = [s for s in samples if int(s.seconds // 60) == bucket.minute]
        if mine:
            last = mine[-1]
            bucket.rss_mib, bucket.fds, bucket.sockets = last.rss_mib, last.fds, last.sockets
            bucket.client_sockets, bucket.load1 = last.client_sockets, round(last.load1, 1)
            cpu = last.cpu_seconds - mine[0].cpu_seconds
            sampled = (last.seconds - mine[0].seconds) / 60 * bucket.requests
            bucket.cpu_ms_per_request = round(cpu * 1000 / sampled, 2) if sampled else 0.0
        bucket.latencies = []


def slope_per_minute(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (minutes, value) points; 0 with fewer than two."""
    if len(points) < 2:
        return 0.0
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    if spread == 0:
        return 0.0
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread


def report(
    rate_max: float, rate: float, minutes: list[Minute], samples: list[Sample], driver: Driver
) -> dict[str, object]:
    settled = [s for s in samples if s.seconds >= 60] or samples
    p99s = [(m.minute + 0.5, m.p99_ms) for m in minutes if m.minute >= 1 and m.p99_ms] or [
        (m.minute + 0.5, m.p99_ms) for m in minutes if m.p99_ms
    ]
    return {
        "max_rps": round(rate_max, 1),
        "soak_rps": round(rate, 1),
        "requests": sum(m.requests for m in minutes),
        "errors": sum(m.errors for m in minutes),
        "errors_by_kind": driver.errors,
        "not_sent": sum(m.not_sent for m in minutes),
        "rss_mib_first_last": [samples[0].rss_mib, samples[-1].rss_mib] if samples else [],
        "rss_slope_mib_per_min": round(
            slope_per_minute([(s.seconds / 60, s.rss_mib) for s in settled]), 3
        ),
        "fds_first_last": [samples[0].fds, samples[-1].fds] if samples else [],
        "fds_slope_per_min": round(slope_per_minute([(s.seconds / 60, s.fds) for s in settled]), 3),
        "p99_slope_ms_per_min": round(slope_per_minute(p99s), 3),
        "minutes": [asdict(m) for m in minutes],
        "samples": [asdict(s) for s in samples],
    }


def print_report(result: dict[str, object]) -> None:
    print(f"\nmaximum {result['max_rps']} req/s; soak at {result['soak_rps']} req/s")
    print(
        "| minute | requests | errors | not sent | p50 ms | p99 ms | CPU ms/request | RSS MiB "
        "| fds (sockets, of clients) | machine load |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for m in result["minutes"]:  # type: ignore[attr-defined]
        print(
            f"| {m['minute'] + 1} | {m['requests']} | {m['errors']} | {m['not_sent']} | "
            f"{m['p50_ms']} | {m['p99_ms']} | {m['cpu_ms_per_request']} | {m['rss_mib']} | "
            f"{m['fds']} ({m['sockets']}, {m['client_sockets']}) | {m['load1']} |"
        )
    print(
        f"\nrequests {result['requests']}, errors {result['errors']} {result['errors_by_kind']}, "
        f"not sent {result['not_sent']}\n"
        f"RSS {result['rss_mib_first_last']} MiB, slope {result['rss_slope_mib_per_min']} MiB/min; "
        f"open fds {result['fds_first_last']}, slope {result['fds_slope_per_min']}/min; "
        f"p99 slope {result['p99_slope_ms_per_min']} ms/min (after the first minute)"
    )


async def run(args: argparse.Namespace, url: str, key: str, replica: Replica) -> dict[str, object]:
    connector = aiohttp.TCPConnector(limit=args.max_in_flight)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        driver = Driver(session, url, key)
        rate_max = await measure_max(driver, args.concurrency, args.probe_seconds)
        driver.errors.clear()
        rate = args.rate or rate_max * args.fraction
        print(f"maximum {rate_max:.1f} req/s; soaking at {rate:.1f} req/s for {args.minutes:g} min")
        minutes, samples = await soak(driver, replica, rate, args)
        return report(rate_max, rate, minutes, samples, driver)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--fraction", type=float, default=0.5, help="of the maximum (0.5)")
    parser.add_argument("--rate", type=float, default=0, help="requests/s (instead of a fraction)")
    parser.add_argument("--concurrency", type=int, default=16, help="of the maximum's probe")
    parser.add_argument("--probe-seconds", type=float, default=15)
    parser.add_argument("--sample-seconds", type=float, default=10)
    parser.add_argument("--max-in-flight", type=int, default=256)
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args()
    env = dict(pair.split("=", 1) for pair in args.env)
    workdir = Path(tempfile.mkdtemp(prefix="oneflow-soak-"))
    print(f"logs: {workdir}")
    config = ClusterConfig(replicas=1, env={"LOG_LEVEL": "WARNING", **env})
    with local_cluster(workdir, config) as cluster:
        replica = cluster.replicas[0]
        key = new_prepaid_project(replica.url, "soak", "100000000")
        result = asyncio.run(run(args, replica.url, key, replica))
    print_report(result)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"soak-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"written {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
