"""What a first-time coordinator tripped over on the command line (issue 13): help text, times
typed as dates, a tick with no leads, a timeline for a lead who will never be emailed, status
during a simulation, and tables written to a pipe."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from typer.testing import CliRunner

from campaign.cli import app
from campaign.clock import moment_from_text
from campaign.engine import run_tick
from campaign.runtime import build_context

runner = CliRunner()
NY = ZoneInfo("America/New_York")
MONDAY_10 = datetime(2026, 3, 2, 10, 0, tzinfo=NY)


@pytest.fixture
def env(settings, monkeypatch):
    monkeypatch.setenv("CAMPAIGN_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("CAMPAIGN_OUTBOX_DIR", str(settings.outbox_dir))
    monkeypatch.setenv("CAMPAIGN_SECRET_KEY", settings.secret_key.get_secret_value())  # as sqlite_store
    monkeypatch.setenv("COLUMNS", "200")
    return settings


def imported(tmp_path, text: str) -> None:
    path = tmp_path / "leads.csv"
    path.write_text(text)
    result = runner.invoke(app, ["import", str(path)])
    assert result.exit_code == 0, result.output


# ---- --help -------------------------------------------------------------------------------------


def every_command_line():
    from typer.main import get_command

    root = get_command(app)
    yield []
    for name, cmd in root.commands.items():
        yield [name]
        for sub in getattr(cmd, "commands", {}):
            yield [name, sub]


def test_help_fits_80_columns_with_plain_metavars(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")

    def helped(*words):
        return runner.invoke(app, [*words, "--help"], prog_name="campaign")

    top = helped()
    assert top.exit_code == 0, top.output
    listed = top.output.split("Commands:")[1].strip().splitlines()
    assert len(listed) >= 20
    for line in listed:  # every command's one-line description is whole
        assert not line.rstrip().endswith(("...", "…")) and len(line) <= 80, line
    for words in every_command_line():
        result = helped(*words)
        assert result.exit_code == 0, (words, result.output)
        usage = result.output.splitlines()[0]
        assert "{" not in result.output and "<list" not in result.output, (words, result.output)
        assert not re.search(r"<(str|int|path|bool)>", result.output), (words, result.output)
        assert all(len(line) <= 80 for line in result.output.splitlines()), (words, result.output)
        assert usage.startswith(f"Usage: campaign {' '.join(words)}".rstrip()), usage
    import_usage = helped("import").output
    assert import_usage.startswith("Usage: campaign import [OPTIONS] PATH\n")
    assert '--column "HEADER=FIELD"' in import_usage
    assert helped("booked").output.startswith("Usage: campaign booked [OPTIONS] EMAIL...\n")
    assert "--to EMAIL" in helped("test-send").output
    assert helped("approve").output.startswith("Usage: campaign approve [OPTIONS] AUDIENCE [STEP]\n")


# ---- times --------------------------------------------------------------------------------------


def test_a_plain_date_is_nine_in_the_morning_clinic_time():
    now = datetime(2026, 3, 2, 23, 30, tzinfo=UTC)  # already Tuesday in UTC, Monday in Raleigh
    assert moment_from_text("2026-03-05", now=now, tz=NY) == datetime(2026, 3, 5, 9, 0, tzinfo=NY)
    assert moment_from_text("tomorrow", now=now, tz=NY) == datetime(2026, 3, 3, 9, 0, tzinfo=NY)
    assert moment_from_text("today", now=now, tz=NY) == datetime(2026, 3, 2, 9, 0, tzinfo=NY)
    assert moment_from_text("now", now=now, tz=NY) == now
    assert moment_from_text("2026-03-05T14:00:00-05:00", now=now, tz=NY) == datetime(
        2026, 3, 5, 19, 0, tzinfo=UTC
    )
    assert moment_from_text("2026-03-05T14:00", now=now, tz=NY).tzinfo == UTC  # as before: naive is UTC
    with pytest.raises(ValueError):
        moment_from_text("next week", now=now, tz=NY)


def test_launch_start_accepts_tomorrow_and_a_bad_time_names_start(env):
    bad = runner.invoke(app, ["launch", "Spring 2026", "--audiences", "gad", "--start", "whenever"])
    assert bad.exit_code == 2
    assert "--start 'whenever'" in bad.output and "--now" not in bad.output
    assert "2026-03-02" in bad.output  # says how to write one
    launched = runner.invoke(app, ["launch", "Spring 2026", "--audiences", "gad", "--start", "tomorrow"])
    assert launched.exit_code == 0, launched.output
    [spring] = [
        c for c in json.loads(runner.invoke(app, ["status", "--json"]).stdout) if c["name"] == "Spring 2026"
    ]
    starts = datetime.fromisoformat(spring["starts_at"]).astimezone(NY)
    assert starts.hour == 9 and starts.date() == (datetime.now(NY) + timedelta(days=1)).date()


def test_tick_now_error_names_now(env):
    bad = runner.invoke(app, ["tick", "--now", "soon"])
    assert bad.exit_code == 2 and "--now 'soon'" in bad.output


# ---- tick with no leads -------------------------------------------------------------------------


def test_tick_with_no_leads_says_so_and_how_to_import(env):
    result = runner.invoke(app, ["tick", "--now", "2026-03-02"])
    assert result.exit_code == 0, result.output
    assert "no leads yet" in result.output and "campaign import" in result.output
    as_json = runner.invoke(app, ["tick", "--json"])
    assert as_json.exit_code == 0
    summary = json.loads(as_json.stdout)  # stdout stays one JSON object; the note is on stderr
    assert summary["totals"]["sent"] == 0 and summary["totals"]["enrolled"] == 0


# ---- timeline -----------------------------------------------------------------------------------


def test_timeline_of_a_lead_without_consent_says_it_will_never_be_emailed(env, tmp_path):
    imported(tmp_path, "Email,Consent,Anxiety\nno@example.com,no,GAD\nyes@example.com,yes,GAD\n")
    result = runner.invoke(app, ["timeline", "no@example.com"])
    assert result.exit_code == 0, result.output
    assert "will not be emailed" in result.output and "no consent" in result.output
    assert "planned" not in result.output and "if enrolled now" not in result.output
    data = json.loads(runner.invoke(app, ["timeline", "no@example.com", "--json"]).stdout)
    assert data["steps"] == [] and "consent" in data["will_not_email"]
    consenting = json.loads(runner.invoke(app, ["timeline", "yes@example.com", "--json"]).stdout)
    assert len(consenting["steps"]) == 5 and consenting["will_not_email"] is None


def test_timeline_of_unsubscribed_booked_or_suppressed_leads_says_why(env, tmp_path, sqlite_store):
    imported(
        tmp_path,
        "Email,Consent,Anxiety\nunsub@example.com,yes,GAD\nbooked@example.com,yes,GAD\n"
        "bounced@example.com,yes,GAD\n",
    )
    ctx = build_context(env, now=MONDAY_10.astimezone(UTC), store=sqlite_store)
    run_tick(ctx, MONDAY_10.astimezone(UTC))  # each gets its welcome email
    lead = sqlite_store.lead_by_email("unsub@example.com")
    sqlite_store.unsubscribe_lead(lead.public_id, MONDAY_10 + timedelta(hours=2))
    sqlite_store.mark_booked("booked@example.com", MONDAY_10 + timedelta(hours=2))
    sqlite_store.suppress("bounced@example.com", "bounce", MONDAY_10 + timedelta(hours=2))
    reasons = {}
    for email in ("unsub@example.com", "booked@example.com", "bounced@example.com"):
        data = json.loads(runner.invoke(app, ["timeline", email, "--json"]).stdout)
        assert [(s["step"], s["status"]) for s in data["steps"]] == [("welcome", "sent")], data
        reasons[email] = data["will_not_email"]
    assert "unsubscribed on 2026-03-02" in reasons["unsub@example.com"]
    assert "booked" in reasons["booked@example.com"]
    assert "suppression list" in reasons["bounced@example.com"]
    table = runner.invoke(app, ["timeline", "booked@example.com"]).output
    assert "welcome" in table and "will not be emailed again" in table


# ---- status during a simulation -----------------------------------------------------------------


def test_status_now_counts_the_simulated_day(env, tmp_path, sqlite_store):
    imported(tmp_path, "Email,Consent,Anxiety\na@example.com,yes,GAD\nb@example.com,yes,social\n")
    ctx = build_context(env, now=MONDAY_10.astimezone(UTC), store=sqlite_store)
    assert sum(run_tick(ctx, MONDAY_10.astimezone(UTC)).sent.values()) == 2

    def sent_today(*now):
        result = runner.invoke(app, ["status", "--json", *now])
        assert result.exit_code == 0, result.output
        return {c["campaign"]: c["sent_today"] for c in json.loads(result.stdout)}["evergreen"]

    assert sent_today("--now", "2026-03-02T15:00:00-05:00") == 2
    assert sent_today("--now", "2026-03-03T12:00:00-05:00") == 0  # the next simulated day
    assert sent_today() == 0  # the real clock: not the simulated day


# ---- tables in a pipe ---------------------------------------------------------------------------


def test_leads_table_in_a_pipe_never_cuts_an_address(env, tmp_path, monkeypatch):
    long = "a.very.long.address.of.someone.who.filled.the.form@clinic-patients.example.org"
    imported(tmp_path, f"Email,Consent,Anxiety\n{long},yes,GAD\n")
    monkeypatch.setenv("COLUMNS", "60")  # a narrow terminal size does not matter: this is no terminal
    result = runner.invoke(app, ["leads"])
    assert result.exit_code == 0, result.output
    assert long in result.output and "…" not in result.output


# ---- Prefect's noise ----------------------------------------------------------------------------


@pytest.mark.prefect
def test_demo_prints_no_traceback_or_telemetry_error_and_keeps_prefect_out_of_home(tmp_path):
    """The real command in its own process, with none of Prefect's variables set: what a first
    run on a clinic's machine looks like."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PREFECT_", "CAMPAIGN_", "SENDGRID_")) and k != "DO_NOT_TRACK"
    }
    env["HOME"] = str(tmp_path / "home")  # a clinic user's own, empty home
    folder = tmp_path / "demo"
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "campaign"),
            "demo",
            "--prefect",
            "--days",
            "2",
            "--dir",
            str(folder),
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and "telemetry" not in result.stderr.lower(), result.stderr
    assert "database is locked" not in result.stderr
    assert "Sent " in result.stdout and (folder / "outbox" / "index.html").exists()
    assert not (tmp_path / "home" / ".prefect" / "prefect.db").exists()  # not the shared ~/.prefect
    assert (folder / ".prefect").is_dir()  # the demo's own, emptied with the folder
