"""The check several tests share: the trigger-kept send_counts equal a GROUP BY over the ledger."""

from __future__ import annotations

import sqlalchemy as sa

TRIGGERS = {
    "send_counts_insert",
    "send_counts_update",
    "send_counts_delete",
    "send_counts_enrollment_delete",
    "send_counts_enrollment_move",
}


def assert_counts_match(store, at_least: int = 1) -> dict:
    """send_counts equals the ledger grouped by (campaign, audience, step, status), and holds at
    least `at_least` ledger rows (so an empty ledger and a dead trigger cannot pass together).
    Returns {(campaign_id, audience, step, status): n}."""
    return assert_kept_counts(store, "send_counts", store.send_counts_drift(), at_least)


def assert_kept_counts(store, table: str, drift: dict, at_least: int) -> dict:
    """A trigger-kept count table with no drift from a direct count, holding at least
    `at_least` in all; returns {key columns: n} for its non-zero rows."""
    assert drift == {}
    with store.engine.connect() as conn:
        kept = {tuple(r[:-1]): r[-1] for r in conn.execute(sa.text(f"SELECT * FROM {table}")) if r[-1]}
    assert sum(kept.values()) >= at_least, kept
    return kept


def triggers_present(store, names: set[str] = TRIGGERS) -> set[str]:
    """Which of `names` exist as triggers on sends or enrollments."""
    query = (
        "SELECT name FROM sqlite_master WHERE type = 'trigger'"
        if store.dialect == "sqlite"
        else "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal "
        "AND tgrelid IN ('sends'::regclass, 'enrollments'::regclass)"
    )
    with store.engine.connect() as conn:
        return set(conn.execute(sa.text(query)).scalars()) & names
