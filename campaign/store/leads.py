"""Leads and the suppression list: the upsert every intake shares (with proof of consent and
its audit rows), reads by address, and "may we mail them now"."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from campaign.models import ConsentProof, Lead, LeadIn
from campaign.store.accounts import AuditEntry, audit_log
from campaign.store.base import StorePart
from campaign.store.forms import opted_in
from campaign.store.tables import enrollments, leads, new_public_id, suppressions

# The tick asks this once per email, right before its HTTP call: one plain statement, built once.
_REACHABLE = sa.text(
    "SELECT 1 FROM leads WHERE id = :id AND email = :email AND unsubscribed_at IS NULL AND booked = :no"
    " AND NOT EXISTS (SELECT 1 FROM suppressions WHERE email_hash = :hash)"
)
_NO_PROOF = dict.fromkeys(("consent_at", "consent_via", "consent_ref", "consent_version", "consent_client"))
# A new row's columns that the insert leaves to the table's defaults.
_NEW_DEFAULTS = {"unsubscribed_at": None, "last_email_at": None}


@dataclass(frozen=True)
class ImportCounts:
    new: int = 0
    updated: int = 0
    unchanged: int = 0


@dataclass(frozen=True)
class Incoming:
    """One lead to upsert, with how its consent was given (stored when it gives consent) and
    the fields its source has (None: the call's `columns`); an existing lead keeps the rest."""

    lead: LeadIn
    proof: ConsentProof | None = None
    fields: frozenset[str] | None = None
    unconfirmed: bool = False  # a new lead waits for its double opt-in (store.forms.opted_in)


@dataclass(frozen=True)
class Upserted:
    """What one upsert did (created, updated or unchanged), and the lead as stored."""

    outcome: str
    lead: Lead


def lead_from_row(row) -> Lead:
    proof = None
    if row["consent_via"] is not None:
        proof = ConsentProof(
            via=row["consent_via"],
            ref=row["consent_ref"] or "",
            version=row["consent_version"] or "",
            client=row["consent_client"] or "",
        )
    return Lead(
        **{f: row[f] for f in LeadIn.model_fields},
        id=row["id"],
        public_id=row["public_id"],
        unsubscribed_at=row["unsubscribed_at"],
        last_email_at=row["last_email_at"],
        consent_at=row["consent_at"],
        consent_proof=proof,
        unconfirmed_since=row.get("unconfirmed_since"),
    )


def proof_columns(proof: ConsentProof, now: datetime) -> dict:
    return {
        "consent_at": now,
        "consent_via": proof.via[:16],
        "consent_ref": proof.ref[:300],
        "consent_version": proof.version[:100] or None,
        "consent_client": proof.client[:64] or None,
    }


def _new_row(item: Incoming, now: datetime) -> dict:
    lead = item.lead
    row = {
        **lead.model_dump(mode="json"),
        **_NO_PROOF,  # every row of one executemany has the same keys
        "public_id": new_public_id(),
        "created_at": now,
        "updated_at": now,
        "booked_at": now if lead.booked else None,
        "unconfirmed_since": now if item.unconfirmed else None,
    }
    if lead.consent and item.proof is not None:
        row.update(proof_columns(item.proof, now))
    return row


def _changes(item: Incoming, row, fields: frozenset[str], now: datetime) -> dict:
    """The columns to update on an existing lead (empty: unchanged)."""
    values = item.lead.model_dump(mode="json")
    changes = {f: values[f] for f in fields if row[f] != values[f]}
    if row["booked"]:
        changes.pop("booked", None)
    if changes.get("booked") and not row["booked_at"]:
        changes["booked_at"] = now
    # Consent given now (or given before, with no proof recorded): this is its proof. Consent
    # that goes on keeps the proof of when it was first given.
    gives_consent = "consent" in fields and item.lead.consent and item.proof is not None
    if gives_consent and (not row["consent"] or row["consent_at"] is None):
        changes.update(proof_columns(item.proof, now))
    # A trusted source's consent (a file; the API without double opt-in) confirms a lead that a
    # public form left waiting for its double opt-in.
    if gives_consent and not item.unconfirmed and row.get("unconfirmed_since") is not None:
        changes["unconfirmed_since"] = None
    return changes


def suppressed_among(conn, hashes: Iterable[str]) -> set[str]:
    """The given address hashes that are on the suppression list (inside the caller's connection)."""
    hashes = list(hashes)
    if not hashes:
        return set()
    query = sa.select(suppressions.c.email_hash).where(suppressions.c.email_hash.in_(hashes))
    return set(conn.execute(query).scalars())


@functools.lru_cache(maxsize=8)
def _reachable_among_sql(n: int, mark: str) -> str:
    return (
        "SELECT l.id, l.email, l.email_hash, "
        "EXISTS (SELECT 1 FROM suppressions s WHERE s.email_hash = l.email_hash) FROM leads l "
        f"WHERE l.unsubscribed_at IS NULL AND l.booked = {mark} AND l.id IN ({', '.join([mark] * n)})"
    )


class Leads(StorePart):
    def upsert_leads(
        self,
        incoming: Iterable[LeadIn | Incoming],
        now: datetime,
        chunk: int = 500,
        on_chunk: Callable[[int], None] | None = None,
        columns: set[str] | None = None,
        on_upsert: Callable[[Upserted], AuditEntry | None] | None = None,
        dry_run: bool = False,
    ) -> ImportCounts:
        """Insert new leads, update changed ones; unchanged rows are not touched at all. One
        transaction, read in chunks (a large file is never held whole). `dry_run`: the same
        counts, nothing written (the console's check before an import).

        `columns`: the fields the source file has; an existing lead keeps every other field
        (a file without a consent column never revokes consent). A booking is never undone
        by an import. `on_upsert` is told each outcome and may return an audit entry, written
        in the same transaction."""
        default_fields = frozenset(
            f for f in LeadIn.model_fields if columns is None or f in columns or f == "email"
        )
        counts = {"created": 0, "updated": 0, "unchanged": 0}
        batch: list[Incoming] = []

        def flush(conn):
            emails = [item.lead.email for item in batch]
            found = conn.execute(sa.select(leads).where(leads.c.email.in_(emails))).mappings()
            existing = {r["email"]: r for r in found}
            inserts, outcomes = [], []
            for item in batch:
                row = existing.get(item.lead.email)
                if row is None:
                    inserts.append({**_new_row(item, now), "email_hash": self.hash(item.lead.email)})
                    continue
                changes = _changes(item, row, item.fields or default_fields, now)
                if changes and not dry_run:
                    conn.execute(
                        sa.update(leads).where(leads.c.id == row["id"]).values(**changes, updated_at=now)
                    )
                outcome = "updated" if changes else "unchanged"
                counts[outcome] += 1
                if on_upsert:
                    outcomes.append(Upserted(outcome, lead_from_row({**row, **changes})))
            counts["created"] += len(inserts)
            if inserts and not dry_run and on_upsert:
                query = sa.insert(leads).returning(leads.c.id, sort_by_parameter_order=True)
                ids = conn.execute(query, inserts).scalars().all()
                outcomes += [
                    Upserted("created", lead_from_row({**_NEW_DEFAULTS, **values, "id": lead_id}))
                    for values, lead_id in zip(inserts, ids)
                ]
            elif inserts and not dry_run:
                conn.execute(sa.insert(leads), inserts)
            entries = [e for e in map(on_upsert, outcomes) if e is not None] if on_upsert else []
            if entries and not dry_run:
                # vars(), not dataclasses.asdict: this runs once per lead the API takes.
                conn.execute(
                    sa.insert(audit_log), [{k: v for k, v in vars(e).items() if k != "id"} for e in entries]
                )
            if on_chunk:
                on_chunk(len(batch))
            batch.clear()

        # A dry run only reads: no write transaction, so it never holds up the tick.
        with self.engine.connect() if dry_run else self.engine.begin() as conn:
            for item in incoming:
                item = item if isinstance(item, Incoming) else Incoming(item)
                if batch and any(queued.lead.email == item.lead.email for queued in batch):
                    flush(conn)  # the same address twice in one call: the later one updates
                batch.append(item)
                if len(batch) >= chunk:
                    flush(conn)
            if batch:
                flush(conn)
        return ImportCounts(counts["created"], counts["updated"], counts["unchanged"])

    def intake_leads(
        self,
        incoming: list[Incoming],
        now: datetime,
        audit: Callable[[Upserted], AuditEntry | None] = lambda _: None,
    ) -> list[Upserted]:
        """upsert_leads for the API's few leads, with each one's outcome (find them by address).
        A concurrent request that inserted the same new address first (a unique violation, all
        rolled back) makes this an update: retried once."""
        done: list[Upserted] = []

        def collect(upserted: Upserted) -> AuditEntry | None:
            done.append(upserted)
            return audit(upserted)

        for attempt in (1, 2):
            done.clear()
            try:
                self.upsert_leads(incoming, now, on_upsert=collect)
                return done
            except sa.exc.IntegrityError:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def lead_by_email(self, email: str) -> Lead | None:
        with self.engine.connect() as conn:
            row = (
                conn.execute(sa.select(leads).where(leads.c.email == email.strip().casefold()))
                .mappings()
                .first()
            )
        return lead_from_row(row) if row else None

    def unenrolled_leads(
        self, campaign_id: int, after_id: int, limit: int, skip: sa.ColumnElement[bool] | None = None
    ) -> list[Lead]:
        """Consenting, reachable leads without an enrollment in this campaign, by id (keyset);
        `skip`: leave out the leads this expression over `leads` holds for."""
        enrolled = sa.select(enrollments.c.lead_id).where(enrollments.c.campaign_id == campaign_id)
        query = (
            sa.select(leads)
            .where(
                leads.c.id > after_id,
                leads.c.consent.is_(True),
                leads.c.booked.is_(False),
                leads.c.unsubscribed_at.is_(None),
                opted_in(),
                leads.c.id.not_in(enrolled),
                sa.true() if skip is None else sa.not_(skip),
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
        ids = list(email_of)
        reachable: set[int] = set()
        unhashed: dict[int, str] = {}  # leads without a kept hash: made here, checked after
        with self.engine.connect() as conn:
            # Written out for the driver, suppression probed in the same statement: building
            # the IN list as a SQLAlchemy construct cost more than the query (per request).
            mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
            for i in range(0, len(ids), 900):  # under SQLite's oldest limit of 999 variables
                part = ids[i : i + 900]
                result = conn.exec_driver_sql(_reachable_among_sql(len(part), mark), (False, *part))
                rows = result.cursor.fetchall()  # the driver's rows: no Row made for each
                result.close()
                for lead_id, email, kept, suppressed in rows:
                    if email_of[lead_id] != email:
                        continue  # the address changed since the claim
                    if kept is None:  # the address hash kept with the lead (0014_enroll), or not
                        unhashed[lead_id] = self.hash(email)
                    elif not suppressed:
                        reachable.add(lead_id)
            if unhashed:
                suppressed = suppressed_among(conn, unhashed.values())
                reachable.update(i for i, h in unhashed.items() if h not in suppressed)
        return reachable

    def suppress(self, email: str, reason: str, now: datetime) -> None:
        stmt = (
            self.insert(suppressions)
            .values(email_hash=self.hash(email), reason=reason, created_at=now)
            .on_conflict_do_nothing(index_elements=["email_hash"])
        )
        with self.engine.begin() as conn:
            conn.execute(stmt)
