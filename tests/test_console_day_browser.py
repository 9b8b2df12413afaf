"""The coordinator's whole day in Debian's chromium, on one database: log in; upload a form
export with headers the console cannot guess and map them; read the dry run; import; download
the rejected rows; a reviewer approves an email while a coordinator cannot (no button, a forged
POST is 403); launch after the checklist; a tick runs (the engine's tick in-process, on the
same database); the overview and the report show the ledger's numbers; the activity log names
every step. Then every console page at a phone's 375 px: no horizontal page scroll."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import sqlalchemy as sa
from browser_support import (
    CHROMIUM,
    CHROMIUM_ARGS,
    NEEDS_CHROMIUM,
    WELCOME,
    coordinator_cannot_approve,
    upload_and_map_odd_csv,
)
from console_pages_support import NAMED_REVIEWER
from console_support import EMAILS, PASSWORD
from test_console_leads_browser import ODD_CSV

from campaign.app.ticks import record_tick
from campaign.engine import run_tick
from campaign.runtime import build_context
from campaign.store.tables import campaigns, enrollments, sends

pytestmark = NEEDS_CHROMIUM

PHONE = 375
# The elements and texts that reach past the window's right edge, furthest first: what makes a
# page too wide (a long word overflows its box without widening the box).
WIDEST = """() => {
  const found = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_ELEMENT | NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    let box = node, name = `${node.nodeName.toLowerCase()}.${node.className || ''}`;
    if (node.nodeType === 3) {
      box = document.createRange();
      box.selectNodeContents(node);
      name = `text "${node.textContent.trim().slice(0, 40)}"`;
    }
    const right = box.getBoundingClientRect().right;
    if (right > window.innerWidth) found.push([right, name]);
  }
  found.sort((a, b) => b[0] - a[0]);
  return found.slice(0, 5).map(([right, name]) => `${name} ${Math.round(right)}px`);
}"""


def log_in(browser, server, email: str):
    context = browser.new_context(
        base_url=server.url, viewport={"width": 1280, "height": 900}, accept_downloads=True
    )
    page = context.new_page()
    page.goto("/console/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/console/", timeout=60_000)  # the first overview lints every email
    return context, page


def ledger(server) -> Counter:
    """(campaign slug, audience, step, send status) -> sends, straight from the store."""
    query = (
        sa.select(campaigns.c.slug, enrollments.c.audience, sends.c.step_key, sends.c.status, sa.func.count())
        .select_from(sends.join(enrollments, enrollments.c.id == sends.c.enrollment_id))
        .join(campaigns, campaigns.c.id == enrollments.c.campaign_id)
        .group_by(campaigns.c.slug, enrollments.c.audience, sends.c.step_key, sends.c.status)
    )
    with server.store.engine.connect() as connection:
        return Counter({tuple(row[:4]): row[4] for row in connection.execute(query)})


def coordinator_imports(page, leads_file: Path) -> str:
    """Upload, map, dry run, import, download the rejects; returns the rejects' text."""
    from playwright.sync_api import expect

    upload_and_map_odd_csv(page, leads_file)
    for kind, number in [("new", "3"), ("updated", "0"), ("unchanged", "0"), ("rejected", "1")]:
        expect(page.locator(f"#count-{kind}")).to_have_text(number)
    expect(page.get_by_role("table", name="Rejected rows")).to_contain_text("bad-address")
    page.get_by_role("button", name="Import 3 new and 0 updated leads").click()
    expect(page.locator("#import-result")).to_contain_text("3 new, 0 updated, 0 unchanged, 1 rejected")
    with page.expect_download() as downloading:
        page.get_by_role("link", name="Download the 1 rejected rows").click()
    return Path(downloading.value.path()).read_text(encoding="utf-8")


def overview_rows(page, name: str) -> dict[tuple[str, str], list[int]]:
    """(audience, step) -> [sent, in flight, unknown, failed, skipped] from the overview's table."""
    table = page.get_by_role("table", name=f"Leads per audience and emails per step: {name}")
    found = {}
    for row in table.locator("tbody tr:not(.audience)").all():
        cells = row.locator("td").all_inner_texts()
        found[(cells[0], cells[1])] = [int(c) for c in cells[3:8]]
    return found


def report_sent(page, slug: str) -> dict[tuple[str, str], int]:
    """(audience, step) -> sent, from the report's tables of one campaign."""
    found = {}
    for section in page.locator("section.report").all():
        campaign, audience = section.get_by_role("heading", level=2).inner_text().split(" · ")
        if campaign != slug:
            continue
        for row in section.locator("tr[data-step]").all():
            sent = row.locator('td[data-count="sent"]').inner_text()
            found[(audience, row.get_attribute("data-step"))] = int(sent)
    return found


def test_the_coordinators_day_in_chromium(content_console, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    server = content_console
    leads_file = tmp_path / "form export.csv"
    leads_file.write_text(ODD_CSV, encoding="utf-8")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            coordinator_context, coordinator = log_in(browser, server, EMAILS["coordinator"])
            rejects = coordinator_imports(coordinator, leads_file)
            assert "bad-address" in rejects and "is not valid" in rejects
            assert server.store.lead_by_email("a@example.com").first_name == "Ann"

            # A coordinator has no approve button, and a forged approval is refused.
            coordinator_cannot_approve(coordinator_context, coordinator, server.url)
            # The reviewer approves with the attestation.
            reviewer_context, reviewer = log_in(browser, server, NAMED_REVIEWER)
            reviewer.goto(WELCOME)
            reviewer.get_by_label("I reviewed this email for medical accuracy.").check()
            reviewer.get_by_role("button", name="Approve this email").click()
            expect(reviewer.get_by_role("status")).to_contain_text("Approved.")
            reviewer_context.close()

            # The coordinator launches after reading the checklist.
            coordinator.goto("/console/campaigns")
            coordinator.get_by_role("link", name="Launch a campaign").click()
            coordinator.get_by_label("Name").fill("Spring 2026")
            coordinator.get_by_label("gad").check()
            coordinator.get_by_label("general").check()
            coordinator.get_by_role("button", name="Check this launch").click()
            checklist = coordinator.locator("ul.checklist > li")
            expect(checklist.filter(has_text="Every email approved")).to_contain_text("not yet")
            assert checklist.count() >= 7
            coordinator.get_by_role("button", name="Confirm and launch Spring 2026").click()
            expect(coordinator.get_by_role("status")).to_contain_text("Launched spring-2026.")

            # The tick, in-process on the app's database, as `campaign tick` would run it.
            now = server.clock()
            report = run_tick(build_context(server.settings, now=now, store=server.store), now)
            record_tick(server.store, report, started_at=now)
            counts = ledger(server)
            sent = {key[:3]: n for key, n in counts.items() if key[3] == "sent"}
            # Ann (gad) and Bea (general) get their welcome; Cy gave no consent.
            assert sorted((audience, step, n) for (_, audience, step), n in sent.items()) == [
                ("gad", "welcome", 1),
                ("general", "welcome", 1),
            ]
            with server.store.engine.connect() as connection:
                names = dict(connection.execute(sa.select(campaigns.c.slug, campaigns.c.name)).all())
            assert "spring-2026" in names

            # The overview shows the ledger's numbers, campaign by campaign, and the tick.
            coordinator.goto("/console/")
            statuses = ("sent", "claimed", "unknown", "failed", "skipped")
            for slug, name in names.items():
                section = coordinator.locator(f"section[aria-labelledby='campaign-{slug}']")
                expected_today = sum(n for (c, _, _), n in sent.items() if c == slug)
                expect(section.locator("dt:text-is('Sent today') + dd")).to_have_text(str(expected_today))
                if not any(key[0] == slug for key in counts):
                    continue
                shown = overview_rows(coordinator, name)
                for (audience, step), numbers in shown.items():
                    expected = [counts[(slug, audience, step, s)] for s in statuses]
                    assert numbers == expected, (slug, audience, step)
                assert {(slug, a, st) for (a, st), v in shown.items() if v[0]} == {
                    key for key in sent if key[0] == slug
                }
            ticks = coordinator.get_by_role("table", name="The most recent runs of the tick, newest first")
            expect(ticks.locator("tbody tr")).to_have_count(1)

            # The report too.
            coordinator.goto("/console/reports")
            in_report = {}
            for slug in names:
                in_report |= {(slug, *k): v for k, v in report_sent(coordinator, slug).items() if v}
            assert in_report == sent
            coordinator_context.close()

            # The activity log names every step of the day (an admin reads it).
            admin_context, admin = log_in(browser, server, EMAILS["admin"])
            admin.goto("/console/activity")
            log = admin.get_by_role("table", name="Activity, newest first")
            actions = set(log.locator("tbody tr td:nth-child(5)").all_inner_texts())
            assert {
                "login",
                "import.upload",
                "import",
                "import.rejects_download",
                "content.approve",
                "campaign.launch",
            } <= actions, actions
            coordinator_row = log.locator("tbody tr").filter(has_text="campaign.launch")
            expect(coordinator_row).to_contain_text(EMAILS["coordinator"])
            expect(log.locator("tbody tr").filter(has_text="content.approve")).to_contain_text(NAMED_REVIEWER)

            # Every console page fits a phone: no horizontal page scroll at 375 px.
            admin.goto("/console/leads")
            lead_url = admin.get_by_role("link", name="Ann Lee").get_attribute("href")
            admin.goto("/console/import")
            admin.get_by_label("A .csv or .xlsx file").set_input_files(leads_file)
            admin.get_by_role("button", name="Upload and check").click()
            check_url = admin.url.removeprefix(server.url)
            admin.set_viewport_size({"width": PHONE, "height": 800})
            too_wide = {}
            for path in (
                "/console/",
                "/console/leads",
                lead_url,
                "/console/import",
                check_url,
                "/console/audiences",
                "/console/content",
                WELCOME,
                "/console/campaigns",
                "/console/campaigns/launch?check=1&name=Autumn&audiences=gad",
                "/console/campaigns/spring-2026/stop",
                "/console/reports",
                "/console/activity",
                "/console/users",
                "/console/no-such-page",
            ):
                response = admin.goto(path)
                assert response.status in (200, 404), (path, response.status)
                width = admin.evaluate("document.scrollingElement.scrollWidth")
                if width > PHONE:
                    too_wide[path] = (width, admin.evaluate(WIDEST))
            assert too_wide == {}
            admin_context.close()
        finally:
            browser.close()
