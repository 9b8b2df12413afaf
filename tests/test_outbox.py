"""The outbox as a coordinator opens it from disk: index.html with audience, step and campaign
columns, counts and a filter; a readable page beside each .eml; written once per tick; and the
audience never in a file name or a header of the message."""

from __future__ import annotations

import email
import email.policy
import re
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from browser_support import CHROMIUM, CHROMIUM_ARGS, SKIP_REASON

from campaign.delivery.outbox import read_index
from campaign.engine import run_tick
from campaign.models import AnxietyType, LeadIn
from campaign.runtime import build_context

MONDAY_10 = datetime(2026, 3, 2, 10, 0, tzinfo=ZoneInfo("America/New_York")).astimezone(UTC)
AUDIENCE_NAMES = ("gad", "social", "treatment_resistant", "general")
LEADS = [
    LeadIn(email="g1@example.com", first_name="Gia", anxiety_type=AnxietyType.gad, consent=True),
    LeadIn(email="g2@example.com", anxiety_type=AnxietyType.gad, consent=True),
    LeadIn(email="s1@example.com", anxiety_type=AnxietyType.social, consent=True),
    LeadIn(email="t1@example.com", anxiety_type=AnxietyType.treatment_resistant, consent=True),
    LeadIn(email="u1@example.com", consent=True),
]


@pytest.fixture
def ticked(make_settings, tmp_path):
    """Five leads, one tick in batches of two: every welcome email written to the outbox."""
    from campaign.runtime import open_store

    settings = make_settings(batch_size=2)
    store = open_store(settings)
    store.upsert_leads(LEADS, MONDAY_10)
    report = run_tick(build_context(settings, now=MONDAY_10, store=store), MONDAY_10)
    assert sum(report.sent.values()) == 5
    yield settings
    store.close()


def test_index_has_audience_step_campaign_counts_and_a_page_per_email(ticked):
    outbox = ticked.outbox_dir
    entries = read_index(outbox)
    assert {(e["to"], e["audience"], e["step"], e["campaign"]) for e in entries} == {
        ("g1@example.com", "gad", "welcome", "evergreen"),
        ("g2@example.com", "gad", "welcome", "evergreen"),
        ("s1@example.com", "social", "welcome", "evergreen"),
        ("t1@example.com", "treatment_resistant", "welcome", "evergreen"),
        ("u1@example.com", "general", "welcome", "evergreen"),
    }
    index = (outbox / "index.html").read_text()
    for heading in ("Audience", "Step", "Campaign", "Subject"):
        assert f"<th>{heading}</th>" in index
    assert "<strong>5</strong> emails" in index and "gad 2" in index and "evergreen 5" in index
    assert '<script src="outbox.js" defer></script>' in index and (outbox / "outbox.js").exists()
    assert "<script>" not in index  # no inline script: the filter is the external file
    row = next(line for line in index.splitlines() if "g1@example.com" in line)
    assert 'data-audience="gad"' in row and 'data-step="welcome"' in row
    view = outbox / entries[0]["view"]
    assert f'href="{entries[0]["view"]}"' in index and view.exists()
    page = view.read_text()
    assert entries[0]["subject"] in page and "srcdoc=" in page and "Text part" in page
    assert f'href="{entries[0]["file"]}"' in page  # and the raw message, one click away


def test_the_audience_stays_out_of_file_names_and_message_headers(ticked):
    outbox = ticked.outbox_dir
    names = [p.name for p in outbox.iterdir()]
    for name in names:
        assert not any(a in name for a in AUDIENCE_NAMES), name
    for path in outbox.glob("*.eml"):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        headers = " ".join(f"{k}: {v}" for k, v in message.items()).lower()
        assert not any(re.search(rf"\b{a}\b", headers) for a in AUDIENCE_NAMES), headers


def test_the_index_is_written_once_per_tick_not_per_batch(make_settings):
    from sendgrid_fixtures import make_email

    from campaign.delivery.outbox import OutboxTransport

    settings = make_settings()
    transport = OutboxTransport(settings.outbox_dir, describe=lambda ids: {})
    transport.send_batch([make_email(1), make_email(2)])
    transport.send_batch([make_email(3)])
    assert len(read_index(settings.outbox_dir)) == 3
    assert not (settings.outbox_dir / "index.html").exists()  # batches only append to index.jsonl
    index = transport.finish()
    assert index == settings.outbox_dir / "index.html"
    assert index.read_text().count('<tr data-audience="') == 3


def test_a_tick_that_writes_nothing_writes_no_index(make_settings):
    from campaign.delivery.outbox import OutboxTransport

    settings = make_settings()
    assert OutboxTransport(settings.outbox_dir).finish() is None
    assert not settings.outbox_dir.exists()


@pytest.mark.browser
def test_the_filter_works_from_disk_without_a_network(ticked):
    if not CHROMIUM.exists():
        pytest.skip(SKIP_REASON)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.route(
                "**/*",
                lambda route: (
                    route.abort() if not route.request.url.startswith("file:") else route.continue_()
                ),
            )
            page.goto((ticked.outbox_dir / "index.html").as_uri())
            page.wait_for_selector("#filter:not([hidden])")
            assert page.locator("#shown").inner_text() == "5 of 5 emails shown"
            page.select_option("select[name=audience]", "gad")
            visible = page.locator("#emails tbody tr:visible")
            assert visible.count() == 2
            assert all("g1@" in row or "g2@" in row for row in visible.all_inner_texts())
            assert page.locator("#shown").inner_text() == "2 of 5 emails shown"
            page.select_option("select[name=audience]", "")
            page.select_option("select[name=campaign]", "evergreen")
            assert page.locator("#emails tbody tr:visible").count() == 5
            page.locator("#emails a", has_text=read_index(ticked.outbox_dir)[0]["subject"]).first.click()
            page.wait_for_selector("iframe[srcdoc]")
            assert "Outbox" in page.locator("a[href='index.html']").inner_text()
        finally:
            browser.close()
