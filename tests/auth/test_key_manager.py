"""API keys on a real database: hot-path resolution, rotation with grace, revocation, rules."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from oneflow_ai.auth.principal import MASTER, Principal, PrincipalKind, Role
from oneflow_ai.domain.limits import LimitPolicy
from oneflow_ai.errors import (
    AuthenticationError,
    BadRequestError,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
)
from oneflow_ai.storage.tables import ADMIN_PROJECT_ID
from tests.auth.conftest import IdentityEnv


async def _project(env: IdentityEnv, project_id: str = "acme", **kw: object) -> None:
    await env.identity.projects.create(MASTER, name=project_id.title(), project_id=project_id, **kw)


async def test_a_warm_key_is_resolved_without_touching_the_database(env: IdentityEnv) -> None:
    await _project(env)
    new = await env.identity.keys.create(
        MASTER,
        project_id="acme",
        name="ci",
        allowed_models=["gpt-3.5-turbo", "claude-3-haiku"],
        limits=LimitPolicy(requests_per_minute=5),
    )
    assert new.key.startswith("sk-of-") and new.row.secret_hash not in new.key
    env.queries.clear()
    principal = await env.identity.authenticate(new.key)
    assert len(env.queries) == 1  # the first use loads the key (and its project) once
    assert principal.kind is PrincipalKind.API_KEY
    assert (principal.project_id, principal.role, principal.key_id) == (
        "acme",
        Role.MEMBER,
        new.row.id,
    )
    assert principal.allowed_models == frozenset({"gpt-3.5-turbo", "claude-3-haiku-20240307"})
    assert principal.limits == LimitPolicy(requests_per_minute=5)
    assert not principal.unlimited
    env.queries.clear()
    for _ in range(50):
        assert await env.identity.authenticate(new.key) == principal
    assert env.queries == []  # warm: no round trip per request
    # A wrong secret behind a known prefix is refused from the cache as well.
    prefix = new.key.rsplit("-", 1)[0]
    with pytest.raises(AuthenticationError, match="Invalid API key"):
        await env.identity.authenticate(new.key[:-3] + "xyz")
    with pytest.raises(AuthenticationError):
        await env.identity.authenticate(prefix + "-" + "A" * 43)
    assert env.queries == []


async def test_unknown_keys_are_refused_and_briefly_remembered(env: IdentityEnv) -> None:
    unknown = "sk-of-0123456789ab-" + "z" * 43
    for _ in range(3):
        with pytest.raises(AuthenticationError, match="Invalid API key"):
            await env.identity.authenticate(unknown)
    assert len(env.queries) == 1
    with pytest.raises(AuthenticationError):
        await env.identity.authenticate("sk-something-else")


async def test_master_key_is_the_bootstrap_admin(env: IdentityEnv) -> None:
    master = env.identity.settings.oneflow_master_key.get_secret_value()
    principal = await env.identity.authenticate(master)
    assert principal is MASTER and principal.is_system_admin and principal.unlimited


async def test_rotated_key_works_during_the_grace_period_and_fails_after(env: IdentityEnv) -> None:
    await _project(env)
    old = await env.identity.keys.create(MASTER, project_id="acme", name="svc")
    await env.identity.authenticate(old.key)  # cached before the rotation
    new = await env.identity.keys.rotate(MASTER, old.row.id, grace=timedelta(minutes=30))
    assert new.row.rotated_from == old.row.id and new.row.name == "svc"
    assert new.previous_valid_until == env.clock() + timedelta(minutes=30)
    env.clock.advance(29 * 60)
    assert (await env.identity.authenticate(old.key)).key_id == old.row.id
    assert (await env.identity.authenticate(new.key)).key_id == new.row.id
    env.clock.advance(61)
    with pytest.raises(AuthenticationError) as caught:
        await env.identity.authenticate(old.key)
    assert caught.value.code == "key_rotated"
    assert (await env.identity.authenticate(new.key)).key_id == new.row.id
    # A rotated key cannot be rotated again; its successor can.
    with pytest.raises(ConflictError):
        await env.identity.keys.rotate(MASTER, old.row.id)
    await env.identity.keys.rotate(MASTER, new.row.id)


async def test_default_grace_comes_from_the_settings(env: IdentityEnv) -> None:
    await _project(env)
    old = await env.identity.keys.create(MASTER, project_id="acme", name="svc")
    await env.identity.keys.rotate(MASTER, old.row.id)  # API_KEY_ROTATION_GRACE_HOURS=1 here
    env.clock.advance(3599)
    await env.identity.authenticate(old.key)
    env.clock.advance(2)
    with pytest.raises(AuthenticationError):
        await env.identity.authenticate(old.key)


async def test_revocation_is_immediate_in_this_process(env: IdentityEnv) -> None:
    await _project(env)
    new = await env.identity.keys.create(MASTER, project_id="acme", name="svc")
    await env.identity.authenticate(new.key)
    revoked = await env.identity.keys.revoke(MASTER, new.row.id)
    assert revoked.revoked_at == env.clock()
    with pytest.raises(AuthenticationError) as caught:
        await env.identity.authenticate(new.key)
    assert caught.value.code == "key_revoked"
    with pytest.raises(ConflictError):
        await env.identity.keys.rotate(MASTER, new.row.id)


async def test_keys_expire(env: IdentityEnv) -> None:
    await _project(env)
    new = await env.identity.keys.create(
        MASTER, project_id="acme", name="tmp", expires_at=env.clock() + timedelta(hours=1)
    )
    await env.identity.authenticate(new.key)
    env.clock.advance(3600)
    with pytest.raises(AuthenticationError) as caught:
        await env.identity.authenticate(new.key)
    assert caught.value.code == "key_expired"
    with pytest.raises(BadRequestError):
        await env.identity.keys.create(
            MASTER, project_id="acme", name="x", expires_at=env.clock() - timedelta(seconds=1)
        )


async def test_rotation_keeps_the_keys_lifetime(env: IdentityEnv) -> None:
    await _project(env)
    old = await env.identity.keys.create(
        MASTER, project_id="acme", name="x", expires_at=env.clock() + timedelta(days=30)
    )
    env.clock.advance(86400)
    new = await env.identity.keys.rotate(MASTER, old.row.id)
    assert new.row.expires_at == env.clock() + timedelta(days=30)


def _key(role: Role, project: str = "acme", models: frozenset[str] | None = None) -> Principal:
    return Principal(
        kind=PrincipalKind.API_KEY,
        project_id=project,
        role=role,
        key_id="key_x",
        allowed_models=models,
    )


async def test_who_may_create_which_key(env: IdentityEnv) -> None:
    await _project(env)
    await _project(env, "other")
    keys = env.identity.keys
    with pytest.raises(PermissionDeniedError):  # viewers only read
        await keys.create(_key(Role.VIEWER), project_id="acme", name="x")
    with pytest.raises(PermissionDeniedError, match="cannot create an admin key"):
        await keys.create(_key(Role.MEMBER), project_id="acme", name="x", role=Role.ADMIN)
    with pytest.raises(PermissionDeniedError, match="per-key limits"):
        await keys.create(
            _key(Role.MEMBER),
            project_id="acme",
            name="x",
            limits=LimitPolicy(requests_per_minute=10**6),
        )
    with pytest.raises(PermissionDeniedError, match="unlimited"):
        await keys.create(
            _key(Role.ADMIN), project_id="acme", name="x", role=Role.ADMIN, unlimited=True
        )
    with pytest.raises(PermissionDeniedError, match="unlimited"):
        await keys.create(MASTER, project_id="acme", name="x", unlimited=True)  # a member key
    with pytest.raises(PermissionDeniedError, match="no access"):
        await keys.create(_key(Role.ADMIN), project_id="other", name="x")
    with pytest.raises(NotFoundError):
        await keys.create(MASTER, project_id="nowhere", name="x")
    restricted = _key(Role.MEMBER, models=frozenset({"gpt-3.5-turbo"}))
    with pytest.raises(PermissionDeniedError):
        await keys.create(restricted, project_id="acme", name="x")
    with pytest.raises(PermissionDeniedError):
        await keys.create(restricted, project_id="acme", name="x", allowed_models=["gpt-4o"])
    made = await keys.create(
        restricted, project_id="acme", name="x", allowed_models=["gpt-3.5-turbo"]
    )
    assert made.row.allowed_models == ["gpt-3.5-turbo"]
    admin = await keys.create(
        MASTER, project_id=ADMIN_PROJECT_ID, name="ops", role=Role.ADMIN, unlimited=True
    )
    principal = await env.identity.authenticate(admin.key)
    assert principal.unlimited and principal.is_system_admin


async def test_a_key_is_never_changed_by_a_lower_role_or_another_project(env: IdentityEnv) -> None:
    await _project(env)
    await _project(env, "other")
    keys = env.identity.keys
    admin_key = await keys.create(MASTER, project_id="acme", name="a", role=Role.ADMIN)
    with pytest.raises(PermissionDeniedError, match="cannot change an admin key"):
        await keys.rotate(_key(Role.MEMBER), admin_key.row.id)  # would hand out an admin secret
    with pytest.raises(PermissionDeniedError):
        await keys.revoke(_key(Role.MEMBER), admin_key.row.id)
    with pytest.raises(NotFoundError):  # other projects' keys do not exist for the caller
        await keys.get(_key(Role.ADMIN, "other"), admin_key.row.id)
    with pytest.raises(NotFoundError):
        await keys.revoke(_key(Role.ADMIN, "other"), admin_key.row.id)
    assert [k.id for k in await keys.list_keys(_key(Role.VIEWER, "other"))] == []
    listed = await keys.list_keys(_key(Role.VIEWER))
    assert [k.id for k in listed] == [admin_key.row.id]
    with pytest.raises(PermissionDeniedError):
        await keys.list_keys(_key(Role.VIEWER), project_id="other")


async def test_rotate_due_rotates_old_live_keys_once(env: IdentityEnv) -> None:
    await _project(env)
    keys = env.identity.keys
    old = await keys.create(MASTER, project_id="acme", name="old")
    gone = await keys.create(MASTER, project_id="acme", name="revoked")
    await keys.revoke(MASTER, gone.row.id)
    env.clock.advance(80 * 86400)
    young = await keys.create(MASTER, project_id="acme", name="young")
    env.clock.advance(11 * 86400)  # old: 91 days, young: 11 days
    rotated = await keys.rotate_due(max_age=timedelta(days=90), grace=timedelta(hours=2))
    assert [(o.id, n.row.rotated_from) for o, n in rotated] == [(old.row.id, old.row.id)]
    assert rotated[0][1].previous_valid_until == env.clock() + timedelta(hours=2)
    assert await keys.rotate_due(max_age=timedelta(days=90)) == []  # not twice
    await env.identity.authenticate(old.key)  # in its grace period
    await env.identity.authenticate(young.key)
    await env.identity.authenticate(rotated[0][1].key)


async def test_last_used_is_written_in_batches(env: IdentityEnv) -> None:
    await _project(env)
    new = await env.identity.keys.create(MASTER, project_id="acme", name="x")
    await env.identity.authenticate(new.key)
    env.clock.advance(5)
    await env.identity.authenticate(new.key)
    assert (await env.identity.keys.get(MASTER, new.row.id)).last_used_at is None
    await env.identity.last_used.flush()
    assert (await env.identity.keys.get(MASTER, new.row.id)).last_used_at == env.clock()


async def test_project_limits_reach_cached_keys(env: IdentityEnv) -> None:
    await _project(env, limits=LimitPolicy(requests_per_minute=100))
    new = await env.identity.keys.create(MASTER, project_id="acme", name="x")
    assert (await env.identity.authenticate(new.key)).project_limits == LimitPolicy(
        requests_per_minute=100
    )
    await env.identity.projects.update(MASTER, "acme", limits=LimitPolicy(tokens_per_minute=10))
    principal = await env.identity.authenticate(new.key)
    assert principal.project_limits == LimitPolicy(tokens_per_minute=10)


async def test_concurrent_first_uses_share_one_query(env: IdentityEnv) -> None:
    import asyncio

    await _project(env)
    new = await env.identity.keys.create(MASTER, project_id="acme", name="x")
    env.queries.clear()
    callers = [asyncio.create_task(env.identity.authenticate(new.key)) for _ in range(50)]
    await asyncio.sleep(0)
    callers[0].cancel()  # the first caller goes away; the others still get their answer
    results = await asyncio.gather(*callers, return_exceptions=True)
    assert isinstance(results[0], asyncio.CancelledError)
    assert {r.key_id for r in results[1:]} == {new.row.id}  # type: ignore[union-attr]
    assert len(env.queries) == 1


async def test_concurrent_edits_of_different_limits_both_take_effect(env: IdentityEnv) -> None:
    """The key's row is locked while an edit merges its limits: two edits at once, each of
    one limit, leave both (neither overwrites the other with the limits it read)."""
    await _project(env)
    key = await env.identity.keys.create(MASTER, project_id="acme", name="svc")
    for round_ in range(5):
        await asyncio.gather(
            env.identity.keys.update(
                MASTER, key.row.id, limits={"requests_per_minute": 10 + round_}
            ),
            env.identity.keys.update(
                MASTER, key.row.id, limits={"tokens_per_minute": 1000 + round_}
            ),
        )
        stored = await env.identity.keys.get(MASTER, key.row.id)
        assert stored.limits == {
            "requests_per_minute": 10 + round_,
            "tokens_per_minute": 1000 + round_,
        }


async def test_an_edit_reaches_the_cached_principal_at_once(env: IdentityEnv) -> None:
    await _project(env)
    key = await env.identity.keys.create(MASTER, project_id="acme", name="svc")
    assert (await env.identity.authenticate(key.key)).limits is None  # cached
    await env.identity.keys.update(
        MASTER, key.row.id, limits={"requests_per_hour": 7}, allowed_models=["claude-3-haiku"]
    )
    principal = await env.identity.authenticate(key.key)
    assert principal.limits == LimitPolicy(requests_per_hour=7)
    assert principal.allowed_models == frozenset({"claude-3-haiku-20240307"})


async def test_concurrent_edits_of_a_projects_limits_both_take_effect(env: IdentityEnv) -> None:
    """The same for a project's aggregate limits (SQLite too, which has no row locks)."""
    await _project(env)
    for round_ in range(5):
        await asyncio.gather(
            env.identity.projects.update(
                MASTER, "acme", limits={"requests_per_minute": 10 + round_}
            ),
            env.identity.projects.update(
                MASTER, "acme", limits={"tokens_per_minute": 1000 + round_}
            ),
        )
        stored = await env.identity.projects.get(MASTER, "acme")
        assert stored.limits == {
            "requests_per_minute": 10 + round_,
            "tokens_per_minute": 1000 + round_,
        }


async def test_an_expired_key_can_be_given_a_new_expiry(env: IdentityEnv) -> None:
    await _project(env)
    key = await env.identity.keys.create(
        MASTER, project_id="acme", name="svc", expires_at=env.clock() + timedelta(hours=1)
    )
    env.clock.advance(3601)
    with pytest.raises(AuthenticationError):
        await env.identity.authenticate(key.key)
    await env.identity.keys.update(MASTER, key.row.id, expires_at=env.clock() + timedelta(days=1))
    assert (await env.identity.authenticate(key.key)).key_id == key.row.id
    with pytest.raises(BadRequestError, match="future"):
        await env.identity.keys.update(MASTER, key.row.id, expires_at=env.clock())
