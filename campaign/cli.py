"""The `campaign` command: a thin Typer shell over the library and the flows.

Quick commands never import Prefect (about 1.3 s); only tick, demo and the flow commands do.
Exit codes: 0 ok, 1 problems found (lint, checks), 2 bad input (unreadable file, bad option).
"""

from __future__ import annotations

import csv
import json
import shutil
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="Patient-education email sequences for anxiety leads: import, check, send, watch.",
                  no_args_is_help=True, add_completion=False, rich_markup_mode=None)
audiences_app = typer.Typer(help="Show the audiences (rules, steps, lead counts), or check them.",
                            invoke_without_command=True)
app.add_typer(audiences_app, name="audiences")

console = Console()
err = Console(stderr=True)


def fail(message: str, code: int = 2) -> None:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def settings():
    from campaign.settings import get_settings

    return get_settings()


def parse_when(value: str | None) -> datetime:
    if not value:
        return datetime.now(timezone.utc)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        fail(f"--now {value!r} is not an ISO 8601 time; write it like 2026-03-02T14:00:00-05:00")
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def store_for(s):
    from campaign.runtime import open_store

    return open_store(s)


def load_audiences_or_fail(s):
    from campaign.audiences import AudienceFileError, load_audiences

    try:
        return load_audiences(s.audiences_dir)
    except AudienceFileError as exc:
        fail("the audience files have problems:\n  " + "\n  ".join(exc.problems) +
             "\nRun `campaign audiences check` after fixing them.", code=1)


# ---- import -------------------------------------------------------------------------------------

@app.command("import")
def import_(
    path: Annotated[Path, typer.Argument(help="CSV export of the lead form.")],
    column: Annotated[Optional[list[str]], typer.Option("--column", help='Map a header to a field: "Header Text=field". Repeatable.')] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as one JSON object.")] = False,
):
    """Import leads from a CSV file (an upsert: importing the same file twice changes nothing).

    Rows without a valid email go to <file>.rejected.csv with the reason; the rest import.
    """
    from campaign.leads import ImportFileError, parse_column_overrides
    from campaign.operations import import_file

    try:
        overrides = parse_column_overrides(column or [])
    except ValueError as exc:
        fail(str(exc))
    s = settings()
    store = store_for(s)
    try:
        summary = import_file(store, s, path, datetime.now(timezone.utc), overrides=overrides)
    except ImportFileError as exc:
        fail(f"{exc}\nNothing was imported.")
    finally:
        store.close()
    if as_json:
        print(json.dumps(summary.as_dict()))
        return
    for warning in summary.warnings:
        err.print(f"[yellow]warning:[/] {warning}", highlight=False)
    console.print(f"Imported {path}: [bold]{summary.new}[/] new, {summary.updated} updated, "
                  f"{summary.unchanged} unchanged, {summary.rejected} rejected.", highlight=False)
    if summary.rejected_file:
        console.print(f"Rejected rows and reasons: {summary.rejected_file}", highlight=False)


# ---- leads --------------------------------------------------------------------------------------

@app.command()
def leads(
    format: Annotated[str, typer.Option("--format", help="table, json or csv.")] = "table",
):
    """One row per lead: email, audience, status, steps sent, next step and its time."""
    from campaign.operations import lead_rows

    if format not in ("table", "json", "csv"):
        fail(f"--format {format!r}: use table, json or csv")
    s = settings()
    store = store_for(s)
    try:
        rows = lead_rows(store, load_audiences_or_fail(s))
    finally:
        store.close()
    if format == "json":
        print(json.dumps(rows, indent=1))
    elif format == "csv":
        writer = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]) if rows else ["email"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    else:
        table = Table("email", "audience", "status", "sent", "next step", "next at (lead's time)")
        for r in rows:
            table.add_row(r["email"], r["audience"], r["status"], str(r["steps_sent"]), r["next_step"], r["next_at"])
        console.print(table)
        console.print(f"{len(rows)} leads")


# ---- audiences ----------------------------------------------------------------------------------

@audiences_app.callback()
def audiences_list(ctx: typer.Context):
    """Each audience: its rule, its steps (day), its lead count."""
    if ctx.invoked_subcommand:
        return
    s = settings()
    found = load_audiences_or_fail(s)
    counts = {}
    if _database_exists(s):
        store = store_for(s)
        counts = store.audience_counts()
        store.close()
    table = Table("priority", "audience", "rule", "steps (day)", "leads")
    for a in found:
        steps = ", ".join(f"{st.key} ({st.delay.total_seconds() / 86400:g})" for st in a.steps)
        table.add_row(str(a.priority), a.name, a.describe_rule(), steps, str(counts.get(a.name, 0)))
    console.print(table)


def _database_exists(s) -> bool:
    url = s.database_url
    return not url.startswith("sqlite:///") or Path(url.removeprefix("sqlite:///")).exists()


@audiences_app.command("check")
def audiences_check():
    """Validate audiences/*.yaml and their templates; exit 1 listing every problem."""
    from campaign.audiences import read_audiences
    from campaign.render import Renderer, TemplateError

    s = settings()
    found, problems = read_audiences(s.audiences_dir)
    renderer = Renderer(s.templates_dir, s.clinic)
    for a in found:
        for step in a.steps:
            try:
                renderer.render(step.template, first_name="Sam", unsubscribe_url="https://example.org/unsubscribe/x")
            except TemplateError as exc:
                problems.append(f"{a.name}/{step.key}: {exc}")
    if problems:
        for p in problems:
            err.print(f"[red]✗[/] {p}", highlight=False)
        err.print(f"{len(problems)} problem(s).")
        raise typer.Exit(1)
    console.print(f"[green]✓[/] {len(found)} audiences, {sum(len(a.steps) for a in found)} steps, every template renders.")


# ---- tick ---------------------------------------------------------------------------------------

@app.command()
def tick(
    now: Annotated[Optional[str], typer.Option(help="The time to tick at (ISO 8601). Default: now.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the tick's counts as JSON.")] = False,
):
    """Enroll new leads, then send every step due at NOW (a Prefect flow run)."""
    parse_when(now)
    from flows.tick import tick as tick_flow

    summary = tick_flow(now=now)
    if as_json:
        print(json.dumps(summary))
    else:
        print_tick(summary)


def print_tick(summary: dict) -> None:
    t = summary["totals"]
    console.print(f"Tick at {summary['now']}: enrolled {t['enrolled']}, sent {t['sent']}, failed {t['failed']}, "
                  f"skipped {t['skipped']}, unknown {t['unknown']}, finished {summary['finished']}.", highlight=False)
    for error in summary["errors"]:
        err.print(f"[red]template error:[/] {error}", highlight=False)


# ---- timeline -----------------------------------------------------------------------------------

@app.command()
def timeline(
    email: Annotated[str, typer.Argument(help="The lead's email address.")],
    days: Annotated[int, typer.Option(help="Show steps up to this many days after enrollment.")] = 60,
):
    """The date and time (in the lead's time zone) each step goes, or would go, to this lead."""
    from campaign.operations import lead_timeline

    s = settings()
    store = store_for(s)
    try:
        audience, rows = lead_timeline(store, s, email, datetime.now(timezone.utc))
    except LookupError as exc:
        fail(str(exc), code=1)
    finally:
        store.close()
    table = Table("step", "day", "when (lead's local time)", "status", title=f"{email} · audience {audience}")
    for r in rows:
        if r["day"] <= days:
            table.add_row(r["step"], str(r["day"]), r["at"], r["status"])
    console.print(table)


# ---- demo ---------------------------------------------------------------------------------------

@app.command()
def demo(
    dir: Annotated[Path, typer.Option("--dir", help="Working folder (emptied first).")] = Path("campaign-demo"),
    days: Annotated[int, typer.Option(help="How many days to simulate.")] = 30,
    start: Annotated[str, typer.Option(help="Simulated start (ISO 8601).")] = "2026-03-02T08:00:00-05:00",
):
    """The whole job on the embedded default: import the sample leads, tick through DAYS
    simulated days, write the outbox, and show what went out."""
    from campaign.demo import run_demo

    run_demo(dir, days=days, start=parse_when(start), console=console)


def main():  # pragma: no cover
    app()
