"""Account tables and their queries: console users, their sessions, login failures, API tokens
and the audit log. The only module that talks SQL about accounts.

The tables live on campaign.store's `metadata`, so Alembic sees one schema. Secrets are never
stored: a session and an API token are kept as the SHA-256 of their random value, a password as
its Argon2 hash. The audit log is append-only from the application: no method here changes or
deletes an audit row. A change and its audit row are written in one transaction.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from campaign.store.tables import UTCDateTime, metadata

ROLES = ("coordinator", "reviewer", "admin")

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("email", sa.String(320), nullable=False, unique=True),  # casefolded
    sa.Column("name", sa.String(200), nullable=False, server_default=""),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("password_hash", sa.String(255), nullable=False),  # Argon2id, PHC string
    sa.Column("disabled_at", UTCDateTime, nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.CheckConstraint("role IN ('coordinator', 'reviewer', 'admin')", name="ck_users_role"),
)

console_sessions = sa.Table(
    "console_sessions",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),  # sha256 hex of the cookie's token
    sa.Column(
        "user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    ),
    sa.Column("csrf_token", sa.String(64), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("last_seen_at", UTCDateTime, nullable=False),
    sa.Column("client", sa.String(100), nullable=False, server_default=""),
)

login_failures = sa.Table(
    "login_failures",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("email", sa.String(320), nullable=False),  # as typed, casefolded
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Index("ix_login_failures_email_at", "email", "at"),
    sa.Index("ix_login_failures_at", "at"),
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("at", UTCDateTime, nullable=False, index=True),
    sa.Column("actor", sa.String(320), nullable=False),  # a user's email, a token's name, or "cli"
    sa.Column("role", sa.String(16), nullable=False, server_default=""),
    sa.Column("client", sa.String(100), nullable=False, server_default=""),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("object_type", sa.String(32), nullable=False, server_default=""),
    sa.Column("object_id", sa.String(320), nullable=False, server_default=""),
    sa.Column("detail", sa.String(500), nullable=False, server_default=""),
    # Pages are read newest first by id, optionally for one actor, action or object.
    sa.Index("ix_audit_log_actor_id", "actor", "id"),
    sa.Index("ix_audit_log_action_id", "action", "id"),
    sa.Index("ix_audit_log_object_id", "object_type", "object_id", "id"),
)

api_tokens = sa.Table(
    "api_tokens",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(64), nullable=False, unique=True),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),  # sha256 hex of the token
    sa.Column("scopes", sa.String(200), nullable=False),  # comma-separated
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("created_by", sa.String(320), nullable=False),
    sa.Column("last_used_at", UTCDateTime, nullable=True),
    sa.Column("revoked_at", UTCDateTime, nullable=True),
)


@dataclass(frozen=True)
class User:
    id: int
    email: str
    name: str
    role: str
    created_at: datetime
    disabled_at: datetime | None

    @property
    def active(self) -> bool:
        return self.disabled_at is None


@dataclass(frozen=True)
class SessionRecord:
    user: User
    csrf_token: str
    created_at: datetime
    last_seen_at: datetime
    client: str


@dataclass(frozen=True)
class ApiToken:
    id: int
    name: str
    scopes: tuple[str, ...]
    created_at: datetime
    created_by: str
    last_used_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True)
class AuditEntry:
    at: datetime
    actor: str
    role: str
    client: str
    action: str
    object_type: str = ""
    object_id: str = ""
    detail: str = ""
    id: int | None = None  # set once stored


_USER_COLUMNS = [users.c[name] for name in ("id", "email", "name", "role", "created_at", "disabled_at")]


def _user(row) -> User:
    return User(**{c.name: row[c.name] for c in _USER_COLUMNS})


def _token(row) -> ApiToken:
    values = {c.name: row[c.name] for c in api_tokens.c if c.name != "token_hash"}
    values["scopes"] = tuple(s for s in values["scopes"].split(",") if s)
    return ApiToken(**values)


def _audit_values(entry: AuditEntry) -> dict:
    return {k: v for k, v in asdict(entry).items() if k != "id"}


class AccountStore:
    """Account queries over the campaign database: `AccountStore(store.engine)`."""

    def __init__(self, engine: sa.Engine):
        self.engine = engine

    def _insert(self, table):
        return (postgresql.insert if self.engine.dialect.name == "postgresql" else sqlite.insert)(table)

    @staticmethod
    def _audit(conn, entry: AuditEntry | None) -> None:
        if entry is not None:
            conn.execute(sa.insert(audit_log).values(**_audit_values(entry)))

    # ---- users ---------------------------------------------------------------------------------

    def insert_user(
        self, *, email: str, name: str, role: str, password_hash: str, now: datetime, audit: AuditEntry
    ) -> User | None:
        """The new user, or None when the address is taken (nothing written then)."""
        stmt = (
            self._insert(users)
            .values(email=email, name=name, role=role, password_hash=password_hash, created_at=now)
            .on_conflict_do_nothing(index_elements=["email"])
            .returning(*_USER_COLUMNS)
        )
        with self.engine.begin() as conn:
            row = conn.execute(stmt).mappings().first()
            if row is None:
                return None
            self._audit(conn, audit)
        return _user(row)

    def user(self, email: str) -> User | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(*_USER_COLUMNS).where(users.c.email == email)).mappings().first()
        return _user(row) if row else None

    def users(self) -> list[User]:
        with self.engine.connect() as conn:
            return [
                _user(r) for r in conn.execute(sa.select(*_USER_COLUMNS).order_by(users.c.email)).mappings()
            ]

    def count_users(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(users)).scalar_one()

    def credentials(self, email: str) -> tuple[User, str] | None:
        """The user and their password hash, for login only."""
        with self.engine.connect() as conn:
            row = (
                conn.execute(sa.select(*_USER_COLUMNS, users.c.password_hash).where(users.c.email == email))
                .mappings()
                .first()
            )
        return (_user(row), row["password_hash"]) if row else None

    def set_password_hash(self, user_id: int, password_hash: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(sa.update(users).where(users.c.id == user_id).values(password_hash=password_hash))

    def disable_user(self, user_id: int, now: datetime, audit: AuditEntry) -> int:
        """Marks the user disabled and deletes their sessions; returns how many sessions ended."""
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(users)
                .where(users.c.id == user_id, users.c.disabled_at.is_(None))
                .values(disabled_at=now)
            )
            ended = conn.execute(sa.delete(console_sessions).where(console_sessions.c.user_id == user_id))
            self._audit(conn, audit)
        return ended.rowcount

    # ---- login throttling ---------------------------------------------------------------------

    def record_login_failure(self, email: str, now: datetime, forget_before: datetime) -> None:
        """Records one failure and drops everyone's failures older than forget_before."""
        with self.engine.begin() as conn:
            conn.execute(sa.delete(login_failures).where(login_failures.c.at < forget_before))
            conn.execute(sa.insert(login_failures).values(email=email, at=now))

    def login_failures(self, email: str, since: datetime) -> list[datetime]:
        """Failure times for this address since `since`, oldest first."""
        query = (
            sa.select(login_failures.c.at)
            .where(login_failures.c.email == email, login_failures.c.at >= since)
            .order_by(login_failures.c.at)
        )
        with self.engine.connect() as conn:
            return list(conn.execute(query).scalars())

    def clear_login_failures(self, email: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(sa.delete(login_failures).where(login_failures.c.email == email))

    # ---- sessions ------------------------------------------------------------------------------

    def create_session(
        self,
        *,
        session_hash: str,
        user_id: int,
        csrf_token: str,
        client: str,
        now: datetime,
        expired_if_seen_before: datetime,
        expired_if_created_before: datetime,
        audit: AuditEntry,
    ) -> None:
        """Stores a new session; sweeps everyone's expired sessions on the way."""
        cs = console_sessions
        with self.engine.begin() as conn:
            conn.execute(
                sa.delete(cs).where(
                    sa.or_(
                        cs.c.last_seen_at < expired_if_seen_before,
                        cs.c.created_at < expired_if_created_before,
                    )
                )
            )
            conn.execute(
                sa.insert(cs).values(
                    id=session_hash,
                    user_id=user_id,
                    csrf_token=csrf_token,
                    created_at=now,
                    last_seen_at=now,
                    client=client,
                )
            )
            self._audit(conn, audit)

    def session(self, session_hash: str) -> SessionRecord | None:
        cs = console_sessions
        query = (
            sa.select(
                *_USER_COLUMNS,
                cs.c.csrf_token,
                cs.c.created_at.label("s_created"),
                cs.c.last_seen_at,
                cs.c.client,
            )
            .join(users, users.c.id == cs.c.user_id)
            .where(cs.c.id == session_hash)
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        if row is None:
            return None
        return SessionRecord(
            user=_user(row),
            csrf_token=row["csrf_token"],
            created_at=row["s_created"],
            last_seen_at=row["last_seen_at"],
            client=row["client"],
        )

    def touch_session(self, session_hash: str, now: datetime) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(console_sessions)
                .where(console_sessions.c.id == session_hash)
                .values(last_seen_at=now)
            )

    def delete_session(self, session_hash: str, audit: AuditEntry | None = None) -> bool:
        with self.engine.begin() as conn:
            gone = conn.execute(sa.delete(console_sessions).where(console_sessions.c.id == session_hash))
            if gone.rowcount:
                self._audit(conn, audit)
        return bool(gone.rowcount)

    def count_sessions(self, user_id: int) -> int:
        with self.engine.connect() as conn:
            return conn.execute(
                sa.select(sa.func.count()).where(console_sessions.c.user_id == user_id)
            ).scalar_one()

    # ---- API tokens ----------------------------------------------------------------------------

    def insert_token(
        self,
        *,
        name: str,
        token_hash: str,
        scopes: tuple[str, ...],
        created_by: str,
        now: datetime,
        audit: AuditEntry,
    ) -> ApiToken | None:
        """The new token, or None when the name is taken (revoked names stay taken)."""
        stmt = (
            self._insert(api_tokens)
            .values(
                name=name,
                token_hash=token_hash,
                scopes=",".join(scopes),
                created_by=created_by,
                created_at=now,
            )
            .on_conflict_do_nothing(index_elements=["name"])
            .returning(*api_tokens.c)
        )
        with self.engine.begin() as conn:
            row = conn.execute(stmt).mappings().first()
            if row is None:
                return None
            self._audit(conn, audit)
        return _token(row)

    def tokens(self) -> list[ApiToken]:
        with self.engine.connect() as conn:
            return [
                _token(r) for r in conn.execute(sa.select(api_tokens).order_by(api_tokens.c.name)).mappings()
            ]

    def token_by_name(self, name: str) -> ApiToken | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(api_tokens).where(api_tokens.c.name == name)).mappings().first()
        return _token(row) if row else None

    def token_by_hash(self, token_hash: str) -> ApiToken | None:
        with self.engine.connect() as conn:
            row = (
                conn.execute(sa.select(api_tokens).where(api_tokens.c.token_hash == token_hash))
                .mappings()
                .first()
            )
        return _token(row) if row else None

    def revoke_token(self, name: str, now: datetime, audit: AuditEntry) -> bool:
        """False when there is no such live token (unknown, or already revoked)."""
        with self.engine.begin() as conn:
            done = conn.execute(
                sa.update(api_tokens)
                .where(api_tokens.c.name == name, api_tokens.c.revoked_at.is_(None))
                .values(revoked_at=now)
            )
            if done.rowcount:
                self._audit(conn, audit)
        return bool(done.rowcount)

    def touch_token(self, token_id: int, now: datetime, stale_before: datetime) -> None:
        """Sets last_used_at unless it is already newer than stale_before (no write per request)."""
        t = api_tokens
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(t)
                .where(
                    t.c.id == token_id, sa.or_(t.c.last_used_at.is_(None), t.c.last_used_at < stale_before)
                )
                .values(last_used_at=now)
            )

    # ---- audit log -----------------------------------------------------------------------------

    def add_audit(self, entry: AuditEntry) -> None:
        with self.engine.begin() as conn:
            self._audit(conn, entry)

    def audit_page(
        self,
        *,
        limit: int,
        before_id: int | None = None,
        actor: str | None = None,
        action: str | None = None,
        object_type: str | None = None,
        object_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[AuditEntry]:
        """Newest first, keyed by id: pass the last entry's id as before_id for the next page."""
        a = audit_log
        where = []
        if before_id is not None:
            where.append(a.c.id < before_id)
        for column, wanted in ((a.c.actor, actor), (a.c.action, action), (a.c.object_type, object_type)):
            if wanted is not None:
                where.append(column == wanted)
        if object_id is not None:
            where.append(a.c.object_id == object_id)
        if since is not None:
            where.append(a.c.at >= since)
        if until is not None:
            where.append(a.c.at < until)
        query = sa.select(a).where(*where).order_by(a.c.id.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [AuditEntry(**r) for r in conn.execute(query).mappings()]
