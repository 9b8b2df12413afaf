"""approvals.approved_role holds a reviewer's credential from the command line ("MD",
"clinical reviewer"), not only a console role: 16 -> 64 characters

Revision ID: 0008_approval_role_width
Revises: 0007_approval_source
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_approval_role_width"
down_revision = "0007_approval_source"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("approvals") as batch:
        batch.alter_column(
            "approved_role", existing_type=sa.String(16), type_=sa.String(64), existing_nullable=False
        )


def downgrade() -> None:
    with op.batch_alter_table("approvals") as batch:
        batch.alter_column(
            "approved_role",
            existing_type=sa.String(64),
            type_=sa.String(16),
            existing_nullable=False,
            postgresql_using="substr(approved_role, 1, 16)",  # a longer credential is cut, not refused
        )
