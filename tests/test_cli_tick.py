"""`campaign tick` without a Prefect server (issue 14): the same tick sequence in the process, no
temporary server, one line saying so, the tick history recorded, and the same ledger as the flow.
Where Prefect's server is configured: Prefect's own settings, read without importing Prefect."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from campaign.app.ticks import PLAIN_NOTE, recent_ticks, wants_flow
from campaign.cli import app
from campaign.prefect_env import configured_api_url
from campaign.settings import PROJECT_ROOT
from campaign.store import Store

runner = CliRunner()
SECRET = "tick-secret"
MONDAY_ENROLL = "2026-03-02T13:00:00+00:00"  # the sample's leads enroll (outside their window)
MONDAY_SEND = "2026-03-02T14:00:00+00:00"  # 77 welcomes due
API = "http://127.0.0.1:4200/api"


# ---- where a Prefect server is configured ----------------------------------------------------


def test_no_server_configured_anywhere_is_none(tmp_path):
    assert configured_api_url({"HOME": str(tmp_path)}, cwd=tmp_path) is None


def test_the_environment_names_the_server(tmp_path):
    assert configured_api_url({"HOME": str(tmp_path), "PREFECT_API_URL": API}, cwd=tmp_path) == API


def test_the_active_profile_names_the_server(tmp_path):
    profiles = tmp_path / ".prefect" / "profiles.toml"
    profiles.parent.mkdir()
    profiles.write_text(
        f'active = "local"\n[profiles.local]\nPREFECT_API_URL = "{API}"\n'
        '[profiles.ephemeral]\nPREFECT_SERVER_EPHEMERAL_ENABLED = "true"\n'
    )
    env = {"HOME": str(tmp_path)}
    assert configured_api_url(env, cwd=tmp_path) == API
    # PREFECT_PROFILE picks another profile; PREFECT_PROFILES_PATH (what prefect_env sets) finds it.
    assert configured_api_url({**env, "PREFECT_PROFILE": "ephemeral"}, cwd=tmp_path) is None
    elsewhere = {"HOME": "/nonexistent", "PREFECT_PROFILES_PATH": str(profiles)}
    assert configured_api_url(elsewhere, cwd=tmp_path) == API


def test_prefect_toml_pyproject_and_dotenv_name_the_server(tmp_path):
    env = {"HOME": str(tmp_path)}
    (tmp_path / "pyproject.toml").write_text(f'[tool.prefect.api]\nurl = "{API}/py"\n')
    assert configured_api_url(env, cwd=tmp_path) == f"{API}/py"
    (tmp_path / "prefect.toml").write_text(f'[api]\nurl = "{API}/toml"\n')
    assert configured_api_url(env, cwd=tmp_path) == f"{API}/toml"
    (tmp_path / ".env").write_text(f"PREFECT_API_URL={API}/dotenv\n")
    assert configured_api_url(env, cwd=tmp_path) == f"{API}/dotenv"


def test_the_users_choice_wins_over_the_configuration(monkeypatch):
    monkeypatch.setenv("PREFECT_API_URL", API)
    assert wants_flow() is True and wants_flow(False) is False and wants_flow(True) is True


# ---- the plain tick, in a process of its own -------------------------------------------------


def clean_env(tmp_path: Path, db: Path, outbox: Path) -> dict[str, str]:
    """No Prefect, campaign or SendGrid variable of the caller's; an empty home of its own."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PREFECT_", "CAMPAIGN_", "SENDGRID_")) and k != "DO_NOT_TRACK"
    }
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env.update(
        HOME=str(home),
        CAMPAIGN_DATABASE_URL=f"sqlite:///{db}",
        CAMPAIGN_OUTBOX_DIR=str(outbox),
        CAMPAIGN_SECRET_KEY=SECRET,
        CAMPAIGN_PUBLIC_URL="https://clinic.example.org",
    )
    return env


def campaign_process(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """The CLI in a new Python with -X importtime: stderr lists every module it imported."""
    code = "import sys; from campaign.cli import app; sys.argv[0] = 'campaign'; app()"
    return subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code, *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def imported_modules(stderr: str) -> set[str]:
    return {
        line.rsplit("|", 1)[-1].strip() for line in stderr.splitlines() if line.startswith("import time:")
    }


def without_importtime(stderr: str) -> str:
    return "\n".join(line for line in stderr.splitlines() if not line.startswith("import time:"))


@pytest.fixture
def seeded(tmp_path) -> Path:
    """A SQLite database with the shipped sample leads, enrolled at MONDAY_ENROLL (in-process)."""
    db = tmp_path / "seed.db"
    env = {
        "CAMPAIGN_DATABASE_URL": f"sqlite:///{db}",
        "CAMPAIGN_OUTBOX_DIR": str(tmp_path / "seed-outbox"),
        "CAMPAIGN_SECRET_KEY": SECRET,
        "CAMPAIGN_PUBLIC_URL": "https://clinic.example.org",
    }
    leads = PROJECT_ROOT / "audiences" / "sample_leads.csv"
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        assert (
            runner.invoke(app, ["import", str(leads), "--rejects", str(tmp_path / "rej.csv")]).exit_code == 0
        )
        enrolled = runner.invoke(app, ["tick", "--no-prefect", "--now", MONDAY_ENROLL, "--json"])
    assert enrolled.exit_code == 0, enrolled.output
    assert json.loads(enrolled.stdout)["totals"]["enrolled"] > 0
    return db


def test_plain_tick_starts_no_prefect_server_says_so_once_and_records_the_tick(tmp_path, seeded):
    db = tmp_path / "plain.db"
    shutil.copy(seeded, db)
    env = clean_env(tmp_path, db, tmp_path / "outbox")
    result = campaign_process(env, tmp_path, "tick", "--now", MONDAY_SEND, "--json")
    stderr = without_importtime(result.stderr)
    assert result.returncode == 0, result.stdout + stderr
    summary = json.loads(result.stdout)  # stdout is the JSON alone: the note is in it
    assert summary["note"] == PLAIN_NOTE
    assert summary["totals"]["sent"] == 77 and summary["totals"]["failed"] == 0
    assert len(list((tmp_path / "outbox").glob("*.eml"))) == 77
    # No Prefect at all in that process, so no temporary server: not even imported.
    modules = imported_modules(result.stderr)
    assert "campaign.engine" in modules and not {m for m in modules if m.split(".")[0] == "prefect"}
    assert not (tmp_path / ".prefect" / "prefect.db").exists()
    assert not (tmp_path / "home" / ".prefect").exists()
    assert (
        "telemetry" not in stderr.lower() and "Traceback" not in stderr and "database is locked" not in stderr
    )
    # The project's tick history has it, as it has the flow's runs.
    with Store.open(f"sqlite:///{db}", secret_key=SECRET, migrate=False) as store:
        last = recent_ticks(store, 1)[0]
    assert last.outcome == "ok" and last.counts["sent"] == 77
    assert last.started_at.isoformat().startswith("2026-03-02T14:00:00")

    again = campaign_process(env, tmp_path, "tick", "--now", MONDAY_SEND)
    assert again.returncode == 0
    lines = again.stdout.splitlines()
    assert lines.count(PLAIN_NOTE) == 1  # one line, not wrapped
    assert any(line.startswith("Tick at 2026-03-02T14:00:00+00:00: enrolled 0, sent 0,") for line in lines)


def test_a_configured_server_means_a_flow_run(tmp_path, seeded):
    """PREFECT_API_URL set: the tick goes to Prefect (here a server that is not there, so the
    flow cannot start and nothing is sent; a plain tick would have sent 77)."""
    db = tmp_path / "flow.db"
    shutil.copy(seeded, db)
    env = clean_env(tmp_path, db, tmp_path / "outbox")
    env["PREFECT_API_URL"] = "http://127.0.0.1:9/api"  # the discard port: nothing listens
    env["PREFECT_CLIENT_MAX_RETRIES"] = "0"
    result = campaign_process(env, tmp_path, "tick", "--now", MONDAY_SEND, "--json")
    stderr = without_importtime(result.stderr)
    assert result.returncode == 1, result.stdout + stderr
    assert "prefect" in imported_modules(result.stderr)
    assert "Failed to reach API at http://127.0.0.1:9/api" in stderr and "--no-prefect" in stderr
    assert "Traceback" not in stderr and PLAIN_NOTE not in result.stdout
    assert not (tmp_path / "outbox").exists() or not list((tmp_path / "outbox").glob("*.eml"))


def test_csv_output_stays_rows_and_the_note_goes_to_stderr(tmp_path, seeded):
    env = clean_env(tmp_path, seeded, tmp_path / "outbox")
    result = campaign_process(env, tmp_path, "tick", "--now", MONDAY_SEND, "--format", "csv")
    assert result.returncode == 0
    assert result.stdout.splitlines()[0].startswith("now,enrolled,sent")
    assert PLAIN_NOTE not in result.stdout and PLAIN_NOTE in without_importtime(result.stderr)


# ---- the same counts and ledger as the flow -----------------------------------------------------


def ledger_facts(db: Path) -> list[tuple]:
    with Store.open(f"sqlite:///{db}", secret_key=SECRET, migrate=False) as store:
        return sorted((r["email"], r["audience"], r["step_key"], r["status"]) for r in store.ledger())


def cli_tick(monkeypatch, db: Path, outbox: Path, *args: str) -> dict:
    monkeypatch.setenv("CAMPAIGN_DATABASE_URL", f"sqlite:///{db}")
    monkeypatch.setenv("CAMPAIGN_OUTBOX_DIR", str(outbox))
    monkeypatch.setenv("CAMPAIGN_SECRET_KEY", SECRET)
    monkeypatch.setenv("CAMPAIGN_PUBLIC_URL", "https://clinic.example.org")
    result = runner.invoke(app, ["tick", *args, "--now", MONDAY_SEND, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.prefect
def test_plain_and_flow_ticks_give_the_same_counts_ledger_and_history(
    prefect_harness, seeded, tmp_path, monkeypatch
):
    plain_db, flow_db = tmp_path / "plain.db", tmp_path / "flow.db"
    shutil.copy(seeded, plain_db)
    shutil.copy(seeded, flow_db)
    assert wants_flow() is True  # the harness's server is configured in Prefect's settings

    plain = cli_tick(monkeypatch, plain_db, tmp_path / "plain-outbox", "--no-prefect")
    flow = cli_tick(monkeypatch, flow_db, tmp_path / "flow-outbox")  # the default here: the flow

    assert "note" in plain and "note" not in flow
    assert {k: v for k, v in plain.items() if k != "note"} == flow
    assert plain["totals"]["sent"] == 77
    assert ledger_facts(plain_db) == ledger_facts(flow_db)
    assert len(ledger_facts(plain_db)) == 77
    for db in (plain_db, flow_db):
        with Store.open(f"sqlite:///{db}", secret_key=SECRET, migrate=False) as store:
            ticks = recent_ticks(store, 5)
        assert [(t.outcome, t.counts["sent"]) for t in ticks] == [("ok", 77), ("ok", 0)]


# ---- the demo ticks the same way ----------------------------------------------------------------


def test_demo_without_a_prefect_server_runs_in_the_process(tmp_path):
    env = clean_env(tmp_path, tmp_path / "unused.db", tmp_path / "unused")
    for key in ("CAMPAIGN_DATABASE_URL", "CAMPAIGN_OUTBOX_DIR"):
        env.pop(key)
    folder = tmp_path / "demo"
    result = campaign_process(env, tmp_path, "demo", "--days", "2", "--dir", str(folder))
    stderr = without_importtime(result.stderr)
    assert result.returncode == 0, result.stdout + stderr
    assert "No Prefect server configured" in result.stdout and "Sent " in result.stdout
    assert not {m for m in imported_modules(result.stderr) if m.split(".")[0] == "prefect"}
    assert not (folder / ".prefect" / "prefect.db").exists()
    assert "Traceback" not in stderr and "telemetry" not in stderr.lower()
    assert (folder / "outbox" / "index.html").exists()
