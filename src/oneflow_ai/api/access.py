"""Who may read and change a project's billing: admins everything, members their own project.

A first cut on ``Principal.role`` and ``Principal.project_id``; the fuller permission system
replaces these two functions.
"""

from __future__ import annotations

from oneflow_ai.auth.principal import Principal, Role
from oneflow_ai.errors import PermissionDeniedError

__all__ = ["readable_project", "require_admin"]


def require_admin(principal: Principal) -> None:
    """Only admins change credits, billing modes and budgets."""
    if principal.role is not Role.ADMIN:
        raise PermissionDeniedError("Only an admin can change credits and budgets")


def readable_project(principal: Principal, project_id: str | None) -> str | None:
    """The project a caller may read: any (``None`` = all) for admins, else their own."""
    if principal.role is Role.ADMIN:
        return project_id
    if project_id is not None and project_id != principal.project_id:
        raise PermissionDeniedError(f"You cannot read the usage of project '{project_id}'")
    return principal.project_id
