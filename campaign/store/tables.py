"""The schema: every table, and the small helpers their keys need (ids, the keyed address hash).

Schema changes go through Alembic (campaign/migrations), whose env.py reads `metadata` here.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import UTC

import sqlalchemy as sa

metadata = sa.MetaData()

UTM_NAMES = ("source", "medium", "campaign", "term", "content")


class UTCDateTime(sa.types.TypeDecorator):
    """Aware UTC datetimes in, aware UTC datetimes out, on SQLite and PostgreSQL alike."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


campaigns = sa.Table(
    "campaigns",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("slug", sa.String(64), nullable=False, unique=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("state", sa.String(16), nullable=False, server_default="active"),  # active, paused, stopped
    sa.Column("audiences", sa.Text, nullable=False),  # comma-separated audience names
    sa.Column("sandbox", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("starts_at", UTCDateTime, nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("paused_reason", sa.Text, nullable=True),
    sa.Column("versions", sa.Text, nullable=True),  # JSON: audience -> sequence version at launch
)

leads = sa.Table(
    "leads",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("public_id", sa.String(32), nullable=False, unique=True),
    sa.Column("email", sa.String(320), nullable=False, unique=True),
    sa.Column("first_name", sa.String(200), nullable=False, server_default=""),
    sa.Column("last_name", sa.String(200), nullable=False, server_default=""),
    sa.Column("anxiety_type", sa.String(32), nullable=False, server_default="unspecified"),
    sa.Column("prior_treatments", sa.Integer, nullable=True),
    sa.Column("consent", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("timezone", sa.String(64), nullable=False),
    sa.Column("state", sa.String(40), nullable=False, server_default=""),
    sa.Column("source", sa.String(100), nullable=False, server_default=""),
    sa.Column("booked", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("booked_at", UTCDateTime, nullable=True),
    sa.Column("unsubscribed_at", UTCDateTime, nullable=True),
    sa.Column("last_email_at", UTCDateTime, nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    *(sa.Column(f"utm_{n}", sa.String(200), nullable=False, server_default="") for n in UTM_NAMES),
    # Proof of consent (models.ConsentProof): set when consent is given, kept while it lasts.
    sa.Column("consent_at", UTCDateTime, nullable=True),
    sa.Column("consent_via", sa.String(16), nullable=True),
    sa.Column("consent_ref", sa.String(300), nullable=True),
    sa.Column("consent_version", sa.String(100), nullable=True),
    sa.Column("consent_client", sa.String(64), nullable=True),
    # The keyed hash of the address (email_hash below), for the suppression check in SQL
    # (0014_enroll): written with each new lead; NULL until the tick fills it in.
    sa.Column("email_hash", sa.String(64), nullable=True),
    sa.Index(
        "ix_leads_email_hash_missing",
        "id",
        sqlite_where=sa.text("email_hash IS NULL"),
        postgresql_where=sa.text("email_hash IS NULL"),
    ),
    # Double opt-in (0015_forms): set while a form's (or, with CAMPAIGN_DOUBLE_OPT_IN, the API's)
    # new lead has not confirmed its address; such a lead is never enrolled (store.forms.opted_in).
    sa.Column("unconfirmed_since", UTCDateTime, nullable=True, index=True),
    sa.Column("confirmed_at", UTCDateTime, nullable=True),
)

# The lead API's Idempotency-Key: a retry within a day gets the first answer and changes nothing.
# Keys are per token (one client cannot see another's answers); the answer holds no address.
idempotency_keys = sa.Table(
    "idempotency_keys",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("token_name", sa.String(64), nullable=False),
    sa.Column("key", sa.String(255), nullable=False),
    sa.Column("request_hash", sa.String(64), nullable=False),  # sha256 of method, path and body
    sa.Column("status_code", sa.Integer, nullable=True),  # None while the first request runs
    sa.Column("response", sa.Text, nullable=True),  # the first answer's JSON body
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("token_name", "key", name="uq_idempotency_token_key"),
    sa.Index("ix_idempotency_created_at", "created_at"),
)
# Embeddable sign-up forms (0015_forms): the public key in /forms/{key}, and the exact consent
# wording the form shows with its version (sha256 of the text), the proof a form's lead keeps.
forms = sa.Table(
    "forms",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("key", sa.String(32), nullable=False),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("audience_question", sa.String(300), nullable=False),
    sa.Column("consent_text", sa.Text, nullable=False),
    sa.Column("consent_version", sa.String(100), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("disabled_at", UTCDateTime, nullable=True),
    sa.UniqueConstraint("key", name="uq_forms_key"),
    sa.UniqueConstraint("name", name="uq_forms_name"),
)

# Each double opt-in email: claimed before it is sent, settled after (sent once); the per-address
# limit counts them by the address's keyed hash.
confirmations = sa.Table(
    "confirmations",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("lead_id", sa.Integer, sa.ForeignKey("leads.id", ondelete="CASCADE"), nullable=False),
    sa.Column("email_hash", sa.String(64), nullable=False),
    sa.Column("send_id", sa.String(32), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # claimed, sent, failed, unknown
    sa.Column("requested_at", UTCDateTime, nullable=False),
    sa.Column("settled_at", UTCDateTime, nullable=True),
    sa.Column("message_id", sa.String(128), nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.UniqueConstraint("send_id", name="uq_confirmations_send_id"),
    sa.Index("ix_confirmations_hash_requested", "email_hash", "requested_at"),
    sa.Index("ix_confirmations_lead_id", "lead_id"),
)

# The console's prefix search has case-insensitive indexes on first_name and last_name (and, on
# PostgreSQL, a LIKE index on email): dialect-specific, so declared in migration 0006 only.

suppressions = sa.Table(
    "suppressions",
    metadata,
    # A keyed hash of the address, never the address: forgetting a lead keeps only this.
    sa.Column("email_hash", sa.String(64), primary_key=True),
    sa.Column("reason", sa.String(32), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

enrollments = sa.Table(
    "enrollments",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("campaign_id", sa.Integer, sa.ForeignKey("campaigns.id"), nullable=False),
    sa.Column("lead_id", sa.Integer, sa.ForeignKey("leads.id", ondelete="CASCADE"), nullable=False),
    sa.Column("audience", sa.String(64), nullable=False),
    sa.Column("audience_version", sa.String(16), nullable=False),
    sa.Column("enrolled_at", UTCDateTime, nullable=False),
    sa.Column("state", sa.String(16), nullable=False, server_default="active"),  # active, finished, exited
    sa.Column("exit_reason", sa.String(32), nullable=True),
    sa.Column("next_due_at", UTCDateTime, nullable=True),
    # The lease of a SQLite tick run walking this row (0013_workers): other runs skip it until
    # then. PostgreSQL leases id ranges in walk_leases instead (0017_walk_leases).
    sa.Column("leased_until", UTCDateTime, nullable=True),
    sa.Column("leased_by", sa.String(64), nullable=True),
    sa.UniqueConstraint("campaign_id", "lead_id", name="uq_enrollment_campaign_lead"),
    sa.Index("ix_enrollments_lead_id", "lead_id"),  # a lead's enrollments (console lead list and page)
    sa.Index("ix_enrollments_campaign_state", "campaign_id", "audience", "state"),  # the overview's counts
    # A campaign's due rows: the walk's plan, "due in the next 24 h" from the index alone
    # (0016_overview); it took over ix_enrollments_due's readers (0019_due_index).
    sa.Index("ix_enrollments_campaign_due", "campaign_id", "state", "next_due_at"),
    # The lead list's "stopped" filter (a few exited enrollments among many): 0012_console2.
    sa.Index(
        "ix_enrollments_exited_lead",
        "lead_id",
        postgresql_where=sa.text("state = 'exited'"),
        sqlite_where=sa.text("state = 'exited'"),
    ),
    sa.Index(  # leased rows only (a few batches): finds a concurrent tick run at once
        "ix_enrollments_leased",
        "leased_until",
        sqlite_where=sa.text("leased_until IS NOT NULL"),
        postgresql_where=sa.text("leased_until IS NOT NULL"),
    ),
)

# A PostgreSQL tick run's lease on a range of enrollment ids, [from_id, to_id], its due batch
# (0017_walk_leases): one INSERT and one DELETE a batch instead of two row versions per due row.
# Other runs skip a live range (and a lead with a row in it) until it is let go or expires.
walk_leases = sa.Table(
    "walk_leases",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("worker", sa.String(64), nullable=False),  # due_walk.worker_name(): one walk
    sa.Column("from_id", sa.Integer, nullable=False),
    sa.Column("to_id", sa.Integer, nullable=False),
    sa.Column("leased_until", UTCDateTime, nullable=False),
)

sends = sa.Table(
    "sends",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("send_id", sa.String(32), nullable=False, unique=True),  # random; goes to the ESP
    sa.Column(
        "enrollment_id", sa.Integer, sa.ForeignKey("enrollments.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("step_key", sa.String(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("transport", sa.String(16), nullable=False, server_default=""),
    sa.Column("claimed_at", UTCDateTime, nullable=False),
    sa.Column("settled_at", UTCDateTime, nullable=True),
    sa.Column("message_id", sa.String(128), nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="1"),
    sa.UniqueConstraint("enrollment_id", "step_key", name="uq_send_enrollment_step"),
    sa.Index("ix_sends_status", "status", "claimed_at"),
    # On SQLite only settled rows (0018_ledger_counts): a claim adds no entry to these two, and
    # their readers (events by message id; "sent today", settled_at >= a day) never want NULLs.
    sa.Index("ix_sends_message_id", "message_id", sqlite_where=sa.text("message_id IS NOT NULL")),
    # The overview's "sent today": with enrollment_id, its join reads no send row (0016_overview).
    sa.Index(
        "ix_sends_status_settled",
        "status",
        "settled_at",
        "enrollment_id",
        sqlite_where=sa.text("settled_at IS NOT NULL"),
    ),
)

# Ledger rows per (campaign, audience, step, status), kept by database triggers on sends in the
# same transaction as each change (0012_console2): the overview reads this, not every send.
send_counts = sa.Table(
    "send_counts",
    metadata,
    sa.Column("campaign_id", sa.Integer, primary_key=True),
    sa.Column("audience", sa.String(64), primary_key=True),
    sa.Column("step_key", sa.String(64), primary_key=True),
    sa.Column("status", sa.String(16), primary_key=True),
    sa.Column("n", sa.Integer, nullable=False),
)

# SQLite: a row here, inside a writer's own transaction, tells the send_counts triggers on sends
# that this writer counts its statements' rows itself (the ledger's claim and bulk settle:
# store/ledger_counts.py, 0018_ledger_counts). Empty outside such a transaction; unused on PostgreSQL.
send_counts_paused = sa.Table(
    "send_counts_paused",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
)

# Enrollments per (campaign, audience, state), kept by database triggers on enrollments in the
# same transaction as each change (0016_overview): the overview reads this, not every enrollment.
enrollment_counts = sa.Table(
    "enrollment_counts",
    metadata,
    sa.Column("campaign_id", sa.Integer, primary_key=True),
    sa.Column("audience", sa.String(64), primary_key=True),
    sa.Column("state", sa.String(16), primary_key=True),
    sa.Column("n", sa.Integer, nullable=False),
)

# The send ids a ledger row had before a resend gave it a new one: late events for any of them
# still settle the row (0009_sendpath).
previous_send_ids = sa.Table(
    "previous_send_ids",
    metadata,
    sa.Column("send_id", sa.String(32), primary_key=True),
    sa.Column(
        "send_row_id", sa.Integer, sa.ForeignKey("sends.id", ondelete="CASCADE"), nullable=False, index=True
    ),
    sa.Column("replaced_at", UTCDateTime, nullable=False),
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("dedupe_key", sa.String(64), nullable=False, unique=True),
    sa.Column("sg_event_id", sa.String(128), nullable=True, unique=True),
    sa.Column("send_id", sa.String(32), nullable=True, index=True),
    sa.Column(
        "lead_id", sa.Integer, sa.ForeignKey("leads.id", ondelete="CASCADE"), nullable=True, index=True
    ),
    sa.Column("email_hash", sa.String(64), nullable=False),
    sa.Column("event", sa.String(32), nullable=False),  # normalized kind
    sa.Column("raw_event", sa.String(32), nullable=False),
    sa.Column("occurred_at", UTCDateTime, nullable=False),
    sa.Column("received_at", UTCDateTime, nullable=False),
    sa.Column("raw", sa.JSON, nullable=False),
)

approvals = sa.Table(
    "approvals",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("template", sa.String(200), nullable=False),  # e.g. gad/welcome
    sa.Column("content_hash", sa.String(64), nullable=False),
    sa.Column("approved_by", sa.String(200), nullable=False),
    sa.Column("approved_at", UTCDateTime, nullable=False),
    # The console role of the approver, or the credential given with `approve --role` ("MD").
    sa.Column("approved_role", sa.String(64), nullable=False, server_default=""),
    # The files the hash covers, as approved (JSON [[file name, text], ...]), so a reviewer can
    # see what changed since; NULL for approvals recorded before 0007_approval_source.
    sa.Column("source_text", sa.Text, nullable=True),
    sa.UniqueConstraint("template", "content_hash", name="uq_approval_template_hash"),
)

EVERGREEN = "evergreen"
ALL_AUDIENCES = "*"


def new_public_id() -> str:
    return secrets.token_hex(16)


def new_send_id() -> str:
    return secrets.token_hex(16)


def email_hash(email: str, key: str) -> str:
    """Keyed hash for the suppression list: lets us recognise an address without keeping it."""
    return hmac.new(key.encode(), email.strip().casefold().encode(), hashlib.sha256).hexdigest()
