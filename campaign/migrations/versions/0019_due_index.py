"""due_index: enrollments lose ix_enrollments_due (state, next_due_at)

Every next step a tick writes moves an enrollment's next_due_at, and with it an entry in each
index on that column: on PostgreSQL (no HOT update when an indexed column changes) in every
index of the table. ix_enrollments_campaign_due (campaign_id, state, next_due_at, 0016_overview)
serves every reader that ix_enrollments_due served, since each names its campaigns: the walk's
plan (`due_bounds`), the overview's "due in 24 h", a campaign's stop. The two left without a
campaign read the earliest due time per campaign (the demo's clock: `Reports.next_due_at`) or
are rare (a live edit of a sequence reads the table once). Measured (bench/RESULTS.md): branch pg
found the next-step UPDATE 1.9 us a row cheaper on PostgreSQL without this index and
ix_enrollments_campaign_state (kept: the console's campaign and audience filters); the 1M
enrollment showed no difference within its noise.

Revision ID: 0019_due_index
Revises: 0018_ledger_counts
"""

from alembic import op

revision = "0019_due_index"
down_revision = "0018_ledger_counts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_enrollments_due", table_name="enrollments")


def downgrade() -> None:
    op.create_index("ix_enrollments_due", "enrollments", ["state", "next_due_at"])
