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


def wait_for_lock_wait(engine: sa.Engine, application_name: str, query_start: str) -> None:
    """Until a connection of ours whose statement starts so is waiting on a lock."""
    deadline = time.monotonic() + 60
    probe = sa.text(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = :name "
        "AND wait_event_type = 'Lock' AND query LIKE :start"
    )
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            if conn.execute(probe, {"name": application_name, "start": f"{query_start}%"}).scalar():
                return
        time.sleep(0.05)
    raise AssertionError(f"no statement {query_start!r} waited on a lock within 60 s")


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


def test_forget_lead_during_the_enrollment_leaves_no_orphan(pg):
    store, ctx, name = pg
    victim = store.lead_by_email("lead7@example.com")
    # One lead enrolled before, so that the count row of (campaign, gad, active) exists; holding
    # it, the enrollment's INSERT has written (and checked the keys of) every row when its
    # statement trigger comes to add to it, and waits there with its transaction open.
    campaign = store.active_campaigns(NOW)[0]
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
