"""console leads: an index for a lead's enrollments, and prefix-search indexes on address and name

Revision ID: 0006_console_leads
Revises: 0005_console

The console's lead list filters leads by their enrollments (one probe per lead) and the lead
page reads a lead's enrollments: both need enrollments by lead_id. The search matches the start
of an address, a first name or a last name (case-insensitive): SQLite compares ranges of
lower(...) on expression indexes; PostgreSQL runs LIKE 'prefix%', which uses an index only with
the pattern operator classes whatever the database's collation.
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_console_leads"
down_revision = "0005_console"
branch_labels = None
depends_on = None

NAME_INDEXES = {"ix_leads_first_name_lower": "first_name", "ix_leads_last_name_lower": "last_name"}


def upgrade() -> None:
    op.create_index("ix_enrollments_lead_id", "enrollments", ["lead_id"])
    postgres = op.get_bind().dialect.name == "postgresql"
    for name, column in NAME_INDEXES.items():
        # SQLite: the column under its case-insensitive collation (a plain column index, which
        # SQLAlchemy can reflect; an expression index it cannot).
        key = f"lower({column}) text_pattern_ops" if postgres else f"{column} COLLATE NOCASE"
        op.create_index(name, "leads", [sa.text(key)])
    if postgres:
        op.create_index(
            "ix_leads_email_pattern", "leads", ["email"], postgresql_ops={"email": "varchar_pattern_ops"}
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_leads_email_pattern", table_name="leads")
    for name in NAME_INDEXES:
        op.drop_index(name, table_name="leads")
    op.drop_index("ix_enrollments_lead_id", table_name="enrollments")
