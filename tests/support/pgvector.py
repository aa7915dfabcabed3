"""pgvector on the test server: required where services are required (CI), else optional."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

__all__ = ["pgvector_missing"]

MESSAGE = "pgvector is not installed on the test server (scripts/install-pgvector.sh)"


def pgvector_missing() -> NoReturn:
    """A failure with `ONEFLOW_REQUIRE_SERVICES=1` (CI installs pgvector, `.ci/run`), a skip on
    a laptop whose PostgreSQL has no pgvector: the one place that decides."""
    if os.environ.get("ONEFLOW_REQUIRE_SERVICES") == "1":
        pytest.fail(MESSAGE)
    pytest.skip(MESSAGE)
