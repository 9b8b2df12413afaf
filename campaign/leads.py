"""Lead file import: a CSV (any common delimiter) or an Excel .xlsx file to rows, rejects and
warnings (each row's values are normalized by campaign.lead_fields).

A file is read as a stream (`open_lead_file`: a path or bytes; the rows are read one at a time,
as often as asked), so a file of any size is never held whole. `parse_lead_file` is the
in-memory form for a small file (bytes in, leads and rejects out): it keeps an address -> row
map; the import keeps none (the store picks each address's last row, campaign.app.intake).

Headers are matched through lead_fields' alias table or `--column` overrides. Several columns
for one field (a repeated header, or two aliases) are read left to right: each row takes the
first of them that is not empty, and a warning names the columns.
"""

from __future__ import annotations

import csv
import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from campaign.csv_export import csv_text, neutralize
from campaign.lead_fields import FIELDS, HEADER_ALIASES, header_key, parse_row, row_email, timezone_problem
from campaign.lead_reader import ImportFileError, Rows, rows_of
from campaign.models import LeadIn

SHOWN_ROWS = 5  # a repeated warning prints one line: its count and this many example rows
SKIP = "skip"  # an override target: the column is not read (e.g. a wrongly aliased one)


@dataclass(frozen=True)
class RejectedRow:
    row_number: int  # 1-based line (CSV) or sheet row (.xlsx) of the record, header = 1
    cells: tuple[str, ...]  # the row as written, one cell per column
    reason: str


@dataclass
class RepeatedWarning:
    """One kind of row warning: every row is counted, only the first few are kept."""

    summary: str  # "{count} rows ..." for the one-line form
    count: int = 0
    first: list[tuple[int, str]] = field(default_factory=list)  # (row, message)

    def add(self, row: int, message: str) -> None:
        self.count += 1
        if len(self.first) < SHOWN_ROWS:
            self.first.append((row, message))

    def lines(self, filename: str) -> list[str]:
        if self.count <= SHOWN_ROWS:
            return [f"{filename}: row {row}: {message}" for row, message in self.first]
        rows = ", ".join(str(row) for row, _ in self.first)
        row, message = self.first[0]
        return [
            f"{filename}: {self.summary.format(count=f'{self.count:,}')} (rows {rows} and "
            f"{self.count - SHOWN_ROWS:,} more; row {row}: {message})"
        ]


def repeat_message(email: str, earlier_row: int) -> str:
    # Later rows win: a form export lists newer answers below older ones.
    return f"repeats {email!r} from row {earlier_row}; this row wins"


def repeated_addresses(count: int = 0, first: Iterable[tuple[int, str, int]] = ()) -> RepeatedWarning:
    """The warning about rows that repeat an earlier row's address: `count` rows, the first few
    of them as (row, address, the row before it with that address)."""
    found = RepeatedWarning("{count} rows repeat an address from an earlier row; the later row wins", count)
    found.first = [(row, repeat_message(email, earlier)) for row, email, earlier in first]
    return found


@dataclass
class LeadFile:
    """A lead file opened for reading: its headers, the field each column gives and warnings
    about the file as a whole. Its rows are read on demand, one at a time (`records`)."""

    filename: str
    headers: list[str]
    fields: set[str]  # the lead fields this file has a column for
    warnings: list[str]
    default_timezone: str
    _rows: Rows
    _columns: dict[str, list[int]]  # field -> columns, first non-empty wins
    zones: RepeatedWarning = field(
        default_factory=lambda: RepeatedWarning("{count} rows name a time zone that does not exist")
    )

    def records(self) -> Iterator[tuple[int, list[str], dict[str, str]]]:
        """(row number, the cells as written, field -> raw text) for every data row, in file
        order. A CSV that breaks down midway raises ImportFileError."""
        try:
            for row_number, cells in _data_rows(self._rows):
                yield row_number, cells, _values(cells, self._columns)
        except csv.Error as exc:
            raise ImportFileError(f"{self.filename}: CSV error: {exc}") from None

    def check_timezone(self, row_number: int, values: dict[str, str]) -> None:
        """Counts a taken row that names a time zone that does not exist."""
        problem = timezone_problem(values, self.default_timezone)
        if problem:
            self.zones.add(row_number, problem)

    def row_warnings(self, repeats: RepeatedWarning) -> list[str]:
        """After a read through the rows: repeated addresses, then unknown time zones."""
        return repeats.lines(self.filename) + self.zones.lines(self.filename)


@dataclass
class ParsedFile:
    """A small file read whole (tests, checks): its rejects and warnings, and the leads (each
    address's last row). It keeps an address -> row map: the import itself does not."""

    file: LeadFile
    rejected: list[RejectedRow] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    _last_row: dict[str, int] = field(default_factory=dict)  # address -> the row that wins

    @property
    def headers(self) -> list[str]:
        return self.file.headers

    @property
    def fields(self) -> set[str]:
        return self.file.fields

    def iter_rows(self) -> Iterator[tuple[int, dict[str, str]]]:
        """(row number, field -> raw text) for each address's last row, in file order."""
        for row_number, _, values in self.file.records():
            try:
                email = row_email(values)
            except ValueError:
                continue  # already in `rejected`
            if self._last_row.get(email) == row_number:
                yield row_number, values

    @property
    def leads(self) -> list[tuple[int, LeadIn]]:
        """(row number, lead) for each address's last row, normalized as the intake does."""
        zone = self.file.default_timezone
        return [(number, parse_row(values, default_timezone=zone)) for number, values in self.iter_rows()]


def open_lead_file(
    source: Path | bytes,
    *,
    filename: str,
    overrides: dict[str, str] | None = None,
    default_timezone: str = "America/New_York",
) -> LeadFile:
    """Open a lead file (a path, or the bytes of a small one): its encoding or format, header
    row and column mapping checked; only an unreadable file raises ImportFileError. The rows
    are read later, as a stream."""
    rows, warnings = rows_of(source, filename)
    try:
        reader = rows()
        header_row = next(reader, None)
        reader.close()  # the rest is read later, from the start
    except csv.Error as exc:
        raise ImportFileError(f"{filename}: CSV error: {exc}") from None
    headers = header_row[1] if header_row else []
    columns, mapping_warnings = map_headers(headers, overrides or {}, filename=filename)
    if "email" not in columns:
        raise ImportFileError(
            f"{filename}: no email column among {headers[:12]}; rename it 'Email' or pass "
            f'--column "<its header>=email"' + "".join(f"\n{w}" for w in mapping_warnings)
        )
    warnings += mapping_warnings
    return LeadFile(filename, headers, set(columns), warnings, default_timezone, rows, columns)


def parse_lead_file(
    data: bytes,
    *,
    filename: str,
    overrides: dict[str, str] | None = None,
    default_timezone: str = "America/New_York",
) -> ParsedFile:
    """Check a whole small file in memory: headers, every address, duplicates, time zones. Bad
    rows are rejected one by one; only an unreadable file raises."""
    lead_file = open_lead_file(
        data, filename=filename, overrides=overrides, default_timezone=default_timezone
    )
    parsed = ParsedFile(lead_file)
    repeats = repeated_addresses()
    for row_number, cells, values in lead_file.records():
        try:
            email = row_email(values)
        except ValueError as exc:
            parsed.rejected.append(RejectedRow(row_number, tuple(cells), str(exc)))
            continue
        if email in parsed._last_row:
            repeats.add(row_number, repeat_message(email, parsed._last_row[email]))
        parsed._last_row[email] = row_number
        lead_file.check_timezone(row_number, values)
    parsed.warnings = lead_file.warnings + lead_file.row_warnings(repeats)
    return parsed


def _values(cells: list[str], columns: dict[str, list[int]]) -> dict[str, str]:
    """field -> raw text: the first of the field's columns that is not blank in this row."""
    values = {}
    for name, indexes in columns.items():
        if len(indexes) == 1:  # the usual case, quick
            values[name] = cells[indexes[0]] if indexes[0] < len(cells) else ""
            continue
        present = [cells[i] for i in indexes if i < len(cells)]
        values[name] = next((v for v in present if v.strip()), present[0] if present else "")
    return values


def preview_rows(source: Path | bytes, *, filename: str, count: int = 5) -> tuple[list[str], list[list[str]]]:
    """The header row and the first `count` rows of a file, for a preview (no checks). Raises
    ImportFileError for a file that cannot be read at all."""
    rows, _ = rows_of(source, filename)
    reader = rows()
    try:
        found = [cells for _, cells in itertools.islice(reader, count + 1)]
    except csv.Error as exc:
        raise ImportFileError(f"{filename}: CSV error: {exc}") from None
    finally:
        reader.close()
    return (found[0], found[1:]) if found else ([], [])


def _data_rows(rows: Rows) -> Iterator[tuple[int, list[str]]]:
    reader = rows()
    next(reader, None)  # the header row
    return reader


# ---- headers ------------------------------------------------------------------------------------


def map_headers(
    headers: list[str], overrides: dict[str, str], *, filename: str = "the file"
) -> tuple[dict[str, list[int]], list[str]]:
    """field -> the columns that give it (0-based, left to right), and warnings about the
    mapping. `overrides` maps header text (any spelling) -> field and beats the aliases; a
    column overridden to SKIP is not read at all."""
    by_key = {header_key(h): (h, f) for h, f in overrides.items()}
    explicit: dict[str, list[int]] = {}
    aliased: dict[str, list[int]] = {}
    for index, header in enumerate(headers):
        key = header_key(header)
        if key in by_key:
            if by_key[key][1] != SKIP:
                explicit.setdefault(by_key[key][1], []).append(index)
        elif key in HEADER_ALIASES:
            aliased.setdefault(HEADER_ALIASES[key], []).append(index)
    present = {header_key(h) for h in headers}
    warnings = [
        f'{filename}: --column "{header}={target}" names no column of the file; its headers: {headers[:12]}'
        for key, (header, target) in by_key.items()
        if key not in present
    ]
    columns: dict[str, list[int]] = {}
    for name in FIELDS:
        chosen = explicit.get(name) or aliased.get(name)
        if not chosen:
            continue
        if explicit.get(name) and aliased.get(name):
            warnings.append(
                f"{filename}: {_describe(headers, aliased[name])} not used for {name}: "
                f"--column maps {_describe(headers, explicit[name])} to it"
            )
        if len(chosen) > 1:
            warnings.append(
                f"{filename}: {_describe(headers, chosen)} {'both' if len(chosen) == 2 else 'all'} "
                f"give {name}; each row uses the first of them that is not empty, left to right"
            )
        columns[name] = chosen
    return columns, warnings


def _describe(headers: list[str], indexes: list[int]) -> str:
    return " and ".join(f"column {i + 1} {headers[i]!r}" for i in indexes)


def parse_column_overrides(specs: list[str]) -> dict[str, str]:
    """['Your mail=email'] -> {'Your mail': 'email'}; raises ValueError naming the bad spec.
    One header given twice with different fields is refused (the same spec twice is harmless)."""
    first: dict[str, tuple[str, str, str]] = {}  # header key -> (spec, header, field)
    for spec in specs:
        header, sep, target = spec.rpartition("=")
        header, target = header.strip(), target.strip()
        if not sep or not header:
            raise ValueError(f'--column {spec!r}: write it as "Header Text=field"')
        if target not in FIELDS and target != SKIP:
            raise ValueError(
                f"--column {spec!r}: unknown field {target!r}; fields: {', '.join(FIELDS)} "
                f"(or {SKIP} to leave the column out)"
            )
        earlier = first.setdefault(header_key(header), (spec, header, target))
        if earlier[2] != target:
            raise ValueError(
                f"--column {earlier[0]!r} and --column {spec!r} name the same header; a column "
                "gives one field: keep one of them"
            )
    return {header: target for _, header, target in first.values()}


# ---- rejects ------------------------------------------------------------------------------------

REJECT_COLUMNS = ("row_number", "reason")


def rejected_csv(rejected: list[RejectedRow], headers: list[str]) -> str:
    """row_number, reason, then the row as written. The rows echo the form's raw answers: the
    shared writer keeps formulas inert."""
    return csv_text([*REJECT_COLUMNS, *headers], (_reject_cells(row, headers) for row in rejected))


def _reject_cells(row: RejectedRow, headers: list[str]) -> list:
    return [row.row_number, row.reason, *row.cells, *[""] * (len(headers) - len(row.cells))]


class RejectsFile:
    """The rejected rows of an import, written as they come (as `rejected_csv` writes them). The
    file is created at the first row: an import without rejects writes none. A file that
    cannot be written raises ImportFileError (the import's transaction then rolls back)."""

    def __init__(self, target: Path, source: Path, headers: list[str]):
        if target.exists() and target.resolve() == Path(source).resolve():
            raise ImportFileError(f"{target}: the rejected rows would overwrite the file being imported")
        self.target = target
        self.headers = headers
        self.written = 0
        self._out = None

    def add(self, row: RejectedRow) -> None:
        try:
            if self._out is None:
                self._out = self.target.open("w", encoding="utf-8", newline="")
                # As csv_text writes: CRLF, and no cell a spreadsheet would run as a formula.
                self._writer = csv.writer(self._out, lineterminator="\r\n")
                self._writer.writerow([neutralize(c) for c in (*REJECT_COLUMNS, *self.headers)])
            self._writer.writerow([neutralize(c) for c in _reject_cells(row, self.headers)])
        except OSError as exc:
            raise ImportFileError(
                f"{self.target}: cannot write the rejected rows ({exc.strerror}); pass --rejects PATH"
            ) from None
        self.written += 1

    def close(self) -> None:
        if self._out is not None:
            self._out.close()
