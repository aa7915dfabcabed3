"""The README's examples run as written against a gateway started the way `make run` starts one.

A real `oneflow serve` on a free port (development settings, a SQLite database of its own, the
built-in fake providers) stands in for `make run`. The README's `bash`/`sh` blocks run in order
in one shell session (each block in its own `bash`, the environment carried from one to the
next, so `export` works as in a terminal) and its `python` blocks with this interpreter, in
that session's environment; `oneflow` is this interpreter's. Two substitutions, and only these:
`http://127.0.0.1:8000` becomes the gateway's address, and `curl` fails on an HTTP error status
(`--fail-with-body`), so that an example answered with a 4xx fails here. A block right after
`<!-- readme-test: skip -->` is not run (starting the gateway, installing packages).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.docs.markdown import Block, fenced_blocks
from tests.support.oneflow_serve import ServedGateway, oneflow_serve

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
README_URL = "http://127.0.0.1:8000"
SHELLS = ("bash", "sh", "shell")

_PRELUDE = """set -eo pipefail
curl() { command curl --fail-with-body --silent --show-error "$@"; }
"""


def runnable_blocks() -> list[Block]:
    return [
        block
        for block in fenced_blocks(README.read_text())
        if block.language in (*SHELLS, "python") and not block.skip
    ]


def _shell(block: Block, gateway: ServedGateway, env: dict[str, str], cwd: Path) -> dict[str, str]:
    """Run one shell block; the environment it leaves behind."""
    saved = cwd / "env.out"
    script = _PRELUDE + block.code.replace(README_URL, gateway.url) + f'\nenv -0 > "{saved}"\n'
    result = subprocess.run(
        ["bash", "-c", script], env=env, cwd=cwd, capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, _failure(block, result)
    pairs = saved.read_text().split("\0")
    return dict(pair.split("=", 1) for pair in pairs if "=" in pair)


def _python(block: Block, gateway: ServedGateway, env: dict[str, str], cwd: Path) -> None:
    code = block.code.replace(README_URL, gateway.url)
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=cwd, capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, _failure(block, result)
    assert result.stdout.strip(), _failure(block, result)


def _failure(block: Block, result: subprocess.CompletedProcess[str]) -> str:
    return (
        f"README.md:{block.line} ({block.language}) exited {result.returncode}\n"
        f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    )


def test_the_readme_has_a_walkthrough_to_run() -> None:
    blocks = runnable_blocks()
    languages = {block.language for block in blocks}
    assert "python" in languages and languages & set(SHELLS)
    skipped = [block for block in fenced_blocks(README.read_text()) if block.skip]
    assert any("make run" in block.code for block in skipped)


def test_the_readme_examples_run_as_written(tmp_path: Path) -> None:
    workdir = tmp_path / "work"
    workdir.mkdir()
    with oneflow_serve(tmp_path) as gateway:
        scripts = str(Path(sys.executable).parent)
        env = {**gateway.env, "PATH": f"{scripts}:{gateway.env.get('PATH', '')}"}
        for block in runnable_blocks():
            if block.language == "python":
                _python(block, gateway, env, workdir)
            else:
                env = _shell(block, gateway, env, workdir)
