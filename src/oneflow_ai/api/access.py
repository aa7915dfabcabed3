"""Who may read and change a project's billing, on top of the role table in auth/permissions.

usage, requests, credits, ledger, budgets (read)   usage:read, own project; system admins: all
one's own usage and requests (scope=self)           self:read (every role, self-service sessions)
budgets, the request log's policy (write)           admins of the project; system admins: all
top-ups, adjustments, billing mode                  system admins only (they move money)
"""

from __future__ import annotations

from dataclasses import dataclass

from oneflow_ai.auth.permissions import Permission, ensure_permission, ensure_project_access
from oneflow_ai.auth.principal import Principal, Role
from oneflow_ai.errors import BadRequestError, PermissionDeniedError

__all__ = [
    "ReadScope",
    "read_scope",
    "readable_project",
    "require_budget_admin",
    "require_credits_admin",
    "require_project_admin",
]


def readable_project(principal: Principal, project_id: str | None) -> str | None:
    """The project whose usage a caller reads: any (``None`` = all) for system admins, else
    its own (403 when it asks for another)."""
    ensure_permission(principal, Permission.USAGE_READ)
    if principal.is_system_admin:
        return project_id
    if project_id is not None:
        ensure_project_access(principal, project_id)
    return principal.project_id


@dataclass(frozen=True, slots=True)
class ReadScope:
    """The records a caller may read: a project (``None``: all), narrowed to one key or user
    when it reads its own."""

    project_id: str | None
    user_id: str | None = None
    key_id: str | None = None

    def narrow(self, name: str, asked: str | None) -> str | None:
        """The ``user_id``/``key_id`` filter to apply: the caller's own when the scope fixes
        one (403 if it asked for another), else what it asked for."""
        own: str | None = getattr(self, name)
        if own is None:
            return asked
        if asked is not None and asked != own:
            raise PermissionDeniedError(
                "Your own records only: leave out the filter or name your own",
                code="self_scope",
            )
        return own


def read_scope(principal: Principal, project_id: str | None, *, own: bool) -> ReadScope:
    """With ``own`` (``scope=self``), and always for a self-service session, the caller's own
    records: its key's, or its user's in its project. Otherwise what
    :func:`readable_project` allows."""
    if not (own or principal.self_only):
        return ReadScope(readable_project(principal, project_id))
    ensure_permission(principal, Permission.SELF_READ)
    if project_id is not None and project_id != principal.project_id:
        raise PermissionDeniedError(
            "This credential has no access to that project", code="project_forbidden"
        )
    if principal.key_id is not None:
        return ReadScope(principal.project_id, key_id=principal.key_id)
    if principal.user_id is not None:
        return ReadScope(principal.project_id, user_id=principal.user_id)
    raise BadRequestError(
        "The master key has no records of its own: leave out scope=self", param="scope"
    )


def require_credits_admin(principal: Principal) -> None:
    """Top-ups, adjustments and billing modes move money: system admins only."""
    ensure_permission(principal, Permission.PROJECTS_ADMIN)


def require_budget_admin(principal: Principal, project_id: str) -> None:
    """A project's admins set its budgets; system admins set anyone's."""
    require_project_admin(principal, project_id, "change budgets")


def require_project_admin(principal: Principal, project_id: str, what: str) -> None:
    """Admins of ``project_id`` (and system admins) only; ``what`` names the action."""
    if principal.role is not Role.ADMIN or principal.self_only:
        raise PermissionDeniedError(
            f"This {principal.role.value} credential cannot {what}",
            code="insufficient_permissions",
        )
    ensure_project_access(principal, project_id)
