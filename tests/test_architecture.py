"""The layering of docs/architecture.md, enforced: imports only go downward."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_are_kept() -> None:
    lint_imports = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run(
        [str(lint_imports), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "broken" in result.stdout and " 0 broken" in result.stdout


def test_the_product_loads_the_fake_providers_only_when_they_serve() -> None:
    """Importing the app and the CLI leaves the fakes (`src/oneflow_fakes/`) unloaded: the demo
    mode and `oneflow fake-providers` import them when they run."""
    script = (
        "import sys\n"
        "import oneflow_ai.app, oneflow_ai.cli, oneflow_ai.gateway.services\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'oneflow_fakes'))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
