"""a resend keeps the row's earlier send ids, so late events for them still settle the row

Revision ID: 0009_sendpath
Revises: 0007_approval_source
"""

import sqlalchemy as sa
from alembic import op

revision = "0009_sendpath"
down_revision = "0008_approval_role_width"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "previous_send_ids",
        sa.Column("send_id", sa.String(length=32), primary_key=True),
        sa.Column("send_row_id", sa.Integer(), sa.ForeignKey("sends.id", ondelete="CASCADE"), nullable=False),
        sa.Column("replaced_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_previous_send_ids_send_row_id", "previous_send_ids", ["send_row_id"])


def downgrade() -> None:
    op.drop_index("ix_previous_send_ids_send_row_id", table_name="previous_send_ids")
    op.drop_table("previous_send_ids")
