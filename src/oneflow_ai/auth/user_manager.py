"""Users and memberships: who belongs to which project with which role.

Project admins add users to their own project and change their roles there (never above their
own); system admins see and change every user, including deactivating one (which also stops
every refresh of that user's sessions).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from oneflow_ai.auth.clock import Clock, system_clock
from oneflow_ai.auth.passwords import MIN_PASSWORD_LENGTH, PasswordHashing
from oneflow_ai.auth.permissions import (
    Permission,
    ensure_permission,
    ensure_project_access,
    has_permission,
    role_rank,
)
from oneflow_ai.auth.principal import Principal, Role
from oneflow_ai.errors import BadRequestError, ConflictError, NotFoundError, PermissionDeniedError
from oneflow_ai.storage.projects import ProjectRepository
from oneflow_ai.storage.tables import Membership, User
from oneflow_ai.storage.users import UserRepository

__all__ = ["UserManager", "UserView", "normalize_email"]

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def normalize_email(email: str) -> str:
    value = email.strip().lower()
    if len(value) > 320 or not _EMAIL.match(value):
        raise BadRequestError("Invalid email address", param="email")
    return value


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise BadRequestError(
            f"The password needs at least {MIN_PASSWORD_LENGTH} characters", param="password"
        )
    if len(password) > 1024:
        raise BadRequestError("The password is too long", param="password")


@dataclass(frozen=True, slots=True)
class UserView:
    user: User
    memberships: tuple[Membership, ...]


class UserManager:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        passwords: PasswordHashing,
        *,
        clock: Clock = system_clock,
    ) -> None:
        self._sessions = sessionmaker
        self._passwords = passwords
        self._clock = clock

    async def create(
        self,
        actor: Principal,
        *,
        email: str,
        password: str,
        project_id: str,
        role: Role = Role.MEMBER,
    ) -> UserView:
        ensure_permission(actor, Permission.MEMBERS_WRITE)
        ensure_project_access(actor, project_id)
        _ensure_can_grant(actor, role)
        address = normalize_email(email)
        check_password(password)
        password_hash = await self._passwords.hash(password)
        async with self._sessions.begin() as session:
            users = UserRepository(session)
            if await ProjectRepository(session).get(project_id) is None:
                raise NotFoundError(f"No project '{project_id}'", code="project_not_found")
            if await users.by_email(address) is not None:
                raise ConflictError(
                    "A user with this email exists", param="email", code="email_taken"
                )
            user = User(
                id=f"usr_{secrets.token_hex(8)}",
                email=address,
                password_hash=password_hash,
                active=True,
                created_at=self._clock(),
            )
            await users.add(user)
            membership = await users.set_membership(user.id, project_id, role.value)
            return UserView(user, (membership,))

    async def list_users(
        self, actor: Principal, *, project_id: str | None = None
    ) -> list[UserView]:
        if project_id is None and has_permission(actor, Permission.USERS_ADMIN):
            scope = None
        else:
            ensure_permission(actor, Permission.MEMBERS_READ)
            scope = project_id or actor.project_id
            ensure_project_access(actor, scope)
        async with self._sessions() as session:
            users = UserRepository(session)
            found = await users.find(project_id=scope)
            memberships = await users.memberships_of([u.id for u in found])
        by_user: dict[str, list[Membership]] = {}
        for membership in memberships:
            by_user.setdefault(membership.user_id, []).append(membership)
        return [UserView(u, tuple(by_user.get(u.id, ()))) for u in found]

    async def get(self, actor: Principal, user_id: str) -> UserView:
        async with self._sessions() as session:
            users = UserRepository(session)
            user = await users.get(user_id)
            memberships = tuple(await users.memberships(user_id)) if user is not None else ()
        if user is None or not _may_see(actor, user_id, memberships):
            raise NotFoundError(f"No user '{user_id}'", code="user_not_found")
        return UserView(user, memberships)

    async def update(
        self,
        actor: Principal,
        user_id: str,
        *,
        active: bool | None = None,
        password: str | None = None,
    ) -> UserView:
        ensure_permission(actor, Permission.USERS_ADMIN)
        password_hash = None
        if password is not None:
            check_password(password)
            password_hash = await self._passwords.hash(password)
        async with self._sessions.begin() as session:
            users = UserRepository(session)
            user = await users.get(user_id)
            if user is None:
                raise NotFoundError(f"No user '{user_id}'", code="user_not_found")
            if active is not None:
                user.active = active
            if password_hash is not None:
                user.password_hash = password_hash
            return UserView(user, tuple(await users.memberships(user_id)))

    async def set_membership(
        self, actor: Principal, *, project_id: str, user_id: str, role: Role
    ) -> Membership:
        ensure_permission(actor, Permission.MEMBERS_WRITE)
        ensure_project_access(actor, project_id)
        _ensure_can_grant(actor, role)
        async with self._sessions.begin() as session:
            users = UserRepository(session)
            if await ProjectRepository(session).get(project_id) is None:
                raise NotFoundError(f"No project '{project_id}'", code="project_not_found")
            if await users.get(user_id) is None:
                raise NotFoundError(f"No user '{user_id}'", code="user_not_found")
            existing = await users.membership(user_id, project_id)
            if existing is not None:
                _ensure_can_grant(actor, Role(existing.role))
            return await users.set_membership(user_id, project_id, role.value)

    async def remove_membership(self, actor: Principal, *, project_id: str, user_id: str) -> None:
        ensure_permission(actor, Permission.MEMBERS_WRITE)
        ensure_project_access(actor, project_id)
        async with self._sessions.begin() as session:
            users = UserRepository(session)
            existing = await users.membership(user_id, project_id)
            if existing is None:
                raise NotFoundError(
                    f"User '{user_id}' is not a member of '{project_id}'", code="member_not_found"
                )
            _ensure_can_grant(actor, Role(existing.role))
            await users.remove_membership(user_id, project_id)


def _ensure_can_grant(actor: Principal, role: Role) -> None:
    if role_rank(role) > role_rank(actor.role):
        raise PermissionDeniedError(
            f"A {actor.role.value} credential cannot grant the {role.value} role",
            param="role",
            code="role_too_high",
        )


def _may_see(actor: Principal, user_id: str, memberships: tuple[Membership, ...]) -> bool:
    if actor.user_id == user_id or has_permission(actor, Permission.USERS_ADMIN):
        return True
    return has_permission(actor, Permission.MEMBERS_READ) and any(
        m.project_id == actor.project_id for m in memberships
    )
