"""Enrollments: a lead in one campaign's audience sequence, and when it is next due for a look."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from campaign.models import Lead
from campaign.store.base import StorePart
from campaign.store.leads import lead_from_row, suppressed_among
from campaign.store.tables import enrollments, leads, sends


@dataclass(frozen=True)
class DueEnrollment:
    """An enrollment due for a look at `now`, with what the planner needs."""

    enrollment_id: int
    campaign_id: int
    audience: str
    audience_version: str
    enrolled_at: datetime
    lead: Lead
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
        return self._due_rows(
            enrollments.c.state == "active",
            enrollments.c.next_due_at <= now,
            enrollments.c.campaign_id.in_(campaign_ids),
            enrollments.c.id > after_id,
            limit=limit,
        )

    def enrollments_by_id(self, enrollment_ids: list[int]) -> list[DueEnrollment]:
        """The same view as due_enrollments for given enrollments, whatever their state or time."""
        if not enrollment_ids:
            return []
        return self._due_rows(enrollments.c.id.in_(enrollment_ids), limit=None)

    def _due_rows(self, *where, limit: int | None) -> list[DueEnrollment]:
        query = (
            sa.select(
                enrollments.c.id.label("enrollment_id"),
                enrollments.c.campaign_id,
                enrollments.c.audience,
                enrollments.c.audience_version,
                enrollments.c.enrolled_at,
                leads,
            )
            .join(leads, leads.c.id == enrollments.c.lead_id)
            .where(*where)
            .order_by(enrollments.c.id)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            rows = list(conn.execute(query).mappings())
            sent: dict[int, set[str]] = {r["enrollment_id"]: set() for r in rows}
            if sent:
                for enrollment_id, key in conn.execute(
                    sa.select(sends.c.enrollment_id, sends.c.step_key).where(
                        sends.c.enrollment_id.in_(list(sent))
                    )
                ):
                    sent[enrollment_id].add(key)
            hashes = {r["enrollment_id"]: self.hash(r["email"]) for r in rows}
            suppressed = suppressed_among(conn, hashes.values())
        return [
            DueEnrollment(
                enrollment_id=r["enrollment_id"],
                campaign_id=r["campaign_id"],
                audience=r["audience"],
                audience_version=r["audience_version"],
                enrolled_at=r["enrolled_at"],
                lead=lead_from_row(r),
                sent_keys=frozenset(sent[r["enrollment_id"]]),
                suppressed=hashes[r["enrollment_id"]] in suppressed,
            )
            for r in rows
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
