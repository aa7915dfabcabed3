"""Stream checkpoints: what each streamed answer has delivered, written every interval.

A stream that is running is *tracked* with a probe that tells what its caller has received so
far (OneFlow's count of the prompt and of the text delivered, priced on the answering model).
Every ``interval`` seconds the progress of every tracked stream that moved since its last
checkpoint is written in **one** group-committed command, on the stream's reservation row (a
postpaid stream, which holds nothing, gets a row at its first checkpoint). A thousand streams
cost one transaction per interval, not a thousand.

When the process dies, the rows stay behind with their owner: whoever reconciles them (the
same instance restarted, another replica after the owner timeout, or ``oneflow ledger
release``) charges each one what it had delivered at its last checkpoint, flagged estimated.
A stream that ends normally is untracked before its settlement is queued, so no checkpoint
can follow the settlement that deletes its row.

A stream's first checkpoint is written as soon as its upstream call starts, priced on the
model tried first (the streams that start in the same turn of the event loop share one command,
and the group commit shares its transaction), so that it commits while the provider prepares
its first event rather than after it. The stream sends nothing to its caller before it is
committed: ``track`` is called again when the stream opens and returns the future to wait for,
the first checkpoint's when the model answering is the one it was priced on, else that of a new
one priced on the model answering (a fallback). A stream whose caller received anything is
charged at least its prompt, even one killed in its first interval. (One killed between that
commit and its first byte is charged its prompt too: the provider was called.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

import structlog

from oneflow_ai.billing.cost import Cost
from oneflow_ai.billing.reservation import Reservation
from oneflow_ai.domain.usage import Usage
from oneflow_ai.storage.ledger_commands import CheckpointCommand, LedgerResult, StreamProgress
from oneflow_ai.tasks import stop

__all__ = ["Checkpoints", "Delivered", "PricedProbe", "Probe"]

log = structlog.get_logger("oneflow.billing.checkpoints")


class Delivered(NamedTuple):
    """What a stream's caller has received so far, its price, and the provider answering."""

    usage: Usage
    cost: Cost
    provider: str


#: What a stream has delivered so far; None when it cannot be told (yet).
Probe = Callable[[], Delivered | None]


@dataclass(frozen=True, slots=True)
class PricedProbe:
    """A probe (``measure``) that also tells the model it prices on (``model()``, a catalog
    id; None when it cannot be told) without measuring: a stream tracked again as it opens
    keeps its first checkpoint at the cost of that question alone."""

    measure: Probe
    model: Callable[[], str | None]

    def __call__(self) -> Delivered | None:
        return self.measure()


@dataclass(slots=True, eq=False)
class _Tracked:
    reservation: Reservation
    probe: Probe
    written: tuple[int, int, str] | None = None  # tokens and model of the last checkpoint
    queued: str | None = None  # the model the first checkpoint was priced on, once queued
    opened: asyncio.Future[None] | None = None  # done once the first checkpoint is decided


class Checkpoints:
    """Tracks running streams and writes their progress every ``interval`` seconds."""

    def __init__(
        self,
        submit: Callable[[CheckpointCommand], asyncio.Future[LedgerResult]],
        *,
        owner: str,
        interval: float,
        reservation_ttl: float,
        clock: Callable[[], datetime],
    ) -> None:
        self._submit = submit
        self._owner = owner
        self.interval = interval
        self._ttl = timedelta(seconds=reservation_ttl)
        self._clock = clock
        self._tracked: dict[str, _Tracked] = {}
        self._new: list[_Tracked] = []  # started since the last turn of the loop
        self._task: asyncio.Task[None] | None = None
        self.written = 0  # progress rows committed so far (for tests and metrics)

    @property
    def enabled(self) -> bool:
        return self.interval > 0

    @property
    def tracked(self) -> int:
        return len(self._tracked)

    def track(self, reservation: Reservation, probe: Probe) -> asyncio.Future[None] | None:
        """Track a stream that started; the future is done once its first checkpoint is
        committed (or could not be), None if nothing is written.

        Tracking a stream again (when it opens, with the probe of what it delivers) keeps its
        first checkpoint when that one is still to be written or was priced on the model the
        new probe names; otherwise it writes a new first checkpoint."""
        if not (self.enabled and reservation.active):
            return None
        tracked = self._tracked.get(reservation.id)
        if tracked is not None and tracked.opened is not None:
            tracked.probe = probe
            if tracked in self._new or _priced_on(tracked.queued, probe):
                return tracked.opened
        else:
            tracked = self._tracked[reservation.id] = _Tracked(reservation, probe)
        loop = asyncio.get_running_loop()
        tracked.opened = loop.create_future()
        if not self._new:
            loop.call_soon(self._flush_new)
        self._new.append(tracked)
        return tracked.opened

    def _flush_new(self) -> None:
        """The first checkpoint of the streams that just started (still tracked)."""
        new, self._new = self._new, []
        written: asyncio.Future[LedgerResult] | None = None
        try:
            written = self._write([t for t in new if self._tracked.get(t.reservation.id) is t])
        except Exception as exc:  # the next round writes them
            log.error("checkpoint_failed", error=f"{type(exc).__name__}: {exc}")

        opened = [tracked.opened for tracked in new]  # a stream tracked again gets a new one

        def decided(_: object = None) -> None:
            for future in opened:
                if future is not None and not future.done():
                    future.set_result(None)

        if written is None:
            decided()
        else:
            written.add_done_callback(decided)

    def untrack(self, reservation: Reservation) -> None:
        self._tracked.pop(reservation.id, None)

    def start(self) -> None:
        if self.enabled and self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="ledger-checkpoints"
            )

    async def stop(self) -> None:
        await stop(self._task)
        self._task = None

    def abandon(self) -> None:
        """Stop at once (what ``kill -9`` does; for tests)."""
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                self.flush()
            except Exception as exc:  # never let one bad probe stop the checkpoints
                log.error("checkpoint_failed", error=f"{type(exc).__name__}: {exc}")

    def flush(self) -> asyncio.Future[LedgerResult] | None:
        """Queue one command with the progress of every stream that moved; None if none did."""
        return self._write(list(self._tracked.values()))

    def _write(self, streams: list[_Tracked]) -> asyncio.Future[LedgerResult] | None:
        now = self._clock()
        rows: list[StreamProgress] = []
        written: list[tuple[_Tracked, tuple[int, int, str]]] = []
        for tracked in streams:
            measured = tracked.probe()
            if measured is None:
                continue
            usage = measured.usage
            mark = (usage.input_tokens, usage.output_tokens, measured.cost.model)
            if mark == tracked.written:
                continue
            rows.append(_progress(tracked.reservation, measured, self._owner, now, self._ttl))
            written.append((tracked, mark))
        if not rows:
            return None
        try:
            future = self._submit(CheckpointCommand(tuple(rows)))
        except Exception as exc:  # the writer is closed or overloaded: the next round retries
            log.warning("checkpoint_not_queued", error=f"{type(exc).__name__}: {exc}")
            return None
        for tracked, mark in written:
            tracked.reservation.checkpointed = True
            tracked.queued = mark[2]

        def committed(done: asyncio.Future[LedgerResult]) -> None:
            if done.cancelled() or done.exception() is not None:
                return  # the database is away: the next round writes the latest progress
            self.written += len(rows)
            for tracked, mark in written:
                tracked.written = mark

        future.add_done_callback(committed)
        return future


def _priced_on(model: str | None, probe: Probe) -> bool:
    """Whether ``probe`` prices what it measures on ``model``."""
    if model is None:
        return False
    if isinstance(probe, PricedProbe):
        return probe.model() == model
    measured = probe()
    return measured is not None and measured.cost.model == model


def _progress(
    reservation: Reservation, delivered: Delivered, owner: str, now: datetime, ttl: timedelta
) -> StreamProgress:
    usage, cost = delivered.usage, delivered.cost
    return StreamProgress(
        reservation_id=reservation.id,
        request_id=reservation.request_id,
        project_id=reservation.project_id,
        user_id=reservation.user_id,
        key_id=reservation.key_id,
        model=cost.model,
        provider=delivered.provider,
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        micro_credits=cost.micro_credits,
        price_table_version=cost.price_table_version,
        owner=owner,
        created_at=reservation.created_at,
        expires_at=now + ttl,
        at=now,
    )
