"""Approval: a reviewer's sign-off is tied to a hash of the email's source AND the shared layouts;
any change to either makes the email unapproved again. Real stores (SQLite file, PostgreSQL
when reachable), real template files copied into tmp_path, the CLI through Typer's runner."""

from __future__ import annotations

import shutil
import subprocess
import sys
from datetime import timedelta

import pytest
from conftest import utc
from typer.testing import CliRunner

from campaign.approval import (
    UnapprovedContent,
    approval_state,
    approve,
    content_hash,
    require_approved,
    unapproved,
)
from campaign.audiences import load_audiences
from campaign.cli import app
from campaign.render import Renderer
from campaign.settings import PROJECT_ROOT, get_settings

runner = CliRunner()
GAD = ["gad/welcome", "gad/brain", "gad/ketamine", "gad/treatment", "gad/questions"]
NOW = utc(2026, 3, 2, 15, 0)


def copy_content(target):
    """A private copy of the shipped content (templates, audiences, clinic) to edit freely."""
    target.mkdir(parents=True, exist_ok=True)
    shutil.copytree(PROJECT_ROOT / "templates", target / "templates")
    shutil.copytree(PROJECT_ROOT / "audiences", target / "audiences")
    shutil.copy(PROJECT_ROOT / "clinic.yaml", target / "clinic.yaml")
    return target


@pytest.fixture
def content(tmp_path):
    return copy_content(tmp_path / "content")


@pytest.fixture(scope="module")
def clinic():
    return get_settings().clinic


def renderer_for(content, clinic) -> Renderer:
    """A fresh Renderer: it reads the files as they are now (a Renderer caches what it loaded)."""
    return Renderer(content / "templates", clinic)


def edit(path, change):
    path.write_text(change(path.read_text(encoding="utf-8")), encoding="utf-8")


def all_shipped_templates():
    return [s.template for a in load_audiences(PROJECT_ROOT / "audiences") for s in a.steps]


# ---- the library ---------------------------------------------------------------------------------


def test_shipped_content_ships_unapproved(store, clinic):
    names = all_shipped_templates()
    assert len(names) == 20
    renderer = Renderer(PROJECT_ROOT / "templates", clinic)
    assert unapproved(store, renderer, names) == names
    states = approval_state(store, renderer, names)
    assert all(not s.approved and not s.changed_since and s.by is None for s in states.values())
    with pytest.raises(UnapprovedContent) as exc:
        require_approved(store, renderer, names)
    assert (
        exc.value.templates == names
        and "gad/welcome" in str(exc.value)
        and "campaign approve" in str(exc.value)
    )


def test_approve_one_step_records_reviewer_date_and_hash(store, content, clinic):
    renderer = renderer_for(content, clinic)
    done = approve(store, renderer, ["gad/welcome"], by="  Dr. Jane   Lee ", now=NOW)
    assert [(a.template, a.new, a.by, a.at) for a in done] == [("gad/welcome", True, "Dr. Jane Lee", NOW)]
    assert done[0].content_hash == content_hash(renderer, "gad/welcome")
    state = approval_state(store, renderer, ["gad/welcome"])["gad/welcome"]
    assert (state.approved, state.by, state.at, state.changed_since) == (True, "Dr. Jane Lee", NOW, False)
    # Only that step: the rest of the audience is still a draft.
    assert unapproved(store, renderer, GAD) == GAD[1:]
    require_approved(store, renderer, ["gad/welcome"])  # does not raise


def test_approve_every_step_of_an_audience(store, content, clinic):
    renderer = renderer_for(content, clinic)
    approve(store, renderer, GAD, by="Dr. Lee", now=NOW)
    assert unapproved(store, renderer, GAD) == []
    assert unapproved(store, renderer, ["social/welcome", *GAD]) == ["social/welcome"]


def test_editing_a_template_unapproves_it_and_reverting_approves_it_again(store, content, clinic):
    approve(store, renderer_for(content, clinic), GAD, by="Dr. Lee", now=NOW)
    source = content / "templates" / "gad" / "brain.md"
    original = source.read_text(encoding="utf-8")
    edit(source, lambda s: s + "\nOne more plain sentence.\n")

    renderer = renderer_for(content, clinic)
    state = approval_state(store, renderer, ["gad/brain"])["gad/brain"]
    assert (state.approved, state.changed_since, state.by, state.at) == (False, True, "Dr. Lee", NOW)
    assert "changed since" in state.label
    assert unapproved(store, renderer, GAD) == ["gad/brain"]  # the others are untouched
    with pytest.raises(UnapprovedContent) as exc:
        require_approved(store, renderer, GAD)
    assert exc.value.templates == ["gad/brain"]

    # A new sign-off of the new content...
    approve(store, renderer, ["gad/brain"], by="Dr. Kim", now=NOW + timedelta(days=1))
    state = approval_state(store, renderer, ["gad/brain"])["gad/brain"]
    assert (state.approved, state.by) == (True, "Dr. Kim")
    # ...and going back to the first approved text is approved (by its own reviewer).
    source.write_text(original, encoding="utf-8")
    state = approval_state(store, renderer_for(content, clinic), ["gad/brain"])["gad/brain"]
    assert (state.approved, state.by, state.changed_since) == (True, "Dr. Lee", False)


def test_editing_a_partial_unapproves_the_emails_that_include_it_and_only_those(store, content, clinic):
    names = [*GAD, "social/welcome"]
    approve(store, renderer_for(content, clinic), names, by="Dr. Lee", now=NOW)
    with_safety = [
        n for n in names if "partials/safety.md" in renderer_for(content, clinic).source(n).includes
    ]
    assert with_safety == ["gad/ketamine", "gad/questions"]
    edit(content / "templates" / "partials" / "safety.md", lambda s: s + "\nOne more plain sentence.\n")
    assert unapproved(store, renderer_for(content, clinic), names) == with_safety


@pytest.mark.parametrize("layout", ["layout.mjml", "layout.txt"])
def test_editing_a_shared_layout_unapproves_every_email(store, content, clinic, layout):
    names = ["gad/welcome", "social/questions"]
    approve(store, renderer_for(content, clinic), names, by="Dr. Lee", now=NOW)
    assert unapproved(store, renderer_for(content, clinic), names) == []
    edit(
        content / "templates" / layout,
        lambda s: s.replace("In an emergency, call 911.", "In an emergency, call 911 now."),
    )
    renderer = renderer_for(content, clinic)
    assert unapproved(store, renderer, names) == names
    assert all(s.changed_since for s in approval_state(store, renderer, names).values())


def test_hash_is_per_template_and_stable(content, clinic):
    first, second = renderer_for(content, clinic), renderer_for(content, clinic)
    assert content_hash(first, "gad/welcome") == content_hash(second, "gad/welcome")
    assert content_hash(first, "gad/welcome") != content_hash(first, "social/welcome")
    assert len(content_hash(first, "gad/welcome")) == 64


def test_approving_the_same_content_twice_keeps_the_first_sign_off(store, content, clinic):
    renderer = renderer_for(content, clinic)
    approve(store, renderer, ["gad/welcome"], by="Dr. Lee", now=NOW)
    again = approve(store, renderer, ["gad/welcome"], by="Dr. Kim", now=NOW + timedelta(hours=1))
    assert [(a.new, a.by, a.at) for a in again] == [(False, "Dr. Lee", NOW)]
    assert approval_state(store, renderer, ["gad/welcome"])["gad/welcome"].by == "Dr. Lee"


def test_a_template_that_cannot_be_read_is_never_approved(store, content, clinic):
    approve(store, renderer_for(content, clinic), ["gad/welcome"], by="Dr. Lee", now=NOW)
    (content / "templates" / "gad" / "welcome.md").unlink()
    renderer = renderer_for(content, clinic)
    assert unapproved(store, renderer, ["gad/welcome"]) == ["gad/welcome"]
    state = approval_state(store, renderer, ["gad/welcome"])["gad/welcome"]
    assert (state.approved, state.changed_since, state.content_hash) == (False, True, None)


@pytest.mark.parametrize("by", ["", "   ", "x" * 201])
def test_approve_needs_a_reviewer_name(store, content, clinic, by):
    renderer = renderer_for(content, clinic)
    with pytest.raises(ValueError):
        approve(store, renderer, ["gad/welcome"], by=by, now=NOW)
    assert unapproved(store, renderer, ["gad/welcome"]) == ["gad/welcome"]


# ---- the CLI --------------------------------------------------------------------------------------


@pytest.fixture
def env(make_settings, content, monkeypatch):
    s = make_settings(content_dir=content)
    monkeypatch.setenv("CAMPAIGN_DATABASE_URL", s.database_url)
    monkeypatch.setenv("CAMPAIGN_CONTENT_DIR", str(content))
    monkeypatch.setenv("CAMPAIGN_PUBLIC_URL", "https://clinic.example.org")
    monkeypatch.setenv("CAMPAIGN_SECRET_KEY", "cli-test-secret")
    monkeypatch.setenv("COLUMNS", "200")
    return s


def states_in_db(s, names):
    from campaign.runtime import open_store

    store = open_store(s)
    try:
        return approval_state(store, Renderer(s.templates_dir, s.clinic), names)
    finally:
        store.close()


def test_cli_approve_one_step_records_by(env):
    result = runner.invoke(app, ["approve", "gad", "welcome", "--by", "Dr. Jane Lee"])
    assert result.exit_code == 0, result.output
    assert "gad/welcome approved by Dr. Jane Lee" in result.output and "layout" in result.output
    states = states_in_db(env, GAD)
    assert states["gad/welcome"].approved and states["gad/welcome"].by == "Dr. Jane Lee"
    assert [n for n, st in states.items() if not st.approved] == GAD[1:]


def test_cli_approve_whole_audience(env):
    result = runner.invoke(app, ["approve", "gad", "--by", "Dr. Lee"])
    assert result.exit_code == 0, result.output
    states = states_in_db(env, [*GAD, "social/welcome"])
    assert all(states[n].approved and states[n].by == "Dr. Lee" for n in GAD)
    assert not states["social/welcome"].approved


def test_cli_approve_bad_input(env):
    assert runner.invoke(app, ["approve", "gad", "welcome"]).exit_code == 2  # --by is required
    unknown = runner.invoke(app, ["approve", "nope", "--by", "Dr. Lee"])
    assert unknown.exit_code == 2 and "gad" in unknown.output  # lists the audiences there are
    bad_step = runner.invoke(app, ["approve", "gad", "nope", "--by", "Dr. Lee"])
    assert bad_step.exit_code == 2 and "welcome" in bad_step.output
    assert runner.invoke(app, ["approve", "gad", "welcome", "--by", "  "]).exit_code == 2
    assert not any(st.approved for st in states_in_db(env, GAD).values())


def test_cli_approve_refuses_lint_errors_unless_forced(env, content):
    # A promise, right after the front matter's closing '---'.
    edit(
        content / "templates" / "gad" / "brain.md",
        lambda s: s.replace("\n---\n", "\n---\nThis will cure you, guaranteed.\n\n", 1),
    )
    refused = runner.invoke(app, ["approve", "gad", "brain", "--by", "Dr. Lee"])
    assert refused.exit_code == 1
    assert (
        "promise" in refused.output
        and "brain.md" in refused.output
        and "nothing was approved" in refused.output
    )
    assert not states_in_db(env, ["gad/brain"])["gad/brain"].approved
    # Another step of the same audience is clean: approving it alone is not blocked.
    assert runner.invoke(app, ["approve", "gad", "welcome", "--by", "Dr. Lee"]).exit_code == 0
    forced = runner.invoke(app, ["approve", "gad", "brain", "--by", "Dr. Lee", "--force"])
    assert forced.exit_code == 0, forced.output
    assert "--force" in forced.output
    assert states_in_db(env, ["gad/brain"])["gad/brain"].approved


def test_content_commands_do_not_import_prefect(env, tmp_path):
    """lint, approve and preview are quick commands: Prefect (1.3 s to import) stays out."""
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from campaign.cli import app\n"
        "r = CliRunner()\n"
        "for args in (['lint'], ['approve', 'gad', 'welcome', '--by', 'Dr. Lee'], ['preview', '--out', "
        f"{str(tmp_path / 'p')!r}],"
        " ['preview', 'gad', 'welcome', '--out', " + repr(str(tmp_path / "one.html")) + "]):\n"
        "    res = r.invoke(app, args)\n"
        "    assert res.exit_code == 0, (args, res.output)\n"
        "print('prefect' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "False"
    assert (tmp_path / "p" / "index.html").exists() and (tmp_path / "one.html").exists()
