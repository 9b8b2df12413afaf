"""/console/reports over real HTTP: the numbers of `campaign report`, a chart per audience, and
the CSV download (audited)."""

from __future__ import annotations

import csv
import io
import json
import re

from console_pages_support import audit_actions, populate
from test_console_security import assert_security_headers
from typer.testing import CliRunner

from campaign.cli import app
from campaign.report import COUNTS, FUNNEL


def cli_report(server, monkeypatch, *args) -> dict:
    s = server.settings
    monkeypatch.setenv("CAMPAIGN_DATABASE_URL", s.database_url)
    monkeypatch.setenv("CAMPAIGN_SECRET_KEY", s.secret_key.get_secret_value())
    monkeypatch.setenv("CAMPAIGN_CONTENT_DIR", str(s.content_dir))
    result = CliRunner().invoke(app, ["report", *args, "--format", "json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def page_numbers(html: str) -> dict[tuple[str, str, str], dict[str, int]]:
    """(campaign, audience, step) -> the counts of each table row on the page."""
    found = {}
    for section in re.findall(r'<section class="report".*?</section>', html, re.S):
        campaign, audience = re.search(r"<h2 [^>]*>([^<]+) · ([^<]+)</h2>", section).groups()
        for step, cells in re.findall(r'<tr data-step="([^"]+)">(.*?)</tr>', section, re.S):
            counts = dict(re.findall(r'data-count="(\w+)">(\d+)<', cells))
            found[(campaign, audience, step)] = {k: int(v) for k, v in counts.items()}
    return found


def test_the_report_page_shows_the_numbers_of_campaign_report(console_server, monkeypatch):
    populate(console_server)
    for role in ("coordinator", "reviewer"):
        page = console_server.login(role).get("/console/reports")
        assert page.status_code == 200
        assert_security_headers(page)
    expected = {
        (r["campaign"], r["audience"], r["step"]): {k: r[k] for k in COUNTS}
        for r in cli_report(console_server, monkeypatch)["rows"]
    }
    shown = page_numbers(page.text)
    assert shown == expected
    assert shown[("evergreen", "gad", "welcome")]["sent"] == 3
    assert shown[("evergreen", "social", "welcome")]["enrolled"] == 2
    assert "No delivery events yet" in page.text


def test_each_audience_has_a_chart_without_script_or_inline_style(console_server):
    populate(console_server)
    page = console_server.login("coordinator").get("/console/reports")
    charts = re.findall(r'<svg class="chart".*?</svg>', page.text, re.S)
    assert len(charts) == 2  # gad and social in the evergreen campaign
    gad = next(c for c in charts if "evergreen, gad" in c)
    assert gad.count("<rect ") == 5 * len(FUNNEL)  # five steps, a bar per funnel count
    assert "<title>welcome: 3 sent</title>" in gad
    assert "style=" not in page.text and "<script" not in page.text


def test_the_csv_download_is_the_cli_csv_and_is_audited(console_server, monkeypatch):
    populate(console_server)
    client = console_server.login("reviewer")
    download = client.get("/console/reports.csv", params={"campaign": "evergreen"})
    assert download.status_code == 200
    assert download.headers["content-type"].startswith("text/csv")
    assert download.headers["content-disposition"].startswith('attachment; filename="report-evergreen-')
    assert_security_headers(download)
    rows = list(csv.DictReader(io.StringIO(download.text)))
    expected = cli_report(console_server, monkeypatch, "evergreen")["rows"]
    assert [(r["audience"], r["step"], int(r["sent"])) for r in rows] == [
        (r["audience"], r["step"], r["sent"]) for r in expected
    ]
    [entry] = audit_actions(console_server, "report.export")
    assert (entry.actor, entry.object_id, entry.detail) == ("reviewer@clinic.example", "evergreen", "10 rows")


def test_one_campaign_and_an_unknown_one(console_server):
    populate(console_server)
    client = console_server.login("coordinator")
    page = client.get("/console/reports", params={"campaign": "evergreen"})
    assert page.status_code == 200 and '<option value="evergreen" selected>' in page.text
    assert 'href="/console/reports.csv?campaign=evergreen"' in page.text
    missing = client.get("/console/reports", params={"campaign": "nope"})
    assert missing.status_code == 404 and "There is no campaign" in missing.text
    assert client.get("/console/reports.csv", params={"campaign": "nope"}).status_code == 404
    assert audit_actions(console_server, "report.export") == []
