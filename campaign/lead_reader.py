"""Reading a lead file as a stream: a CSV (UTF-8, UTF-16 or Latin-1; comma, semicolon or tab)
or the first sheet of an Excel .xlsx workbook, to (row number, cells), re-readable from the
start and never held whole. campaign.leads maps the cells to fields."""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Callable, Iterator
from datetime import date, datetime, time
from pathlib import Path
from typing import BinaryIO

Rows = Callable[[], Iterator[tuple[int, list[str]]]]  # re-readable: (row number, cells), header = 1

_DELIMITERS = ",;\t"
_ZIP = b"PK\x03\x04"
_OLE2 = b"\xd0\xcf\x11\xe0"  # Excel 97-2003 .xls, and password-protected .xlsx


class ImportFileError(Exception):
    """The file as a whole cannot be read; nothing is imported."""


Opener = Callable[[], BinaryIO]  # the file from its start, as a new binary stream, each call


def rows_of(source: Path | bytes, filename: str) -> tuple[Rows, list[str]]:
    """The file's rows (re-readable, streamed) and warnings about its encoding or sheets."""
    if isinstance(source, bytes | bytearray):
        opener: Opener = lambda: io.BytesIO(source)
    else:
        opener = lambda: open(source, "rb")  # noqa: SIM115 (closed by whoever reads)
    try:
        with opener() as stream:
            head = stream.read(8192)
    except OSError as exc:
        raise ImportFileError(f"{filename}: cannot read the file ({exc.strerror}); check the path") from None
    read = _xlsx_rows if head.startswith(_ZIP) else _csv_rows
    return read(opener, head, filename=filename)


# ---- CSV ----------------------------------------------------------------------------------------

_BLOCK = 1 << 20  # bytes read at a time when checking a file's encoding


def encoding_of(opener: Opener, head: bytes, *, filename: str) -> tuple[str, list[str]]:
    """UTF-8 (BOM or not), UTF-16 with a BOM (Excel's "Unicode text"); Latin-1 with a warning
    when UTF-8 fails anywhere in the file (checked block by block). Binary files are refused,
    naming what they look like."""
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) and _undecodable(opener, "utf-16") is None:
        return "utf-16", []
    if head.startswith(_OLE2):
        raise ImportFileError(
            f"{filename} is an Excel 97-2003 (.xls) or password-protected workbook, not a CSV: "
            "open it in Excel and save it as .xlsx (no password) or as CSV UTF-8"
        )
    if b"\x00" in head:
        raise ImportFileError(
            f"{filename} is not a CSV file (it holds binary data): export the leads as CSV UTF-8 "
            "or as an Excel .xlsx workbook"
        )
    bad = _undecodable(opener, "utf-8-sig")
    if bad is None:
        return "utf-8-sig", []
    warning = (
        f"{filename}: not valid UTF-8 (byte {bad}); read as Latin-1. "
        "Check accented names, and export as UTF-8 next time."
    )
    return "latin-1", [warning]


def _undecodable(opener: Opener, encoding: str) -> int | None:
    """None when the whole file decodes; else (about) the offset of the first byte that does not."""
    decoder = codecs.getincrementaldecoder(encoding)()
    done = 0
    with opener() as stream:
        while True:
            block = stream.read(_BLOCK)
            pending = len(decoder.getstate()[0])
            try:
                decoder.decode(block, final=not block)
            except UnicodeDecodeError as exc:
                return max(done - pending + exc.start, 0)
            if not block:
                return None
            done += len(block)


def sniff_delimiter(text: str) -> str:
    """Comma, semicolon (European Excel) or tab: whichever splits the header row into the most
    columns; a comma on a tie."""

    def width(delimiter: str) -> int:
        try:
            return len(next(csv.reader(io.StringIO(text[:65536], newline=""), delimiter=delimiter), []))
        except csv.Error:
            return 0

    return max(_DELIMITERS, key=width)


def _csv_rows(opener: Opener, head: bytes, *, filename: str) -> tuple[Rows, list[str]]:
    encoding, warnings = encoding_of(opener, head, filename=filename)

    def text() -> io.TextIOWrapper:
        return io.TextIOWrapper(opener(), encoding=encoding, newline="")

    with text() as stream:
        start = stream.read(65536)
        while start and not start.strip():  # blank so far: is there anything at all?
            start = stream.read(65536)
    if not start:
        raise ImportFileError(f"{filename}: the file is empty; export the leads again with a header row")
    delimiter = sniff_delimiter(start)

    def rows() -> Iterator[tuple[int, list[str]]]:
        with text() as stream:
            reader = csv.reader(stream, delimiter=delimiter)
            for cells in reader:
                if cells:  # a blank line is no record
                    # The physical line of the record's end; good enough to find it.
                    yield reader.line_num, cells

    return rows, warnings


# ---- Excel ---------------------------------------------------------------------------------------


def _xlsx_rows(opener: Opener, head: bytes, *, filename: str) -> tuple[Rows, list[str]]:
    """The first sheet of an .xlsx workbook, streamed (openpyxl's read-only mode), cells as text."""
    import openpyxl  # only for .xlsx files: quick commands never pay for the import

    def open_workbook(stream: BinaryIO):
        try:
            return openpyxl.load_workbook(stream, read_only=True, data_only=True)
        except Exception as exc:  # a zip that is no workbook fails in many ways: one message
            stream.close()
            raise ImportFileError(
                f"{filename} is a zip file but not an Excel .xlsx workbook ({type(exc).__name__}): "
                "export the leads as CSV UTF-8 or as .xlsx"
            ) from None

    with opener() as stream:
        workbook = open_workbook(stream)
        sheets = workbook.sheetnames
        workbook.close()
    warnings = []
    if len(sheets) > 1:
        warnings.append(
            f"{filename}: read the first sheet, {sheets[0]!r}, of {len(sheets)}; the others are ignored"
        )

    def rows() -> Iterator[tuple[int, list[str]]]:
        with opener() as stream:
            workbook = open_workbook(stream)
            try:
                sheet = workbook.worksheets[0]
                for number, values in enumerate(sheet.iter_rows(values_only=True), start=1):
                    cells = [_cell_text(v) for v in values]
                    if any(c.strip() for c in cells):  # Excel keeps formatted empty rows: skip them
                        yield number, cells
            except GeneratorExit:
                raise
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
