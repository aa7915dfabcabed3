"""How a credits or budget change made by the CLI reaches the gateways that are running.

The CLI writes to the database directly; running replicas keep each project's funding and
budgets in memory (`billing/ledger_state.py`). After the write commits:

- with `REDIS_URL`, the change is published on the channel key revocations use, and the
  command returns once every listening replica has acknowledged that it forgot the project
  (its next request on it reads the database);
- without Redis (or if that publication failed or was not acknowledged), and while a gateway
  is running on the database (a ledger heartbeat within `LEDGER_OWNER_TIMEOUT_SECONDS`), the
  command waits `LEDGER_STATE_MAX_AGE_SECONDS`: a gateway reloads what it knows at least that
  often before deciding (or refuses with 503), so once the command returns every request is
  decided on the new state.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import typer

from oneflow_ai.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from oneflow_ai.billing.ledger_admin import LedgerAdmin

__all__ = ["announcing_admin"]


def announcing_admin(settings: Settings, engine: AsyncEngine) -> LedgerAdmin:
    """A `LedgerAdmin` whose writes reach running gateways before they return."""
    from oneflow_ai.billing.ledger_admin import LedgerAdmin

    admin: LedgerAdmin

    async def announce(project_id: str) -> None:
        if not await _publish(settings, project_id):
            await _wait_for_reloads(settings, admin)

    admin = LedgerAdmin(engine, announce=announce)
    return admin


async def _publish(settings: Settings, project_id: str) -> bool:
    if not settings.redis_url:
        return False
    from oneflow_ai.auth.identity import invalidation_channel
    from oneflow_ai.auth.invalidation import RedisInvalidationBus
    from oneflow_ai.billing.ledger_state import change_message
    from oneflow_ai.storage.redis import create_redis

    redis = create_redis(settings.redis_url)
    try:
        bus = RedisInvalidationBus(redis, invalidation_channel(settings))
        return await bus.publish(change_message(project_id))
    finally:
        await redis.aclose()


async def _wait_for_reloads(settings: Settings, admin: LedgerAdmin) -> None:
    if not await admin.live_gateways(settings.ledger_owner_timeout_seconds):
        return
    seconds = settings.ledger_state_max_age_seconds
    typer.echo(
        f"oneflow: waiting {seconds:g} s for running gateways to reload credits and budgets "
        "(set REDIS_URL to tell them at once)",
        err=True,
    )
    await asyncio.sleep(seconds)
