"""Accounts on real databases (a SQLite file and PostgreSQL): passwords, login throttling,
session timeouts, disabling, API tokens, the permission table and the audit log."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher
from conftest import utc

from campaign import accounts as acc
from campaign.accounts import (
    AccountError,
    AccountStore,
    Actor,
    Forbidden,
    LoginRefused,
    Unauthorized,
    allowed,
)
from campaign.store.accounts import api_tokens, audit_log, console_sessions, users

T0 = utc(2026, 3, 2, 14, 0)
PASSWORD = "correct horse battery staple"
ANN = "ann@example.com"


@pytest.fixture
def accounts(store):
    return AccountStore(store.engine)


@pytest.fixture
def ann(accounts):
    return acc.add_user(accounts, "Ann@Example.com", "coordinator", PASSWORD, "Ann Lee", now=T0)


def rows(accounts, table) -> list[dict]:
    with accounts.engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(table)).mappings()]


def refused_message(accounts, email, password, now) -> str:
    with pytest.raises(LoginRefused) as caught:
        acc.login(accounts, email, password, "10.0.0.1", now)
    return str(caught.value)


# ---- users and passwords ------------------------------------------------------------------------


def test_password_is_stored_as_argon2id_only(accounts, ann):
    assert ann.email == ANN and ann.name == "Ann Lee" and ann.role == "coordinator"
    [row] = rows(accounts, users)
    assert row["password_hash"].startswith("$argon2id$")
    assert PASSWORD not in row["password_hash"] and "horse" not in row["password_hash"]
    assert PasswordHasher().verify(row["password_hash"], PASSWORD)
    assert all(PASSWORD not in str(value) for value in row.values() if value is not None)


def test_password_policy_refuses_short_passwords_without_echoing_them(accounts):
    with pytest.raises(AccountError) as caught:
        acc.add_user(accounts, ANN, "admin", "short-pw", now=T0)
    assert "at least 12 characters" in str(caught.value) and "short-pw" not in str(caught.value)
    with pytest.raises(AccountError, match="must not be the email"):
        acc.add_user(accounts, "someone.long@example.com", "admin", "Someone.Long@example.com", now=T0)
    assert acc.list_users(accounts) == [] and rows(accounts, audit_log) == []
    assert not acc.has_users(accounts)


def test_add_user_checks_address_role_and_uniqueness(accounts, ann):
    with pytest.raises(AccountError, match="not an email address"):
        acc.add_user(accounts, "not-an-address", "admin", PASSWORD, now=T0)
    with pytest.raises(AccountError, match="coordinator, reviewer, admin"):
        acc.add_user(accounts, "bo@example.com", "owner", PASSWORD, now=T0)
    with pytest.raises(AccountError, match="already a user ann@example.com"):
        acc.add_user(accounts, "ANN@EXAMPLE.COM", "admin", PASSWORD, now=T0)
    assert [u.email for u in acc.list_users(accounts)] == [ANN] and acc.has_users(accounts)


# ---- login and throttling -----------------------------------------------------------------------


def test_login_gives_a_session_whose_token_is_stored_only_as_its_hash(accounts, ann):
    login = acc.login(accounts, " ANN@example.com ", PASSWORD, "10.0.0.1", T0)
    assert login.user == ann and login.token != login.csrf_token and len(login.token) >= 40
    [row] = rows(accounts, console_sessions)
    assert row["id"] == hashlib.sha256(login.token.encode()).hexdigest()
    assert all(login.token not in str(value) for value in row.values())
    assert row["client"] == "10.0.0.1" and row["user_id"] == ann.id
    session = acc.session_for(accounts, login.token, T0 + timedelta(minutes=1))
    assert session.user == ann and session.csrf_token == login.csrf_token
    assert acc.session_for(accounts, login.token + "x", T0) is None
    assert acc.session_for(accounts, None, T0) is None


def test_five_failures_lock_the_account_for_15_minutes_with_one_message(accounts, ann):
    unknown = refused_message(accounts, "nobody@example.com", PASSWORD, T0)
    for minute in range(5):
        assert refused_message(accounts, ANN, "wrong password!", T0 + timedelta(minutes=minute)) == unknown
    last_failure = T0 + timedelta(minutes=4)
    # Locked: even the right password is refused, with the same message, and does not extend it.
    assert refused_message(accounts, ANN, PASSWORD, last_failure + timedelta(minutes=5)) == unknown
    assert refused_message(accounts, ANN, PASSWORD, last_failure + timedelta(minutes=14)) == unknown
    login = acc.login(accounts, ANN, PASSWORD, "10.0.0.1", last_failure + timedelta(minutes=15, seconds=1))
    assert login.user == ann
    # A success clears the count: four more failures do not lock.
    later = last_failure + timedelta(minutes=20)
    for minute in range(4):
        refused_message(accounts, ANN, "wrong password!", later + timedelta(minutes=minute))
    assert acc.login(accounts, ANN, PASSWORD, "10.0.0.1", later + timedelta(minutes=5)).user == ann


def test_failures_spread_over_more_than_15_minutes_do_not_lock(accounts, ann):
    for minute in (0, 4, 8, 12, 17):
        refused_message(accounts, ANN, "wrong password!", T0 + timedelta(minutes=minute))
    assert acc.login(accounts, ANN, PASSWORD, "10.0.0.1", T0 + timedelta(minutes=18)).user == ann


def test_locked_until_is_15_minutes_after_the_fifth_failure_in_a_window():
    minutes = lambda *ms: [T0 + timedelta(minutes=m) for m in ms]
    assert acc.locked_until(minutes(0, 1, 2, 3)) is None
    assert acc.locked_until(minutes(0, 1, 2, 3, 4)) == T0 + timedelta(minutes=19)
    assert acc.locked_until(minutes(0, 1, 2, 3, 15)) == T0 + timedelta(minutes=30)
    assert acc.locked_until(minutes(0, 1, 2, 3, 16)) is None
    assert acc.locked_until(minutes(0, 10, 16, 20, 24, 25)) == T0 + timedelta(minutes=40)


# ---- sessions -------------------------------------------------------------------------------


def test_idle_timeout_is_30_minutes_and_use_refreshes_it(accounts, ann):
    login = acc.login(accounts, ANN, PASSWORD, "10.0.0.1", T0)
    assert acc.session_for(accounts, login.token, T0 + timedelta(minutes=29)) is not None
    assert acc.session_for(accounts, login.token, T0 + timedelta(minutes=58)) is not None
    assert acc.session_for(accounts, login.token, T0 + timedelta(minutes=88, seconds=1)) is None
    # The expired session is gone: an earlier clock does not bring it back.
    assert acc.session_for(accounts, login.token, T0 + timedelta(minutes=59)) is None
    assert rows(accounts, console_sessions) == []


def test_absolute_timeout_is_12_hours_however_active(accounts, ann):
    login = acc.login(accounts, ANN, PASSWORD, "10.0.0.1", T0)
    moment = T0
    while moment < T0 + timedelta(hours=11, minutes=50):
        moment += timedelta(minutes=20)
        assert acc.session_for(accounts, login.token, moment) is not None
    assert acc.session_for(accounts, login.token, T0 + timedelta(hours=12, minutes=1)) is None


def test_logout_ends_the_session_server_side(accounts, ann):
    login = acc.login(accounts, ANN, PASSWORD, "10.0.0.1", T0)
    assert acc.logout(accounts, login.token, "10.0.0.1", T0 + timedelta(minutes=1))
    assert acc.session_for(accounts, login.token, T0 + timedelta(minutes=2)) is None
    assert not acc.logout(accounts, login.token, "10.0.0.1", T0 + timedelta(minutes=3))


def test_disabling_a_user_ends_every_session_and_refuses_login(accounts, ann):
    first = acc.login(accounts, ANN, PASSWORD, "10.0.0.1", T0)
    second = acc.login(accounts, ANN, PASSWORD, "10.0.0.2", T0 + timedelta(minutes=1))
    assert acc.disable_user(accounts, "ANN@example.com", now=T0 + timedelta(minutes=2)) == 2
    assert accounts.count_sessions(ann.id) == 0
    for login in (first, second):
        assert acc.session_for(accounts, login.token, T0 + timedelta(minutes=3)) is None
    unknown = refused_message(accounts, "nobody@example.com", PASSWORD, T0)
    assert refused_message(accounts, ANN, PASSWORD, T0 + timedelta(minutes=4)) == unknown
    [user] = acc.list_users(accounts)
    assert not user.active and user.disabled_at == T0 + timedelta(minutes=2)
    with pytest.raises(AccountError, match="already disabled"):
        acc.disable_user(accounts, ANN, now=T0)
    with pytest.raises(AccountError, match="no user"):
        acc.disable_user(accounts, "nobody@example.com", now=T0)


def test_csrf_token_must_match_the_sessions(accounts, ann):
    login = acc.login(accounts, ANN, PASSWORD, "10.0.0.1", T0)
    session = acc.session_for(accounts, login.token, T0)
    assert acc.csrf_ok(session, login.csrf_token)
    assert not acc.csrf_ok(session, login.csrf_token[:-1] + "x")
    assert not acc.csrf_ok(session, "") and not acc.csrf_ok(session, None)


# ---- API tokens ---------------------------------------------------------------------------------


def test_token_lifecycle(accounts):
    made = acc.create_token(accounts, "website-form", "leads:write", now=T0)
    assert made.token.startswith("cmp_") and len(made.token) > 40
    assert made.record.scopes == ("leads:write",) and made.record.created_by == "cli"
    [row] = rows(accounts, api_tokens)
    assert row["token_hash"] == hashlib.sha256(made.token.encode()).hexdigest()
    assert all(made.token not in str(value) for value in row.values())

    assert acc.verify_token(accounts, made.token, "leads:write", T0) == "website-form"
    with pytest.raises(Forbidden, match="leads:read"):
        acc.verify_token(accounts, made.token, "leads:read", T0)
    for wrong in (None, "", "cmp_" + "x" * 43, made.token[:-1], "Bearer " + made.token):
        with pytest.raises(Unauthorized):
            acc.verify_token(accounts, wrong, "leads:write", T0)

    acc.revoke_token(accounts, "website-form", now=T0 + timedelta(hours=1))
    with pytest.raises(Unauthorized):
        acc.verify_token(accounts, made.token, "leads:write", T0 + timedelta(hours=1))
    with pytest.raises(AccountError, match="already revoked"):
        acc.revoke_token(accounts, "website-form", now=T0)
    with pytest.raises(AccountError, match="no token"):
        acc.revoke_token(accounts, "nope", now=T0)
    with pytest.raises(AccountError, match="already a token"):
        acc.create_token(accounts, "website-form", "leads:write", now=T0)
    [listed] = acc.list_tokens(accounts)
    assert listed.revoked_at == T0 + timedelta(hours=1) and not hasattr(listed, "token_hash")


def test_token_last_use_is_written_at_most_once_a_minute(accounts):
    made = acc.create_token(accounts, "crm", ["leads:read", "leads:write"], now=T0)
    assert made.record.scopes == ("leads:read", "leads:write")
    last_used = lambda: acc.list_tokens(accounts)[0].last_used_at
    assert last_used() is None
    acc.verify_token(accounts, made.token, "leads:read", T0)
    assert last_used() == T0
    acc.verify_token(accounts, made.token, "leads:read", T0 + timedelta(seconds=30))
    assert last_used() == T0
    acc.verify_token(accounts, made.token, "leads:write", T0 + timedelta(seconds=61))
    assert last_used() == T0 + timedelta(seconds=61)


def test_token_names_and_scopes_are_checked(accounts):
    with pytest.raises(AccountError, match="Unknown scope: leads:delete"):
        acc.create_token(accounts, "crm", "leads:write,leads:delete", now=T0)
    with pytest.raises(AccountError, match="at least one scope"):
        acc.create_token(accounts, "crm", " , ", now=T0)
    with pytest.raises(AccountError, match="Token name"):
        acc.create_token(accounts, "my token; drop", "leads:write", now=T0)
    assert acc.list_tokens(accounts) == [] and rows(accounts, audit_log) == []


# ---- permissions ----------------------------------------------------------------------------


def test_the_permission_table():
    coordinator = {
        "import",
        "leads.view",
        "leads.manage",
        "campaigns.launch",
        "campaigns.pause",
        "campaigns.resume",
        "campaigns.stop",
        "test_send",
        "reports.view",
        "overview.view",
        "audiences.view",
        "content.view",
    }
    reviewer = {
        "content.approve",
        "content.view",
        "leads.view",
        "reports.view",
        "overview.view",
        "audiences.view",
        "activity.view",
    }
    for action in acc.ACTIONS:
        assert allowed("coordinator", action) == (action in coordinator), action
        assert allowed("reviewer", action) == (action in reviewer), action
        assert allowed("admin", action), action
        assert not allowed("", action) and not allowed(None, action) and not allowed("api", action)
    assert {"users.manage", "tokens.manage"} <= acc.ACTIONS
    with pytest.raises(ValueError, match="unknown action"):
        allowed("admin", "leads.veiw")


# ---- audit log ----------------------------------------------------------------------------------


def test_every_account_change_and_login_is_audited(accounts):
    admin = Actor("boss@example.com", "admin", "192.0.2.7")
    acc.add_user(accounts, ANN, "reviewer", PASSWORD, now=T0, actor=admin)
    with pytest.raises(LoginRefused):
        acc.login(accounts, ANN, "not the password", "10.0.0.1", T0 + timedelta(minutes=1))
    login = acc.login(accounts, ANN, PASSWORD, "10.0.0.1", T0 + timedelta(minutes=2))
    acc.logout(accounts, login.token, "10.0.0.1", T0 + timedelta(minutes=3))
    made = acc.create_token(accounts, "crm", "leads:read", now=T0 + timedelta(minutes=4), actor=admin)
    acc.revoke_token(accounts, "crm", now=T0 + timedelta(minutes=5), actor=admin)
    acc.disable_user(accounts, ANN, now=T0 + timedelta(minutes=6))

    entries = list(reversed(acc.list_audit(accounts).entries))
    got = [(e.action, e.actor, e.role, e.client, e.object_type, e.object_id, e.detail) for e in entries]
    assert got == [
        ("user.add", "boss@example.com", "admin", "192.0.2.7", "user", ANN, "role reviewer"),
        ("login.failed", ANN, "", "10.0.0.1", "user", ANN, "wrong password"),
        ("login", ANN, "reviewer", "10.0.0.1", "user", ANN, ""),
        ("logout", ANN, "reviewer", "10.0.0.1", "user", ANN, ""),
        ("token.create", "boss@example.com", "admin", "192.0.2.7", "token", "crm", "scopes leads:read"),
        ("token.revoke", "boss@example.com", "admin", "192.0.2.7", "token", "crm", ""),
        ("user.disable", "cli", "admin", "local", "user", ANN, ""),
    ]
    assert [e.at for e in entries] == [T0 + timedelta(minutes=m) for m in range(7)]
    secrets = (PASSWORD, "not the password", made.token, login.token, login.csrf_token)
    for row in rows(accounts, audit_log):
        assert not any(s in str(value) for s in secrets for value in row.values()), row


def test_audit_pages_by_key_and_filters(accounts):
    cli, web = acc.CLI, Actor(ANN, "coordinator", "10.0.0.1")
    for i in range(7):
        acc.audit(
            accounts,
            web if i % 2 else cli,
            "lead.view" if i % 2 else "import",
            now=T0 + timedelta(minutes=i),
            object_type="lead" if i % 2 else "file",
            object_id=i,
            detail=f"step\n{i}",
        )
    first = acc.list_audit(accounts, limit=3)
    assert [e.object_id for e in first.entries] == ["6", "5", "4"] and first.next_before_id is not None
    second = acc.list_audit(accounts, limit=3, before_id=first.next_before_id)
    third = acc.list_audit(accounts, limit=3, before_id=second.next_before_id)
    assert [e.object_id for e in second.entries + third.entries] == ["3", "2", "1", "0"]
    assert third.next_before_id is None and second.entries[-1].detail == "step 1"
    assert [e.object_id for e in acc.list_audit(accounts, action="lead.view").entries] == ["5", "3", "1"]
    assert [e.object_id for e in acc.list_audit(accounts, actor="cli", limit=2).entries] == ["6", "4"]
    assert [e.object_id for e in acc.list_audit(accounts, object_type="lead", object_id="3").entries] == ["3"]
    window = acc.list_audit(accounts, since=T0 + timedelta(minutes=2), until=T0 + timedelta(minutes=4))
    assert [e.object_id for e in window.entries] == ["3", "2"]


# ---- schema ---------------------------------------------------------------------------------


ACCOUNT_TABLES = {"users", "console_sessions", "login_failures", "audit_log", "api_tokens"}


def test_migration_creates_exactly_the_declared_tables(store, database_url):
    from alembic import command
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from campaign.store import alembic_config, metadata

    def diffs() -> list:
        with store.engine.connect() as conn:
            found = compare_metadata(MigrationContext.configure(conn), metadata)
        return [d for d in found if ACCOUNT_TABLES & {getattr(x, "name", None) for x in _flatten(d)}]

    assert set(sa.inspect(store.engine).get_table_names()) >= ACCOUNT_TABLES
    assert diffs() == []
    cfg = alembic_config(database_url)
    with store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0002")
    assert not ACCOUNT_TABLES & set(sa.inspect(store.engine).get_table_names())
    store.migrate()
    assert diffs() == []


def _flatten(diff):
    """compare_metadata's entries are tuples (or lists of tuples) holding schema objects."""
    for item in diff if isinstance(diff, (list, tuple)) else [diff]:
        if isinstance(item, (list, tuple)):
            yield from _flatten(item)
        else:
            yield getattr(item, "table", item)
            yield item
