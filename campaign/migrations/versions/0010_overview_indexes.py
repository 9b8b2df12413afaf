"""indexes for the console's overview at 1M leads: sends settled today, enrollments per audience

"Sent today" walked every sent email (ix_sends_status orders by claimed_at, not settled_at):
3 s at 1.35M sends on SQLite, 50 ms with (status, settled_at). Leads per audience and state
grouped every enrollment through a temporary B-tree: 0.7 s at 900k, 46 ms from a covering
(campaign_id, audience, state). See bench/RESULTS.md (the console at 1M leads).

Revision ID: 0010_overview_indexes
Revises: 0007_approval_source
"""

from alembic import op

revision = "0010_overview_indexes"
down_revision = "0009_sendpath"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_sends_status_settled", "sends", ["status", "settled_at"])
    op.create_index("ix_enrollments_campaign_state", "enrollments", ["campaign_id", "audience", "state"])


def downgrade() -> None:
    op.drop_index("ix_enrollments_campaign_state", table_name="enrollments")
    op.drop_index("ix_sends_status_settled", table_name="sends")
