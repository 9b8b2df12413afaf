"""overview: enrollments per (campaign, audience, state) kept by triggers; covering indexes for
"due in the next 24 h" and "sent today" (the console overview at 1M leads, issue 10)

`enrollment_counts` holds, per (campaign, audience, state), how many enrollments there are, kept
by the database in the same transaction as every change of `enrollments`, as `send_counts`
(0012_console2) does for the ledger. The overview and `campaign status` read ~16 rows instead of
grouping 900k enrollments (73 ms SQLite, 422 ms PostgreSQL at 1M; bench/RESULTS.md).

- SQLite: row triggers AFTER INSERT / UPDATE OF (campaign_id, audience, state) WHEN one of them
  changed / DELETE, each an upsert of +1 or -1.
- PostgreSQL: statement triggers over transition tables for INSERT, UPDATE and DELETE: one
  aggregated upsert per statement, keys in order (the set-based enrollment of 900k rows is one
  statement). Not a row trigger on UPDATE OF state: each row's upsert adds a version of the same
  counts row inside one transaction, and the next upsert walks them all (quadratic: a campaign stop
  of 140,000 enrollments ran 750 s, against 6.7 s without it). Transition tables cannot be limited
  to columns, so the tick's next_due_at and lease UPDATEs call it too; their deltas sum to zero
  per key and nothing is written (bench/RESULTS.md: what the triggers cost).

The upgrade creates the triggers and then fills the table, in one transaction (CREATE TRIGGER on
PostgreSQL locks out writers of enrollments until the commit: nothing is missed). A later
migration that rebuilds `enrollments` must create the triggers again (`create_triggers`).

Indexes:
- ix_enrollments_campaign_due (campaign_id, state, next_due_at): "due in the next 24 h" of one
  campaign from the index alone (ix_enrollments_due has no campaign_id: every due row was read).
- ix_sends_status_settled gains enrollment_id: "sent today" joins each of today's sends to its
  enrollment for the campaign; with the id in the index it no longer reads each send's row
  (33.8 -> 4.8 ms for 5,332 sends at 200k on SQLite). Same name, one index replaced by another.

Revision ID: 0016_overview
Revises: 0015_forms
"""

import sqlalchemy as sa
from alembic import op

revision = "0016_overview"
down_revision = "0015_forms"
branch_labels = None
depends_on = None

KEY = "campaign_id, audience, state"
UPSERT = f"ON CONFLICT ({KEY}) DO UPDATE SET n = enrollment_counts.n + excluded.n"
MOVED = (
    "OLD.campaign_id IS NOT NEW.campaign_id OR OLD.audience IS NOT NEW.audience OR OLD.state IS NOT NEW.state"
)


def _sqlite_add(row: str, sign: str) -> str:
    return (
        f"INSERT INTO enrollment_counts ({KEY}, n) "
        f"VALUES ({row}.campaign_id, {row}.audience, {row}.state, {sign}1) {UPSERT};"
    )


SQLITE = {
    "enrollment_counts_insert": f"AFTER INSERT ON enrollments BEGIN {_sqlite_add('NEW', '+')} END",
    "enrollment_counts_update": (
        f"AFTER UPDATE OF campaign_id, audience, state ON enrollments WHEN {MOVED} "
        f"BEGIN {_sqlite_add('OLD', '-')} {_sqlite_add('NEW', '+')} END"
    ),
    "enrollment_counts_delete": f"AFTER DELETE ON enrollments BEGIN {_sqlite_add('OLD', '-')} END",
}

# (campaign_id, audience, state, d) rows -> one upsert per key, in key order.
_PG_APPLY = (
    f"INSERT INTO enrollment_counts AS c ({KEY}, n) "
    "SELECT d.campaign_id, d.audience, d.state, sum(d.d) FROM ({rows}) AS d (campaign_id, audience, state, d) "
    "GROUP BY 1, 2, 3 HAVING sum(d.d) <> 0 ORDER BY 1, 2, 3 "
    f"ON CONFLICT ({KEY}) DO UPDATE SET n = c.n + excluded.n"
)
PG_FUNCTIONS = {
    "enrollment_counts_apply": f"""
BEGIN
  IF TG_OP = 'INSERT' THEN
    {_PG_APPLY.format(rows="SELECT campaign_id, audience, state, 1 FROM new_rows")};
  ELSIF TG_OP = 'DELETE' THEN
    {_PG_APPLY.format(rows="SELECT campaign_id, audience, state, -1 FROM old_rows")};
  ELSE
    {
        _PG_APPLY.format(
            rows="SELECT campaign_id, audience, state, -1 FROM old_rows "
            "UNION ALL SELECT campaign_id, audience, state, 1 FROM new_rows"
        )
    };
  END IF;
  RETURN NULL;
END""",
}
PG_TRIGGERS = {
    "enrollment_counts_insert": "AFTER INSERT ON enrollments REFERENCING NEW TABLE AS new_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION enrollment_counts_apply()",
    "enrollment_counts_update": "AFTER UPDATE ON enrollments REFERENCING OLD TABLE AS old_rows "
    "NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION enrollment_counts_apply()",
    "enrollment_counts_delete": "AFTER DELETE ON enrollments REFERENCING OLD TABLE AS old_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION enrollment_counts_apply()",
}

BACKFILL = (
    f"INSERT INTO enrollment_counts ({KEY}, n) SELECT {KEY}, count(*) FROM enrollments GROUP BY 1, 2, 3"
)


def create_triggers() -> None:
    """The counting triggers for this dialect (also for a later migration that rebuilds enrollments)."""
    if op.get_bind().dialect.name == "postgresql":
        for name, body in PG_FUNCTIONS.items():
            op.execute(
                f"CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $${body}\n$$"
            )
        for name, spec in PG_TRIGGERS.items():
            op.execute(f"CREATE TRIGGER {name} {spec}")
    else:
        for name, spec in SQLITE.items():
            op.execute(f"CREATE TRIGGER {name} {spec}")


def drop_triggers() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    for name in SQLITE:
        op.execute(f"DROP TRIGGER IF EXISTS {name}" + (" ON enrollments" if postgresql else ""))
    if postgresql:
        for name in PG_FUNCTIONS:
            op.execute(f"DROP FUNCTION IF EXISTS {name}()")


def upgrade() -> None:
    op.create_table(
        "enrollment_counts",
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("audience", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("campaign_id", "audience", "state"),
    )
    create_triggers()
    op.execute(BACKFILL)
    op.create_index("ix_enrollments_campaign_due", "enrollments", ["campaign_id", "state", "next_due_at"])
    op.drop_index("ix_sends_status_settled", table_name="sends")
    op.create_index("ix_sends_status_settled", "sends", ["status", "settled_at", "enrollment_id"])


def downgrade() -> None:
    op.drop_index("ix_sends_status_settled", table_name="sends")
    op.create_index("ix_sends_status_settled", "sends", ["status", "settled_at"])
    op.drop_index("ix_enrollments_campaign_due", table_name="enrollments")
    drop_triggers()
    op.drop_table("enrollment_counts")
