"""PostgreSQL's lease of a due batch (Enrollments.lease_due_enrollments, lease_due_rows): an id
range in walk_leases, taken and read in one round trip to the server (psycopg's pipeline mode).
The walk that asks for them is campaign.due_walk."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from functools import lru_cache
from typing import TYPE_CHECKING, NamedTuple

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from campaign.gc_pause import gc_paused
from campaign.store.due_rows import DueEnrollment, DueRows, build_due, due_rows, due_rows_query
from campaign.store.tables import enrollments, sends, walk_leases

if TYPE_CHECKING:
    from campaign.store.enrollments import Enrollments


class LeasedRows(NamedTuple):
    """A leased range's due rows as read, before they are built (`batch`)."""

    rows: DueRows
    busy: set[int]  # leads with a row in another run's live range: let go
    walked_to: int | None  # the highest id walked; None when none is left

    def batch(self) -> list[DueEnrollment]:
        built = build_due(self.rows)
        return [due for due in built if due.lead.id not in self.busy] if self.busy else built


class RangeAsk(NamedTuple):
    """What a lease asks for: the ids (after_id, upto] (upto None: the limit-th due id) of the
    rows of `campaign_ids` due at `now`, `limit` rows at most, for `worker` until `until`; the
    worker's ranges that start before `keep_from` are let go (its batches done)."""

    campaign_ids: list[int]
    now: datetime
    after_id: int
    limit: int
    worker: str
    until: datetime
    upto: int | None
    keep_from: int


def lease_range(part: Enrollments, ask: RangeAsk) -> tuple[list[DueEnrollment], int | None]:
    """PostgreSQL's lease_due_enrollments: lease_rows, built."""
    leased = lease_rows(part, ask)
    return leased.batch(), leased.walked_to


# The lease, one statement (run under _LOCK): the worker's ranges that start before keep_from
# (batches done: a walk holds the batch its caller has and, reading ahead, the next) and
# expired ranges (a dead run's) go; the other runs' live ranges are read (the snapshot before
# the DELETE: none of what it deletes); the first of them in (after_id, upto] decides. If it
# holds from_id (= after_id + 1), nothing is taken and the walk goes past it (its to_id);
# else from_id up to just before it (or upto) is inserted. Returns (the lease's to_id or
# NULL, that range's to_id or NULL, the other runs' live ranges).
_TAKE = """
WITH gone AS (
    DELETE FROM walk_leases
    WHERE (worker = %(worker)s AND from_id < %(keep_from)s) OR leased_until <= %(now)s
), others AS (
    SELECT from_id, to_id FROM walk_leases WHERE worker <> %(worker)s AND leased_until > %(now)s
), nearest AS (
    SELECT from_id, to_id FROM others
    WHERE to_id > %(after_id)s AND from_id <= %(upto)s ORDER BY from_id LIMIT 1
), taken AS (
    INSERT INTO walk_leases (worker, from_id, to_id, leased_until)
    SELECT %(worker)s, %(from_id)s, coalesce((SELECT from_id - 1 FROM nearest), %(upto)s), %(until)s
    WHERE NOT EXISTS (SELECT FROM nearest WHERE from_id <= %(from_id)s)
    RETURNING to_id
)
SELECT (SELECT to_id FROM taken), (SELECT to_id FROM nearest),
    ARRAY(SELECT ARRAY[from_id, to_id] FROM others ORDER BY from_id)
"""
# Only lease takers take this lock (SHARE ROW EXCLUSIVE conflicts with itself, not with
# readers): two runs never see the same free range, and of two runs the later sees the other's
# range. A statement after it has a snapshot from after the lock was granted.
_LOCK = "LOCK TABLE walk_leases IN SHARE ROW EXCLUSIVE MODE"


def lease_rows(part: Enrollments, ask: RangeAsk, conn: sa.Connection | None = None) -> LeasedRows:
    """Lease ids (after_id, upto] as one row of walk_leases (_TAKE), short of any live range of
    another run, then read their due rows. Rows with a step claimed in this tick (less than a
    lease ago) are left out: a run that fell behind (a hung request) must not walk again what
    another run did; the next tick re-plans them.

    Two transactions sent at once (psycopg's pipeline: one round trip, where each statement
    would wait for the server in turn): the lease, committed without waiting for the WAL flush
    (a lease is a hint between runs; a crash that loses the last leases loses nothing a run
    needs), then the read, in a snapshot after that commit and without the lock (other runs
    take their leases meanwhile); its range is the lease's row, found by worker and from_id.
    `conn`: a lease_connection (a new one when not given)."""
    campaign_ids, now, after_id, limit, worker, until, upto, keep_from = ask
    if upto is None:  # no plan: up to the limit-th due id
        with part.engine.connect() as planning:
            due = part._due_ids(campaign_ids, now, after_id, limit).subquery()
            upto = planning.execute(sa.select(sa.func.max(due.c.id))).scalar()
        if upto is None:
            return LeasedRows(DueRows([], set()), set(), None)
    if conn is None:
        with lease_connection(part.engine) as conn:
            return lease_rows(part, ask._replace(upto=upto), conn)
    take = {"worker": worker, "now": now, "keep_from": keep_from, "after_id": after_id, "upto": upto}
    take |= {"from_id": after_id + 1, "until": until}
    sql, fixed = range_read(part.engine.dialect, limit)
    read = {**fixed, **take, "campaign_ids": campaign_ids, "claimed_after": now - (until - now)}
    pg = conn.connection.driver_connection
    run, lease, rows = pg.cursor(), pg.cursor(), pg.cursor()
    try:
        with gc_paused():
            with pg.pipeline():
                for statement in ("BEGIN", "SET LOCAL synchronous_commit = off", _LOCK):
                    run.execute(statement)
                lease.execute(_TAKE, take)
                run.execute("COMMIT")
                rows.execute(sql, read, binary=True)  # less to format and parse than text
            to_id, other_to, others = lease.fetchone()
            found = rows.fetchall()
    except BaseException:
        if pg.info.transaction_status.name != "IDLE":  # (psycopg is PostgreSQL's extra: not imported)
            pg.rollback()  # the connection goes on clean
        raise
    if to_id is None:  # another run holds the ids after after_id: walk past its range
        return LeasedRows(DueRows([], set()), set(), other_to)
    fetched = due_rows(conn, part.hash, found)
    busy = busy_leads(conn, others) if found else set()
    return LeasedRows(fetched, busy, found[-1][0] if len(found) == limit else to_id)


@contextmanager
def lease_connection(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A connection for lease_rows, for one call or a whole walk: in autocommit (lease_rows
    begins and commits the lease itself; the read is a statement of its own, in a snapshot
    after that commit) and in the time zone 'UTC', for which psycopg gives times in
    datetime.UTC itself (no conversion a row). For the session, not a transaction: in a
    pipeline the results are read after all of it arrived, a SET LOCAL's end included. The
    session's own zone again before it goes back to the pool."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("SET TimeZone = 'UTC'")
        try:
            yield conn
        finally:
            try:
                conn.exec_driver_sql("RESET TimeZone")
            except sa.exc.DBAPIError:  # a broken connection: not back to the pool
                conn.invalidate()


@lru_cache(maxsize=16)
def range_read(dialect: sa.Dialect, limit: int) -> tuple[str, dict]:
    """The due rows of a leased range as SQL for the driver, and its fixed parameters, made
    once (each batch would spend ~0.7 ms of Python on the construct). Parameters: now,
    campaign_ids, worker and from_id (the lease's row: its to_id ends the range), after_id and
    claimed_after (a step claimed since then: done in this tick by another run)."""
    col = enrollments.c
    lease_to = (
        sa.select(sa.func.max(walk_leases.c.to_id))
        .where(
            walk_leases.c.worker == sa.bindparam("worker"), walk_leases.c.from_id == sa.bindparam("from_id")
        )
        .scalar_subquery()
    )
    where = sa.and_(
        col.state == "active",
        col.next_due_at <= sa.bindparam("now"),
        col.campaign_id == sa.any_(sa.bindparam("campaign_ids", type_=postgresql.ARRAY(sa.Integer))),
        col.id > sa.bindparam("after_id"),
        col.id <= lease_to,
        ~sa.exists().where(
            sends.c.enrollment_id == col.id, sends.c.claimed_at > sa.bindparam("claimed_after")
        ),
    )
    compiled = due_rows_query("postgresql", where).limit(limit).compile(dialect=dialect)
    return compiled.string, compiled.params


def busy_leads(conn, others: list[list[int]]) -> set[int]:
    """The leads with a row in another run's live range (any row: the other run may be sending
    to it). Nothing to read when no other run holds a range: the one-run case."""
    if not others:
        return set()
    held = sa.or_(*(enrollments.c.id.between(f, t) for f, t in others))
    return set(conn.execute(sa.select(enrollments.c.lead_id).where(held)).scalars())
