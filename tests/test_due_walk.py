"""The due walk (campaign.due_walk) yields exactly what a plain query says is due: on a mixed data
set (a paused campaign, leads due in two campaigns, unsubscribed and suppressed leads, rows not
due, finished or exited, steps already in the ledger, rows leased by another run), in batches
of every size, on a real SQLite file and a real PostgreSQL schema."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from campaign.engine import LEASE, due_batches, enroll_new
from campaign.models import AnxietyType, LeadIn
from campaign.runtime import build_context
from campaign.store import email_hash, enrollments, leads, sends, suppressions
from campaign.store.tables import walk_leases

NY = ZoneInfo("America/New_York")
MONDAY_10 = datetime(2026, 3, 2, 10, 0, tzinfo=NY).astimezone(UTC)


def mixed_context(make_settings, database_url: str):
    ctx = build_context(make_settings(database_url=database_url))
    kinds = list(AnxietyType)
    ctx.store.upsert_leads(
        [
            LeadIn(email=f"m{i}@example.com", first_name="Mo", anxiety_type=kinds[i % 4], consent=True)
            for i in range(40)
        ],
        MONDAY_10,
    )
    enroll_new(ctx, MONDAY_10)
    store = ctx.store
    spring, autumn = (
        store.create_campaign(
            slug=slug, name=slug, audiences=["gad"], starts_at=None, sandbox=False, versions={}, now=MONDAY_10
        )
        for slug in ("spring", "autumn")
    )
    with store.engine.connect() as conn:
        first = list(conn.execute(sa.select(enrollments).order_by(enrollments.c.id)).mappings())
    # Leads due in two campaigns (spring), and rows of a campaign paused below (autumn).
    store.add_enrollments(
        [
            {
                "campaign_id": campaign["id"],
                "lead_id": row["lead_id"],
                "audience": row["audience"],
                "audience_version": row["audience_version"],
                "enrolled_at": MONDAY_10,
                "state": "active",
                "next_due_at": MONDAY_10 - timedelta(hours=i % 3),
            }
            for campaign, rows in ((spring, first[::3]), (autumn, first[1::4]))
            for i, row in enumerate(rows)
        ]
    )
    store.pause_campaigns([autumn["id"]], "paused for the test")
    ids = [row["id"] for row in first]
    with store.engine.begin() as conn:
        conn.execute(  # not due yet
            sa.update(enrollments)
            .where(enrollments.c.id.in_(ids[2::7]))
            .values(next_due_at=MONDAY_10 + timedelta(days=1))
        )
        conn.execute(
            sa.update(enrollments)
            .where(enrollments.c.id.in_(ids[3::9]))
            .values(state="finished", next_due_at=None)
        )
        conn.execute(  # steps already in the ledger
            sa.insert(sends),
            [
                {
                    "send_id": f"s{e}{k}",
                    "enrollment_id": e,
                    "step_key": k,
                    "status": "sent",
                    "claimed_at": MONDAY_10 - timedelta(days=7 if k == "welcome" else e % 3),
                }
                for e in ids[::5]
                for k in ("welcome", "day3")[: 1 + e % 2]
            ],
        )
        conn.execute(
            sa.update(leads)
            .where(leads.c.email.in_(["m4@example.com", "m9@example.com"]))
            .values(unsubscribed_at=MONDAY_10)
        )
    store.suppress("m6@example.com", "bounce", MONDAY_10)
    return ctx


def plainly_due(ctx, now: datetime, held_by_other: set[int]) -> list[tuple]:
    """What is due, by a plain query: active rows due at `now` in active campaigns; the leads
    with a row another run holds (`held_by_other`: ids), and their rows, left out."""
    campaign_ids = [c["id"] for c in ctx.store.active_campaigns(now)]
    with ctx.store.engine.connect() as conn:
        rows = conn.execute(
            sa.select(enrollments.c.id, enrollments.c.campaign_id, enrollments.c.lead_id, leads.c.email)
            .join(leads, leads.c.id == enrollments.c.lead_id)
            .where(
                enrollments.c.state == "active",
                enrollments.c.next_due_at <= now,
                enrollments.c.campaign_id.in_(campaign_ids),
            )
            .order_by(enrollments.c.id)
        ).all()
        keys: dict[int, set[str]] = {}
        this_tick: set[int] = set()  # a step claimed less than a lease ago: the next tick's
        claimed = sa.select(sends.c.enrollment_id, sends.c.step_key, sends.c.claimed_at)
        for e, k, claimed_at in conn.execute(claimed):
            keys.setdefault(e, set()).add(k)
            if claimed_at > now - LEASE:
                this_tick.add(e)
        suppressed = set(conn.execute(sa.select(suppressions.c.email_hash)).scalars())
        busy = set(
            conn.execute(
                sa.select(enrollments.c.lead_id).where(enrollments.c.id.in_(held_by_other))
            ).scalars()
        )
    return [
        (
            r.id,
            r.campaign_id,
            r.email,
            frozenset(keys.get(r.id, ())),
            email_hash(r.email, ctx.store.secret_key) in suppressed,
        )
        for r in rows
        if r.lead_id not in busy and r.id not in this_tick
    ]


def walked(ctx, now: datetime, size: int) -> list[tuple]:
    out = []
    for batch in due_batches(ctx, now, size):
        assert 0 < len(batch) <= size
        out.extend((d.enrollment_id, d.campaign_id, d.lead.email, d.sent_keys, d.suppressed) for d in batch)
    return out


@pytest.mark.parametrize("size", [1, 4, 7, 1000])
def test_the_walk_yields_what_a_plain_query_says_is_due(make_settings, database_url, size):
    ctx = mixed_context(make_settings, database_url)
    expected = plainly_due(ctx, MONDAY_10, set())
    assert len(expected) > 30 and any(s for *_, s in expected) and any(k for *_, k, _ in expected)
    assert len({c for _, c, *_ in expected}) == 2  # the paused campaign's rows are not due
    got = walked(ctx, MONDAY_10, size)
    assert got == expected
    unsubscribed = {d.lead.email for b in due_batches(ctx, MONDAY_10) for d in b if d.lead.unsubscribed_at}
    assert unsubscribed == {"m4@example.com", "m9@example.com"}
    with ctx.store.engine.connect() as conn:  # every lease let go
        assert (
            conn.execute(sa.select(enrollments.c.id).where(enrollments.c.leased_by.is_not(None))).all() == []
        )
        assert conn.execute(sa.select(walk_leases)).all() == []


@pytest.mark.parametrize("size", [3, 1000])
def test_the_walk_leaves_out_what_another_run_holds(make_settings, database_url, size):
    ctx = mixed_context(make_settings, database_url)
    campaign_ids = [c["id"] for c in ctx.store.active_campaigns(MONDAY_10)]
    held, walked_to = ctx.store.lease_due_enrollments(
        campaign_ids, MONDAY_10, 5, 4, "other-run", MONDAY_10 + LEASE
    )
    held_ids = {d.enrollment_id for d in held}
    # SQLite leases the rows; PostgreSQL the id range, every row in it (due or not).
    in_range = held_ids if ctx.store.dialect == "sqlite" else set(range(6, walked_to + 1))
    expected = plainly_due(ctx, MONDAY_10, in_range)
    assert held_ids and len(expected) < len(plainly_due(ctx, MONDAY_10, set())) - len(held_ids)
    assert walked(ctx, MONDAY_10, size) == expected
    # Past the other run's lease, everything due is walked again.
    assert walked(ctx, MONDAY_10 + LEASE, size) == plainly_due(ctx, MONDAY_10 + LEASE, set())


def test_the_walks_times_are_utc_whatever_the_sessions_time_zone(make_settings, database_url):
    # PostgreSQL's rows are read as the driver gives them (no per-value processing): in a
    # session whose zone is not UTC the times must still come back as UTCDateTime gives them.
    if database_url.startswith("postgresql"):
        database_url += "%20-ctimezone%3DAmerica/New_York"
    ctx = mixed_context(make_settings, database_url)
    if ctx.store.dialect == "postgresql":
        with ctx.store.engine.connect() as conn:
            assert conn.exec_driver_sql("SHOW TimeZone").scalar() == "America/New_York"
    batch = [d for b in due_batches(ctx, MONDAY_10) for d in b]
    times = [t for d in batch for t in (d.enrolled_at, d.lead.unsubscribed_at, d.lead.last_email_at) if t]
    assert {d.enrolled_at for d in batch} == {MONDAY_10} and MONDAY_10 in {
        d.lead.unsubscribed_at for d in batch
    }
    assert all(t.tzinfo is UTC for t in times) and len(times) > len(batch)
    with ctx.store.engine.connect() as conn:  # the session's own zone again after the walk's reads
        if ctx.store.dialect == "postgresql":
            assert conn.exec_driver_sql("SHOW TimeZone").scalar() == "America/New_York"


def test_a_row_in_another_zone_is_made_utc():
    from campaign.store.due_rows import TIMES, _pg_row

    eastern = datetime(2026, 3, 2, 10, 0, tzinfo=NY)
    row = [None] * 20
    row[TIMES[0]], row[TIMES[1]] = eastern, eastern
    made = _pg_row(tuple(row))
    assert made[TIMES[0]] == eastern and made[TIMES[0]].tzinfo is UTC and made[TIMES[2]] is None


def test_a_lead_without_a_kept_hash_is_still_found_suppressed(make_settings, database_url):
    ctx = mixed_context(make_settings, database_url)  # m6 is on the suppression list
    with ctx.store.engine.begin() as conn:  # leads from before 0014_enroll: no hash kept
        conn.execute(
            sa.update(leads)
            .where(leads.c.email.in_(["m6@example.com", "m7@example.com"]))
            .values(email_hash=None)
        )
    suppressed = {d.lead.email: d.suppressed for b in due_batches(ctx, MONDAY_10) for d in b}
    assert suppressed["m6@example.com"] is True and suppressed["m7@example.com"] is False
    assert sum(suppressed.values()) == 1
