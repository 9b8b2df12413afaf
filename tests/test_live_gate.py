"""A live send (SendGrid, not sandbox) refuses unapproved content, naming it; approval and
the other preflight items let it through to the point of sending."""

from __future__ import annotations

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


def test_live_tick_refuses_before_any_http_call(live_settings, sqlite_store, monkeypatch):
    """The tick flow's body, run directly: it raises before it would contact SendGrid."""
    for key, value in {
        "CAMPAIGN_DATABASE_URL": live_settings.database_url,
        "SENDGRID_API_KEY": "SG.live-looking-key",
        "SENDGRID_API_HOST": "https://api.sendgrid.com",
        "CAMPAIGN_PUBLIC_URL": live_settings.public_url,
        "CAMPAIGN_SECRET_KEY": "a-long-random-production-secret",
        "SENDGRID_WEBHOOK_PUBLIC_KEY": "MFkw-placeholder",
        "CAMPAIGN_CLINIC_FILE": str(live_settings.clinic_file),
    }.items():
        monkeypatch.setenv(key, value)
    from flows.tick import tick

    with pytest.raises(PreflightFailed) as refused:
        tick.fn(now="2026-03-02T15:00:00+00:00")
    assert "not approved" in str(refused.value) and "questions" in str(refused.value)
    assert not any(
        p.startswith("clinic.yaml") for p in refused.value.problems
    )  # only the approval is missing


def test_outbox_and_sandbox_accept_drafts(make_settings):
    assert not is_live(make_settings())  # no SendGrid key: the outbox
    assert not is_live(make_settings(sendgrid_api_key="SG.x", sandbox=True))


@pytest.mark.prefect
def test_cli_tick_refusal_is_one_clear_message(live_settings):
    """The real command in its own process: exit 1, every problem listed, no traceback."""
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
