"""intake: proof of consent and UTM tags on leads; the lead API's idempotency keys

Revision ID: 0011_intake
Revises: 0007_approval_source (written beside 0005 from 0003_accounts; chained last at the merge)
"""

import sqlalchemy as sa
from alembic import op

revision = "0011_intake"
down_revision = "0010_overview_indexes"
branch_labels = None
depends_on = None

TIME = sa.DateTime(timezone=True)
UTM = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")
CONSENT = ("consent_at", "consent_via", "consent_ref", "consent_version", "consent_client")


def upgrade() -> None:
    # Leads imported before this revision keep NULL proof: it was not recorded, and is not invented.
    with op.batch_alter_table("leads") as batch:
        for name in UTM:
            batch.add_column(sa.Column(name, sa.String(length=200), server_default="", nullable=False))
        batch.add_column(sa.Column("consent_at", TIME, nullable=True))
        batch.add_column(sa.Column("consent_via", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("consent_ref", sa.String(length=300), nullable=True))
        batch.add_column(sa.Column("consent_version", sa.String(length=100), nullable=True))
        batch.add_column(sa.Column("consent_client", sa.String(length=64), nullable=True))
    op.create_table(
        "idempotency_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_name", sa.String(length=64), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("response", sa.Text(), nullable=True),
        sa.Column("created_at", TIME, nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_name", "key", name="uq_idempotency_token_key"),
    )
    op.create_index("ix_idempotency_created_at", "idempotency_keys", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_idempotency_created_at", table_name="idempotency_keys")
    op.drop_table("idempotency_keys")
    with op.batch_alter_table("leads") as batch:
        for name in (*CONSENT, *UTM):
            batch.drop_column(name)
