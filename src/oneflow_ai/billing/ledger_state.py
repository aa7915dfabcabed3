"""What a replica knows of each project's funding and budgets, and how fresh it is.

The hot path decides from an in-process :class:`BudgetBook` (which projects are prepaid, which
budgets apply) so that a request of a project without limits costs no I/O. Keeping it true:

- A change (a top-up, an adjustment, a billing mode, budgets; through the API or the CLI) is
  announced as ``ledger:<project>`` on the invalidation bus that key revocations use
  (``auth/invalidation.py``). Every replica then forgets what it knew of that project and reads
  it from the database before it serves the project again; with Redis, the announcement
  returns only once every listening replica has done so.
- A project a replica has forgotten is read on its next request (one read, however many
  requests wait for it), never guessed: if the database cannot be read, the request is refused
  with 503.
- The whole book is reloaded every ``LEDGER_MAINTENANCE_INTERVAL_SECONDS``. That reload is only
  the bound for a lost message: a book older than ``LEDGER_STATE_MAX_AGE_SECONDS`` (counted from
  when its reload began) is not used; the next request reloads it first, and is refused with
  503 if the database cannot be read (fail closed). ``LEDGER_STATE_FAIL_OPEN=true`` serves it on
  the last state known instead.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

import structlog

from oneflow_ai.billing.budgets import BudgetBook, BudgetSpec
from oneflow_ai.errors import ServiceUnavailableError

__all__ = ["Announcer", "LedgerState", "ProjectFunding", "change_message"]

log = structlog.get_logger("oneflow.billing.ledger")

_KIND = "ledger"
_EVERYTHING = "*"

#: What one project's read gives: its budgets and whether it is prepaid.
ProjectFunding = tuple[tuple[BudgetSpec, ...], bool]


def change_message(project_id: str) -> str:
    """The message that tells every replica a project's funding or budgets changed."""
    return f"{_KIND}:{project_id}"


class Announcer(Protocol):
    """The invalidation bus as the ledger uses it (``auth.invalidation.InvalidationBus``)."""

    def subscribe(self, listener: Callable[[str], None]) -> None: ...

    async def publish(self, message: str) -> bool: ...


class LedgerState:
    """The book, which projects in it are forgotten, and until when it may be used."""

    def __init__(
        self,
        load_all: Callable[[], Awaitable[BudgetBook]],
        load_one: Callable[[str], Awaitable[ProjectFunding]],
        *,
        max_age: float,
        fail_open: bool = False,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.book = BudgetBook()
        self.max_age = max_age
        self.fail_open = fail_open
        self._load_all = load_all
        self._load_one = load_one
        self._monotonic = monotonic
        self._fresh_until = -math.inf
        # Every message moves the epoch on; a load keeps what it read only if no message
        # about what it read came while it ran.
        self._epoch = 0
        self._messages: dict[str, int] = {}  # project -> epoch of its last message
        self._forgotten: set[str] = set()  # projects to read before they are served again
        self._everything_at = 0  # epoch of the last "*"
        self._reloading: asyncio.Task[BudgetBook] | None = None
        self._reading: dict[str, asyncio.Task[BudgetBook]] = {}

    @property
    def fresh(self) -> bool:
        return self._monotonic() < self._fresh_until

    def usable(self, project_id: str) -> BudgetBook | None:
        """The book if it may decide for ``project_id`` now (no I/O), else None."""
        if project_id in self._forgotten or self._monotonic() >= self._fresh_until:
            return None
        return self.book

    async def for_project(self, project_id: str) -> BudgetBook:
        """A book that may decide for ``project_id``: read first if need be (503 if the
        database cannot be read, unless failing open)."""
        book = self.usable(project_id)
        if book is not None:
            return book
        try:
            if not self.fresh:
                return await self.reload()
            return await self._read(project_id)
        except Exception as exc:
            if not self.fail_open:
                log.warning("ledger_state_unavailable", project_id=project_id, error=str(exc))
                raise ServiceUnavailableError(
                    "Billing is unavailable: this project's credits and budgets cannot be read",
                    retry_after=1,
                ) from exc
            log.warning("ledger_state_stale_served", project_id=project_id, error=str(exc))
            return self.book

    def on_message(self, message: str) -> None:
        """An invalidation-bus listener: ``ledger:<project>`` and ``*``."""
        kind, _, project_id = message.partition(":")
        if message == _EVERYTHING:
            self._epoch += 1
            self._everything_at = self._epoch
            self._fresh_until = -math.inf
            self._reloading = None
            self._reading.clear()
        elif kind == _KIND and project_id:
            self._epoch += 1
            self._messages[project_id] = self._epoch
            self._forgotten.add(project_id)
            self._reading.pop(project_id, None)

    async def reload(self) -> BudgetBook:
        """Reload the whole book (shared by every caller while one reload runs)."""
        if self._reloading is None:
            self._reloading = _shared(self._reload())
        return await asyncio.shield(self._reloading)

    async def _read(self, project_id: str) -> BudgetBook:
        task = self._reading.get(project_id)
        if task is None:
            task = self._reading[project_id] = _shared(self._read_one(project_id))
        return await asyncio.shield(task)

    async def _reload(self) -> BudgetBook:
        try:
            epoch, started = self._epoch, self._monotonic()
            book = await self._load_all()
            self.book = book
            self._messages = {p: e for p, e in self._messages.items() if e > epoch}
            self._forgotten = set(self._messages)
            if self._everything_at <= epoch:  # no "*" since it began: messages may be trusted
                self._fresh_until = started + self.max_age
            return book
        finally:
            if self._reloading is asyncio.current_task():
                self._reloading = None

    async def _read_one(self, project_id: str) -> BudgetBook:
        try:
            epoch = self._epoch
            specs, prepaid = await self._load_one(project_id)
            book = self.book.with_project(project_id, specs, prepaid)
            if self._messages.get(project_id, 0) <= epoch:  # no newer message about it
                self.book = book
                self._forgotten.discard(project_id)
            return book
        finally:
            if self._reading.get(project_id) is asyncio.current_task():
                del self._reading[project_id]


def _shared(work: Awaitable[BudgetBook]) -> asyncio.Task[BudgetBook]:
    """A load every caller awaits (shielded: one caller giving up does not cancel it)."""
    task = asyncio.ensure_future(work)
    task.add_done_callback(_consume)
    return task


def _consume(task: asyncio.Task[BudgetBook]) -> None:
    """Mark a shared load's failure as seen (each waiter gets it; nobody may be waiting)."""
    if not task.cancelled():
        task.exception()
