"""The walks read a batch ahead (campaign.due_walk: sqlite_walk, and PostgreSQL's range_walk):
while the caller holds a batch, a second thread reads the next. A lead due in two campaigns
whose rows fall in two batches still gets one email a tick: the batch read ahead is read again
after the caller's batch wrote to that lead."""

from __future__ import annotations

import threading
import time

import sqlalchemy as sa
from test_walk_read_ahead import SPRING
from test_workers import MONDAY_10 as MONDAY
from test_workers import enrolled_context

from campaign.engine import due_batches, run_tick
from campaign.store import enrollments, sends


def counting_reads(store) -> list[str]:
    """The thread of each due_enrollments call, as they happen (the store's own method)."""
    threads: list[str] = []
    read = store.due_enrollments

    def counted(*args, **kwargs):
        threads.append(threading.current_thread().name)
        return read(*args, **kwargs)

    store.due_enrollments = counted
    return threads


def test_the_next_batch_is_read_while_the_caller_holds_one(make_settings):
    ctx = enrolled_context(make_settings, make_settings().database_url, 12, batch_size=4)
    threads = counting_reads(ctx.store)
    walk = due_batches(ctx, MONDAY)
    first = next(walk)
    deadline = time.monotonic() + 5
    while len(threads) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(threads) == 2, threads  # the caller's batch, and the next read ahead
    assert threads[1] != threading.current_thread().name
    rest = [d.enrollment_id for batch in walk for d in batch]
    walked = [d.enrollment_id for d in first] + rest
    assert len(walked) == 12 == len(set(walked)) and walked == sorted(walked)
    ctx.store.close()


def test_a_lead_due_in_two_campaigns_across_batches_gets_one_email(make_settings, database_url):
    """On both walks: PostgreSQL's range_walk reads ahead too (and sent twice before it read again)."""
    ctx = enrolled_context(make_settings, database_url, 4, batch_size=4)
    store = ctx.store
    spring = store.create_campaign(**SPRING, now=MONDAY)
    with store.engine.connect() as conn:  # the same leads in a second campaign: the next batch
        first = list(conn.execute(sa.select(enrollments).order_by(enrollments.c.id)).mappings())
    store.add_enrollments(
        [
            {k: row[k] for k in ("lead_id", "audience", "audience_version", "state", "next_due_at")}
            | {"campaign_id": spring["id"], "enrolled_at": MONDAY}
            for row in first
        ]
    )
    report = run_tick(ctx, MONDAY)
    with store.engine.connect() as conn:
        per_lead = conn.execute(
            sa.select(enrollments.c.lead_id, sa.func.count())
            .select_from(sends.join(enrollments, enrollments.c.id == sends.c.enrollment_id))
            .group_by(enrollments.c.lead_id)
        ).all()
    assert len(per_lead) == 4 and {n for _, n in per_lead} == {1}, per_lead
    assert sum(report.sent.values()) == 4
    store.close()
