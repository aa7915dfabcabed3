"""`last_used_at` of API keys, recorded in memory and written in batches in the background.

The request path only sets a dictionary entry; a task writes the batch every `interval` seconds
and once more at shutdown. A crash loses at most one interval of these timestamps.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from oneflow_ai.storage.api_keys import ApiKeyRepository
from oneflow_ai.tasks import stop

__all__ = ["LastUsedRecorder"]

log = structlog.get_logger("oneflow.auth")


class LastUsedRecorder:
    def __init__(
        self, sessionmaker: async_sessionmaker[AsyncSession], *, interval: float = 60.0
    ) -> None:
        self._sessions = sessionmaker
        self._interval = interval
        self._pending: dict[str, datetime] = {}
        self._task: asyncio.Task[None] | None = None

    def note(self, key_id: str, when: datetime) -> None:
        self._pending[key_id] = when

    async def flush(self) -> None:
        if not self._pending:
            return
        batch, self._pending = self._pending, {}
        async with self._sessions.begin() as session:
            await ApiKeyRepository(session).touch(batch)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="oneflow-key-last-used")

    async def close(self) -> None:
        await stop(self._task)
        self._task = None
        try:
            await self.flush()
        except Exception as exc:
            log.warning("last_used_flush_failed", error=str(exc))

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.flush()
            except Exception as exc:  # the timestamps are advisory; try again next round
                log.warning("last_used_flush_failed", error=str(exc))
