"""A live send (SendGrid, not sandbox) refuses unapproved content, naming it; approval and
the other preflight items let it through to the point of sending."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from campaign.approval import approve
from campaign.campaigns import PreflightFailed, is_live, live_preflight
from campaign.render import Renderer

TEMPLATES = [f"gad/{step}" for step in ("welcome", "brain", "ketamine", "treatment", "questions")]


@pytest.fixture
def live_settings(make_settings, tmp_path):
    clinic = tmp_path / "clinic.yaml"
    clinic.write_text("""name: Fresh Start Ketamine
display_name: Fresh Start
city: Raleigh
state: NC
postal_address: "123 Real Street, Raleigh, NC 27601"
postal_address_is_example: false
phone: "(919) 555-0100"
sender_email: care@freshstart-clinic.com
sender_name: Fresh Start Care Team
booking_url: https://freshstart-clinic.com/consultation
website_url: https://freshstart-clinic.com
office_hours: Monday to Friday, 9 am to 5 pm Eastern time
cost_and_commitment:
  consultation_format: a video call or a visit in person
  consultation_length: about 30 minutes
  consultation_fee: $150
  infusion_fee: $450 for each infusion
  usual_infusions: six infusions over two to three weeks
  visit_length: about two hours
""")
    return make_settings(
        sendgrid_api_key="SG.live-looking-key",
        sendgrid_api_host="https://api.sendgrid.com",
        public_url="https://email.freshstart-clinic.com",
        secret_key="a-long-random-production-secret",
        sendgrid_webhook_public_key="MFkw-placeholder",
        clinic_file=clinic,
    )


def test_live_preflight_names_unapproved_templates_until_approved(live_settings, sqlite_store):
    assert is_live(live_settings)
    problems = live_preflight(live_settings, sqlite_store, TEMPLATES)
    assert (
        len(problems) == 1
        and "not approved" in problems[0]
        and "gad/brain" in problems[0]
        and "gad/welcome" in problems[0]
    )
    approve(
        sqlite_store,
        Renderer(live_settings.templates_dir, live_settings.clinic),
        TEMPLATES,
        by="Dana (reviewer)",
    )
    assert live_preflight(live_settings, sqlite_store, TEMPLATES) == []


def live_env(monkeypatch, live_settings, **overrides) -> None:
    for key, value in {
        "CAMPAIGN_DATABASE_URL": live_settings.database_url,
        "SENDGRID_API_KEY": "SG.live-looking-key",
        "SENDGRID_API_HOST": "https://api.sendgrid.com",
        "CAMPAIGN_PUBLIC_URL": live_settings.public_url,
        "CAMPAIGN_SECRET_KEY": "a-long-random-production-secret",
        "SENDGRID_WEBHOOK_PUBLIC_KEY": "MFkw-placeholder",
        "CAMPAIGN_CLINIC_FILE": str(live_settings.clinic_file),
        **overrides,
    }.items():
        monkeypatch.setenv(key, value)


def test_live_tick_refuses_before_anything_is_sent(live_settings, sqlite_store):
    """The engine's one tick sequence: the preflight comes first, so nothing is claimed."""
    from campaign.engine import run_tick
    from campaign.models import LeadIn
    from campaign.runtime import build_context

    now = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
    sqlite_store.upsert_leads([LeadIn(email="a@example.com", consent=True)], now)
    with pytest.raises(PreflightFailed) as refused:
        run_tick(build_context(live_settings, store=sqlite_store), now)
    assert "not approved" in str(refused.value) and "questions" in str(refused.value)
    assert not any(
        p.startswith("clinic.yaml") for p in refused.value.problems
    )  # only the approval is missing
    assert sqlite_store.ledger() == [] and sqlite_store.enrollment_for_lead(1) is None


def test_the_tick_flow_ends_failed_with_the_problems_and_no_traceback(live_settings, monkeypatch):
    """The flow's body, run directly: a refused preflight is a Failed state carrying the
    problems (Prefect shows its message, no traceback), and calling the flow raises them."""
    live_env(monkeypatch, live_settings)
    from flows.tick import tick

    state = tick.fn(now="2026-03-02T15:00:00+00:00")
    assert state.is_failed() and "not approved" in state.message
    with pytest.raises(PreflightFailed):
        state.result()


def test_launch_against_the_local_dev_server_accepts_drafts(live_settings, monkeypatch, sg):
    """One definition of live: against `campaign dev-sendgrid` (plain http on loopback) launch
    takes unapproved content, as the tick would send it; against SendGrid it refuses."""
    from typer.testing import CliRunner

    from campaign.cli import app

    runner = CliRunner()
    live_env(monkeypatch, live_settings, SENDGRID_API_HOST=sg.url)
    local = runner.invoke(app, ["launch", "Spring", "--audiences", "gad"])
    assert local.exit_code == 0, local.output
    assert "Launched spring" in local.output and "not approved" in local.output  # listed as drafts

    live_env(monkeypatch, live_settings)
    refused = runner.invoke(app, ["launch", "Autumn", "--audiences", "gad"])
    assert refused.exit_code == 1 and "cannot go live yet" in refused.output


def test_outbox_and_sandbox_accept_drafts(make_settings):
    assert not is_live(make_settings())  # no SendGrid key: the outbox
    assert not is_live(make_settings(sendgrid_api_key="SG.x", sandbox=True))


@pytest.mark.prefect
def test_cli_tick_refusal_is_one_clear_message(live_settings, tmp_path):
    """The real command in its own process: the flow's preflight refuses; exit 1, every problem
    listed, no traceback."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {
        **os.environ,
        "CAMPAIGN_DATABASE_URL": live_settings.database_url,
        "SENDGRID_API_KEY": "SG.live-looking-key",
        "SENDGRID_API_HOST": "https://api.sendgrid.com",
        "CAMPAIGN_PUBLIC_URL": "http://localhost:8000",
        "PREFECT_LOGGING_LEVEL": "WARNING",
        # A temporary Prefect server of its own, without the telemetry service (whose startup
        # write can log a "database is locked" traceback of Prefect's own).
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    result = subprocess.run(
        [str(Path(sys.executable).parent / "campaign"), "tick", "--now", "2026-03-02T15:00:00+00:00"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "not approved" in output and "CAMPAIGN_PUBLIC_URL" in output and "Nothing was sent" in output
    assert "Traceback" not in output
