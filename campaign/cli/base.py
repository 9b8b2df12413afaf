"""What every command module shares: the Typer apps, the consoles, failing with an exit code,
the settings, the store as a context manager, the audiences or a clear failure."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, datetime
from typing import TYPE_CHECKING, NoReturn
from zoneinfo import ZoneInfo

import click
import typer
from rich.console import Console
from typer.core import TyperCommand, TyperGroup

from campaign.clock import moment_from_text

if TYPE_CHECKING:
    from campaign.audiences import Audience
    from campaign.settings import Settings
    from campaign.store import Store


class _PlainHelp:
    """Help in the usual form: `campaign import [OPTIONS] PATH`, `--format [table|json|csv]`,
    `--to EMAIL`, instead of Typer's `{path}`, `<list[str]>` and `<str>` placeholders. A parameter
    without its own metavar gets one from its name (PATH, EMAIL) or its choices."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for param in self.params:
            if param.metavar is None and not getattr(param, "is_flag", False):
                param.metavar = _metavar_for(param)

    def collect_usage_pieces(self, ctx: click.Context) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if param.param_type_name == "argument":
                name = _argument_name(param)
                pieces.append(name if param.required else f"[{name}]")
        subcommand = getattr(self, "subcommand_metavar", None)  # a group: COMMAND [ARGS]...
        return pieces + ([subcommand] if subcommand else [])

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        arguments, options = [], []
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            if param.param_type_name == "argument":
                arguments.append((_argument_name(param), record[1]))
            else:
                options.append(record)
        for title, rows in (("Arguments", arguments), ("Options", options)):
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)


def _metavar_for(param: click.Parameter) -> str:
    descriptor = getattr(param, "type_descriptor", None)  # Typer's parameters
    choices = getattr(descriptor, "choices", None) or getattr(getattr(param, "type", None), "choices", None)
    if choices:
        return "[" + "|".join(str(getattr(c, "value", c)) for c in choices) + "]"
    return (param.name or "value").upper()


def _argument_name(param: click.Parameter) -> str:
    return param.metavar + ("..." if param.nargs != 1 else "")


class PlainCommand(_PlainHelp, TyperCommand):
    pass


class PlainGroup(_PlainHelp, TyperGroup):
    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_options(ctx, formatter)
        self.format_commands(ctx, formatter)


class CampaignTyper(typer.Typer):
    """A Typer whose commands and groups write their help with plain metavars (see _PlainHelp)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("cls", PlainGroup)
        kwargs.setdefault("rich_markup_mode", None)
        kwargs.setdefault("add_completion", False)
        super().__init__(**kwargs)

    def command(self, name: str | None = None, *, cls: type[TyperCommand] | None = None, **kwargs):
        return super().command(name, cls=cls or PlainCommand, **kwargs)


app = CampaignTyper(
    help="Patient-education email sequences for anxiety leads: import, check, send, watch.",
    no_args_is_help=True,
)
audiences_app = CampaignTyper(
    help="Show the audiences (rules, steps, leads), or check them.", invoke_without_command=True
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


def parse_when(value: str | None, option: str = "--now") -> datetime:
    """The value of a time option (`option` names it in the error); empty: the real clock."""
    now = datetime.now(UTC)
    if not value:
        return now
    try:
        return moment_from_text(value, now=now, tz=ZoneInfo(settings().clinic.timezone))
    except ValueError:
        fail(
            f"{option} {value!r} is not a time. Write a date (2026-03-02: 09:00 clinic time that day), "
            "now, today, tomorrow, or an ISO 8601 time like 2026-03-02T14:00:00-05:00"
        )


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
