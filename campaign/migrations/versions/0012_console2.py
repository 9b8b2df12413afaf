"""console2: ledger counts kept by triggers (the overview at 1M leads); exited-enrollment index

`send_counts` holds, per (campaign, audience, step, status), how many ledger rows there are. The
database keeps it in the same transaction as every change of `sends`, whatever code makes the
change: triggers, not the ledger's Python. The console's overview and `campaign status` read it
instead of grouping every send (2-5 s at 1.35M sends; bench/RESULTS.md).

- SQLite: row triggers AFTER INSERT / UPDATE (of enrollment_id, step_key, status) / DELETE on
  sends, each an upsert of +1 or -1 under the key found through the send's enrollment.
- PostgreSQL: statement triggers with transition tables: a statement changing 1,000 sends does
  one aggregated upsert (rows in key order, so two writers lock counts in the same order).
- Both: an enrollment deleted with its sends still there (a cascade) takes them off first (a
  BEFORE DELETE row trigger; the sends' own trigger then finds no enrollment and adds nothing);
  an enrollment moved to another campaign or audience moves its counts.

The upgrade creates the triggers and then fills the table from the ledger, in one transaction
(on PostgreSQL CREATE TRIGGER locks out writers of sends until the commit: nothing is missed).
A later migration that rebuilds `sends` (SQLite batch mode copies the table) drops its triggers:
tests/test_send_counts.py fails then, and the rebuild must create them again (`create_triggers`).

Also, for the console lead list's "stopped" filter on PostgreSQL (1.0-1.4 s at 1M leads): the
planner took state = 'exited' AND exit_reason NOT IN (...) for 190 rows of 900k (the columns are
correlated: only exited enrollments have a reason) when 50,000 match, and joined every one of
them to leads. Multivariate statistics (an MCV list over state and exit_reason) give it the true
count, and it walks leads newest first instead (a merge semi-join: 744 ms -> 0.8 ms in EXPLAIN
ANALYZE). A partial index on enrollments(lead_id) WHERE state = 'exited' serves that walk (and
the probe, on SQLite too) without reading the active enrollments.

Revision ID: 0012_console2
Revises: 0011_intake
"""

import sqlalchemy as sa
from alembic import op

revision = "0012_console2"
down_revision = "0011_intake"
branch_labels = None
depends_on = None

STATISTICS = "st_enrollments_state_exit_reason"
KEY = "campaign_id, audience, step_key, status"
UPSERT = f"ON CONFLICT ({KEY}) DO UPDATE SET n = send_counts.n + excluded.n"

# ---- SQLite: row triggers ----------------------------------------------------------------------


def _sqlite_add(row: str, sign: str) -> str:
    """Upsert of sign*1 under the key of sends row `row` (NEW or OLD). WHERE: SQLite's upsert
    after a SELECT needs one, to tell ON CONFLICT from a join."""
    return (
        f"INSERT INTO send_counts ({KEY}, n) "
        f"SELECT e.campaign_id, e.audience, {row}.step_key, {row}.status, {sign}1 "
        f"FROM enrollments e WHERE e.id = {row}.enrollment_id {UPSERT};"
    )


def _sqlite_move(row: str, sign: str) -> str:
    """Upsert of sign * (its sends per step and status) for enrollment `row` (NEW or OLD)."""
    return (
        f"INSERT INTO send_counts ({KEY}, n) "
        f"SELECT {row}.campaign_id, {row}.audience, s.step_key, s.status, {sign}count(*) "
        f"FROM sends s WHERE s.enrollment_id = {row}.id GROUP BY s.step_key, s.status {UPSERT};"
    )


SEND_CHANGED = "OLD.enrollment_id IS NOT NEW.enrollment_id OR OLD.step_key IS NOT NEW.step_key OR OLD.status IS NOT NEW.status"
ENROLLMENT_MOVED = "OLD.campaign_id IS NOT NEW.campaign_id OR OLD.audience IS NOT NEW.audience"

SQLITE = {
    "send_counts_insert": f"AFTER INSERT ON sends BEGIN {_sqlite_add('NEW', '+')} END",
    "send_counts_update": (
        f"AFTER UPDATE OF enrollment_id, step_key, status ON sends WHEN {SEND_CHANGED} "
        f"BEGIN {_sqlite_add('OLD', '-')} {_sqlite_add('NEW', '+')} END"
    ),
    "send_counts_delete": f"AFTER DELETE ON sends BEGIN {_sqlite_add('OLD', '-')} END",
    "send_counts_enrollment_delete": f"BEFORE DELETE ON enrollments BEGIN {_sqlite_move('OLD', '-')} END",
    "send_counts_enrollment_move": (
        f"AFTER UPDATE OF campaign_id, audience ON enrollments WHEN {ENROLLMENT_MOVED} "
        f"BEGIN {_sqlite_move('OLD', '-')} {_sqlite_move('NEW', '+')} END"
    ),
}

# ---- PostgreSQL: statement triggers over transition tables ----------------------------------

# (enrollment_id, step_key, status, d) rows -> one upsert per key, in key order.
_PG_APPLY = (
    f"INSERT INTO send_counts AS c ({KEY}, n) "
    "SELECT e.campaign_id, e.audience, d.step_key, d.status, sum(d.d) "
    "FROM ({rows}) AS d (enrollment_id, step_key, status, d) JOIN enrollments e ON e.id = d.enrollment_id "
    "GROUP BY 1, 2, 3, 4 HAVING sum(d.d) <> 0 ORDER BY 1, 2, 3, 4 "
    f"ON CONFLICT ({KEY}) DO UPDATE SET n = c.n + excluded.n"
)
# A statement's transition table has no parameters, so PL/pgSQL keeps the plan made at the
# backend's first call: after a 200,000-row UPDATE it joined a one-row UPDATE to every enrollment
# (a hash join over a sequential scan: 1.2-1.6 s a statement on the 1M bench database). Probing
# enrollments by primary key whatever the size keeps a one-row statement at ~0.1 ms and costs a
# big one nothing (4.6 s instead of 6.3 s for 200,000 rows, same moment).
NESTED_LOOPS_ONLY = "SET enable_hashjoin = off SET enable_mergejoin = off"
PG_FUNCTIONS = {
    "send_counts_apply": f"""
BEGIN
  IF TG_OP = 'INSERT' THEN
    {_PG_APPLY.format(rows="SELECT enrollment_id, step_key, status, 1 FROM new_rows")};
  ELSIF TG_OP = 'DELETE' THEN
    {_PG_APPLY.format(rows="SELECT enrollment_id, step_key, status, -1 FROM old_rows")};
  ELSE
    {
        _PG_APPLY.format(
            rows="SELECT enrollment_id, step_key, status, -1 FROM old_rows "
            "UNION ALL SELECT enrollment_id, step_key, status, 1 FROM new_rows"
        )
    };
  END IF;
  RETURN NULL;
END""",
    "send_counts_enrollment": f"""
BEGIN
  IF TG_OP IN ('DELETE', 'UPDATE') THEN
    INSERT INTO send_counts AS c ({KEY}, n)
    SELECT OLD.campaign_id, OLD.audience, s.step_key, s.status, -count(*) FROM sends s
    WHERE s.enrollment_id = OLD.id GROUP BY s.step_key, s.status ORDER BY 3, 4 {UPSERT.replace("send_counts.n", "c.n")};
  END IF;
  IF TG_OP = 'UPDATE' THEN
    INSERT INTO send_counts AS c ({KEY}, n)
    SELECT NEW.campaign_id, NEW.audience, s.step_key, s.status, count(*) FROM sends s
    WHERE s.enrollment_id = NEW.id GROUP BY s.step_key, s.status ORDER BY 3, 4 {UPSERT.replace("send_counts.n", "c.n")};
    RETURN NEW;
  END IF;
  RETURN OLD;
END""",
}
PG_TRIGGERS = {
    "send_counts_insert": "AFTER INSERT ON sends REFERENCING NEW TABLE AS new_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION send_counts_apply()",
    "send_counts_update": "AFTER UPDATE ON sends REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION send_counts_apply()",
    "send_counts_delete": "AFTER DELETE ON sends REFERENCING OLD TABLE AS old_rows "
    "FOR EACH STATEMENT EXECUTE FUNCTION send_counts_apply()",
    "send_counts_enrollment_delete": "BEFORE DELETE ON enrollments "
    "FOR EACH ROW EXECUTE FUNCTION send_counts_enrollment()",
    "send_counts_enrollment_move": "AFTER UPDATE OF campaign_id, audience ON enrollments FOR EACH ROW "
    f"WHEN ({ENROLLMENT_MOVED.replace('IS NOT', 'IS DISTINCT FROM')}) EXECUTE FUNCTION send_counts_enrollment()",
}
TABLE_OF = {name: "enrollments" if "enrollment" in name else "sends" for name in SQLITE}

BACKFILL = (
    f"INSERT INTO send_counts ({KEY}, n) "
    "SELECT e.campaign_id, e.audience, s.step_key, s.status, count(*) "
    "FROM sends s JOIN enrollments e ON e.id = s.enrollment_id GROUP BY 1, 2, 3, 4"
)


def create_triggers() -> None:
    """The counting triggers for this dialect (also for a later migration that rebuilds sends)."""
    if op.get_bind().dialect.name == "postgresql":
        for name, body in PG_FUNCTIONS.items():
            op.execute(
                f"CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql {NESTED_LOOPS_ONLY} "
                f"AS $${body}\n$$"
            )
        for name, spec in PG_TRIGGERS.items():
            op.execute(f"CREATE TRIGGER {name} {spec}")
    else:
        for name, spec in SQLITE.items():
            op.execute(f"CREATE TRIGGER {name} {spec}")


def drop_triggers() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    for name in SQLITE:
        op.execute(f"DROP TRIGGER IF EXISTS {name}" + (f" ON {TABLE_OF[name]}" if postgresql else ""))
    if postgresql:
        for name in PG_FUNCTIONS:
            op.execute(f"DROP FUNCTION IF EXISTS {name}()")


def upgrade() -> None:
    op.create_table(
        "send_counts",
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("audience", sa.String(length=64), nullable=False),
        sa.Column("step_key", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("campaign_id", "audience", "step_key", "status"),
    )
    create_triggers()
    op.execute(BACKFILL)
    op.create_index(
        "ix_enrollments_exited_lead",
        "enrollments",
        ["lead_id"],
        postgresql_where=sa.text("state = 'exited'"),
        sqlite_where=sa.text("state = 'exited'"),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"CREATE STATISTICS {STATISTICS} (mcv) ON state, exit_reason FROM enrollments")
        op.execute("ANALYZE enrollments")  # the statistics are empty until the next ANALYZE


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP STATISTICS IF EXISTS {STATISTICS}")
    op.drop_index("ix_enrollments_exited_lead", table_name="enrollments")
    drop_triggers()
    op.drop_table("send_counts")
