"""The tick on a real SQLite file with the outbox: enrollment, due steps, idempotency,
late joiners, live sequence edits, and a whole simulated month."""

from __future__ import annotations

import shutil
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from campaign.app.leads import import_file, lead_rows
from campaign.delivery.outbox import read_index
from campaign.demo import simulate
from campaign.engine import run_tick
from campaign.models import AnxietyType, LeadIn
from campaign.runtime import build_context
from campaign.schedule import in_window
from campaign.settings import PROJECT_ROOT

NY = ZoneInfo("America/New_York")
MONDAY_10 = datetime(2026, 3, 2, 10, 0, tzinfo=NY).astimezone(UTC)


def lead(email, kind=AnxietyType.gad, **kw) -> LeadIn:
    return LeadIn(email=email, anxiety_type=kind, consent=kw.pop("consent", True), **kw)


def tick(settings, now, store=None):
    ctx = build_context(settings, now=now, store=store)
    return run_tick(ctx, now)


def outbox_by_address(settings) -> dict[str, list[dict]]:
    found = defaultdict(list)
    for entry in read_index(settings.outbox_dir):
        found[entry["to"]].append(entry)
    return found


def test_first_tick_enrolls_consenting_leads_and_sends_welcome(settings, sqlite_store):
    sqlite_store.upsert_leads(
        [
            lead("a@example.com"),
            lead("b@example.com", consent=False),
            lead("c@example.com", AnxietyType.social),
        ],
        MONDAY_10,
    )
    report = tick(settings, MONDAY_10, sqlite_store)
    assert dict(report.enrolled) == {"gad": 1, "social": 1}
    assert dict(report.sent) == {("gad", "welcome"): 1, ("social", "welcome"): 1}
    sent_to = outbox_by_address(settings)
    assert set(sent_to) == {"a@example.com", "c@example.com"}  # no consent, no email


def test_two_ticks_at_the_same_now_send_nothing_the_second_time(settings, sqlite_store):
    sqlite_store.upsert_leads([lead(f"l{i}@example.com") for i in range(5)], MONDAY_10)
    first = tick(settings, MONDAY_10, sqlite_store)
    second = tick(settings, MONDAY_10, sqlite_store)
    assert sum(first.sent.values()) == 5 and sum(second.sent.values()) == 0
    assert len(read_index(settings.outbox_dir)) == 5


def test_late_joiner_enrolls_on_next_tick_with_its_own_clock(settings, sqlite_store):
    sqlite_store.upsert_leads([lead("early@example.com")], MONDAY_10)
    tick(settings, MONDAY_10, sqlite_store)
    later = MONDAY_10 + timedelta(days=1)
    sqlite_store.upsert_leads([lead("late@example.com")], later)
    report = tick(settings, later, sqlite_store)
    assert dict(report.sent) == {("gad", "welcome"): 1}
    assert [e["to"] for e in read_index(settings.outbox_dir)][-1] == "late@example.com"


def test_unsubscribed_or_booked_lead_exits_before_next_step(settings, sqlite_store):
    sqlite_store.upsert_leads([lead("a@example.com"), lead("b@example.com")], MONDAY_10)
    tick(settings, MONDAY_10, sqlite_store)
    sqlite_store.upsert_leads([lead("b@example.com", booked=True)], MONDAY_10)
    report = tick(settings, MONDAY_10 + timedelta(days=3), sqlite_store)
    assert report.exited["booked"] == 1
    assert [e["to"] for e in read_index(settings.outbox_dir)].count("b@example.com") == 1


def copy_content(tmp_path):
    content = tmp_path / "content"
    for name in ("audiences", "templates"):
        shutil.copytree(PROJECT_ROOT / name, content / name)
    shutil.copy(PROJECT_ROOT / "clinic.yaml", content / "clinic.yaml")
    return content


def test_sequence_edit_keeps_place_and_never_sends_removed_step(make_settings, tmp_path):
    content = copy_content(tmp_path)
    settings = make_settings(content_dir=content)
    ctx = build_context(settings, now=MONDAY_10)
    ctx.store.upsert_leads([lead("a@example.com")], MONDAY_10)
    run_tick(ctx, MONDAY_10)  # welcome
    # Remove 'brain' from the live sequence: the lead goes on with 'ketamine', never 'brain'.
    path = content / "audiences" / "gad.yaml"
    path.write_text(path.read_text().replace("  - {key: brain, day: 3}\n", ""))
    moment = MONDAY_10
    keys = []
    for _ in range(40):
        moment += timedelta(hours=12)
        ctx = build_context(settings, now=moment, store=ctx.store)
        report = run_tick(ctx, moment)
        keys += [k for (_, k), n in report.sent.items() for _ in range(n)]
    assert keys == ["ketamine", "treatment", "questions"]


def test_render_failure_fails_that_send_and_not_the_tick(make_settings, tmp_path):
    content = copy_content(tmp_path)
    (content / "templates" / "social" / "welcome.md").write_text(
        "---\nsubject: Hi\npreheader: x\n---\n{{ nope }}\n"
    )
    settings = make_settings(content_dir=content)
    ctx = build_context(settings, now=MONDAY_10)
    ctx.store.upsert_leads([lead("a@example.com"), lead("b@example.com", AnxietyType.social)], MONDAY_10)
    report = run_tick(ctx, MONDAY_10)
    assert dict(report.sent) == {("gad", "welcome"): 1}
    assert dict(report.failed) == {("social", "welcome"): 1}
    assert "social/welcome.md" in report.errors[0] and "nope" in report.errors[0]


def test_simulated_month_gives_every_consenting_lead_exactly_its_sequence(settings, sqlite_store):
    """The demo's loop without Prefect: the shipped sample over 30 days."""
    start = datetime(2026, 3, 2, 8, 0, tzinfo=NY).astimezone(UTC)
    import_file(sqlite_store, settings, PROJECT_ROOT / "audiences" / "sample_leads.csv", start)
    ticks, sent = simulate(
        sqlite_store,
        start,
        start + timedelta(days=30),
        lambda now: tick(settings, now, sqlite_store).as_dict(),
    )
    rows = lead_rows(sqlite_store, build_context(settings, store=sqlite_store).audiences)
    consenting = [r for r in rows if r["status"] != "waiting for consent"]
    assert consenting and all(r["status"] == "finished" and r["steps_sent"] == 5 for r in consenting)
    assert {r["audience"] for r in consenting} == {"gad", "social", "treatment_resistant", "general"}
    assert sent == 5 * len(consenting)

    ledger = sqlite_store.ledger()
    by_lead = defaultdict(list)
    for row in ledger:
        by_lead[row["email"]].append(row)
    ctx = build_context(settings, store=sqlite_store)
    for email, rows_ in by_lead.items():
        assert [r["step_key"] for r in rows_] == ["welcome", "brain", "ketamine", "treatment", "questions"]
        times = [r["claimed_at"] for r in rows_]
        tz = ZoneInfo(rows_[0]["timezone"])
        assert all(in_window(t, ctx.audiences[0].send_window, tz) for t in times), email
        assert all(b - a >= timedelta(hours=48) for a, b in zip(times, times[1:])), email
    # The outbox holds exactly the ledger's emails.
    assert len(read_index(settings.outbox_dir)) == len(ledger)


def test_leads_report_shows_status_and_next_step(settings, sqlite_store):
    sqlite_store.upsert_leads([lead("a@example.com"), lead("b@example.com", consent=False)], MONDAY_10)
    tick(settings, MONDAY_10, sqlite_store)
    rows = {
        r["email"]: r for r in lead_rows(sqlite_store, build_context(settings, store=sqlite_store).audiences)
    }
    assert rows["a@example.com"]["status"] == "enrolled" and rows["a@example.com"]["next_step"] == "brain"
    assert rows["a@example.com"]["steps_sent"] == 1
    assert rows["b@example.com"]["status"] == "waiting for consent"


def test_sequence_edit_adding_an_earlier_step_is_planned_at_once(make_settings, tmp_path):
    content = copy_content(tmp_path)
    settings = make_settings(content_dir=content)
    ctx = build_context(settings, now=MONDAY_10)
    ctx.store.upsert_leads([lead("a@example.com")], MONDAY_10)
    run_tick(ctx, MONDAY_10)  # welcome; next step (brain) due on day 3
    path = content / "audiences" / "gad.yaml"
    # A new step on day 2, reusing an existing template: it must go on day 2, not wait for day 3.
    path.write_text(
        path.read_text().replace(
            "  - {key: brain, day: 3}\n",
            "  - {key: extra, day: 2, template: gad/brain}\n  - {key: brain, day: 3}\n",
        )
    )
    day2 = MONDAY_10 + timedelta(days=2)
    report = run_tick(build_context(settings, now=day2, store=ctx.store), day2)
    assert dict(report.sent) == {("gad", "extra"): 1}
