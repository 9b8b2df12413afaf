"""The PostgreSQL set-based enrollment beside concurrent writers, on a real PostgreSQL schema:

- a `forget_lead` that runs while the enrollment's INSERT is open leaves no enrollment of the
  forgotten lead (the foreign key's lock on each enrolled lead makes the forget wait, and its
  cascade then removes the row);
- another writer of the same (campaign, lead) that commits while the INSERT waits for it (the
  INSERT has no ON CONFLICT clause when it can) does not fail the tick: the statement runs again
  with ON CONFLICT DO NOTHING, and every lead is enrolled exactly once.

Each test makes the race happen, not hope for it: a second connection holds a lock the tick needs
at the moment that matters, and the test waits until the other side is seen waiting on a lock.
"""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from conftest import postgres_schema

from campaign.engine import enroll_new
from campaign.models import LeadIn
from campaign.runtime import build_context
from campaign.store import Store, enrollments, leads

NOW = datetime(2026, 3, 7, 15, 30, tzinfo=UTC)
EARLIER = NOW - timedelta(days=3)
SECRET = "test-secret-key"
N = 400


@pytest.fixture
def pg(postgres_reason, make_settings):
    """A store on a private schema whose connections carry a name of their own (to find them in
    pg_stat_activity), `N` consenting leads, and a context to tick with."""
    if postgres_reason:
        pytest.skip(postgres_reason)
    name = f"enroll_{uuid.uuid4().hex[:10]}"
    with postgres_schema() as url:
        url = f"{url}&application_name={name}"
        store = Store.open(url, secret_key=SECRET)
        store.upsert_leads(
            [
                LeadIn(
                    email=f"lead{i}@example.com",
                    anxiety_type="gad",
                    consent=True,
                    timezone="America/New_York",
                )
                for i in range(N)
            ],
            EARLIER,
        )
        ctx = build_context(make_settings(database_url=url, secret_key=SECRET), now=NOW, store=store)
        yield store, ctx, name
        store.close()


def wait_for_lock_wait(engine: sa.Engine, application_name: str, query_start: str, count: int = 1) -> None:
    """Until `count` connections of ours whose statements start so are waiting on a lock."""
    deadline = time.monotonic() + 60
    probe = sa.text(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = :name "
        "AND wait_event_type = 'Lock' AND query LIKE :start"
    )
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            if conn.execute(probe, {"name": application_name, "start": f"{query_start}%"}).scalar() >= count:
                return
        time.sleep(0.05)
    raise AssertionError(f"fewer than {count} statements {query_start!r} waited on a lock within 60 s")


def in_thread(fn, *args) -> tuple[threading.Thread, dict]:
    out: dict = {}

    def run():
        try:
            out["result"] = fn(*args)
        except BaseException as exc:  # reported by the test
            out["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def finished(thread: threading.Thread, out: dict):
    thread.join(120)
    assert not thread.is_alive(), "still running after 120 s"
    if "error" in out:
        raise out["error"]
    return out.get("result")


def orphans(store) -> int:
    query = sa.select(sa.func.count()).where(~sa.exists().where(leads.c.id == enrollments.c.lead_id))
    with store.engine.connect() as conn:
        return conn.execute(query.select_from(enrollments)).scalar_one()


def hold_the_count_row(store, campaign) -> sa.Connection:
    """One lead enrolled before (the count row of (campaign, gad, active) exists), that row locked
    by the connection returned: every INSERT of the enrollment waits in its counting trigger, its
    rows written and its leads' keys checked, its transaction open."""
    store.upsert_leads([LeadIn(email="seed@example.com", anxiety_type="gad", consent=True)], EARLIER)
    seed = store.lead_by_email("seed@example.com")
    row = dict(campaign_id=campaign["id"], audience="gad", audience_version="v", enrolled_at=EARLIER)
    store.add_enrollments([{**row, "lead_id": seed.id, "state": "active", "next_due_at": None}])
    blocker = store.engine.connect()
    blocker.exec_driver_sql(
        "SELECT n FROM enrollment_counts WHERE campaign_id = %s AND audience = 'gad' AND state = 'active' "
        "FOR UPDATE",
        (campaign["id"],),
    ).one()
    return blocker


def test_forget_lead_during_the_enrollment_leaves_no_orphan(pg):
    store, ctx, name = pg
    victim = store.lead_by_email("lead7@example.com")
    campaign = store.active_campaigns(NOW)[0]
    blocker = hold_the_count_row(store, campaign)
    try:
        enrolling, enrolled = in_thread(enroll_new, ctx, NOW)
        wait_for_lock_wait(store.engine, name, "WITH inserted")
        # The forget's snapshot cannot see the uncommitted enrollment of its lead.
        forgetting, forgot = in_thread(store.forget_lead, "lead7@example.com", NOW)
        wait_for_lock_wait(store.engine, name, "DELETE FROM leads")
    finally:
        blocker.rollback()
        blocker.close()
    report = finished(enrolling, enrolled)
    counts = finished(forgetting, forgot)
    assert sum(report.enrolled.values()) == N  # the victim was enrolled, then forgotten
    assert counts["leads"] == 1 and counts["enrollments"] == 0  # its row was not visible to it
    assert orphans(store) == 0
    with store.engine.connect() as conn:
        left = conn.execute(sa.select(sa.func.count()).where(enrollments.c.lead_id == victim.id)).scalar()
        total = conn.execute(sa.select(sa.func.count()).select_from(enrollments)).scalar()
    assert left == 0 and total == N  # the N - 1 left, and the seed
    assert store.lead_by_email("lead7@example.com") is None


def test_a_concurrent_writer_of_the_same_enrollment_does_not_fail_the_tick(pg):
    store, ctx, name = pg
    campaign = store.active_campaigns(NOW)[0]
    racer = store.lead_by_email("lead11@example.com")
    # Another writer (as the Python walk's add_enrollments would) enrolls one lead and has not
    # committed yet: the tick's INSERT meets its row in the unique index and waits for it.
    other = store.engine.connect()
    other.execute(
        sa.insert(enrollments).values(
            campaign_id=campaign["id"],
            lead_id=racer.id,
            audience="gad",
            audience_version="other",
            enrolled_at=NOW,
            state="active",
            next_due_at=NOW,
        )
    )
    try:
        enrolling, enrolled = in_thread(enroll_new, ctx, NOW)
        wait_for_lock_wait(store.engine, name, "WITH inserted")
        other.commit()
    finally:
        other.close()
    report = finished(enrolling, enrolled)
    assert sum(report.enrolled.values()) == N - 1  # the other writer's lead is not counted again
    with store.engine.connect() as conn:
        per_lead = conn.execute(
            sa.select(enrollments.c.lead_id, sa.func.count()).group_by(enrollments.c.lead_id)
        ).all()
        versions = conn.execute(
            sa.select(enrollments.c.audience_version).where(enrollments.c.lead_id == racer.id)
        ).scalars()
        counted = conn.exec_driver_sql("SELECT sum(n) FROM enrollment_counts").scalar()
    assert len(per_lead) == N and all(n == 1 for _, n in per_lead)
    assert list(versions) == ["other"]  # the row the other writer committed, untouched
    assert counted == N  # the count table agrees: nothing counted twice


# ---- a large enrollment in parts (issue 14) ------------------------------------------------------


def each_lead_once(store) -> tuple[int, int]:
    """(enrollments, their count in enrollment_counts), asserting no lead is enrolled twice."""
    with store.engine.connect() as conn:
        per_lead = conn.execute(
            sa.select(enrollments.c.lead_id, sa.func.count()).group_by(enrollments.c.lead_id)
        ).all()
        counted = conn.exec_driver_sql("SELECT sum(n) FROM enrollment_counts").scalar()
    assert all(n == 1 for _, n in per_lead)
    return len(per_lead), counted


@pytest.fixture
def in_parts(monkeypatch):
    """Every PostgreSQL enrollment in 2 parts, however few leads (on any machine); blocks of one id
    (part: id % 2), so that 400 leads fill both parts."""
    from campaign.store import enroll_parts

    monkeypatch.setattr(enroll_parts, "PARTS", 2)
    monkeypatch.setattr(enroll_parts, "PARTS_FROM", -(10**9))  # whatever the estimate
    monkeypatch.setattr(enroll_parts, "ID_BLOCK", 1)


def test_the_parts_insert_at_once_and_a_forget_in_each_leaves_no_orphan(pg, in_parts):
    store, ctx, name = pg
    campaign = store.active_campaigns(NOW)[0]
    victims = [store.lead_by_email(f"lead{i}@example.com") for i in (7, 8)]
    assert {v.id % 2 for v in victims} == {0, 1}  # one in each part
    blocker = hold_the_count_row(store, campaign)
    try:
        enrolling, enrolled = in_thread(enroll_new, ctx, NOW)
        wait_for_lock_wait(store.engine, name, "WITH inserted", 2)  # both parts' rows written, uncommitted
        forgets = [in_thread(store.forget_lead, v.email, NOW) for v in victims]
        wait_for_lock_wait(store.engine, name, "DELETE FROM leads", 2)  # each waits for its part's key lock
    finally:
        blocker.rollback()
        blocker.close()
    report = finished(enrolling, enrolled)
    assert sum(report.enrolled.values()) == N  # the victims were enrolled, then forgotten
    for thread, out in forgets:
        counts = finished(thread, out)
        assert counts["leads"] == 1 and counts["enrollments"] == 0
    assert orphans(store) == 0
    assert each_lead_once(store) == (N - 2 + 1, N - 2 + 1)  # the seed, and the N - 2 left


def test_two_enrollers_of_one_campaign_in_parts_and_in_one_enroll_each_lead_once(pg, in_parts, caplog):
    from campaign.engine import campaign_audiences, first_due

    store, ctx, name = pg
    campaign = store.active_campaigns(NOW)[0]
    compiled = store.compile_audiences(ctx.audiences)
    mine = [a for a, _ in compiled.sql if a in campaign_audiences(campaign, ctx)]
    due = {a.name: {"America/New_York": first_due(a, NOW, "America/New_York")} for a in mine}
    enroll = store.enroll_campaign
    odd = store.lead_by_email("lead0@example.com")
    assert odd.id % 2 == 1
    # A lead of part 1 locked: that part's key check waits, with its transaction open, while part 0
    # commits (the even leads).
    blocker = store.engine.connect()
    blocker.exec_driver_sql("SELECT id FROM leads WHERE id = %s FOR UPDATE", (odd.id,)).one()
    try:
        first, first_out = in_thread(enroll, campaign["id"], compiled, mine, due, NOW)
        wait_for_lock_wait(store.engine, name, "WITH inserted", 1)
        while each_lead_once(store)[0] < N // 2:
            time.sleep(0.05)
        # A second enroller in one statement (all 8 slots): gets slot 0, waits for slot 1 until
        # part 1 commits; a third in 2 parts waits for both its parts' first slots.
        second, second_out = in_thread(enroll, campaign["id"], compiled, mine, due, NOW, 1)
        wait_for_lock_wait(store.engine, name, "SELECT count(pg_advisory_xact_lock", 1)
        third, third_out = in_thread(enroll, campaign["id"], compiled, mine, due, NOW, 2)
        wait_for_lock_wait(store.engine, name, "SELECT count(pg_advisory_xact_lock", 3)
    finally:
        blocker.rollback()
        blocker.close()
    with caplog.at_level("INFO", logger="campaign.store.enroll_parts"):
        enrollers = [(first, first_out), (second, second_out), (third, third_out)]
        counts = [sum(finished(thread, out).values()) for thread, out in enrollers]
    assert counts == [N, 0, 0]
    assert each_lead_once(store) == (N, N)
    assert "concurrent writer" not in caplog.text  # they took turns: no unique violation met


def test_parts_only_when_many_leads_are_new(pg, monkeypatch):
    from campaign.store import enroll_parts
    from campaign.store.enroll import _reachable

    store, ctx, _ = pg
    monkeypatch.setattr(enroll_parts, "PARTS", 2)
    campaign_id = store.active_campaigns(NOW)[0]["id"]
    with store.engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE leads")  # as an import does (the estimate reads statistics)
    assert enroll_parts.parts_for(store.engine, campaign_id, _reachable()) == 1  # 400 < 50,000
    monkeypatch.setattr(enroll_parts, "PARTS_FROM", N // 2)
    assert enroll_parts.parts_for(store.engine, campaign_id, _reachable()) == 2  # ~400 new
    assert sum(enroll_new(ctx, NOW).enrolled.values()) == N
    assert enroll_parts.parts_for(store.engine, campaign_id, _reachable()) == 1  # none new
