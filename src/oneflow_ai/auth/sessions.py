"""Signing in: email + password for an access token and a refresh token; refresh; sign out.

Refresh tokens rotate on every use (OAuth 2.0 Security BCP, RFC 9700 §4.14): each refresh marks
the presented token used and issues its successor in the same family. Presenting a used (or
revoked) token again means it leaked: the whole family is revoked, so neither the thief nor the
owner can refresh any more, and the owner signs in again. Access tokens are not stored; they
stay valid until their short expiry (`JWT_ACCESS_TTL_SECONDS`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from oneflow_ai.auth.clock import Clock, system_clock
from oneflow_ai.auth.passwords import PasswordHashing
from oneflow_ai.auth.principal import Role
from oneflow_ai.auth.tokens import TokenCodec
from oneflow_ai.auth.user_manager import normalize_email
from oneflow_ai.errors import AuthenticationError, BadRequestError, PermissionDeniedError
from oneflow_ai.storage.refresh_tokens import RefreshTokenRepository
from oneflow_ai.storage.tables import ADMIN_PROJECT_ID, Membership, RefreshToken
from oneflow_ai.storage.users import UserRepository

__all__ = ["SessionManager", "TokenPair"]


@dataclass(frozen=True, slots=True)
class TokenPair:
    access_token: str
    expires_in: int
    refresh_token: str
    refresh_expires_in: int
    user_id: str
    project_id: str
    role: str


def _pick_project(memberships: list[Membership], wanted: str | None) -> Membership:
    if wanted is not None:
        for membership in memberships:
            if membership.project_id == wanted:
                return membership
        raise PermissionDeniedError(
            "You are not a member of that project", code="project_forbidden"
        )
    if not memberships:
        raise PermissionDeniedError("This user belongs to no project", code="no_project")
    # The admin project first (admins land where they can act), else the oldest membership.
    for membership in memberships:
        if membership.project_id == ADMIN_PROJECT_ID:
            return membership
    return memberships[0]


class SessionManager:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        passwords: PasswordHashing,
        codec: TokenCodec,
        *,
        clock: Clock = system_clock,
    ) -> None:
        self._sessions = sessionmaker
        self._passwords = passwords
        self._codec = codec
        self._clock = clock

    async def login(self, email: str, password: str, *, project_id: str | None = None) -> TokenPair:
        failure = AuthenticationError("Invalid email or password", code="invalid_credentials")
        try:
            address = normalize_email(email)
        except BadRequestError:
            address = None
        async with self._sessions() as session:
            user = await UserRepository(session).by_email(address) if address else None
        # Verify even for an unknown email, so timing does not tell which accounts exist.
        ok = await self._passwords.verify(user.password_hash if user else None, password)
        if user is None or not ok or not user.active:
            raise failure
        rehash = (
            await self._passwords.hash(password)
            if self._passwords.needs_rehash(user.password_hash)
            else None
        )
        async with self._sessions.begin() as session:
            users = UserRepository(session)
            membership = _pick_project(await users.memberships(user.id), project_id)
            if rehash is not None:
                stored = await users.get(user.id)
                if stored is not None:
                    stored.password_hash = rehash
            pair, _ = await self._issue(
                session, user.id, membership.project_id, membership.role, family_id=None
            )
            return pair

    async def refresh(self, refresh_token: str) -> TokenPair:
        claims = self._codec.decode_refresh(refresh_token)
        now = self._clock()
        reused = False
        async with self._sessions.begin() as session:
            tokens = RefreshTokenRepository(session)
            stored = await tokens.get(claims.token_id)
            if stored is None or stored.family_id != claims.family_id:
                raise AuthenticationError("Unknown refresh token", code="invalid_token")
            if not await tokens.claim(stored.id, now):
                await tokens.revoke_family(stored.family_id, now)
                reused = True
            else:
                users = UserRepository(session)
                user = await users.get(stored.user_id)
                membership = await users.membership(stored.user_id, stored.project_id)
                if user is None or not user.active or membership is None:
                    await tokens.revoke_family(stored.family_id, now)
                else:
                    pair, successor = await self._issue(
                        session,
                        user.id,
                        stored.project_id,
                        membership.role,
                        family_id=stored.family_id,
                    )
                    await tokens.set_replacement(stored.id, successor)
                    return pair
        # Reached only after the revocation above is committed.
        if reused:
            raise AuthenticationError(
                "Refresh token reuse detected: every session of this sign-in is revoked",
                code="refresh_token_reused",
            )
        raise AuthenticationError("This account can no longer sign in", code="account_disabled")

    async def logout(self, refresh_token: str) -> None:
        """Revoke the refresh token's whole family (this sign-in on every device it reached)."""
        claims = self._codec.decode_refresh(refresh_token)
        async with self._sessions.begin() as session:
            tokens = RefreshTokenRepository(session)
            stored = await tokens.get(claims.token_id)
            if stored is None or stored.family_id != claims.family_id:
                raise AuthenticationError("Unknown refresh token", code="invalid_token")
            await tokens.revoke_family(stored.family_id, self._clock())

    async def _issue(
        self,
        session: AsyncSession,
        user_id: str,
        project_id: str,
        role: str,
        *,
        family_id: str | None,
    ) -> tuple[TokenPair, str]:
        """A new access token and a new refresh token (stored); returns the pair and its jti."""
        now = self._clock()
        token_id = uuid.uuid4().hex
        family = family_id or uuid.uuid4().hex
        refresh = self._codec.issue_refresh(
            user_id=user_id, project_id=project_id, token_id=token_id, family_id=family
        )
        await RefreshTokenRepository(session).add(
            RefreshToken(
                id=token_id,
                family_id=family,
                user_id=user_id,
                project_id=project_id,
                issued_at=now,
                expires_at=now + timedelta(seconds=refresh.expires_in),
            )
        )
        access = self._codec.issue_access(
            user_id=user_id, project_id=project_id, role=Role(role).value
        )
        pair = TokenPair(
            access_token=access.token,
            expires_in=access.expires_in,
            refresh_token=refresh.token,
            refresh_expires_in=refresh.expires_in,
            user_id=user_id,
            project_id=project_id,
            role=role,
        )
        return pair, token_id
