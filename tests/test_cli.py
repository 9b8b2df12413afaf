"""The CLI as a coordinator uses it (in-process via Typer's runner, real SQLite file),
and the docs: every command is in the README and has help text."""

from __future__ import annotations

import json
import re

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from campaign.cli import app
from campaign.settings import PROJECT_ROOT

runner = CliRunner()


@pytest.fixture
def env(settings, monkeypatch):
    monkeypatch.setenv("CAMPAIGN_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("CAMPAIGN_OUTBOX_DIR", str(settings.outbox_dir))
    monkeypatch.setenv("CAMPAIGN_SECRET_KEY", "cli-test-secret")
    monkeypatch.setenv("COLUMNS", "200")  # Rich tables at full width
    return settings


def all_commands():
    root = get_command(app)
    for name, cmd in root.commands.items():
        yield name, cmd
        for sub_name, sub in getattr(cmd, "commands", {}).items():
            yield f"{name} {sub_name}", sub


def test_every_command_has_help_and_is_in_the_readme():
    readme = (PROJECT_ROOT / "README.md").read_text()
    for name, cmd in all_commands():
        assert (cmd.help or "").strip(), f"campaign {name} has no help text"
        assert re.search(rf"campaign {re.escape(name)}\b", readme), (
            f"`campaign {name}` is missing from README.md"
        )


def test_import_prints_summary_and_json_is_one_object(env, tmp_path):
    path = tmp_path / "leads.csv"
    path.write_text("Email Address,First Name,Consent\nann@example.com,Ann,yes\nbad,Bob,yes\n")
    result = runner.invoke(app, ["import", str(path)])
    assert result.exit_code == 0, result.output
    assert "1 new" in result.output and "1 rejected" in result.output
    again = runner.invoke(app, ["import", str(path), "--json"])
    summary = json.loads(again.stdout)
    assert (summary["new"], summary["unchanged"], summary["rejected"]) == (0, 1, 1)
    rejected = (tmp_path / "leads.rejected.csv").read_text()
    assert "bad" in rejected and "not valid" in rejected


def test_unreadable_file_exits_2_and_imports_nothing(env, tmp_path):
    path = tmp_path / "leads.csv"
    path.write_text("Name,Phone\nAnn,1\n")
    result = runner.invoke(app, ["import", str(path)])
    assert (
        result.exit_code == 2
        and "no email column" in result.output
        and "Nothing was imported" in result.output
    )
    missing = runner.invoke(app, ["import", str(tmp_path / "nope.csv")])
    assert missing.exit_code == 2 and "nope.csv" in missing.output


def test_leads_formats(env, tmp_path):
    path = tmp_path / "leads.csv"
    path.write_text("Email,Consent,Anxiety\nann@example.com,yes,GAD\nbob@example.com,no,\n")
    runner.invoke(app, ["import", str(path)])
    rows = json.loads(runner.invoke(app, ["leads", "--format", "json"]).stdout)
    assert {r["email"]: r["status"] for r in rows} == {
        "ann@example.com": "not yet enrolled",
        "bob@example.com": "waiting for consent",
    }
    csv_out = runner.invoke(app, ["leads", "--format", "csv"]).stdout
    assert csv_out.splitlines()[0].startswith("email,audience,status")
    assert runner.invoke(app, ["leads", "--format", "xml"]).exit_code == 2


def test_audiences_lists_rules_and_check_passes(env):
    result = runner.invoke(app, ["audiences"])
    assert (
        result.exit_code == 0
        and "treatment_resistant" in result.output
        and "prior_treatments >= 2" in result.output
    )
    check = runner.invoke(app, ["audiences", "check"])
    assert check.exit_code == 0, check.output


def test_audiences_check_lists_every_problem(env, tmp_path, monkeypatch):
    (tmp_path / "audiences").mkdir()
    (tmp_path / "templates").mkdir()
    (tmp_path / "audiences" / "a.yaml").write_text("priority: 1\nmatch: all\nsteps: [{key: hi, day: 0}]\n")
    (tmp_path / "audiences" / "b.yaml").write_text(
        "priority: 2\nmatch: {x: {equals: 1}}\nsteps: [{key: hi, day: 0}]\n"
    )
    (tmp_path / "clinic.yaml").write_text((PROJECT_ROOT / "clinic.yaml").read_text())
    monkeypatch.setenv("CAMPAIGN_CONTENT_DIR", str(tmp_path))
    result = runner.invoke(app, ["audiences", "check"])
    assert result.exit_code == 1
    assert "b.yaml" in result.output and "a/hi" in result.output  # bad rule, and a missing template


def test_timeline_for_unknown_and_known_lead(env, tmp_path):
    path = tmp_path / "leads.csv"
    path.write_text("Email,Consent,Anxiety,State\nann@example.com,yes,social,CA\n")
    runner.invoke(app, ["import", str(path)])
    result = runner.invoke(app, ["timeline", "ann@example.com"], terminal_width=200)
    assert result.exit_code == 0 and "social" in result.output and "questions" in result.output
    assert "-07:00" in result.output or "-08:00" in result.output  # the lead's own clock
    assert runner.invoke(app, ["timeline", "nobody@example.com"]).exit_code == 1


FORMULA_LEADS = (
    "Email,First Name,Consent\n"
    "=1+1@example.com,Eq,yes\n"
    "-2+3@example.com,Minus,yes\n"
    "+sum@example.com,Plus,yes\n"
    "ann@example.com,Ann,yes\n"
    'not-an-address,"@SUM(A1)",yes\n'
)


def test_csv_output_keeps_formula_looking_cells_inert(env, tmp_path):
    """Leads typed by strangers: a cell a spreadsheet would run gets a leading quote in every
    CSV the CLI writes (the listing and the rejected rows); JSON keeps the value as it is."""
    import csv
    import io

    path = tmp_path / "leads.csv"
    path.write_text(FORMULA_LEADS)
    assert runner.invoke(app, ["import", str(path)]).exit_code == 0
    listed = runner.invoke(app, ["leads", "--format", "csv"])
    assert listed.exit_code == 0, listed.output
    emails = {r["email"] for r in csv.DictReader(io.StringIO(listed.stdout))}
    assert emails == {"'=1+1@example.com", "'-2+3@example.com", "'+sum@example.com", "ann@example.com"}
    as_json = json.loads(runner.invoke(app, ["leads", "--json"]).stdout)
    assert "=1+1@example.com" in {r["email"] for r in as_json}
    [rejected] = list(csv.DictReader(io.StringIO((tmp_path / "leads.rejected.csv").read_text())))
    assert rejected["First Name"] == "'@SUM(A1)" and rejected["Email"] == "not-an-address"


def test_json_is_an_alias_of_format_json_and_the_choice_is_checked(env, tmp_path):
    path = tmp_path / "leads.csv"
    path.write_text("Email,Consent,Anxiety,State\nann@example.com,yes,social,CA\nbob@example.com,no,,\n")
    runner.invoke(app, ["import", str(path)])
    for command in (["leads"], ["status"], ["audiences"], ["timeline", "ann@example.com"]):
        alias = runner.invoke(app, [*command, "--json"])
        spelled = runner.invoke(app, [*command, "--format", "json"])
        assert alias.exit_code == 0 and spelled.exit_code == 0, (command, alias.output, spelled.output)
        assert json.loads(alias.stdout) == json.loads(spelled.stdout), command
    conflicting = runner.invoke(app, ["leads", "--json", "--format", "csv"])
    assert conflicting.exit_code == 2 and "--json" in conflicting.output
    assert runner.invoke(app, ["status", "--format", "xml"]).exit_code == 2
    assert runner.invoke(app, ["report", "--format", "pdf"]).exit_code == 2


def test_every_listing_command_writes_csv(env, tmp_path):
    import csv
    import io

    def rows(*args):
        result = runner.invoke(app, list(args))
        assert result.exit_code == 0, (args, result.output)
        return list(csv.DictReader(io.StringIO(result.stdout)))

    path = tmp_path / "leads.csv"
    path.write_text("Email,Consent,Anxiety,State\nann@example.com,yes,social,CA\nbad,yes,,\n")
    [summary] = rows("import", str(path), "--format", "csv")
    assert (summary["new"], summary["rejected"]) == ("1", "1") and summary["rejected_file"]
    audiences = {r["audience"]: r for r in rows("audiences", "--format", "csv")}
    assert "welcome (0)" in audiences["social"]["steps"] and audiences["social"]["leads"] == "0"
    timeline = rows("timeline", "ann@example.com", "--format", "csv", "--days", "3")
    assert timeline and timeline[0]["step"] == "welcome" and all(int(r["day"]) <= 3 for r in timeline)
    status = rows("status", "--format", "csv")
    assert status[0]["campaign"] == "evergreen" and status[0]["state"] == "active"
    problems = rows("lint", "--format", "csv")
    assert all(r["severity"] in ("error", "warning") and ".md" in r["file"] for r in problems)
    report = runner.invoke(app, ["report", "--format", "csv"])
    assert report.exit_code == 0 and report.stdout.startswith("campaign,audience,step,enrolled,sent")
