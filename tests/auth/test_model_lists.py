"""Model allow-lists on a real database: stored as catalog ids, old alias lists still honoured."""

from __future__ import annotations

import pytest
from sqlalchemy import update

from oneflow_ai.auth.permissions import ensure_model_allowed
from oneflow_ai.auth.principal import MASTER, Principal, PrincipalKind, Role
from oneflow_ai.errors import BadRequestError, PermissionDeniedError
from oneflow_ai.storage.tables import ApiKey
from tests.auth.conftest import IdentityEnv

HAIKU = "claude-3-haiku-20240307"


async def test_a_restricted_creator_may_name_its_models_by_alias(env: IdentityEnv) -> None:
    await env.identity.projects.create(MASTER, name="Acme", project_id="acme")
    creator = Principal(
        kind=PrincipalKind.API_KEY,
        project_id="acme",
        role=Role.MEMBER,
        key_id="key_x",
        allowed_models=frozenset({HAIKU, "gpt-4o"}),
    )
    keys = env.identity.keys
    made = await keys.create(
        creator, project_id="acme", name="b", allowed_models=["claude-3-haiku", HAIKU]
    )
    assert made.row.allowed_models == [HAIKU]
    with pytest.raises(PermissionDeniedError):
        await keys.create(creator, project_id="acme", name="c", allowed_models=["gpt-4"])
    with pytest.raises(BadRequestError, match="Unknown model 'gpt-4o-maxi'") as caught:
        await keys.create(creator, project_id="acme", name="d", allowed_models=["gpt-4o-maxi"])
    assert caught.value.status == 400 and caught.value.param == "allowed_models"
    assert [k.name for k in await keys.list_keys(MASTER, project_id="acme")] == ["b"]


async def test_a_list_stored_with_aliases_is_read_as_catalog_ids(env: IdentityEnv) -> None:
    await env.identity.projects.create(MASTER, name="Acme", project_id="acme")
    keys = env.identity.keys
    old = await keys.create(MASTER, project_id="acme", name="old", allowed_models=["gpt-4o"])
    async with env.engine.begin() as conn:  # as lists were stored before aliases were resolved
        stored = ["claude-3-haiku", "gpt-4o", "a-retired-model"]
        await conn.execute(
            update(ApiKey).where(ApiKey.id == old.row.id).values(allowed_models=stored)
        )
    principal = await env.identity.authenticate(old.key)
    assert principal.allowed_models == frozenset({HAIKU, "gpt-4o", "a-retired-model"})
    ensure_model_allowed(principal, HAIKU)
    with pytest.raises(PermissionDeniedError):
        ensure_model_allowed(principal, "gpt-4")
    rotated = await keys.rotate(MASTER, old.row.id)
    assert rotated.row.allowed_models == ["a-retired-model", HAIKU, "gpt-4o"]
