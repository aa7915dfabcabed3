"""The k6 script that mirrors `make bench` stays valid JavaScript (checked by node when it is
installed: without it the check is deselected and reported, like the PostgreSQL tests; k6
itself is not available here)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("benchmark.js")


@pytest.mark.node
def test_k6_script_is_valid_javascript(tmp_path: Path) -> None:
    # k6 scripts are ES modules: check them as such.
    module = tmp_path / "benchmark.mjs"
    module.write_text(SCRIPT.read_text())
    result = subprocess.run(
        ["node", "--check", str(module)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_k6_script_mirrors_the_harness_scenarios() -> None:
    text = SCRIPT.read_text()
    for needed in ("/v1/chat/completions", "/api/v1/estimate", "stream: true", "[1, 10, 100]"):
        assert needed in text
