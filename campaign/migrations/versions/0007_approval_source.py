"""approvals keep the reviewer's role and the source text they approved (for the console's diff)

Revision ID: 0007_approval_source
Revises: 0005_console
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_approval_source"
down_revision = "0006_console_leads"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("approvals") as batch:
        batch.add_column(sa.Column("approved_role", sa.String(length=16), server_default="", nullable=False))
        # NULL for approvals recorded before this revision: their text was not kept.
        batch.add_column(sa.Column("source_text", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("approvals") as batch:
        batch.drop_column("source_text")
        batch.drop_column("approved_role")
