"""API keys: create (shown once), list, edit, rotate with a grace period, revoke, rotate due ones.

Rules beyond the permission table (`auth/key_rules.py`): a key never outranks the credential
that creates, edits, rotates or revokes it; per-key limits need an admin; `unlimited` needs a
system admin and an admin key; a caller restricted to some models can only give keys a subset
of them. An edit applies to a live (or expired) key, never to a revoked or replaced one. Allow-lists
are catalog ids (`auth/model_lists.py`): resolved from aliases when stored, and again when loaded.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from oneflow_ai.auth.api_keys import KeyHasher, generate_key
from oneflow_ai.auth.clock import Clock, system_clock
from oneflow_ai.auth.invalidation import InvalidationBus
from oneflow_ai.auth.key_cache import KeyRecord
from oneflow_ai.auth.key_rules import (
    check_expiry,
    check_limits_allowed,
    check_models,
    check_role,
    check_unlimited,
)
from oneflow_ai.auth.model_lists import allow_list, stored_allow_list
from oneflow_ai.auth.permissions import Permission, ensure_permission, ensure_project_access
from oneflow_ai.auth.principal import MASTER, Principal, PrincipalKind, Role, cache_policy
from oneflow_ai.auth.project_manager import UNCHANGED, Unchanged
from oneflow_ai.catalog import Catalog
from oneflow_ai.domain.limits import LimitPolicy
from oneflow_ai.errors import BadRequestError, ConflictError, NotFoundError
from oneflow_ai.storage.api_keys import ApiKeyRepository
from oneflow_ai.storage.projects import ProjectRepository
from oneflow_ai.storage.tables import ApiKey

__all__ = ["KeyManager", "NewKey", "key_status"]


@dataclass(frozen=True, slots=True)
class NewKey:
    row: ApiKey
    key: str  # the plaintext key: returned once, never stored
    previous_valid_until: datetime | None = None  # a rotation: when the replaced key stops


def key_status(row: ApiKey, now: datetime) -> str:
    if row.revoked_at is not None and row.revoked_at <= now:
        return "revoked"
    if row.expires_at is not None and row.expires_at <= now:
        return "expired"
    if row.grace_until is not None:
        return "rotated" if row.grace_until <= now else "rotating"
    return "active"


def _actor_name(actor: Principal) -> str:
    return actor.subject


class KeyManager:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        hasher: KeyHasher,
        bus: InvalidationBus,
        *,
        catalog: Catalog,
        default_grace: timedelta,
        clock: Clock = system_clock,
    ) -> None:
        self._sessions = sessionmaker
        self._catalog = catalog
        self._hasher = hasher
        self._bus = bus
        self.default_grace = default_grace
        self._clock = clock

    # ---- the request path ------------------------------------------------------------------

    async def load(self, prefix: str) -> KeyRecord | None:
        """The record of the key with this prefix (one query), or None."""
        async with self._sessions() as session:
            found = await ApiKeyRepository(session).by_prefix(prefix)
        if found is None:
            return None
        row, project_limits, project_cache = found
        principal = Principal(
            kind=PrincipalKind.API_KEY,
            project_id=row.project_id,
            role=Role(row.role),
            key_id=row.id,
            allowed_models=stored_allow_list(self._catalog, row.allowed_models)
            if row.allowed_models is not None
            else None,
            unlimited=row.unlimited,
            limits=LimitPolicy.from_mapping(row.limits),
            project_limits=LimitPolicy.from_mapping(project_limits),
            cache=cache_policy(project_cache),
        )
        return KeyRecord(
            key_id=row.id,
            prefix=row.prefix,
            secret_hash=row.secret_hash,
            expires_at=row.expires_at,
            revoked_at=row.revoked_at,
            grace_until=row.grace_until,
            principal=principal,
        )

    # ---- management ------------------------------------------------------------------------

    async def create(
        self,
        actor: Principal,
        *,
        project_id: str,
        name: str,
        role: Role = Role.MEMBER,
        expires_at: datetime | None = None,
        allowed_models: Iterable[str] | None = None,
        limits: LimitPolicy | None = None,
        unlimited: bool = False,
    ) -> NewKey:
        ensure_permission(actor, Permission.KEYS_WRITE)
        ensure_project_access(actor, project_id)
        now = self._clock()
        models = self._check_new_key(
            actor,
            role,
            expires_at,
            None if allowed_models is None else allow_list(self._catalog, allowed_models),
            limits,
            unlimited,
            now,
        )
        async with self._sessions.begin() as session:
            if await ProjectRepository(session).get(project_id) is None:
                raise NotFoundError(f"No project '{project_id}'", code="project_not_found")
            return await self._insert(
                session,
                project_id=project_id,
                name=name,
                role=role,
                created_by=_actor_name(actor),
                expires_at=expires_at,
                allowed_models=models,
                limits=limits,
                unlimited=unlimited,
                rotated_from=None,
                now=now,
            )

    async def list_keys(self, actor: Principal, *, project_id: str | None = None) -> list[ApiKey]:
        ensure_permission(actor, Permission.KEYS_READ)
        if project_id is None and not actor.is_system_admin:
            project_id = actor.project_id
        if project_id is not None:
            ensure_project_access(actor, project_id)
        async with self._sessions() as session:
            return await ApiKeyRepository(session).find(project_id=project_id, limit=1000)

    async def get(self, actor: Principal, key_id: str) -> ApiKey:
        ensure_permission(actor, Permission.KEYS_READ)
        async with self._sessions() as session:
            return self._visible(actor, await ApiKeyRepository(session).get(key_id), key_id)

    async def rotate(
        self, actor: Principal, key_id: str, *, grace: timedelta | None = None
    ) -> NewKey:
        """A new key with the same settings; the old one works until `grace` has passed."""
        ensure_permission(actor, Permission.KEYS_WRITE)
        grace = self.default_grace if grace is None else grace
        if grace < timedelta(0):
            raise BadRequestError("The grace period cannot be negative", param="grace_seconds")
        now = self._clock()
        async with self._sessions.begin() as session:
            repo = ApiKeyRepository(session)
            old = self._visible(actor, await repo.get(key_id), key_id)
            self._ensure_outranks(actor, old)
            status = key_status(old, now)
            if status != "active":
                raise ConflictError(
                    f"Key '{key_id}' is {status} and cannot be rotated", code="key_not_active"
                )
            # A conditional UPDATE: of two concurrent rotations of one key, one wins.
            if not await repo.mark_rotated(old.id, grace_until=now + grace):
                raise ConflictError(f"Key '{key_id}' was rotated meanwhile", code="key_not_active")
            lifetime = old.expires_at - old.created_at if old.expires_at is not None else None
            new = await self._insert(
                session,
                project_id=old.project_id,
                name=old.name,
                role=Role(old.role),
                created_by=_actor_name(actor),
                expires_at=now + lifetime if lifetime is not None else None,
                allowed_models=None
                if old.allowed_models is None
                else sorted(stored_allow_list(self._catalog, old.allowed_models)),
                limits=LimitPolicy.from_mapping(old.limits),
                unlimited=old.unlimited,
                rotated_from=old.id,
                now=now,
            )
        await self._bus.publish(f"key:{old.prefix}")
        return NewKey(row=new.row, key=new.key, previous_valid_until=now + grace)

    async def revoke(self, actor: Principal, key_id: str) -> ApiKey:
        ensure_permission(actor, Permission.KEYS_WRITE)
        now = self._clock()
        async with self._sessions.begin() as session:
            key = self._visible(actor, await ApiKeyRepository(session).get(key_id), key_id)
            self._ensure_outranks(actor, key)
            if key.revoked_at is None:
                key.revoked_at = now
        await self._bus.publish(f"key:{key.prefix}")
        return key

    async def update(
        self,
        actor: Principal,
        key_id: str,
        *,
        name: str | None = None,
        expires_at: datetime | Unchanged | None = UNCHANGED,
        allowed_models: Iterable[str] | Unchanged | None = UNCHANGED,
        limits: LimitPolicy | Mapping[str, int | None] | Unchanged | None = UNCHANGED,
    ) -> ApiKey:
        """Change a key's name, expiry (None: never), allow-list (None: every model) or limits
        (a mapping changes the limits it names, None removes one; None removes them all), under
        the rules of creation; every replica sees the change before this returns."""
        ensure_permission(actor, Permission.KEYS_WRITE)
        now = self._clock()
        if not isinstance(limits, Unchanged):
            check_limits_allowed(actor)
        if not isinstance(expires_at, Unchanged):
            check_expiry(expires_at, now)
        models: list[str] | Unchanged | None = UNCHANGED
        if not isinstance(allowed_models, Unchanged):
            models = check_models(
                actor,
                None if allowed_models is None else allow_list(self._catalog, allowed_models),
            )
        async with self._sessions.begin() as session:
            # Locked (PostgreSQL): two edits of different limits both take effect.
            key = self._visible(
                actor, await ApiKeyRepository(session).get(key_id, for_update=True), key_id
            )
            self._ensure_outranks(actor, key)
            status = key_status(key, now)
            if status in ("revoked", "rotated"):
                raise ConflictError(
                    f"Key '{key_id}' is {status} and cannot be changed", code="key_not_active"
                )
            if name is not None:
                key.name = name
            if not isinstance(expires_at, Unchanged):
                key.expires_at = expires_at
            if not isinstance(models, Unchanged):
                key.allowed_models = models
            if not isinstance(limits, Unchanged):
                if limits is not None and not isinstance(limits, LimitPolicy):
                    try:
                        limits = LimitPolicy.changed(LimitPolicy.from_mapping(key.limits), limits)
                    except ValueError as exc:
                        raise BadRequestError(str(exc), param="limits") from None
                key.limits = limits.to_mapping() if limits is not None else None
        await self._bus.publish(f"key:{key.prefix}")
        return key

    async def rotate_due(
        self, *, max_age: timedelta, grace: timedelta | None = None
    ) -> list[tuple[ApiKey, NewKey]]:
        """Rotate every live key older than `max_age` (scheduled rotation; see `oneflow keys`)."""
        now = self._clock()
        async with self._sessions() as session:
            due = await ApiKeyRepository(session).due_for_rotation(
                created_before=now - max_age, now=now
            )
        rotated: list[tuple[ApiKey, NewKey]] = []
        for old in due:
            try:
                new = await self.rotate(MASTER, old.id, grace=grace)
            except ConflictError:  # rotated or revoked meanwhile
                continue
            rotated.append((old, new))
        return rotated

    # ---- rules -------------------------------------------------------------------------------

    @staticmethod
    def _check_new_key(
        actor: Principal,
        role: Role,
        expires_at: datetime | None,
        allowed_models: list[str] | None,
        limits: LimitPolicy | None,
        unlimited: bool,
        now: datetime,
    ) -> list[str] | None:
        check_role(actor, role)
        if limits is not None:
            check_limits_allowed(actor)
        if unlimited:
            check_unlimited(actor, role)
        check_expiry(expires_at, now)
        return check_models(actor, allowed_models)

    @staticmethod
    def _visible(actor: Principal, key: ApiKey | None, key_id: str) -> ApiKey:
        # Keys of other projects do not exist for the caller.
        if key is None or (key.project_id != actor.project_id and not actor.is_system_admin):
            raise NotFoundError(f"No API key '{key_id}'", code="key_not_found")
        return key

    @staticmethod
    def _ensure_outranks(actor: Principal, key: ApiKey) -> None:
        check_role(actor, Role(key.role), verb="change")

    async def _insert(
        self,
        session: AsyncSession,
        *,
        project_id: str,
        name: str,
        role: Role,
        created_by: str,
        expires_at: datetime | None,
        allowed_models: list[str] | None,
        limits: LimitPolicy | None,
        unlimited: bool,
        rotated_from: str | None,
        now: datetime,
    ) -> NewKey:
        # 48 random bits of prefix: a collision fails the unique constraint rather than mixing keys.
        generated = generate_key()
        row = ApiKey(
            id=f"key_{secrets.token_hex(8)}",
            project_id=project_id,
            prefix=generated.prefix,
            secret_hash=self._hasher.hash(generated.secret),
            name=name,
            role=role.value,
            created_by=created_by,
            created_at=now,
            expires_at=expires_at,
            rotated_from=rotated_from,
            allowed_models=allowed_models,
            limits=limits.to_mapping() if limits is not None else None,
            unlimited=unlimited,
        )
        await ApiKeyRepository(session).add(row)
        return NewKey(row=row, key=generated.key)

    async def own(self, actor: Principal) -> ApiKey | None:
        """The caller's own API key (``self:read``); ``None`` for a caller that is not a key."""
        ensure_permission(actor, Permission.SELF_READ)
        if actor.key_id is None:
            return None
        async with self._sessions() as session:
            return await ApiKeyRepository(session).get(actor.key_id)
