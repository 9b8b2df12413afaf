"""A lead file's import, set-based: the rows the intake took (validated one at a time, in
Python) are loaded in chunks into a staging table (PostgreSQL: COPY; SQLite: executemany),
all in the import's one transaction; then a few statements keep each address's last row and
insert the new leads, update the changed ones and count the unchanged, comparing in SQL. Memory
stays flat: one chunk of rows at a time, no map of addresses (the staging table is the map).

The rules are `Leads.upsert_leads`'s (the API's row-wise path), written as SQL: the fields the
file has no column for are kept; a booking is never undone; consent given now (or given
before with no proof recorded) records this row's proof, consent that goes on keeps its own.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa

from campaign.models import ConsentProof, LeadIn
from campaign.store.base import StorePart
from campaign.store.leads import ImportCounts, proof_columns
from campaign.store.tables import leads, new_public_id

STAGE_CHUNK = 5_000  # rows loaded per COPY / executemany
# SQLite's page cache for the upsert (KiB; its default is 2 MB): the leads' indexes are written
# in the order of the file, not of their keys, so a larger cache saves most page reads.
SQLITE_CACHE_KB = 64 * 1024
LEAD_FIELDS = tuple(LeadIn.model_fields)  # email first, then the rest, as the leads table has them
_PROOF = ("consent_via", "consent_ref", "consent_version", "consent_client")

# Per connection (TEMPORARY), outside the schema's metadata: Alembic never sees it.
stage = sa.Table(
    "lead_stage",
    sa.MetaData(),
    sa.Column("row_number", sa.Integer, primary_key=True),
    *(sa.Column(name, leads.c[name].type) for name in LEAD_FIELDS),
    sa.Column("public_id", sa.String(32)),
    sa.Column("email_hash", sa.String(64)),  # for the suppression check in SQL (store.enroll)
    *(sa.Column(name, leads.c[name].type) for name in _PROOF),
    prefixes=["TEMPORARY"],
    postgresql_on_commit="DROP",
)
_COLUMNS = ", ".join(c.name for c in stage.columns)
# The staged rows whose address is a lead already, and its id: found once, in a narrow table
# (writing it costs little; rewriting every staged row to add the id cost more than the rest).
found = sa.Table(
    "lead_stage_found",
    stage.metadata,
    sa.Column("row_number", sa.Integer, primary_key=True),
    sa.Column("lead_id", sa.Integer, nullable=False),
    prefixes=["TEMPORARY"],
    postgresql_on_commit="DROP",
)


@dataclass(frozen=True)
class Staged:
    """One row the intake took: its row number in the file, the lead, its proof of consent."""

    row_number: int
    lead: LeadIn
    proof: ConsentProof | None


@dataclass(frozen=True)
class FileImport:
    """What an import did, and the rows that repeat an earlier row's address: how many, and the
    first few as (row, address, the row before it with that address). Only the last one for
    an address is kept."""

    counts: ImportCounts
    repeated: int = 0
    first_repeats: list[tuple[int, str, int]] = field(default_factory=list)


_lead_values = operator.attrgetter(*LEAD_FIELDS)
_ANXIETY = LEAD_FIELDS.index("anxiety_type")


def _stage_row(item: Staged, now: datetime, email_hash: str) -> tuple:
    values = list(_lead_values(item.lead))
    values[_ANXIETY] = values[_ANXIETY].value  # as stored: the enum's text
    proof = proof_columns(item.proof, now) if item.proof is not None else dict.fromkeys(_PROOF)
    return (
        item.row_number,
        *values,
        new_public_id(),  # used only if the row makes a new lead
        email_hash,
        *(proof[name] for name in _PROOF),
    )


class LeadImport(StorePart):
    def import_leads(
        self,
        rows: Iterable[Staged],
        now: datetime,
        *,
        columns: Collection[str],
        chunk: int = STAGE_CHUNK,
        on_chunk: Callable[[int], None] | None = None,
        dry_run: bool = False,
        shown: int = 5,
    ) -> FileImport:
        """Upsert a file's rows (in file order; an address may come again: its last row wins).
        `columns`: the fields the file has; an existing lead keeps the others. The leads change
        in one transaction: an exception from `rows` (an unreadable row, a rejects file that
        cannot be written) leaves them as they were. `dry_run`: the same counts, nothing
        written. `shown`: how many repeated rows to name."""
        fields = frozenset(f for f in LEAD_FIELDS if f in columns or f == "email")
        rows = iter(rows)
        with self.engine.connect() as conn:
            try:
                self._drop_stage(conn)
                stage.create(conn)
                while items := list(itertools.islice(rows, chunk)):
                    part = [_stage_row(item, now, self.hash(item.lead.email)) for item in items]
                    self._load(conn, part)
                    if on_chunk:
                        on_chunk(len(part))
                repeated, first, counts = self._merge(conn, fields, now, dry_run, shown)
            finally:
                conn.rollback()  # a dry run, or a failure: nothing stays (PostgreSQL drops the stage)
                self._drop_stage(conn)
        return FileImport(counts, repeated, first)

    def _merge(
        self, conn: sa.Connection, fields: frozenset[str], now: datetime, dry_run: bool, shown: int
    ) -> tuple[int, list[tuple[int, str, int]], ImportCounts]:
        """Once every row is staged: the last row per address kept, the counts, the writes."""
        conn.exec_driver_sql("CREATE INDEX lead_stage_email ON lead_stage (email, row_number)")
        if self.dialect == "postgresql":
            conn.exec_driver_sql("ANALYZE lead_stage")  # temporary tables get no autovacuum
        repeated, first = self._keep_last_rows(conn, shown)
        if self.dialect == "sqlite" and not dry_run:
            # The staging table is the connection's own; the leads' write lock is taken now,
            # before they are read (a read first could not become a write once the tick has
            # committed meanwhile), and held for the last few statements.
            conn.commit()
            conn.exec_driver_sql(f"PRAGMA cache_size = -{SQLITE_CACHE_KB}")
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        # Each row's lead, found once: the statements below join by id, and the insert never
        # reads the table it writes (a plan that did rescanned it for every row inserted).
        found.create(conn)
        matches = sa.select(stage.c.row_number, leads.c.id).join(leads, leads.c.email == stage.c.email)
        conn.execute(sa.insert(found).from_select(["row_number", "lead_id"], matches))
        if self.dialect == "postgresql":  # the joins below are planned on what is there now
            conn.exec_driver_sql("ANALYZE lead_stage_found")
            conn.exec_driver_sql("ANALYZE leads")
        counts = self._count(conn, fields)
        if not dry_run:
            self._write(conn, fields, now)
            conn.commit()
        return repeated, first, counts

    def _drop_stage(self, conn: sa.Connection) -> None:
        """SQLite keeps a connection's temporary tables past its transactions: drop them (and
        give back the page cache). PostgreSQL drops them at the transaction's end."""
        if self.dialect == "sqlite":
            conn.exec_driver_sql("DROP TABLE IF EXISTS temp.lead_stage_found")
            conn.exec_driver_sql("DROP TABLE IF EXISTS temp.lead_stage")
            conn.exec_driver_sql("PRAGMA cache_size = -2000")  # SQLite's default

    def _load(self, conn: sa.Connection, part: list[tuple]) -> None:
        if self.dialect == "postgresql":
            cursor = conn.connection.driver_connection.cursor()
            with cursor, cursor.copy(f"COPY lead_stage ({_COLUMNS}) FROM STDIN") as copy:
                for row in part:
                    copy.write_row(row)
        else:
            marks = ", ".join("?" * len(stage.columns))
            conn.exec_driver_sql(f"INSERT INTO lead_stage ({_COLUMNS}) VALUES ({marks})", part)

    def _keep_last_rows(self, conn: sa.Connection, shown: int) -> tuple[int, list[tuple[int, str, int]]]:
        """Deletes every staged row a later row of the same address replaces; returns how many,
        and the first `shown` of them with the row each repeats."""
        total, distinct = conn.execute(
            sa.select(sa.func.count(), sa.func.count(sa.distinct(stage.c.email)))
        ).one()
        if total == distinct:
            return 0, []
        other = stage.alias("other")
        earlier = (
            sa.select(sa.func.max(other.c.row_number))
            .where(other.c.email == stage.c.email, other.c.row_number < stage.c.row_number)
            .scalar_subquery()
        )
        found = sa.select(stage.c.row_number, stage.c.email, earlier.label("earlier")).subquery()
        first = conn.execute(
            sa.select(found).where(found.c.earlier.is_not(None)).order_by(found.c.row_number).limit(shown)
        ).all()
        later = sa.exists().where(other.c.email == stage.c.email, other.c.row_number > stage.c.row_number)
        conn.execute(sa.delete(stage).where(later))
        return total - distinct, [tuple(row) for row in first]

    def _count(self, conn: sa.Connection, fields: frozenset[str]) -> ImportCounts:
        matched = sa.and_(found.c.lead_id.is_not(None), _changed(fields))
        joined = stage.outerjoin(found, found.c.row_number == stage.c.row_number).outerjoin(
            leads, leads.c.id == found.c.lead_id
        )
        total, existing, updated = conn.execute(
            sa.select(
                sa.func.count(),
                sa.func.count(found.c.lead_id),
                sa.func.coalesce(sa.func.sum(sa.case((matched, 1), else_=0)), 0),
            ).select_from(joined)
        ).one()
        return ImportCounts(new=total - existing, updated=updated, unchanged=existing - updated)

    def _write(self, conn: sa.Connection, fields: frozenset[str], now: datetime) -> None:
        at = sa.literal(now, leads.c.updated_at.type)
        sets: dict[str, sa.ColumnElement] = {f: stage.c[f] for f in fields if f not in ("email", "booked")}
        if "booked" in fields:  # a booking is never undone; its time is kept
            sets["booked"] = sa.or_(leads.c.booked, stage.c.booked)
            booked_now = sa.and_(sa.not_(leads.c.booked), stage.c.booked, leads.c.booked_at.is_(None))
            sets["booked_at"] = sa.case((booked_now, at), else_=leads.c.booked_at)
        if "consent" in fields:
            gives = _gives_consent()
            sets["consent_at"] = sa.case((gives, at), else_=leads.c.consent_at)
            sets.update({p: sa.case((gives, stage.c[p]), else_=leads.c[p]) for p in _PROOF})
            sets["unconfirmed_since"] = sa.case((_confirms(), sa.null()), else_=leads.c.unconfirmed_since)
        if fields != {"email"}:  # a file of addresses alone changes no lead
            conn.execute(
                sa.update(leads)
                .where(
                    leads.c.id == found.c.lead_id,
                    found.c.row_number == stage.c.row_number,
                    _changed(fields),
                )
                .values(**sets, updated_at=at)
            )
        proof = sa.and_(stage.c.consent, stage.c.consent_via.is_not(None))
        new = sa.select(
            *(stage.c[f] for f in LEAD_FIELDS),
            stage.c.public_id,
            stage.c.email_hash,
            at,
            at,
            sa.case((stage.c.booked, at)),
            sa.case((proof, at)),
            *(sa.case((proof, stage.c[p])) for p in _PROOF),
        ).where(~sa.exists().where(found.c.row_number == stage.c.row_number))
        targets = [*LEAD_FIELDS, "public_id", "email_hash", "created_at", "updated_at", "booked_at"]
        targets += ["consent_at", *_PROOF]
        # PostgreSQL: the new leads written in address order, so that the two indexes of the
        # address (unique, pattern) grow at their end instead of at random pages (1M rows: the
        # INSERT 32.6 s -> 17.4 s; their ids then follow the addresses, not the file's order).
        # SQLite: in file order (its writes are cheap enough there; ids follow the file).
        order = stage.c.email if self.dialect == "postgresql" else stage.c.row_number
        conn.execute(sa.insert(leads).from_select(targets, new.order_by(order)))


def _gives_consent() -> sa.ColumnElement:
    """This row gives consent where the lead has none, or has it without a recorded proof."""
    return sa.and_(
        stage.c.consent,
        stage.c.consent_via.is_not(None),
        sa.or_(sa.not_(leads.c.consent), leads.c.consent_at.is_(None)),
    )


def _confirms() -> sa.ColumnElement:
    """This row's consent (a file: a trusted source) confirms a lead that a public form left
    waiting for its double opt-in, as the row-wise upsert does."""
    return sa.and_(stage.c.consent, stage.c.consent_via.is_not(None), leads.c.unconfirmed_since.is_not(None))


def _changed(fields: frozenset[str]) -> sa.ColumnElement:
    """The staged row changes the lead it matches (only the file's fields count)."""
    parts = [leads.c[f].is_distinct_from(stage.c[f]) for f in fields if f not in ("email", "booked")]
    if "booked" in fields:
        parts.append(sa.and_(sa.not_(leads.c.booked), stage.c.booked))
    if "consent" in fields:
        parts += [_gives_consent(), _confirms()]
    return sa.or_(*parts) if parts else sa.false()
