"""enrollments without ix_enrollments_due (0019_due_index): the readers it served find their
rows through ix_enrollments_campaign_due, and the migration goes down and up."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from store_support import downgrade, enrollment_row, model_diffs
from test_send_counts import MONDAY_10

from campaign.models import LeadIn


def _enroll(store, slug: str, email: str, due_in_hours: float | None, state: str = "active") -> None:
    store.upsert_leads([LeadIn(email=email, consent=True)], MONDAY_10)
    campaign = store.campaign(slug) or store.create_campaign(
        slug=slug, name=slug, audiences=["gad"], starts_at=None, sandbox=False, versions={}, now=MONDAY_10
    )
    due = None if due_in_hours is None else MONDAY_10 + timedelta(hours=due_in_hours)
    row = enrollment_row(
        campaign["id"], store.lead_by_email(email).id, MONDAY_10, state=state, next_due_at=due
    )
    store.add_enrollments([row])


def test_the_earliest_due_time_spans_campaigns_and_skips_ended_enrollments(store):
    assert store.next_due_at() is None
    _enroll(store, "evergreen", "a@example.com", 5)
    _enroll(store, "spring", "b@example.com", 3)
    _enroll(store, "spring", "c@example.com", 1, state="finished")  # ended: not due
    _enroll(store, "autumn", "d@example.com", None)  # active, nothing due
    assert store.next_due_at() == MONDAY_10 + timedelta(hours=3)


def _plan(store, query: sa.Select) -> str:
    with store.engine.connect() as conn:
        if store.dialect == "sqlite":
            compiled = query.compile(conn, compile_kwargs={"literal_binds": True})
            return " | ".join(r[-1] for r in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}"))
        conn.exec_driver_sql("SET LOCAL enable_seqscan = off")  # a tiny table: say which index it would take
        compiled = query.compile(conn, compile_kwargs={"literal_binds": True})
        return " | ".join(r[0] for r in conn.exec_driver_sql(f"EXPLAIN {compiled}"))


def test_the_walk_plan_and_the_earliest_due_time_search_the_campaign_due_index(store):
    for i in range(20):
        _enroll(store, "evergreen", f"l{i}@example.com", i)
    campaign_id = store.campaign("evergreen")["id"]
    due = store._enrollments._due_ids([campaign_id], MONDAY_10 + timedelta(hours=4), 0, None)
    assert "ix_enrollments_campaign_due" in _plan(store, due)
    e = sa.table("enrollments", sa.column("campaign_id"), sa.column("state"), sa.column("next_due_at"))
    earliest = sa.select(sa.func.min(e.c.next_due_at)).where(
        e.c.campaign_id == campaign_id, e.c.state == "active"
    )
    assert "ix_enrollments_campaign_due" in _plan(store, earliest)
    # Due by then: the first five; every second one and the last bound the walk's batches.
    assert store.due_bounds([campaign_id], MONDAY_10 + timedelta(hours=4), 2) == _ids_at(store, (1, 3, 4))


def _ids_at(store, positions) -> list[int]:
    with store.engine.connect() as conn:
        ids = conn.execute(sa.text("SELECT id FROM enrollments ORDER BY id")).scalars().all()
    return [ids[p] for p in positions]


def test_the_migration_drops_the_index_and_gives_it_back(store, database_url):

    def indexes() -> set[str]:
        return {i["name"] for i in sa.inspect(store.engine).get_indexes("enrollments")}

    def diffs() -> list:
        return model_diffs(store, "ix_enrollments_due")

    assert "ix_enrollments_due" not in indexes() and diffs() == []
    downgrade(store, database_url, "0018_ledger_counts")
    assert "ix_enrollments_due" in indexes()
    store.migrate()
    assert "ix_enrollments_due" not in indexes() and diffs() == []
