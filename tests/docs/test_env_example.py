"""`.env.example` documents every setting with its default value (docs/configuration.md says so)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from oneflow_ai.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
TEXT = (ROOT / ".env.example").read_text()
#: NAME=value lines, and commented-out examples (# NAME=value) of settings with no plain default.
DOCUMENTED = dict(re.findall(r"^(?:# )?([A-Z][A-Z0-9_]+)=(.*)$", TEXT, re.MULTILINE))


def test_every_setting_is_documented() -> None:
    missing = [name.upper() for name in Settings.model_fields if name.upper() not in DOCUMENTED]
    assert missing == []


def test_the_documented_values_are_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    plain = dict(re.findall(r"^([A-Z][A-Z0-9_]+)=(.+)$", TEXT, re.MULTILINE))
    for name, value in plain.items():
        monkeypatch.setenv(name, value)
    documented = Settings(_env_file=None).model_dump()  # type: ignore[call-arg]
    for name in plain:
        monkeypatch.delenv(name)
    defaults = Settings(_env_file=None).model_dump()  # type: ignore[call-arg]
    assert {k: v for k, v in documented.items() if v != defaults[k]} == {}
