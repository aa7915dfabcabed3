"""The console in headless Chromium against a real gateway: sign in, see the calls just made
in the request log and the charts with the right totals, export CSV equal to the API, create
and rotate a key (its secret shown once), a viewer without admin controls, a key holder who
sees only its own key, a phone-width layout. Every test also fails if the page logs an error
or loads anything from outside the gateway (see `conftest.py`)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.console.conftest import NARROW_PHONE, PHONE, Console
from tests.support.billing_world import MASTER_KEY, PASSWORD, BillingWorld, chat_body

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def traffic(world: BillingWorld) -> dict[str, object]:
    """A project with two member keys and a viewer, and model calls made through the API:
    three by the first key (two models, one streamed), two by the second."""
    project, first = world.project("team")
    second = world.key(project)
    calls = [
        (first, "gpt-4o", False),
        (first, "claude-3-haiku-20240307", True),
        (first, "gpt-4o", False),
        (second, "gpt-4o", False),
        (second, "claude-3-haiku-20240307", False),
    ]
    for key, model, stream in calls:
        response = world.admin.post(
            "/v1/chat/completions",
            json=chat_body(20, model=model, stream=stream),
            headers={"Authorization": f"Bearer {key}"},
        )
        assert response.status_code == 200, response.text
    viewer_id, _ = world.user(project, role="viewer")
    admin_id, _ = world.user(project, role="admin")
    users = world.admin_call("GET", "/api/v1/users", project_id=project).json()["data"]
    emails = {u["id"]: u["email"] for u in users}
    return {
        "project": project,
        "first": first,
        "second": second,
        "viewer": emails[viewer_id],
        "admin": emails[admin_id],
    }


def _usage(world: BillingWorld, **params: str) -> dict:
    return world.admin_call("GET", "/api/v1/usage", **params).json()


def _page_filters(console: Console) -> dict[str, str]:
    query = parse_qs(urlsplit(console.page.url).query)  # type: ignore[attr-defined]
    return {k: v[0] for k, v in query.items()}


def test_an_admin_sees_the_calls_in_the_log_and_the_charts(
    console: Console, world: BillingWorld, traffic: dict[str, object]
) -> None:
    project = str(traffic["project"])
    console.open(f"/console?project={project}")
    console.sign_in_with_key(MASTER_KEY)
    page = console.page
    # The filters (project, range) round-trip through the URL.
    assert _page_filters(console)["project"] == project
    totals = page.get_by_label("Totals", exact=True)
    totals.wait_for()
    api = _usage(world, project=project)["totals"]
    assert api["requests"] == 5
    assert totals.get_by_text("Requests").locator("xpath=..").inner_text().split()[-1] == "5"
    credits = totals.get_by_text("Credits", exact=True).locator("xpath=..").inner_text().split()[-1]
    assert Decimal(credits) == Decimal(api["credits"])
    assert page.locator(".chart canvas").count() >= 3  # credits, requests, token classes
    console.shot("analytics")

    page.get_by_role("link", name="Requests").click()
    page.get_by_role("button", name="Apply").wait_for()
    page.get_by_label("Filters").get_by_label("Project").select_option(project)
    page.get_by_role("button", name="Apply").click()
    page.get_by_text("5 requests shown").wait_for()
    rows = page.locator("tbody tr")
    assert rows.count() == 5
    shown = sum(Decimal(rows.nth(i).locator("td").nth(8).inner_text()) for i in range(5))
    assert shown == Decimal(api["credits"])
    console.shot("requests")
    rows.first.get_by_role("button").first.click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("Attempts").wait_for()
    assert dialog.get_by_text("answered", exact=True).count() == 1
    console.shot("request-details")
    dialog.get_by_role("button", name="Close").click()

    # Every page an admin has opens without an error; a page left before its data arrived
    # does not draw over the next one.
    nav = page.get_by_role("navigation")
    console.holding = "/api/v1/usage"  # Analytics' data arrives late...
    nav.get_by_role("link", name="Analytics").click()
    nav.get_by_role("link", name="Projects").click()
    page.get_by_role("heading", name="Projects", exact=True, level=1).wait_for()
    released = console.release()  # ... after Projects is shown
    page.wait_for_load_state("networkidle")
    assert released and page.get_by_label("Totals", exact=True).count() == 0
    assert page.get_by_role("heading", name="Projects", exact=True, level=1).count() == 1
    for link, heading in (("Billing", "Budgets and quotas"), ("Circuits", "Circuit breakers")):
        nav.get_by_role("link", name=link).click()
        page.get_by_role("heading", name=heading, exact=True).wait_for()


def test_every_chart_downloads_the_api_csv(
    console: Console, world: BillingWorld, traffic: dict[str, object]
) -> None:
    project = str(traffic["project"])
    console.open(f"/console?project={project}&by=provider")
    console.sign_in_with_key(MASTER_KEY)
    page = console.page
    page.get_by_label("Totals", exact=True).wait_for()
    buttons = page.locator("button[data-csv]").all()
    assert len(buttons) == 6  # totals, credits, requests, token classes, models, keys
    for button in buttons:
        with (
            page.expect_request(lambda r: "format=csv" in r.url) as asked,
            page.expect_download() as waiting,
        ):
            button.click()
        downloaded = Path(waiting.value.path()).read_text(encoding="utf-8")
        query = {k: v[0] for k, v in parse_qs(urlsplit(asked.value.url).query).items()}
        assert query["project"] == project
        assert query.get("group_by", "totals") == button.get_attribute("data-csv")
        direct = world.admin.get("/api/v1/usage", params=query)
        assert direct.status_code == 200
        assert downloaded == direct.text
        assert downloaded.count("\n") >= 2  # a header and at least one row of data


def test_create_and_rotate_a_key_the_secret_shown_once(
    console: Console, world: BillingWorld, traffic: dict[str, object]
) -> None:
    console.open("/console/keys")
    console.sign_in_with_password(str(traffic["admin"]), PASSWORD)
    page = console.page
    page.get_by_label("Name").fill("ci-bot")
    page.get_by_role("button", name="Create key").click()
    secret_box = page.locator("[data-secret]")
    secret_box.wait_for()
    secret = secret_box.get_by_label("The new key").input_value()
    assert secret.startswith("sk-of-")
    works = httpx.get(f"{world.url}/api/v1/whoami", headers={"Authorization": f"Bearer {secret}"})
    assert works.status_code == 200
    console.shot("key-created")
    page.get_by_role("button", name="I have stored it").click()
    page.get_by_role("cell", name="ci-bot", exact=True).wait_for()
    assert page.locator("[data-secret]").count() == 0
    assert secret not in page.content()

    page.once("dialog", lambda d: d.accept("1"))
    page.get_by_role("button", name="Rotate ci-bot").first.click()
    secret_box.wait_for()
    successor = secret_box.get_by_label("The new key").input_value()
    assert successor.startswith("sk-of-") and successor != secret
    page.get_by_role("button", name="I have stored it").click()
    assert successor not in page.content()
    page.get_by_text("rotating", exact=True).wait_for()  # the old key, in its grace hour
    assert page.get_by_text("rotating", exact=True).count() == 1
    console.shot("keys")

    # A reload keeps the session (the tab's refresh token), and shows no secret.
    page.reload()
    page.get_by_role("button", name="Sign out").wait_for()
    assert secret not in page.content() and successor not in page.content()
    page.get_by_role("button", name="Sign out").click()
    page.get_by_role("button", name="Use this key").wait_for()


def test_an_admin_edits_a_key_and_the_next_calls_obey_it(
    console: Console, world: BillingWorld
) -> None:
    """The key page's edit form: a limit lowered in the console limits the very next calls
    made with the key (through the API, with the official client's wire format); then its
    allowed models and expiry, checked through the API."""
    project, key = world.project("edited")
    key_id = world.key_ids[key]
    name = world.admin_call("GET", f"/api/v1/keys/{key_id}").json()["name"]
    console.open(f"/console/keys?project={project}")
    console.sign_in_with_key(MASTER_KEY)
    page = console.page
    # Keyboard: the Edit button opens the form with the focus in it; Escape closes it.
    page.get_by_role("button", name=f"Edit {name}").focus()
    page.keyboard.press("Enter")
    form = page.get_by_role("form", name=f"Edit {name}")
    form.wait_for()
    assert page.evaluate("document.activeElement.name") == "name"
    page.keyboard.press("Escape")
    assert form.count() == 0
    assert page.evaluate("document.activeElement.getAttribute('aria-label')") == f"Edit {name}"

    page.get_by_role("button", name=f"Edit {name}").click()
    form.get_by_label("Requests / minute").fill("2")
    console.shot("key-edit")
    form.get_by_role("button", name="Save changes").click()
    page.get_by_text(f"{name} saved.").wait_for()
    page.get_by_role("cell", name="2 rpm", exact=True).wait_for()
    console.shot("key-edited")
    stored = world.admin_call("GET", f"/api/v1/keys/{key_id}").json()
    assert stored["limits"] == {"requests_per_minute": 2}
    statuses = [
        world.admin.post(
            "/v1/chat/completions",
            json=chat_body(5, model="gpt-4o"),
            headers={"Authorization": f"Bearer {key}"},
        ).status_code
        for _ in range(3)
    ]
    assert statuses == [200, 200, 429]

    page.get_by_role("button", name=f"Edit {name}").click()
    form.get_by_label("Allowed models (none selected: all)").select_option(["gpt-4o"])
    form.get_by_label("Expires in days", exact=False).fill("30")
    form.get_by_label("Requests / minute").fill("")
    form.get_by_role("button", name="Save changes").click()
    page.get_by_text(f"{name} saved.").first.wait_for()
    page.get_by_role("cell", name="gpt-4o", exact=True).wait_for()
    stored = world.admin_call("GET", f"/api/v1/keys/{key_id}").json()
    assert (stored["allowed_models"], stored["limits"]) == (["gpt-4o"], None)
    assert stored["expires_at"] is not None
    # Nothing changed: nothing is sent; a negative limit: the form refuses it before sending.
    patches: list[str] = []
    page.on("request", lambda r: patches.append(r.url) if r.method == "PATCH" else None)
    page.get_by_role("button", name=f"Edit {name}").click()
    form.get_by_role("button", name="Save changes").click()
    form.get_by_role("alert").get_by_text("Nothing changed.").wait_for()
    tokens = form.get_by_label("Tokens / minute")
    tokens.fill("-5")
    form.get_by_role("button", name="Save changes").click()
    assert tokens.evaluate("input => input.validity.rangeUnderflow")
    page.wait_for_timeout(300)
    assert patches == []
    assert world.admin_call("GET", f"/api/v1/keys/{key_id}").json()["limits"] is None


def test_a_viewer_gets_no_admin_controls_and_the_api_refuses_them(
    console: Console, world: BillingWorld, traffic: dict[str, object]
) -> None:
    project = str(traffic["project"])
    console.open("/console/keys")
    console.sign_in_with_password(str(traffic["viewer"]), PASSWORD)
    page = console.page
    page.get_by_role("heading", name=f"Keys of {project}").wait_for()
    nav = page.get_by_role("navigation")
    assert nav.get_by_role("link", name="Circuits").count() == 0
    assert page.get_by_role("button", name="Create key").count() == 0
    assert page.get_by_role("button", name="Revoke").count() == 0
    assert page.get_by_role("button").filter(has_text="Rotate").count() == 0
    assert page.get_by_role("button").filter(has_text="Edit").count() == 0
    nav.get_by_role("link", name="Billing").click()
    page.get_by_role("heading", name="Budgets and quotas").wait_for()
    assert page.get_by_role("button", name="Top up").count() == 0
    assert page.get_by_role("button", name="Add budget").count() == 0
    console.shot("viewer-billing")

    signed_in = httpx.post(
        f"{world.url}/api/v1/auth/token",
        json={"email": traffic["viewer"], "password": PASSWORD},
    )
    token = {"Authorization": f"Bearer {signed_in.json()['access_token']}"}
    some_key = world.key_ids[str(traffic["second"])]
    for method, path, body in (
        ("POST", "/api/v1/keys", {"name": "nope"}),
        ("PATCH", f"/api/v1/keys/{some_key}", {"limits": {"requests_per_minute": 1}}),
        ("GET", "/api/v1/admin/circuits", None),
        ("PUT", f"/api/v1/projects/{project}/budgets", {"budgets": []}),
        ("POST", f"/api/v1/projects/{project}/credits", {"credits": "1"}),
        ("GET", f"/api/v1/users?project_id={project}", None),
    ):
        refused = httpx.request(method, f"{world.url}{path}", json=body, headers=token)
        assert refused.status_code == 403, (path, refused.text)


def test_a_key_holder_sees_its_own_key_only(
    console: Console, world: BillingWorld, traffic: dict[str, object]
) -> None:
    console.open("/console")
    page = console.page
    # Keyboard only: the key field has the focus order of the form, Enter submits.
    page.get_by_label("API key", exact=True).focus()
    page.keyboard.type(str(traffic["first"]))
    page.keyboard.press("Enter")
    page.get_by_role("heading", name="My requests").wait_for()
    page.get_by_text("3 requests shown").wait_for()
    nav = page.get_by_role("navigation")
    assert [a.inner_text() for a in nav.get_by_role("link").all()] == ["My key"]
    rows = page.locator("tbody tr")
    texts = [rows.nth(i).inner_text() for i in range(rows.count())]
    assert len([t for t in texts if "→" in t]) == 3
    assert world.key_ids[str(traffic["second"])] not in page.content()
    assert page.get_by_text("requests per minute").count() == 0  # no limits in this world
    console.shot("self-service")
    # Another page's address shows the key's own page (the key lives in the page's memory
    # only: a reload signs it out).
    page.evaluate(
        "history.pushState(null, '', '/console/requests');"
        "dispatchEvent(new PopStateEvent('popstate'))"
    )
    page.get_by_text("3 requests shown").wait_for()
    assert page.get_by_role("heading", name="Requests", exact=True).count() == 0


@pytest.mark.parametrize("console", [PHONE], indirect=True)
def test_a_phone_width_layout_is_usable(console: Console, traffic: dict[str, object]) -> None:
    console.open(f"/console?project={traffic['project']}")
    console.sign_in_with_key(MASTER_KEY)
    page = console.page
    page.get_by_label("Totals", exact=True).wait_for()
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], "the page scrolls sideways"
    console.shot("analytics-phone")
    page.get_by_role("link", name="Requests").click()
    page.get_by_text("requests shown").wait_for()
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]


#: Every page a system admin has: its navigation link and its heading.
ADMIN_PAGES = [
    ("Analytics", "Analytics"),
    ("Requests", "Requests"),
    ("Keys", "Keys"),
    ("Projects", "Projects"),
    ("Billing", "Billing"),
    ("Circuits", "Circuit breakers"),
]


def _open_page(console: Console, link: str, heading: str) -> None:
    page = console.page
    page.get_by_role("navigation").get_by_role("link", name=link).click()
    page.get_by_role("heading", name=heading, exact=True, level=1).wait_for()
    page.wait_for_load_state("networkidle")


#: Marks every control a keyboard user should reach (visible, enabled, not taken out of the
#: tab order) with its number; returns how many there are.
_MARK_CONTROLS = """() => {
  const found = [...document.querySelectorAll(
    "a[href], button, input, select, textarea, [tabindex]")].filter((el) =>
    !el.disabled && el.tabIndex >= 0 && el.getClientRects().length > 0
    && getComputedStyle(el).visibility !== "hidden");
  found.forEach((el, i) => { el.dataset.kbd = String(i); });
  return found.length;
}"""


def _tab_order(console: Console) -> tuple[int, list[int]]:
    """How many controls the page has, and the ones Tab reaches from the first, in order."""
    page = console.page
    count = page.evaluate(_MARK_CONTROLS)
    page.locator('[data-kbd="0"]').focus()  # the first control of the page (the skip link)
    reached: list[int] = [0]
    # A date-time field takes several presses (one per part); a round ends back at a control
    # reached before.
    for _ in range(count * 8):
        page.keyboard.press("Tab")
        mark = page.evaluate("document.activeElement?.dataset?.kbd ?? null")
        if mark is None or int(mark) == reached[-1]:
            continue
        if int(mark) in reached:
            break
        reached.append(int(mark))
    return count, reached


def test_the_keyboard_reaches_every_control_of_every_page(
    console: Console, world: BillingWorld, traffic: dict[str, object]
) -> None:
    console.open(f"/console?project={traffic['project']}")
    page = console.page
    # Signing in by keyboard alone: the key field, then Enter.
    page.get_by_label("API key", exact=True).wait_for()
    count, reached = _tab_order(console)
    assert sorted(reached) == list(range(count)), "a sign-in control Tab never reaches"
    page.get_by_label("API key", exact=True).focus()
    page.keyboard.type(MASTER_KEY)
    page.keyboard.press("Enter")
    page.get_by_role("button", name="Sign out").wait_for()
    for link, heading in ADMIN_PAGES:
        _open_page(console, link, heading)
        count, reached = _tab_order(console)
        assert count > 5 and sorted(reached) == list(range(count)), (link, count, reached)
        assert reached == sorted(reached), (link, reached)  # in the order of the page
    # The key holder's own page, too.
    page.get_by_role("button", name="Sign out").click()
    console.sign_in_with_key(str(traffic["second"]))
    page.get_by_role("heading", name="My requests").wait_for()
    count, reached = _tab_order(console)
    assert count > 2 and sorted(reached) == list(range(count))


@pytest.mark.parametrize("console", [NARROW_PHONE], indirect=True)
def test_every_page_fits_a_375_pixel_phone(console: Console, traffic: dict[str, object]) -> None:
    """Nothing scrolls the page sideways at 375 pixels (tables scroll within their panel),
    and no page logs an error (checked after every test)."""
    console.open(f"/console?project={traffic['project']}")
    page = console.page
    assert page.evaluate("document.documentElement.scrollWidth") <= NARROW_PHONE["width"]
    console.sign_in_with_key(MASTER_KEY)
    for link, heading in ADMIN_PAGES:
        _open_page(console, link, heading)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= NARROW_PHONE["width"], f"{link} scrolls sideways ({width} px)"
    page.get_by_role("button", name="Sign out").click()
    console.sign_in_with_key(str(traffic["second"]))
    page.get_by_role("heading", name="My requests").wait_for()
    page.wait_for_load_state("networkidle")
    assert page.evaluate("document.documentElement.scrollWidth") <= NARROW_PHONE["width"]
    console.shot("self-service-phone")


def test_anything_from_outside_the_gateway_is_blocked_and_caught(console: Console) -> None:
    """The guard every test relies on: the CSP refuses another origin, and the page's
    watchers see it (the test then forgets it, so that its own teardown passes)."""
    console.open("/console")
    page = console.page
    page.get_by_role("button", name="Use this key").wait_for()
    page.evaluate("new Image().src = 'http://198.51.100.7/pixel.png'")
    page.evaluate("fetch('https://198.51.100.7/api').catch(() => null)")
    deadline = page.evaluate("Date.now()") + 5000
    while len(console.errors) < 2 and page.evaluate("Date.now()") < deadline:
        page.wait_for_timeout(50)
    assert any("Content Security Policy" in e and "img-src" in e for e in console.errors)
    assert any("Content Security Policy" in e and "connect-src" in e for e in console.errors)
    assert not any("198.51.100.7" in url for url in console.requested)  # never left the page
    console.errors.clear()
