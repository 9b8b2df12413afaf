"""The console's overview over real HTTP: campaign counts equal the ledger, the tick history
(written by the tick flow), and every preflight problem as a banner."""

from __future__ import annotations

import re
import shutil

import pytest
import sqlalchemy as sa
from console_support import START, Clock, serve_console
from send_counts_support import assert_counts_match
from store_support import downgrade, model_diffs

from campaign.app.leads import import_file
from campaign.app.ticks import recent_ticks, record_tick, records_tick, scrub_error
from campaign.campaigns import PreflightFailed, change_state
from campaign.engine import run_tick
from campaign.runtime import build_context
from campaign.settings import DEV_SECRET_KEY, PROJECT_ROOT
from campaign.store.ticks import KEEP, TickRuns

SAMPLE = PROJECT_ROOT / "audiences" / "sample_leads.csv"


def step_sent(html: str, audience: str, step: str) -> int:
    """The Sent cell of an audience's step row in the overview's table."""
    row = re.search(
        rf"<tr><td>{audience}</td><td>{step}</td><td class=\"num\">[^<]*</td>\s*<td class=\"num\">(\d+)</td>",
        html,
    )
    assert row, (audience, step)
    return int(row.group(1))


def fact(html: str, label: str) -> int:
    return int(re.search(rf"<dt>{label}</dt><dd>(\d+)</dd>", html).group(1))


def test_overview_counts_equal_the_ledger_after_a_tick(console_server, tmp_path):
    leads_csv = tmp_path / "leads.csv"
    shutil.copy(SAMPLE, leads_csv)
    ctx = build_context(console_server.settings, now=START, store=console_server.store)
    import_file(ctx.store, console_server.settings, leads_csv, START)
    report = run_tick(ctx, START)
    record_tick(ctx.store, report, started_at=START)
    matrix = ctx.store.send_matrix()
    assert sum(matrix.values()) > 50

    html = console_server.login("reviewer").get("/console/").text
    for (audience, step), n in matrix.items():
        assert step_sent(html, audience, step) == n
    assert step_sent(html, "gad", "brain") == 0
    assert fact(html, "Sent today") == sum(matrix.values())
    assert fact(html, "Failures") == 0 and fact(html, "Unknown sends") == 0
    with ctx.store.engine.connect() as conn:
        enrolled = dict(
            conn.execute(sa.text("SELECT audience, count(*) FROM enrollments GROUP BY audience")).all()
        )
    for audience, n in enrolled.items():
        assert f"{audience}: {n} enrolled, {n} active" in html
    # The per-step table is read from send_counts (kept by triggers), not counted per request.
    assert_counts_match(ctx.store, at_least=50)
    with ctx.store.engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE send_counts SET n = n + 1000 WHERE audience = 'gad' AND step_key = 'welcome'")
        )
    html = console_server.login("reviewer").get("/console/").text
    assert step_sent(html, "gad", "welcome") == matrix[("gad", "welcome")] + 1000
    # The tick history: this tick, its outcome and its counts.
    ticks = html[html.index('id="ticks"') :]
    assert "2026-03-02 10:00 EST" in ticks and 'class="outcome-ok">ok<' in ticks
    assert f'<td class="num">{sum(matrix.values())}</td>' in ticks


def test_overview_says_why_a_campaign_is_paused(console_server):
    change_state(console_server.store, "evergreen", "pause", "checking the copy")
    html = console_server.login("coordinator").get("/console/").text
    assert 'class="state-paused">paused<' in html
    assert "Paused: checking the copy" in html


BANNERS = (
    "content not approved since its last change",
    "postal_address is the example address",
    "CAMPAIGN_PUBLIC_URL is",
    "CAMPAIGN_SECRET_KEY is the development key",
    "SENDGRID_WEBHOOK_PUBLIC_KEY is not set",
)


def banners(html: str) -> list[tuple[str, str]]:
    return re.findall(r'<div class="banner (\w+)" role="\w+">([^<]*)</div>', html)


def test_every_preflight_problem_is_a_banner(make_settings):
    settings = make_settings(secret_key=DEV_SECRET_KEY)
    with serve_console(settings, Clock()) as server:
        found = banners(server.login("coordinator").get("/console/").text)
    for expected in BANNERS:
        assert any(expected in text for _, text in found), expected
    assert {kind for kind, _ in found} == {"warning"}  # the outbox: nothing is refused yet


def test_banners_are_errors_when_sends_are_live(make_settings):
    settings = make_settings(SENDGRID_API_KEY="SG.key", SENDGRID_API_HOST="https://sendgrid.invalid")
    with serve_console(settings, Clock()) as server:
        found = banners(server.login("coordinator").get("/console/").text)
    assert found and {kind for kind, _ in found} == {"error"}
    assert all(text.startswith("Live sends are refused until this is fixed") for _, text in found)
    assert not any("CAMPAIGN_SECRET_KEY" in text for _, text in found)  # a real secret here


def test_a_content_edit_shows_at_once_despite_the_lint_cache(make_settings, tmp_path):
    content = tmp_path / "content"
    for part in ("audiences", "templates"):
        shutil.copytree(PROJECT_ROOT / part, content / part)
    shutil.copy(PROJECT_ROOT / "clinic.yaml", content / "clinic.yaml")
    with serve_console(make_settings(content_dir=content), Clock()) as server:
        client = server.login("reviewer")
        assert not any("lint:" in text for _, text in banners(client.get("/console/").text))
        welcome = content / "templates" / "gad" / "welcome.md"
        welcome.write_text(welcome.read_text().replace("subject:", "subject: Guaranteed cure!", 1))
        found = banners(client.get("/console/").text)
        assert any("lint: gad/welcome" in text for _, text in found), found


def test_an_approval_and_a_content_edit_show_at_once_despite_the_approval_cache(make_settings, tmp_path):
    from campaign.app.content import record_approvals
    from campaign.audiences import load_audiences

    content = tmp_path / "content"
    for part in ("audiences", "templates"):
        shutil.copytree(PROJECT_ROOT / part, content / part)
    shutil.copy(PROJECT_ROOT / "clinic.yaml", content / "clinic.yaml")
    settings = make_settings(content_dir=content)

    def unapproved_banner(client) -> str:
        return next((t for _, t in banners(client.get("/console/").text) if "not approved" in t), "")

    with serve_console(settings, Clock()) as server:
        client = server.login("coordinator")
        assert "gad/welcome" in unapproved_banner(client)
        names = [st.template for a in load_audiences(server.settings.audiences_dir) for st in a.steps]
        record_approvals(server.store, server.settings, names, by="Dr. Lee")
        assert unapproved_banner(client) == ""
        welcome = content / "templates" / "gad" / "welcome.md"
        welcome.write_text(welcome.read_text() + "\nOne more line.\n")
        assert "gad/welcome" in unapproved_banner(client)
        assert "gad/brain" not in unapproved_banner(client)


# ---- the tick history ---------------------------------------------------------------------------


def test_the_tick_entry_point_records_ok_refused_and_failed(make_settings, monkeypatch):
    settings = make_settings()
    monkeypatch.setenv("CAMPAIGN_DATABASE_URL", settings.database_url)
    with serve_console(settings, Clock(), users=False) as server:
        ok = records_tick(lambda now=None: {"totals": {"sent": 3, "enrolled": 2}, "finished": 1})
        assert ok("2026-03-02T15:00:00+00:00")["totals"]["sent"] == 3

        def refused(now=None):
            raise PreflightFailed(["clinic.yaml: sender_email 'care@clinic.example' is not a real sender"])

        def failed(now=None):
            raise RuntimeError("SendGrid said 401 for ann@example.com")

        for run, error in ((refused, PreflightFailed), (failed, RuntimeError)):
            with pytest.raises(error):
                records_tick(run)("2026-03-02T15:15:00+00:00")
        runs = recent_ticks(server.store)
    assert [r.outcome for r in runs] == ["failed", "refused", "ok"]
    assert runs[2].counts["sent"] == 3 and runs[2].counts["finished"] == 1
    assert runs[2].started_at == START and runs[2].finished_at >= START
    assert runs[1].error == "clinic.yaml: sender_email '[address]' is not a real sender"
    assert runs[0].error == "RuntimeError: SendGrid said 401 for [address]"


@pytest.mark.prefect
def test_the_tick_flow_leaves_a_row_in_the_history(prefect_harness, settings, monkeypatch):
    monkeypatch.setenv("CAMPAIGN_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("CAMPAIGN_OUTBOX_DIR", str(settings.outbox_dir))
    from flows.tick import tick

    tick(now="2026-03-02T15:00:00+00:00")
    monkeypatch.setenv("SENDGRID_API_KEY", "SG.key")
    monkeypatch.setenv("SENDGRID_API_HOST", "https://sendgrid.invalid")  # live: the preflight refuses
    with pytest.raises(PreflightFailed):
        tick(now="2026-03-02T15:15:00+00:00")
    from campaign.runtime import open_store

    with open_store(settings) as store:
        runs = recent_ticks(store)
    assert [r.outcome for r in runs] == ["refused", "ok"]
    assert "SENDGRID_WEBHOOK_PUBLIC_KEY is not set" in runs[0].error and "@" not in runs[0].error


def test_scrub_error_removes_addresses_and_newlines():
    assert scrub_error("to <a.b+c@x.org>\nand d@y.co") == "to <[address]> and [address]"
    assert len(scrub_error("x" * 5000)) == 1000


def test_the_history_keeps_the_newest_runs(store):
    runs = TickRuns(store.engine)
    for i in range(KEEP + 5):
        runs.add(started_at=START, finished_at=START, outcome="ok", counts={"sent": i}, error="")
    with store.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM tick_runs")).scalar() == KEEP
    assert runs.recent(1)[0].counts == {"sent": KEEP + 4}
    with pytest.raises(ValueError):
        runs.add(started_at=START, finished_at=START, outcome="maybe", counts={}, error="")


def test_migration_creates_the_tick_history_as_declared(store, database_url):

    def diffs() -> list:
        return model_diffs(store, "tick_runs")

    assert "tick_runs" in sa.inspect(store.engine).get_table_names()
    assert diffs() == []
    downgrade(store, database_url, "0003_accounts")
    assert "tick_runs" not in sa.inspect(store.engine).get_table_names()
    store.migrate()
    assert diffs() == []


def test_the_0010_overview_indexes_are_declared_and_downgrade(store, database_url):

    wanted = {"ix_sends_status_settled", "ix_enrollments_campaign_state"}

    def indexes() -> set[str]:
        found = sa.inspect(store.engine)
        return {i["name"] for table in ("sends", "enrollments") for i in found.get_indexes(table)} & wanted

    def diffs() -> list:
        return model_diffs(store, *wanted)

    assert indexes() == wanted and diffs() == []
    downgrade(store, database_url, "0009_sendpath")
    assert indexes() == set()
    store.migrate()
    assert indexes() == wanted and diffs() == []
