"""Signing in, refreshing (rotated every time; reuse revokes the family) and signing out."""

from __future__ import annotations

import contextlib

import pytest

from oneflow_ai.auth.principal import MASTER, PrincipalKind, Role
from oneflow_ai.errors import (
    AuthenticationError,
    BadRequestError,
    ConflictError,
    PermissionDeniedError,
)
from tests.auth.conftest import IdentityEnv

PASSWORD = "correct horse battery"


async def _user(env: IdentityEnv, email: str = "ana@example.com", role: Role = Role.MEMBER) -> str:
    with contextlib.suppress(ConflictError):
        await env.identity.projects.create(MASTER, name="Acme", project_id="acme")
    view = await env.identity.users.create(
        MASTER, email=email, password=PASSWORD, project_id="acme", role=role
    )
    return view.user.id


async def test_sign_in_gives_tokens_that_authenticate(env: IdentityEnv) -> None:
    user_id = await _user(env, "Ana@Example.com")
    pair = await env.identity.sessions.login("ana@example.com ", PASSWORD)
    assert (pair.user_id, pair.project_id, pair.role) == (user_id, "acme", "member")
    assert pair.expires_in == 900
    principal = await env.identity.authenticate(pair.access_token)
    assert principal.kind is PrincipalKind.USER
    assert (principal.user_id, principal.project_id, principal.role) == (
        user_id,
        "acme",
        Role.MEMBER,
    )
    env.clock.advance(906)
    with pytest.raises(AuthenticationError, match="Expired"):
        await env.identity.authenticate(pair.access_token)


@pytest.mark.parametrize(
    ("email", "password"),
    [("ana@example.com", "wrong password"), ("nobody@example.com", PASSWORD), ("bad", PASSWORD)],
)
async def test_failed_sign_in_says_the_same_whatever_failed(
    env: IdentityEnv, email: str, password: str
) -> None:
    await _user(env)
    with pytest.raises(AuthenticationError) as caught:
        await env.identity.sessions.login(email, password)
    assert caught.value.message == "Invalid email or password"


async def test_refresh_rotates_and_reuse_revokes_the_whole_family(env: IdentityEnv) -> None:
    await _user(env)
    sessions = env.identity.sessions
    first = await sessions.login("ana@example.com", PASSWORD)
    second = await sessions.refresh(first.refresh_token)
    assert second.refresh_token != first.refresh_token
    assert second.access_token != first.access_token
    third = await sessions.refresh(second.refresh_token)
    # The first token is presented again: stolen. The family dies, the newest token with it.
    with pytest.raises(AuthenticationError) as caught:
        await sessions.refresh(first.refresh_token)
    assert caught.value.code == "refresh_token_reused"
    with pytest.raises(AuthenticationError):
        await sessions.refresh(third.refresh_token)
    # Another sign-in is another family, unaffected.
    other = await sessions.login("ana@example.com", PASSWORD)
    await sessions.refresh(other.refresh_token)


async def test_sign_out_revokes_the_family(env: IdentityEnv) -> None:
    await _user(env)
    sessions = env.identity.sessions
    pair = await sessions.login("ana@example.com", PASSWORD)
    newer = await sessions.refresh(pair.refresh_token)
    await sessions.logout(newer.refresh_token)
    with pytest.raises(AuthenticationError):
        await sessions.refresh(newer.refresh_token)


async def test_refresh_tokens_expire_and_must_be_genuine(env: IdentityEnv) -> None:
    await _user(env)
    pair = await env.identity.sessions.login("ana@example.com", PASSWORD)
    with pytest.raises(AuthenticationError):
        await env.identity.sessions.refresh(pair.access_token)  # wrong type
    env.clock.advance(30 * 86400 + 10)
    with pytest.raises(AuthenticationError, match="Expired"):
        await env.identity.sessions.refresh(pair.refresh_token)


async def test_deactivated_users_cannot_sign_in_or_refresh(env: IdentityEnv) -> None:
    user_id = await _user(env)
    pair = await env.identity.sessions.login("ana@example.com", PASSWORD)
    await env.identity.users.update(MASTER, user_id, active=False)
    with pytest.raises(AuthenticationError):
        await env.identity.sessions.login("ana@example.com", PASSWORD)
    with pytest.raises(AuthenticationError) as caught:
        await env.identity.sessions.refresh(pair.refresh_token)
    assert caught.value.code == "account_disabled"


async def test_refresh_picks_up_role_changes(env: IdentityEnv) -> None:
    user_id = await _user(env)
    pair = await env.identity.sessions.login("ana@example.com", PASSWORD)
    await env.identity.users.set_membership(
        MASTER, project_id="acme", user_id=user_id, role=Role.VIEWER
    )
    refreshed = await env.identity.sessions.refresh(pair.refresh_token)
    assert refreshed.role == "viewer"
    assert (await env.identity.authenticate(refreshed.access_token)).role is Role.VIEWER


async def test_choosing_the_project(env: IdentityEnv) -> None:
    user_id = await _user(env)
    await env.identity.projects.create(MASTER, name="Beta", project_id="beta")
    await env.identity.users.set_membership(
        MASTER, project_id="beta", user_id=user_id, role=Role.ADMIN
    )
    default = await env.identity.sessions.login("ana@example.com", PASSWORD)
    assert default.project_id == "acme"  # the oldest membership
    beta = await env.identity.sessions.login("ana@example.com", PASSWORD, project_id="beta")
    assert (beta.project_id, beta.role) == ("beta", "admin")
    with pytest.raises(PermissionDeniedError):
        await env.identity.sessions.login("ana@example.com", PASSWORD, project_id="proj_admin")


async def test_user_rules(env: IdentityEnv) -> None:
    await _user(env)
    users = env.identity.users
    with pytest.raises(ConflictError):
        await users.create(MASTER, email="ANA@example.com", password=PASSWORD, project_id="acme")
    with pytest.raises(BadRequestError, match="password"):
        await users.create(MASTER, email="b@example.com", password="short", project_id="acme")
    with pytest.raises(BadRequestError, match="email"):
        await users.create(MASTER, email="not-an-email", password=PASSWORD, project_id="acme")
    stored = (await users.list_users(MASTER))[0].user
    assert stored.password_hash.startswith("$argon2id$") and PASSWORD not in stored.password_hash
