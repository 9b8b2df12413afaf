"""Enrollments: a lead in one campaign's audience sequence, and when it is next due for a look."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import NamedTuple

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.sql import operators
from sqlalchemy.sql.expression import UnaryExpression

from campaign.store.base import StorePart, chunks
from campaign.store.leads import suppressed_among
from campaign.store.tables import enrollments, leads, sends, suppressions


class DueLead(NamedTuple):
    """The lead columns a due step reads, and no others: the planner (timezone, last_email_at),
    the exit check (unsubscribed_at, booked, consent), rendering and composing (public_id,
    email, first_name, last_name, anxiety_type, prior_treatments) and settling (id). A named
    tuple, as DueEnrollment: read-only, and made at a fraction of a frozen dataclass's cost
    (the due walk makes one a row)."""

    id: int
    public_id: str
    email: str
    first_name: str
    last_name: str
    anxiety_type: str
    prior_treatments: int | None
    consent: bool
    booked: bool
    timezone: str
    unsubscribed_at: datetime | None
    last_email_at: datetime | None


DUE_LEAD_COLUMNS = [leads.c[name] for name in DueLead._fields]
EMAIL = 5 + DueLead._fields.index("email")  # its place in a due row
LEAD_END = 5 + len(DueLead._fields)  # then: email_hash, the sent step keys, suppressed
# The times in a due row (enrolled_at, the lead's unsubscribed_at and last_email_at): read raw on
# SQLite and parsed once per distinct value (a batch enrolled together shares its times).
TIMES = (4, *(5 + DueLead._fields.index(n) for n in ("unsubscribed_at", "last_email_at")))


class DueEnrollment(NamedTuple):
    """An enrollment due for a look at `now`, with what the planner needs."""

    enrollment_id: int
    campaign_id: int
    audience: str
    audience_version: str
    enrolled_at: datetime
    lead: DueLead
    sent_keys: frozenset[str]
    suppressed: bool


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
            return self._read(conn, self._due_rows_query(due).limit(limit))

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

        The lease is two columns set in the statement that picks the rows, with FOR UPDATE OF
        enrollments SKIP LOCKED on PostgreSQL: concurrent runs pick disjoint rows without
        waiting, and each commits its lease at once. A lease, not a row lock held through the
        batch: the batch's HTTP sends take seconds, and a run that dies mid-batch (kill -9, a
        lost machine) leaves a lease that expires at `until` (the ledger's claims, reconciled
        after STALE_CLAIM, still guard what it sent), where a lock held open would tie a
        connection to every send and die only with the session. SQLite has no SKIP LOCKED; its
        one writer at a time makes the same UPDATE atomic there.

        A lead due in two campaigns must not get two emails at once from two runs: a leased
        row whose lead has another row leased by another run is let go again (both runs may
        let go; never both keep it), and is due at the next tick."""
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
        if self.dialect == "postgresql":
            pick = pick.with_for_update(skip_locked=True, of=enrollments)
        lease = (
            sa.update(enrollments)
            .where(enrollments.c.id.in_(pick.scalar_subquery()))
            .values(leased_until=until, leased_by=worker)
            .returning(enrollments.c.id)
        )
        with self.engine.begin() as conn:
            leased = sorted(conn.execute(lease).scalars())
        if not leased:
            return [], None
        # A new transaction, after the lease is committed: of two runs that leased one lead's
        # rows, the later read always sees the other's lease. The rows and that check in one
        # statement (`busy`: the lead has a row another run holds). The check goes by lead
        # (ix_enrollments_lead_id): on PostgreSQL ix_enrollments_leased keeps the entries of
        # every released lease until a vacuum, and a scan of it grows with each batch walked.
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
        with self.engine.begin() as conn:
            batch, let_go = [], []
            for part in self._parts(leased):
                query = self._due_rows_query(self._among(part)).add_columns(busy)
                for due, is_busy in self._read(conn, query, extra=1):
                    if is_busy:
                        let_go.append(due.enrollment_id)
                    else:
                        batch.append(due)
            if let_go:
                self._release(conn, let_go, worker)
        return batch, leased[-1]

    def release_leases(self, enrollment_ids: list[int], worker: str) -> None:
        """The batch is done: its rows are free for any run again (only this run's leases)."""
        if enrollment_ids:
            with self.engine.begin() as conn:
                self._release(conn, enrollment_ids, worker)

    def release_walk(self, worker: str) -> None:
        """Every lease this run holds, let go (on SQLite, where ix_enrollments_leased holds
        the leased rows only: a SQLite walk's one marked row)."""
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
            for part in self._parts(sorted(enrollment_ids)):
                found.extend(self._read(conn, self._due_rows_query(self._among(part))))
        return found

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
        for part in self._parts(enrollment_ids):
            conn.execute(
                sa.update(enrollments)
                .where(self._among(part), enrollments.c.leased_by == worker)
                .values(leased_until=None, leased_by=None)
            )

    def _parts(self, ids: list[int]) -> list[list[int]]:
        """The ids in lists for _among: all at once on PostgreSQL (one array parameter)."""
        return [ids] if self.dialect == "postgresql" else list(chunks(ids))

    def _among(self, ids: list[int]):
        """enrollments.id among `ids`: on PostgreSQL `= ANY(array)`, one parameter whatever the
        count (one cached statement); on SQLite IN (...) of at most CHUNK."""
        if self.dialect == "postgresql":
            return enrollments.c.id == sa.any_(sa.bindparam(None, ids, type_=postgresql.ARRAY(sa.Integer)))
        return enrollments.c.id.in_(ids)

    def _due_rows_query(self, where) -> sa.Select:
        """The enrollments matching `where`, in id order: only the columns a step reads, the
        step keys already in the ledger (joined by ",": keys are [a-z0-9_]) and whether the
        address is suppressed (by the hash kept with the lead, 0014_enroll), in one statement."""
        join = sa.func.string_agg if self.dialect == "postgresql" else sa.func.group_concat
        sent = (
            sa.select(join(sends.c.step_key, ","))
            .where(sends.c.enrollment_id == enrollments.c.id)
            .scalar_subquery()
        )
        suppressed = sa.exists().where(suppressions.c.email_hash == leads.c.email_hash)
        columns = [
            enrollments.c.id,
            enrollments.c.campaign_id,
            enrollments.c.audience,
            enrollments.c.audience_version,
            enrollments.c.enrolled_at,
            *DUE_LEAD_COLUMNS,
        ]
        if self.dialect == "sqlite":
            for i in TIMES:
                columns[i] = sa.type_coerce(columns[i], sa.String).label(columns[i].name)
        return (
            sa.select(*columns, leads.c.email_hash, sent, suppressed)
            .join(leads, leads.c.id == enrollments.c.lead_id)
            .where(where)
            .order_by(enrollments.c.id)
        )

    def _read(self, conn, query: sa.Select, extra: int = 0) -> list:
        """DueEnrollments from _due_rows_query's rows (with `extra` columns after: then
        (due, *extra) tuples). A lead whose hash is not stored yet (None: rows from before
        0012) is hashed here and looked up in the suppression list."""
        result = conn.execute(query)
        if self.dialect == "sqlite":  # the driver's rows, the times and flags made here (faster)
            rows = [_sqlite_row(r) for r in result.cursor.fetchall()]
        else:
            rows = result.tuples().all()
        unhashed = {r[EMAIL]: self.hash(r[EMAIL]) for r in rows if r[LEAD_END] is None}
        suppressed = suppressed_among(conn, unhashed.values()) if unhashed else set()
        found = []
        none: frozenset[str] = frozenset()
        for r in rows:
            keys = r[LEAD_END + 1]
            due = DueEnrollment(
                r[0],
                r[1],
                r[2],
                r[3],
                r[4],
                DueLead._make(r[5:LEAD_END]),
                frozenset(keys.split(",")) if keys else none,
                bool(r[LEAD_END + 2]) or (r[LEAD_END] is None and unhashed[r[EMAIL]] in suppressed),
            )
            found.append((due, *r[LEAD_END + 3 :]) if extra else due)
        return found

    def update_enrollments(self, changes: list[dict]) -> None:
        """Each dict: id plus the columns to set (next_due_at, state, exit_reason).

        Set-based: the enrollments given the same values (a step's leads enrolled together in one
        time zone share their next due time) in one UPDATE ... WHERE id IN (...); the others in
        one executemany per shape of change."""
        same: dict[tuple, list[int]] = {}
        for change in changes:
            values = tuple(sorted((k, v) for k, v in change.items() if k != "id"))
            if values:
                same.setdefault(values, []).append(change["id"])
        many = {values: ids for values, ids in same.items() if len(ids) > 1}
        shapes: dict[tuple[str, ...], list[dict]] = {}
        for values, ids in same.items():
            if len(ids) == 1:
                shapes.setdefault(tuple(k for k, _ in values), []).append(
                    {"b_id": ids[0], **{f"b_{k}": v for k, v in values}}
                )
        if not same:
            return
        with self.engine.begin() as conn:
            for values, ids in many.items():
                for i in range(0, len(ids), 900):  # under SQLite's oldest limit of 999 variables
                    conn.execute(
                        sa.update(enrollments)
                        .where(enrollments.c.id.in_(ids[i : i + 900]))
                        .values(dict(values))
                    )
            for columns, params in shapes.items():
                stmt = (
                    sa.update(enrollments)
                    .where(enrollments.c.id == sa.bindparam("b_id"))
                    .values({k: sa.bindparam(f"b_{k}") for k in columns})
                )
                conn.execute(stmt, params)


_PARSED: dict[str, datetime] = {}
FLAGS = tuple(5 + DueLead._fields.index(n) for n in ("consent", "booked"))


def _sqlite_row(row: tuple) -> list:
    """A due row as SQLite's driver gives it, with its times (stored as text, UTC) as aware
    datetimes (parsed once per distinct value) and its flags (0 or 1) as booleans."""
    row = list(row)
    for i in TIMES:
        if (value := row[i]) is not None:
            found = _PARSED.get(value)
            if found is None:
                if len(_PARSED) > 10_000:  # a bound on what the cache holds
                    _PARSED.clear()
                found = _PARSED[value] = datetime.fromisoformat(value).replace(tzinfo=UTC)
            row[i] = found
    for i in FLAGS:
        row[i] = bool(row[i])
    return row
