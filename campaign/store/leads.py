"""Leads and the suppression list: the import upsert, reads by address, and "may we mail them now"."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from campaign.models import AnxietyType, Lead, LeadIn
from campaign.store.base import StorePart
from campaign.store.tables import enrollments, leads, new_public_id, suppressions

# The tick asks this once per email, right before its HTTP call: one plain statement, built once.
_REACHABLE = sa.text(
    "SELECT 1 FROM leads WHERE id = :id AND email = :email AND unsubscribed_at IS NULL AND booked = :no"
    " AND NOT EXISTS (SELECT 1 FROM suppressions WHERE email_hash = :hash)"
)


@dataclass(frozen=True)
class ImportCounts:
    new: int = 0
    updated: int = 0
    unchanged: int = 0


def lead_from_row(row) -> Lead:
    return Lead(
        id=row["id"],
        public_id=row["public_id"],
        email=row["email"],
        first_name=row["first_name"],
        last_name=row["last_name"],
        anxiety_type=AnxietyType(row["anxiety_type"]),
        prior_treatments=row["prior_treatments"],
        consent=row["consent"],
        timezone=row["timezone"],
        state=row["state"],
        source=row["source"],
        booked=row["booked"],
        unsubscribed_at=row["unsubscribed_at"],
        last_email_at=row["last_email_at"],
    )


def suppressed_among(conn, hashes: Iterable[str]) -> set[str]:
    """The given address hashes that are on the suppression list (inside the caller's connection)."""
    hashes = list(hashes)
    if not hashes:
        return set()
    query = sa.select(suppressions.c.email_hash).where(suppressions.c.email_hash.in_(hashes))
    return set(conn.execute(query).scalars())


class Leads(StorePart):
    def upsert_leads(
        self,
        incoming: Iterable[LeadIn],
        now: datetime,
        chunk: int = 500,
        on_chunk: Callable[[int], None] | None = None,
        columns: set[str] | None = None,
        dry_run: bool = False,
    ) -> ImportCounts:
        """Insert new leads, update changed ones; unchanged rows are not touched at all.
        `dry_run`: the same counts, nothing written (the console's check before an import).

        `columns`: the fields the source file has; an existing lead keeps every other field
        (a file without a consent column never revokes consent). A booking is never undone
        by an import."""
        new = updated = unchanged = 0
        fields = [f for f in LeadIn.model_fields if columns is None or f in columns or f == "email"]
        batch: list[LeadIn] = []

        def flush(conn):
            nonlocal new, updated, unchanged
            existing = {
                r["email"]: r
                for r in conn.execute(
                    sa.select(leads).where(leads.c.email.in_([lead.email for lead in batch]))
                ).mappings()
            }
            inserts = []
            for lead in batch:
                values = lead.model_dump(mode="json")
                row = existing.get(lead.email)
                if row is None:
                    inserts.append(
                        {
                            **values,
                            "public_id": new_public_id(),
                            "created_at": now,
                            "updated_at": now,
                            "booked_at": now if lead.booked else None,
                        }
                    )
                    continue
                changes = {f: values[f] for f in fields if row[f] != values[f]}
                if row["booked"]:
                    changes.pop("booked", None)
                if not changes:
                    unchanged += 1
                    continue
                if changes.get("booked") and not row["booked_at"]:
                    changes["booked_at"] = now
                if not dry_run:
                    conn.execute(
                        sa.update(leads).where(leads.c.id == row["id"]).values(**changes, updated_at=now)
                    )
                updated += 1
            if inserts and not dry_run:
                conn.execute(sa.insert(leads), inserts)
            new += len(inserts)
            if on_chunk:
                on_chunk(len(batch))
            batch.clear()

        # A dry run only reads: no write transaction, so it never holds up the tick.
        with self.engine.connect() if dry_run else self.engine.begin() as conn:
            for lead in incoming:
                batch.append(lead)
                if len(batch) >= chunk:
                    flush(conn)
            if batch:
                flush(conn)
        return ImportCounts(new, updated, unchanged)

    def lead_by_email(self, email: str) -> Lead | None:
        with self.engine.connect() as conn:
            row = (
                conn.execute(sa.select(leads).where(leads.c.email == email.strip().casefold()))
                .mappings()
                .first()
            )
        return lead_from_row(row) if row else None

    def unenrolled_leads(self, campaign_id: int, after_id: int, limit: int) -> list[Lead]:
        """Consenting, reachable leads without an enrollment in this campaign, by id (keyset)."""
        enrolled = sa.select(enrollments.c.lead_id).where(enrollments.c.campaign_id == campaign_id)
        query = (
            sa.select(leads)
            .where(
                leads.c.id > after_id,
                leads.c.consent.is_(True),
                leads.c.booked.is_(False),
                leads.c.unsubscribed_at.is_(None),
                leads.c.id.not_in(enrolled),
            )
            .order_by(leads.c.id)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [lead_from_row(r) for r in conn.execute(query).mappings()]

    def suppressed_hashes(self, hashes: Iterable[str]) -> set[str]:
        hashes = list(hashes)
        if not hashes:
            return set()
        with self.engine.connect() as conn:
            return suppressed_among(conn, hashes)

    @functools.cached_property
    def _reachable_sql(self) -> tuple[str, tuple[str, ...] | None]:
        compiled = _REACHABLE.compile(dialect=self.engine.dialect)
        return compiled.string, (tuple(compiled.positiontup) if compiled.positiontup else None)

    def is_reachable(self, lead_id: int, email: str | None = None) -> bool:
        """Checked again right before an HTTP call: an unsubscribe mid-tick stops the send.
        With the lead's address given (the tick has it) this is one query instead of two."""
        if email is not None:
            # Asked from many sender threads at once: the driver's cursor directly (pooled
            # connection, statement compiled once), not a Connection and a Result per call.
            params = {"id": lead_id, "email": email, "no": False, "hash": self.hash(email)}
            sql, order = self._reachable_sql
            raw = self.engine.raw_connection()
            try:
                cursor = raw.cursor()
                cursor.execute(sql, tuple(params[k] for k in order) if order else params)
                found = cursor.fetchone() is not None
                cursor.close()
                raw.commit()  # end the read transaction (PostgreSQL opens one)
            finally:
                raw.close()  # back to the pool
            return found
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(leads.c.email, leads.c.unsubscribed_at, leads.c.booked).where(leads.c.id == lead_id)
            ).first()
            if row is None or row.unsubscribed_at is not None or row.booked:
                return False
            return not suppressed_among(conn, [self.hash(row.email)])

    def reachable_among(self, pairs: Iterable[tuple[int, str]]) -> set[int]:
        """is_reachable for many leads in one query (a bulk request's recipients, right before
        it leaves): the ids of those still at that address, subscribed, not booked, not
        suppressed."""
        pairs = list(pairs)
        if not pairs:
            return set()
        email_of = dict(pairs)
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(leads.c.id, leads.c.email).where(
                    leads.c.id.in_(list(email_of)),
                    leads.c.unsubscribed_at.is_(None),
                    leads.c.booked.is_(False),
                )
            ).all()
            found = {r.id: r.email for r in rows if email_of[r.id] == r.email}
            suppressed = suppressed_among(conn, [self.hash(e) for e in found.values()]) if found else set()
        return {i for i, e in found.items() if self.hash(e) not in suppressed}

    def suppress(self, email: str, reason: str, now: datetime) -> None:
        stmt = (
            self.insert(suppressions)
            .values(email_hash=self.hash(email), reason=reason, created_at=now)
            .on_conflict_do_nothing(index_elements=["email_hash"])
        )
        with self.engine.begin() as conn:
            conn.execute(stmt)
