"""Who is calling and what they may do: principals, API keys, JWTs, users, projects, roles.

The request path uses `Identity.authenticate` (through `api/deps.py`); the permission helpers
(`ensure_permission`, `ensure_project_access`, `ensure_model_allowed`) are plain functions any
layer above can call with a `Principal`.
"""

from __future__ import annotations

from oneflow_ai.auth.identity import Identity
from oneflow_ai.auth.permissions import (
    Permission,
    ensure_model_allowed,
    ensure_permission,
    ensure_project_access,
    has_permission,
)
from oneflow_ai.auth.principal import MASTER, Principal, PrincipalKind, Role

__all__ = [
    "MASTER",
    "Identity",
    "Permission",
    "Principal",
    "PrincipalKind",
    "Role",
    "ensure_model_allowed",
    "ensure_permission",
    "ensure_project_access",
    "has_permission",
]
