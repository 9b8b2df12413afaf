"""The tick's walk of due enrollments: in id order, a batch at a time, leased on PostgreSQL.

Part of the tick (campaign.engine.run_tick sends each batch); the queries are in
campaign.store.enrollments. Every time decision takes `now`.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
from bisect import bisect_right
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from datetime import timedelta
from typing import TYPE_CHECKING, NamedTuple

from campaign.store import DueEnrollment
from campaign.store.walk_ranges import RangeAsk

if TYPE_CHECKING:
    from datetime import datetime

    from campaign.engine import Context
    from campaign.store import Store

# A due batch's lease: other tick runs skip its rows until the batch is done, or this long after
# `now` if its run died. Shorter than STALE_CLAIM: a dead run's unclaimed rows are walked again
# before its claims are reconciled. Longer than a batch takes (1,000 emails at ESP speed).
LEASE = timedelta(minutes=10)
SQLITE_ONE_WRITER = (
    "another tick run is walking this SQLite database at the same time: SQLite takes one "
    "writer at a time, so concurrent ticks wait on each other and add nothing. Run one tick at "
    "a time (the tick deployment's concurrency_limit: 1), or set CAMPAIGN_DATABASE_URL to "
    "PostgreSQL to scale out (README, 'Scaling out')."
)

log = logging.getLogger("campaign.engine")  # the tick's log


def due_batches(ctx: Context, now: datetime, size: int | None = None) -> Iterator[list[DueEnrollment]]:
    """Enrollments due at `now` in active campaigns, in id order, one batch (`size`, default
    CAMPAIGN_BATCH_SIZE) at a time.
    The active campaigns are read again before each batch: a campaign paused mid-tick (too
    many failures) sends nothing more.

    The walk first reads its plan, every `size`-th due id (Enrollments.due_bounds); each batch
    then reads the due rows after the last one walked up to the next bound, by primary key.

    On PostgreSQL each batch's id range is leased to this walk until the caller is done with
    it (or for LEASE at most, if it dies): concurrent tick runs walk disjoint ranges
    (Enrollments.lease_due_rows, table walk_leases), and the next batch is leased and read
    while the caller holds this one (range_walk). SQLite takes one writer at a time,
    so a second run adds nothing there: its walk leases no rows, only one (the first it walks,
    for the whole walk) to be seen by another run. A run that sees another's lease logs SQLITE_ONE_WRITER
    and leases its batches from then on, as on PostgreSQL. Either way the ledger's claim is
    the exactly-once guard: two runs that walk the same row claim its step once."""
    size = size or ctx.settings.batch_size
    if ctx.store.dialect == "sqlite":
        return sqlite_walk(ctx.store, now, size, worker_name())
    return range_walk(ctx.store, now, size, worker_name())


def sqlite_walk(store: Store, now: datetime, size: int, worker: str) -> Iterator[list[DueEnrollment]]:
    """SQLite's walk (one writer): leases only once it sees another run's lease.

    Until then it reads a batch ahead: while the caller holds batch n (claims, sends and settles
    it), a second thread reads batch n+1 (a WAL reader: the caller's writes do not wait on it,
    and the statement runs outside the GIL). A row read ahead may be stale only where the
    caller's batch wrote: its enrollments (never in the next batch: ids ascend) and its leads'
    last_email_at. So a batch read ahead that shares a lead with the caller's batch (a lead due
    in two campaigns) is read again after it; and, as range_walk does, it loses the rows of a
    campaign paused meanwhile. A run that sees another's lease drops the read ahead and leases."""
    leasing = marked = False
    after_id = 0
    bounds: list[int] | None = None
    ahead: _Ahead | None = None
    held_leads: set[int] = set()
    pool = ThreadPoolExecutor(1, thread_name_prefix="due-walk")

    def read(campaign_ids: list[int], after_id: int, upto: int) -> list[DueEnrollment]:
        # As a lease does: not a row with a step claimed in this tick (a resend).
        return store.due_enrollments(campaign_ids, now, after_id, size, upto=upto, claimed_after=now - LEASE)

    try:
        while campaign_ids := [c["id"] for c in store.active_campaigns(now)]:
            if not leasing and store.leased_by_others(now, worker):
                log.warning(SQLITE_ONE_WRITER)
                leasing = True
            if bounds is None:
                bounds = store.due_bounds(campaign_ids, now, size)
            at = bisect_right(bounds, after_id)
            if at == len(bounds):
                return
            if leasing:
                if ahead is not None:
                    wait([ahead.rows])  # read by a walk that leased nothing: dropped
                    ahead = None
                batch, walked_to = store.lease_due_enrollments(
                    campaign_ids, now, after_id, size, worker, now + LEASE, upto=bounds[at]
                )
            else:
                upto = bounds[at]
                batch = None
                if ahead is not None and (ahead.after_id, ahead.upto) == (after_id, upto):
                    batch, read_for = ahead.rows.result(), ahead.campaign_ids
                    started = not set(campaign_ids) <= set(read_for)  # a campaign started since
                    if started or any(due.lead.id in held_leads for due in batch):
                        batch = None  # or the caller's batch wrote to one of its leads: read again
                ahead = None
                if batch is None:
                    batch, read_for = read(campaign_ids, after_id, upto), campaign_ids
                walked_to = _walked_to(batch, size, upto)
                batch = _still_active(batch, read_for, campaign_ids)
                if batch and not marked:
                    store.hold_lease(batch[0].enrollment_id, worker, now + LEASE)
                    marked = True
            after_id = walked_to if walked_to is not None else bounds[at]
            if not leasing and (following := bisect_right(bounds, after_id)) < len(bounds):
                upto = bounds[following]
                ahead = _Ahead(pool.submit(read, campaign_ids, after_id, upto), campaign_ids, after_id, upto)
            held_leads = {due.lead.id for due in batch}
            try:
                if batch:
                    yield batch
            finally:  # also when the caller stops early or raises
                if leasing and batch:
                    store.release_leases([due.enrollment_id for due in batch], worker)
    finally:
        if ahead is not None:
            wait([ahead.rows])  # its error, if any, is not the walk's
        pool.shutdown()
        if marked:
            store.release_walk(worker)


class _Ahead(NamedTuple):
    """sqlite_walk's batch read ahead, and what it was read for."""

    rows: Future
    campaign_ids: list[int]
    after_id: int
    upto: int


def _still_active(batch: list[DueEnrollment], read_for: list[int], active: list[int]) -> list[DueEnrollment]:
    """A batch read for campaigns `read_for`, less the rows of a campaign paused since (not in
    `active`, the campaigns active now)."""
    if read_for == active:
        return batch
    now_active = set(active)
    return [due for due in batch if due.campaign_id in now_active]


def _walked_to(batch: list[DueEnrollment], size: int, upto: int) -> int:
    """How far a read of at most `size` rows up to id `upto` walked: its last row when it was
    full (more may follow before `upto`), else `upto`."""
    return batch[-1].enrollment_id if len(batch) == size else upto


def range_walk(store: Store, now: datetime, size: int, worker: str) -> Iterator[list[DueEnrollment]]:
    """PostgreSQL's walk: while the caller holds a batch (builds it, sends it), a second thread
    leases and reads the next, so the database's time hides behind the caller's. The walk then
    holds two ranges: the caller's batch and the one read ahead; each lease lets go of those
    before the caller's (done: the caller came back). A campaign paused while the caller held
    a batch has its rows taken out of the batch read ahead, and a batch read ahead that shares
    a lead with the caller's is read again (its range still leased), as sqlite_walk does.
    When the walk ends, however it ends, the read ahead is waited for and every range let go
    (release_walk)."""
    ahead: tuple[Future, RangeAsk] | None = None
    held_leads: set[int] = set()
    pool = ThreadPoolExecutor(1, thread_name_prefix="due-walk")
    try:
        if not (campaign_ids := [c["id"] for c in store.active_campaigns(now)]):
            return
        bounds = store.due_bounds(campaign_ids, now, size)
        with store.lease_connection() as conn:  # the second thread's

            def lease(
                after_id: int, campaign_ids: list[int], keep_from: int
            ) -> tuple[Future, RangeAsk] | None:
                if (at := bisect_right(bounds, after_id)) == len(bounds):
                    return None
                ask = RangeAsk(campaign_ids, now, after_id, size, worker, now + LEASE, bounds[at], keep_from)
                return pool.submit(store.lease_due_rows, ask, conn), ask

            try:
                ahead = lease(0, campaign_ids, 1)
                while ahead is not None:
                    leased, ask = ahead[0].result(), ahead[1]
                    walked_to = leased.walked_to if leased.walked_to is not None else ask.upto
                    # The next lease keeps this batch's range (from_id: after_id + 1).
                    ahead = lease(walked_to, campaign_ids, ask.after_id + 1)
                    batch = leased.batch()
                    batch = _still_active(batch, ask.campaign_ids, campaign_ids)
                    if any(due.lead.id in held_leads for due in batch):
                        # Read while the caller's batch wrote to some of these leads (a lead due
                        # in two campaigns: its last_email_at): read again, or it goes twice.
                        batch = store.enrollments_by_id([due.enrollment_id for due in batch])
                    held_leads = {due.lead.id for due in batch}
                    if batch:
                        yield batch
                    if not (campaign_ids := [c["id"] for c in store.active_campaigns(now)]):
                        return
            finally:  # also when the caller stops early or raises: the connection is free after
                if ahead is not None:
                    wait([ahead[0]])  # its lease, let go below (its error, if any, is not the walk's)
    finally:
        pool.shutdown()
        store.release_walk(worker)


def worker_name() -> str:
    """Who holds a lease: this machine, process and walk (no address, nothing secret)."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(4)}"
