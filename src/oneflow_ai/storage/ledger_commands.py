"""The writes the ledger hands to its group-commit writer, and what each one returns.

Plain data only: billing decides amounts and holds, :mod:`oneflow_ai.storage.ledger_batch`
applies a batch of these in one transaction. Amounts are integer micro-credits (credits
metric), tokens or requests, as the budget's metric says.

Every request's settlement builds an :class:`EntryRow` and a :class:`SettleCommand`: those two
are not frozen, because a frozen dataclass costs about three times as much to build (each field
is set through ``object.__setattr__``). Nothing changes a command once it is built.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from oneflow_ai.domain.usage_record import UsageRecord

__all__ = [
    "AccountRow",
    "CheckpointCommand",
    "Checkpointed",
    "CounterChange",
    "EntryCommand",
    "EntryRow",
    "HoldRow",
    "Interrupted",
    "LedgerCommand",
    "LedgerResult",
    "ReapCommand",
    "Reaped",
    "RecordCommand",
    "Recorded",
    "ReleaseCommand",
    "Released",
    "ReserveCommand",
    "Reserved",
    "SettleCommand",
    "Settled",
    "StreamProgress",
]


@dataclass(frozen=True, slots=True, order=True)
class HoldRow:
    """An amount on one budget counter (a hold, or a usage increment)."""

    budget_id: str
    period_start: date
    amount: int


@dataclass(slots=True)
class EntryRow:
    """One ledger entry to append."""

    project_id: str
    kind: str  # topup | adjustment | charge
    amount: int
    created_at: datetime
    request_id: str | None = None
    model: str | None = None
    provider: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    images: int = 0
    characters: int = 0
    price_table_version: str | None = None
    estimated: bool = False
    user_id: str | None = None
    key_id: str | None = None
    note: str | None = None
    audio_seconds: int = 0


@dataclass(frozen=True, slots=True)
class AccountRow:
    project_id: str
    mode: str
    balance: int
    reserved: int


@dataclass(frozen=True, slots=True)
class ReserveCommand:
    """Hold ``account_hold`` on a prepaid balance and each of ``holds`` on a hard budget,
    all or nothing, and record the reservation as active.

    With ``lease_share`` set it is a credit lease (``storage/ledger_leases.py``): it holds up
    to ``account_hold``, at most ``1 / lease_share`` of what the balance has free, and at
    least ``lease_floor``, or nothing."""

    reservation_id: str
    request_id: str
    project_id: str
    user_id: str | None
    key_id: str | None
    model: str
    provider: str
    account_hold: int
    max_micro_credits: int
    holds: tuple[HoldRow, ...]
    owner: str
    created_at: datetime
    expires_at: datetime
    lease_share: int = 0
    lease_floor: int = 0


@dataclass(frozen=True, slots=True)
class Reserved:
    """``refused_by`` is ``"account"`` or the id of the hard budget that could not cover it;
    ``account_hold`` and ``holds`` are what was actually held (a budget deleted or made soft
    meanwhile holds nothing, nor does an account that does not exist)."""

    accepted: bool
    refused_by: str | None = None
    account_hold: int = 0
    holds: tuple[HoldRow, ...] = ()


@dataclass(slots=True)
class SettleCommand:
    """Append the request's charge (once per request id), resolve its reservation if still
    active (releasing its holds), add its usage to the matching budgets' counters.

    ``lease_id``: the request was served from that credit lease; its charge is taken out of
    the lease's hold (what the lease still holds, at most) when it is appended."""

    charge: EntryRow
    reservation_id: str | None
    account_hold: int
    holds: tuple[HoldRow, ...]
    usage_increments: tuple[HoldRow, ...]
    record: UsageRecord | None
    lease_id: str | None = None


@dataclass(frozen=True, slots=True)
class CounterChange:
    budget_id: str
    period_start: date
    used_before: int
    used_after: int


@dataclass(frozen=True, slots=True)
class Settled:
    """``charged`` is false when a charge for the request id already existed (nothing was
    charged twice); ``released`` whether the durable reservation was still active.
    ``counters`` lists the counters this batch moved, reported on their first contributor."""

    charged: bool
    released: bool
    counters: tuple[CounterChange, ...] = ()


@dataclass(frozen=True, slots=True)
class ReleaseCommand:
    """Resolve a reservation and give back its holds. With ``lease`` it returns a credit
    lease: what its row still holds is given back (``account_hold`` is not used)."""

    reservation_id: str | None
    project_id: str
    account_hold: int
    holds: tuple[HoldRow, ...]
    record: UsageRecord | None
    lease: bool = False


@dataclass(frozen=True, slots=True)
class Released:
    released: bool


@dataclass(frozen=True, slots=True)
class RecordCommand:
    """A usage record; with ``once``, only if its request has none yet (a replayed spool)."""

    record: UsageRecord
    once: bool = False


@dataclass(frozen=True, slots=True)
class Recorded:
    pass


@dataclass(frozen=True, slots=True)
class EntryCommand:
    """A top-up or adjustment; ``mode`` (prepaid/postpaid) is set on the account with it."""

    entry: EntryRow
    mode: str | None = None


@dataclass(frozen=True, slots=True)
class StreamProgress:
    """What one streamed answer has delivered so far, priced: written on its reservation's
    row (created, holding nothing, for a request that had none in the database)."""

    reservation_id: str
    request_id: str
    project_id: str
    user_id: str | None
    key_id: str | None
    model: str
    provider: str
    input_tokens: int
    output_tokens: int
    micro_credits: int
    price_table_version: str
    owner: str
    created_at: datetime
    expires_at: datetime
    at: datetime


@dataclass(frozen=True, slots=True)
class CheckpointCommand:
    """The progress of many streams at once (one write per checkpoint interval)."""

    progress: tuple[StreamProgress, ...]


@dataclass(frozen=True, slots=True)
class Checkpointed:
    written: int


@dataclass(frozen=True, slots=True)
class ReapCommand:
    """Heartbeat for ``owner`` (of ``instance``) and release the reservations of dead owners
    (no heartbeat since ``stale_before``) and expired ones; with ``release_own`` also every
    reservation of ``owner`` (clean shutdown), with ``retire`` remove ``owner`` itself.
    ``previous_of`` names an instance whose other owners are dead (earlier incarnations of a
    restarted process, or an instance an operator releases by hand).

    Reservations with a checkpoint are not released here: they come back in
    :attr:`Reaped.interrupted`, for billing to settle with what they delivered."""

    owner: str
    now: datetime
    stale_before: datetime
    release_own: bool = False
    retire: bool = False
    instance: str | None = None
    previous_of: str | None = None


@dataclass(frozen=True, slots=True)
class Interrupted:
    """A reservation whose stream was checkpointed and whose owner is gone."""

    reservation_id: str
    request_id: str
    project_id: str
    user_id: str | None
    key_id: str | None
    model: str
    provider: str
    account_hold: int
    holds: tuple[HoldRow, ...]
    input_tokens: int
    output_tokens: int
    micro_credits: int
    price_table_version: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Reaped:
    released: int
    interrupted: tuple[Interrupted, ...] = ()


LedgerCommand = (
    ReserveCommand
    | SettleCommand
    | ReleaseCommand
    | RecordCommand
    | EntryCommand
    | ReapCommand
    | CheckpointCommand
)
LedgerResult = Reserved | Settled | Released | Recorded | AccountRow | Reaped | Checkpointed
