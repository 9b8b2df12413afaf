"""ledger_counts: on SQLite, the bulk step's big writes of `sends` count their rows per statement

The send_counts row triggers (0012_console2) cost the SQLite bulk step two upserts a settled
send and one a claim (each through the send's enrollment): a third of the settle's UPDATE and of
the claim's INSERT (bench/RESULTS.md, branch sqlcounts). The ledger's claim and its bulk settle
now add their statement's counts themselves, one upsert per (campaign, audience, step, status),
in the same transaction (store/ledger.py, `_counted_by_statement`).

They tell the triggers so with a row in `send_counts_paused`, inserted at the start of their
statements and deleted before they return, inside their own transaction. SQLite has one writer
at a time and readers see only committed rows, so no other writer ever sees that row: every
other writer (events, reconciliation, resends, releases, forget_lead, the console, a sqlite3
shell) is counted by the triggers as before, and a writer that dies mid-transaction takes the
row with it in the rollback. Each sends trigger gains `NOT EXISTS (SELECT 1 FROM
send_counts_paused)` in its WHEN clause (a one-page probe a row). The enrollment triggers are
not paused.

Indexes, SQLite only: ix_sends_message_id and ix_sends_status_settled keep settled rows only
(message_id IS NOT NULL, settled_at IS NOT NULL): a claim adds an entry to neither and a settle
moves none (it adds one to each). Their readers, events by message id (`message_id IN (...)`)
and the overview's "sent today" (`status = 'sent' AND settled_at >= ?`), imply the condition,
and SQLite takes the partial index for them (EXPLAIN QUERY PLAN: tests/test_ledger_counts.py).

PostgreSQL: nothing changes (its triggers are statement triggers already; its indexes stay
whole); the table exists there too (the models are the same on both) and stays empty.

A later migration that rebuilds `sends` must create these triggers again (`create_triggers`
here, not 0012's).

Revision ID: 0018_ledger_counts
Revises: 0017_walk_leases
"""

import importlib

import sqlalchemy as sa
from alembic import op

revision = "0018_ledger_counts"
down_revision = "0017_walk_leases"
branch_labels = None
depends_on = None

_console2 = importlib.import_module("campaign.migrations.versions.0012_console2")

NOT_PAUSED = "NOT EXISTS (SELECT 1 FROM send_counts_paused)"
ON_SENDS = ("send_counts_insert", "send_counts_update", "send_counts_delete")


def _paused(spec: str) -> str:
    """0012's trigger `spec` (on sends) with NOT_PAUSED in its WHEN clause."""
    head, body = spec.split(" BEGIN ", 1)
    if " WHEN " in head:
        on, when = head.split(" WHEN ", 1)
        return f"{on} WHEN ({when}) AND {NOT_PAUSED} BEGIN {body}"
    return f"{head} WHEN {NOT_PAUSED} BEGIN {body}"


SQLITE = {name: _paused(_console2.SQLITE[name]) for name in ON_SENDS}


def create_triggers() -> None:
    """SQLite: the sends triggers that a paused statement leaves to its writer."""
    for name, spec in SQLITE.items():
        op.execute(f"CREATE TRIGGER {name} {spec}")


# SQLite: (name, columns, the rows kept); PostgreSQL keeps the whole indexes.
SETTLED_ONLY = (
    ("ix_sends_message_id", ["message_id"], "message_id IS NOT NULL"),
    ("ix_sends_status_settled", ["status", "settled_at", "enrollment_id"], "settled_at IS NOT NULL"),
)


def upgrade() -> None:
    op.create_table("send_counts_paused", sa.Column("id", sa.Integer(), primary_key=True))
    if op.get_bind().dialect.name == "sqlite":
        for name in ON_SENDS:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
        create_triggers()
        for name, columns, where in SETTLED_ONLY:
            op.drop_index(name, table_name="sends")
            op.create_index(name, "sends", columns, sqlite_where=sa.text(where))


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for name, columns, _ in SETTLED_ONLY:
            op.drop_index(name, table_name="sends")
            op.create_index(name, "sends", columns)
        for name in ON_SENDS:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
            op.execute(f"CREATE TRIGGER {name} {_console2.SQLITE[name]}")
    op.drop_table("send_counts_paused")
