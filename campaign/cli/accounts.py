"""`campaign user ...` (console users) and `campaign token ...` (lead API tokens).

A thin shell over campaign.accounts. The command line acts as "cli" in the audit log. Passwords
come from a hidden prompt (asked twice) or, for scripts, from standard input; they are never
echoed or logged. A new API token is printed once, alone on standard output.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from campaign.cli.base import CampaignTyper
from campaign.cli.output import print_table

user_app = CampaignTyper(help="Console users: add, list, disable.", no_args_is_help=True)
token_app = CampaignTyper(help="Lead API tokens: create (shown once), list, revoke.", no_args_is_help=True)

console = Console()
err = Console(stderr=True)


def _fail(message: str, code: int = 2) -> None:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


@contextmanager
def _accounts() -> Iterator:
    """The account store over the configured database (migrated on open)."""
    from campaign.accounts import AccountError, AccountStore
    from campaign.runtime import open_store
    from campaign.settings import get_settings

    store = open_store(get_settings())
    try:
        yield AccountStore(store.engine)
    except AccountError as exc:
        _fail(str(exc))
    finally:
        store.close()


def _when(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if moment else "-"


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.read().rstrip("\r\n")
    return typer.prompt("Password (at least 12 characters)", hide_input=True, confirmation_prompt=True)


# ---- users ----------------------------------------------------------------------------------


@user_app.command("add")
def user_add(
    email: Annotated[str, typer.Argument(help="The user's email address (their login).")],
    role: Annotated[str, typer.Option("--role", help="coordinator, reviewer or admin.")],
    name: Annotated[str, typer.Option("--name", help="The name shown in the console and the log.")] = "",
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
):
    """Add a console user.

    The password comes from a hidden prompt (asked twice), or from
    standard input with --password-stdin; at least 12 characters."""
    from campaign.accounts import ROLES, AccountError, add_user, check_password_policy, normalize_email

    # Everything but the password is checked before asking for it.
    try:
        address = normalize_email(email)
    except AccountError as exc:
        _fail(str(exc))
    if role not in ROLES:
        _fail(f"Unknown role {role!r}: use one of {', '.join(ROLES)}.")
    password = _read_password(password_stdin)
    try:
        check_password_policy(password, address)
    except AccountError as exc:
        _fail(f"{exc} Nothing was changed.")
    with _accounts() as accounts:
        user = add_user(accounts, address, role, password, name, now=datetime.now(UTC))
    console.print(
        f"Added {user.role} {user.email}" + (f" ({user.name})." if user.name else "."), highlight=False
    )


@user_app.command("list")
def user_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list.")] = False,
):
    """List the console users.

    Every console user: email, name, role, when added, and whether disabled."""
    from campaign.accounts import list_users

    with _accounts() as accounts:
        found = list_users(accounts)
    if as_json:
        rows = [
            {
                "email": u.email,
                "name": u.name,
                "role": u.role,
                "created_at": _iso(u.created_at),
                "disabled_at": _iso(u.disabled_at),
            }
            for u in found
        ]
        print(json.dumps(rows, indent=1))
        return
    if not found:
        console.print("No users yet. Add one: campaign user add EMAIL --role admin", highlight=False)
        return
    table = Table("email", "name", "role", "added", "state")
    for u in found:
        state = "active" if u.active else f"disabled {_when(u.disabled_at)}"
        table.add_row(u.email, u.name, u.role, _when(u.created_at), state)
    print_table(table)


@user_app.command("disable")
def user_disable(email: Annotated[str, typer.Argument(help="The user's email address.")]):
    """Disable a user and end their sessions.

    They cannot log in, and their open sessions end at once."""
    from campaign.accounts import disable_user

    with _accounts() as accounts:
        ended = disable_user(accounts, email, now=datetime.now(UTC))
    console.print(
        f"Disabled {email.strip().casefold()}; ended {ended} open session{'s' * (ended != 1)}.",
        highlight=False,
    )


# ---- API tokens -----------------------------------------------------------------------------


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Argument(help="What uses the token, like website-form.")],
    scope: Annotated[
        list[str],
        typer.Option("--scope", help="leads:write and/or leads:read, comma-separated or repeated."),
    ],
):
    """Create an API token for the lead API.

    It is printed once, alone on standard output, and
    cannot be shown again (only its hash is stored)."""
    from campaign.accounts import create_token

    with _accounts() as accounts:
        made = create_token(accounts, name, scope, now=datetime.now(UTC))
    err.print(
        f"Token {made.record.name} (scopes {', '.join(made.record.scopes)}) created. "
        "Copy it now: it will not be shown again.",
        highlight=False,
    )
    print(made.token)


@token_app.command("list")
def token_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list.")] = False,
):
    """List the API tokens (never a token itself).

    Every API token: scopes, who created it, last use, revoked."""
    from campaign.accounts import list_tokens

    with _accounts() as accounts:
        found = list_tokens(accounts)
    if as_json:
        rows = [
            {
                "name": t.name,
                "scopes": list(t.scopes),
                "created_at": _iso(t.created_at),
                "created_by": t.created_by,
                "last_used_at": _iso(t.last_used_at),
                "revoked_at": _iso(t.revoked_at),
            }
            for t in found
        ]
        print(json.dumps(rows, indent=1))
        return
    if not found:
        console.print("No API tokens yet. Create one: campaign token create NAME --scope leads:write")
        return
    table = Table("name", "scopes", "created", "by", "last used", "state")
    for t in found:
        state = "active" if t.revoked_at is None else f"revoked {_when(t.revoked_at)}"
        table.add_row(
            t.name, ",".join(t.scopes), _when(t.created_at), t.created_by, _when(t.last_used_at), state
        )
    print_table(table)


@token_app.command("revoke")
def token_revoke(name: Annotated[str, typer.Argument(help="The token's name.")]):
    """Revoke an API token at once.

    Requests with it get 401 from now on."""
    from campaign.accounts import revoke_token

    with _accounts() as accounts:
        revoke_token(accounts, name, now=datetime.now(UTC))
    console.print(f"Revoked token {name.strip()}: requests with it are refused from now on.", highlight=False)
