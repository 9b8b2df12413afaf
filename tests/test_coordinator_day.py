"""The coordinator's whole day through the CLI: import, launch, ticks over simulated days,
pause, resume, status, report in every format; the report's numbers match the ledger."""

from __future__ import annotations

import csv
import io
import json
import time
from datetime import UTC

import pytest
from typer.testing import CliRunner

from campaign.campaigns import CampaignError, change_state, launch, preflight
from campaign.cli import app
from campaign.events import normalize
from campaign.runtime import open_store

runner = CliRunner()
LEADS = (
    "Email,First Name,Anxiety,Consent,State\n"
    "gina@example.com,Gina,GAD,yes,NC\n"
    "sol@example.com,Sol,social phobia,yes,NC\n"
    "tara@example.com,Tara,nothing has worked,yes,NC\n"
    "nora@example.com,Nora,,yes,NC\n"
    "nick@example.com,Nick,GAD,no,NC\n"
)
MONDAY = "2026-03-02T10:00:00-05:00"
THURSDAY = "2026-03-05T10:00:00-05:00"
FRIDAY = "2026-03-06T10:00:00-05:00"
NEXT_MONDAY = "2026-03-09T10:00:00-04:00"


def cli(*args):
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture
def env(settings, monkeypatch, tmp_path):
    for key, value in {
        "CAMPAIGN_DATABASE_URL": settings.database_url,
        "CAMPAIGN_OUTBOX_DIR": str(settings.outbox_dir),
        "CAMPAIGN_SECRET_KEY": "day-secret",
        "CAMPAIGN_PUBLIC_URL": settings.public_url,
        "COLUMNS": "220",
    }.items():
        monkeypatch.setenv(key, value)
    (tmp_path / "leads.csv").write_text(LEADS)
    return settings


@pytest.mark.prefect
def test_whole_day(prefect_harness, env, tmp_path):
    cli("import", str(tmp_path / "leads.csv"))
    cli("pause", "evergreen", "--reason", "spring campaign instead")
    launched = cli("launch", "Spring 2026", "--audiences", "gad,social")
    assert "spring-2026" in launched.output and "postal_address" in launched.output  # drafts listed

    first = json.loads(cli("tick", "--now", MONDAY, "--json").stdout)
    assert first["sent"] == {"gad/welcome": 1, "social/welcome": 1}  # only the campaign's audiences

    cli("pause", "spring-2026", "--reason", "checking copy")
    status = json.loads(cli("status", "--format", "json").stdout)
    spring = next(c for c in status if c["campaign"] == "spring-2026")
    assert spring["state"] == "paused" and spring["paused_reason"] == "checking copy"
    paused_tick = json.loads(cli("tick", "--now", THURSDAY, "--json").stdout)
    assert paused_tick["totals"]["sent"] == 0

    cli("resume", "spring-2026")
    resumed = json.loads(cli("tick", "--now", FRIDAY, "--json").stdout)
    assert resumed["sent"] == {"gad/brain": 1, "social/brain": 1}  # one per lead: no burst
    cli("tick", "--now", NEXT_MONDAY, "--json")

    # Events from SendGrid for the first email to Gina: delivered and opened.
    store = open_store(env)
    try:
        ledger = store.ledger()
        gina_welcome = next(
            r for r in ledger if r["email"] == "gina@example.com" and r["step_key"] == "welcome"
        )
        store.record_events(
            [
                normalize(
                    {
                        "email": "gina@example.com",
                        "event": kind,
                        "timestamp": int(time.time()),
                        "sg_event_id": f"ev-{kind}",
                        "sg_message_id": "x.filter",
                        "send_id": gina_welcome["send_id"],
                    }
                )
                for kind in ("delivered", "open")
            ],
            gina_welcome["claimed_at"],
        )
        store.mark_booked(
            "gina@example.com", gina_welcome["claimed_at"].replace(day=gina_welcome["claimed_at"].day + 8)
        )
    finally:
        store.close()

    report = json.loads(cli("report", "spring-2026", "--format", "json").stdout)
    rows = {(r["audience"], r["step"]): r for r in report["rows"]}
    sent_in_ledger = {}
    for r in ledger:
        if r["status"] == "sent":
            sent_in_ledger[(r["audience"], r["step_key"])] = (
                sent_in_ledger.get((r["audience"], r["step_key"]), 0) + 1
            )
    assert {k: v["sent"] for k, v in rows.items() if v["sent"]} == sent_in_ledger
    assert rows[("gad", "welcome")]["delivered"] == 1 and rows[("gad", "welcome")]["opened"] == 1
    assert rows[("gad", "welcome")]["open_rate"] == 1.0
    assert sum(r["booked"] for r in report["rows"]) == 1
    assert report["median_days_to_booking"][0]["days"] is not None

    table = cli("report", "--format", "table").output
    assert "spring-2026" in table and "evergreen" not in table.split("spring-2026")[0].splitlines()[-1]
    csv_rows = list(csv.DictReader(io.StringIO(cli("report", "spring-2026", "--format", "csv").stdout)))
    assert sum(int(r["sent"]) for r in csv_rows) == sum(sent_in_ledger.values())
    html_path = tmp_path / "report.html"
    cli("report", "--format", "html", "--out", str(html_path))
    page = html_path.read_text()
    assert "<svg" in page and "spring-2026 · gad" in page and "@example.com" not in page

    cli("stop", "spring-2026")
    assert runner.invoke(app, ["resume", "spring-2026"]).exit_code == 1  # stopped is final


def test_a_lead_never_gets_one_sequence_twice_through_two_campaigns(settings, sqlite_store):
    from datetime import datetime

    from campaign.engine import run_tick
    from campaign.models import AnxietyType, LeadIn
    from campaign.runtime import build_context

    now = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
    sqlite_store.upsert_leads(
        [LeadIn(email="a@example.com", consent=True, anxiety_type=AnxietyType.gad)], now
    )
    ctx = build_context(settings, now=now, store=sqlite_store)
    run_tick(ctx, now)  # evergreen enrolls and sends gad/welcome
    launch(
        sqlite_store,
        ctx.audiences,
        name="again",
        audience_names=["gad"],
        starts_at=None,
        sandbox=False,
        now=now,
    )
    report = run_tick(ctx, now)
    assert sum(report.enrolled.values()) == 0 and sum(report.sent.values()) == 0


def test_launch_and_state_changes_explain_themselves(sqlite_store, settings):
    from datetime import datetime

    from campaign.audiences import load_audiences

    audiences = load_audiences(settings.audiences_dir)
    now = datetime.now(UTC)
    with pytest.raises(CampaignError, match="unknown audience.*panic"):
        launch(
            sqlite_store,
            audiences,
            name="x",
            audience_names=["panic"],
            starts_at=None,
            sandbox=False,
            now=now,
        )
    launch(
        sqlite_store,
        audiences,
        name="Fall Push",
        audience_names=["gad"],
        starts_at=None,
        sandbox=False,
        now=now,
    )
    with pytest.raises(CampaignError, match="exists"):
        launch(
            sqlite_store,
            audiences,
            name="fall push",
            audience_names=["gad"],
            starts_at=None,
            sandbox=False,
            now=now,
        )
    with pytest.raises(CampaignError, match="is active; it cannot resume"):
        change_state(sqlite_store, "fall-push", "resume")
    with pytest.raises(CampaignError, match="no campaign named"):
        change_state(sqlite_store, "nope", "pause")


def test_preflight_lists_every_problem_at_once(make_settings):
    settings = make_settings(public_url="http://localhost:8000", secret_key="dev-only-secret-change-me")
    problems = preflight(
        settings, lint_errors=["gad/welcome: too hard to read"], unapproved=["gad/welcome"]
    ).problems
    text = "\n".join(problems)
    for expected in (
        "lint: gad/welcome",
        "not approved",
        "postal_address",
        "CAMPAIGN_PUBLIC_URL",
        "CAMPAIGN_SECRET_KEY",
        "SENDGRID_WEBHOOK_PUBLIC_KEY",
        "sender_email",
        "consultation_fee",  # the shipped clinic.yaml leaves cost and commitment to fill in
    ):
        assert expected in text


def test_preflight_names_each_unset_clinic_fact_and_passes_once_filled(make_settings):
    from campaign.campaigns import unset_clinic_facts

    clinic = make_settings().clinic
    before = "\n".join(unset_clinic_facts(clinic.model_copy(update={"office_hours": None})))
    assert "office_hours" in before
    for field in ("consultation_format", "consultation_length", "consultation_fee", "infusion_fee"):
        assert field in before
    assert "usual_infusions" in before and "visit_length" in before
    filled = clinic.cost_and_commitment.model_copy(
        update=dict.fromkeys(clinic.cost_and_commitment.unset(), "set by the coordinator")
    )
    only_fee_missing = filled.model_copy(update={"consultation_fee": "  "})
    assert unset_clinic_facts(clinic.model_copy(update={"cost_and_commitment": filled})) == []
    left = unset_clinic_facts(clinic.model_copy(update={"cost_and_commitment": only_fee_missing}))
    assert len(left) == 1 and "consultation_fee" in left[0] and "infusion_fee" not in left[0]
