"""A real person's sign-up in a real browser (Debian's chromium, JavaScript off): fill in the form
with the keyboard, send it, open the confirmation link from the outbox email, press the button;
then the next real tick sends the welcome."""

from __future__ import annotations

from datetime import timedelta

from browser_support import CHROMIUM, CHROMIUM_ARGS, NEEDS_CHROMIUM
from forms_support import confirm_link, lead_row, new_form, wait_for_email
from test_api import NOW, serve
from test_forms import tick

pytestmark = NEEDS_CHROMIUM


def test_sign_up_confirm_in_chromium_and_the_next_tick_sends_the_welcome(make_settings):
    from playwright.sync_api import expect, sync_playwright

    with serve(make_settings) as live:
        form = new_form(live)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
            )
            try:
                page = browser.new_page(viewport={"width": 375, "height": 667}, java_script_enabled=False)
                response = page.goto(f"{live.url}/forms/{form.key}")
                assert response is not None and response.status == 200
                expect(page.get_by_role("heading", level=1)).to_contain_text("Sign up for emails")
                expect(page.locator("#website")).not_to_be_in_viewport()  # the honeypot is off screen

                # The keyboard alone: Tab through every field in order (never the honeypot).
                page.keyboard.press("Tab")
                expect(page.get_by_label("Email address")).to_be_focused()
                page.keyboard.type("Robin@Example.com")
                page.keyboard.press("Tab")
                expect(page.get_by_label("First name (optional)")).to_be_focused()
                page.keyboard.type("Robin")
                page.keyboard.press("Tab")
                expect(page.get_by_label(form.audience_question)).to_be_focused()
                page.get_by_label(form.audience_question).select_option("Social anxiety")
                page.keyboard.press("Tab")
                expect(page.get_by_label("How many treatments for anxiety have you tried?")).to_be_focused()
                page.keyboard.press("Tab")
                consent = page.get_by_label(form.consent_text)
                expect(consent).to_be_focused()
                page.keyboard.press("Space")
                expect(consent).to_be_checked()
                page.keyboard.press("Tab")
                expect(page.get_by_role("button", name="Sign up")).to_be_focused()

                live.clock.now += timedelta(seconds=20)  # the time a person takes to fill it in
                page.keyboard.press("Enter")
                expect(page.get_by_role("heading", level=1)).to_have_text(
                    "Thank you. Please check your email"
                )
                expect(page.get_by_role("status")).to_contain_text("We have sent a link")
                expect(page.get_by_text("988").first).to_be_visible()
                row = lead_row(live, "robin@example.com")
                assert row["anxiety_type"] == "social" and row["unconfirmed_since"] is not None
                # The confirmation goes out after the answer (a background task): wait for it, so
                # the tick below counts only what the tick itself sent.
                message = wait_for_email(live, "robin@example.com")
                assert tick(live, NOW) == []  # not confirmed: nothing

                link = confirm_link(message)
                assert page.goto(link).status == 200
                button = page.get_by_role("button", name="Confirm my email")
                expect(button).to_be_visible()
                box = button.bounding_box()
                assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 375  # fits a phone
                assert lead_row(live, "robin@example.com")["unconfirmed_since"] is not None  # GET: nothing
                button.click()
                expect(page.get_by_role("heading", level=1)).to_have_text("Your email is confirmed")
                expect(page.get_by_role("status")).to_contain_text("first email")
            finally:
                browser.close()

        assert lead_row(live, "robin@example.com")["confirmed_at"] is not None
        assert tick(live, NOW + timedelta(minutes=15)) == ["robin@example.com"]
