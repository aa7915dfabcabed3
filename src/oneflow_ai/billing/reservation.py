"""A reservation: the worst-case cost of one in-flight request, held until it is settled.

The pipeline gets one from :meth:`Ledger.reserve` before the upstream call and hands it back
to exactly one of :meth:`Ledger.settle` (the request produced something billable) or
:meth:`Ledger.release` (it did not). A reservation is *limited* when its project is prepaid or
a hard budget applies to the request: only then is it written to the database before the
call (durable, so that a crash cannot leak its holds past reconciliation), or held in memory
on a durable credit lease (``lease``), and only then can it refuse. Unlimited (postpaid)
reservations cost no I/O at all.
"""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from oneflow_ai.billing.cost import Cost
from oneflow_ai.storage.ledger_commands import HoldRow

if TYPE_CHECKING:
    from oneflow_ai.billing.leases import Lease

__all__ = ["Reservation", "ReservationState", "Settlement"]


class ReservationState(enum.StrEnum):
    ACTIVE = "active"
    SETTLED = "settled"
    RELEASED = "released"


@dataclass(frozen=True, slots=True)
class Settlement:
    """The settled charge of one request.

    ``charged`` is false when the request id already had a settled charge (settling twice
    never charges twice); ``cost`` is what this settlement priced either way. ``spooled``:
    the database could not be reached, the settlement is in the ledger's spool (durable),
    charged when the spool is replayed.
    """

    request_id: str
    cost: Cost
    charged: bool
    spooled: bool = False


@dataclass(eq=False, slots=True)
class Reservation:
    """See the module documentation. ``output_token_limit`` is the number of output tokens
    the reservation covers (``None``: the request has no output tokens to count);
    ``checkpointed`` whether a stream checkpoint may have written its row (so that settling
    or releasing it must resolve that row, even for an unlimited reservation);
    ``hard_budgets`` the ids of the hard budgets that applied when it was made: a hard budget
    counts only the requests admitted under it, so one set while a request is under way
    starts from what it admits (its usage plus holds never pass its limit); ``lease`` the
    credit lease it is held on (in memory; nothing was written for it before the call)."""

    id: str
    request_id: str
    project_id: str
    model: str
    provider: str
    max_cost: Cost | None  # None: an unlimited reservation whose worst case was not priced
    created_at: datetime
    limited: bool
    user_id: str | None = None
    key_id: str | None = None
    account_hold: int = 0
    holds: tuple[HoldRow, ...] = ()
    output_token_limit: int | None = None
    checkpointed: bool = False
    hard_budgets: frozenset[str] = frozenset()
    lease: Lease | None = None
    state: ReservationState = ReservationState.ACTIVE
    settlement: Settlement | None = None
    _settling: asyncio.Future[Settlement] | None = field(default=None, repr=False)

    @property
    def max_micro_credits(self) -> int:
        return self.max_cost.micro_credits if self.max_cost is not None else 0

    @property
    def active(self) -> bool:
        return self.state is ReservationState.ACTIVE

    @property
    def written(self) -> bool:
        """Whether the database may hold its row, which settling or releasing it resolves: the
        holds written before the call (limited, not on a lease), or a stream checkpoint."""
        return (self.limited and self.lease is None) or self.checkpointed

    def would_exceed(self, output_tokens: int) -> bool:
        """Whether ``output_tokens`` output tokens so far would overrun what is reserved.

        The stream path calls this as tokens arrive (before forwarding a chunk) and ends a
        stream that would overrun with an error event instead. Always false for unlimited
        reservations: postpaid traffic has nothing to overrun.
        """
        return (
            self.limited
            and self.output_token_limit is not None
            and output_tokens > self.output_token_limit
        )
