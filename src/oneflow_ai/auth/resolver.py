"""Credential -> Principal, on every request, without a database round trip when warm.

A credential is the master key (compared in constant time), an API key `sk-of-...` (looked up
by prefix in the in-process cache, its secret's keyed hash compared in constant time, then its
expiry, revocation and grace period checked against the clock), or a JWT access token (verified
by signature and claims alone). Concurrent misses for one prefix share a single query.
"""

from __future__ import annotations

import asyncio

from sqlalchemy.exc import DBAPIError, OperationalError

from oneflow_ai.auth.api_keys import KeyHasher, parse_key
from oneflow_ai.auth.clock import Clock, system_clock
from oneflow_ai.auth.credentials import secrets_equal
from oneflow_ai.auth.key_cache import MISSING, KeyCache, KeyRecord
from oneflow_ai.auth.key_manager import KeyManager
from oneflow_ai.auth.last_used import LastUsedRecorder
from oneflow_ai.auth.principal import MASTER, Principal, PrincipalKind, Role
from oneflow_ai.auth.project_limits import ProjectLimitCache
from oneflow_ai.auth.tokens import TokenCodec
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
        self._loading: dict[str, asyncio.Future[KeyRecord | None]] = {}

    async def authenticate(self, credential: str) -> Principal:
        if secrets_equal(credential, self._master):
            return MASTER
        parsed = parse_key(credential)
        if parsed is not None:
            return await self._api_key(*parsed)
        if credential.startswith("eyJ") and credential.count(".") == 2:
            return await self._access_token(credential)
        raise AuthenticationError("Invalid API key", code="invalid_api_key")

    async def _api_key(self, prefix: str, secret: str) -> Principal:
        cached = self._cache.get(prefix)
        record = await self._load(prefix) if cached is MISSING else cached
        if record is None or not isinstance(record, KeyRecord):
            raise AuthenticationError("Invalid API key", code="invalid_api_key")
        if not self._hasher.matches(secret, record.secret_hash):
            raise AuthenticationError("Invalid API key", code="invalid_api_key")
        now = self._clock()
        reason = record.usable_at(now)
        if reason is not None:
            message, code = _REASONS[reason]
            raise AuthenticationError(message, code=code)
        if self._last_used is not None:
            self._last_used.note(record.key_id, now)
        return record.principal

    async def _load(self, prefix: str) -> KeyRecord | None:
        pending = self._loading.get(prefix)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[KeyRecord | None] = asyncio.get_running_loop().create_future()
        self._loading[prefix] = future
        generation = self._cache.generation
        try:
            record = await self._keys.load(prefix)
        except (OperationalError, DBAPIError, OSError, TimeoutError) as exc:
            error = ServiceUnavailableError("The identity store is unavailable; retry shortly")
            future.set_exception(error)
            future.exception()  # retrieved: no warning when nobody else waited
            raise error from exc
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()
            raise
        finally:
            del self._loading[prefix]
        self._cache.put(prefix, record, generation)
        future.set_result(record)
        return record

    async def _access_token(self, token: str) -> Principal:
        claims = self._codec.decode_access(token)
        try:
            role = Role(claims.role)
        except ValueError:
            raise AuthenticationError("Invalid access token", code="invalid_token") from None
        return Principal(
            kind=PrincipalKind.USER,
            project_id=claims.project_id,
            role=role,
            user_id=claims.user_id,
            project_limits=await self._project_limits.get(claims.project_id),
        )
