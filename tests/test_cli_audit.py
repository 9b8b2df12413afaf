"""The command line's campaign and lead actions are in the audit log, as the console's are: the
use case writes the entry (campaign.app), so each is recorded once whoever calls it. The CLI's
actor is "cli" (role admin, client "local"), as for `campaign user add`."""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from campaign.accounts import list_audit
from campaign.cli import app
from campaign.store import Store
from campaign.store.accounts import AccountStore

runner = CliRunner()
SECRET = "cli-test-secret"


@pytest.fixture
def env(settings, monkeypatch):
    monkeypatch.setenv("CAMPAIGN_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("CAMPAIGN_OUTBOX_DIR", str(settings.outbox_dir))
    monkeypatch.setenv("CAMPAIGN_SECRET_KEY", SECRET)
    monkeypatch.setenv("COLUMNS", "200")
    return settings


def entries(settings) -> list[tuple[str, str, str, str, str]]:
    """(action, actor, role, object, detail), oldest first."""
    with Store.open(settings.database_url, secret_key=SECRET) as store:
        found = list_audit(AccountStore(store.engine), limit=500).entries
    return [(e.action, e.actor, e.role, f"{e.object_type}:{e.object_id}", e.detail) for e in reversed(found)]


def ok(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_cli_campaign_and_lead_actions_are_audited_once_each(env, tmp_path):
    leads = tmp_path / "leads.csv"
    leads.write_text(
        "email,first_name,anxiety_type,consent\nann@example.com,Ann,gad,yes\nbo@example.com,Bo,social,yes\n"
    )
    ok("import", str(leads))
    ok("launch", "Spring Push", "--audiences", "gad,social", "--sandbox")
    ok("pause", "spring-push", "--reason", "waiting for the new copy")
    ok("resume", "spring-push")
    ok("test-send", "gad", "welcome", "--to", "me@clinic.example")
    ok("booked", "ann@example.com")
    ok("forget", "bo@example.com", "--yes")
    ok("stop", "spring-push")
    assert runner.invoke(app, ["resume", "spring-push"]).exit_code == 1  # refused: not audited

    log = entries(env)
    assert [e[0] for e in log] == [
        "import",
        "campaign.launch",
        "campaign.pause",
        "campaign.resume",
        "test_send",
        "lead.booked",
        "lead.forget",
        "campaign.stop",
    ]
    assert {(e[1], e[2]) for e in log} == {("cli", "admin")}
    by_action = {e[0]: e for e in log}
    assert by_action["import"][3] == "file:leads.csv"
    assert by_action["import"][4] == "leads.csv: 2 new, 0 updated, 0 unchanged, 0 rejected"
    assert by_action["campaign.launch"][3] == "campaign:spring-push"
    assert (
        "audiences gad,social" in by_action["campaign.launch"][4]
        and "sandbox True" in by_action["campaign.launch"][4]
    )
    assert by_action["campaign.pause"][4] == "waiting for the new copy"
    assert by_action["test_send"][3] == "email:gad/welcome"
    assert re.fullmatch(r"lead:[0-9a-f]{32}", by_action["lead.booked"][3])
    assert re.fullmatch(r"lead:[0-9a-f]{32}", by_action["lead.forget"][3])
    assert by_action["lead.forget"][4].startswith("deleted 1 leads")
    # The log names leads by public id: no lead's address.
    text = json.dumps(log)
    assert "ann@example.com" not in text and "bo@example.com" not in text


def test_a_failed_cli_test_send_is_audited_and_an_unknown_campaign_is_not(env):
    assert runner.invoke(app, ["test-send", "gad", "nope", "--to", "me@clinic.example"]).exit_code != 0
    assert runner.invoke(app, ["pause", "nothing-here", "--reason", "x"]).exit_code == 1
    [failed] = entries(env)
    assert failed[0] == "test_send.failed" and failed[3] == "email:gad/nope"
