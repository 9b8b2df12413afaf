"""A real person's path in a real browser: open the unsubscribe link from an outbox email in
headless Chromium (Debian's, at /usr/bin/chromium), press the button, see the confirmation;
then the next real tick sends that lead nothing."""

from __future__ import annotations

from browser_support import CHROMIUM, CHROMIUM_ARGS, NEEDS_CHROMIUM
from test_web import (
    NOW,
    next_tick_recipients,
    park_all_but,
    serve_app,
    unsubscribe_link,
    welcomed_and_due_at_next,
)

from campaign.app.leads import import_file
from campaign.engine import run_tick
from campaign.runtime import build_context
from campaign.settings import PROJECT_ROOT

pytestmark = NEEDS_CHROMIUM


def test_unsubscribe_by_pressing_the_button_in_chromium(make_settings):
    from playwright.sync_api import expect, sync_playwright

    with serve_app(make_settings) as live:
        # The real sample leads and a real first tick, with links pointing at this server.
        ctx = build_context(live.settings, now=NOW)
        import_file(ctx.store, live.settings, PROJECT_ROOT / "audiences" / "sample_leads.csv", NOW)
        run_tick(ctx, NOW)
        ctx.store.close()
        victim, control = welcomed_and_due_at_next(live.store, live.settings.outbox_dir)[:2]
        park_all_but(live.store, [victim, control])
        link = unsubscribe_link(live.settings.outbox_dir, victim)
        assert link.startswith(f"{live.url}/unsubscribe/")
        victim_id = live.store.lead_by_email(victim).id

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
            )
            try:
                page = browser.new_page(viewport={"width": 375, "height": 667}, java_script_enabled=False)
                response = page.goto(link)
                assert response is not None and response.status == 200
                expect(page.get_by_role("heading", level=1)).to_contain_text(
                    "Unsubscribe from Fresh Start Ketamine"
                )
                button = page.get_by_role("button", name="Unsubscribe")
                expect(button).to_be_visible()
                box = button.bounding_box()
                assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 375  # fits a phone
                assert live.store.is_reachable(victim_id)  # opening the page changed nothing

                button.click()
                expect(page.get_by_role("heading", level=1)).to_have_text("You are unsubscribed")
                expect(page.get_by_role("status")).to_contain_text("will not send you any more")
                expect(page.get_by_role("button", name="Undo: keep getting emails")).to_be_visible()
            finally:
                browser.close()

        assert not live.store.is_reachable(victim_id)
        sent = next_tick_recipients(live.settings)
    assert control in sent
    assert victim not in sent
