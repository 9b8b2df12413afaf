"""`campaign user ...` and `campaign token ...` through Typer's runner on a real SQLite file."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from campaign import accounts as acc
from campaign.cli import app
from campaign.store import Store
from campaign.store.accounts import AccountStore, users

runner = CliRunner()
PASSWORD = "a long enough passphrase"


@pytest.fixture
def env(settings, monkeypatch):
    monkeypatch.setenv("CAMPAIGN_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("CAMPAIGN_SECRET_KEY", "cli-test-secret")
    monkeypatch.setenv("COLUMNS", "200")
    return settings


@pytest.fixture
def accounts(env):
    store = Store.open(env.database_url, secret_key="cli-test-secret")
    yield AccountStore(store.engine)
    store.close()


def users_json() -> list[dict]:
    result = runner.invoke(app, ["user", "list", "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_user_add_with_password_stdin(env, accounts):
    result = runner.invoke(
        app,
        ["user", "add", "Ann@Example.com", "--role", "admin", "--name", "Ann Lee", "--password-stdin"],
        input=PASSWORD + "\n",
    )
    assert result.exit_code == 0, result.output
    assert "Added admin ann@example.com (Ann Lee)." in result.stdout and PASSWORD not in result.output
    [user] = users_json()
    assert (user["email"], user["role"], user["name"], user["disabled_at"]) == (
        "ann@example.com",
        "admin",
        "Ann Lee",
        None,
    )
    with accounts.engine.connect() as conn:
        stored = conn.execute(sa.select(users.c.password_hash)).scalar_one()
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    # The password from stdin is the one that logs in (its trailing newline is not part of it).
    assert (
        acc.login(accounts, "ann@example.com", PASSWORD, "127.0.0.1", datetime.now(UTC)).user.role == "admin"
    )


def test_user_add_prompts_twice_hidden(env, accounts):
    result = runner.invoke(
        app, ["user", "add", "bo@example.com", "--role", "reviewer"], input=f"{PASSWORD}\n" * 2
    )
    assert result.exit_code == 0, result.output
    assert PASSWORD not in result.output and "Repeat for confirmation" in result.output
    assert [u["email"] for u in users_json()] == ["bo@example.com"]


def test_user_add_refusals_exit_2_and_change_nothing(env, accounts):
    short = runner.invoke(
        app, ["user", "add", "a@example.com", "--role", "admin", "--password-stdin"], input="hunter2\n"
    )
    assert short.exit_code == 2 and "at least 12 characters" in short.stderr and "hunter2" not in short.output
    role = runner.invoke(
        app, ["user", "add", "a@example.com", "--role", "owner", "--password-stdin"], input=PASSWORD
    )
    assert role.exit_code == 2 and "coordinator, reviewer, admin" in role.stderr
    address = runner.invoke(
        app, ["user", "add", "nope", "--role", "admin", "--password-stdin"], input=PASSWORD
    )
    assert address.exit_code == 2 and "not an email address" in address.stderr
    assert users_json() == []
    runner.invoke(
        app, ["user", "add", "a@example.com", "--role", "admin", "--password-stdin"], input=PASSWORD
    )
    again = runner.invoke(
        app, ["user", "add", "A@example.com", "--role", "admin", "--password-stdin"], input=PASSWORD
    )
    assert again.exit_code == 2 and "already a user a@example.com" in again.stderr


def test_user_disable_and_list(env, accounts):
    runner.invoke(
        app, ["user", "add", "a@example.com", "--role", "coordinator", "--password-stdin"], input=PASSWORD
    )
    acc.login(accounts, "a@example.com", PASSWORD, "127.0.0.1", datetime.now(UTC))
    result = runner.invoke(app, ["user", "disable", "A@example.com"])
    assert result.exit_code == 0 and "Disabled a@example.com; ended 1 open session." in result.stdout
    assert users_json()[0]["disabled_at"] is not None
    table = runner.invoke(app, ["user", "list"]).stdout
    assert "a@example.com" in table and "disabled" in table
    assert runner.invoke(app, ["user", "disable", "a@example.com"]).exit_code == 2


def test_token_create_prints_it_once_and_list_never_shows_it(env, accounts):
    result = runner.invoke(app, ["token", "create", "website-form", "--scope", "leads:write,leads:read"])
    assert result.exit_code == 0, result.output
    token = result.stdout.strip()
    assert token.startswith("cmp_") and "\n" not in token
    assert "will not be shown again" in result.stderr
    assert acc.verify_token(accounts, token, "leads:read", datetime.now(UTC)) == "website-form"

    listed = json.loads(runner.invoke(app, ["token", "list", "--json"]).stdout)
    assert [(t["name"], t["scopes"], t["created_by"]) for t in listed] == [
        ("website-form", ["leads:read", "leads:write"], "cli")
    ]
    assert listed[0]["last_used_at"] is not None and listed[0]["revoked_at"] is None
    assert token not in runner.invoke(app, ["token", "list"]).output
    assert token not in json.dumps(listed)

    revoked = runner.invoke(app, ["token", "revoke", "website-form"])
    assert revoked.exit_code == 0 and "Revoked token website-form" in revoked.stdout
    with pytest.raises(acc.Unauthorized):
        acc.verify_token(accounts, token, "leads:read", datetime.now(UTC))
    assert runner.invoke(app, ["token", "revoke", "website-form"]).exit_code == 2
    bad = runner.invoke(app, ["token", "create", "crm", "--scope", "everything"])
    assert bad.exit_code == 2 and "Unknown scope: everything" in bad.stderr and bad.stdout == ""
    actions = [e.action for e in acc.list_audit(accounts).entries]
    assert actions == ["token.revoke", "token.create"]
