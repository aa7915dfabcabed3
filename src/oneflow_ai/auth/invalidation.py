"""Telling every replica that something it caches changed: revoked or rotated keys, project
limits, a project's funding and budgets.

Messages are short strings: `key:<prefix>`, `project:<id>`, `ledger:<project id>` (see
`billing/ledger_state.py`), or `*` (drop everything). The in-process bus delivers them to this
process only (the embedded default: one process). The Redis bus also publishes them on a channel
every replica subscribes to, and `publish` returns once every replica that received the message
has applied it (each acknowledges on a list of its own; `ack_timeout` bounds the wait): what
follows a revocation or a top-up, on any replica, sees it. Pub/sub is fire-and-forget for a
replica that was not listening: it drops its whole cache when it subscribes again, and the
caches' TTLs bound what a lost message can cost (`API_KEY_CACHE_TTL_SECONDS`,
`LEDGER_STATE_MAX_AGE_SECONDS`).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING

import structlog

from oneflow_ai.tasks import stop

if TYPE_CHECKING:  # redis-py is imported only when REDIS_URL is set
    from redis.asyncio import Redis

__all__ = ["InvalidationBus", "RedisInvalidationBus"]

log = structlog.get_logger("oneflow.auth")

Listener = Callable[[str], None]
EVERYTHING = "*"
#: Between a message and the id its receivers acknowledge it under (never in a message).
_ACK_SEPARATOR = "\n"


class InvalidationBus:
    """Delivers messages to this process's listeners."""

    def __init__(self) -> None:
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    async def publish(self, message: str) -> bool:
        """Deliver to this process's listeners; whether every receiver has applied it."""
        self._deliver(message)
        return True

    def _deliver(self, message: str) -> None:
        for listener in self._listeners:
            listener(message)

    async def start(self) -> None:
        """Begin receiving other processes' messages (nothing to do in-process)."""

    async def close(self) -> None:
        """Stop receiving."""


class RedisInvalidationBus(InvalidationBus):
    """Publishes on a Redis channel and listens to it in a background task."""

    def __init__(
        self,
        redis: Redis,
        channel: str,
        *,
        retry_delay: float = 1.0,
        ack_timeout: float = 2.0,
    ) -> None:
        super().__init__()
        self._redis = redis
        self.channel = channel
        self._retry_delay = retry_delay
        self._ack_timeout = ack_timeout
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        self._first_attempt = asyncio.Event()

    async def publish(self, message: str) -> bool:
        """Deliver here, publish, and wait until every replica that received it applied it;
        false if publishing failed or a receiver did not acknowledge in time (the change is
        stored: caches expire within their TTL)."""
        self._deliver(message)
        ack = uuid.uuid4().hex
        try:
            receivers = await self._redis.publish(self.channel, message + _ACK_SEPARATOR + ack)
            missing = await self._await_acks(ack, int(receivers))
        except Exception as exc:
            log.warning("invalidation_publish_failed", message=message, error=str(exc))
            return False
        if missing:
            log.warning("invalidation_not_acknowledged", message=message, replicas=missing)
        return not missing

    def _ack_key(self, ack: str) -> str:
        return f"{self.channel}:ack:{ack}"

    async def _await_acks(self, ack: str, receivers: int) -> int:
        """Wait for `receivers` acknowledgements of `ack`; how many did not come in time."""
        key = self._ack_key(ack)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._ack_timeout
        try:
            while receivers > 0:
                remaining = deadline - loop.time()
                if remaining <= 0 or not await self._redis.blpop([key], timeout=remaining):
                    break
                receivers -= 1
        finally:
            await self._redis.delete(key)
        return receivers

    async def _acknowledge(self, ack: str) -> None:
        key = self._ack_key(ack)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.rpush(key, b"1")
            pipe.pexpire(key, max(1, int(self._ack_timeout * 2000)))
            await pipe.execute()

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
                        await self._received(data.decode() if isinstance(data, bytes) else data)
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

    async def _received(self, data: str) -> None:
        message, _, ack = data.partition(_ACK_SEPARATOR)
        self._deliver(message)
        if ack:
            try:
                await self._acknowledge(ack)
            except Exception as exc:  # the publisher stops waiting at its timeout
                log.warning("invalidation_ack_failed", message=message, error=str(exc))
