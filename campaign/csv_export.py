"""CSV for spreadsheets: every CSV the project writes goes through `csv_text`, which neutralizes
cells a spreadsheet would run as a formula (OWASP "CSV injection"): a text cell starting with
=, +, -, @, a tab or a carriage return gets a leading single quote. Lead names and form answers
are typed by strangers, so this is not hypothetical."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralize(value: object) -> object:
    """The cell as a spreadsheet should show it: text never starts a formula. Numbers and None
    pass unchanged (a negative number is a number, not a formula)."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def csv_text(columns: Sequence[str], rows: Iterable[Mapping | Sequence]) -> str:
    """A header line and one line per row; a row is a mapping (read by column name, missing
    names empty) or a sequence in column order."""
    out = io.StringIO()
    # CRLF, as RFC 4180 says: with "\n" alone, Python 3.11 leaves a cell holding a CR unquoted,
    # and a spreadsheet starts a new row there ("'\r=cmd" would run =cmd after all).
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([neutralize(c) for c in columns])
    for row in rows:
        cells = [row.get(c) for c in columns] if isinstance(row, Mapping) else row
        writer.writerow([neutralize(v) for v in cells])
    return out.getvalue()
