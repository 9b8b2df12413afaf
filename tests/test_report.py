"""The results report: numbers from the ledger and events; the HTML page in a real browser."""

from __future__ import annotations

from datetime import timedelta

import pytest
from browser_support import CHROMIUM, CHROMIUM_ARGS, SKIP_REASON, png_pixels
from conftest import utc

from campaign.engine import run_tick
from campaign.events import normalize
from campaign.models import AnxietyType, LeadIn
from campaign.report import build_report, to_html
from campaign.runtime import build_context

MONDAY_15 = utc(2026, 3, 2, 15, 0)


def steps(ctx):
    return {a.name: [s.key for s in a.steps] for a in ctx.audiences}


@pytest.fixture
def populated(settings, sqlite_store):
    """Six GAD and four social leads, welcomed; events for some; one booking."""
    ctx = build_context(settings, now=MONDAY_15, store=sqlite_store)
    leads = [LeadIn(email=f"g{i}@example.com", consent=True, anxiety_type=AnxietyType.gad) for i in range(6)]
    leads += [
        LeadIn(email=f"s{i}@example.com", consent=True, anxiety_type=AnxietyType.social) for i in range(4)
    ]
    sqlite_store.upsert_leads(leads, MONDAY_15)
    run_tick(ctx, MONDAY_15)
    ledger = sqlite_store.ledger()
    events = []
    for n, row in enumerate(r for r in ledger if r["audience"] == "gad"):
        kinds = ["delivered"] + (["open"] if n < 4 else []) + (["click"] if n < 2 else [])
        events += [
            normalize(
                {
                    "email": row["email"],
                    "event": k,
                    "timestamp": 1772463600 + n,
                    "sg_event_id": f"{k}-{n}",
                    "sg_message_id": f"m{n}.filter",
                    "send_id": row["send_id"],
                }
            )
            for k in kinds
        ]
    sqlite_store.record_events(events, MONDAY_15)
    sqlite_store.mark_booked("g0@example.com", MONDAY_15 + timedelta(days=2))
    return ctx


def test_report_counts_match_ledger_and_events(populated):
    report = build_report(populated.store, steps(populated), MONDAY_15)
    row = next(
        r for r in report.rows if (r["campaign"], r["audience"], r["step"]) == ("evergreen", "gad", "welcome")
    )
    assert (row["enrolled"], row["sent"], row["delivered"], row["opened"], row["clicked"], row["booked"]) == (
        6,
        6,
        6,
        4,
        2,
        1,
    )
    assert row["open_rate"] == round(4 / 6, 4) and row["booking_rate"] == round(1 / 6, 4)
    assert report.median_days_to_booking[("evergreen", "gad")] == 2.0
    social = next(r for r in report.rows if (r["audience"], r["step"]) == ("social", "welcome"))
    assert social["sent"] == 4 and social["delivered"] == 0 and social["open_rate"] is None


@pytest.mark.browser
def test_html_report_opens_offline_and_its_chart_is_visible(populated, tmp_path):
    if not CHROMIUM.exists():
        pytest.skip(SKIP_REASON)
    from playwright.sync_api import sync_playwright

    page_path = tmp_path / "report.html"
    page_path.write_text(to_html(build_report(populated.store, steps(populated), MONDAY_15)))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 900, "height": 700})
            page.route(
                "**/*",
                lambda route: (
                    route.abort() if not route.request.url.startswith("file:") else route.continue_()
                ),
            )
            page.goto(page_path.as_uri())
            chart = page.locator("section.audience svg").first
            assert page.locator("section.audience").count() == 2  # gad and social
            box = chart.bounding_box()
            assert box and box["width"] > 300 and box["height"] > 100
            bars = page.locator("section.audience").first.locator("rect.bar.sent")
            assert bars.first.bounding_box()["height"] > 20  # a real bar, not a zero-height one
            shot = chart.screenshot(path=str(tmp_path / "chart.png"))
        finally:
            browser.close()
    width, height, rows = png_pixels(shot)
    bpp = len(rows[0]) // width
    sent_colour = bytes.fromhex("12506b")
    bar_pixels = sum(1 for row in rows for i in range(0, len(row), bpp) if row[i : i + 3] == sent_colour)
    assert bar_pixels > 500, (
        f"the chart's 'sent' bars are not visible in the screenshot ({bar_pixels} pixels)"
    )


def test_chart_labels_its_axes_and_every_bar(populated):
    """Each bar carries its count; the y axis has whole-number ticks and a title; the x axis too."""
    import re

    from campaign.report import funnel_svg

    report = build_report(populated.store, steps(populated), MONDAY_15)
    gad = [r for r in report.rows if r["audience"] == "gad"]
    svg = funnel_svg(gad, "Funnel")
    welcome = gad[0]
    for kind in ("sent", "delivered", "opened", "clicked", "booked"):
        labels = re.findall(rf'<text class="value {kind}"[^>]*>(\d+)</text>', svg)
        assert labels == [str(r[kind]) for r in gad], kind
    assert (welcome["sent"], welcome["opened"]) == (6, 4)
    ticks = re.findall(r'<text class="tick"[^>]*>([^<]+)</text>', svg)
    assert ticks[0] == "0" and all(t.isdigit() for t in ticks) and int(ticks[-1]) >= 6 and len(ticks) >= 3
    assert ">emails</text>" in svg and ">step of the sequence</text>" in svg
    assert "max-width" not in svg  # it takes the page's width


@pytest.mark.browser
def test_html_report_chart_uses_the_page_width(populated, tmp_path):
    if not CHROMIUM.exists():
        pytest.skip(SKIP_REASON)
    from playwright.sync_api import sync_playwright

    page_path = tmp_path / "report.html"
    page_path.write_text(to_html(build_report(populated.store, steps(populated), MONDAY_15)))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(page_path.as_uri())
            body = page.evaluate("document.body.clientWidth")
            chart = page.locator("section.audience svg").first.bounding_box()
            assert chart["width"] >= 0.9 * body, (chart, body)
            value = page.locator("section.audience").first.locator("text.value.sent").first
            assert value.inner_html() == "6" and value.bounding_box()["height"] > 5  # drawn, not hidden
        finally:
            browser.close()
