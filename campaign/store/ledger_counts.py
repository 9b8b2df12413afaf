"""SQLite: the ledger's big writes of `sends` count their rows per statement, not per row.

The send_counts triggers on sends (0012_console2) add one upsert a claimed row and two a settled
one. The claim and the bulk settle instead pause them (`paused`: a row in send_counts_paused,
inside their own transaction: no other writer sees it, 0018_ledger_counts) and add their
statement's counts themselves, one upsert per (campaign, audience, step, status) key.
Every other writer of sends is counted by the triggers as before.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

import sqlalchemy as sa

# (campaign_id, audience, step_key, status) -> change of n
Delta = Counter


@contextmanager
def paused(conn: sa.Connection, pause: bool = True) -> Iterator[Delta]:
    """Within the caller's transaction: the sends triggers skip their rows until the block ends;
    the block adds each changed row to the yielded Delta, written to send_counts at its end.
    An error inside leaves the row to the transaction's rollback. `pause` False: nothing."""
    delta: Delta = Counter()
    if pause:
        conn.exec_driver_sql("INSERT INTO send_counts_paused (id) VALUES (1)")
    yield delta
    if pause:
        conn.exec_driver_sql("DELETE FROM send_counts_paused")
    add_counts(conn, delta)


def add_counts(conn: sa.Connection, delta: Delta) -> None:
    rows = [(*key, n) for key, n in sorted(delta.items()) if n]
    if rows:
        conn.exec_driver_sql(_UPSERT, rows)


def count_claimed(conn: sa.Connection, step_key: str, enrollment_ids: list[int], status: str, delta: Delta):
    """New ledger rows (enrollment_ids, step_key) in `status`: +1 each under its enrollment's key.
    The ids are distinct (one row per enrollment and step)."""
    for part in _parts(enrollment_ids):
        for campaign_id, audience, n in conn.exec_driver_sql(_per_enrollment_sql(len(part)), tuple(part)):
            delta[(campaign_id, audience, step_key, status)] += n


def count_rows(conn: sa.Connection, send_ids: list[str], status: str, delta: Delta) -> None:
    """Before `send_ids` are set to `status` (one statement, the same transaction): each row
    moves from its key under its present status to the same key under `status`."""
    for campaign_id, audience, step_key, old, n in conn.exec_driver_sql(
        _per_send_sql(len(send_ids)), tuple(send_ids)
    ):
        if old != status:
            delta[(campaign_id, audience, step_key, old)] -= n
            delta[(campaign_id, audience, step_key, status)] += n


_IN = 900  # under SQLite's oldest limit of 999 variables

_UPSERT = (
    "INSERT INTO send_counts (campaign_id, audience, step_key, status, n) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (campaign_id, audience, step_key, status) DO UPDATE SET n = send_counts.n + excluded.n"
)


def _parts(values: list) -> Iterator[list]:
    for i in range(0, len(values), _IN):
        yield values[i : i + _IN]


@lru_cache(maxsize=16)
def _per_enrollment_sql(n: int) -> str:
    return (
        "SELECT campaign_id, audience, count(*) FROM enrollments "
        f"WHERE id IN ({', '.join(['?'] * n)}) GROUP BY campaign_id, audience"
    )


@lru_cache(maxsize=16)
def _per_send_sql(n: int) -> str:
    return (
        "SELECT e.campaign_id, e.audience, s.step_key, s.status, count(*) "
        "FROM sends s JOIN enrollments e ON e.id = s.enrollment_id "
        f"WHERE s.send_id IN ({', '.join(['?'] * n)}) GROUP BY 1, 2, 3, 4"
    )
