"""CSV lead import: parsing (pure: bytes in, rows and rejects out).

Real form exports are messy: headers are matched case-, space- and punctuation-insensitively
through an alias table. Each row's fields are normalized by campaign.lead_fields, the rules the
lead API shares (its helpers are re-exported here for callers of the CSV parser).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass, field

from campaign.csv_export import csv_text
from campaign.lead_fields import (
    INTAKE_FIELDS,
    clean_text,
    header_key,
    normalize_email,
    normalize_lead,
    parse_anxiety_type,
    parse_bool,
    parse_prior_treatments,
    resolve_timezone,
    valid_email,
)
from campaign.models import LeadIn

__all__ = [
    "FIELDS",
    "ImportFileError",
    "ParsedFile",
    "RejectedRow",
    "clean_text",
    "header_key",
    "normalize_email",
    "parse_anxiety_type",
    "parse_bool",
    "parse_column_overrides",
    "parse_csv",
    "parse_prior_treatments",
    "resolve_timezone",
]

FIELDS = INTAKE_FIELDS

_ALIASES = {
    "email": ["email", "e-mail", "email address", "e-mail address", "your email", "mail"],
    "first_name": ["first name", "firstname", "first", "given name", "name first"],
    "last_name": ["last name", "lastname", "last", "surname", "family name", "name last"],
    "anxiety_type": [
        "anxiety type",
        "anxiety",
        "type of anxiety",
        "what type of anxiety do you experience?",
        "what type of anxiety do you experience",
        "which best describes your anxiety",
        "condition",
        "concern",
        "primary concern",
    ],
    "prior_treatments": [
        "prior treatments",
        "previous treatments",
        "treatments tried",
        "what treatments have you tried?",
        "how many treatments have you tried?",
        "treatments tried without relief",
    ],
    "consent": [
        "consent",
        "email consent",
        "marketing consent",
        "opt in",
        "optin",
        "subscribe",
        "i agree to receive emails",
        "may we email you?",
        "gdpr consent",
    ],
    "timezone": ["timezone", "time zone", "tz"],
    "state": ["state", "us state", "state/province", "province", "region"],
    "source": ["source", "lead source", "form", "form name"],
    "booked": ["booked", "consultation booked", "has booked", "appointment booked"],
    # UTM tags: as the fields are named, and as form builders label them ("UTM Source").
    **{
        f: [f, f.replace("_", " ")]
        for f in ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")
    },
    "consent_text": ["consent text", "consent wording", "consent language"],
    "consent_version": ["consent version", "consent text version"],
    "consent_ip": ["consent ip", "ip", "ip address", "submitter ip", "client ip"],
}
HEADER_ALIASES: dict[str, str] = {header_key(a): f for f, aliases in _ALIASES.items() for a in aliases}


class ImportFileError(Exception):
    """The file as a whole cannot be read; nothing is imported."""


@dataclass(frozen=True)
class RejectedRow:
    row_number: int  # 1-based line number of the record in the file, header = 1
    original: dict[str, str]
    reason: str


@dataclass
class ParsedFile:
    rejected: list[RejectedRow] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    headers: list[str] = field(default_factory=list)
    fields: set[str] = field(default_factory=set)  # the lead fields this file has a column for
    _text: str = ""
    _mapping: dict[str, str] = field(default_factory=dict)
    _default_timezone: str = "America/New_York"
    _last_row: dict[str, int] = field(default_factory=dict)  # address -> the row that wins

    def iter_rows(self) -> Iterator[tuple[int, dict[str, str]]]:
        """(row number, field -> raw text) for each address's last row, in file order, read one
        at a time: the lead intake normalizes them (campaign.app.intake)."""
        for row_number, _, values in _records(self._text, self._mapping):
            try:
                email = _row_email(values)
            except ValueError:
                continue  # already in `rejected`
            if self._last_row.get(email) == row_number:
                yield row_number, values

    def iter_leads(self) -> Iterator[tuple[int, LeadIn]]:
        """(row number, lead) for each address's last row, normalized as the intake does."""
        for row_number, values in self.iter_rows():
            yield row_number, normalize_lead(values, default_timezone=self._default_timezone).lead

    @property
    def leads(self) -> list[tuple[int, LeadIn]]:
        return list(self.iter_leads())

    @property
    def default_timezone(self) -> str:
        return self._default_timezone


def decode(data: bytes, *, filename: str) -> tuple[str, list[str]]:
    """UTF-8 (BOM or not); Latin-1 with a warning when UTF-8 fails."""
    try:
        return data.decode("utf-8-sig"), []
    except UnicodeDecodeError as exc:
        warning = (
            f"{filename}: not valid UTF-8 (byte {exc.start}); read as Latin-1. "
            "Check accented names, and export as UTF-8 next time."
        )
        return data.decode("latin-1"), [warning]


def map_headers(headers: list[str], overrides: dict[str, str]) -> dict[str, str]:
    """Header as written -> field name. `overrides` maps header text (any spelling) -> field."""
    by_key = {header_key(h): f for h, f in overrides.items()}
    mapping: dict[str, str] = {}
    for header in headers:
        key = header_key(header)
        target = by_key.get(key) or HEADER_ALIASES.get(key)
        if target and target not in mapping.values():
            mapping[header] = target
    return mapping


def parse_column_overrides(specs: list[str]) -> dict[str, str]:
    """['Your mail=email'] -> {'Your mail': 'email'}; raises ValueError naming the bad spec."""
    result = {}
    for spec in specs:
        header, sep, target = spec.rpartition("=")
        if not sep or not header.strip():
            raise ValueError(f'--column {spec!r}: write it as "Header Text=field"')
        if target.strip() not in FIELDS:
            raise ValueError(
                f"--column {spec!r}: unknown field {target.strip()!r}; fields: {', '.join(FIELDS)}"
            )
        result[header.strip()] = target.strip()
    return result


def parse_csv(
    data: bytes,
    *,
    filename: str,
    overrides: dict[str, str] | None = None,
    default_timezone: str = "America/New_York",
) -> ParsedFile:
    """Check a whole file: headers, every address, duplicates. Bad rows are rejected one by
    one; only an unreadable file raises. The leads themselves are built lazily by
    `ParsedFile.iter_rows()` (a second pass), so a large file is never held as objects."""
    text, warnings = decode(data, filename=filename)
    if not text.strip():
        raise ImportFileError(f"{filename}: the file is empty; export the leads again with a header row")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        headers = list(reader.fieldnames or [])
    except csv.Error as exc:
        raise ImportFileError(f"{filename}: not a readable CSV file ({exc})") from None
    mapping = map_headers(headers, overrides or {})
    if "email" not in mapping.values():
        raise ImportFileError(
            f"{filename}: no email column among {headers[:12]}; rename it 'Email' or pass "
            f'--column "<its header>=email"'
        )
    parsed = ParsedFile(
        warnings=warnings,
        headers=headers,
        fields=set(mapping.values()),
        _text=text,
        _mapping=mapping,
        _default_timezone=default_timezone,
    )
    try:
        for row_number, original, values in _records(text, mapping):
            try:
                email = _row_email(values)
            except ValueError as exc:
                parsed.rejected.append(RejectedRow(row_number, original, str(exc)))
                continue
            if email in parsed._last_row:
                # Later rows win: a form export lists newer answers below older ones.
                parsed.warnings.append(
                    f"{filename}: row {row_number} repeats {email!r} from row "
                    f"{parsed._last_row[email]}; the later row wins"
                )
            parsed._last_row[email] = row_number
    except csv.Error as exc:
        raise ImportFileError(f"{filename}: CSV error: {exc}") from None
    return parsed


def _records(text: str, mapping: dict[str, str]) -> Iterator[tuple[int, dict[str, str], dict[str, str]]]:
    """(row number, the row as written, field -> raw value) for each record."""
    reader = csv.DictReader(io.StringIO(text, newline=""))
    for record in reader:
        row_number = reader.line_num  # physical line of the record's end; good enough to find it
        original = {
            k: (v if isinstance(v, str) else ",".join(v or [])) for k, v in record.items() if k is not None
        }
        yield (
            row_number,
            original,
            {mapping[h]: v for h, v in original.items() if h in mapping and v is not None},
        )


def rejected_csv(rejected: list[RejectedRow], headers: list[str]) -> str:
    # Rejected rows echo the form's raw answers: the shared writer keeps formulas inert.
    return csv_text(
        ["row_number", "reason", *headers],
        ([row.row_number, row.reason, *(row.original.get(h, "") for h in headers)] for row in rejected),
    )


def _row_email(values: dict[str, str]) -> str:
    return valid_email(values.get("email"))
