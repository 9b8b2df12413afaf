"""The due view of an enrollment (DueEnrollment, with its DueLead), read in one statement: the
columns a step reads, the step keys already in the ledger, and suppression. The due walk makes
one a row, so the reading is lean: named tuples, and on SQLite the driver's rows as they come."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import NamedTuple

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from campaign.gc_pause import gc_paused
from campaign.store.base import chunks
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
LEAD_END = 5 + len(DueLead._fields)  # then: the hash missing, the sent step keys, suppressed
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


def due_rows_query(dialect: str, where) -> sa.Select:
    """The enrollments matching `where`, in id order: only the columns a step reads, the
    step keys already in the ledger (joined by ",": keys are [a-z0-9_]) and whether the
    address is suppressed (by the hash kept with the lead, 0014_enroll), in one statement."""
    join = sa.func.string_agg if dialect == "postgresql" else sa.func.group_concat
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
    if dialect == "sqlite":
        for i in TIMES:
            columns[i] = sa.type_coerce(columns[i], sa.String).label(columns[i].name)
    return (
        # Whether the hash is missing, not the hash (64 characters a row the walk never reads).
        sa.select(*columns, leads.c.email_hash.is_(None).label("unhashed"), sent, suppressed)
        .join(leads, leads.c.id == enrollments.c.lead_id)
        .where(where)
        .order_by(enrollments.c.id)
    )


class DueRows(NamedTuple):
    """Due rows as read (fetch_due), before they are made DueEnrollments (build_due): the part
    of a batch that waits on the database, which a PostgreSQL walk's second thread does while
    the caller's thread builds the batch before."""

    rows: list
    suppressed: set[str]  # addresses without a kept hash, found on the suppression list


def read_due(
    conn, hash_email: Callable[[str], str], query: sa.Select, extra: int = 0, params: dict | None = None
) -> list:
    """DueEnrollments from due_rows_query's rows (with `extra` columns after: then
    (due, *extra) tuples; `params` for its bound parameters)."""
    return build_due(fetch_due(conn, hash_email, query, params), extra)


def fetch_due(
    conn, hash_email: Callable[[str], str], query: sa.Select, params: dict | None = None
) -> DueRows:
    """due_rows_query's rows. A lead whose hash is not stored yet (None: rows from before 0012)
    is hashed here and looked up in the suppression list."""
    # The driver's rows as they come, not the result's per-value processing (UTCDateTime's,
    # three times a row). On PostgreSQL in a session time zone of 'UTC', for which psycopg gives
    # times in datetime.UTC itself (for another name, even 'Etc/UTC', a ZoneInfo): no conversion.
    sqlite = conn.dialect.name == "sqlite"
    if not sqlite:
        conn.exec_driver_sql("SET LOCAL TimeZone = 'UTC'")  # this transaction only
    with gc_paused():  # ~5 new tuples a row, none in a cycle (~12% of the PostgreSQL walk's CPU)
        result = conn.execute(query, params or {})
        rows = result.cursor.fetchall()
        result.close()
        return due_rows(conn, hash_email, rows)


def due_rows(conn, hash_email: Callable[[str], str], rows: list) -> DueRows:
    """The driver's rows as DueRows: on SQLite with their times and flags made here; on
    PostgreSQL with their times in datetime.UTC (as they come in a session zone of 'UTC')."""
    if conn.dialect.name == "sqlite":
        rows = [_sqlite_row(r) for r in rows]
    elif rows and rows[0][4].tzinfo is not UTC:  # one loader, one zone: enrolled_at tells
        rows = [_pg_row(r) for r in rows]
    unhashed = {r[EMAIL]: hash_email(r[EMAIL]) for r in rows if r[LEAD_END]}
    suppressed = suppressed_among(conn, unhashed.values()) if unhashed else set()
    return DueRows(rows, {email for email, digest in unhashed.items() if digest in suppressed})


def build_due(due_rows: DueRows, extra: int = 0) -> list:
    """The DueEnrollments of fetch_due's rows (the Python a row costs, no database). The named
    tuples made by tuple.__new__ (their own __new__ is a Python call a tuple), in one list
    comprehension: ~40% of the loop it replaced."""
    rows, suppressed = due_rows
    new, none = tuple.__new__, frozenset()
    with gc_paused():
        found = [
            new(
                DueEnrollment,
                (
                    *r[:5],
                    new(DueLead, r[5:LEAD_END]),
                    frozenset(keys.split(",")) if (keys := r[LEAD_END + 1]) else none,
                    bool(r[LEAD_END + 2]) or (bool(r[LEAD_END]) and r[EMAIL] in suppressed),
                ),
            )
            for r in rows
        ]
        if extra:
            found = [(due, *r[LEAD_END + 3 :]) for due, r in zip(found, rows, strict=True)]
    return found


def id_parts(dialect: str, ids: list[int]) -> list[list[int]]:
    """The ids in lists for id_among: all at once on PostgreSQL (one array parameter)."""
    return [ids] if dialect == "postgresql" else list(chunks(ids))


def id_among(dialect: str, ids: list[int]):
    """enrollments.id among `ids`: on PostgreSQL `= ANY(array)`, one parameter whatever the
    count (one cached statement); on SQLite IN (...) of at most CHUNK."""
    if dialect == "postgresql":
        return enrollments.c.id == sa.any_(sa.bindparam(None, ids, type_=postgresql.ARRAY(sa.Integer)))
    return enrollments.c.id.in_(ids)


_PARSED: dict[str | datetime, datetime] = {}
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


def _pg_row(row: tuple) -> list:
    """A PostgreSQL due row with its times in datetime.UTC, as UTCDateTime gives them
    (converted once per distinct value): when the session's zone was not 'UTC' after all."""
    row = list(row)
    for i in TIMES:
        if (value := row[i]) is not None:
            found = _PARSED.get(value)
            if found is None:
                if len(_PARSED) > 10_000:
                    _PARSED.clear()
                found = _PARSED[value] = value.astimezone(UTC)
            row[i] = found
    return row
