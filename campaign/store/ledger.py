"""The send ledger: one row per (enrollment, step), claimed before the HTTP call and settled after.

Claims are single atomic INSERT ... ON CONFLICT DO NOTHING statements, so parallel workers and
retried runs can never create a second ledger row for an (enrollment, step).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

import sqlalchemy as sa

from campaign.models import SendResult, SendStatus
from campaign.store.base import StorePart
from campaign.store.enrollments import write_enrollment_groups
from campaign.store.ledger_counts import count_claimed, count_rows, paused
from campaign.store.tables import (
    campaigns,
    enrollments,
    events,
    leads,
    new_send_id,
    previous_send_ids,
    sends,
)


@dataclass(frozen=True)
class Claim:
    send_id: str
    enrollment_id: int
    step_key: str


@dataclass(frozen=True)
class UnknownSend:
    send_id: str
    enrollment_id: int
    step_key: str
    claimed_at: datetime


class Ledger(StorePart):
    def claim(self, wanted: list[tuple[int, str]], now: datetime, transport: str) -> list[Claim]:
        """Write ledger rows for (enrollment_id, step_key) pairs. One statement per 150 pairs,
        in one transaction; a pair that already has a row (another worker, an earlier run) is
        silently not claimed."""
        if not wanted:
            return []
        ids = _claim_send_ids(len(wanted))
        claims: list[Claim] = []
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                return _claim_postgresql(conn, ids, wanted, now, transport)
            # Multi-row INSERT ... RETURNING written out for the driver: SQLAlchemy's executemany
            # processed every row's six values (a third of a bulk step's claim).
            mark = _mark(conn)
            fixed = (SendStatus.claimed.value, transport, _bound(conn, sends.c.claimed_at, now))
            with paused(conn) as delta:  # send_counts: per step, not per row (ledger_counts)
                per_step: dict[str, list[int]] = {}
                for start in range(0, len(wanted), _ROWS):
                    part = wanted[start : start + _ROWS]
                    params: list = []
                    for i, (enrollment_id, step_key) in enumerate(part, start):
                        params += (ids[i], enrollment_id, step_key, *fixed)
                    result = conn.exec_driver_sql(_claim_sql(len(part), mark), tuple(params))
                    # The driver's rows: iterating the Result cost a fetch and a Row per claim.
                    for row in result.cursor.fetchall():
                        claims.append(Claim(*row))
                        per_step.setdefault(row[2], []).append(row[1])
                    result.close()
                for step_key, enrollment_ids in per_step.items():
                    count_claimed(conn, step_key, enrollment_ids, SendStatus.claimed.value, delta)
        return claims

    def settle(
        self,
        results: list[SendResult],
        now: datetime,
        emailed: Iterable[int] = (),
        enrollment_groups: dict[tuple, list[int]] | None = None,
    ) -> None:
        """Write each send's outcome; `emailed` lead ids get last_email_at = now in the same
        transaction (a group recorded mid-batch keeps the gap even if the run dies), and so do
        `enrollment_groups` (their next step, as write_enrollment_groups takes them).

        Set-based: one UPDATE ... WHERE send_id IN (...) per outcome shared by many sends (every
        recipient of a bulk request has the same status and message id), an executemany for
        the rest."""
        if not results:
            return
        if self.dialect == "postgresql":
            with self.engine.begin() as conn:
                _settle_postgresql(conn, results, now)
                _set_last_email_at(conn, emailed, now)
                write_enrollment_groups(conn, enrollment_groups or {})
            return
        outcomes: dict[tuple, list[str]] = {}
        for r in results:
            outcomes.setdefault((r.status.value, r.message_id, r.error), []).append(r.send_id)
        alone = [(outcome, ids[0]) for outcome, ids in outcomes.items() if len(ids) == 1]
        with self.engine.begin() as conn:
            mark = _mark(conn)
            settled_at = _bound(conn, sends.c.settled_at, now)
            shared = [(outcome, ids) for outcome, ids in outcomes.items() if len(ids) > 1]
            with paused(conn, bool(shared)) as delta:  # send_counts per statement (ledger_counts)
                for (status, message_id, error), ids in shared:
                    for chunk in _chunks(ids):
                        count_rows(conn, chunk, status, delta)
                        conn.exec_driver_sql(
                            "UPDATE sends SET status = {m}, message_id = {m}, error = {m}, settled_at = {m} "
                            "WHERE send_id IN ({marks})".format(m=mark, marks=", ".join([mark] * len(chunk))),
                            (status, message_id, error, settled_at, *chunk),
                        )
            if alone:
                conn.execute(
                    sa.update(sends)
                    .where(sends.c.send_id == sa.bindparam("b_send_id"))
                    .values(
                        status=sa.bindparam("b_status"),
                        message_id=sa.bindparam("b_message_id"),
                        error=sa.bindparam("b_error"),
                        settled_at=now,
                    ),
                    [
                        {"b_send_id": send_id, "b_status": status, "b_message_id": mid, "b_error": error}
                        for (status, mid, error), send_id in alone
                    ],
                )
            _set_last_email_at(conn, emailed, now)
            write_enrollment_groups(conn, enrollment_groups or {})

    def mark_emailed(self, lead_ids: Iterable[int], now: datetime) -> None:
        lead_ids = list(lead_ids)
        if lead_ids:
            with self.engine.begin() as conn:
                _set_last_email_at(conn, lead_ids, now)

    def release(self, send_ids: Iterable[str]) -> int:
        """Delete claims whose email was never sent (not attempted, or refused before delivery):
        the step is due again at the next tick. Only rows still 'claimed' are touched."""
        ids = list(send_ids)
        released = 0
        with self.engine.begin() as conn:
            for i in range(0, len(ids), 500):
                released += conn.execute(
                    sa.delete(sends).where(
                        sends.c.send_id.in_(ids[i : i + 500]), sends.c.status == SendStatus.claimed.value
                    )
                ).rowcount
        return released

    def mark_stale_claims_unknown(self, cutoff: datetime, now: datetime) -> int:
        """Claims still 'claimed' from before `cutoff` belong to a run that died mid-send: the
        request may have reached the ESP. Mark them 'unknown' and count the gap for their leads
        from the claim (last_email_at raised to claimed_at), so no next step comes too soon."""
        stale = (
            sa.select(sends.c.send_id, sends.c.claimed_at, enrollments.c.lead_id)
            .join(enrollments, enrollments.c.id == sends.c.enrollment_id)
            .where(sends.c.status == SendStatus.claimed.value, sends.c.claimed_at < cutoff)
        )
        with self.engine.begin() as conn:
            rows = conn.execute(stale).all()
            if not rows:
                return 0
            conn.execute(
                sa.update(sends)
                .where(
                    sends.c.send_id == sa.bindparam("b_send_id"), sends.c.status == SendStatus.claimed.value
                )
                .values(
                    status=SendStatus.unknown.value,
                    settled_at=now,
                    error="the sending run stopped before it settled this send",
                ),
                [{"b_send_id": r.send_id} for r in rows],
            )
            latest: dict[int, datetime] = {}
            for r in rows:
                latest[r.lead_id] = max(latest.get(r.lead_id, r.claimed_at), r.claimed_at)
            conn.execute(
                sa.update(leads)
                .where(
                    leads.c.id == sa.bindparam("b_lead"),
                    sa.or_(leads.c.last_email_at.is_(None), leads.c.last_email_at < sa.bindparam("b_at")),
                )
                .values(last_email_at=sa.bindparam("b_at")),
                [{"b_lead": k, "b_at": v} for k, v in latest.items()],
            )
        return len(rows)

    def confirm_unknown_from_events(self, kinds: Iterable[str], now: datetime) -> int:
        """'unknown' sends with a stored event of one of `kinds` (processed, delivered) for their
        send_id did reach the ESP: mark them 'sent' (message id from the event when missing)."""
        kinds = list(kinds)
        unknown = sends.c.status == SendStatus.unknown.value
        query = (
            sa.select(sends.c.send_id, sends.c.message_id, events.c.raw)
            .join(events, events.c.send_id == sends.c.send_id)
            .where(unknown, events.c.event.in_(kinds))
        )
        # Events stored under an id the row had before a resend count too.
        earlier = (
            sa.select(sends.c.send_id, sends.c.message_id, events.c.raw)
            .join(previous_send_ids, previous_send_ids.c.send_row_id == sends.c.id)
            .join(events, events.c.send_id == previous_send_ids.c.send_id)
            .where(unknown, events.c.event.in_(kinds))
        )
        with self.engine.begin() as conn:
            found: dict[str, str | None] = {}
            for send_id, message_id, raw in [*conn.execute(query), *conn.execute(earlier)]:
                sg = (raw or {}).get("sg_message_id") if isinstance(raw, dict) else None
                found.setdefault(
                    send_id, message_id or (sg.split(".", 1)[0] if isinstance(sg, str) else None)
                )
            if not found:
                return 0
            conn.execute(
                sa.update(sends)
                .where(
                    sends.c.send_id == sa.bindparam("b_send_id"), sends.c.status == SendStatus.unknown.value
                )
                .values(
                    status=SendStatus.sent.value,
                    message_id=sa.bindparam("b_message_id"),
                    settled_at=now,
                    error=None,
                ),
                [{"b_send_id": k, "b_message_id": v} for k, v in found.items()],
            )
        return len(found)

    def unknown_sends(self, claimed_before: datetime, max_resends: int | None = None) -> list[UnknownSend]:
        """'unknown' sends claimed before `claimed_before`, in active campaigns, oldest first;
        with `max_resends`, only rows resent fewer times than that (the others are capped)."""
        query = (
            sa.select(sends.c.send_id, sends.c.enrollment_id, sends.c.step_key, sends.c.claimed_at)
            .join(enrollments, enrollments.c.id == sends.c.enrollment_id)
            .join(campaigns, campaigns.c.id == enrollments.c.campaign_id)
            .where(
                sends.c.status == SendStatus.unknown.value,
                sends.c.claimed_at < claimed_before,
                campaigns.c.state == "active",
            )
            .order_by(sends.c.claimed_at, sends.c.id)
        )
        if max_resends is not None:
            query = query.where(sends.c.attempts <= max_resends)
        with self.engine.connect() as conn:
            return [UnknownSend(*row) for row in conn.execute(query)]

    def capped_unknown(self, max_resends: int) -> int:
        """'unknown' rows already sent 1 + `max_resends` times: never sent again; a late event
        may still settle them. The tick report and `campaign status` count them."""
        query = sa.select(sa.func.count()).where(
            sends.c.status == SendStatus.unknown.value, sends.c.attempts > max_resends
        )
        with self.engine.connect() as conn:
            return conn.execute(query).scalar_one()

    def reclaim_unknown(
        self, send_ids: Iterable[str], now: datetime, transport: str, max_resends: int | None = None
    ) -> dict[str, Claim]:
        """Claim 'unknown' rows again for a resend: the same ledger row with a new send_id,
        status 'claimed', attempts + 1; the old send_id goes to previous_send_ids, so its late
        events still find the row. A row resent `max_resends` times already is not claimed.
        Returns {old send_id: new claim} for the rows this call won (a row another worker
        reclaimed first is left to it)."""
        won: dict[str, Claim] = {}
        under_cap = sa.true() if max_resends is None else sends.c.attempts <= max_resends
        with self.engine.begin() as conn:
            for old in send_ids:
                new = new_send_id()
                row = conn.execute(
                    sa.update(sends)
                    .where(
                        sends.c.send_id == old,
                        sends.c.status == SendStatus.unknown.value,
                        under_cap,
                    )
                    .values(
                        send_id=new,
                        status=SendStatus.claimed.value,
                        attempts=sends.c.attempts + 1,
                        claimed_at=now,
                        settled_at=None,
                        message_id=None,
                        transport=transport,
                        error=f"resend of {old}",
                    )
                    .returning(sends.c.id, sends.c.enrollment_id, sends.c.step_key)
                ).first()
                if row is not None:
                    conn.execute(
                        sa.insert(previous_send_ids).values(send_id=old, send_row_id=row.id, replaced_at=now)
                    )
                    won[old] = Claim(new, row.enrollment_id, row.step_key)
        return won

    def unclaim_resends(self, new_to_old: dict[str, str]) -> None:
        """Undo reclaim_unknown for resends that were never sent: back to 'unknown' with the old
        send_id (its events may still come) and the old attempt count."""
        if not new_to_old:
            return
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(sends)
                .where(sends.c.send_id == sa.bindparam("b_new"), sends.c.status == SendStatus.claimed.value)
                .values(
                    send_id=sa.bindparam("b_old"),
                    status=SendStatus.unknown.value,
                    attempts=sends.c.attempts - 1,
                    error=None,
                ),
                [{"b_new": n, "b_old": o} for n, o in new_to_old.items()],
            )
            conn.execute(
                sa.delete(previous_send_ids).where(previous_send_ids.c.send_id.in_(list(new_to_old.values())))
            )


# Bound parameters per IN list: under SQLite's oldest limit (999), far under PostgreSQL's.
_IN_CHUNK = 900
# Claimed rows per INSERT: six values each, under the same limit.
_ROWS = 150


def _chunks(values: list) -> Iterable[list]:
    for i in range(0, len(values), _IN_CHUNK):
        yield values[i : i + _IN_CHUNK]


def _claim_send_ids(n: int) -> list[str]:
    """`n` send ids of 32 hex digits, as new_send_id makes them but for the first 12: the
    moment of the claim in milliseconds, then 80 random bits (unguessable still). Ids of one
    claim sit side by side in the unique index on send_id, so inserting a step's rows and
    settling them by send_id touch a few pages instead of a random page per row: half the
    claim's time at 200,000 rows in the ledger (21 -> 11 us a row), and more as it grows."""
    prefix = f"{time.time_ns() // 1_000_000:012x}"[-12:]
    rand = os.urandom(10 * n).hex()
    return [prefix + rand[20 * i : 20 * i + 20] for i in range(n)]


def _mark(conn: sa.Connection) -> str:
    """The driver's positional placeholder (statements given to exec_driver_sql as they are)."""
    return "?" if conn.dialect.paramstyle == "qmark" else "%s"


def _bound(conn: sa.Connection, column: sa.Column, value):
    """`value` as SQLAlchemy would bind it to `column` (a UTC datetime: a naive string on SQLite)."""
    process = column.type.dialect_impl(conn.dialect).bind_processor(conn.dialect)
    return process(value) if process else value


@lru_cache(maxsize=16)
def _claim_sql(rows: int, mark: str) -> str:
    values = ", ".join(["(" + ", ".join([mark] * 6) + ")"] * rows)
    return (
        "INSERT INTO sends (send_id, enrollment_id, step_key, status, transport, claimed_at) "
        f"VALUES {values} ON CONFLICT (enrollment_id, step_key) DO NOTHING "
        "RETURNING send_id, enrollment_id, step_key"
    )


def _set_last_email_at(conn: sa.Connection, lead_ids: Iterable[int], now: datetime) -> None:
    mark, at = _mark(conn), _bound(conn, leads.c.last_email_at, now)
    if conn.dialect.name == "postgresql":  # one statement, the ids as one array parameter
        if ids := sorted(set(lead_ids)):
            conn.exec_driver_sql(_PG_LAST_EMAIL_AT, (at, ids))
        return
    for chunk in _chunks(sorted(set(lead_ids))):
        conn.exec_driver_sql(
            f"UPDATE leads SET last_email_at = {mark} WHERE id IN ({', '.join([mark] * len(chunk))})",
            (at, *chunk),
        )


# ---- PostgreSQL: one statement a call, the rows as arrays ---------------------------------------

# A claim's rows as three arrays: one statement (one plan, one run of the send_counts statement
# trigger) whatever the size, instead of one 150-row INSERT (900 parameters) at a time.
_PG_CLAIM = (
    "INSERT INTO sends (send_id, enrollment_id, step_key, status, transport, claimed_at) "
    "SELECT w.send_id, w.enrollment_id, w.step_key, %s, %s, %s "
    "FROM unnest(%s::varchar[], %s::integer[], %s::varchar[]) AS w (send_id, enrollment_id, step_key) "
    "ON CONFLICT (enrollment_id, step_key) DO NOTHING RETURNING send_id, enrollment_id, step_key"
)
_PG_SETTLE = (
    "UPDATE sends SET status = r.status, message_id = r.message_id, error = r.error, settled_at = %s "
    "FROM unnest(%s::varchar[], %s::varchar[], %s::varchar[], %s::text[]) "
    "AS r (send_id, status, message_id, error) "
    "WHERE sends.send_id = r.send_id"
)

# SET LOCAL of three planner settings in one round trip.
_PG_PROBES_ONLY = (
    "SELECT set_config('enable_seqscan', 'off', true), set_config('enable_hashjoin', 'off', true), "
    "set_config('enable_mergejoin', 'off', true)"
)
_PG_LAST_EMAIL_AT = "UPDATE leads SET last_email_at = %s WHERE id = ANY(%s::integer[])"


def _claim_postgresql(
    conn: sa.Connection, ids: list[str], wanted: list[tuple[int, str]], now: datetime, transport: str
) -> list[Claim]:
    rows = conn.exec_driver_sql(
        _PG_CLAIM,
        (
            SendStatus.claimed.value,
            transport,
            _bound(conn, sends.c.claimed_at, now),
            ids,
            [enrollment_id for enrollment_id, _ in wanted],
            [step_key for _, step_key in wanted],
        ),
    )
    return [Claim(*row) for row in rows]


def _settle_postgresql(conn: sa.Connection, results: list[SendResult], now: datetime) -> None:
    """Every outcome in one UPDATE ... FROM unnest(...), each send found by its unique send_id.
    Only index probes: the ledger's statistics are those of the table before the tick (empty on a
    first run), and the planner took a sequential scan of all of sends for a settle (625 sends
    with 50,000 rows in the ledger: 3,300 pages read for them), each one longer as the tick
    claims more."""
    latest = {r.send_id: r for r in results}  # a send settled twice in one call: the last word
    conn.exec_driver_sql(_PG_PROBES_ONLY)
    conn.exec_driver_sql(
        _PG_SETTLE,
        (
            _bound(conn, sends.c.settled_at, now),
            list(latest),
            [r.status.value for r in latest.values()],
            [r.message_id for r in latest.values()],
            [r.error for r in latest.values()],
        ),
    )
