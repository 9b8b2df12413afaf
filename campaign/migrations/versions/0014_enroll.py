"""enroll: the keyed address hash on leads, so enrollment checks the suppression list in SQL

The tick enrolls leads set-based (INSERT ... SELECT, campaign/store/enroll.py) and needs the
suppression check as a join: suppressions hold a keyed hash (HMAC with the secret key), which
SQL cannot compute. The hash is written with each new lead; rows written before this revision
(or by a writer that does not set it) keep NULL until the next tick fills them in
(`Enroll.fill_email_hashes`) and are not enrolled before. A partial index finds those rows.

Revision ID: 0014_enroll
Revises: 0013_workers
"""

import sqlalchemy as sa
from alembic import op

revision = "0014_enroll"
down_revision = "0013_workers"
branch_labels = None
depends_on = None

MISSING = sa.text("email_hash IS NULL")


def upgrade() -> None:
    op.add_column("leads", sa.Column("email_hash", sa.String(length=64), nullable=True))
    op.create_index(
        "ix_leads_email_hash_missing",
        "leads",
        ["id"],
        sqlite_where=MISSING,
        postgresql_where=MISSING,
    )


def downgrade() -> None:
    op.drop_index("ix_leads_email_hash_missing", table_name="leads")
    op.drop_column("leads", "email_hash")  # in place (SQLite 3.35+): no copy of the table
