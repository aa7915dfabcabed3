"""The ledger's usage records and errors (helpers of :mod:`oneflow_ai.billing.ledger`)."""

from __future__ import annotations

import asyncio

import structlog

from oneflow_ai.billing.cost import Cost
from oneflow_ai.billing.reservation import Reservation
from oneflow_ai.domain.usage import Usage
from oneflow_ai.domain.usage_record import RequestOutcome, UsageRecord
from oneflow_ai.errors import GatewayError, ServiceUnavailableError
from oneflow_ai.storage.ledger_commands import LedgerResult

__all__ = [
    "RETRY_AFTER_UNREACHABLE",
    "describe",
    "unavailable",
    "unavailable_error",
    "unreachable_error",
    "usage_record",
]

log = structlog.get_logger("oneflow.billing.ledger")


def usage_record(
    reservation: Reservation,
    outcome: RequestOutcome,
    usage: Usage,
    cost: Cost | None,
    provider: str,
) -> UsageRecord:
    return UsageRecord(
        request_id=reservation.request_id,
        occurred_at=outcome.started_at or reservation.created_at,
        status=outcome.status,
        project_id=reservation.project_id,
        user_id=reservation.user_id,
        key_id=reservation.key_id,
        model=cost.model if cost is not None else reservation.model,
        provider=provider,
        error=outcome.error,
        stream=outcome.stream,
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cached_input_tokens=usage.cached_input_tokens,
        cache_write_5m_tokens=usage.cache_write_5m_tokens,
        cache_write_1h_tokens=usage.cache_write_1h_tokens,
        reasoning_tokens=usage.reasoning_tokens,
        images=usage.images,
        characters=usage.characters,
        audio_seconds=usage.audio_seconds,
        micro_credits=cost.micro_credits if cost is not None else 0,
        price_table_version=cost.price_table_version if cost is not None else None,
        estimated=usage.estimated,
        latency_ms=outcome.latency_ms,
        ttft_ms=outcome.ttft_ms,
        route=outcome.route,
        cache_hit=outcome.cache_hit,
        credits_saved=outcome.credits_saved,
    )


def unavailable_error(exc: BaseException) -> ServiceUnavailableError:
    log.error("ledger_write_failed", error=describe(exc))
    return ServiceUnavailableError("Billing is unavailable: the ledger could not be written")


#: Seconds a caller refused while the database is unreachable should wait (its probe retries
#: twice a second; a retry sooner than this would most likely be refused again).
RETRY_AFTER_UNREACHABLE = 2


def unreachable_error() -> ServiceUnavailableError:
    return ServiceUnavailableError(
        "Billing is unavailable: the ledger database does not answer; retry shortly",
        code="ledger_unavailable",
        retry_after=RETRY_AFTER_UNREACHABLE,
    )


def unavailable(done: asyncio.Future[LedgerResult | None]) -> BaseException:
    if done.cancelled():
        return unavailable_error(asyncio.CancelledError())
    exc = done.exception()
    assert exc is not None
    return exc if isinstance(exc, GatewayError) else unavailable_error(exc)


def describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:300]
