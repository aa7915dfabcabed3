"""Telling every replica that an identity changed: revoked or rotated keys, project limits.

Messages are short strings: `key:<prefix>`, `project:<id>`, or `*` (drop everything). The
in-process bus delivers them to this process only (the embedded default: one process). The Redis
bus also publishes them on a channel every replica subscribes to, so a revocation reaches every
replica's cache within milliseconds. Pub/sub is fire-and-forget: a replica that was disconnected
drops its whole cache when it subscribes again, and the cache's TTL bounds what a lost message
can cost (`API_KEY_CACHE_TTL_SECONDS`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import structlog
from redis.asyncio import Redis

from oneflow_ai.tasks import stop

__all__ = ["InvalidationBus", "RedisInvalidationBus"]

log = structlog.get_logger("oneflow.auth")

Listener = Callable[[str], None]
EVERYTHING = "*"


class InvalidationBus:
    """Delivers messages to this process's listeners."""

    def __init__(self) -> None:
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    async def publish(self, message: str) -> None:
        self._deliver(message)

    def _deliver(self, message: str) -> None:
        for listener in self._listeners:
            listener(message)

    async def start(self) -> None:
        """Begin receiving other processes' messages (nothing to do in-process)."""

    async def close(self) -> None:
        """Stop receiving."""


class RedisInvalidationBus(InvalidationBus):
    """Publishes on a Redis channel and listens to it in a background task."""

    def __init__(self, redis: Redis, channel: str, *, retry_delay: float = 1.0) -> None:
        super().__init__()
        self._redis = redis
        self.channel = channel
        self._retry_delay = retry_delay
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        self._first_attempt = asyncio.Event()

    async def publish(self, message: str) -> None:
        self._deliver(message)
        try:
            await self._redis.publish(self.channel, message)
        except Exception as exc:  # the change is stored; caches expire within their TTL
            log.warning("invalidation_publish_failed", message=message, error=str(exc))

    @property
    def subscribed(self) -> bool:
        return self._subscribed.is_set()

    async def start(self, *, wait: float = 5.0) -> None:
        """Start listening; returns once the first subscription attempt succeeded or failed
        (a failed one keeps retrying in the background)."""
        self._task = asyncio.create_task(self._listen(), name="oneflow-auth-invalidation")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._first_attempt.wait(), wait)

    async def close(self) -> None:
        await stop(self._task)
        self._task = None

    async def _listen(self) -> None:
        while True:
            pubsub = self._redis.pubsub()
            try:
                await pubsub.subscribe(self.channel)
                # Whatever was published while we were not listening is lost: start afresh.
                self._deliver(EVERYTHING)
                self._subscribed.set()
                self._first_attempt.set()
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is not None and message.get("type") == "message":
                        data = message["data"]
                        self._deliver(data.decode() if isinstance(data, bytes) else str(data))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._subscribed.clear()
                self._first_attempt.set()
                log.warning("invalidation_listener_reconnecting", error=str(exc))
                await asyncio.sleep(self._retry_delay)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
