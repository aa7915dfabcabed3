"""Tuning of the ledger: group commit, reservation lifetime, reconciliation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from oneflow_ai.billing.leases import LeaseConfig

if TYPE_CHECKING:
    from oneflow_ai.settings import Settings

__all__ = ["LedgerConfig"]


@dataclass(frozen=True, slots=True)
class LedgerConfig:
    """Tuning of the ledger (each field has a setting; see ``.env.example``)."""

    flush_interval: float = 0.002
    batch_max: int = 500
    reservation_ttl: float = 3600.0
    owner_timeout: float = 30.0
    maintenance_interval: float = 5.0
    ready_timeout: float = 5.0
    shutdown_timeout: float = 10.0
    max_pending: int = 100_000
    #: A book of funding and budgets older than this is reloaded before it decides.
    state_max_age: float = 10.0
    #: If that reload fails: refuse with 503 (False) or decide on the last state known.
    state_fail_open: bool = False
    checkpoint_interval: float = 1.0  # seconds between stream checkpoints (0: none)
    degraded_postpaid: bool = False  # database unreachable: serve without holds, not 503
    leases: LeaseConfig = field(default_factory=LeaseConfig)  # off unless configured
    write_behind: bool = False  # settlements through the spool (needs one)

    @classmethod
    def from_settings(cls, settings: Settings) -> LedgerConfig:
        return cls(
            flush_interval=settings.ledger_flush_interval_ms / 1000,
            batch_max=settings.ledger_batch_max_rows,
            reservation_ttl=settings.ledger_reservation_ttl_seconds,
            owner_timeout=settings.ledger_owner_timeout_seconds,
            maintenance_interval=settings.ledger_maintenance_interval_seconds,
            state_max_age=settings.ledger_state_max_age_seconds,
            state_fail_open=settings.ledger_state_fail_open,
            checkpoint_interval=settings.ledger_checkpoint_interval_ms / 1000,
            degraded_postpaid=settings.ledger_degraded_postpaid,
            write_behind=settings.ledger_write_behind,
            leases=LeaseConfig(
                enabled=settings.ledger_leases,
                share=settings.ledger_lease_share,
                min_requests=settings.ledger_lease_min_requests,
                horizon=settings.ledger_lease_horizon_seconds,
                lifetime=min(
                    settings.ledger_lease_lifetime_seconds,
                    settings.ledger_reservation_ttl_seconds / 2,
                ),
                max_micro_credits=int(settings.ledger_lease_max_credits * 1_000_000),
            ),
        )
