"""SIGTERM to a real gateway process, as a rolling deploy sends it.

- For ``SHUTDOWN_DELAY_SECONDS`` after the signal, ``/ready`` answers 503 (``draining``) while
  new requests are still accepted and served; then new connections are refused. Streams under
  way end whole and are charged exactly what their last event announced; the process exits
  with nothing held.
- Streams longer than ``SHUTDOWN_GRACE_SECONDS`` end at the deadline with a well-formed error
  event in their caller's dialect (OpenAI's error chunk, Anthropic's ``event: error``), which
  announces the credits charged: exactly what the ledger charged for each.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path

import httpx
import orjson
from sqlalchemy.ext.asyncio import AsyncEngine

from oneflow_ai.domain.money import MICRO_CREDITS_PER_CREDIT
from oneflow_ai.storage.database import create_engine
from tests.support.gateway_load import (
    HANG_GUARD,
    StreamLoad,
    StreamRead,
    fake_process,
    gateway_env,
    new_prepaid_project,
)
from tests.support.gateway_process import GatewayProcess
from tests.support.ledger import assert_consistent

PROJECT = "graceful"
TOP_UP = 100_000
CLIENTS = 6


@asynccontextmanager
async def _gateway(
    database_url: str, tmp_path: Path, fake_options: tuple[str, ...], **settings: str
) -> AsyncIterator[tuple[GatewayProcess, str]]:
    """A gateway (and its fake providers) with a prepaid project; its API key."""
    with fake_process(tmp_path / "fakes.log", *fake_options) as fakes:
        env = gateway_env(database_url, fakes, **settings)
        gateway = await asyncio.to_thread(GatewayProcess, env, tmp_path / "gateway.log")
        try:
            key = await asyncio.to_thread(new_prepaid_project, gateway.url, PROJECT, str(TOP_UP))
            yield gateway, key
        finally:
            gateway.stop()


async def _assert_nothing_held(engine: AsyncEngine) -> dict[str, int]:
    snap = (await assert_consistent(engine, [PROJECT]))[PROJECT]
    assert snap.reservations == 0 and snap.reserved == 0, snap
    assert snap.balance == TOP_UP * MICRO_CREDITS_PER_CREDIT - sum(snap.charges.values())
    return snap.charges


async def test_sigterm_drains_then_stops_accepting_and_streams_end_whole(
    database_url: str, tmp_path: Path
) -> None:
    engine = create_engine(database_url, pool_size=2)
    async with _gateway(
        database_url,
        tmp_path,
        ("--chunk-delay-ms", "100", "--reply-words", "24"),  # 2.4 s per stream
        SHUTDOWN_DELAY_SECONDS="3",
        SHUTDOWN_GRACE_SECONDS="20",
    ) as (gateway, key):
        load = StreamLoad(gateway.url, key, "drain", CLIENTS)
        signalled: list[bool] = []

        def signal_when_all_stream(load: StreamLoad) -> bool:
            if len(load.mid_stream()) < CLIENTS:
                return False
            gateway.process.send_signal(signal.SIGTERM)
            signalled.append(True)
            return True

        running = asyncio.create_task(load.run(until=signal_when_all_stream))
        while not signalled:
            await asyncio.sleep(0.005)
        async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as client:
            ready = await client.get("/ready")
            # Still accepted and served while the load balancers catch up.
            during = StreamLoad(gateway.url, key, "during-drain", 1)
            await during.run(until=lambda load: bool(load.reads))
        await running
        assert ready.status_code == 503 and ready.json()["status"] == "draining", ready.text
        assert [read.complete for read in during.reads] == [True], during.reads
        # After the delay the listening socket is closed: new connections are refused.
        await asyncio.sleep(3.5)
        refused = StreamLoad(gateway.url, key, "after-drain", 1)
        await refused.run(until=lambda load: bool(load.reads))
        assert refused.reads[0].status == 0 and refused.reads[0].error, refused.reads
        exit_code = await asyncio.to_thread(gateway.process.wait, HANG_GUARD)
        assert exit_code == -signal.SIGTERM
    try:
        complete = [*load.reads, *during.reads]
        assert all(read.complete for read in complete), [r.request_id for r in complete]
        charges = await _assert_nothing_held(engine)
        assert set(charges) == {read.gateway_id for read in complete}
        for read in complete:
            assert read.credits is not None
            assert charges[read.gateway_id] == read.credits * MICRO_CREDITS_PER_CREDIT
    finally:
        await engine.dispose()


def _error_event(read: StreamRead) -> dict[str, object]:
    """The stream's last event, which must be an error in the caller's dialect."""
    lines = [line for line in read.body.splitlines() if line.strip()]
    assert lines, read
    if read.dialect == "anthropic":
        assert lines[-2] == b"event: error", lines[-3:]
    event: dict[str, object] = orjson.loads(lines[-1].removeprefix(b"data: "))
    error = event["error"]
    assert isinstance(error, dict)
    if read.dialect == "openai":
        assert error["code"] == "shutting_down", event
    else:
        assert event["type"] == "error" and error["type"] == "api_error", event
        assert "shutting down" in str(error["message"]), event
    return event


async def test_streams_still_open_at_the_deadline_end_with_an_error_event_and_are_charged(
    database_url: str, tmp_path: Path
) -> None:
    engine = create_engine(database_url, pool_size=2)
    async with _gateway(
        database_url,
        tmp_path,
        ("--chunk-delay-ms", "500", "--reply-words", "24"),  # 12 s per stream
        SHUTDOWN_DELAY_SECONDS="0",
        SHUTDOWN_GRACE_SECONDS="2",
    ) as (gateway, key):
        load = StreamLoad(gateway.url, key, "deadline", CLIENTS)

        def signal_when_all_stream(load: StreamLoad) -> bool:
            if len(load.mid_stream()) < CLIENTS:
                return False
            gateway.process.send_signal(signal.SIGTERM)
            return True

        await load.run(until=signal_when_all_stream)
        assert await asyncio.to_thread(gateway.process.wait, HANG_GUARD) == -signal.SIGTERM
    try:
        assert len(load.reads) == CLIENTS and not load.complete()
        charges = await _assert_nothing_held(engine)
        assert set(charges) == {read.gateway_id for read in load.reads}
        for read in load.reads:
            assert read.status == 200 and read.error is None, read  # ended, not broken
            oneflow = _error_event(read)["oneflow"]
            assert isinstance(oneflow, dict)
            credits = Decimal(str(oneflow["credits"]))
            assert charges[read.gateway_id] == credits * MICRO_CREDITS_PER_CREDIT > 0
    finally:
        await engine.dispose()
