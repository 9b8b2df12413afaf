"""console: the tick history (tick_runs)

Revision ID: 0005_console
Revises: 0003_accounts
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_console"
down_revision = "0003_accounts"
branch_labels = None
depends_on = None

TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "tick_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("started_at", TIME, nullable=False),
        sa.Column("finished_at", TIME, nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("counts", sa.Text(), server_default="{}", nullable=False),
        sa.Column("error", sa.String(length=1000), server_default="", nullable=False),
        sa.CheckConstraint("outcome IN ('ok', 'failed', 'refused')", name="ck_tick_runs_outcome"),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("tick_runs")
