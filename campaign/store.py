"""The campaign store: SQLAlchemy tables and every query (the only module that talks SQL).

SQLite by default, PostgreSQL by URL. Schema changes go through Alembic (campaign/migrations).
Claims are single atomic INSERT ... ON CONFLICT DO NOTHING statements, so parallel workers and
retried runs can never create a second ledger row for an (enrollment, step).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import secrets
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from campaign.models import AnxietyType, Lead, LeadIn, SendResult, SendStatus

UTC = UTC
metadata = sa.MetaData()


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
)

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
    sa.UniqueConstraint("campaign_id", "lead_id", name="uq_enrollment_campaign_lead"),
    sa.Index("ix_enrollments_due", "state", "next_due_at"),
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
    sa.Index("ix_sends_message_id", "message_id"),
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
    sa.UniqueConstraint("template", "content_hash", name="uq_approval_template_hash"),
)

# The tick asks this once per email, right before its HTTP call: one plain statement, built once.
_REACHABLE = sa.text(
    "SELECT 1 FROM leads WHERE id = :id AND email = :email AND unsubscribed_at IS NULL AND booked = :no"
    " AND NOT EXISTS (SELECT 1 FROM suppressions WHERE email_hash = :hash)"
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


@dataclass(frozen=True)
class ImportCounts:
    new: int = 0
    updated: int = 0
    unchanged: int = 0


@dataclass(frozen=True)
class DueEnrollment:
    """An enrollment due for a look at `now`, with what the planner needs."""

    enrollment_id: int
    campaign_id: int
    audience: str
    audience_version: str
    enrolled_at: datetime
    lead: Lead
    sent_keys: frozenset[str]
    suppressed: bool


@dataclass(frozen=True)
class Claim:
    send_id: str
    enrollment_id: int
    step_key: str


@dataclass(frozen=True)
class UnknownSend:
    send_id: str
    enrollment_id: int
    step_key: str
    claimed_at: datetime


def alembic_config(url: str):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def sqlite_pragmas(dbapi_connection, _record):
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")  # readers (the web app) never block the tick
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


class Store:
    """One database. `Store.open(url)` migrates it to the latest schema first."""

    def __init__(self, engine: sa.Engine, secret_key: str):
        self.engine = engine
        self.secret_key = secret_key

    @classmethod
    def open(cls, url: str, *, secret_key: str, migrate: bool = True) -> Store:
        if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
            Path(url.removeprefix("sqlite:///")).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, future=True)
        if engine.dialect.name == "sqlite":
            sa.event.listen(engine, "connect", sqlite_pragmas)
        store = cls(engine, secret_key)
        if migrate:
            store.migrate()
        return store

    def migrate(self) -> None:
        from alembic import command

        cfg = alembic_config(str(self.engine.url.render_as_string(hide_password=False)))
        with self.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
        self.ensure_evergreen(datetime.now(UTC))

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    @functools.cached_property
    def _reachable_sql(self) -> tuple[str, tuple[str, ...] | None]:
        compiled = _REACHABLE.compile(dialect=self.engine.dialect)
        return compiled.string, (tuple(compiled.positiontup) if compiled.positiontup else None)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def _insert(self, table):
        return (postgresql.insert if self.dialect == "postgresql" else sqlite.insert)(table)

    # ---- campaigns -------------------------------------------------------------------------

    def ensure_evergreen(self, now: datetime) -> None:
        stmt = (
            self._insert(campaigns)
            .values(
                slug=EVERGREEN,
                name="Evergreen education",
                state="active",
                audiences=ALL_AUDIENCES,
                sandbox=False,
                starts_at=None,
                created_at=now,
            )
            .on_conflict_do_nothing(index_elements=["slug"])
        )
        with self.engine.begin() as conn:
            conn.execute(stmt)

    def campaign(self, slug: str) -> dict | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(campaigns).where(campaigns.c.slug == slug)).mappings().first()
        return dict(row) if row else None

    def active_campaigns(self, now: datetime) -> list[dict]:
        query = (
            sa.select(campaigns)
            .where(
                campaigns.c.state == "active",
                sa.or_(campaigns.c.starts_at.is_(None), campaigns.c.starts_at <= now),
            )
            .order_by(campaigns.c.id)
        )
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def campaigns(self) -> list[dict]:
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(sa.select(campaigns).order_by(campaigns.c.id)).mappings()]

    def create_campaign(
        self,
        *,
        slug: str,
        name: str,
        audiences: list[str],
        starts_at: datetime | None,
        sandbox: bool,
        versions: dict[str, str],
        now: datetime,
    ) -> dict:
        with self.engine.begin() as conn:
            conn.execute(
                sa.insert(campaigns).values(
                    slug=slug,
                    name=name,
                    state="active",
                    audiences=",".join(audiences),
                    sandbox=sandbox,
                    starts_at=starts_at,
                    created_at=now,
                    versions=json.dumps(versions, sort_keys=True),
                )
            )
        return self.campaign(slug)

    def set_campaign_state(self, slug: str, state: str, reason: str | None = None) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(campaigns).where(campaigns.c.slug == slug).values(state=state, paused_reason=reason)
            )
        if state == "stopped":
            campaign = self.campaign(slug)
            with self.engine.begin() as conn:
                conn.execute(
                    sa.update(enrollments)
                    .where(
                        enrollments.c.campaign_id == campaign["id"],
                        enrollments.c.state == "active",
                    )
                    .values(state="exited", exit_reason="campaign stopped", next_due_at=None)
                )

    def enrolled_audiences(self, lead_ids: list[int]) -> dict[int, set[str]]:
        """Every audience each lead is or was in, in any campaign: one sequence's emails never
        go to a lead twice, even through two campaigns."""
        found: dict[int, set[str]] = {i: set() for i in lead_ids}
        if lead_ids:
            with self.engine.connect() as conn:
                for lead_id, audience in conn.execute(
                    sa.select(enrollments.c.lead_id, enrollments.c.audience).where(
                        enrollments.c.lead_id.in_(lead_ids)
                    )
                ):
                    found[lead_id].add(audience)
        return found

    def campaign_status(self, campaign_id: int, now: datetime, day_start: datetime) -> dict:
        """Counts for `campaign status`: enrollments per audience and state, sends per step and
        status, sent since day_start, due in the next 24 hours."""
        e, s = enrollments, sends
        mine = e.c.campaign_id == campaign_id
        with self.engine.connect() as conn:
            per_audience = [
                dict(r)
                for r in conn.execute(
                    sa.select(e.c.audience, e.c.state, sa.func.count().label("n"))
                    .where(mine)
                    .group_by(e.c.audience, e.c.state)
                ).mappings()
            ]
            per_step = [
                dict(r)
                for r in conn.execute(
                    sa.select(e.c.audience, s.c.step_key, s.c.status, sa.func.count().label("n"))
                    .join(e, e.c.id == s.c.enrollment_id)
                    .where(mine)
                    .group_by(e.c.audience, s.c.step_key, s.c.status)
                ).mappings()
            ]
            sent_today = conn.execute(
                sa.select(sa.func.count())
                .select_from(s.join(e, e.c.id == s.c.enrollment_id))
                .where(mine, s.c.status == "sent", s.c.settled_at >= day_start)
            ).scalar()
            due_24h = conn.execute(
                sa.select(sa.func.count()).where(
                    mine, e.c.state == "active", e.c.next_due_at <= now + timedelta(hours=24)
                )
            ).scalar()
        return {
            "per_audience": per_audience,
            "per_step": per_step,
            "sent_today": sent_today,
            "due_24h": due_24h,
        }

    def report_facts(self) -> Iterator[dict]:
        """One row per ledger row: campaign, audience, step, status, when; the lead's booking and
        unsubscribe times; and the kinds of events linked to it (streamed)."""
        e, s, l = enrollments, sends, leads
        query = (
            sa.select(
                campaigns.c.slug.label("campaign"),
                e.c.audience,
                s.c.step_key,
                s.c.status,
                s.c.send_id,
                s.c.claimed_at,
                e.c.lead_id,
                e.c.id.label("enrollment_id"),
                l.c.booked_at,
                l.c.unsubscribed_at,
            )
            .join(e, e.c.id == s.c.enrollment_id)
            .join(l, l.c.id == e.c.lead_id)
            .join(campaigns, campaigns.c.id == e.c.campaign_id)
            .order_by(e.c.id, s.c.claimed_at, s.c.id)
        )
        with self.engine.connect() as conn:
            kinds: dict[str, set[str]] = {}
            for send_id, kind in conn.execute(
                sa.select(events.c.send_id, events.c.event).where(events.c.send_id.is_not(None))
            ):
                kinds.setdefault(send_id, set()).add(kind)
            for row in conn.execution_options(yield_per=2000).execute(query).mappings():
                yield {**row, "events": kinds.get(row["send_id"], set())}

    def enrollment_counts(self) -> dict[tuple[str, str], int]:
        """(campaign slug, audience) -> enrollments."""
        query = (
            sa.select(campaigns.c.slug, enrollments.c.audience, sa.func.count())
            .join(campaigns, campaigns.c.id == enrollments.c.campaign_id)
            .group_by(campaigns.c.slug, enrollments.c.audience)
        )
        with self.engine.connect() as conn:
            return {(c, a): n for c, a, n in conn.execute(query)}

    # ---- leads -----------------------------------------------------------------------------

    def upsert_leads(
        self,
        incoming: Iterable[LeadIn],
        now: datetime,
        chunk: int = 500,
        on_chunk: Callable[[int], None] | None = None,
        columns: set[str] | None = None,
    ) -> ImportCounts:
        """Insert new leads, update changed ones; unchanged rows are not touched at all.

        `columns`: the fields the source file has; an existing lead keeps every other field
        (a file without a consent column never revokes consent). A booking is never undone
        by an import."""
        new = updated = unchanged = 0
        fields = [f for f in LeadIn.model_fields if columns is None or f in columns or f == "email"]
        batch: list[LeadIn] = []

        def flush(conn):
            nonlocal new, updated, unchanged
            existing = {
                r["email"]: r
                for r in conn.execute(
                    sa.select(leads).where(leads.c.email.in_([lead.email for lead in batch]))
                ).mappings()
            }
            inserts = []
            for lead in batch:
                values = lead.model_dump(mode="json")
                row = existing.get(lead.email)
                if row is None:
                    inserts.append(
                        {
                            **values,
                            "public_id": new_public_id(),
                            "created_at": now,
                            "updated_at": now,
                            "booked_at": now if lead.booked else None,
                        }
                    )
                    continue
                changes = {f: values[f] for f in fields if row[f] != values[f]}
                if row["booked"]:
                    changes.pop("booked", None)
                if not changes:
                    unchanged += 1
                    continue
                if changes.get("booked") and not row["booked_at"]:
                    changes["booked_at"] = now
                conn.execute(
                    sa.update(leads).where(leads.c.id == row["id"]).values(**changes, updated_at=now)
                )
                updated += 1
            if inserts:
                conn.execute(sa.insert(leads), inserts)
                new += len(inserts)
            if on_chunk:
                on_chunk(len(batch))
            batch.clear()

        with self.engine.begin() as conn:
            for lead in incoming:
                batch.append(lead)
                if len(batch) >= chunk:
                    flush(conn)
            if batch:
                flush(conn)
        return ImportCounts(new, updated, unchanged)

    @staticmethod
    def _lead(row) -> Lead:
        return Lead(
            id=row["id"],
            public_id=row["public_id"],
            email=row["email"],
            first_name=row["first_name"],
            last_name=row["last_name"],
            anxiety_type=AnxietyType(row["anxiety_type"]),
            prior_treatments=row["prior_treatments"],
            consent=row["consent"],
            timezone=row["timezone"],
            state=row["state"],
            source=row["source"],
            booked=row["booked"],
            unsubscribed_at=row["unsubscribed_at"],
            last_email_at=row["last_email_at"],
        )

    def lead_by_email(self, email: str) -> Lead | None:
        with self.engine.connect() as conn:
            row = (
                conn.execute(sa.select(leads).where(leads.c.email == email.strip().casefold()))
                .mappings()
                .first()
            )
        return self._lead(row) if row else None

    def unenrolled_leads(self, campaign_id: int, after_id: int, limit: int) -> list[Lead]:
        """Consenting, reachable leads without an enrollment in this campaign, by id (keyset)."""
        enrolled = sa.select(enrollments.c.lead_id).where(enrollments.c.campaign_id == campaign_id)
        query = (
            sa.select(leads)
            .where(
                leads.c.id > after_id,
                leads.c.consent.is_(True),
                leads.c.booked.is_(False),
                leads.c.unsubscribed_at.is_(None),
                leads.c.id.not_in(enrolled),
            )
            .order_by(leads.c.id)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [self._lead(r) for r in conn.execute(query).mappings()]

    def suppressed_hashes(self, hashes: Iterable[str]) -> set[str]:
        hashes = list(hashes)
        if not hashes:
            return set()
        with self.engine.connect() as conn:
            return set(
                conn.execute(
                    sa.select(suppressions.c.email_hash).where(suppressions.c.email_hash.in_(hashes))
                ).scalars()
            )

    def is_reachable(self, lead_id: int, email: str | None = None) -> bool:
        """Checked again right before an HTTP call: an unsubscribe mid-tick stops the send.
        With the lead's address given (the tick has it) this is one query instead of two."""
        if email is not None:
            # Asked from many sender threads at once: the driver's cursor directly (pooled
            # connection, statement compiled once), not a Connection and a Result per call.
            params = {"id": lead_id, "email": email, "no": False, "hash": email_hash(email, self.secret_key)}
            sql, order = self._reachable_sql
            raw = self.engine.raw_connection()
            try:
                cursor = raw.cursor()
                cursor.execute(sql, tuple(params[k] for k in order) if order else params)
                found = cursor.fetchone() is not None
                cursor.close()
                raw.commit()  # end the read transaction (PostgreSQL opens one)
            finally:
                raw.close()  # back to the pool
            return found
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(leads.c.email, leads.c.unsubscribed_at, leads.c.booked).where(leads.c.id == lead_id)
            ).first()
        if row is None or row.unsubscribed_at is not None or row.booked:
            return False
        return not self.suppressed_hashes([email_hash(row.email, self.secret_key)])

    def suppress(self, email: str, reason: str, now: datetime) -> None:
        stmt = (
            self._insert(suppressions)
            .values(
                email_hash=email_hash(email, self.secret_key),
                reason=reason,
                created_at=now,
            )
            .on_conflict_do_nothing(index_elements=["email_hash"])
        )
        with self.engine.begin() as conn:
            conn.execute(stmt)

    # ---- enrollments -----------------------------------------------------------------------

    def add_enrollments(self, rows: list[dict]) -> int:
        if not rows:
            return 0
        # RETURNING counts what was inserted: psycopg reports rowcount -1 for ON CONFLICT inserts.
        stmt = (
            self._insert(enrollments)
            .values(rows)
            .on_conflict_do_nothing(index_elements=["campaign_id", "lead_id"])
            .returning(enrollments.c.id)
        )
        with self.engine.begin() as conn:
            return len(conn.execute(stmt).all())

    def refresh_sequence_version(self, audience: str, version: str, now: datetime) -> int:
        """A live edit of an audience's sequence: its active enrollments become due for a fresh
        look now (the planner then sends or re-dates each), and take the new version."""
        with self.engine.begin() as conn:
            return conn.execute(
                sa.update(enrollments)
                .where(
                    enrollments.c.audience == audience,
                    enrollments.c.state == "active",
                    enrollments.c.audience_version != version,
                )
                .values(audience_version=version, next_due_at=now)
            ).rowcount

    def due_enrollments(
        self, campaign_ids: list[int], now: datetime, after_id: int, limit: int
    ) -> list[DueEnrollment]:
        return self._due_rows(
            enrollments.c.state == "active",
            enrollments.c.next_due_at <= now,
            enrollments.c.campaign_id.in_(campaign_ids),
            enrollments.c.id > after_id,
            limit=limit,
        )

    def enrollments_by_id(self, enrollment_ids: list[int]) -> list[DueEnrollment]:
        """The same view as due_enrollments for given enrollments, whatever their state or time."""
        if not enrollment_ids:
            return []
        return self._due_rows(enrollments.c.id.in_(enrollment_ids), limit=None)

    def _due_rows(self, *where, limit: int | None) -> list[DueEnrollment]:
        query = (
            sa.select(
                enrollments.c.id.label("enrollment_id"),
                enrollments.c.campaign_id,
                enrollments.c.audience,
                enrollments.c.audience_version,
                enrollments.c.enrolled_at,
                leads,
            )
            .join(leads, leads.c.id == enrollments.c.lead_id)
            .where(*where)
            .order_by(enrollments.c.id)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            rows = list(conn.execute(query).mappings())
            sent: dict[int, set[str]] = {r["enrollment_id"]: set() for r in rows}
            if sent:
                for enrollment_id, key in conn.execute(
                    sa.select(sends.c.enrollment_id, sends.c.step_key).where(
                        sends.c.enrollment_id.in_(list(sent))
                    )
                ):
                    sent[enrollment_id].add(key)
        hashes = {r["enrollment_id"]: email_hash(r["email"], self.secret_key) for r in rows}
        suppressed = self.suppressed_hashes(hashes.values())
        result = []
        for r in rows:
            result.append(
                DueEnrollment(
                    enrollment_id=r["enrollment_id"],
                    campaign_id=r["campaign_id"],
                    audience=r["audience"],
                    audience_version=r["audience_version"],
                    enrolled_at=r["enrolled_at"],
                    lead=self._lead(r),
                    sent_keys=frozenset(sent[r["enrollment_id"]]),
                    suppressed=hashes[r["enrollment_id"]] in suppressed,
                )
            )
        return result

    def update_enrollments(self, changes: list[dict]) -> None:
        """Each dict: id plus the columns to set (next_due_at, state, exit_reason)."""
        # One executemany per shape of change, not one statement per row.
        shapes: dict[tuple[str, ...], list[dict]] = {}
        for change in changes:
            columns = tuple(sorted(k for k in change if k != "id"))
            if columns:
                shapes.setdefault(columns, []).append(
                    {"b_id": change["id"], **{f"b_{k}": change[k] for k in columns}}
                )
        if not shapes:
            return
        with self.engine.begin() as conn:
            for columns, params in shapes.items():
                stmt = (
                    sa.update(enrollments)
                    .where(enrollments.c.id == sa.bindparam("b_id"))
                    .values({k: sa.bindparam(f"b_{k}") for k in columns})
                )
                conn.execute(stmt, params)

    # ---- the send ledger -------------------------------------------------------------------

    def claim(self, wanted: list[tuple[int, str]], now: datetime, transport: str) -> list[Claim]:
        """Write ledger rows for (enrollment_id, step_key) pairs. One statement; a pair that
        already has a row (another worker, an earlier run) is silently not claimed."""
        if not wanted:
            return []
        rows = [
            {
                "send_id": new_send_id(),
                "enrollment_id": e,
                "step_key": k,
                "status": SendStatus.claimed.value,
                "transport": transport,
                "claimed_at": now,
            }
            for e, k in wanted
        ]
        # executemany with RETURNING: SQLAlchemy batches it into multi-row INSERTs ("insertmanyvalues")
        # from one cached compiled statement, instead of compiling a new 200-row VALUES each batch.
        stmt = (
            self._insert(sends)
            .on_conflict_do_nothing(index_elements=["enrollment_id", "step_key"])
            .returning(sends.c.send_id, sends.c.enrollment_id, sends.c.step_key)
        )
        with self.engine.begin() as conn:
            return [Claim(*row) for row in conn.execute(stmt, rows)]

    def settle(self, results: list[SendResult], now: datetime) -> None:
        if not results:
            return
        stmt = (
            sa.update(sends)
            .where(sends.c.send_id == sa.bindparam("b_send_id"))
            .values(
                status=sa.bindparam("b_status"),
                message_id=sa.bindparam("b_message_id"),
                error=sa.bindparam("b_error"),
                settled_at=now,
            )
        )
        with self.engine.begin() as conn:
            conn.execute(
                stmt,
                [
                    {
                        "b_send_id": r.send_id,
                        "b_status": r.status.value,
                        "b_message_id": r.message_id,
                        "b_error": r.error,
                    }
                    for r in results
                ],
            )

    def mark_emailed(self, lead_ids: list[int], now: datetime) -> None:
        if lead_ids:
            with self.engine.begin() as conn:
                conn.execute(sa.update(leads).where(leads.c.id.in_(lead_ids)).values(last_email_at=now))

    def release(self, send_ids: Iterable[str]) -> int:
        """Delete claims whose email was never sent (not attempted, or refused before delivery):
        the step is due again at the next tick. Only rows still 'claimed' are touched."""
        ids = list(send_ids)
        released = 0
        with self.engine.begin() as conn:
            for i in range(0, len(ids), 500):
                released += conn.execute(
                    sa.delete(sends).where(
                        sends.c.send_id.in_(ids[i : i + 500]), sends.c.status == SendStatus.claimed.value
                    )
                ).rowcount
        return released

    def mark_stale_claims_unknown(self, cutoff: datetime, now: datetime) -> int:
        """Claims still 'claimed' from before `cutoff` belong to a run that died mid-send: the
        request may have reached the ESP. Mark them 'unknown' and count the gap for their leads
        from the claim (last_email_at raised to claimed_at), so no next step comes too soon."""
        stale = (
            sa.select(sends.c.send_id, sends.c.claimed_at, enrollments.c.lead_id)
            .join(enrollments, enrollments.c.id == sends.c.enrollment_id)
            .where(sends.c.status == SendStatus.claimed.value, sends.c.claimed_at < cutoff)
        )
        with self.engine.begin() as conn:
            rows = conn.execute(stale).all()
            if not rows:
                return 0
            conn.execute(
                sa.update(sends)
                .where(
                    sends.c.send_id == sa.bindparam("b_send_id"), sends.c.status == SendStatus.claimed.value
                )
                .values(
                    status=SendStatus.unknown.value,
                    settled_at=now,
                    error="the sending run stopped before it settled this send",
                ),
                [{"b_send_id": r.send_id} for r in rows],
            )
            latest: dict[int, datetime] = {}
            for r in rows:
                latest[r.lead_id] = max(latest.get(r.lead_id, r.claimed_at), r.claimed_at)
            conn.execute(
                sa.update(leads)
                .where(
                    leads.c.id == sa.bindparam("b_lead"),
                    sa.or_(leads.c.last_email_at.is_(None), leads.c.last_email_at < sa.bindparam("b_at")),
                )
                .values(last_email_at=sa.bindparam("b_at")),
                [{"b_lead": k, "b_at": v} for k, v in latest.items()],
            )
        return len(rows)

    def confirm_unknown_from_events(self, kinds: Iterable[str], now: datetime) -> int:
        """'unknown' sends with a stored event of one of `kinds` (processed, delivered) for their
        send_id did reach the ESP: mark them 'sent' (message id from the event when missing)."""
        kinds = list(kinds)
        query = (
            sa.select(sends.c.send_id, sends.c.message_id, events.c.raw)
            .join(events, events.c.send_id == sends.c.send_id)
            .where(sends.c.status == SendStatus.unknown.value, events.c.event.in_(kinds))
        )
        with self.engine.begin() as conn:
            found: dict[str, str | None] = {}
            for send_id, message_id, raw in conn.execute(query):
                sg = (raw or {}).get("sg_message_id") if isinstance(raw, dict) else None
                found.setdefault(
                    send_id, message_id or (sg.split(".", 1)[0] if isinstance(sg, str) else None)
                )
            if not found:
                return 0
            conn.execute(
                sa.update(sends)
                .where(
                    sends.c.send_id == sa.bindparam("b_send_id"), sends.c.status == SendStatus.unknown.value
                )
                .values(
                    status=SendStatus.sent.value,
                    message_id=sa.bindparam("b_message_id"),
                    settled_at=now,
                    error=None,
                ),
                [{"b_send_id": k, "b_message_id": v} for k, v in found.items()],
            )
        return len(found)

    def unknown_sends(self, claimed_before: datetime) -> list[UnknownSend]:
        """'unknown' sends claimed before `claimed_before`, in active campaigns, oldest first."""
        query = (
            sa.select(sends.c.send_id, sends.c.enrollment_id, sends.c.step_key, sends.c.claimed_at)
            .join(enrollments, enrollments.c.id == sends.c.enrollment_id)
            .join(campaigns, campaigns.c.id == enrollments.c.campaign_id)
            .where(
                sends.c.status == SendStatus.unknown.value,
                sends.c.claimed_at < claimed_before,
                campaigns.c.state == "active",
            )
            .order_by(sends.c.claimed_at, sends.c.id)
        )
        with self.engine.connect() as conn:
            return [UnknownSend(*row) for row in conn.execute(query)]

    def reclaim_unknown(self, send_ids: Iterable[str], now: datetime, transport: str) -> dict[str, Claim]:
        """Claim 'unknown' rows again for a resend: the same ledger row with a new send_id,
        status 'claimed', attempts + 1. Returns {old send_id: new claim} for the rows this call
        won (a row another worker reclaimed first is left to it)."""
        won: dict[str, Claim] = {}
        with self.engine.begin() as conn:
            for old in send_ids:
                new = new_send_id()
                row = conn.execute(
                    sa.update(sends)
                    .where(
                        sends.c.send_id == old,
                        sends.c.status == SendStatus.unknown.value,
                    )
                    .values(
                        send_id=new,
                        status=SendStatus.claimed.value,
                        attempts=sends.c.attempts + 1,
                        claimed_at=now,
                        settled_at=None,
                        message_id=None,
                        transport=transport,
                        error=f"resend of {old}",
                    )
                    .returning(sends.c.enrollment_id, sends.c.step_key)
                ).first()
                if row is not None:
                    won[old] = Claim(new, row.enrollment_id, row.step_key)
        return won

    def unclaim_resends(self, new_to_old: dict[str, str]) -> None:
        """Undo reclaim_unknown for resends that were never sent: back to 'unknown' with the old
        send_id (its events may still come) and the old attempt count."""
        if not new_to_old:
            return
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(sends)
                .where(sends.c.send_id == sa.bindparam("b_new"), sends.c.status == SendStatus.claimed.value)
                .values(
                    send_id=sa.bindparam("b_old"),
                    status=SendStatus.unknown.value,
                    attempts=sends.c.attempts - 1,
                    error=None,
                ),
                [{"b_new": n, "b_old": o} for n, o in new_to_old.items()],
            )

    def pause_campaigns(self, campaign_ids: Iterable[int], reason: str) -> int:
        """Set active campaigns to 'paused' with the reason (their due sends wait for a resume)."""
        ids = list(campaign_ids)
        if not ids:
            return 0
        with self.engine.begin() as conn:
            return conn.execute(
                sa.update(campaigns)
                .where(campaigns.c.id.in_(ids), campaigns.c.state == "active")
                .values(state="paused", paused_reason=reason)
            ).rowcount

    # ---- reads for the CLI and reports -------------------------------------------------------

    def lead_overview(self) -> Iterator[dict]:
        """One row per lead with its latest enrollment and ledger counts (streamed)."""
        sent_count = (
            sa.select(sa.func.count())
            .where(sends.c.enrollment_id == enrollments.c.id, sends.c.status == "sent")
            .scalar_subquery()
        )
        last_key = (
            sa.select(sends.c.step_key)
            .where(sends.c.enrollment_id == enrollments.c.id)
            .order_by(sends.c.claimed_at.desc(), sends.c.id.desc())
            .limit(1)
            .scalar_subquery()
        )
        query = (
            sa.select(
                leads.c.id,
                leads.c.email,
                leads.c.consent,
                leads.c.booked,
                leads.c.unsubscribed_at,
                leads.c.timezone,
                enrollments.c.id.label("enrollment_id"),
                enrollments.c.audience,
                enrollments.c.state.label("enrollment_state"),
                enrollments.c.exit_reason,
                enrollments.c.next_due_at,
                enrollments.c.enrolled_at,
                sent_count.label("steps_sent"),
                last_key.label("last_step"),
            )
            .select_from(leads.outerjoin(enrollments, enrollments.c.lead_id == leads.c.id))
            .order_by(leads.c.id, enrollments.c.id)
        )
        with self.engine.connect() as conn:
            for row in conn.execution_options(yield_per=1000).execute(query).mappings():
                yield dict(row)

    def sends_of(self, enrollment_ids: list[int]) -> dict[int, dict[str, dict]]:
        """enrollment id -> step key -> its ledger row (status, claimed_at), in one query."""
        found: dict[int, dict[str, dict]] = {i: {} for i in enrollment_ids}
        if enrollment_ids:
            query = sa.select(
                sends.c.enrollment_id, sends.c.step_key, sends.c.status, sends.c.claimed_at
            ).where(sends.c.enrollment_id.in_(enrollment_ids))
            with self.engine.connect() as conn:
                for row in conn.execute(query).mappings():
                    found[row["enrollment_id"]][row["step_key"]] = dict(row)
        return found

    def sent_keys(self, enrollment_id: int) -> set[str]:
        return set(self.sends_of([enrollment_id])[enrollment_id])

    def enrollment_for_lead(self, lead_id: int) -> dict | None:
        with self.engine.connect() as conn:
            row = (
                conn.execute(
                    sa.select(enrollments)
                    .where(enrollments.c.lead_id == lead_id)
                    .order_by(enrollments.c.id.desc())
                    .limit(1)
                )
                .mappings()
                .first()
            )
        return dict(row) if row else None

    def audience_counts(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            return dict(
                conn.execute(
                    sa.select(enrollments.c.audience, sa.func.count()).group_by(enrollments.c.audience)
                ).all()
            )

    def send_matrix(self, statuses: tuple[str, ...] = ("sent",)) -> dict[tuple[str, str], int]:
        """(audience, step) -> number of ledger rows in the given statuses."""
        query = (
            sa.select(enrollments.c.audience, sends.c.step_key, sa.func.count())
            .join(enrollments, enrollments.c.id == sends.c.enrollment_id)
            .where(sends.c.status.in_(statuses))
            .group_by(enrollments.c.audience, sends.c.step_key)
        )
        with self.engine.connect() as conn:
            return {(a, s): n for a, s, n in conn.execute(query)}

    def ledger(self) -> list[dict]:
        query = (
            sa.select(
                sends.c.send_id,
                sends.c.step_key,
                sends.c.status,
                sends.c.claimed_at,
                sends.c.settled_at,
                sends.c.message_id,
                enrollments.c.audience,
                enrollments.c.lead_id,
                leads.c.email,
                leads.c.timezone,
            )
            .join(enrollments, enrollments.c.id == sends.c.enrollment_id)
            .join(leads, leads.c.id == enrollments.c.lead_id)
            .order_by(sends.c.id)
        )
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def next_due_at(self) -> datetime | None:
        """The earliest time any active enrollment is due (the demo jumps its clock there)."""
        with self.engine.connect() as conn:
            return conn.execute(
                sa.select(sa.func.min(enrollments.c.next_due_at)).where(enrollments.c.state == "active")
            ).scalar()

    # ---- web app: unsubscribes, events, bookings, forgetting ---------------------------------

    _CHUNK = 500  # rows per IN (...) list: well under SQLite's and PostgreSQL's parameter limits

    @staticmethod
    def _exit_active(conn, lead_ids: Iterable[int], reason: str) -> int:
        """exit_lead_everywhere inside the caller's transaction (a second connection would wait
        on the caller's own SQLite write lock)."""
        ids, exited = list(lead_ids), 0
        for i in range(0, len(ids), Store._CHUNK):
            exited += conn.execute(
                sa.update(enrollments)
                .where(
                    enrollments.c.lead_id.in_(ids[i : i + Store._CHUNK]),
                    enrollments.c.state == "active",
                )
                .values(state="exited", exit_reason=reason, next_due_at=None)
            ).rowcount
        return exited

    def unsubscribe_lead(self, public_id: str, now: datetime) -> bool:
        """Set unsubscribed_at (the first time only) and exit every active enrollment, in one
        transaction. False when no lead has this public id (e.g. forgotten since)."""
        with self.engine.begin() as conn:
            lead_id = conn.execute(sa.select(leads.c.id).where(leads.c.public_id == public_id)).scalar()
            if lead_id is None:
                return False
            conn.execute(
                sa.update(leads)
                .where(leads.c.id == lead_id, leads.c.unsubscribed_at.is_(None))
                .values(unsubscribed_at=now, updated_at=now)
            )
            self._exit_active(conn, [lead_id], "unsubscribed")
        return True

    def resubscribe_lead(self, public_id: str, now: datetime | None = None) -> bool:
        """Undo unsubscribe_lead: clear unsubscribed_at and reactivate the enrollments that the
        unsubscribe ended (due at once: the next tick's planner finds the next step and its time).
        The suppression list is not touched: a bounce or complaint still stops every send."""
        now = now or datetime.now(UTC)
        with self.engine.begin() as conn:
            lead_id = conn.execute(sa.select(leads.c.id).where(leads.c.public_id == public_id)).scalar()
            if lead_id is None:
                return False
            conn.execute(
                sa.update(leads).where(leads.c.id == lead_id).values(unsubscribed_at=None, updated_at=now)
            )
            conn.execute(
                sa.update(enrollments)
                .where(
                    enrollments.c.lead_id == lead_id,
                    enrollments.c.state == "exited",
                    enrollments.c.exit_reason == "unsubscribed",
                )
                .values(state="active", exit_reason=None, next_due_at=now)
            )
        return True

    def record_events(self, incoming: Iterable, now: datetime):
        """Store normalized webhook events (campaign.events.NormalizedEvent) and apply their
        effects, all in ONE transaction; returns campaign.events.RecordedEvents.

        - Deduplicated by sg_event_id and by dedupe key, within the post and against the table.
        - Linked to the ledger by custom_args send_id, else by (X-Message-Id prefix of
          sg_message_id, address); to the lead by address, else through the ledger row.
          Events for unknown addresses are kept with lead_id NULL.
        - processed/delivered settle 'unknown' ledger rows as 'sent'.
        - Suppressing events (hard bounce, dropped, spam report, unsubscribe) put the address's
          keyed hash on the suppression list (known lead or not) and exit the lead's sequences;
          an unsubscribe also sets leads.unsubscribed_at.
        Only events stored by this call have effects: a replayed post changes nothing.
        """
        from campaign.events import ACCEPTED_KINDS, RecordedEvents, suppresses

        received = list(incoming)
        keys: set[str] = set()
        event_ids: set[str] = set()
        batch = []
        for ev in received:
            if ev.dedupe_key in keys or (ev.sg_event_id and ev.sg_event_id in event_ids):
                continue
            keys.add(ev.dedupe_key)
            if ev.sg_event_id:
                event_ids.add(ev.sg_event_id)
            batch.append(ev)

        def chunks(values):
            values = list(values)
            for i in range(0, len(values), self._CHUNK):
                yield values[i : i + self._CHUNK]

        with self.engine.begin() as conn:
            known_keys, known_ids = set(), set()
            for part in chunks(keys):
                known_keys.update(
                    conn.execute(
                        sa.select(events.c.dedupe_key).where(events.c.dedupe_key.in_(part))
                    ).scalars()
                )
            for part in chunks(event_ids):
                known_ids.update(
                    conn.execute(
                        sa.select(events.c.sg_event_id).where(events.c.sg_event_id.in_(part))
                    ).scalars()
                )
            batch = [
                ev for ev in batch if ev.dedupe_key not in known_keys and ev.sg_event_id not in known_ids
            ]
            if not batch:
                return RecordedEvents(received=len(received), duplicates=len(received))

            lead_of_email: dict[str, int] = {}
            for part in chunks({ev.email for ev in batch}):
                lead_of_email.update(
                    conn.execute(sa.select(leads.c.email, leads.c.id).where(leads.c.email.in_(part))).all()
                )
            ledger = (
                sa.select(
                    sends.c.send_id, sends.c.message_id, sends.c.status, enrollments.c.lead_id, leads.c.email
                )
                .join(enrollments, enrollments.c.id == sends.c.enrollment_id)
                .join(leads, leads.c.id == enrollments.c.lead_id)
            )
            by_send_id: dict[str, sa.Row] = {}
            for part in chunks({ev.send_id for ev in batch if ev.send_id}):
                by_send_id.update(
                    (r.send_id, r) for r in conn.execute(ledger.where(sends.c.send_id.in_(part)))
                )
            by_message: dict[tuple[str, str], sa.Row] = {}
            unlinked = {ev.message_id for ev in batch if ev.message_id and ev.send_id not in by_send_id}
            for part in chunks(unlinked):
                # One X-Message-Id covers every recipient of a request: the address picks the row.
                by_message.update(
                    ((r.message_id, r.email), r)
                    for r in conn.execute(ledger.where(sends.c.message_id.in_(part)))
                )

            rows, linked_row = [], {}
            for ev in batch:
                send = by_send_id.get(ev.send_id) or by_message.get((ev.message_id, ev.email))
                linked_row[ev.dedupe_key] = send
                rows.append(
                    {
                        "dedupe_key": ev.dedupe_key,
                        "sg_event_id": ev.sg_event_id,
                        "send_id": send.send_id if send is not None else ev.send_id,
                        "lead_id": lead_of_email.get(ev.email, send.lead_id if send is not None else None),
                        "email_hash": email_hash(ev.email, self.secret_key),
                        "event": ev.kind,
                        "raw_event": ev.raw_event,
                        "occurred_at": ev.occurred_at,
                        "received_at": now,
                        "raw": ev.raw,
                    }
                )
            # ON CONFLICT DO NOTHING (no target: either unique column) covers a concurrent post of
            # the same events; RETURNING says which rows this call stored.
            stored: set[str] = set()
            insert = self._insert(events).on_conflict_do_nothing().returning(events.c.dedupe_key)
            for part in chunks(rows):
                stored.update(conn.execute(insert, part).scalars())
            fresh = [(ev, row) for ev, row in zip(batch, rows) if ev.dedupe_key in stored]

            # processed / delivered: a request we could not settle did reach SendGrid.
            settle = {}
            for ev, _row in fresh:
                send = linked_row[ev.dedupe_key]
                if ev.kind in ACCEPTED_KINDS and send is not None and send.status == SendStatus.unknown.value:
                    settle.setdefault(send.send_id, send.message_id or ev.message_id)
            settled = 0
            for send_id, message_id in settle.items():
                settled += conn.execute(
                    sa.update(sends)
                    .where(
                        sends.c.send_id == send_id,
                        sends.c.status == SendStatus.unknown.value,
                    )
                    .values(status=SendStatus.sent.value, message_id=message_id, settled_at=now, error=None)
                ).rowcount

            # Suppressing events: the address (known lead or not), then the lead's sequences.
            suppress_rows: dict[str, dict] = {}
            exits: dict[str, set[int]] = {}
            unsubscribed: set[int] = set()
            for ev, row in fresh:
                if not suppresses(ev):
                    continue
                suppress_rows.setdefault(
                    row["email_hash"],
                    {"email_hash": row["email_hash"], "reason": ev.raw_event[:32], "created_at": now},
                )
                if row["lead_id"] is not None:
                    exits.setdefault(ev.kind, set()).add(row["lead_id"])
                    if ev.kind == "unsubscribed":
                        unsubscribed.add(row["lead_id"])
            suppressed = 0
            if suppress_rows:
                already = set()
                for part in chunks(suppress_rows):
                    already.update(
                        conn.execute(
                            sa.select(suppressions.c.email_hash).where(suppressions.c.email_hash.in_(part))
                        ).scalars()
                    )
                new_rows = [r for h, r in suppress_rows.items() if h not in already]
                if new_rows:
                    conn.execute(
                        self._insert(suppressions).on_conflict_do_nothing(index_elements=["email_hash"]),
                        new_rows,
                    )
                suppressed = len(new_rows)
            exited = sum(self._exit_active(conn, ids, reason) for reason, ids in sorted(exits.items()))
            for part in chunks(unsubscribed):
                conn.execute(
                    sa.update(leads)
                    .where(leads.c.id.in_(part), leads.c.unsubscribed_at.is_(None))
                    .values(unsubscribed_at=now, updated_at=now)
                )
        return RecordedEvents(
            received=len(received),
            stored=len(fresh),
            duplicates=len(received) - len(fresh),
            linked=sum(1 for ev, _ in fresh if linked_row[ev.dedupe_key] is not None),
            settled=settled,
            suppressed=suppressed,
            exited=exited,
        )

    def mark_booked(self, email: str, now: datetime) -> bool:
        """The lead booked a consultation: booked, booked_at (the first time), and every active
        sequence exited with reason 'booked'. False when no lead has this address."""
        with self.engine.begin() as conn:
            lead_id = conn.execute(
                sa.select(leads.c.id).where(leads.c.email == email.strip().casefold())
            ).scalar()
            if lead_id is None:
                return False
            conn.execute(sa.update(leads).where(leads.c.id == lead_id).values(booked=True, updated_at=now))
            conn.execute(
                sa.update(leads)
                .where(leads.c.id == lead_id, leads.c.booked_at.is_(None))
                .values(booked_at=now)
            )
            self._exit_active(conn, [lead_id], "booked")
        return True

    def forget_lead(self, email: str, now: datetime) -> dict[str, int]:
        """Delete everything we hold about this address (lead row, enrollments, ledger rows,
        webhook events, including events never tied to a lead) and keep only its keyed hash on
        the suppression list, so it is never enrolled or mailed again. One transaction.
        Returns counts of what was deleted."""
        hashed = email_hash(email, self.secret_key)
        with self.engine.begin() as conn:
            lead_id = conn.execute(
                sa.select(leads.c.id).where(leads.c.email == email.strip().casefold())
            ).scalar()
            counts = {"leads": 0, "enrollments": 0, "sends": 0, "events": 0}
            # Explicit deletes, children first: correct even where foreign keys are not enforced.
            event_match = events.c.email_hash == hashed
            if lead_id is not None:
                event_match = sa.or_(event_match, events.c.lead_id == lead_id)
            counts["events"] = conn.execute(sa.delete(events).where(event_match)).rowcount
            if lead_id is not None:
                theirs = sa.select(enrollments.c.id).where(enrollments.c.lead_id == lead_id)
                counts["sends"] = conn.execute(
                    sa.delete(sends).where(sends.c.enrollment_id.in_(theirs))
                ).rowcount
                counts["enrollments"] = conn.execute(
                    sa.delete(enrollments).where(enrollments.c.lead_id == lead_id)
                ).rowcount
                counts["leads"] = conn.execute(sa.delete(leads).where(leads.c.id == lead_id)).rowcount
            conn.execute(
                self._insert(suppressions)
                .values(email_hash=hashed, reason="forgotten", created_at=now)
                .on_conflict_do_nothing(index_elements=["email_hash"])
            )
        return counts

    # ---- approvals ---------------------------------------------------------------------------

    def record_approval(self, template: str, content_hash: str, approved_by: str, now: datetime) -> bool:
        """Record a reviewer's sign-off of one template at one content hash (campaign.approval).
        False when this exact content was already approved: the first sign-off is kept."""
        stmt = (
            self._insert(approvals)
            .values(
                template=template,
                content_hash=content_hash,
                approved_by=approved_by,
                approved_at=now,
            )
            .on_conflict_do_nothing(index_elements=["template", "content_hash"])
            .returning(approvals.c.id)
        )
        with self.engine.begin() as conn:
            return conn.execute(stmt).scalar() is not None

    def approvals_for(self, templates: Iterable[str]) -> dict[str, list[dict]]:
        """Every approval of these templates, newest first:
        {template: [{"content_hash", "approved_by", "approved_at"}, ...]}."""
        names = list(dict.fromkeys(templates))
        found: dict[str, list[dict]] = {}
        with self.engine.connect() as conn:
            for i in range(0, len(names), self._CHUNK):
                query = (
                    sa.select(
                        approvals.c.template,
                        approvals.c.content_hash,
                        approvals.c.approved_by,
                        approvals.c.approved_at,
                    )
                    .where(approvals.c.template.in_(names[i : i + self._CHUNK]))
                    .order_by(approvals.c.approved_at.desc(), approvals.c.id.desc())
                )
                for row in conn.execute(query).mappings():
                    found.setdefault(row["template"], []).append(
                        {k: row[k] for k in ("content_hash", "approved_by", "approved_at")}
                    )
        return found
