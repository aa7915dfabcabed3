"""Administrative side of the ledger: top-ups, adjustments, billing mode, budgets, reading.

Each write is its own transaction (durable when the call returns); it needs no running
:class:`~oneflow_ai.billing.ledger.Ledger`, so the CLI uses this directly. Once a write has
committed, ``announce(project_id)`` tells the running replicas (see ``ledger_state.py``): the
ledger passes its own, which publishes on the invalidation bus; the CLI passes one that
publishes through Redis, or waits until running gateways have reloaded without it.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from oneflow_ai.billing.budgets import (
    BudgetMode,
    BudgetSpec,
    Metric,
    Period,
    period_end,
    period_start,
)
from oneflow_ai.domain.money import micro_credits_to_credits, micro_credits_to_usd
from oneflow_ai.errors import BadRequestError, NotFoundError
from oneflow_ai.storage import ledger_store
from oneflow_ai.storage.ledger_batch import post_entry
from oneflow_ai.storage.ledger_commands import AccountRow, EntryRow
from oneflow_ai.storage.ledger_store import BudgetRow, EntryView
from oneflow_ai.storage.tables import utcnow

__all__ = ["AccountView", "BudgetStatus", "LedgerAdmin", "spec_from_row"]

_MAX_AMOUNT = 10**18  # fits a BIGINT with room to add


@dataclass(frozen=True, slots=True)
class AccountView:
    """A project's money: ``available = balance - reserved`` (what a prepaid project can spend)."""

    project_id: str
    mode: str
    balance: int
    reserved: int

    @property
    def available(self) -> int:
        return self.balance - self.reserved

    def as_dict(self) -> dict[str, object]:
        return {
            "project_id": self.project_id,
            "mode": self.mode,
            "balance": _money(self.balance),
            "reserved": _money(self.reserved),
            "available": _money(self.available),
        }


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    """A budget with its usage in the current period."""

    spec: BudgetSpec
    period_start: date
    used: int
    reserved: int

    @property
    def resets_at(self) -> datetime:
        return period_end(self.spec.period, self.period_start)

    @property
    def remaining(self) -> int:
        return max(0, self.spec.limit - self.used - self.reserved)

    def as_dict(self) -> dict[str, object]:
        spec = self.spec
        amount = _money if spec.metric is Metric.CREDITS else _count
        return {
            "id": spec.id,
            "scope": spec.scope,
            "user_id": spec.user_id,
            "key_id": spec.key_id,
            "provider": spec.provider,
            "metric": spec.metric.value,
            "period": spec.period.value,
            "mode": spec.mode.value,
            "limit": amount(spec.limit),
            "used": amount(self.used),
            "reserved": amount(self.reserved),
            "remaining": amount(self.remaining),
            "period_start": self.period_start.isoformat(),
            "resets_at": self.resets_at.isoformat().replace("+00:00", "Z"),
        }


def _money(micro_credits: int) -> dict[str, object]:
    return {
        "credits": f"{micro_credits_to_credits(micro_credits):f}",
        "usd": f"{micro_credits_to_usd(micro_credits):f}",
        "micro_credits": micro_credits,
    }


def _count(value: int) -> int:
    return value


def spec_from_row(row: BudgetRow) -> BudgetSpec:
    return BudgetSpec(
        id=row.id,
        project_id=row.project_id,
        metric=Metric(row.metric),
        period=Period(row.period),
        limit=row.limit_value,
        mode=BudgetMode(row.mode),
        user_id=row.user_id,
        key_id=row.key_id,
        provider=row.provider,
    )


def _view(row: AccountRow | None, project_id: str) -> AccountView:
    if row is None:
        return AccountView(project_id=project_id, mode="postpaid", balance=0, reserved=0)
    return AccountView(
        project_id=row.project_id, mode=row.mode, balance=row.balance, reserved=row.reserved
    )


class LedgerAdmin:
    """Top-ups, adjustments, billing mode and budgets of projects; reads for the API and CLI."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        clock: Callable[[], datetime] = utcnow,
        announce: Callable[[str], Awaitable[None]] | None = None,
        before_read: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._engine = engine
        self._clock = clock
        self._announce = announce
        #: Awaited before a read: this process's spooled settlements are written first
        #: (write-behind), so that a caller reads its own requests' charges.
        self._before_read = before_read

    async def top_up(
        self,
        project_id: str,
        micro_credits: int,
        *,
        prepaid: bool = True,
        note: str | None = None,
        user_id: str | None = None,
        key_id: str | None = None,
    ) -> AccountView:
        """Add credits. With ``prepaid`` (the default) the project becomes prepaid: from then on
        a request its available balance cannot cover is refused with 402."""
        _check_amount(micro_credits, positive=True)
        return await self._post(
            project_id,
            "topup",
            micro_credits,
            mode="prepaid" if prepaid else None,
            note=note,
            user_id=user_id,
            key_id=key_id,
        )

    async def adjust(
        self,
        project_id: str,
        micro_credits: int,
        *,
        note: str | None = None,
        user_id: str | None = None,
        key_id: str | None = None,
    ) -> AccountView:
        """Correct a balance by a signed amount (a refund, a write-off); the mode is kept."""
        _check_amount(micro_credits, positive=False)
        return await self._post(
            project_id, "adjustment", micro_credits, note=note, user_id=user_id, key_id=key_id
        )

    async def set_mode(self, project_id: str, mode: str) -> AccountView:
        if mode not in ("prepaid", "postpaid"):
            raise BadRequestError("mode must be 'prepaid' or 'postpaid'", param="mode")
        async with self._engine.begin() as connection:
            await self._require_project(connection, project_id)
            row = await ledger_store.set_mode(connection, project_id, mode, self._clock())
        await self._changed(project_id)
        return _view(row, project_id)

    async def account(self, project_id: str) -> AccountView:
        await self._caught_up()
        async with self._engine.connect() as connection:
            await self._require_project(connection, project_id)
            row = await ledger_store.get_account(connection, project_id)
        return _view(row, project_id)

    async def live_gateways(self, owner_timeout: float) -> int:
        """How many gateway processes heartbeat their ledger (within ``owner_timeout`` s)."""
        since = self._clock() - timedelta(seconds=owner_timeout)
        async with self._engine.connect() as connection:
            return await ledger_store.live_owners(connection, since)

    async def entries(
        self, project_id: str, *, limit: int = 100, before_id: int | None = None
    ) -> list[EntryView]:
        await self._caught_up()
        async with self._engine.connect() as connection:
            await self._require_project(connection, project_id)
            return await ledger_store.list_entries(
                connection, project_id, limit=limit, before_id=before_id
            )

    async def budgets(self, project_id: str) -> list[BudgetStatus]:
        await self._caught_up()
        async with self._engine.connect() as connection:
            await self._require_project(connection, project_id)
            rows = await ledger_store.load_budgets(connection, project_id)
            return await self._status(connection, rows)

    async def set_budgets(self, project_id: str, specs: Sequence[BudgetSpec]) -> list[BudgetStatus]:
        """Make the project's budgets exactly ``specs`` (see ``ledger_store.replace_budgets``)."""
        scopes = [(s.user_id, s.key_id, s.provider, s.metric, s.period) for s in specs]
        if len(set(scopes)) != len(scopes):
            raise BadRequestError(
                "two budgets have the same scope, metric and period", param="budgets"
            )
        for spec in specs:
            if spec.limit < 0 or spec.limit > _MAX_AMOUNT:
                raise BadRequestError("a budget limit must be >= 0", param="limit")
        rows = [
            BudgetRow(
                id=spec.id or uuid.uuid4().hex,
                project_id=project_id,
                metric=spec.metric.value,
                period=spec.period.value,
                limit_value=spec.limit,
                mode=spec.mode.value,
                user_id=spec.user_id,
                key_id=spec.key_id,
                provider=spec.provider,
            )
            for spec in specs
        ]
        async with self._engine.begin() as connection:
            await self._require_project(connection, project_id)
            stored = await ledger_store.replace_budgets(connection, project_id, rows, self._clock())
            statuses = await self._status(connection, stored)
        await self._changed(project_id)
        return statuses

    # ---- helpers -------------------------------------------------------------------------

    async def _post(
        self,
        project_id: str,
        kind: str,
        micro_credits: int,
        *,
        mode: str | None = None,
        note: str | None = None,
        user_id: str | None = None,
        key_id: str | None = None,
    ) -> AccountView:
        entry = EntryRow(
            project_id=project_id,
            kind=kind,
            amount=micro_credits,
            created_at=self._clock(),
            note=note[:500] if note else None,
            user_id=user_id,
            key_id=key_id,
        )
        async with self._engine.begin() as connection:
            await self._require_project(connection, project_id)
            row = await connection.run_sync(post_entry, entry, mode)
        await self._changed(project_id)
        return _view(row, project_id)

    async def _caught_up(self) -> None:
        if self._before_read is not None:
            await self._before_read()

    async def _changed(self, project_id: str) -> None:
        if self._announce is not None:
            await self._announce(project_id)

    async def _status(
        self, connection: AsyncConnection, rows: Sequence[BudgetRow]
    ) -> list[BudgetStatus]:
        now = self._clock()
        specs = [spec_from_row(row) for row in rows]
        keys = [(spec.id, period_start(spec.period, now)) for spec in specs]
        found = await ledger_store.counters_for(connection, keys)
        return [
            BudgetStatus(spec, start, *found.get((spec.id, start), (0, 0)))
            for spec, (_, start) in zip(specs, keys, strict=True)
        ]

    @staticmethod
    async def _require_project(connection: AsyncConnection, project_id: str) -> None:
        if not await ledger_store.project_exists(connection, project_id):
            raise NotFoundError(f"project '{project_id}' does not exist", code="project_not_found")


def _check_amount(micro_credits: int, *, positive: bool) -> None:
    if isinstance(micro_credits, bool) or not isinstance(micro_credits, int):
        raise TypeError("amounts are integer micro-credits")
    if positive and micro_credits <= 0:
        raise BadRequestError("a top-up must be a positive amount", param="credits")
    if not positive and micro_credits == 0:
        raise BadRequestError("an adjustment must not be zero", param="credits")
    if abs(micro_credits) > _MAX_AMOUNT:
        raise BadRequestError("amount too large", param="credits")
