"""CSV lead import: parsing and normalization (pure: bytes in, rows and rejects out).

Real form exports are messy: headers are matched case-, space- and punctuation-insensitively
through an alias table; the anxiety question's free text is mapped to a closed vocabulary.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from zoneinfo import available_timezones

from email_validator import EmailNotValidError, validate_email

from campaign.csv_export import csv_text
from campaign.models import AnxietyType, LeadIn

FIELDS = (
    "email",
    "first_name",
    "last_name",
    "anxiety_type",
    "prior_treatments",
    "consent",
    "timezone",
    "state",
    "source",
    "booked",
)
MAX_NAME = 200
MAX_TEXT = 500


def header_key(text: str) -> str:
    """'E-mail Address ' -> 'emailaddress'."""
    return re.sub(r"[^a-z0-9]", "", unicodedata.normalize("NFKC", text).casefold())


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
    "source": ["source", "lead source", "utm source", "form", "form name"],
    "booked": ["booked", "consultation booked", "has booked", "appointment booked"],
}
HEADER_ALIASES: dict[str, str] = {header_key(a): f for f, aliases in _ALIASES.items() for a in aliases}

_TRUE = {
    "yes",
    "y",
    "true",
    "t",
    "1",
    "on",
    "x",
    "checked",
    "agree",
    "agreed",
    "i agree",
    "opt in",
    "opted in",
    "subscribed",
}
_FALSE = {
    "no",
    "n",
    "false",
    "f",
    "0",
    "off",
    "",
    "unchecked",
    "disagree",
    "opt out",
    "opted out",
    "unsubscribed",
}

# Order matters: treatment-resistant phrasing often also says "anxiety".
_ANXIETY_PATTERNS: list[tuple[AnxietyType, re.Pattern]] = [
    (
        AnxietyType.treatment_resistant,
        re.compile(
            r"treatment[\s-]*resistant|\btra\b|nothing (has )?(worked|helped)|"
            r"tried (everything|multiple|several|many)|(didn'?t|did not|don'?t|haven'?t) "
            r"(work|help)|resistant",
            re.I,
        ),
    ),
    (
        AnxietyType.social,
        re.compile(r"social|\bsad\b|phobia|being judged|public speaking|shy|performance", re.I),
    ),
    (
        AnxietyType.gad,
        re.compile(
            r"generali[sz]ed|\bgad\b|constant(ly)? worr|worry|worries|worrying|everyday|all the time", re.I
        ),
    ),
]

_NUMBER_WORDS = {
    w: i
    for i, w in enumerate(
        [
            "zero",
            "one",
            "two",
            "three",
            "four",
            "five",
            "six",
            "seven",
            "eight",
            "nine",
            "ten",
            "eleven",
            "twelve",
        ]
    )
}
_NONE_WORDS = {"none", "no", "nothing", "n/a", "na"}

US_STATE_TZ = {
    **dict.fromkeys(
        [
            "CT",
            "DE",
            "DC",
            "FL",
            "GA",
            "IN",
            "KY",
            "ME",
            "MD",
            "MA",
            "MI",
            "NH",
            "NJ",
            "NY",
            "NC",
            "OH",
            "PA",
            "RI",
            "SC",
            "VT",
            "VA",
            "WV",
        ],
        "America/New_York",
    ),
    **dict.fromkeys(
        ["AL", "AR", "IL", "IA", "KS", "LA", "MN", "MS", "MO", "NE", "ND", "OK", "SD", "TN", "TX", "WI"],
        "America/Chicago",
    ),
    **dict.fromkeys(["CO", "ID", "MT", "NM", "UT", "WY"], "America/Denver"),
    "AZ": "America/Phoenix",
    "CA": "America/Los_Angeles",
    "NV": "America/Los_Angeles",
    "OR": "America/Los_Angeles",
    "WA": "America/Los_Angeles",
    "AK": "America/Anchorage",
    "HI": "Pacific/Honolulu",
    "PR": "America/Puerto_Rico",
}
US_STATE_NAMES = {
    "alabama": "AL",
    "alaska": "AK",
    "arizona": "AZ",
    "arkansas": "AR",
    "california": "CA",
    "colorado": "CO",
    "connecticut": "CT",
    "delaware": "DE",
    "district of columbia": "DC",
    "florida": "FL",
    "georgia": "GA",
    "hawaii": "HI",
    "idaho": "ID",
    "illinois": "IL",
    "indiana": "IN",
    "iowa": "IA",
    "kansas": "KS",
    "kentucky": "KY",
    "louisiana": "LA",
    "maine": "ME",
    "maryland": "MD",
    "massachusetts": "MA",
    "michigan": "MI",
    "minnesota": "MN",
    "mississippi": "MS",
    "missouri": "MO",
    "montana": "MT",
    "nebraska": "NE",
    "nevada": "NV",
    "new hampshire": "NH",
    "new jersey": "NJ",
    "new mexico": "NM",
    "new york": "NY",
    "north carolina": "NC",
    "north dakota": "ND",
    "ohio": "OH",
    "oklahoma": "OK",
    "oregon": "OR",
    "pennsylvania": "PA",
    "rhode island": "RI",
    "south carolina": "SC",
    "south dakota": "SD",
    "tennessee": "TN",
    "texas": "TX",
    "utah": "UT",
    "vermont": "VT",
    "virginia": "VA",
    "washington": "WA",
    "west virginia": "WV",
    "wisconsin": "WI",
    "wyoming": "WY",
    "puerto rico": "PR",
}
_TIMEZONES = frozenset(available_timezones())


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

    def iter_leads(self) -> Iterator[tuple[int, LeadIn]]:
        """(row number, lead) for each address's last row, in file order, built one at a time."""
        for row_number, _, values in _records(self._text, self._mapping):
            try:
                lead = parse_row(values, default_timezone=self._default_timezone)
            except ValueError:
                continue  # already in `rejected`
            if self._last_row.get(lead.email) == row_number:
                yield row_number, lead

    @property
    def leads(self) -> list[tuple[int, LeadIn]]:
        return list(self.iter_leads())


def clean_text(value: str | None, limit: int = MAX_TEXT) -> str:
    """Stored as given (escaping happens at render), minus control characters, bounded."""
    if not value:
        return ""
    # Line breaks and tabs become spaces; other control characters are dropped.
    value = "".join(
        " " if ch in "\t\r\n\v\f" else ch
        for ch in value
        if ch.isspace() or unicodedata.category(ch)[0] != "C"
    )
    return " ".join(value.split())[:limit]


def normalize_email(raw: str) -> str:
    """Syntax check (no DNS) and one canonical spelling: the same address in any case is one lead."""
    # No SMTPUTF8: SendGrid and many mailbox providers cannot deliver to a non-ASCII local part.
    result = validate_email(raw.strip(), check_deliverability=False, allow_smtputf8=False)
    return result.normalized.casefold()


def parse_anxiety_type(text: str | None) -> AnxietyType:
    text = clean_text(text)
    if not text:
        return AnxietyType.unspecified
    for value in AnxietyType:
        if header_key(text) == header_key(value.value):
            return value
    for kind, pattern in _ANXIETY_PATTERNS:
        if pattern.search(text):
            return kind
    return AnxietyType.unspecified


def parse_prior_treatments(text: str | None) -> int | None:
    """A number, a number word, or a list ("SSRIs; therapy") counted. Blank is unknown."""
    text = clean_text(text).casefold()
    if not text:
        return None
    if text in _NONE_WORDS:
        return 0
    match = re.fullmatch(r"(\d+)\s*\+?(\s.*)?", text)
    if match:
        return min(int(match.group(1)), 50)
    first = text.split()[0]
    if first in _NUMBER_WORDS:
        return _NUMBER_WORDS[first]
    items = [part for part in re.split(r"[;,/|\n]|\band\b|&", text) if part.strip()]
    return len(items)


def parse_bool(text: str | None, *, field_name: str) -> bool:
    value = clean_text(text).casefold().rstrip(".!")
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{field_name} {text!r} is not yes/no")


def resolve_timezone(tz: str | None, state: str | None, default: str) -> tuple[str, str]:
    """IANA name if valid; else from a US state; else the clinic's. Returns (timezone, state code)."""
    state_code = clean_text(state, 40)
    code = US_STATE_NAMES.get(state_code.casefold(), state_code.upper())
    tz = clean_text(tz, 64)
    if tz in _TIMEZONES:
        return tz, code
    if code in US_STATE_TZ:
        return US_STATE_TZ[code], code
    return default, code


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


def parse_row(values: dict[str, str], *, default_timezone: str) -> LeadIn:
    """One row (field -> raw text) to a LeadIn. Raises ValueError with the reason."""
    email = _row_email(values)
    timezone, state = resolve_timezone(values.get("timezone"), values.get("state"), default_timezone)
    return LeadIn(
        email=email,
        first_name=clean_text(values.get("first_name"), MAX_NAME),
        last_name=clean_text(values.get("last_name"), MAX_NAME),
        anxiety_type=parse_anxiety_type(values.get("anxiety_type")),
        prior_treatments=parse_prior_treatments(values.get("prior_treatments")),
        # Consent must be explicit: blank or unreadable means no (we store the lead, never mail it).
        consent=_lenient_bool(values.get("consent")),
        timezone=timezone,
        state=state,
        source=clean_text(values.get("source"), 100),
        booked=_lenient_bool(values.get("booked")),
    )


def _lenient_bool(text: str | None) -> bool:
    try:
        return parse_bool(text, field_name="value")
    except ValueError:
        return False


def parse_csv(
    data: bytes,
    *,
    filename: str,
    overrides: dict[str, str] | None = None,
    default_timezone: str = "America/New_York",
) -> ParsedFile:
    """Check a whole file: headers, every address, duplicates. Bad rows are rejected one by
    one; only an unreadable file raises. The leads themselves are built lazily by
    `ParsedFile.iter_leads()` (a second pass), so a large file is never held as objects."""
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


def _row_email(values: dict[str, str]) -> str:
    raw_email = values.get("email", "")
    if not raw_email.strip():
        raise ValueError("email is empty")
    try:
        return normalize_email(raw_email)
    except EmailNotValidError as exc:
        raise ValueError(f"email {raw_email.strip()[:80]!r} is not valid: {exc}") from None


def rejected_csv(rejected: list[RejectedRow], headers: list[str]) -> str:
    # Rejected rows echo the form's raw answers: the shared writer keeps formulas inert.
    return csv_text(
        ["row_number", "reason", *headers],
        ([row.row_number, row.reason, *(row.original.get(h, "") for h in headers)] for row in rejected),
    )
