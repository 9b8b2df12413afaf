"""The PostgreSQL walk reads a batch ahead (campaign.due_walk.range_walk): while the caller holds
a batch, the next one is leased and read. On a real PostgreSQL schema: the range read ahead is
leased (another run walks around it), a walk stopped early lets go of both, and a campaign
paused while the caller held a batch sends nothing more."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa
from conftest import postgres_schema
from test_workers import MONDAY_10 as MONDAY
from test_workers import enrolled_context, ranges_held

from campaign.engine import due_batches
from campaign.store import enrollments

SPRING = dict(slug="spring", name="Spring", audiences=["gad"], starts_at=None, sandbox=False, versions={})


@pytest.fixture
def ctx(make_settings, postgres_reason):
    if postgres_reason:
        pytest.skip(postgres_reason)
    with postgres_schema() as url:
        ctx = enrolled_context(make_settings, url, 12, batch_size=4)
        yield ctx
        ctx.store.close()


def read_ahead(ctx, batch) -> tuple[str, int, int]:
    """The walk's range after `batch`, once its second thread has leased it (5 s at most)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        after = [r for r in ranges_held(ctx) if r[1] > batch[-1].enrollment_id]
        if after:
            return after[0]
        time.sleep(0.01)
    raise AssertionError(f"no range read ahead of {batch[-1].enrollment_id}: {ranges_held(ctx)}")


def test_the_batch_read_ahead_is_leased_and_another_run_walks_around_it(ctx):
    walk = due_batches(ctx, MONDAY)
    first = next(walk)
    worker, from_id, to_id = read_ahead(ctx, first)
    held = [r for r in ranges_held(ctx) if r[0] == worker]
    assert len(held) == 2 and held[0][1] <= first[0].enrollment_id  # the caller's batch, and the next
    other = []
    for batch in due_batches(ctx, MONDAY):  # another run, as a tick: claims what it walks
        ctx.store.claim([(d.enrollment_id, "welcome") for d in batch], MONDAY, "sendgrid")
        other += [d.enrollment_id for d in batch]
    assert other and not set(other) & set(range(held[0][1], to_id + 1))
    rest = [d.enrollment_id for batch in walk for d in batch]  # the read ahead is this walk's
    assert rest[0] == from_id and not set(rest) & set(other)
    assert ranges_held(ctx) == []


def test_a_walk_stopped_early_lets_go_of_the_batch_read_ahead(ctx):
    walk = due_batches(ctx, MONDAY)
    first = next(walk)
    read_ahead(ctx, first)
    walk.close()
    assert ranges_held(ctx) == []
    again = [d.enrollment_id for batch in due_batches(ctx, MONDAY) for d in batch]
    assert len(again) == 12 and first[0].enrollment_id in again  # every row free again


def test_a_campaign_paused_while_the_caller_holds_a_batch_sends_nothing_more(ctx):
    store = ctx.store
    spring = store.create_campaign(**SPRING, now=MONDAY)
    with store.engine.connect() as conn:  # the same leads in a second campaign, after the first's
        first = list(conn.execute(sa.select(enrollments).order_by(enrollments.c.id)).mappings())
    store.add_enrollments(
        [
            {k: row[k] for k in ("lead_id", "audience", "audience_version", "state", "next_due_at")}
            | {"campaign_id": spring["id"], "enrolled_at": MONDAY}
            for row in first
        ]
    )
    evergreen = first[0]["campaign_id"]
    walk = due_batches(ctx, MONDAY)
    batch = next(walk)
    read_ahead(ctx, batch)  # the next batch is the first campaign's too, read while it was active
    assert {d.campaign_id for d in batch} == {evergreen}
    store.pause_campaigns([evergreen], "too many failures")
    rest = [d for batch in walk for d in batch]
    assert rest and {d.campaign_id for d in rest} == {spring["id"]} and len(rest) == 12
    assert ranges_held(ctx) == []
