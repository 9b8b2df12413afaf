"""forms: embeddable sign-up forms, their confirmation emails, and double opt-in on leads

Revision ID: 0015_forms
Revises: 0014_enroll
"""

import sqlalchemy as sa
from alembic import op

revision = "0015_forms"
down_revision = "0014_enroll"
branch_labels = None
depends_on = None

TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    # A lead waiting for its double opt-in: never enrolled, deleted 7 days on (store.forms).
    op.add_column("leads", sa.Column("unconfirmed_since", TIME, nullable=True))
    op.add_column("leads", sa.Column("confirmed_at", TIME, nullable=True))
    op.create_index("ix_leads_unconfirmed_since", "leads", ["unconfirmed_since"])
    op.create_table(
        "forms",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("audience_question", sa.String(length=300), nullable=False),
        sa.Column("consent_text", sa.Text(), nullable=False),
        sa.Column("consent_version", sa.String(length=100), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("disabled_at", TIME, nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key", name="uq_forms_key"),
        sa.UniqueConstraint("name", name="uq_forms_name"),
    )
    op.create_table(
        "confirmations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("lead_id", sa.Integer(), sa.ForeignKey("leads.id", ondelete="CASCADE"), nullable=False),
        sa.Column("email_hash", sa.String(length=64), nullable=False),
        sa.Column("send_id", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("requested_at", TIME, nullable=False),
        sa.Column("settled_at", TIME, nullable=True),
        sa.Column("message_id", sa.String(length=128), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("send_id", name="uq_confirmations_send_id"),
    )
    op.create_index("ix_confirmations_hash_requested", "confirmations", ["email_hash", "requested_at"])
    op.create_index("ix_confirmations_lead_id", "confirmations", ["lead_id"])


def downgrade() -> None:
    op.drop_index("ix_confirmations_lead_id", table_name="confirmations")
    op.drop_index("ix_confirmations_hash_requested", table_name="confirmations")
    op.drop_table("confirmations")
    op.drop_table("forms")
    op.drop_index("ix_leads_unconfirmed_since", table_name="leads")
    op.drop_column("leads", "confirmed_at")  # in place (SQLite 3.35+): no copy of the table
    op.drop_column("leads", "unconfirmed_since")
