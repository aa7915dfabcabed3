"""Credential -> Principal, on every request, without a database round trip when warm.

A credential is the master key (compared in constant time), an API key `sk-of-...` (looked up
by prefix in the in-process cache, its secret's keyed hash compared in constant time, then its
expiry, revocation and grace period checked against the clock), or a JWT access token (verified
by signature and claims alone; a self-service session's token also needs its key still usable).
Concurrent misses for one prefix share a single query.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
from collections.abc import Callable
from datetime import datetime

from sqlalchemy.exc import DBAPIError, OperationalError

from oneflow_ai.auth.api_keys import KeyHasher, parse_key
from oneflow_ai.auth.clock import Clock, system_clock
from oneflow_ai.auth.credentials import secrets_equal
from oneflow_ai.auth.key_cache import MISSING, KeyCache, KeyRecord
from oneflow_ai.auth.key_manager import KeyManager
from oneflow_ai.auth.last_used import LastUsedRecorder
from oneflow_ai.auth.principal import MASTER, Principal, PrincipalKind, Role
from oneflow_ai.auth.project_limits import ProjectLimitCache
from oneflow_ai.auth.tokens import SELF_SCOPE, TokenCodec
from oneflow_ai.errors import AuthenticationError, ServiceUnavailableError

__all__ = ["CredentialResolver"]

_REASONS = {
    "revoked": ("This API key has been revoked", "key_revoked"),
    "rotated": ("This API key was rotated and its grace period has ended", "key_rotated"),
    "expired": ("This API key has expired", "key_expired"),
}


class CredentialResolver:
    def __init__(
        self,
        *,
        master_key: str,
        keys: KeyManager,
        cache: KeyCache,
        hasher: KeyHasher,
        codec: TokenCodec,
        project_limits: ProjectLimitCache,
        last_used: LastUsedRecorder | None = None,
        clock: Clock = system_clock,
    ) -> None:
        self._master = master_key
        self._keys = keys
        self._cache = cache
        self._hasher = hasher
        self._codec = codec
        self._project_limits = project_limits
        self._last_used = last_used
        self._clock = clock
        self._loading: dict[str, asyncio.Task[KeyRecord | None]] = {}

    async def authenticate(self, credential: str) -> Principal:
        if secrets_equal(credential, self._master):
            return MASTER
        parsed = parse_key(credential)
        if parsed is not None:  # an API key (here, not in a coroutine of its own: the usual)
            prefix, secret = parsed
            now = self._clock()
            record = await self._usable_key(
                prefix, lambda r: self._hasher.matches(secret, r.secret_hash), now
            )
            if self._last_used is not None:
                self._last_used.note(record.key_id, now)
            return record.principal
        if credential.startswith("eyJ") and credential.count(".") == 2:
            return await self._access_token(credential)
        raise AuthenticationError("Invalid API key", code="invalid_api_key")

    async def _usable_key(
        self, prefix: str, proves: Callable[[KeyRecord], bool], now: datetime | None = None
    ) -> KeyRecord:
        """The key of ``prefix`` when ``proves`` accepts it and it may be used ``now`` (the
        clock's time when not given)."""
        cached = self._cache.get(prefix)
        record = await self._load(prefix) if cached is MISSING else cached
        if record is None or not isinstance(record, KeyRecord) or not proves(record):
            raise AuthenticationError("Invalid API key", code="invalid_api_key")
        reason = record.usable_at(self._clock() if now is None else now)
        if reason is not None:
            message, code = _REASONS[reason]
            raise AuthenticationError(message, code=code)
        return record

    async def _load(self, prefix: str) -> KeyRecord | None:
        """One query per prefix however many requests wait for it. The query runs in a task of
        its own, so a caller that goes away (a client disconnect) does not fail the others."""
        task = self._loading.get(prefix)
        if task is None:
            task = asyncio.create_task(self._fetch(prefix, self._cache.generation))
            self._loading[prefix] = task
            task.add_done_callback(functools.partial(self._loaded, prefix))
        return await asyncio.shield(task)

    async def _fetch(self, prefix: str, generation: int) -> KeyRecord | None:
        try:
            record = await self._keys.load(prefix)
        except (OperationalError, DBAPIError, OSError, TimeoutError) as exc:
            raise ServiceUnavailableError(
                "The identity store is unavailable; retry shortly", retry_after=2
            ) from exc
        self._cache.put(prefix, record, generation)
        return record

    def _loaded(self, prefix: str, task: asyncio.Task[KeyRecord | None]) -> None:
        if self._loading.get(prefix) is task:
            del self._loading[prefix]
        if not task.cancelled():
            task.exception()  # retrieved, even when every waiter went away

    async def _access_token(self, token: str) -> Principal:
        claims = self._codec.decode_access(token)
        if claims.scope == SELF_SCOPE and claims.key_prefix is not None:
            # A self-service session: as long as its key may be used, that key's own data.
            key_id = claims.user_id
            record = await self._usable_key(claims.key_prefix, lambda r: r.key_id == key_id)
            return dataclasses.replace(record.principal, self_only=True)
        try:
            role = Role(claims.role)
        except ValueError:
            raise AuthenticationError("Invalid access token", code="invalid_token") from None
        project_limits, cache = await self._project_limits.settings(claims.project_id)
        return Principal(
            kind=PrincipalKind.USER,
            project_id=claims.project_id,
            role=role,
            user_id=claims.user_id,
            project_limits=project_limits,
            cache=cache,
        )
