"""The review record in the emails: `campaign approve --role` puts "Medically reviewed by NAME,
ROLE, DATE" in the footer of every email sent while its content is as approved; an edit takes
the line away. Real SQLite file, real template copies, the CLI through Typer's runner, the tick
with the outbox; `campaign lint --format json` reports SMOG beside Flesch-Kincaid."""

from __future__ import annotations

import email
import json
import shutil
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from typer.testing import CliRunner

from campaign.approval import ApprovalState, approval_state, content_hash, review_credit
from campaign.cli import app
from campaign.delivery.outbox import read_index
from campaign.engine import run_tick
from campaign.lint import body_text, reading_grade, smog_grade
from campaign.models import AnxietyType, LeadIn
from campaign.render import Renderer
from campaign.runtime import build_context, open_store
from campaign.settings import PROJECT_ROOT

runner = CliRunner()
MONDAY_10 = datetime(2026, 3, 2, 10, 0, tzinfo=ZoneInfo("America/New_York")).astimezone(UTC)


@pytest.fixture
def env(make_settings, tmp_path, monkeypatch):
    content = tmp_path / "content"
    content.mkdir()
    shutil.copytree(PROJECT_ROOT / "templates", content / "templates")
    shutil.copytree(PROJECT_ROOT / "audiences", content / "audiences")
    shutil.copy(PROJECT_ROOT / "clinic.yaml", content / "clinic.yaml")
    s = make_settings(content_dir=content)
    monkeypatch.setenv("CAMPAIGN_DATABASE_URL", s.database_url)
    monkeypatch.setenv("CAMPAIGN_CONTENT_DIR", str(content))
    monkeypatch.setenv("CAMPAIGN_OUTBOX_DIR", str(s.outbox_dir))
    monkeypatch.setenv("CAMPAIGN_PUBLIC_URL", "https://clinic.example.org")
    monkeypatch.setenv("CAMPAIGN_SECRET_KEY", "cli-test-secret")
    return s


def parts_sent_to(settings, address: str) -> tuple[str, str]:
    """(text part, HTML part) of the one email the outbox holds for this address."""
    [entry] = [e for e in read_index(settings.outbox_dir) if e["to"] == address]
    message = email.message_from_bytes((settings.outbox_dir / entry["file"]).read_bytes())
    found = {
        p.get_content_type(): p.get_payload(decode=True).decode()
        for p in message.walk()
        if not p.is_multipart()
    }
    return found["text/plain"], found["text/html"]


def send_welcome(settings, address: str, now: datetime) -> tuple[str, str]:
    store = open_store(settings)
    try:
        store.upsert_leads([LeadIn(email=address, anxiety_type=AnxietyType.gad, consent=True)], now)
        report = run_tick(build_context(settings, now=now, store=store), now)
    finally:
        store.close()
    assert dict(report.sent) == {("gad", "welcome"): 1}, report.as_dict()
    return parts_sent_to(settings, address)


def test_a_tick_email_carries_the_reviewers_credit_until_its_template_changes(env):
    approved = runner.invoke(app, ["approve", "gad", "welcome", "--by", "Dr. Jane Lee", "--role", "MD"])
    assert approved.exit_code == 0, approved.output
    store = open_store(env)
    try:
        at = store.approval_record("gad/welcome")["approved_at"]
    finally:
        store.close()
    credit = f"Medically reviewed by Dr. Jane Lee, MD, {at:%B} {at.day}, {at:%Y}"

    text, html = send_welcome(env, "ann@example.com", MONDAY_10)
    assert credit in text and credit in html
    assert credit in text.split("\n----\n")[-1]  # in the shared footer, after the rule
    assert credit not in body_text(text)  # so lint's reading grades never see it

    path = env.templates_dir / "gad" / "welcome.md"
    path.write_text(path.read_text(encoding="utf-8") + "\nOne more line.\n", encoding="utf-8")
    text, html = send_welcome(env, "bob@example.com", MONDAY_10 + timedelta(hours=1))
    assert "Medically reviewed" not in text and "Medically reviewed" not in html
    assert "One more line." in text


def test_the_credit_is_not_part_of_the_hash_nor_of_the_reading_grades(env, sqlite_store):
    renderer = Renderer(env.templates_dir, env.clinic)
    before = content_hash(renderer, "gad/welcome")
    plain = renderer.render("gad/welcome", first_name="Ann", unsubscribe_url="https://x.example/u")
    credited = renderer.render(
        "gad/welcome",
        first_name="Ann",
        unsubscribe_url="https://x.example/u",
        review_credit="Medically reviewed by Dr. Extraordinarily Polysyllabic, PharmD, March 2, 2026",
    )
    assert "Extraordinarily Polysyllabic" in credited.text and "Polysyllabic" not in plain.text
    assert reading_grade(credited.text) == reading_grade(plain.text)
    assert smog_grade(credited.text) == smog_grade(plain.text)
    from campaign.approval import approve

    approve(sqlite_store, renderer, ["gad/welcome"], by="Dr. Lee", role="NP", now=MONDAY_10)
    assert content_hash(Renderer(env.templates_dir, env.clinic), "gad/welcome") == before
    state = approval_state(sqlite_store, renderer, ["gad/welcome"])["gad/welcome"]
    assert review_credit(state) == "Medically reviewed by Dr. Lee, NP, March 2, 2026"


def test_the_credit_names_a_credential_never_a_console_role_and_only_for_approved_content():
    at = datetime(2026, 3, 2, 15, tzinfo=UTC)
    assert review_credit(ApprovalState(True, "Dr. Lee", at, False, "h", "clinical reviewer")) == (
        "Medically reviewed by Dr. Lee, clinical reviewer, March 2, 2026"
    )
    assert review_credit(ApprovalState(True, "Dr. Lee", at, False, "h", "admin")) == (
        "Medically reviewed by Dr. Lee, March 2, 2026"
    )
    assert review_credit(ApprovalState(True, "Dr. Lee", at, False, "h", "")) == (
        "Medically reviewed by Dr. Lee, March 2, 2026"
    )
    assert review_credit(ApprovalState(False, "Dr. Lee", at, True, "h", "MD")) is None  # changed since
    assert review_credit(ApprovalState(False, None, None, False, "h")) is None  # never approved


def test_lint_json_has_smog_beside_flesch_kincaid_for_every_email(env):
    result = runner.invoke(app, ["lint", "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert len(data["emails"]) == 20
    for row in data["emails"]:
        template = f"{row['audience']}/{row['step']}"
        assert row["smog"] == pytest.approx(data["smog"][template], abs=0.01)
        assert row["grade"] == pytest.approx(data["grades"][template], abs=0.01)
        assert 3.0 <= row["smog"] <= 8.0, row  # SMOG's floor is 3.1: a real measure, within the limit
    table = runner.invoke(app, ["lint"], env={"COLUMNS": "200"})
    assert "SMOG" in table.output and "grade (FK)" in table.output


def test_the_gallery_shows_both_grades_and_the_credit_as_it_would_go_out(env, sqlite_store):
    from campaign.approval import approve
    from campaign.audiences import load_audiences
    from campaign.preview import build_cards, card_html

    renderer = Renderer(env.templates_dir, env.clinic)
    approve(sqlite_store, renderer, ["gad/welcome"], by="Dr. Lee", role="PharmD", now=MONDAY_10)
    gad = [a for a in load_audiences(env.audiences_dir) if a.name == "gad"]
    gallery = build_cards(renderer, gad, public_url=env.public_url, store=sqlite_store)
    cards = {c.step: c for c in gallery.cards}
    welcome, brain = cards["welcome"], cards["brain"]
    assert welcome.smog is not None and brain.smog is not None
    shown = card_html(welcome)
    assert f"{welcome.grade:.1f} Flesch-Kincaid, {welcome.smog:.1f} SMOG" in shown
    assert "Medically reviewed by Dr. Lee, PharmD, March 2, 2026" in welcome.text
    assert "Medically reviewed" not in brain.text  # never approved: a draft has no credit
