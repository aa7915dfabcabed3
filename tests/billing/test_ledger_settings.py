"""The ledger's settings: documented defaults, their mapping, and the one rule between them."""

from __future__ import annotations

from pathlib import Path

import pytest

from oneflow_ai.billing.ledger import LedgerConfig
from oneflow_ai.settings import Settings, SettingsError, load_settings

ROOT = Path(__file__).resolve().parents[2]


def test_settings_map_onto_the_ledger_config() -> None:
    config = LedgerConfig.from_settings(
        load_settings(
            _env_file=None,
            ledger_flush_interval_ms=7,
            ledger_batch_max_rows=64,
            ledger_reservation_ttl_seconds=120,
            ledger_owner_timeout_seconds=20,
            ledger_maintenance_interval_seconds=4,
        )
    )
    assert (config.flush_interval, config.batch_max) == (0.007, 64)
    assert (config.reservation_ttl, config.owner_timeout, config.maintenance_interval) == (
        120,
        20,
        4,
    )


def test_a_replica_must_heartbeat_well_within_the_owner_timeout() -> None:
    with pytest.raises(SettingsError, match="LEDGER_OWNER_TIMEOUT_SECONDS"):
        load_settings(
            _env_file=None,
            ledger_owner_timeout_seconds=5,
            ledger_maintenance_interval_seconds=5,
        )


def test_every_ledger_setting_is_documented() -> None:
    documented = (ROOT / ".env.example").read_text(encoding="utf-8")
    for name in Settings.model_fields:
        if name.startswith("ledger_"):
            assert f"\n{name.upper()}=" in documented, name
