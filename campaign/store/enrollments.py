"""Enrollments: a lead in one campaign's audience sequence, and when it is next due for a look."""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import fields as dataclass_fields
from datetime import datetime

import sqlalchemy as sa

from campaign.store.base import StorePart, chunks
from campaign.store.leads import suppressed_among
from campaign.store.tables import enrollments, leads, sends


@dataclass(frozen=True, slots=True)
class DueLead:
    """The lead columns a due step reads, and no others: the planner (timezone, last_email_at),
    the exit check (unsubscribed_at, booked, consent), rendering and composing (public_id,
    email, first_name, last_name, anxiety_type, prior_treatments) and settling (id)."""

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


DUE_LEAD_COLUMNS = [leads.c[f.name] for f in dataclass_fields(DueLead)]
EMAIL = 5 + [f.name for f in dataclass_fields(DueLead)].index("email")  # its place in a due row


@dataclass(frozen=True)
class DueEnrollment:
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

    def due_enrollments(
        self, campaign_ids: list[int], now: datetime, after_id: int, limit: int
    ) -> list[DueEnrollment]:
        """The next `limit` due enrollments after `after_id`, read without a lease (one reader)."""
        with self.engine.connect() as conn:
            ids = list(conn.execute(self._due_ids(campaign_ids, now, after_id, limit)).scalars())
            return self._due_rows(conn, ids)

    def lease_due_enrollments(
        self,
        campaign_ids: list[int],
        now: datetime,
        after_id: int,
        limit: int,
        worker: str,
        until: datetime,
    ) -> tuple[list[DueEnrollment], int | None]:
        """Lease the next `limit` due enrollments after `after_id` that no other tick run holds,
        and read them by key. Returns (batch, the highest id walked; None when none is left).

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
        pick = self._due_ids(campaign_ids, now, after_id, limit).where(
            sa.or_(
                enrollments.c.leased_until.is_(None),
                enrollments.c.leased_until <= now,
                enrollments.c.leased_by == worker,
            ),
            # Done in this tick by another run (a step claimed less than a lease ago): a run
            # that fell behind (a hung request) must not walk it again; the next tick re-plans it.
            ~sa.exists().where(
                sends.c.enrollment_id == enrollments.c.id, sends.c.claimed_at > now - (until - now)
            ),
        )
        if self.dialect == "postgresql":
            pick = pick.with_for_update(skip_locked=True, of=enrollments)
        lease = (
            sa.update(enrollments)
            .where(enrollments.c.id.in_(pick.scalar_subquery()))
            .values(leased_until=until, leased_by=worker)
            .returning(enrollments.c.id, enrollments.c.lead_id)
        )
        with self.engine.begin() as conn:
            leased = dict(conn.execute(lease).tuples().all())
        if not leased:
            return [], None
        # A new transaction, after the lease is committed: of two runs that leased one lead's
        # rows, the later check always sees the other's lease.
        with self.engine.begin() as conn:
            busy = set(
                conn.execute(
                    sa.select(enrollments.c.lead_id).where(
                        enrollments.c.lead_id.in_(set(leased.values())),
                        enrollments.c.leased_by != worker,
                        enrollments.c.leased_until > now,
                    )
                ).scalars()
            )
            if busy:
                let_go = [e for e, lead in leased.items() if lead in busy]
                self._release(conn, let_go, worker)
            batch = self._due_rows(conn, sorted(e for e, lead in leased.items() if lead not in busy))
        return batch, max(leased)

    def release_leases(self, enrollment_ids: list[int], worker: str) -> None:
        """The batch is done: its rows are free for any run again (only this run's leases)."""
        if enrollment_ids:
            with self.engine.begin() as conn:
                self._release(conn, enrollment_ids, worker)

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
        with self.engine.connect() as conn:
            return self._due_rows(conn, sorted(enrollment_ids))

    @staticmethod
    def _due_ids(campaign_ids: list[int], now: datetime, after_id: int, limit: int) -> sa.Select:
        return (
            sa.select(enrollments.c.id)
            .where(
                enrollments.c.state == "active",
                enrollments.c.next_due_at <= now,
                enrollments.c.campaign_id.in_(campaign_ids),
                enrollments.c.id > after_id,
            )
            .order_by(enrollments.c.id)
            .limit(limit)
        )

    @staticmethod
    def _release(conn, enrollment_ids: list[int], worker: str) -> None:
        for part in chunks(enrollment_ids):
            conn.execute(
                sa.update(enrollments)
                .where(enrollments.c.id.in_(part), enrollments.c.leased_by == worker)
                .values(leased_until=None, leased_by=None)
            )

    def _due_rows(self, conn, enrollment_ids: list[int]) -> list[DueEnrollment]:
        """The enrollments with the given ids (in that order), by key: only the columns a step
        reads, the step keys already in the ledger and the suppressed addresses, set-wise."""
        rows = []
        for part in chunks(enrollment_ids):
            found = conn.execute(
                sa.select(
                    enrollments.c.id,
                    enrollments.c.campaign_id,
                    enrollments.c.audience,
                    enrollments.c.audience_version,
                    enrollments.c.enrolled_at,
                    *DUE_LEAD_COLUMNS,
                    leads.c.email_hash,  # kept with the lead (0014_enroll); None: made here
                )
                .join(leads, leads.c.id == enrollments.c.lead_id)
                .where(enrollments.c.id.in_(part))
                .order_by(enrollments.c.id)
            ).tuples()
            rows.extend(found)
        sent: dict[int, set[str]] = {r[0]: set() for r in rows}
        for part in chunks(sent):
            for enrollment_id, key in conn.execute(
                sa.select(sends.c.enrollment_id, sends.c.step_key).where(sends.c.enrollment_id.in_(part))
            ):
                sent[enrollment_id].add(key)
        hashes = [r[-1] or self.hash(r[EMAIL]) for r in rows]
        suppressed = set()
        for part in chunks(set(hashes)):
            suppressed |= suppressed_among(conn, part)
        return [
            DueEnrollment(
                enrollment_id=r[0],
                campaign_id=r[1],
                audience=r[2],
                audience_version=r[3],
                enrolled_at=r[4],
                lead=DueLead(*r[5:-1]),
                sent_keys=frozenset(sent[r[0]]),
                suppressed=h in suppressed,
            )
            for r, h in zip(rows, hashes, strict=True)
        ]

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
