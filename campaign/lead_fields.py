"""One lead's values, normalized: header aliases, free text to a closed vocabulary, addresses,
time zones (pure: text in, a LeadIn or a ValueError with the reason out).

Real form exports are messy: headers are matched case-, space- and punctuation-insensitively
through an alias table; the anxiety question's free text is mapped to a closed vocabulary.
"""

from __future__ import annotations

import re
import unicodedata
from zoneinfo import available_timezones

from email_validator import EmailNotValidError, validate_email

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
# Any letter case: "america/chicago" is what a person typing it means.
_TIMEZONES = {name.casefold(): name for name in available_timezones()}
_TIMEZONE_NAMES = frozenset(_TIMEZONES.values())
# "=?" and "?=" delimit an RFC 2047 encoded word; no real name holds one (see clean_name).
_ENCODED_WORD_MARK = re.compile(r"=\?|\?=")


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


def clean_name(value: str | None) -> str:
    """A first or last name: clean_text, and never an RFC 2047 encoded word. Such a name, put in
    an email header, could decode to a line break and add a header (a Bcc); the delivery code
    cleans names again, this keeps them out of the store as well."""
    return clean_text(_ENCODED_WORD_MARK.sub(" ", clean_text(value, MAX_NAME * 2)), MAX_NAME)


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


def canonical_timezone(text: str | None) -> str | None:
    """The IANA name in its own spelling ("america/chicago" -> "America/Chicago"), else None."""
    return _TIMEZONES.get(clean_text(text, 64).casefold())


def resolve_timezone(tz: str | None, state: str | None, default: str) -> tuple[str, str]:
    """IANA name if valid; else from a US state; else the clinic's. Returns (timezone, state code)."""
    state_code = clean_text(state, 40)
    code = US_STATE_NAMES.get(state_code.casefold(), state_code.upper())
    named = canonical_timezone(tz)
    if named:
        return named, code
    if code in US_STATE_TZ:
        return US_STATE_TZ[code], code
    return default, code


def timezone_problem(values: dict[str, str], default: str) -> str | None:
    """What to tell the user when a row names a time zone that does not exist, else None."""
    raw = values.get("timezone") or ""
    if raw in _TIMEZONE_NAMES or not raw.strip():  # the usual cases, checked without cleaning
        return None
    given = clean_text(raw, 64)
    if canonical_timezone(given):
        return None
    used, state = resolve_timezone(given, values.get("state"), default)
    source = f"the state {state}'s" if state in US_STATE_TZ else "the clinic's"
    return f"time zone {given!r} is not an IANA name like America/Chicago; using {source}, {used}"


def parse_row(values: dict[str, str], *, default_timezone: str) -> LeadIn:
    """One row (field -> raw text) to a LeadIn. Raises ValueError with the reason."""
    email = row_email(values)
    timezone, state = resolve_timezone(values.get("timezone"), values.get("state"), default_timezone)
    return LeadIn(
        email=email,
        first_name=clean_name(values.get("first_name")),
        last_name=clean_name(values.get("last_name")),
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


def row_email(values: dict[str, str]) -> str:
    """The row's address, normalized; a ValueError says why there is none."""
    raw_email = values.get("email", "")
    if not raw_email.strip():
        raise ValueError("email is empty")
    try:
        return normalize_email(raw_email)
    except EmailNotValidError as exc:
        raise ValueError(f"email {raw_email.strip()[:80]!r} is not valid: {exc}") from None
