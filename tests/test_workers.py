"""Concurrent tick runs take disjoint due batches: the lease on due enrollments (0013_workers),
on a real SQLite file and a real PostgreSQL schema. The end-to-end run of three tick processes
under a Prefect server is tests/test_workers_pg.py."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from campaign.engine import LEASE, SQLITE_ONE_WRITER, due_batches, enroll_new, run_tick, send_due_batch
from campaign.models import AnxietyType, LeadIn
from campaign.runtime import build_context
from campaign.store import enrollments
from campaign.store.tables import walk_leases

NY = ZoneInfo("America/New_York")
MONDAY_10 = datetime(2026, 3, 2, 10, 0, tzinfo=NY).astimezone(UTC)


def enrolled_context(make_settings, database_url: str, n: int, batch_size: int):
    ctx = build_context(make_settings(database_url=database_url, batch_size=batch_size))
    kinds = list(AnxietyType)
    ctx.store.upsert_leads(
        [
            LeadIn(email=f"w{i}@example.com", first_name="Wren", anxiety_type=kinds[i % 4], consent=True)
            for i in range(n)
        ],
        MONDAY_10,
    )
    enroll_new(ctx, MONDAY_10)
    return ctx


def leases(ctx) -> set[tuple]:
    """The leases held: (until, worker) of each leased row on SQLite, of each range in
    walk_leases on PostgreSQL (whose walk never writes the row columns)."""
    with ctx.store.engine.connect() as conn:
        rows = set(conn.execute(sa.select(enrollments.c.leased_until, enrollments.c.leased_by)).tuples())
        ranges = set(conn.execute(sa.select(walk_leases.c.leased_until, walk_leases.c.worker)).tuples())
    if ctx.store.dialect == "sqlite":
        assert not ranges
        return rows - {(None, None)}
    assert rows == {(None, None)}
    return ranges


def lease_rest(store, campaign_ids, after_id, worker) -> tuple[list, int]:
    """A run's leases from after_id to the end, as its walk takes them (walking past another
    run's range): (the rows it kept, the last id walked)."""
    kept = []
    while True:
        batch, walked_to = store.lease_due_enrollments(
            campaign_ids, MONDAY_10, after_id, 10, worker, MONDAY_10 + LEASE
        )
        if walked_to is None:
            return kept, after_id
        kept, after_id = kept + batch, walked_to


def test_two_walks_at_once_take_disjoint_batches_and_let_go_after(make_settings, database_url):
    ctx = enrolled_context(make_settings, database_url, 10, batch_size=3)
    first, second = due_batches(ctx, MONDAY_10), due_batches(ctx, MONDAY_10)
    seen: list[list[int]] = []
    for walk in (first, second, first, second, first, second):  # interleaved, as two runs would
        batch = next(walk, None)
        if batch is not None:
            seen.append([d.enrollment_id for d in batch])
    ids = [i for batch in seen for i in batch]
    if ctx.store.dialect == "sqlite":
        # SQLite leases nothing but the one row that marks a walk, until a walk sees another's
        # lease: the second walk's first batch is the first's again, but for that row (the
        # ledger's claim keeps each step once: the test below); then both lease: disjoint.
        assert set(seen[1]) < set(seen[0]) and set(ids) == set(range(1, 11)), seen
        rest = [i for batch in seen[2:] for i in batch]
        assert sorted(rest) == sorted(set(rest)) and not set(rest) & set(seen[0]), seen
    else:
        assert sorted(ids) == sorted(set(ids)) and len(ids) == 10, seen
    assert all(batch == sorted(batch) for batch in seen)
    for walk in (first, second):
        walk.close()
    assert leases(ctx) == set()  # every lease let go


def test_two_sqlite_ticks_at_once_send_each_step_once(make_settings, tmp_path, caplog):
    ctx = enrolled_context(make_settings, f"sqlite:///{tmp_path / 'two.db'}", 10, batch_size=3)
    first, second = due_batches(ctx, MONDAY_10), due_batches(ctx, MONDAY_10)
    sent = 0
    with caplog.at_level(logging.WARNING, logger="campaign.engine"):
        for walk in (first, second) * 5:  # interleaved, as two runs would
            if (batch := next(walk, None)) is not None:
                sent += sum(send_due_batch(ctx, batch, MONDAY_10).sent.values())
    assert SQLITE_ONE_WRITER in caplog.text  # the second run names the first
    ledger = ctx.store.ledger()
    assert sent == 10 and len(ledger) == 10
    assert len({(r["lead_id"], r["step_key"]) for r in ledger}) == 10
    assert leases(ctx) == set()


def test_a_run_behind_does_not_walk_again_what_another_run_sent_in_this_tick(make_settings, database_url):
    ctx = enrolled_context(make_settings, database_url, 4, batch_size=10)
    campaign_ids = [c["id"] for c in ctx.store.active_campaigns(MONDAY_10)]
    done, _ = ctx.store.lease_due_enrollments(campaign_ids, MONDAY_10, 0, 2, "run-a", MONDAY_10 + LEASE)
    ctx.store.claim([(d.enrollment_id, "welcome") for d in done], MONDAY_10, "sendgrid")
    ctx.store.release_leases([d.enrollment_id for d in done], "run-a")
    # Still due (the next tick re-plans them), but not for a run of this tick that is behind.
    assert len(ctx.store.due_enrollments(campaign_ids, MONDAY_10, 0, 10)) == 4
    rest, _ = ctx.store.lease_due_enrollments(campaign_ids, MONDAY_10, 0, 10, "run-b", MONDAY_10 + LEASE)
    assert {d.enrollment_id for d in rest}.isdisjoint({d.enrollment_id for d in done}) and len(rest) == 2
    later, _ = ctx.store.lease_due_enrollments(
        campaign_ids, MONDAY_10 + timedelta(minutes=15), 0, 10, "next-tick", MONDAY_10 + timedelta(minutes=25)
    )
    assert len(later) == 4


def test_the_batch_reads_the_lead_columns_a_step_needs(make_settings, database_url):
    ctx = enrolled_context(make_settings, database_url, 2, batch_size=10)
    ctx.store.suppress("w1@example.com", "bounce", MONDAY_10)
    [batch] = list(due_batches(ctx, MONDAY_10))
    # Enrollment goes audience by audience (set-based), so the walk's order is not the leads'.
    first, second = sorted(batch, key=lambda due: due.lead.email)
    assert (first.lead.email, first.lead.first_name, first.lead.anxiety_type) == (
        "w0@example.com",
        "Wren",
        "gad",
    )
    assert (first.suppressed, second.suppressed) == (False, True)
    assert first.lead.consent and not first.lead.booked and first.lead.timezone == "America/New_York"
    assert not hasattr(first.lead, "utm_source")  # only what the planner, exit check and render read


def test_a_dead_runs_lease_keeps_its_rows_until_it_expires(make_settings, database_url):
    ctx = enrolled_context(make_settings, database_url, 4, batch_size=10)
    campaign_ids = [c["id"] for c in ctx.store.active_campaigns(MONDAY_10)]
    held, walked_to = ctx.store.lease_due_enrollments(
        campaign_ids, MONDAY_10, 0, 2, "dead-run", MONDAY_10 + LEASE
    )
    assert len(held) == 2 and walked_to == held[-1].enrollment_id
    # The dead run never lets go: a tick now sends to the other two only.
    report = run_tick(ctx, MONDAY_10 + timedelta(minutes=1))
    assert sum(report.sent.values()) == 2
    assert {d.lead.id for d in held}.isdisjoint({r["lead_id"] for r in ctx.store.ledger()})
    # Past the lease, the next tick walks them.
    later = run_tick(ctx, MONDAY_10 + LEASE + timedelta(minutes=1))
    assert sum(later.sent.values()) == 2 and len(ctx.store.ledger()) == 4


def test_a_lead_due_in_two_campaigns_goes_to_one_run_at_a_time(make_settings, database_url):
    ctx = enrolled_context(make_settings, database_url, 1, batch_size=10)
    other = ctx.store.create_campaign(
        slug="spring",
        name="Spring",
        audiences=["gad"],
        starts_at=None,
        sandbox=False,
        versions={},
        now=MONDAY_10,
    )
    [evergreen_row] = ctx.store.due_enrollments([1, other["id"]], MONDAY_10, 0, 10)
    ctx.store.add_enrollments(
        [
            {
                "campaign_id": other["id"],
                "lead_id": evergreen_row.lead.id,
                "audience": "gad",
                "audience_version": evergreen_row.audience_version,
                "enrolled_at": MONDAY_10,
                "state": "active",
                "next_due_at": MONDAY_10,
            }
        ]
    )
    ids = [evergreen_row.campaign_id, other["id"]]
    mine, _ = ctx.store.lease_due_enrollments(ids, MONDAY_10, 0, 1, "run-a", MONDAY_10 + LEASE)
    theirs, walked_to = lease_rest(ctx.store, ids, 0, "run-b")
    assert [d.lead.id for d in mine] == [evergreen_row.lead.id]
    assert theirs == [] and walked_to > mine[0].enrollment_id  # let go, and walked past
    # run-b let go of its row at once on SQLite; on PostgreSQL it holds its range to the end
    # of its batch, without the row.
    held = {(MONDAY_10 + LEASE, "run-a")} | (
        {(MONDAY_10 + LEASE, "run-b")} if ctx.store.dialect != "sqlite" else set()
    )
    assert leases(ctx) == held


def test_concurrent_ticks_on_sqlite_are_named_as_such(make_settings, tmp_path, caplog):
    ctx = enrolled_context(make_settings, f"sqlite:///{tmp_path / 'one.db'}", 3, batch_size=10)
    campaign_ids = [c["id"] for c in ctx.store.active_campaigns(MONDAY_10)]
    ctx.store.lease_due_enrollments(campaign_ids, MONDAY_10, 0, 1, "other-run", MONDAY_10 + LEASE)
    with caplog.at_level(logging.WARNING, logger="campaign.engine"):
        [batch] = list(due_batches(ctx, MONDAY_10))
    assert len(batch) == 2
    assert SQLITE_ONE_WRITER in caplog.text and "PostgreSQL" in caplog.text
    caplog.clear()
    ctx.store.release_leases([1, 2, 3], "other-run")
    with caplog.at_level(logging.WARNING, logger="campaign.engine"):
        list(due_batches(ctx, MONDAY_10))
    assert SQLITE_ONE_WRITER not in caplog.text


def test_migration_0012_matches_the_declared_schema_and_goes_down_and_up(store, database_url):
    from alembic import command
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from campaign.store import alembic_config, metadata

    def diffs() -> list:
        with store.engine.connect() as conn:
            found = compare_metadata(MigrationContext.configure(conn), metadata)
        return [d for d in found if "enrollments" in repr(d)]

    def columns() -> set[str]:
        return {c["name"] for c in sa.inspect(store.engine).get_columns("enrollments")}

    assert {"leased_until", "leased_by"} <= columns() and diffs() == []
    cfg = alembic_config(database_url)
    before = ScriptDirectory.from_config(cfg).get_revision("0013_workers").down_revision
    with store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, before)
    assert not {"leased_until", "leased_by"} & columns()
    store.migrate()
    assert {"leased_until", "leased_by"} <= columns() and diffs() == []


def test_migration_0017_walk_leases_matches_the_declared_schema_and_goes_down_and_up(store, database_url):
    from alembic import command
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from campaign.store import alembic_config, metadata

    def tables() -> set[str]:
        return set(sa.inspect(store.engine).get_table_names())

    def diffs() -> list:
        with store.engine.connect() as conn:
            return [
                d
                for d in compare_metadata(MigrationContext.configure(conn), metadata)
                if "walk_leases" in repr(d)
            ]

    assert "walk_leases" in tables() and diffs() == []
    cfg = alembic_config(database_url)
    with store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0016_overview")
    assert "walk_leases" not in tables()
    store.migrate()
    assert "walk_leases" in tables() and diffs() == []


def test_a_walk_holds_two_ranges_at_most_and_walks_around_another_runs(make_settings, database_url):
    ctx, campaign_ids, due = postgresql_due(
        make_settings,
        database_url,
        24,
        4,
        "id ranges are PostgreSQL's lease (SQLite leases rows, and only with another run)",
    )
    # Another run holds a range in the middle that no batch of the walk's plan starts at.
    held, other_to = ctx.store.lease_due_enrollments(
        campaign_ids, MONDAY_10, due[9], 3, "other-run", MONDAY_10 + LEASE
    )
    assert [d.enrollment_id for d in held] == due[10:13] and other_to == due[12]
    walked = []
    for batch in due_batches(ctx, MONDAY_10):
        ranges = ranges_held(ctx)
        # The other run's range, and this walk's: the batch's, and the one read ahead (or,
        # until the read ahead has its lease, the batch before).
        mine = [r for r in ranges if r[0] != "other-run"]
        assert len(ranges) - len(mine) == 1 and 1 <= len(mine) <= 2 and len({r[0] for r in mine}) == 1
        assert any(all(f <= d.enrollment_id <= t for d in batch) for _, f, t in mine)
        walked += [d.enrollment_id for d in batch]
    assert walked == due[:10] + due[13:]  # everything but the other run's range, in order
    assert ranges_held(ctx) == [("other-run", due[9] + 1, due[12])]


def postgresql_due(make_settings, database_url, leads: int, batch_size: int, why_not_sqlite: str):
    """A context of `leads` enrolled leads on PostgreSQL (the test skips on SQLite, saying why),
    its active campaigns' ids and the ids of every due enrollment, in order."""
    ctx = enrolled_context(make_settings, database_url, leads, batch_size=batch_size)
    if ctx.store.dialect == "sqlite":
        pytest.skip(why_not_sqlite)
    campaign_ids = [c["id"] for c in ctx.store.active_campaigns(MONDAY_10)]
    due = [d.enrollment_id for d in ctx.store.due_enrollments(campaign_ids, MONDAY_10, 0, 10 * leads)]
    return ctx, campaign_ids, due


def ranges_held(ctx) -> list[tuple]:
    with ctx.store.engine.connect() as conn:
        query = sa.select(walk_leases.c.worker, walk_leases.c.from_id, walk_leases.c.to_id)
        return list(conn.execute(query.order_by(walk_leases.c.from_id)).tuples())


def test_many_walks_at_once_on_postgresql_walk_each_due_row_once(make_settings, database_url):
    ctx, _, due = postgresql_due(
        make_settings, database_url, 400, 5, "concurrent walks are for PostgreSQL (SQLite is one writer)"
    )
    go = threading.Barrier(6)

    def walk() -> list[int]:
        go.wait()
        ids = []
        for batch in due_batches(ctx, MONDAY_10, size=int(7 + threading.get_ident() % 5)):
            ids += [d.enrollment_id for d in batch]
            # As a tick does: claim the batch's step (a run that starts later skips a row
            # claimed in this tick), then its sends, while the others take leases.
            ctx.store.claim([(d.enrollment_id, "welcome") for d in batch], MONDAY_10, "sendgrid")
            time.sleep(0.001)
        return ids

    with ThreadPoolExecutor(6) as pool:
        walks = list(pool.map(lambda _: walk(), range(6)))
    every = [i for ids in walks for i in ids]
    # One lead a row here: no row let go for its lead. Each due row walked by one run, once.
    assert sorted(every) == due and sum(1 for ids in walks if ids) > 1
    assert ranges_held(ctx) == []
