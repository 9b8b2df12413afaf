"""Lead commands: import, leads, timeline, booked, forget."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from campaign.cli.base import app, console, err, fail, load_audiences_or_fail, settings, store_for
from campaign.cli.output import Format, FormatOption, JsonOption, chosen, emit, print_table
from campaign.progress import terminal_progress

IMPORT_COLUMNS = ("file", "new", "updated", "unchanged", "rejected", "rejected_file", "warnings")


@app.command("import", short_help="Import leads from a CSV or .xlsx file (an upsert).")
def import_(
    path: Annotated[
        Path, typer.Argument(help="CSV (comma, semicolon or tab) or .xlsx export of the lead form.")
    ],
    column: Annotated[
        list[str] | None,
        typer.Option(
            "--column",
            metavar='"HEADER=FIELD"',
            help='Map a header to a field: "Header Text=field"; "Header Text=skip" leaves it out. '
            "Repeatable.",
        ),
    ] = None,
    rejects: Annotated[
        Path | None,
        typer.Option(
            "--rejects", metavar="FILE", help="Where to write rejected rows (default: <file>.rejected.csv)."
        ),
    ] = None,
    output_format: FormatOption = Format.table,
    as_json: JsonOption = False,
):
    """Import leads from a CSV or .xlsx file (an upsert: the same file twice changes nothing).

    Rows without a valid email go to <file>.rejected.csv (or --rejects) with the reason; the rest import.
    """
    from campaign.accounts import CLI
    from campaign.app.leads import import_file
    from campaign.leads import ImportFileError, parse_column_overrides

    output_format = chosen(output_format, as_json)
    try:
        overrides = parse_column_overrides(column or [])
    except ValueError as exc:
        fail(str(exc))
    s = settings()
    try:
        with terminal_progress(f"Importing {path.name}", enabled=output_format is Format.table):
            # An opener: the database is created only once there are leads to write.
            summary = import_file(
                lambda: store_for(s),
                s,
                path,
                datetime.now(UTC),
                overrides=overrides,
                rejects_path=rejects,
                actor=CLI,
            )
    except ImportFileError as exc:
        fail(f"{exc}\nNothing was imported.")

    def show() -> None:
        for warning in summary.warnings:
            err.print(f"[yellow]warning:[/] {warning}", highlight=False)
        console.print(
            f"Imported {path}: [bold]{summary.new}[/] new, {summary.updated} updated, "
            f"{summary.unchanged} unchanged, {summary.rejected} rejected.",
            highlight=False,
        )
        if summary.rejected_file:
            console.print(f"Rejected rows and reasons: {summary.rejected_file}", highlight=False)

    data = summary.as_dict()
    row = {**data, "warnings": "; ".join(summary.warnings)}
    emit(output_format, rows=[row], columns=IMPORT_COLUMNS, data=data, table=show)


@app.command()
def leads(output_format: FormatOption = Format.table, as_json: JsonOption = False):
    """One row per lead: audience, status, next step.

    Each lead's email, audience, status (enrolled, waiting for consent, exited and why,
    finished), steps sent, and the next step with its time in the lead's time zone; json and csv
    add how consent was given (when, via, which file row or token, wording version, client
    address) and the UTM tags."""
    from campaign.app.leads import EXPORT_COLUMNS, lead_rows

    output_format = chosen(output_format, as_json)
    s = settings()
    found = load_audiences_or_fail(s)
    with store_for(s) as store:
        rows = lead_rows(store, found)

    def show() -> None:
        table = Table("email", "audience", "status", "sent", "next step", "next at (lead's time)")
        for r in rows:
            table.add_row(
                r["email"], r["audience"], r["status"], str(r["steps_sent"]), r["next_step"], r["next_at"]
            )
        print_table(table)
        console.print(f"{len(rows)} leads")

    emit(output_format, rows=rows, columns=EXPORT_COLUMNS, table=show)


@app.command()
def timeline(
    email: Annotated[str, typer.Argument(help="The lead's email address.")],
    days: Annotated[
        int, typer.Option(metavar="N", help="Show steps up to this many days after enrollment.")
    ] = 60,
    output_format: FormatOption = Format.table,
    as_json: JsonOption = False,
):
    """When each step goes to one lead (their local time).

    The date and time (in the lead's time zone) each step went or will go to this lead; for a
    lead who will not be emailed (no consent, unsubscribed, suppressed, booked), why not."""
    from campaign.app.leads import lead_timeline

    output_format = chosen(output_format, as_json)
    s = settings()
    with store_for(s) as store:
        try:
            found = lead_timeline(store, s, email, datetime.now(UTC), max_day=days)
        except LookupError as exc:
            fail(str(exc), code=1)

    def show() -> None:
        if found.steps:
            title = f"{email} · audience {found.audience}" if found.audience else email
            table = Table("step", "day", "when (lead's local time)", "status", title=title)
            for r in found.steps:
                table.add_row(r["step"], str(r["day"]), r["at"], r["status"])
            print_table(table)
        if found.will_not_email:
            again = " again" if found.steps else ""
            console.print(f"{email} will not be emailed{again}: {found.will_not_email}.", highlight=False)
        console.print(consent_line(found.consent), highlight=False)

    emit(
        output_format,
        rows=found.steps,
        columns=("step", "day", "at", "status"),
        data=found.as_dict(),
        table=show,
    )


def consent_line(consent: dict) -> str:
    if not consent.get("given"):
        return "Consent: not given (never emailed)."
    if not consent.get("at"):
        return "Consent: given; how was not recorded (imported before proof of consent was kept)."
    parts = [f"given {consent['at']} via {consent['via']} ({consent['ref']})"]
    if consent.get("version"):
        parts.append(f"wording {consent['version']}")
    if consent.get("client"):
        parts.append(f"from {consent['client']}")
    return "Consent: " + ", ".join(parts) + "."


@app.command()
def booked(
    emails: Annotated[
        list[str], typer.Argument(metavar="EMAIL", help="Addresses of leads who booked a consultation.")
    ],
):
    """Mark leads as booked: their sequences stop.

    Each lead's sequence ends with the reason "booked"."""
    from campaign.accounts import CLI
    from campaign.app.leads import mark_booked

    with store_for(settings()) as store:
        missing = mark_booked(store, emails, datetime.now(UTC), actor=CLI)
    console.print(
        f"Marked {len(emails) - len(missing)} of {len(emails)} lead(s) booked; their sequences stopped.",
        highlight=False,
    )
    for email in missing:
        err.print(f"[yellow]not found:[/] {email}", highlight=False)
    if missing:
        raise typer.Exit(1)


@app.command()
def forget(
    email: Annotated[str, typer.Argument(help="The address to forget.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
):
    """Delete everything held about an address.

    Deletes the lead, its enrollments, sends and events; keeps only a keyed hash on the
    suppression list so it is never emailed again. Asks first on a terminal."""
    from campaign.accounts import CLI
    from campaign.app.leads import forget_lead

    if not yes and sys.stdin.isatty():
        typer.confirm("Delete this lead and everything about it? This cannot be undone", abort=True)
    with store_for(settings()) as store:
        counts = forget_lead(store, email, datetime.now(UTC), actor=CLI)
    if counts["leads"]:
        console.print(
            f"Forgot 1 lead: deleted {counts['enrollments']} enrollment(s), {counts['sends']} send(s), "
            f"{counts['events']} event(s).",
            highlight=False,
        )
    else:
        console.print(f"No lead with that address; deleted {counts['events']} event(s).", highlight=False)
    console.print(
        "Only a keyed hash of the address is kept, on the suppression list: it will never be emailed again.",
        highlight=False,
    )
