"""The faults a local cluster goes through under load, one after another, each recorded with
when it began and when everything was back (seconds on the load's clock):

1. a rolling update: each replica in turn gets SIGTERM, exits, and is started again;
2. one replica is killed with SIGKILL and started again a few seconds later;
3. PostgreSQL is stopped (`pg_ctl stop -m fast`: sessions ended) and started again;
4. Redis is stopped (SIGTERM) and started again;
5. a hard budget is set on a project while it is under load (`on_budget`, given by the
   caller, sets it and says what it set).

Between faults the load runs undisturbed for `gap` seconds; after the last, `tail` seconds.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from tests.support.cluster import Cluster, Replica
from tests.support.cluster_load import SteadyLoad

__all__ = ["Fault", "Timeline", "run_faults"]


@dataclass(frozen=True)
class Timeline:
    warmup: float = 4.0
    gap: float = 2.0
    rolling_update: bool = True
    kill: bool = True
    #: Seconds a killed replica stays down before it is started again.
    killed_for: float = 3.0
    #: The kill waits (up to 10 s) for this many streams under way on the replica.
    kill_mid_streams: int = 2
    postgres_down: float = 20.0
    redis_down: float = 10.0
    budget: bool = True
    tail: float = 5.0
    #: After an outage, how long the gateway may still refuse (503) while it recovers.
    recovery: float = 5.0


@dataclass
class Fault:
    kind: str  # rolling, kill, postgres, redis, budget
    name: str
    start: float
    end: float = 0.0
    #: The replica it hit (host:port, as the load balancer names it).
    target: str = ""
    details: dict[str, object] = field(default_factory=dict)

    def covers(self, moment: float, after: float = 0.0) -> bool:
        """Whether `moment` falls within the fault (or `after` seconds past its end)."""
        return self.start <= moment <= self.end + after


async def run_faults(
    cluster: Cluster,
    load: SteadyLoad,
    timeline: Timeline,
    on_budget: Callable[[], Awaitable[dict[str, object]]] | None = None,
) -> list[Fault]:
    """Run the timeline against `cluster` while `load` runs; tell the load when to stop."""
    faults: list[Fault] = []
    await asyncio.sleep(timeline.warmup)
    if timeline.rolling_update:
        for replica in cluster.replicas:
            fault = Fault("rolling", f"rolling update {replica.name}", 0, target=replica.address)
            await _signal(fault, replica, signal.SIGTERM, load)
            await asyncio.to_thread(replica.start)
            faults.append(_ended(fault, load))
        await asyncio.sleep(timeline.gap)
    if timeline.kill:
        replica = cluster.replicas[len(cluster.replicas) // 2]
        streams = await _streams_on(load, replica.address, timeline.kill_mid_streams)
        fault = Fault("kill", f"kill -9 {replica.name}", 0, target=replica.address)
        fault.details["mid-stream"] = streams
        await _signal(fault, replica, signal.SIGKILL, load)
        await asyncio.sleep(timeline.killed_for)
        await asyncio.to_thread(replica.start)
        faults.append(_ended(fault, load))
        await asyncio.sleep(timeline.gap)
    for kind, down, server in (
        ("postgres", timeline.postgres_down, cluster.postgres),
        ("redis", timeline.redis_down, cluster.redis),
    ):
        if down <= 0:
            continue
        fault = Fault(kind, f"{'PostgreSQL' if kind == 'postgres' else 'Redis'} down {down:g} s", 0)
        fault.start = load.elapsed()
        await asyncio.to_thread(server.stop)
        await asyncio.sleep(down)
        await asyncio.to_thread(server.start)
        faults.append(_ended(fault, load))
        await asyncio.sleep(timeline.gap)
    if timeline.budget and on_budget is not None:
        fault = Fault("budget", "hard budget set under load", load.elapsed())
        fault.details = await on_budget()
        faults.append(_ended(fault, load))
    load.finish_in(timeline.tail)
    return faults


async def _signal(fault: Fault, replica: Replica, how: signal.Signals, load: SteadyLoad) -> None:
    """Send `how` and wait for the exit. The fault begins the moment before the signal goes
    (taken on the thread that sends it, not when the event loop gets round to it); `gone` is
    when the process had exited: on a busy machine a killed process may still answer for a
    while in between."""

    def send() -> tuple[float, int, float]:
        at = load.elapsed()
        code = replica.signal(how)
        return at, code, load.elapsed()

    fault.start, fault.details["exit"], fault.details["gone"] = await asyncio.to_thread(send)


async def _streams_on(load: SteadyLoad, address: str, wanted: int) -> int:
    """Wait (a few seconds at most) until `wanted` streams are under way through the replica
    at `address`; how many are."""
    deadline = load.elapsed() + 10
    while (streams := load.streaming_on(address)) < wanted and load.elapsed() < deadline:
        await asyncio.sleep(0.01)
    return streams


def _ended(fault: Fault, load: SteadyLoad) -> Fault:
    fault.end = load.elapsed()
    return fault
