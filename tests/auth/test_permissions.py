"""The permission table: roles, system scope, project scope, model allow-lists."""

from __future__ import annotations

import dataclasses

import pytest

from oneflow_ai.auth.permissions import (
    Permission,
    ensure_model_allowed,
    ensure_permission,
    ensure_project_access,
    has_permission,
)
from oneflow_ai.auth.principal import MASTER, Principal, PrincipalKind, Role
from oneflow_ai.errors import PermissionDeniedError
from oneflow_ai.storage.tables import ADMIN_PROJECT_ID


def key(role: Role, project: str = "proj_a", models: frozenset[str] | None = None) -> Principal:
    return Principal(
        kind=PrincipalKind.API_KEY, project_id=project, role=role, allowed_models=models
    )


EXPECTED = {
    Role.VIEWER: {"self:read", "models:read", "usage:read", "project:read", "keys:read"},
    Role.MEMBER: {
        "self:read",
        "models:read",
        "usage:read",
        "project:read",
        "keys:read",
        "gateway",
        "keys:write",
    },
    Role.ADMIN: {
        "self:read",
        "models:read",
        "usage:read",
        "project:read",
        "keys:read",
        "gateway",
        "keys:write",
        "members:read",
        "members:write",
    },
}


@pytest.mark.parametrize("role", list(Role))
def test_each_role_has_exactly_its_permissions(role: Role) -> None:
    granted = {p.value for p in Permission if has_permission(key(role), p)}
    assert granted == EXPECTED[role]


@pytest.mark.parametrize("role", list(Role))
def test_a_self_service_session_reads_its_own_data_only(role: Role) -> None:
    session = dataclasses.replace(key(role, ADMIN_PROJECT_ID), self_only=True)
    assert {p.value for p in Permission if has_permission(session, p)} == {"self:read"}
    assert not session.is_system_admin
    with pytest.raises(PermissionDeniedError) as refused:
        ensure_permission(session, Permission.USAGE_READ)
    assert refused.value.code == "self_service_only"


def test_system_permissions_need_the_admin_project() -> None:
    system_admin = key(Role.ADMIN, ADMIN_PROJECT_ID)
    assert has_permission(system_admin, Permission.PROJECTS_ADMIN)
    assert has_permission(system_admin, Permission.USERS_ADMIN)
    assert has_permission(MASTER, Permission.PROJECTS_ADMIN)
    assert not has_permission(key(Role.MEMBER, ADMIN_PROJECT_ID), Permission.PROJECTS_ADMIN)
    with pytest.raises(PermissionDeniedError, match="projects:admin"):
        ensure_permission(key(Role.ADMIN), Permission.PROJECTS_ADMIN)


def test_project_scope() -> None:
    ensure_project_access(key(Role.ADMIN), "proj_a")
    ensure_project_access(MASTER, "proj_b")
    with pytest.raises(PermissionDeniedError):
        ensure_project_access(key(Role.ADMIN), "proj_b")


def test_model_allow_list() -> None:
    ensure_model_allowed(key(Role.MEMBER), "gpt-4o")  # no list: every model
    limited = key(Role.MEMBER, models=frozenset({"gpt-4o-mini"}))
    ensure_model_allowed(limited, "gpt-4o-mini")
    with pytest.raises(PermissionDeniedError) as caught:
        ensure_model_allowed(limited, "gpt-4o")
    assert caught.value.param == "model"
    assert caught.value.code == "model_not_allowed"
