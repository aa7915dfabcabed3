"""Who may read and change a project's billing, on top of the role table in auth/permissions.

usage, credits, ledger, budgets (read)   usage:read, own project; system admins: all
budgets (write)                          admins of the project; system admins: all
top-ups, adjustments, billing mode       system admins only (they create or remove money)
"""

from __future__ import annotations

from oneflow_ai.auth.permissions import Permission, ensure_permission, ensure_project_access
from oneflow_ai.auth.principal import Principal, Role
from oneflow_ai.errors import PermissionDeniedError

__all__ = ["readable_project", "require_budget_admin", "require_credits_admin"]


def readable_project(principal: Principal, project_id: str | None) -> str | None:
    """The project whose usage a caller reads: any (``None`` = all) for system admins, else
    its own (403 when it asks for another)."""
    ensure_permission(principal, Permission.USAGE_READ)
    if principal.is_system_admin:
        return project_id
    if project_id is not None:
        ensure_project_access(principal, project_id)
    return principal.project_id


def require_credits_admin(principal: Principal) -> None:
    """Top-ups, adjustments and billing modes move money: system admins only."""
    ensure_permission(principal, Permission.PROJECTS_ADMIN)


def require_budget_admin(principal: Principal, project_id: str) -> None:
    """A project's admins set its budgets; system admins set anyone's."""
    if principal.role is not Role.ADMIN:
        raise PermissionDeniedError(
            f"This {principal.role.value} credential cannot change budgets",
            code="insufficient_permissions",
        )
    ensure_project_access(principal, project_id)
