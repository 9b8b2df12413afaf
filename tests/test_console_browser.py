"""The console in Debian's chromium: a keyboard-only login, and axe-core (axe-playwright-python,
which bundles axe.min.js: no network) on the login, overview, activity and users pages."""

from __future__ import annotations

import shutil

import pytest
from browser_support import CHROMIUM, CHROMIUM_ARGS, NEEDS_CHROMIUM
from console_support import EMAILS, PASSWORD

from campaign.accounts import CLI, audit
from campaign.app.leads import import_file
from campaign.app.ticks import record_tick
from campaign.engine import run_tick
from campaign.runtime import build_context
from campaign.settings import PROJECT_ROOT

pytestmark = NEEDS_CHROMIUM


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            launched.close()


def focused(page) -> str:
    return page.evaluate("() => document.activeElement.id || document.activeElement.textContent.trim()")


def test_keyboard_only_login_reaches_the_overview(console_server, browser):
    from playwright.sync_api import expect

    page = browser.new_page()
    page.goto(f"{console_server.url}/console/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Log in")
    page.keyboard.press("Tab")
    assert focused(page) == "Skip to main content"
    page.keyboard.press("Tab")
    assert focused(page) == "email"
    page.keyboard.type(EMAILS["coordinator"])
    page.keyboard.press("Tab")
    assert focused(page) == "password"
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Tab")
    assert focused(page) == "Log in"
    page.keyboard.press("Enter")
    # The first overview after start lints every email (a few seconds on a busy machine).
    expect(page.get_by_role("heading", level=1)).to_have_text("Overview", timeout=60_000)
    assert page.url == f"{console_server.url}/console/"
    # The skip link moves focus past the nav to the page's own content.
    page.keyboard.press("Tab")
    assert focused(page) == "Skip to main content"
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.activeElement.id === 'main'", timeout=5000)
    # Logging out by keyboard too: the button is reachable and ends the session.
    page.get_by_role("button", name="Log out").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1)).to_have_text("Log in")
    expect(page.get_by_role("status")).to_contain_text("You are logged out")


def serious_violations(page) -> list[str]:
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    assert results.response["testEngine"]["name"] == "axe-core"  # it ran, offline
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']]}"
        for v in results.response["violations"]
        if v["impact"] in ("serious", "critical")
    ]


def test_axe_finds_no_serious_or_critical_violations(console_server, browser, tmp_path):
    # Pages with content: leads enrolled and sent to, a tick in the history, an audit entry.
    now = console_server.clock()
    leads_csv = tmp_path / "leads.csv"
    shutil.copy(PROJECT_ROOT / "tests" / "data" / "small_leads.csv", leads_csv)
    ctx = build_context(console_server.settings, now=now, store=console_server.store)
    import_file(ctx.store, console_server.settings, leads_csv, now)
    record_tick(ctx.store, run_tick(ctx, now), started_at=now)
    audit(console_server.accounts, CLI, "campaign.pause", now=now, object_id="evergreen")
    page = browser.new_page()
    page.goto(f"{console_server.url}/console/login")
    problems = {"login": serious_violations(page)}
    page.fill("#email", EMAILS["admin"])
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{console_server.url}/console/")
    for name, path in (
        ("overview", "/console/"),
        ("activity", "/console/activity"),
        ("users", "/console/users"),
    ):
        response = page.goto(f"{console_server.url}{path}")
        assert response.status == 200, path
        problems[name] = serious_violations(page)
    assert problems == {"login": [], "overview": [], "activity": [], "users": []}
