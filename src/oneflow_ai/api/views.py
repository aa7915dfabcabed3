"""How identities look on the wire: keys, users, memberships, projects (never a secret)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from oneflow_ai.auth.api_keys import KEY_PREFIX
from oneflow_ai.auth.key_manager import key_status
from oneflow_ai.auth.principal import Principal
from oneflow_ai.auth.user_manager import UserView
from oneflow_ai.storage.tables import ApiKey, Membership, Project

__all__ = [
    "key_view",
    "list_view",
    "membership_view",
    "principal_view",
    "project_view",
    "user_view",
]


def list_view(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"object": "list", "data": items}


def key_view(key: ApiKey, now: datetime) -> dict[str, Any]:
    return {
        "object": "api_key",
        "id": key.id,
        "name": key.name,
        "project_id": key.project_id,
        "prefix": f"{KEY_PREFIX}{key.prefix}",
        "role": key.role,
        "status": key_status(key, now),
        "created_at": key.created_at,
        "created_by": key.created_by,
        "expires_at": key.expires_at,
        "revoked_at": key.revoked_at,
        "grace_until": key.grace_until,
        "rotated_from": key.rotated_from,
        "allowed_models": key.allowed_models,
        "limits": key.limits,
        "unlimited": key.unlimited,
        "last_used_at": key.last_used_at,
    }


def membership_view(membership: Membership) -> dict[str, Any]:
    return {
        "object": "membership",
        "user_id": membership.user_id,
        "project_id": membership.project_id,
        "role": membership.role,
        "created_at": membership.created_at,
    }


def user_view(view: UserView) -> dict[str, Any]:
    return {
        "object": "user",
        "id": view.user.id,
        "email": view.user.email,
        "active": view.user.active,
        "created_at": view.user.created_at,
        "memberships": [{"project_id": m.project_id, "role": m.role} for m in view.memberships],
    }


def project_view(project: Project) -> dict[str, Any]:
    return {
        "object": "project",
        "id": project.id,
        "name": project.name,
        "created_at": project.created_at,
        "limits": project.limits,
        "cache": project.cache,
    }


def principal_view(principal: Principal) -> dict[str, Any]:
    return {
        "object": "principal",
        "kind": principal.kind.value,
        "project_id": principal.project_id,
        "role": principal.role.value,
        "key_id": principal.key_id,
        "user_id": principal.user_id,
        "allowed_models": sorted(principal.allowed_models)
        if principal.allowed_models is not None
        else None,
        "unlimited": principal.unlimited,
        "system_admin": principal.is_system_admin,
    }
