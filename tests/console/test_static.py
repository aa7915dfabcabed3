"""The console's files: served from the package with the console's CSP and ETags, nothing
outside `static/`, no inline script or style, and the vendored files as recorded (by hash) in
`src/oneflow_ai/console/static/vendor/VENDORED.md`."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from oneflow_ai.app import create_app
from oneflow_ai.console.router import STATIC_DIR
from oneflow_ai.settings import Settings
from tests.support.databases import migrated_sqlite_url
from tests.support.server import LiveServer, live_server

VENDOR = STATIC_DIR / "vendor"
_ROW = re.compile(
    r"^\| `(?P<file>[^`]+)` \| (?P<package>[\w.-]+) \| (?P<version>[\d.]+) "
    r"\| (?P<licence>\w+) \| .* \| `(?P<sha>[0-9a-f]{64})` \|$"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    database = tmp_path_factory.mktemp("console") / "oneflow.db"
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=migrated_sqlite_url(database),
        log_format="json",
        log_requests=False,
    )
    with live_server(create_app(settings, configure_logs=False)) as running:
        yield running


def _recorded() -> list[dict[str, str]]:
    lines = (VENDOR / "VENDORED.md").read_text().splitlines()
    return [m.groupdict() for line in lines if (m := _ROW.match(line))]


def test_every_vendored_file_is_recorded_with_its_hash() -> None:
    recorded = _recorded()
    assert {row["file"] for row in recorded} == {
        str(path.relative_to(VENDOR))
        for path in VENDOR.rglob("*")
        if path.is_file() and path.name != "VENDORED.md"
    }
    for row in recorded:
        data = (VENDOR / row["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == row["sha"], row["file"]
        assert (row["package"], row["licence"]) == ("uplot", "MIT")


@pytest.mark.parametrize("path", ["/console", "/console/requests", "/console/keys/"])
def test_pages_are_the_shell_with_the_consoles_policy(server: LiveServer, path: str) -> None:
    response = httpx.get(f"{server.url}{path}", follow_redirects=True)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "style-src 'self'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert "connect-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert response.headers["x-frame-options"] == "DENY"
    assert '<script type="module" src="/console/static/js/app.js"></script>' in response.text


def test_files_carry_an_etag_and_revalidate(server: LiveServer) -> None:
    url = f"{server.url}/console/static/js/app.js"
    first = httpx.get(url)
    assert first.status_code == 200
    assert first.headers["content-type"] == "text/javascript; charset=utf-8"
    assert first.headers["cache-control"] == "no-cache"
    again = httpx.get(url, headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304 and again.content == b""


@pytest.mark.parametrize(
    "path",
    [
        "/console/static/%2e%2e/router.py",
        "/console/static/js/%2e%2e/%2e%2e/router.py",
        "/console/static/js/missing.js",
        "/console/static/.hidden",
        "/console/static/js",
        "/console/static/vendor/VENDORED.txt",
    ],
)
def test_nothing_outside_the_static_files_is_served(server: LiveServer, path: str) -> None:
    response = httpx.get(f"{server.url}{path}")
    assert response.status_code == 404
    assert "APIRouter" not in response.text


def test_a_path_that_climbs_out_gets_the_shell_at_most(server: LiveServer) -> None:
    # Clients resolve "..": this asks for /console/router.py, a page of the console.
    response = httpx.get(f"{server.url}/console/static/../router.py")
    assert response.status_code == 200
    assert "APIRouter" not in response.text and "<!doctype html>" in response.text


def _own_files(suffix: str) -> list[Path]:
    return [p for p in STATIC_DIR.rglob(f"*{suffix}") if VENDOR not in p.parents]


def test_no_inline_script_or_style_and_no_other_origin() -> None:
    html = (STATIC_DIR / "index.html").read_text()
    assert re.findall(r"<script(?![^>]*\bsrc=)", html) == []
    assert " style=" not in html and "<style" not in html
    assert re.findall(r"(?:src|href)=\"(?!/console/static/|/console\"|#main\")", html) == []
    for path in _own_files(".js"):
        text = path.read_text()
        for sink in (
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "new Function",
        ):
            assert sink not in text, (path.name, sink)
        assert re.findall(r"https?://", text) == [], path.name
