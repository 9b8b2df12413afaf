"""Accounts: who may use the console and the lead API, what each role may do, and the audit log.

Plain functions over an AccountStore and plain values; no web framework here, so the console,
the API and the CLI share every rule. Passwords are hashed with Argon2id (argon2-cffi); console
sessions and API tokens are random values of which only the SHA-256 is stored (they are
high-entropy, so a fast hash is enough). Every user and token change writes an audit row in the
same transaction. Times are passed in (`now`) so timeouts and lockouts are testable.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from email_validator import EmailNotValidError, validate_email

from campaign.store.accounts import (
    ROLES,
    AccountStore,
    ApiToken,
    AuditEntry,
    SessionRecord,
    User,
)

__all__ = ["ROLES", "AccountStore", "ApiToken", "AuditEntry", "User"]

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024
MAX_FAILURES = 5
FAILURE_WINDOW = timedelta(minutes=15)
LOCKOUT = timedelta(minutes=15)
IDLE_TIMEOUT = timedelta(minutes=30)
ABSOLUTE_TIMEOUT = timedelta(hours=12)
# last_seen_at and last_used_at are refreshed at most this often: no write on every request.
TOUCH_EVERY = timedelta(minutes=1)

TOKEN_PREFIX = "cmp_"
SCOPES = ("leads:read", "leads:write")
MAX_DETAIL = 500

# One answer for every refusal, so the login form cannot be used to learn who has an account.
LOGIN_REFUSED = (
    "That email and password did not work, or the account is locked after too many attempts. "
    "Try again in 15 minutes, or ask an admin."
)

Session = SessionRecord

# ---- errors --------------------------------------------------------------------------------


class AccountError(ValueError):
    """A request the rules refuse (bad address, weak password, name taken ...): the message says
    what to change and never contains a password or a token."""


class LoginRefused(Exception):
    def __init__(self) -> None:
        super().__init__(LOGIN_REFUSED)


class Unauthorized(Exception):
    """No token, or an unknown or revoked one (HTTP 401)."""


class Forbidden(Exception):
    """A valid token or user without the needed scope or permission (HTTP 403)."""


# ---- who acts ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Actor:
    """Who does something, as the audit log records it. `client` is the network address."""

    name: str  # a user's email, an API token's name, or "cli"
    role: str  # coordinator, reviewer, admin; "api" for a token
    client: str = ""

    @classmethod
    def for_user(cls, user: User, client: str) -> Actor:
        return cls(user.email, user.role, client)

    @classmethod
    def for_token(cls, token_name: str, client: str) -> Actor:
        return cls(token_name, "api", client)


# Whoever runs the command line already holds the database: they act as an admin.
CLI = Actor("cli", "admin", "local")

# ---- permissions ---------------------------------------------------------------------------

_READ = frozenset({"overview.view", "leads.view", "audiences.view", "content.view", "reports.view"})
_CAMPAIGNS = frozenset({"campaigns.launch", "campaigns.pause", "campaigns.resume", "campaigns.stop"})
_COORDINATE = _CAMPAIGNS | {"import", "leads.manage", "test_send"}
_REVIEW = frozenset({"content.approve", "activity.view"})
_ADMINISTER = frozenset({"users.manage", "tokens.manage"})
ACTIONS = _READ | _COORDINATE | _REVIEW | _ADMINISTER
PERMISSIONS: dict[str, frozenset[str]] = {
    "coordinator": _READ | _COORDINATE,
    "reviewer": _READ | _REVIEW,  # approves content and reads everything
    "admin": ACTIONS,
}


def allowed(role: str | None, action: str) -> bool:
    """The one permission check for pages, buttons and POSTs. An unknown action is a bug in the
    caller and raises; an unknown role may do nothing."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}; the actions: {', '.join(sorted(ACTIONS))}")
    return action in PERMISSIONS.get(role or "", frozenset())


# ---- passwords and addresses ---------------------------------------------------------------


@cache
def _hasher() -> PasswordHasher:
    return PasswordHasher()  # Argon2id with argon2-cffi's RFC 9106 low-memory parameters


@cache
def _decoy_hash() -> str:
    # Unknown addresses are checked against this, so they take as long as a wrong password.
    return _hasher().hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    return _hasher().hash(password)


def _password_matches(password_hash: str, password: str) -> bool:
    try:
        return _hasher().verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def check_password_policy(password: str, email: str = "") -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(
            f"The password is too short: use at least {MIN_PASSWORD_LENGTH} characters "
            f"(it has {len(password)}). A few unrelated words make a good one."
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        raise AccountError(f"The password is too long: use at most {MAX_PASSWORD_LENGTH} characters.")
    if email and password.strip().casefold() == email.strip().casefold():
        raise AccountError("The password must not be the email address.")


def normalize_email(email: str) -> str:
    try:
        return validate_email(email.strip(), check_deliverability=False).normalized.casefold()
    except EmailNotValidError as exc:
        raise AccountError(f"{email!r} is not an email address: {exc}") from None


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


# ---- audit ---------------------------------------------------------------------------------


def _entry(actor: Actor, action: str, now: datetime, object_type="", object_id="", detail="") -> AuditEntry:
    # Details are short, single-line notes; callers never pass a password or an anxiety type.
    return AuditEntry(
        at=now,
        actor=actor.name[:320],
        role=actor.role[:16],
        client=actor.client[:100],
        action=action,
        object_type=object_type,
        object_id=str(object_id)[:320],
        detail=" ".join(str(detail).split())[:MAX_DETAIL],
    )


def audit(
    accounts: AccountStore,
    actor: Actor,
    action: str,
    *,
    now: datetime,
    object_type: str = "",
    object_id: str | int = "",
    detail: str = "",
) -> None:
    """Appends one row to the audit log (imports, launches, approvals, lead views ...)."""
    accounts.add_audit(_entry(actor, action, now, object_type, object_id, detail))


@dataclass(frozen=True)
class AuditPage:
    entries: list[AuditEntry]
    next_before_id: int | None  # pass as before_id for the next (older) page; None at the end


def list_audit(
    accounts: AccountStore, *, limit: int = 50, before_id: int | None = None, **filters: Any
) -> AuditPage:
    """Newest first, one page, paginated by key (fast however long the log grows). `filters` are
    AccountStore.audit_page's: actor, action, object_type, object_id, since, until."""
    rows = accounts.audit_page(limit=limit + 1, before_id=before_id, **filters)
    more = len(rows) > limit
    rows = rows[:limit]
    return AuditPage(rows, rows[-1].id if more else None)


# ---- users ---------------------------------------------------------------------------------


def add_user(
    accounts: AccountStore,
    email: str,
    role: str,
    password: str,
    name: str = "",
    *,
    now: datetime,
    actor: Actor = CLI,
) -> User:
    address = normalize_email(email)
    if role not in ROLES:
        raise AccountError(f"Unknown role {role!r}: use one of {', '.join(ROLES)}.")
    check_password_policy(password, address)
    name = " ".join(name.split())
    if len(name) > 200:
        raise AccountError("The name is too long: use at most 200 characters.")
    user = accounts.insert_user(
        email=address,
        name=name,
        role=role,
        password_hash=hash_password(password),
        now=now,
        audit=_entry(actor, "user.add", now, "user", address, f"role {role}"),
    )
    if user is None:
        raise AccountError(f"There is already a user {address}.")
    return user


def list_users(accounts: AccountStore) -> list[User]:
    return accounts.users()


def has_users(accounts: AccountStore) -> bool:
    """False on a fresh database: the login page then says how to create the first user."""
    return accounts.count_users() > 0


def disable_user(accounts: AccountStore, email: str, *, now: datetime, actor: Actor = CLI) -> int:
    """Disables the user and ends their sessions at once; returns how many sessions ended."""
    address = email.strip().casefold()
    user = accounts.user(address)
    if user is None:
        raise AccountError(f"There is no user {address}.")
    if not user.active:
        raise AccountError(f"{address} is already disabled.")
    return accounts.disable_user(user.id, now, _entry(actor, "user.disable", now, "user", address))


# ---- login and sessions --------------------------------------------------------------------


def locked_until(failures: list[datetime]) -> datetime | None:
    """When the lock from these failure times (oldest first) ends: MAX_FAILURES failures within
    FAILURE_WINDOW lock the account for LOCKOUT after the last of them; None when never locked."""
    ends = [
        failures[i + MAX_FAILURES - 1] + LOCKOUT
        for i in range(len(failures) - MAX_FAILURES + 1)
        if failures[i + MAX_FAILURES - 1] - failures[i] <= FAILURE_WINDOW
    ]
    return max(ends, default=None)


@dataclass(frozen=True)
class Login:
    token: str  # goes in the session cookie; only its hash is stored
    csrf_token: str  # goes in every form of this session
    user: User


def login(accounts: AccountStore, email: str, password: str, client: str, now: datetime) -> Login:
    """A new session, or LoginRefused with one message whatever went wrong."""
    address = email.strip().casefold()[:320]
    attempt = Actor(address, "", client)
    lock_ends = locked_until(accounts.login_failures(address, now - FAILURE_WINDOW - LOCKOUT))
    if lock_ends is not None and now < lock_ends:
        # Attempts while locked are not counted: the lock ends 15 minutes after the 5th failure.
        accounts.add_audit(_entry(attempt, "login.failed", now, "user", address, "locked"))
        raise LoginRefused()
    found = accounts.credentials(address)
    matches = _password_matches(found[1] if found else _decoy_hash(), password)
    user = found[0] if found else None
    reason = "unknown user" if user is None else "wrong password" if not matches else ""
    if not reason and not user.active:
        reason = "disabled"
    if reason:
        accounts.record_login_failure(address, now, forget_before=now - FAILURE_WINDOW - LOCKOUT)
        accounts.add_audit(_entry(attempt, "login.failed", now, "user", address, reason))
        raise LoginRefused()
    accounts.clear_login_failures(address)
    if _hasher().check_needs_rehash(found[1]):
        accounts.set_password_hash(user.id, hash_password(password))
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    accounts.create_session(
        session_hash=_sha256(token),
        user_id=user.id,
        csrf_token=csrf,
        client=client[:100],
        now=now,
        expired_if_seen_before=now - IDLE_TIMEOUT,
        expired_if_created_before=now - ABSOLUTE_TIMEOUT,
        audit=_entry(Actor.for_user(user, client), "login", now, "user", user.email),
    )
    return Login(token, csrf, user)


def session_for(accounts: AccountStore, token: str | None, now: datetime) -> Session | None:
    """The live session for a cookie's token, or None (unknown, expired, or user disabled).
    An expired session is deleted; a live one has its last_seen_at refreshed."""
    if not token:
        return None
    key = _sha256(token)
    found = accounts.session(key)
    if found is None:
        return None
    expired = now - found.last_seen_at > IDLE_TIMEOUT or now - found.created_at > ABSOLUTE_TIMEOUT
    if expired or not found.user.active:
        accounts.delete_session(key)
        return None
    if now - found.last_seen_at >= TOUCH_EVERY:
        accounts.touch_session(key, now)
        found = replace(found, last_seen_at=now)
    return found


def logout(accounts: AccountStore, token: str | None, client: str, now: datetime) -> bool:
    """Ends the session server-side: its cookie is refused from now on."""
    found = accounts.session(_sha256(token)) if token else None
    if found is None:
        return False
    entry = _entry(Actor.for_user(found.user, client), "logout", now, "user", found.user.email)
    return accounts.delete_session(_sha256(token), audit=entry)


def csrf_ok(session: Session, submitted: str | None) -> bool:
    """Compares a form's CSRF token with the session's in constant time."""
    return bool(submitted) and hmac.compare_digest(session.csrf_token.encode(), submitted.encode())


# ---- API tokens ----------------------------------------------------------------------------


def parse_scopes(scopes: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """'leads:write,leads:read' (or a list of such strings) -> sorted unique known scopes."""
    parts = [scopes] if isinstance(scopes, str) else list(scopes)
    found = {s.strip() for part in parts for s in part.split(",") if s.strip()}
    unknown = sorted(found - set(SCOPES))
    if unknown or not found:
        problem = f"Unknown scope: {', '.join(unknown)}." if unknown else "A token needs at least one scope."
        raise AccountError(f"{problem} The scopes: {', '.join(SCOPES)}.")
    return tuple(sorted(found))


def _check_token_name(name: str) -> str:
    name = name.strip()
    if not (1 <= len(name) <= 64) or not all(c.isascii() and (c.isalnum() or c in "._-") for c in name):
        raise AccountError(
            f"Token name {name!r}: use 1 to 64 letters, digits, dots, dashes or underscores "
            "(say what uses it, like website-form)."
        )
    return name


@dataclass(frozen=True)
class NewToken:
    token: str  # shown once; only its hash is stored
    record: ApiToken


def create_token(accounts: AccountStore, name: str, scopes, *, now: datetime, actor: Actor = CLI) -> NewToken:
    name = _check_token_name(name)
    wanted = parse_scopes(scopes)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    record = accounts.insert_token(
        name=name,
        token_hash=_sha256(token),
        scopes=wanted,
        created_by=actor.name,
        now=now,
        audit=_entry(actor, "token.create", now, "token", name, f"scopes {','.join(wanted)}"),
    )
    if record is None:
        raise AccountError(f"There is already a token named {name!r} (revoked names stay taken).")
    return NewToken(token, record)


def list_tokens(accounts: AccountStore) -> list[ApiToken]:
    return accounts.tokens()


def revoke_token(accounts: AccountStore, name: str, *, now: datetime, actor: Actor = CLI) -> None:
    """Revokes at once: the next request with the token gets 401."""
    name = name.strip()
    if not accounts.revoke_token(name, now, _entry(actor, "token.revoke", now, "token", name)):
        existing = accounts.token_by_name(name)
        raise AccountError(
            f"There is no token named {name!r}."
            if existing is None
            else f"Token {name!r} is already revoked."
        )


def verify_token(accounts: AccountStore, token: str | None, needed_scope: str, now: datetime) -> str:
    """The token's name, or Unauthorized (missing, unknown, revoked) or Forbidden (scope)."""
    if needed_scope not in SCOPES:
        raise ValueError(f"unknown scope {needed_scope!r}")
    if not token or not token.startswith(TOKEN_PREFIX):
        raise Unauthorized("Send a valid API token: Authorization: Bearer cmp_...")
    found = accounts.token_by_hash(_sha256(token))
    if found is None or found.revoked_at is not None:
        raise Unauthorized("This API token is not valid (unknown or revoked).")
    if found.last_used_at is None or now - found.last_used_at >= TOUCH_EVERY:
        accounts.touch_token(found.id, now, stale_before=now - TOUCH_EVERY)
    if needed_scope not in found.scopes:
        raise Forbidden(f"This API token lacks the {needed_scope} scope.")
    return found.name
