"""SQLite: the ledger's claim and bulk settle count send_counts per statement, not per row
(0018_ledger_counts); every other writer is still counted by the triggers; the partial indexes
of sends serve their readers. Counts always equal a GROUP BY over the ledger."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from send_counts_support import TRIGGERS, assert_counts_match, triggers_present
from store_support import downgrade, model_diffs
from test_send_counts import LATER, MONDAY_10, enrolled

from campaign.models import SendResult, SendStatus


@pytest.fixture
def sqlite_store(store):
    if store.dialect != "sqlite":
        pytest.skip("SQLite's row triggers: the PostgreSQL ones count per statement already")
    return store


def _rows_written(store):
    """[rows changed] per committed transaction of `store`, triggers' rows included
    (sqlite3's total_changes counts them)."""
    written: list[int] = []

    def begin(conn):
        conn.info["changes_at_begin"] = conn.connection.dbapi_connection.total_changes

    def commit(conn):
        written.append(conn.connection.dbapi_connection.total_changes - conn.info.pop("changes_at_begin"))

    sa.event.listen(store.engine, "begin", begin)
    sa.event.listen(store.engine, "commit", commit)
    return written


def _paused_rows(store) -> int:
    with store.engine.connect() as conn:
        return conn.execute(sa.text("SELECT count(*) FROM send_counts_paused")).scalar()


def test_claim_and_bulk_settle_write_counts_per_key_not_per_row(sqlite_store):
    store = sqlite_store
    enrollment_ids = enrolled(store, 40, audiences=("gad", "social", "general"))
    written = _rows_written(store)
    claims = store.claim([(e, "welcome") for e in enrollment_ids], MONDAY_10, "sendgrid")
    # 40 ledger rows, the pause row in and out, one upsert per (audience, step, status): 3.
    # The row triggers wrote 40 upserts more.
    assert written == [40 + 2 + 3]
    assert_counts_match(store, at_least=40)

    # A run died: its claims became 'unknown'; then its late settle arrives with the others.
    store.mark_stale_claims_unknown(LATER, LATER)
    written.clear()
    results = [SendResult(send_id=c.send_id, status=SendStatus.sent, message_id="m1") for c in claims[:30]]
    results += [SendResult(send_id=c.send_id, status=SendStatus.failed, error="refused") for c in claims[30:]]
    # The same send twice in one call (its own outcome after the shared one: the last word).
    results.append(SendResult(send_id=claims[0].send_id, status=SendStatus.failed, error="late"))
    store.settle(results, LATER)
    # 41 row updates; the pause row in and out; upserts: -unknown, +sent and +failed per
    # audience (9); the one settled alone by its trigger, two more.
    assert written == [41 + 2 + 9 + 2]
    kept = assert_counts_match(store, at_least=40)
    assert sum(n for k, n in kept.items() if k[3] == "sent") == 29
    assert sum(n for k, n in kept.items() if k[3] == "failed") == 11
    assert _paused_rows(store) == 0

    # A second step, settled in two shared outcomes.
    second = store.claim([(c.enrollment_id, "brain") for c in claims[:20]], LATER, "sendgrid")
    store.settle(
        [SendResult(send_id=c.send_id, status=SendStatus.sent, message_id="m2") for c in second[:10]]
        + [SendResult(send_id=c.send_id, status=SendStatus.sent, message_id="m3") for c in second[10:]],
        LATER,
    )
    kept = assert_counts_match(store, at_least=60)
    assert sum(n for k, n in kept.items() if k[2] == "brain" and k[3] == "sent") == 20


def test_the_pause_never_outlives_its_transaction(sqlite_store):
    """A claim that fails mid-way rolls its pause back with it; writers other than the claim and
    the bulk settle (here plain SQL, and the one-row settle) are counted by the triggers."""
    store = sqlite_store
    enrollment_ids = enrolled(store, 10)
    with pytest.raises(sa.exc.IntegrityError):  # no such enrollment: the foreign key refuses it
        store.claim([(e, "welcome") for e in enrollment_ids] + [(999_999, "welcome")], MONDAY_10, "outbox")
    assert _paused_rows(store) == 0
    assert_counts_match(store, at_least=0)
    claims = store.claim([(e, "welcome") for e in enrollment_ids], MONDAY_10, "outbox")
    store.settle([SendResult(send_id=claims[0].send_id, status=SendStatus.sent, message_id="x")], LATER)
    with store.engine.begin() as conn:
        conn.execute(sa.text("UPDATE sends SET status = 'unknown' WHERE status = 'claimed' AND id % 2 = 0"))
        conn.execute(sa.text("DELETE FROM sends WHERE status = 'claimed' AND id % 3 = 0"))
    kept = assert_counts_match(store, at_least=5)
    assert sum(n for k, n in kept.items() if k[3] == "sent") == 1
    with store.engine.connect() as conn:
        assert sum(kept.values()) == conn.execute(sa.text("SELECT count(*) FROM sends")).scalar()


def test_settled_only_indexes_serve_their_readers(sqlite_store):
    """ix_sends_message_id and ix_sends_status_settled hold settled rows only (a claim adds no
    entry to them) and the readers' plans still search them."""
    store = sqlite_store
    enrollment_ids = enrolled(store, 4)
    claims = store.claim([(e, "welcome") for e in enrollment_ids], MONDAY_10, "outbox")
    with store.engine.connect() as conn:
        sql = dict(conn.execute(sa.text("SELECT name, sql FROM sqlite_master WHERE type = 'index'")).all())
        assert sql["ix_sends_message_id"].endswith("WHERE message_id IS NOT NULL")
        assert sql["ix_sends_status_settled"].endswith("WHERE settled_at IS NOT NULL")
        by_message = conn.execute(
            sa.text("EXPLAIN QUERY PLAN SELECT send_id FROM sends WHERE message_id IN (:a, :b)"),
            {"a": "m1", "b": "m2"},
        ).all()
        sent_today = conn.execute(
            sa.text("EXPLAIN QUERY PLAN SELECT count(*) FROM sends WHERE status = :s AND settled_at >= :t"),
            {"s": "sent", "t": "2026-03-02 00:00:00"},
        ).all()
    assert "USING INDEX ix_sends_message_id" in by_message[-1][-1]
    assert "USING COVERING INDEX ix_sends_status_settled" in sent_today[-1][-1]
    store.settle(
        [SendResult(send_id=c.send_id, status=SendStatus.sent, message_id="m1") for c in claims], LATER
    )
    with store.engine.connect() as conn:
        found = conn.execute(sa.text("SELECT count(*) FROM sends WHERE message_id IN ('m1', 'm2')")).scalar()
    assert found == 4


MINE = ("send_counts_paused", "ix_sends_message_id", "ix_sends_status_settled")


def test_the_migration_upgrades_and_downgrades(store, database_url):

    def diffs() -> list:
        return model_diffs(store, *MINE)

    def trigger_sql() -> str:
        if store.dialect != "sqlite":
            return ""
        with store.engine.connect() as conn:
            return " ".join(
                conn.execute(sa.text("SELECT sql FROM sqlite_master WHERE type = 'trigger'")).scalars()
            )

    enrollment_ids = enrolled(store, 6)
    assert diffs() == []
    downgrade(store, database_url, "0017_walk_leases")
    assert "send_counts_paused" not in sa.inspect(store.engine).get_table_names()
    assert triggers_present(store) == TRIGGERS and "send_counts_paused" not in trigger_sql()
    with store.engine.begin() as conn:  # the rows by hand: today's ledger code needs today's schema
        for i, e in enumerate(enrollment_ids):
            conn.execute(
                sa.text(
                    "INSERT INTO sends (send_id, enrollment_id, step_key, status, transport, claimed_at) "
                    "VALUES (:s, :e, 'welcome', 'claimed', 'outbox', :at)"
                ),
                {"s": f"s{i}", "e": e, "at": MONDAY_10},
            )
    assert_counts_match(store, at_least=6)
    store.migrate()
    assert diffs() == [] and triggers_present(store) == TRIGGERS
    if store.dialect == "sqlite":
        assert trigger_sql().count("NOT EXISTS (SELECT 1 FROM send_counts_paused)") == 3
    claims = store.claim([(e, "brain") for e in enrollment_ids], LATER, "outbox")
    store.settle(
        [SendResult(send_id=c.send_id, status=SendStatus.sent, message_id="m") for c in claims], LATER
    )
    kept = assert_counts_match(store, at_least=12)
    assert sum(n for k, n in kept.items() if k[3] == "sent") == 6
