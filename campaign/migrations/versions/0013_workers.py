"""a lease on due enrollments, so concurrent tick runs (workers) walk disjoint due batches

A tick run leases each due batch (leased_until, leased_by) in the statement that selects it,
with FOR UPDATE SKIP LOCKED on PostgreSQL; other runs skip leased rows until the lease is
released (batch done) or expires (its worker died). See campaign/store/enrollments.py.

Revision ID: 0013_workers
Revises: 0012_console2
"""

import sqlalchemy as sa
from alembic import op

revision = "0013_workers"
down_revision = "0012_console2"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ALTER TABLE, not a batch copy of the table: SQLite's copy-and-rename would break the
    # send_counts triggers (0012_console2) that name enrollments.
    op.add_column("enrollments", sa.Column("leased_until", sa.DateTime(timezone=True), nullable=True))
    op.add_column("enrollments", sa.Column("leased_by", sa.String(length=64), nullable=True))
    op.create_index(
        "ix_enrollments_leased",
        "enrollments",
        ["leased_until"],
        sqlite_where=sa.text("leased_until IS NOT NULL"),
        postgresql_where=sa.text("leased_until IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_enrollments_leased", table_name="enrollments")
    op.drop_column("enrollments", "leased_by")  # SQLite 3.35+ drops a column in place
    op.drop_column("enrollments", "leased_until")
