"""The examples of `docs/` run as written.

Every `pycon` block of a Markdown page is a doctest: its outputs are the figures the page cites.
The example of `docs/library.md` runs as another project would run it (a separate interpreter,
outside the repository, importing the installed package) against the fake providers, and
leaves no unclosed aiohttp session behind.
"""

from __future__ import annotations

import doctest
import subprocess
import sys
from pathlib import Path

import pytest

from oneflow_fakes import FakeProviders
from tests.docs.markdown import Block, fenced_blocks

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
DOCTESTS = [
    (page, block)
    for page in PAGES
    for block in fenced_blocks(page.read_text())
    if block.language == "pycon"
]


def test_the_pages_have_doctests() -> None:
    assert {page.name for page, _ in DOCTESTS} >= {"billing.md", "routing.md"}


@pytest.mark.parametrize(
    ("page", "block"), DOCTESTS, ids=[f"{p.name}:{b.line}" for p, b in DOCTESTS]
)
def test_pycon_blocks_are_doctests(page: Path, block: Block) -> None:
    name = f"{page.relative_to(ROOT)}:{block.line}"
    test = doctest.DocTestParser().get_doctest(block.code, {}, name, str(page), block.line)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    output: list[str] = []
    runner.run(test, out=output.append)
    assert runner.summarize(verbose=False).failed == 0, "".join(output)


def test_the_library_example_runs_in_another_project(tmp_path: Path) -> None:
    (block,) = [
        b
        for b in fenced_blocks((ROOT / "docs" / "library.md").read_text())
        if b.language == "python"
    ]
    example = tmp_path / "example.py"
    example.write_text(block.code)
    with FakeProviders() as fake:
        env = {
            "PATH": "/usr/bin:/bin",
            "OPENAI_BASE_URL": fake.base_urls["openai"],
            "OPENAI_API_KEY": "sk-fake",
            "PYTHONWARNINGS": "default",
        }
        result = subprocess.run(
            [sys.executable, str(example)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        calls = fake.calls("openai")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "gpt-4o: 0.00600000 USD = 0.600000 credits"
    assert lines[1].startswith("balanced: ")
    assert lines[-1].startswith("200 Echo: Hello")
    assert "Unclosed" not in result.stderr, result.stderr
    assert [call.idempotency_key for call in calls] == ["req-unique-id"]
