"""Who is calling: the principal every authenticated request carries."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from oneflow_ai.domain.limits import LimitPolicy
from oneflow_ai.settings import CachePolicy
from oneflow_ai.storage.tables import ADMIN_PROJECT_ID

__all__ = ["MASTER", "Principal", "PrincipalKind", "Role", "cache_policy"]


class Role(enum.StrEnum):
    ADMIN = "admin"
    MEMBER = "member"
    VIEWER = "viewer"


class PrincipalKind(enum.StrEnum):
    MASTER = "master"  # the bootstrap ONEFLOW_MASTER_KEY
    API_KEY = "api_key"
    USER = "user"  # a JWT access token


@dataclass(frozen=True, slots=True)
class Principal:
    kind: PrincipalKind
    project_id: str
    role: Role
    key_id: str | None = None
    user_id: str | None = None
    # None: every model; otherwise the catalog ids this caller may use.
    allowed_models: frozenset[str] | None = None
    # Exempt from rate limits (the master key, and admin keys marked unlimited).
    unlimited: bool = False
    # The caller's own rate limits (None fields: the deployment's defaults) ...
    limits: LimitPolicy | None = None
    # ... and its project's aggregate limits (None: no project-wide limit).
    project_limits: LimitPolicy | None = None
    # A self-service session of an API key: it reads that key's own data and nothing else.
    self_only: bool = False
    # Its project's response-cache policy, as the project stores it (None: none stored).
    cache: CachePolicy | None = None

    @property
    def subject(self) -> str:
        return self.key_id or self.user_id or self.kind.value

    @property
    def is_system_admin(self) -> bool:
        """An admin of the admin project: acts on every project (never a self-service
        session, which reads its own key's data only)."""
        return (
            self.role is Role.ADMIN and self.project_id == ADMIN_PROJECT_ID and not self.self_only
        )


MASTER = Principal(
    kind=PrincipalKind.MASTER, project_id=ADMIN_PROJECT_ID, role=Role.ADMIN, unlimited=True
)


def cache_policy(stored: Mapping[str, object] | None) -> CachePolicy | None:
    """A project's stored cache policy (None when it has none, or one that no longer reads:
    the cache is then off for it, never an error on the request path)."""
    if stored is None:
        return None
    try:
        return CachePolicy.model_validate(stored)
    except ValueError:
        return None
