"""The content, campaigns and reports pages in Debian's chromium: a reviewer approves an email
(a coordinator has no button and its POST gets 403), a coordinator launches after the checklist,
and the report shows the numbers of `campaign report --format json`. No page breaks its CSP,
and axe-core finds no serious or critical violation on any of these pages."""

from __future__ import annotations

from browser_support import (
    CHROMIUM,
    CHROMIUM_ARGS,
    NEEDS_CHROMIUM,
    WELCOME,
    coordinator_cannot_approve,
)
from console_pages_support import NAMED_REVIEWER, audit_actions, populate
from console_support import EMAILS, PASSWORD
from test_console_browser import serious_violations
from test_console_reports import cli_report

from campaign.report import COUNTS

pytestmark = NEEDS_CHROMIUM


def log_in(browser, server, email: str, violations: list[str]):
    context = browser.new_context(base_url=server.url, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    page.goto("/console/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/console/")
    return context, page


def test_approve_launch_and_report_in_chromium(content_console, monkeypatch):
    from playwright.sync_api import expect, sync_playwright

    populate(content_console)
    violations: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            # A coordinator has no approve button, and a forged approval is refused.
            coordinator_context, coordinator = log_in(
                browser, content_console, EMAILS["coordinator"], violations
            )
            coordinator_cannot_approve(coordinator_context, coordinator, content_console.url)

            # A reviewer reads the email in its frames, attests and approves.
            _, reviewer = log_in(browser, content_console, NAMED_REVIEWER, violations)
            reviewer.goto(WELCOME)
            frame = reviewer.frame_locator("iframe.email-frame").first
            expect(frame.locator("body")).to_contain_text("Sam")
            phone = reviewer.locator("iframe.email-frame").first.bounding_box()
            assert phone and 370 <= phone["width"] <= 380
            accessibility = {"content email": serious_violations(reviewer)}
            button = reviewer.get_by_role("button", name="Approve this email")
            button.click()  # the box is not ticked yet: the browser keeps the form
            expect(reviewer).to_have_url(content_console.url + WELCOME)
            # By keyboard: tick the attestation, Tab to the button, Enter.
            reviewer.get_by_label("I reviewed this email for medical accuracy.").focus()
            reviewer.keyboard.press("Space")
            reviewer.keyboard.press("Tab")
            assert (
                reviewer.evaluate("() => document.activeElement.textContent.trim()") == "Approve this email"
            )
            reviewer.keyboard.press("Enter")
            expect(reviewer.get_by_role("status")).to_contain_text("Approved.")
            expect(reviewer.locator("dd.state")).to_contain_text("Dr. Jane Lee (reviewer)")

            # The coordinator launches after reading the checklist.
            coordinator.goto("/console/campaigns")
            coordinator.get_by_role("link", name="Launch a campaign").click()
            coordinator.get_by_label("Name").fill("Spring 2026")
            coordinator.get_by_label("gad").check()
            coordinator.get_by_role("button", name="Check this launch").click()
            checklist = coordinator.locator("ul.checklist > li")
            expect(checklist).to_have_count(8)  # with the clinic facts check
            expect(checklist.filter(has_text="Every email approved")).to_contain_text("not yet")
            accessibility["launch checklist"] = serious_violations(coordinator)
            coordinator.get_by_role("button", name="Confirm and launch Spring 2026").click()
            expect(coordinator.get_by_role("status")).to_contain_text("Launched spring-2026.")
            expect(coordinator.get_by_role("heading", name="Spring 2026 active")).to_be_visible()

            # The report shows the ledger's numbers, as the CLI reports them.
            coordinator.goto("/console/reports")
            expected = cli_report(content_console, monkeypatch)["rows"]
            for row in expected:
                section = coordinator.locator("section.report").filter(
                    has=coordinator.get_by_role("heading", name=f"{row['campaign']} · {row['audience']}")
                )
                cells = section.locator(f'tr[data-step="{row["step"]}"] td[data-count]')
                assert cells.all_inner_texts() == [str(row[k]) for k in COUNTS], row
            assert any(row["sent"] for row in expected)
            for name, path in (
                ("reports", "/console/reports"),
                ("content", "/console/content"),
                ("campaigns", "/console/campaigns"),
                ("stop", "/console/campaigns/spring-2026/stop"),
            ):
                assert coordinator.goto(path).status == 200, path
                accessibility[name] = serious_violations(coordinator)
            coordinator_context.close()
        finally:
            browser.close()
    assert violations == []
    assert accessibility == dict.fromkeys(accessibility, [])
    assert len(accessibility) == 6
    assert [e.object_id for e in audit_actions(content_console, "content.approve")] == ["gad/welcome"]
    assert [e.object_id for e in audit_actions(content_console, "campaign.launch")] == ["spring-2026"]
