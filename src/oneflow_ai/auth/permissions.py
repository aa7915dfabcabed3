"""Roles and what each may do: one small table, checked on every endpoint.

    permission       viewer  member  admin  scope
    self:read          ✓       ✓       ✓     the caller's own key or user: usage, requests
    models:read        ✓       ✓       ✓
    usage:read         ✓       ✓       ✓     own project
    project:read       ✓       ✓       ✓     own project
    keys:read          ✓       ✓       ✓     own project
    gateway            .       ✓       ✓     call models (chat, images, speech, estimate)
    keys:write         .       ✓       ✓     own project; a key never outranks its creator
    members:read       .       .       ✓     own project
    members:write      .       .       ✓     own project
    users:admin        .       .       ✓     system admins only
    projects:admin     .       .       ✓     system admins only

A system admin is an admin of the built-in admin project (`proj_admin`): the master key, or
any key or user given that role there. It acts on every project.

A self-service session (`Principal.self_only`, what `POST /api/v1/auth/key-session` gives an
API key holder) has `self:read` alone, whatever the key's role.
"""

from __future__ import annotations

import enum

from oneflow_ai.auth.principal import Principal, Role
from oneflow_ai.errors import PermissionDeniedError

__all__ = [
    "ROLE_PERMISSIONS",
    "SYSTEM_PERMISSIONS",
    "Permission",
    "ensure_model_allowed",
    "ensure_permission",
    "ensure_project_access",
    "has_permission",
    "may_use",
    "role_rank",
]


class Permission(enum.StrEnum):
    SELF_READ = "self:read"
    MODELS_READ = "models:read"
    USAGE_READ = "usage:read"
    PROJECT_READ = "project:read"
    KEYS_READ = "keys:read"
    GATEWAY = "gateway"
    KEYS_WRITE = "keys:write"
    MEMBERS_READ = "members:read"
    MEMBERS_WRITE = "members:write"
    USERS_ADMIN = "users:admin"
    PROJECTS_ADMIN = "projects:admin"
    OPERATIONS_READ = "operations:read"  # gateway-wide state: circuit breakers


_VIEWER = frozenset(
    {
        Permission.SELF_READ,
        Permission.MODELS_READ,
        Permission.USAGE_READ,
        Permission.PROJECT_READ,
        Permission.KEYS_READ,
    }
)
_MEMBER = _VIEWER | {Permission.GATEWAY, Permission.KEYS_WRITE}
_ADMIN = frozenset(Permission)

ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.VIEWER: _VIEWER,
    Role.MEMBER: frozenset(_MEMBER),
    Role.ADMIN: _ADMIN,
}
# Granted only to admins of the admin project.
SYSTEM_PERMISSIONS = frozenset(
    {Permission.USERS_ADMIN, Permission.PROJECTS_ADMIN, Permission.OPERATIONS_READ}
)

_RANK = {Role.VIEWER: 0, Role.MEMBER: 1, Role.ADMIN: 2}


def role_rank(role: Role) -> int:
    return _RANK[role]


def has_permission(principal: Principal, permission: Permission) -> bool:
    if principal.self_only:
        return permission is Permission.SELF_READ
    if permission not in ROLE_PERMISSIONS[principal.role]:
        return False
    return permission not in SYSTEM_PERMISSIONS or principal.is_system_admin


def ensure_permission(principal: Principal, permission: Permission) -> None:
    if not has_permission(principal, permission):
        if principal.self_only:
            raise PermissionDeniedError(
                "A self-service session reads its own key's usage and requests only",
                code="self_service_only",
            )
        raise PermissionDeniedError(
            f"This {principal.role.value} credential lacks the '{permission.value}' permission",
            code="insufficient_permissions",
        )


def ensure_project_access(principal: Principal, project_id: str) -> None:
    """A principal acts on its own project; system admins on every project."""
    if principal.project_id != project_id and not principal.is_system_admin:
        raise PermissionDeniedError(
            "This credential has no access to that project", code="project_forbidden"
        )


def may_use(principal: Principal, model_id: str) -> bool:
    """Whether the credential's allow-list (catalog ids; none: every model) holds the model
    with this catalog id. Callers resolve aliases first (a `ModelEntry`'s id)."""
    return principal.allowed_models is None or model_id in principal.allowed_models


def ensure_model_allowed(principal: Principal, model_id: str) -> None:
    """Refuse the model with this catalog id when it is outside the credential's allow-list."""
    if not may_use(principal, model_id):
        raise PermissionDeniedError(
            f"This API key may not use the model '{model_id}'",
            param="model",
            code="model_not_allowed",
        )
