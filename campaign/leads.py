"""Lead file import: a CSV (any common delimiter) or an Excel .xlsx file to rows, rejects and
warnings (pure: bytes in; each row's values are normalized by campaign.lead_fields).

Headers are matched through lead_fields' alias table or `--column` overrides. Several columns
for one field (a repeated header, or two aliases) are read left to right: each row takes the
first of them that is not empty, and a warning names the columns.
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time

from campaign.csv_export import csv_text
from campaign.lead_fields import FIELDS, HEADER_ALIASES, header_key, parse_row, row_email, timezone_problem
from campaign.models import LeadIn

Rows = Callable[[], Iterator[tuple[int, list[str]]]]  # re-readable: (row number, cells), header = 1

SHOWN_ROWS = 5  # a repeated warning prints one line: its count and this many example rows
SKIP = "skip"  # an override target: the column is not read (e.g. a wrongly aliased one)
_DELIMITERS = ",;\t"
_ZIP = b"PK\x03\x04"
_OLE2 = b"\xd0\xcf\x11\xe0"  # Excel 97-2003 .xls, and password-protected .xlsx


class ImportFileError(Exception):
    """The file as a whole cannot be read; nothing is imported."""


@dataclass(frozen=True)
class RejectedRow:
    row_number: int  # 1-based line (CSV) or sheet row (.xlsx) of the record, header = 1
    cells: tuple[str, ...]  # the row as written, one cell per column
    reason: str


@dataclass
class _RepeatedWarning:
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


@dataclass
class ParsedFile:
    rejected: list[RejectedRow] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    headers: list[str] = field(default_factory=list)
    fields: set[str] = field(default_factory=set)  # the lead fields this file has a column for
    _rows: Rows = lambda: iter(())
    _columns: dict[str, list[int]] = field(default_factory=dict)  # field -> columns, first non-empty wins
    _default_timezone: str = "America/New_York"
    _last_row: dict[str, int] = field(default_factory=dict)  # address -> the row that wins

    @property
    def addresses(self) -> int:
        """How many leads the file holds (distinct valid addresses)."""
        return len(self._last_row)

    @property
    def default_timezone(self) -> str:
        return self._default_timezone

    def iter_rows(self) -> Iterator[tuple[int, dict[str, str]]]:
        """(row number, field -> raw text) for each address's last row, in file order, read one
        at a time: the lead intake (campaign.app.intake) normalizes them."""
        for row_number, cells in self._rows():
            values = _values(cells, self._columns)
            try:
                email = row_email(values)
            except ValueError:
                continue  # already in `rejected`
            if self._last_row.get(email) == row_number:
                yield row_number, values

    def iter_leads(self) -> Iterator[tuple[int, LeadIn]]:
        """(row number, lead) for each address's last row, normalized as the intake does."""
        for row_number, values in self.iter_rows():
            yield row_number, parse_row(values, default_timezone=self._default_timezone)

    @property
    def leads(self) -> list[tuple[int, LeadIn]]:
        return list(self.iter_leads())


def parse_lead_file(
    data: bytes,
    *,
    filename: str,
    overrides: dict[str, str] | None = None,
    default_timezone: str = "America/New_York",
) -> ParsedFile:
    """Check a whole file: headers, every address, duplicates, time zones. Bad rows are rejected
    one by one; only an unreadable file raises. The leads themselves are built lazily by
    `ParsedFile.iter_rows()` (a second pass), so a large file is never held as objects."""
    if data.startswith(_ZIP):
        rows, warnings = _xlsx_rows(data, filename=filename)
    else:
        rows, warnings = _csv_rows(data, filename=filename)
    try:
        header_row = next(rows(), None)
        headers = header_row[1] if header_row else []
        columns, mapping_warnings = map_headers(headers, overrides or {}, filename=filename)
        if "email" not in columns:
            raise ImportFileError(
                f"{filename}: no email column among {headers[:12]}; rename it 'Email' or pass "
                f'--column "<its header>=email"' + "".join(f"\n{w}" for w in mapping_warnings)
            )
        parsed = ParsedFile(
            warnings=warnings + mapping_warnings,
            headers=headers,
            fields=set(columns),
            _rows=lambda: _data_rows(rows),
            _columns=columns,
            _default_timezone=default_timezone,
        )
        _check_rows(parsed, filename)
    except csv.Error as exc:
        raise ImportFileError(f"{filename}: CSV error: {exc}") from None
    return parsed


def _check_rows(parsed: ParsedFile, filename: str) -> None:
    """The first pass: rejects, repeated addresses, unknown time zones."""
    repeats = _RepeatedWarning("{count} rows repeat an address from an earlier row; the later row wins")
    zones = _RepeatedWarning("{count} rows name a time zone that does not exist")
    for row_number, cells in parsed._rows():
        values = _values(cells, parsed._columns)
        try:
            email = row_email(values)
        except ValueError as exc:
            parsed.rejected.append(RejectedRow(row_number, tuple(cells), str(exc)))
            continue
        if email in parsed._last_row:
            # Later rows win: a form export lists newer answers below older ones.
            repeats.add(row_number, f"repeats {email!r} from row {parsed._last_row[email]}; this row wins")
        parsed._last_row[email] = row_number
        problem = timezone_problem(values, parsed._default_timezone)
        if problem:
            zones.add(row_number, problem)
    parsed.warnings += repeats.lines(filename) + zones.lines(filename)


def _values(cells: list[str], columns: dict[str, list[int]]) -> dict[str, str]:
    """field -> raw text: the first of the field's columns that is not blank in this row."""
    values = {}
    for name, indexes in columns.items():
        present = [cells[i] for i in indexes if i < len(cells)]
        values[name] = next((v for v in present if v.strip()), present[0] if present else "")
    return values


def preview_rows(data: bytes, *, filename: str, count: int = 5) -> tuple[list[str], list[list[str]]]:
    """The header row and the first `count` rows of a file, for a preview (no checks). Raises
    ImportFileError for a file that cannot be read at all."""
    read = _xlsx_rows if data.startswith(_ZIP) else _csv_rows
    rows, _ = read(data, filename=filename)
    try:
        found = [cells for _, cells in itertools.islice(rows(), count + 1)]
    except csv.Error as exc:
        raise ImportFileError(f"{filename}: CSV error: {exc}") from None
    return (found[0], found[1:]) if found else ([], [])


def _data_rows(rows: Rows) -> Iterator[tuple[int, list[str]]]:
    reader = rows()
    next(reader, None)  # the header row
    return reader


# ---- CSV ----------------------------------------------------------------------------------------


def decode(data: bytes, *, filename: str) -> tuple[str, list[str]]:
    """UTF-8 (BOM or not), UTF-16 with a BOM (Excel's "Unicode text"); Latin-1 with a warning
    when UTF-8 fails. Binary files are refused, naming what they look like."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return data.decode("utf-16"), []
        except UnicodeDecodeError:
            pass  # not text after all: refused below
    if data.startswith(_OLE2):
        raise ImportFileError(
            f"{filename} is an Excel 97-2003 (.xls) or password-protected workbook, not a CSV: "
            "open it in Excel and save it as .xlsx (no password) or as CSV UTF-8"
        )
    if b"\x00" in data[:8192]:
        raise ImportFileError(
            f"{filename} is not a CSV file (it holds binary data): export the leads as CSV UTF-8 "
            "or as an Excel .xlsx workbook"
        )
    try:
        return data.decode("utf-8-sig"), []
    except UnicodeDecodeError as exc:
        warning = (
            f"{filename}: not valid UTF-8 (byte {exc.start}); read as Latin-1. "
            "Check accented names, and export as UTF-8 next time."
        )
        return data.decode("latin-1"), [warning]


def sniff_delimiter(text: str) -> str:
    """Comma, semicolon (European Excel) or tab: whichever splits the header row into the most
    columns; a comma on a tie."""

    def width(delimiter: str) -> int:
        try:
            return len(next(csv.reader(io.StringIO(text[:65536], newline=""), delimiter=delimiter), []))
        except csv.Error:
            return 0

    return max(_DELIMITERS, key=width)


def _csv_rows(data: bytes, *, filename: str) -> tuple[Rows, list[str]]:
    text, warnings = decode(data, filename=filename)
    if not text.strip():
        raise ImportFileError(f"{filename}: the file is empty; export the leads again with a header row")
    delimiter = sniff_delimiter(text)

    def rows() -> Iterator[tuple[int, list[str]]]:
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
        for cells in reader:
            if cells:  # a blank line is no record
                # The physical line of the record's end; good enough to find it.
                yield reader.line_num, cells

    return rows, warnings


# ---- Excel ---------------------------------------------------------------------------------------


def _xlsx_rows(data: bytes, *, filename: str) -> tuple[Rows, list[str]]:
    """The first sheet of an .xlsx workbook, streamed (openpyxl's read-only mode), cells as text."""
    import openpyxl  # only for .xlsx files: quick commands never pay for the import

    def open_workbook():
        try:
            return openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
        except Exception as exc:  # a zip that is no workbook fails in many ways: one message
            raise ImportFileError(
                f"{filename} is a zip file but not an Excel .xlsx workbook ({type(exc).__name__}): "
                "export the leads as CSV UTF-8 or as .xlsx"
            ) from None

    workbook = open_workbook()
    sheets = workbook.sheetnames
    workbook.close()
    warnings = []
    if len(sheets) > 1:
        warnings.append(
            f"{filename}: read the first sheet, {sheets[0]!r}, of {len(sheets)}; the others are ignored"
        )

    def rows() -> Iterator[tuple[int, list[str]]]:
        workbook = open_workbook()
        try:
            sheet = workbook.worksheets[0]
            for number, values in enumerate(sheet.iter_rows(values_only=True), start=1):
                cells = [_cell_text(v) for v in values]
                if any(c.strip() for c in cells):  # Excel keeps formatted empty rows: skip them
                    yield number, cells
        except Exception as exc:  # a damaged sheet fails in openpyxl's XML parsing, in many ways
            raise ImportFileError(
                f"{filename}: cannot read the workbook's first sheet ({type(exc).__name__}); "
                "save it again from Excel, or as CSV UTF-8"
            ) from None
        finally:
            workbook.close()

    return rows, warnings


def _cell_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # 3.0 prior treatments -> "3"
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    return str(value)


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


def rejected_csv(rejected: list[RejectedRow], headers: list[str]) -> str:
    """row_number, reason, then the row as written. The rows echo the form's raw answers: the
    shared writer keeps formulas inert."""
    return csv_text(
        ["row_number", "reason", *headers],
        (
            [row.row_number, row.reason, *row.cells, *[""] * (len(headers) - len(row.cells))]
            for row in rejected
        ),
    )
