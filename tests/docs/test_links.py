"""Documents and code comments name only files that exist.

Checked, in every Markdown file of the repository: relative link targets (and their `#anchor`
when the target is a Markdown file), and inline code that looks like a repository path
(`src/oneflow_ai/catalog/models.yaml`, `api/errors.py`, `CHANGELOG.md`). In the docstrings and
comments of `src/`, `tests/` and `bench/`, and the comments of the Makefile, Dockerfile, compose
files, `.ci/run`, `scripts/` and `deploy/`: the same path-like words.

A path may be relative to the repository's root, to the file that names it, to `src/` or to
`src/oneflow_ai/` (where module names like `gateway/pipeline.py` live); a path into another
installed package (`tiktoken_ext/openai_public.py`) must exist there. Paths the repository
ignores (`.gitignore`: `bench/results/`, `var/`, ...) are made by running something and are not
required to exist. `PENDING_MOVES` lets a document link to the new home of a file that is being
moved while the old one is still in place.
"""

from __future__ import annotations

import ast
import fnmatch
import importlib.util
import io
import re
import tokenize
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.docs.markdown import code_spans, heading_anchors, links

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "oneflow_ai"

#: new home -> files whose content moves there (the link is fine while one of them exists).
PENDING_MOVES: dict[str, tuple[str, ...]] = {}

_SKIPPED_DIRS = {".git", ".venv", "node_modules", "build", "dist", "__pycache__"}
_EXTENSIONS = "py|md|yaml|yml|json|toml|ini|sh|js|lua|txt|gz|cfg|mako|example"
#: A word that names a file: a path with a directory and a known extension, a directory of
#: the repository ending in '/', or a Markdown file's name.
_PATH_WORD = re.compile(
    r"(?<![\w./:@-])"
    r"((?:\.\./|\./)*(?:[\w.-]+/)+[\w.-]+\.(?:" + _EXTENSIONS + r")"
    r"|(?:\.\./|\./)*(?:src|tests|bench|scripts|deploy|docs|\.ci)/(?:[\w.-]+/)*"
    r"|[\w.-]+\.md)"
    r"(?![\w/-])"
)
_OTHER_FILES = (
    "Makefile",
    "Dockerfile",
    "docker-compose*.yml",
    ".ci/run",
    "scripts/*",
    "deploy/**/*",
)


def _ignored_patterns() -> list[str]:
    lines = (ROOT / ".gitignore").read_text().splitlines()
    return [line.strip().strip("/") for line in lines if line.strip() and line[0] != "#"]


IGNORED = _ignored_patterns()


def _is_ignored(relative: str) -> bool:
    parts = Path(relative).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return any(
        fnmatch.fnmatch(prefix, pattern) or fnmatch.fnmatch(Path(prefix).name, pattern)
        for prefix in prefixes
        for pattern in IGNORED
    )


def _files(pattern: str) -> list[Path]:
    return sorted(
        path
        for path in ROOT.glob(pattern)
        if path.is_file()
        and not _SKIPPED_DIRS.intersection(path.relative_to(ROOT).parts)
        and not _is_ignored(str(path.relative_to(ROOT)))
    )


def _resolve(word: str, origin: Path) -> Path | None:
    """The file or directory `word` names, seen from `origin`; None if there is none."""
    word = word.split("#", 1)[0]
    for base in (ROOT, origin.parent, PACKAGE, PACKAGE.parent):
        candidate = (base / word).resolve()
        if candidate.exists() and candidate.is_relative_to(ROOT):
            return candidate
    return _in_installed_package(word)


def _in_installed_package(word: str) -> Path | None:
    """A path into another installed package (`tiktoken_ext/openai_public.py`)."""
    top, _, rest = word.partition("/")
    try:
        spec = importlib.util.find_spec(top) if top.isidentifier() and rest else None
    except (ImportError, ValueError):
        return None
    for location in (spec.submodule_search_locations or []) if spec is not None else []:
        if (Path(location) / rest).exists():
            return Path(location) / rest
    return None


def _pending(word: str, origin: Path) -> bool:
    path = (origin.parent / word.split("#", 1)[0]).resolve()
    if not path.is_relative_to(ROOT):
        return False
    old = PENDING_MOVES.get(path.relative_to(ROOT).as_posix(), ())
    return any((ROOT / name).exists() for name in old)


def _problem(word: str, origin: Path) -> str | None:
    if "*" in word or "{" in word or "<" in word or "..." in word:
        return None  # a pattern or a placeholder, not a file
    target = _resolve(word, origin)
    if target is None:
        if _pending(word, origin) or _is_ignored(word.lstrip("./")):
            return None
        return f"{word}: no such file"
    fragment = word.split("#", 1)[1] if "#" in word else None
    if fragment and target.suffix == ".md" and fragment not in heading_anchors(target.read_text()):
        return f"{word}: {target.name} has no heading #{fragment}"
    return None


def _markdown_words(path: Path) -> Iterator[tuple[int, str]]:
    text = path.read_text()
    for number, target in links(text):
        if not re.match(r"^[a-z][a-z0-9+.-]*:", target):  # not http:, mailto:, ...
            yield number, target if not target.startswith("#") else path.name + target
    for number, span in code_spans(text):
        for match in _PATH_WORD.finditer(span):
            if match.group(1) == span or span.startswith(match.group(1)):
                yield number, match.group(1)


def _python_text(path: Path) -> Iterator[tuple[int, str]]:
    """Docstrings and comments of a Python file."""
    source = path.read_text()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            docstring = ast.get_docstring(node, clean=False)
            if docstring and node.body:
                start = node.body[0].lineno
                for offset, line in enumerate(docstring.splitlines()):
                    yield start + offset, line
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            yield token.start[0], token.string


def _comments(path: Path) -> Iterator[tuple[int, str]]:
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if "#" in line:
            yield number, line.split("#", 1)[1]


def _words(lines: Iterator[tuple[int, str]]) -> Iterator[tuple[int, str]]:
    for number, line in lines:
        for match in _PATH_WORD.finditer(line.replace("``", "`")):
            yield number, match.group(1)


def _problems(path: Path, words: Iterator[tuple[int, str]]) -> list[str]:
    where = path.relative_to(ROOT)
    found = []
    for number, word in words:
        problem = _problem(word, path)
        if problem is not None:
            found.append(f"{where}:{number}: {problem}")
    return found


MARKDOWN = _files("**/*.md")
PYTHON = [p for d in ("src", "tests", "bench") for p in _files(f"{d}/**/*.py")]
OTHERS = [p for pattern in _OTHER_FILES for p in _files(pattern) if p.suffix not in (".json",)]


def test_the_files_are_found() -> None:
    names = {str(p.relative_to(ROOT)) for p in MARKDOWN + PYTHON + OTHERS}
    assert {"README.md", "docs/architecture.md", "src/oneflow_ai/app.py", "Makefile"} <= names


@pytest.mark.parametrize("path", MARKDOWN, ids=lambda p: str(p.relative_to(ROOT)))
def test_markdown_links_and_paths_exist(path: Path) -> None:
    assert _problems(path, _markdown_words(path)) == []


def test_docstrings_and_comments_name_existing_files() -> None:
    problems = [
        problem for path in PYTHON for problem in _problems(path, _words(_python_text(path)))
    ]
    problems += [problem for path in OTHERS for problem in _problems(path, _words(_comments(path)))]
    assert problems == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("see ARCHITECTURE.md and FINDINGS.md", ["ARCHITECTURE.md", "FINDINGS.md"]),
        (
            "`docs/nowhere.md`, src/oneflow_ai/missing.py",
            ["docs/nowhere.md", "src/oneflow_ai/missing.py"],
        ),
        ("gateway/pipeline.py and tests/support/ and README.md", []),
        ("the seed's URL http://x/y/z.md and oneflow_ai.app:create_app", []),
    ],
)
def test_the_checker_finds_missing_files(tmp_path: Path, text: str, expected: list[str]) -> None:
    words = [word for _, word in _words(iter([(1, text)]))]
    missing = [word for word in words if _problem(word, ROOT / "README.md") is not None]
    assert missing == expected
