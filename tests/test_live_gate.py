"""A live send (SendGrid, not sandbox) refuses unapproved content, naming it; approval and
the other preflight items let it through to the point of sending."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import SecretStr

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
    from datetime import UTC, datetime

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

    from campaign.models import LeadIn
    from campaign.runtime import open_store

    with open_store(live_settings) as store:  # a lead to send to: with none, tick only says so
        store.upsert_leads([LeadIn(email="ann@example.com", consent=True)], datetime(2026, 3, 1, tzinfo=UTC))
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


# ---- test-send runs the same preflight ---------------------------------------------------------


@pytest.fixture
def remote_sg():
    """The project's SendGrid-compatible server where a live send would go: not plain http on
    127.0.0.1 (the dev server's address), so a send to it counts as live."""
    from campaign.devserver import running_server

    with running_server(api_key="SG.live-looking-key", host="127.0.0.2") as server:
        yield server


def test_a_live_test_send_of_unapproved_content_needs_draft_and_is_marked(
    live_settings, sqlite_store, remote_sg
):
    from campaign.app.delivery import UnsentTestEmail, send_test_email
    from campaign.audiences import load_audiences

    settings = live_settings.model_copy(update={"sendgrid_api_host": remote_sg.url})
    assert is_live(settings)
    audiences = load_audiences(settings.audiences_dir)

    def test_send(**kw):
        return send_test_email(settings, audiences, "gad", "welcome", "dana@example.org", "Dana", **kw)

    with pytest.raises(UnsentTestEmail) as refused:
        test_send(store=sqlite_store)
    assert "not approved" in str(refused.value) and "--draft" in str(refused.value)
    assert remote_sg.messages == []

    test_send(store=sqlite_store, draft=True)
    [draft] = remote_sg.messages
    assert draft.payload["subject"].startswith("[TEST DRAFT] ")

    approve(sqlite_store, Renderer(settings.templates_dir, settings.clinic), ["gad/welcome"], by="Dana")
    test_send(store=sqlite_store, draft=True)  # nothing to override: not marked
    assert not remote_sg.messages[-1].payload["subject"].startswith("[TEST DRAFT]")


def test_a_live_test_send_never_overrides_settings_problems(live_settings, sqlite_store, remote_sg):
    from campaign.app.delivery import UnsentTestEmail, send_test_email
    from campaign.audiences import load_audiences
    from campaign.settings import DEV_SECRET_KEY

    settings = live_settings.model_copy(
        update={"sendgrid_api_host": remote_sg.url, "secret_key": SecretStr(DEV_SECRET_KEY)}
    )
    audiences = load_audiences(settings.audiences_dir)
    with pytest.raises(UnsentTestEmail) as refused:
        send_test_email(
            settings, audiences, "gad", "welcome", "dana@example.org", "Dana", store=sqlite_store, draft=True
        )
    assert "CAMPAIGN_SECRET_KEY is the development key" in str(refused.value)
    assert "--draft" not in str(refused.value)
    assert remote_sg.messages == []


def test_the_test_send_command_takes_draft(live_settings, monkeypatch, remote_sg):
    from typer.testing import CliRunner

    from campaign.cli import app

    runner = CliRunner()
    live_env(monkeypatch, live_settings, SENDGRID_API_HOST=remote_sg.url)
    args = ["test-send", "gad", "welcome", "--to", "dana@example.org"]
    refused = runner.invoke(app, args)
    assert refused.exit_code == 1 and "not approved" in refused.output and remote_sg.messages == []
    sent = runner.invoke(app, [*args, "--draft"])
    assert sent.exit_code == 0, sent.output
    [message] = remote_sg.messages
    assert message.payload["subject"].startswith("[TEST DRAFT] ")
