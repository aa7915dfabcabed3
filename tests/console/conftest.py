"""The console in a real browser: Debian's Chromium driven by Playwright's Python client.

One gateway (in front of the fake providers, on SQLite and on PostgreSQL) per test module and
one browser per module; each test gets a fresh browser context (its own sessionStorage) and a
`Console` that fails the test if the page logs an error, throws, or asks for anything outside
the gateway. Screenshots go to `ONEFLOW_SCREENSHOTS` (default: a temporary directory).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import CHROMIUM
from tests.support.billing_world import BillingWorld, billing_world

#: Chromium's flags: headless, no sandbox (containers), nothing that phones home.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LAPTOP = {"width": 1366, "height": 900}
PHONE = {"width": 390, "height": 844}
NARROW_PHONE = {"width": 375, "height": 812}


def screenshot_dir() -> Path:
    folder = Path(
        os.environ.get("ONEFLOW_SCREENSHOTS")
        or Path(tempfile.gettempdir()) / "oneflow-console-screenshots"
    )
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[object]:
    """Keeps each phase's report on the test item, so that a failed test's tab is saved."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture(scope="module")
def world(module_database_url: str) -> Iterator[BillingWorld]:
    with billing_world(module_database_url, reply_words=40) as running:
        yield running


@pytest.fixture(scope="module")
def browser(world: BillingWorld) -> Iterator[object]:
    """Started after the gateway: Playwright's synchronous API keeps an event loop running
    while it is open, and the gateway's (asynchronous) database fixture must come first."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield launched
        finally:
            launched.close()


@dataclass
class Console:
    """One browser tab on the console, watching what the page does."""

    page: object
    base: str
    errors: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)
    requested: list[str] = field(default_factory=list)
    #: Requests whose URL contains `holding` wait in `held` until `release()`.
    holding: str | None = None
    held: list[object] = field(default_factory=list)

    def release(self) -> int:
        self.holding = None
        held, self.held = self.held, []
        for route in held:
            route.continue_()  # type: ignore[attr-defined]
        return len(held)

    def open(self, path: str = "/console") -> None:
        self.page.goto(f"{self.base}{path}")  # type: ignore[attr-defined]

    def sign_in_with_key(self, key: str) -> None:
        page = self.page
        page.get_by_label("API key", exact=True).fill(key)  # type: ignore[attr-defined]
        page.get_by_role("button", name="Use this key").click()  # type: ignore[attr-defined]
        page.get_by_role("button", name="Sign out").wait_for()  # type: ignore[attr-defined]

    def sign_in_with_password(self, email: str, password: str) -> None:
        page = self.page
        page.get_by_label("Email", exact=True).fill(email)  # type: ignore[attr-defined]
        page.get_by_label("Password", exact=True).fill(password)  # type: ignore[attr-defined]
        page.get_by_role("button", name="Sign in", exact=True).click()  # type: ignore[attr-defined]
        page.get_by_role("button", name="Sign out").wait_for()  # type: ignore[attr-defined]

    def shot(self, name: str) -> Path:
        path = screenshot_dir() / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)  # type: ignore[attr-defined]
        return path


@pytest.fixture
def console(
    world: BillingWorld, browser: object, request: pytest.FixtureRequest
) -> Iterator[Console]:
    viewport = getattr(request, "param", LAPTOP)
    context = browser.new_context(viewport=viewport, accept_downloads=True)  # type: ignore[attr-defined]
    page = context.new_page()
    page.set_default_timeout(8_000)
    tab = Console(page, world.url)
    origin = urlsplit(world.url).netloc

    def watch(route: object) -> None:
        url = route.request.url  # type: ignore[attr-defined]
        tab.requested.append(url)
        parts = urlsplit(url)
        if parts.scheme in ("blob", "data") or parts.netloc == origin:
            if tab.holding is not None and tab.holding in url:
                tab.held.append(route)
            else:
                route.continue_()  # type: ignore[attr-defined]
        else:
            tab.foreign.append(url)
            route.abort()  # type: ignore[attr-defined]

    context.route("**/*", watch)
    page.on(
        "console", lambda m: tab.errors.append(f"console: {m.text}") if m.type == "error" else None
    )
    page.on("pageerror", lambda e: tab.errors.append(f"page error: {e}"))
    try:
        yield tab
    except BaseException:
        raise
    finally:
        failed = getattr(request.node, "rep_call", None)
        if failed is not None and failed.failed:
            tab.shot(f"failed-{request.node.name}")
        context.close()
    assert tab.foreign == [], f"the console asked for resources outside the gateway: {tab.foreign}"
    assert tab.errors == [], f"the console logged errors: {tab.errors}"
