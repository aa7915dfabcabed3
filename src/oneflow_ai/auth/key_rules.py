"""What a credential may set on the API keys it creates or edits.

A key never outranks the credential that creates or changes it; per-key limits need an admin;
`unlimited` needs a system admin and an admin key; a caller restricted to some models can only
give keys a subset of them (and never "all models"); an expiry is in the future.
"""

from __future__ import annotations

from datetime import datetime

from oneflow_ai.auth.permissions import role_rank
from oneflow_ai.auth.principal import Principal, Role
from oneflow_ai.errors import BadRequestError, PermissionDeniedError

__all__ = ["check_expiry", "check_limits_allowed", "check_models", "check_role", "check_unlimited"]


def check_role(actor: Principal, role: Role, *, verb: str = "create") -> None:
    """403 when a key of `role` would outrank `actor`."""
    if role_rank(role) > role_rank(actor.role):
        raise PermissionDeniedError(
            f"A {actor.role.value} credential cannot {verb} an {role.value} key",
            param="role" if verb == "create" else None,
            code="role_too_high",
        )


def check_limits_allowed(actor: Principal) -> None:
    if actor.role is not Role.ADMIN:
        raise PermissionDeniedError(
            "Only admins set per-key limits", param="limits", code="insufficient_permissions"
        )


def check_unlimited(actor: Principal, role: Role) -> None:
    if not actor.is_system_admin or role is not Role.ADMIN:
        raise PermissionDeniedError(
            "Only system admins create unlimited keys, and only admin keys are unlimited",
            param="unlimited",
            code="insufficient_permissions",
        )


def check_expiry(expires_at: datetime | None, now: datetime) -> None:
    if expires_at is not None and expires_at <= now:
        raise BadRequestError("expires_at must be in the future", param="expires_at")


def check_models(actor: Principal, models: list[str] | None) -> list[str] | None:
    """A key's allow-list (catalog ids, sorted and distinct; None: every model) as `actor`
    may give it."""
    if models is None:
        if actor.allowed_models is not None:
            raise PermissionDeniedError(
                "A model-restricted credential must restrict the keys it creates",
                param="allowed_models",
                code="model_not_allowed",
            )
        return None
    if not models:
        raise BadRequestError("allowed_models cannot be empty", param="allowed_models")
    if actor.allowed_models is not None and not set(models) <= actor.allowed_models:
        raise PermissionDeniedError(
            "A key cannot allow models its creator may not use",
            param="allowed_models",
            code="model_not_allowed",
        )
    return models
