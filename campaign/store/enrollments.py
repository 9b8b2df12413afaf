"""Enrollments: a lead in one campaign's audience sequence, and when it is next due for a look."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from functools import lru_cache

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.sql import operators
from sqlalchemy.sql.expression import UnaryExpression

from campaign.store.base import StorePart
from campaign.store.due_rows import DueEnrollment, DueLead, due_rows_query, id_among, id_parts, read_due
from campaign.store.tables import enrollments, sends, walk_leases
from campaign.store.walk_ranges import LeasedRows, RangeAsk, lease_connection, lease_range, lease_rows

__all__ = ["DueEnrollment", "DueLead", "Enrollments", "LeasedRows", "RangeAsk"]


class Enrollments(StorePart):
    def add_enrollments(self, rows: list[dict]) -> int:
        if not rows:
            return 0
        # RETURNING counts what was inserted: psycopg reports rowcount -1 for ON CONFLICT inserts.
        stmt = (
            self.insert(enrollments)
            .values(rows)
            .on_conflict_do_nothing(index_elements=["campaign_id", "lead_id"])
            .returning(enrollments.c.id)
        )
        with self.engine.begin() as conn:
            return len(conn.execute(stmt).all())

    def enrolled_audiences(self, lead_ids: list[int]) -> dict[int, set[str]]:
        """Every audience each lead is or was in, in any campaign: one sequence's emails never
        go to a lead twice, even through two campaigns."""
        found: dict[int, set[str]] = {i: set() for i in lead_ids}
        if lead_ids:
            with self.engine.connect() as conn:
                for lead_id, audience in conn.execute(
                    sa.select(enrollments.c.lead_id, enrollments.c.audience).where(
                        enrollments.c.lead_id.in_(lead_ids)
                    )
                ):
                    found[lead_id].add(audience)
        return found

    def refresh_sequence_version(self, audience: str, version: str, now: datetime) -> int:
        """A live edit of an audience's sequence: its active enrollments become due for a fresh
        look now (the planner then sends or re-dates each), and take the new version."""
        with self.engine.begin() as conn:
            return conn.execute(
                sa.update(enrollments)
                .where(
                    enrollments.c.audience == audience,
                    enrollments.c.state == "active",
                    enrollments.c.audience_version != version,
                )
                .values(audience_version=version, next_due_at=now)
            ).rowcount

    def due_bounds(self, campaign_ids: list[int], now: datetime, size: int) -> list[int]:
        """The walk's plan: every `size`-th id of the enrollments due at `now` and the last one,
        in id order (one pass over the due index). A batch then reads the ids after the previous
        batch up to the next bound, by primary key: each batch reads its own rows, where
        `ORDER BY id LIMIT n` over the due index sorted every due row again for each batch."""
        if not campaign_ids:
            return []
        due = self._due_ids(campaign_ids, now, 0, None).add_columns(
            sa.func.row_number().over(order_by=enrollments.c.id).label("n"),
            sa.func.count().over().label("total"),
        )
        sub = due.subquery()
        query = sa.select(sub.c.id).where((sub.c.n % size == 0) | (sub.c.n == sub.c.total)).order_by(sub.c.id)
        with self.engine.connect() as conn:
            return list(conn.execute(query).scalars())

    def due_enrollments(
        self,
        campaign_ids: list[int],
        now: datetime,
        after_id: int,
        limit: int,
        upto: int | None = None,
        claimed_after: datetime | None = None,
    ) -> list[DueEnrollment]:
        """The next `limit` due enrollments after `after_id` (up to id `upto`; without a step
        claimed after `claimed_after`), read without a lease (one reader): one statement, the
        rows with their sent step keys and suppression."""
        due = self._due_ids(campaign_ids, now, after_id, limit, upto).whereclause
        if claimed_after is not None:
            due = sa.and_(due, self._none_claimed_after(claimed_after))
        with self.engine.connect() as conn:
            return read_due(conn, self.hash, due_rows_query(self.dialect, due).limit(limit))

    def lease_due_enrollments(
        self,
        campaign_ids: list[int],
        now: datetime,
        after_id: int,
        limit: int,
        worker: str,
        until: datetime,
        upto: int | None = None,
    ) -> tuple[list[DueEnrollment], int | None]:
        """Lease the next `limit` due enrollments after `after_id` (up to id `upto`) that no
        other tick run holds, and read them by key. Returns (batch, the highest id walked; None
        when none is left).

        A lease, not a row lock held through the batch: the batch's HTTP sends take seconds,
        and a run that dies mid-batch (kill -9, a lost machine) leaves a lease that expires at
        `until` (the ledger's claims, reconciled after STALE_CLAIM, still guard what it sent),
        where a lock held open would tie a connection to every send and die only with the
        session. On PostgreSQL the lease is one id range in walk_leases (walk_ranges); on
        SQLite, whose one writer at a time makes it atomic, two columns of each row.

        A lead due in two campaigns must not get two emails at once from two runs: a row whose
        lead has another row held by another run is let go (both runs may let go; never both
        keep it), and is due at the next tick."""
        if self.dialect == "postgresql":
            return lease_range(
                self, RangeAsk(campaign_ids, now, after_id, limit, worker, until, upto, after_id + 1)
            )
        pick = self._due_ids(campaign_ids, now, after_id, limit, upto).where(
            sa.or_(
                enrollments.c.leased_until.is_(None),
                enrollments.c.leased_until <= now,
                enrollments.c.leased_by == worker,
            ),
            # Done in this tick by another run (a step claimed less than a lease ago): a run
            # that fell behind (a hung request) must not walk it again; the next tick re-plans it.
            self._none_claimed_after(now - (until - now)),
        )
        lease = (
            sa.update(enrollments)
            .where(enrollments.c.id.in_(pick.scalar_subquery()))
            .values(leased_until=until, leased_by=worker)
            .returning(enrollments.c.id)
        )
        with self._leasing() as conn:
            leased = sorted(conn.execute(lease).scalars())
        if not leased:
            return [], None
        # A new transaction, after the lease is committed: of two runs that leased one lead's
        # rows, the later read always sees the other's lease. The rows and that check in one
        # statement (`busy`: the lead has a row another run holds, found by lead).
        other = enrollments.alias("other")
        busy = (
            sa.exists()
            .where(
                other.c.lead_id == enrollments.c.lead_id,
                sa.func.coalesce(other.c.leased_until, now) > now,
                other.c.leased_by != worker,
            )
            .label("busy")
        )
        with self._leasing() as conn:
            batch, let_go = [], []
            for part in id_parts(self.dialect, leased):
                query = due_rows_query(self.dialect, id_among(self.dialect, part)).add_columns(busy)
                for due, is_busy in read_due(conn, self.hash, query, extra=1):
                    if is_busy:
                        let_go.append(due.enrollment_id)
                    else:
                        batch.append(due)
            if let_go:
                self._release(conn, let_go, worker)
        return batch, leased[-1]

    def lease_due_rows(self, ask: RangeAsk, conn: sa.Connection | None = None) -> LeasedRows:
        """PostgreSQL: lease_due_enrollments's database part (LeasedRows.batch builds it), for a
        walk that reads a batch ahead: its lease keeps the walk's range from `ask.keep_from`
        on (the batch its caller holds). `conn`: the walk's lease_connection."""
        return lease_rows(self, ask, conn)

    def lease_connection(self) -> AbstractContextManager[sa.Connection]:
        """PostgreSQL: a connection for a walk's lease_due_rows (walk_ranges.lease_connection)."""
        return lease_connection(self.engine)

    def release_leases(self, enrollment_ids: list[int], worker: str) -> None:
        """The batch is done: its rows are free for any run again (only this run's leases; on
        PostgreSQL all its ranges, whatever ids are given: a walk's next lease lets go of the
        ranges before its caller's batch in the same transaction, RangeAsk.keep_from)."""
        if self.dialect == "postgresql":
            with self._leasing() as conn:
                conn.execute(sa.delete(walk_leases).where(walk_leases.c.worker == worker))
        elif enrollment_ids:
            with self._leasing() as conn:
                self._release(conn, enrollment_ids, worker)

    def release_walk(self, worker: str) -> None:
        """Every lease this run holds, let go (on SQLite, where ix_enrollments_leased holds
        the leased rows only: a SQLite walk's one marked row)."""
        if self.dialect == "postgresql":
            self.release_leases([], worker)
            return
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(enrollments)
                .where(enrollments.c.leased_until.is_not(None), enrollments.c.leased_by == worker)
                .values(leased_until=None, leased_by=None)
            )

    def hold_lease(self, enrollment_id: int, worker: str, until: datetime) -> None:
        """Lease one row: a SQLite walk, which leases nothing else, marks that it is walking
        (another run then sees it in leased_by_others)."""
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(enrollments)
                .where(enrollments.c.id == enrollment_id)
                .values(leased_until=until, leased_by=worker)
            )

    def leased_by_others(self, now: datetime, worker: str) -> bool:
        """Whether another tick run holds a live lease on a due enrollment (a concurrent tick)."""
        # ix_enrollments_leased holds only leased rows: a few batches, whatever the table's size.
        query = sa.select(enrollments.c.id).where(
            enrollments.c.leased_until > now,
            enrollments.c.leased_by != worker,
        )
        with self.engine.connect() as conn:
            return conn.execute(query.limit(1)).first() is not None

    def enrollments_by_id(self, enrollment_ids: list[int]) -> list[DueEnrollment]:
        """The same view as due_enrollments for given enrollments, whatever their state or time."""
        found = []
        with self.engine.connect() as conn:
            for part in id_parts(self.dialect, sorted(enrollment_ids)):
                found.extend(
                    read_due(conn, self.hash, due_rows_query(self.dialect, id_among(self.dialect, part)))
                )
        return found

    @contextmanager
    def _leasing(self) -> Iterator[sa.Connection]:
        """A transaction that takes or lets go of leases. On PostgreSQL it commits without
        waiting for the WAL flush (synchronous_commit off, for it alone): a lease is a hint
        between tick runs, visible to the others at commit as ever; a crash that loses the
        last leases loses nothing a run needs (the ledger's claims commit as before)."""
        with self.engine.begin() as conn:
            if self.dialect == "postgresql":
                conn.exec_driver_sql("SET LOCAL synchronous_commit = off")
            yield conn

    def _due_ids(
        self,
        campaign_ids: list[int],
        now: datetime,
        after_id: int,
        limit: int | None,
        upto: int | None = None,
    ) -> sa.Select:
        """Due ids after `after_id` in id order; with `upto`, a range read by primary key.
        SQLite's planner, from the statistics of a large table, would take the due index for
        it and sort every due row for each batch: `+column` keeps the other columns' indexes out."""
        col = enrollments.c
        state, due_at, campaign = col.state, col.next_due_at, col.campaign_id
        if upto is not None and self.dialect == "sqlite":
            state, due_at, campaign = (
                UnaryExpression(c, operator=operators.custom_op("+"), type_=c.type)
                for c in (state, due_at, campaign)
            )
        query = (
            sa.select(col.id)
            .where(state == "active", due_at <= now, campaign.in_(campaign_ids), col.id > after_id)
            .order_by(col.id)
            .limit(limit)
        )
        return query if upto is None else query.where(col.id <= upto)

    @staticmethod
    def _none_claimed_after(when: datetime):
        return ~sa.exists().where(sends.c.enrollment_id == enrollments.c.id, sends.c.claimed_at > when)

    def _release(self, conn, enrollment_ids: list[int], worker: str) -> None:
        for part in id_parts(self.dialect, enrollment_ids):
            conn.execute(
                sa.update(enrollments)
                .where(id_among(self.dialect, part), enrollments.c.leased_by == worker)
                .values(leased_until=None, leased_by=None)
            )

    def update_enrollments(self, changes: list[dict]) -> None:
        """Each dict: id plus the columns to set (next_due_at, state, exit_reason); written as
        write_enrollment_groups does, grouped by the values they set."""
        same: dict[tuple, list[int]] = {}
        for change in changes:
            values = tuple(sorted((k, v) for k, v in change.items() if k != "id"))
            if values:
                same.setdefault(values, []).append(change["id"])
        if same:
            with self.engine.begin() as conn:
                write_enrollment_groups(conn, same)


def write_enrollment_groups(conn: sa.Connection, same: dict[tuple, list[int]]) -> None:
    """`same`: the (column, value) pairs to set, sorted by column -> the enrollment ids; in the
    caller's transaction (a settle writes its sends' enrollments with them).

    Set-based: the enrollments given the same values (a step's leads enrolled together in one
    time zone share their next due time) in one UPDATE ... WHERE id IN (...); the others in one
    executemany per shape of change."""
    many = {values: ids for values, ids in same.items() if values and len(ids) > 1}
    shapes: dict[tuple[str, ...], list[dict]] = {}
    for values, ids in same.items():
        if values and len(ids) == 1:
            shapes.setdefault(tuple(k for k, _ in values), []).append(
                {"b_id": ids[0], **{f"b_{k}": v for k, v in values}}
            )
    postgresql = conn.dialect.name == "postgresql"
    for values, ids in many.items():
        if postgresql:  # the ids as one array: no IN list of 900 binds a part
            any_id = sa.any_(sa.bindparam("b_ids", ids, type_=ARRAY(sa.Integer)))
            conn.execute(sa.update(enrollments).where(enrollments.c.id == any_id).values(dict(values)))
            continue
        # SQLite: written out for the driver (the IN construct cost more than the UPDATE), in
        # parts under SQLite's oldest limit of 999 variables.
        for i in range(0, len(ids), 900):
            part = ids[i : i + 900]
            sql, params = _sqlite_set(conn, values, len(part))
            conn.exec_driver_sql(sql, (*params, *part))
    for columns, params in shapes.items():
        stmt = (
            sa.update(enrollments)
            .where(enrollments.c.id == sa.bindparam("b_id"))
            .values({k: sa.bindparam(f"b_{k}") for k in columns})
        )
        conn.execute(stmt, params)


def _sqlite_set(conn: sa.Connection, values: tuple, n: int) -> tuple[str, list]:
    """UPDATE enrollments SET the `values` WHERE id IN (n marks), and the values as SQLAlchemy
    binds them (a UTC datetime: a naive string)."""
    params = []
    for column, value in values:
        process = enrollments.c[column].type.dialect_impl(conn.dialect).bind_processor(conn.dialect)
        params.append(process(value) if process else value)
    return _sqlite_set_sql(tuple(k for k, _ in values), n), params


@lru_cache(maxsize=64)
def _sqlite_set_sql(columns: tuple[str, ...], n: int) -> str:
    sets = ", ".join(f"{c} = ?" for c in columns)
    return f"UPDATE enrollments SET {sets} WHERE id IN ({', '.join(['?'] * n)})"
