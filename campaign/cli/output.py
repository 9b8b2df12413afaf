"""One output option for every listing command, after sqlite-utils' output_options/output_rows:
`--format table|json|csv` (Typer checks the choice), with `--json` kept as `--format json`.
`table` is for reading on a terminal; json and csv are for programs and spreadsheets. Every CSV
goes through campaign.csv_export, which keeps formulas inert."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from enum import Enum
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

from campaign.cli.base import console
from campaign.csv_export import csv_text


class Format(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"


class ReportFormat(str, Enum):
    """The report also renders as one self-contained HTML page."""

    table = "table"
    json = "json"
    csv = "csv"
    html = "html"


FormatOption = Annotated[
    Format, typer.Option("--format", case_sensitive=False, help="table (to read), json or csv.")
]
JsonOption = Annotated[bool, typer.Option("--json", help="The same as --format json.")]

F = TypeVar("F", Format, ReportFormat)
NO_LIMIT = 100_000  # columns: "as wide as the content" for output that is not a terminal


def chosen(output_format: F, as_json: bool) -> F:
    """The format asked for: --json is --format json, and contradicts any other --format."""
    if not as_json:
        return output_format
    if output_format.value not in ("table", "json"):
        raise typer.BadParameter(
            f"--json is --format json; it cannot go with --format {output_format.value}", param_hint="--json"
        )
    return type(output_format)("json")


def json_text(data: object) -> str:
    return json.dumps(data, indent=1, default=str) + "\n"


def write(text: str, out: Path | None = None) -> None:
    """To a file (and say so), or to standard output unchanged (no Rich markup or wrapping)."""
    if out is None:
        sys.stdout.write(text)
        return
    out.write_text(text, encoding="utf-8")
    console.print(f"Wrote {out}", highlight=False)


def print_table(table: Table) -> None:
    """A table on the terminal fits its width; written to a pipe or a file it is printed at
    its natural width instead, so no cell (an address, a date) is ever cut short or wrapped."""
    if console.is_terminal:
        console.print(table)
        return
    natural = Measurement.get(console, console.options.update_width(NO_LIMIT), table).maximum
    Console(width=natural, highlight=False).print(table)


def emit(
    output_format: Format,
    *,
    rows: Iterable[Mapping | Sequence],
    columns: Sequence[str],
    table: Callable[[], None],
    data: object = None,
) -> None:
    """Print in the chosen format: `table()` draws the terminal view; json prints `data`
    (default: the rows); csv prints the rows under `columns`."""
    if output_format is Format.table:
        table()
    elif output_format is Format.json:
        write(json_text(list(rows) if data is None else data))
    else:
        write(csv_text(columns, rows))
