"""What every command module shares: the Typer apps, the consoles, failing with an exit code,
the settings, the store as a context manager, the audiences or a clear failure."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from datetime import datetime
from typing import TYPE_CHECKING, NoReturn

import typer
from rich.console import Console

if TYPE_CHECKING:
    from campaign.audiences import Audience
    from campaign.settings import Settings
    from campaign.store import Store

app = typer.Typer(
    help="Patient-education email sequences for anxiety leads: import, check, send, watch.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)
audiences_app = typer.Typer(
    help="Show the audiences (rules, steps, lead counts), or check them.", invoke_without_command=True
)
app.add_typer(audiences_app, name="audiences")

console = Console()
err = Console(stderr=True)


def fail(message: str, code: int = 2) -> NoReturn:
    """Exit codes: 1 problems found (lint, checks, refusals), 2 bad input (a file, an option)."""
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def settings() -> Settings:
    from campaign.settings import get_settings

    return get_settings()


def parse_when(value: str | None) -> datetime:
    from campaign.clock import parse_when as parse

    try:
        return parse(value)
    except ValueError as exc:
        fail(f"--now {exc}")


def store_for(s: Settings) -> Store:
    """The database, migrated; use it as `with store_for(s) as store:` so it always closes."""
    from campaign.runtime import open_store

    return open_store(s)


def store_if_exists(s: Settings) -> AbstractContextManager[Store | None]:
    """The store when the database exists, else None: read-only commands never create it."""
    from campaign.app import database_exists

    return store_for(s) if database_exists(s) else nullcontext()


def load_audiences_or_fail(s: Settings) -> list[Audience]:
    from campaign.audiences import AudienceFileError, load_audiences

    try:
        return load_audiences(s.audiences_dir)
    except AudienceFileError as exc:
        fail(
            "the audience files have problems:\n  "
            + "\n  ".join(exc.problems)
            + "\nRun `campaign audiences check` after fixing them.",
            code=1,
        )
