"""walk_leases: a PostgreSQL tick run leases its due batch as one id range, not row by row

A run's batch is a range of enrollment ids from its plan (Enrollments.due_bounds); the lease is
one row here, inserted before the batch is read and deleted after it is sent: two statements a
batch, where the row lease of 0013_workers wrote two versions of each due row (the lease and its
release; 19.5 s of a 1M walk of 351,692 due rows). Other runs skip a live range, and let go of a
row whose lead has a row in one (two campaigns' emails never go to a lead at once from two runs).
A range expires at leased_until, so a dead run's batch is walked again by a later tick.

SQLite keeps 0013's columns on enrollments: a SQLite walk marks one row and leases rows only
when it sees another run (one writer at a time: concurrent ticks add nothing there).

Revision ID: 0017_walk_leases
Revises: 0016_overview
"""

import sqlalchemy as sa
from alembic import op

revision = "0017_walk_leases"
down_revision = "0016_overview"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "walk_leases",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("worker", sa.String(length=64), nullable=False),
        sa.Column("from_id", sa.Integer, nullable=False),
        sa.Column("to_id", sa.Integer, nullable=False),
        sa.Column("leased_until", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("walk_leases")
