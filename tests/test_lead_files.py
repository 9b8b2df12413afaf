"""What a first-time user hands `campaign import`: Excel workbooks, other binaries, semicolon and
tab files, repeated headers, wrong --column, bad time zones, a million duplicates; and what the
import writes back (rejects that a spreadsheet will not run, no database for a failed import)."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from datetime import UTC, date, datetime
from pathlib import Path

import openpyxl
import pytest
from typer.testing import CliRunner

from campaign.app.leads import import_file
from campaign.cli import app
from campaign.leads import (
    SHOWN_ROWS,
    ImportFileError,
    parse_column_overrides,
    parse_lead_file,
    rejected_csv,
)
from campaign.runtime import open_store

runner = CliRunner()
NOW = datetime(2026, 3, 2, 15, tzinfo=UTC)


def parse(text: str, **kw):
    return parse_lead_file(text.encode("utf-8"), filename="leads.csv", **kw)


def workbook_bytes(*sheets: list[list[object]]) -> bytes:
    book = openpyxl.Workbook()
    book.remove(book.active)
    for number, rows in enumerate(sheets):
        sheet = book.create_sheet(f"Sheet{number + 1}")
        for row in rows:
            sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


# ---- Excel and other binaries -----------------------------------------------------------------


def test_an_xlsx_workbook_is_read_from_its_first_sheet():
    data = workbook_bytes(
        [
            ["Email", "First Name", "Prior treatments", "Consent", "Form date"],
            ["ann@example.com", "Ann", 3, True, date(2026, 3, 1)],
            [None, None, None, None, None],  # an empty row Excel kept
            ["not-an-email", "Bob", 1.0, False, None],
            ["cy@example.com", "Cy", 2.0, "no", None],
        ],
        [["Email"], ["other@example.com"]],
    )
    parsed = parse_lead_file(data, filename="leads.xlsx")
    leads = {lead.email: lead for _, lead in parsed.leads}
    assert set(leads) == {"ann@example.com", "cy@example.com"}
    assert (leads["ann@example.com"].prior_treatments, leads["ann@example.com"].consent) == (3, True)
    assert (leads["cy@example.com"].prior_treatments, leads["cy@example.com"].consent) == (2, False)
    assert [(r.row_number, r.cells[1]) for r in parsed.rejected] == [(4, "Bob")]  # the sheet's row
    assert any("first sheet, 'Sheet1', of 2" in w for w in parsed.warnings)


def test_a_zip_that_is_not_a_workbook_says_so():
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("notes.txt", "hello")
    with pytest.raises(ImportFileError, match="zip file but not an Excel .xlsx workbook.*CSV UTF-8"):
        parse_lead_file(out.getvalue(), filename="leads.zip")


@pytest.mark.parametrize(
    "data, message",
    [
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 600, "Excel 97-2003 .*save it as .xlsx"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)), "not a CSV file .*binary"),
    ],
)
def test_other_binary_files_are_not_read_as_latin1(data, message):
    with pytest.raises(ImportFileError, match=message):
        parse_lead_file(data, filename="leads.csv")


# ---- delimiters and encodings -----------------------------------------------------------------


@pytest.mark.parametrize("delimiter", [";", "\t"])
def test_semicolon_and_tab_files_are_sniffed(delimiter):
    text = delimiter.join(["Email", "First Name", "Consent"]) + "\n"
    text += delimiter.join(["ann@example.com", "Ann, Jr.", "yes"]) + "\n"
    ((_, lead),) = parse(text).leads
    assert (lead.email, lead.first_name, lead.consent) == ("ann@example.com", "Ann, Jr.", True)


def test_a_comma_file_with_a_semicolon_in_a_header_stays_comma_separated():
    ((_, lead),) = parse('Email,"Treatments; tried",First Name\nann@example.com,"SSRIs; CBT",Ann\n').leads
    assert lead.first_name == "Ann"


def test_excel_unicode_text_utf16_tab_separated_is_read():
    data = "Email\tFirst Name\nann@example.com\tZoë\n".encode("utf-16")
    ((_, lead),) = parse_lead_file(data, filename="leads.txt").leads
    assert lead.first_name == "Zoë"


# ---- --column and headers ---------------------------------------------------------------------


def test_a_column_override_for_a_missing_header_warns():
    parsed = parse("Email,Name\nann@example.com,Ann\n", overrides={"Given name": "first_name"})
    assert any('--column "Given name=first_name" names no column' in w for w in parsed.warnings)


def test_a_missing_email_override_is_named_in_the_error():
    with pytest.raises(ImportFileError, match='no email column.*\n.*--column "Your mail=email" names no'):
        parse("Contact,Name\nann@example.com,Ann\n", overrides={"Your mail": "email"})


def test_two_columns_for_one_header_are_refused_clearly():
    with pytest.raises(ValueError, match="'Contact=email' and --column 'contact=first_name' name the same"):
        parse_column_overrides(["Contact=email", "contact=first_name"])
    assert parse_column_overrides(["Contact=email", "Contact=email"]) == {"Contact": "email"}


def test_repeated_headers_warn_and_use_the_first_value_that_is_not_empty():
    parsed = parse(
        "Email,First Name,Email\n"
        "ann@example.com,Ann,\n"  # only the first Email: not rejected as empty
        ",Bob,bob@example.com\n"  # only the second
        "cy@example.com,Cy,cy.other@example.com\n"  # both: the first, left to right
        ",Dee,\n"
    )
    assert [lead.email for _, lead in parsed.leads] == [
        "ann@example.com",
        "bob@example.com",
        "cy@example.com",
    ]
    assert [(r.row_number, r.reason) for r in parsed.rejected] == [(5, "email is empty")]
    (warning,) = parsed.warnings
    assert "column 1 'Email' and column 3 'Email' both give email" in warning
    assert "first of them that is not empty" in warning


def test_two_aliases_of_one_field_behave_like_a_repeated_header():
    parsed = parse("E-mail,Email Address\n,ann@example.com\n")
    assert [lead.email for _, lead in parsed.leads] == ["ann@example.com"]
    assert "column 1 'E-mail' and column 2 'Email Address' both give email" in parsed.warnings[0]


def test_a_column_override_beats_an_alias_and_says_so():
    parsed = parse("Email,Work mail\nold@example.com,new@example.com\n", overrides={"Work mail": "email"})
    assert [lead.email for _, lead in parsed.leads] == ["new@example.com"]
    assert "column 1 'Email' not used for email: --column maps column 2 'Work mail'" in parsed.warnings[0]


# ---- row warnings -----------------------------------------------------------------------------


def test_an_unknown_time_zone_warns_with_the_row_and_the_zone_used():
    parsed = parse(
        "Email,Time zone,State\n"
        "ann@example.com,Mars/Base,TX\n"
        "bob@example.com,Eastern Time,\n"
        "cy@example.com,america/chicago,\n"
    )
    assert {lead.email: lead.timezone for _, lead in parsed.leads} == {
        "ann@example.com": "America/Chicago",
        "bob@example.com": "America/New_York",
        "cy@example.com": "America/Chicago",  # any letter case is the same zone: no warning
    }
    assert parsed.warnings == [
        "leads.csv: row 2: time zone 'Mars/Base' is not an IANA name like America/Chicago; "
        "using the state TX's, America/Chicago",
        "leads.csv: row 3: time zone 'Eastern Time' is not an IANA name like America/Chicago; "
        "using the clinic's, America/New_York",
    ]


def test_a_few_repeated_addresses_warn_row_by_row():
    parsed = parse("Email\nann@example.com\nANN@example.com\nann@example.com\n")
    assert parsed.warnings == [
        "leads.csv: row 3: repeats 'ann@example.com' from row 2; this row wins",
        "leads.csv: row 4: repeats 'ann@example.com' from row 3; this row wins",
    ]


def test_many_repeated_warnings_are_one_line_with_the_count_and_the_first_rows():
    rows = 20_000
    parsed = parse("Email,Timezone\n" + "ann@example.com,Nowhere/Land\n" * rows)
    assert len(parsed.leads) == 1
    repeats, zones = parsed.warnings
    first_rows = ", ".join(str(n) for n in range(3, 3 + SHOWN_ROWS))
    assert repeats.startswith(f"leads.csv: {rows - 1:,} rows repeat an address from an earlier row")
    assert f"(rows {first_rows} and {rows - 1 - SHOWN_ROWS:,} more;" in repeats
    assert zones.startswith(f"leads.csv: {rows:,} rows name a time zone that does not exist")


# ---- names --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, stored",
    [
        ("=?utf-8?q?x=0D=0ABcc:_evil@example.com?=", "utf-8?q?x=0D=0ABcc:_evil@example.com"),
        ('"Ann\r\nBcc: evil@example.com"', "Ann Bcc: evil@example.com"),
        ("Ann =?iso-8859-1?q?Ren=E9?= Lee", "Ann iso-8859-1?q?Ren=E9 Lee"),
    ],
)
def test_names_are_stored_without_encoded_words_or_line_breaks(raw, stored):
    ((_, lead),) = parse(f"Email,First Name\nann@example.com,{raw}\n").leads
    assert lead.first_name == stored


# ---- the rejected-rows file -------------------------------------------------------------------


def test_the_rejected_rows_file_never_holds_a_formula():
    hostile = ['=HYPERLINK("http://evil.example","x")', "+1+1", "-2+3", "@SUM(A1)", "\tx", "\rx", "\r=cmd"]
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["Email", "=Name", "Note"])
    for cell in hostile:
        writer.writerow([cell, cell, "plain"])
    parsed = parse(text.getvalue())
    assert len(parsed.rejected) == len(hostile)
    written = list(csv.reader(io.StringIO(rejected_csv(parsed.rejected, parsed.headers), newline="")))
    assert written[0] == ["row_number", "reason", "Email", "'=Name", "Note"]
    for row, cell in zip(written[1:], hostile):
        assert row[2:] == ["'" + cell, "'" + cell, "plain"]
        assert not row[1].startswith(("=", "+", "-", "@", "\t", "\r"))
    every_cell = [cell for row in written for cell in row]
    assert not [c for c in every_cell if c[:1] in ("=", "+", "-", "@", "\t", "\r")]


# ---- import_file and the CLI ------------------------------------------------------------------


@pytest.fixture
def env(settings, monkeypatch):
    monkeypatch.setenv("CAMPAIGN_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("CAMPAIGN_OUTBOX_DIR", str(settings.outbox_dir))
    monkeypatch.setenv("CAMPAIGN_SECRET_KEY", "cli-test-secret")
    return settings


def database_file(settings) -> Path:
    return Path(settings.database_url.removeprefix("sqlite:///"))


@pytest.mark.parametrize(
    "content", [b"\x89PNG\r\n\x1a\n\x00\x00", b"Name,Phone\nAnn,1\n", b"Email\nnot-an-address\n"]
)
def test_an_import_with_nothing_to_write_creates_no_database(env, tmp_path, content):
    path = tmp_path / "leads.csv"
    path.write_bytes(content)
    runner.invoke(app, ["import", str(path)])
    assert not database_file(env).exists()


def test_rejects_go_where_asked_and_the_leads_import(env, tmp_path):
    path = tmp_path / "leads.xlsx"
    path.write_bytes(workbook_bytes([["Email", "First Name"], ["ann@example.com", "Ann"], ["bad", "Bob"]]))
    target = tmp_path / "out" / "bad-rows.csv"
    target.parent.mkdir()
    result = runner.invoke(app, ["import", str(path), "--rejects", str(target), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["new"], summary["rejected"], summary["rejected_file"]) == (1, 1, str(target))
    assert "Bob" in target.read_text() and not (tmp_path / "leads.xlsx.rejected.csv").exists()
    assert database_file(env).exists()


def test_the_rejects_file_never_overwrites_the_input(settings, tmp_path):
    path = tmp_path / "leads.csv"
    path.write_text("Email\nbad\nann@example.com\n")
    with pytest.raises(ImportFileError, match="would overwrite the file being imported"):
        import_file(lambda: open_store(settings), settings, path, NOW, rejects_path=path)
    assert path.read_text() == "Email\nbad\nann@example.com\n"


# ---- the console's check: preview, chosen columns, dry run --------------------------------------

ODD = "Electronic mail,Given,Family name,Notes\nann@example.com,Ann,Lee,x\nbad,Bob,Ray,y\n"


def test_a_column_overridden_to_skip_is_not_read():
    parsed = parse("Email,Last Name\nann@example.com,Lee\n", overrides={"Last Name": "skip"})
    ((_, lead),) = parsed.leads
    assert lead.last_name == "" and "last_name" not in parsed.fields
    assert parse_column_overrides(["Notes=skip"]) == {"Notes": "skip"}


def test_the_preview_shows_each_columns_field_and_the_first_rows(tmp_path):
    from campaign.app.leads import preview_import

    path = tmp_path / "upload"
    path.write_text(ODD)
    preview = preview_import(path, display_name="odd.csv")
    assert [(c.header, c.field, c.automatic) for c in preview.columns] == [
        ("Electronic mail", "skip", "skip"),
        ("Given", "skip", "skip"),
        ("Family name", "last_name", "last_name"),
        ("Notes", "skip", "skip"),
    ]
    assert preview.rows == [["ann@example.com", "Ann", "Lee", "x"], ["bad", "Bob", "Ray", "y"]]
    assert not preview.has_email
    chosen = preview_import(path, {"Electronic mail": "email", "Family name": "skip"})
    assert [c.field for c in chosen.columns] == ["email", "skip", "skip", "skip"] and chosen.has_email


def test_column_overrides_reproduce_every_choice():
    from campaign.app.leads import column_overrides

    headers = ["Electronic mail", "Email", "First Name", "Notes"]
    assert column_overrides(headers, ["skip", "email", "first_name", "skip"]) == {}
    # a second column for email: both become explicit, or the aliased one would be dropped
    assert column_overrides(headers, ["email", "email", "first_name", "skip"]) == {
        "Electronic mail": "email",
        "Email": "email",
    }
    assert column_overrides(headers, ["email", "skip", "skip", "source"]) == {
        "Electronic mail": "email",
        "Email": "skip",
        "First Name": "skip",
        "Notes": "source",
    }
    with pytest.raises(ValueError, match="not a field"):
        column_overrides(headers, ["email", "mood", "skip", "skip"])
    with pytest.raises(ValueError, match="two columns are named"):
        column_overrides(["Email", "email"], ["email", "skip"])


def test_a_dry_run_counts_and_writes_neither_leads_nor_rejects(settings, tmp_path):
    path = tmp_path / "upload"
    path.write_text(ODD)
    with open_store(settings) as store:
        dry = import_file(
            store, settings, path, NOW, {"Electronic mail": "email"}, dry_run=True, display_name="odd.csv"
        )
        assert (dry.new, dry.updated, dry.unchanged, dry.rejected, dry.dry_run) == (1, 0, 0, 1, True)
        assert [(r.row_number, r.cells[0]) for r in dry.first_rejected] == [(3, "bad")]
        assert dry.file == "odd.csv" and dry.rejected_file is None
        assert store.lead_by_email("ann@example.com") is None
        assert not list(tmp_path.glob("*rejected*"))
        assert "first_rejected" not in dry.as_dict()
