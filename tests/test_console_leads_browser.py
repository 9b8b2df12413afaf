"""The coordinator's import in Debian's chromium, without JavaScript: log in, upload a CSV
whose headers the console cannot guess, map its columns, read the dry run, import, download
the rejected rows, find the new lead; a file over the size limit gets a clear page. Then
axe-core on each page of the lead area (no serious or critical violation), and no page wider
than a phone."""

from __future__ import annotations

from pathlib import Path

from browser_support import (
    CHROMIUM,
    CHROMIUM_ARGS,
    NEEDS_CHROMIUM,
    upload_and_map_odd_csv,
)
from console_support import EMAILS, PASSWORD, Clock, serve_console

from campaign.models import AnxietyType, LeadIn

pytestmark = NEEDS_CHROMIUM

ODD_CSV = (
    "Electronic mail,Given,Family name,What worries you,Consent to email?\r\n"
    "a@example.com,Ann,Lee,GAD,yes\r\n"
    "bad-address,Bob,Ray,social,yes\r\n"
    "b@example.com,Bea,Kim,,yes\r\n"
    "c@example.com,Cy,Doe,,no\r\n"
)


def serious_violations(page) -> list[str]:
    from axe_playwright_python.sync_playwright import Axe

    found = Axe().run(page).response["violations"]
    return [
        f"{v['id']} ({v['impact']}): {[n['target'] for n in v['nodes']][:3]}"
        for v in found
        if v["impact"] in ("serious", "critical")
    ]


def test_a_coordinator_maps_checks_imports_and_downloads_the_rejects(make_settings, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    leads_file = tmp_path / "form export.csv"
    leads_file.write_text(ODD_CSV, encoding="utf-8")
    too_large = tmp_path / "everyone.csv"
    too_large.write_text("email\n" + "someone@example.com\n" * 50_000)  # 1 MB
    settings = make_settings(console_upload_dir=tmp_path / "uploads", console_upload_max_bytes=64 * 1024)
    with serve_console(settings, Clock()) as server, sync_playwright() as playwright:
        server.store.upsert_leads(
            [
                LeadIn(
                    email="a@example.com", first_name="Annie", last_name="Lee", anxiety_type=AnxietyType.gad
                ),
                LeadIn(email="c@example.com", first_name="Cy", last_name="Doe"),
            ],
            server.clock(),
        )
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(java_script_enabled=False, accept_downloads=True)
            page = context.new_page()
            page.goto(f"{server.url}/console/")
            page.get_by_label("Email").fill(EMAILS["coordinator"])
            page.get_by_label("Password").fill(PASSWORD)
            page.get_by_role("button", name="Log in").click()

            upload_and_map_odd_csv(page, leads_file)
            for kind, number in [("new", "1"), ("updated", "1"), ("unchanged", "1"), ("rejected", "1")]:
                expect(page.locator(f"#count-{kind}")).to_have_text(number)
            expect(page.get_by_role("table", name="Rejected rows")).to_contain_text("bad-address")
            assert server.store.lead_by_email("b@example.com") is None  # nothing written yet

            page.get_by_role("button", name="Import 1 new and 1 updated leads").click()
            expect(page.locator("#import-result")).to_contain_text(
                "1 new, 1 updated, 1 unchanged, 1 rejected"
            )
            with page.expect_download() as downloading:
                page.get_by_role("link", name="Download the 1 rejected rows").click()
            rejects = downloading.value
            assert rejects.suggested_filename == "form_export.rejected.csv"
            text = Path(rejects.path()).read_text(encoding="utf-8")
            assert "bad-address" in text and "is not valid" in text
            assert server.store.lead_by_email("b@example.com").first_name == "Bea"

            page.get_by_role("link", name="See the leads").click()
            page.get_by_label("Address or name (how it starts)").fill("bea")
            page.get_by_role("button", name="Find").click()
            page.get_by_role("link", name="Bea Kim").click()
            expect(page.get_by_role("heading", level=1)).to_have_text("Bea Kim")
            expect(page.get_by_role("cell", name="welcome", exact=True)).to_be_visible()  # the planned emails
            lead_url = page.url

            # A file over the limit: a clear page, not a broken connection.
            page.goto(f"{server.url}/console/import")
            page.get_by_label("A .csv or .xlsx file").set_input_files(too_large)
            page.get_by_role("button", name="Upload and check").click()
            expect(page.get_by_role("alert")).to_contain_text("That file is larger than 64 KB")

            # axe-core needs JavaScript: the same session in a context that runs it.
            checked = browser.new_context(viewport={"width": 1280, "height": 900})
            checked.add_cookies(context.cookies())
            axe_page = checked.new_page()
            axe_page.goto(f"{server.url}/console/import")
            axe_page.get_by_label("A .csv or .xlsx file").set_input_files(leads_file)
            axe_page.get_by_role("button", name="Upload and check").click()
            upload_url = axe_page.url
            problems = {}
            for path in ("/console/leads", lead_url, "/console/import", upload_url, "/console/audiences"):
                for width in (1280, 375):
                    axe_page.set_viewport_size({"width": width, "height": 900})
                    axe_page.goto(path if path.startswith("http") else server.url + path)
                    found = serious_violations(axe_page)
                    if found:
                        problems[f"{path} at {width}px"] = found
                    overflow = axe_page.evaluate("document.documentElement.scrollWidth")
                    assert overflow <= width, f"{path} is {overflow}px wide at {width}px"
            assert problems == {}
        finally:
            browser.close()
