"""One lead's fields, normalized (pure): the rules every way a lead arrives shares.

The CSV import (campaign.leads) and the lead API hand in raw text per field; `normalize_lead`
turns it into a LeadIn (the anxiety answer mapped to a closed vocabulary, consent read as an
explicit yes, the time zone resolved) plus the evidence of consent that came with it. `strict`
is the API's mode: every unreadable field is a problem, named. A file row is lenient: only a
bad address rejects it; an unreadable consent is a no, an unknown time zone falls back.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from zoneinfo import available_timezones

from email_validator import EmailNotValidError, validate_email

from campaign.models import AnxietyType, LeadIn

UTM_FIELDS = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")
LEAD_FIELDS = (
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
    *UTM_FIELDS,
)
# Not lead fields but evidence of consent: the wording shown (hashed), or its version, and the
# submitter's address as a form relays it.
CONSENT_FIELDS = ("consent_text", "consent_version", "consent_ip")
INTAKE_FIELDS = LEAD_FIELDS + CONSENT_FIELDS
MAX_NAME = 200
MAX_TEXT = 500
MAX_SOURCE = 100
MAX_UTM = 200
MAX_VERSION = 100
MAX_CONSENT_TEXT = 20_000


def header_key(text: str) -> str:
    """'E-mail Address ' -> 'emailaddress'."""
    return re.sub(r"[^a-z0-9]", "", unicodedata.normalize("NFKC", text).casefold())


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


class InvalidLead(ValueError):
    """The lead cannot be taken: one message per bad field (field -> what to change)."""

    def __init__(self, problems: dict[str, str]):
        self.problems = problems
        super().__init__("; ".join(problems.values()))


@dataclass(frozen=True)
class ConsentEvidence:
    """What came with the lead about the consent it gave: the version of the wording shown
    (the given `consent_version`, else "sha256:" + the hash of the exact `consent_text`) and the
    submitter's network address as a form relayed it. Empty when not given."""

    version: str = ""
    client: str = ""


@dataclass(frozen=True)
class NormalizedLead:
    lead: LeadIn
    evidence: ConsentEvidence


def consent_text_version(text: str) -> str:
    """The exact wording, byte for byte (no trimming): any change to it is a new version."""
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def normalize_lead(
    values: Mapping[str, str | None], *, default_timezone: str, strict: bool = False
) -> NormalizedLead:
    """Raw text per field (missing or None: not given) -> the lead and its consent evidence.
    Raises InvalidLead naming every bad field (lenient mode: only the address)."""
    problems: dict[str, str] = {}
    email = ""
    try:
        email = valid_email(values.get("email"))
    except ValueError as exc:
        problems["email"] = str(exc)

    def flag(name: str) -> bool:
        # Consent must be explicit: blank or (leniently) unreadable means no.
        try:
            return parse_bool(values.get(name), field_name=name)
        except ValueError as exc:
            if strict:
                problems[name] = f"{exc}; send yes or no (true/false, 1/0, on/off)"
            return False

    def text(name: str, limit: int) -> str:
        raw = values.get(name)
        if strict and raw is not None and len(raw) > limit:
            problems[name] = f"{name} is longer than {limit} characters"
        return clean_text(raw, limit)

    tz_given = clean_text(values.get("timezone"), 64)
    if strict and tz_given and tz_given not in _TIMEZONES:
        problems["timezone"] = (
            f"timezone {tz_given!r} is not an IANA time zone name (like America/New_York); "
            "leave it out to use the state's or the clinic's"
        )
    timezone, state = resolve_timezone(tz_given, values.get("state"), default_timezone)
    lead_values = {
        "first_name": text("first_name", MAX_NAME),
        "last_name": text("last_name", MAX_NAME),
        "anxiety_type": parse_anxiety_type(text("anxiety_type", MAX_TEXT)),
        "prior_treatments": parse_prior_treatments(text("prior_treatments", MAX_TEXT)),
        "consent": flag("consent"),
        "timezone": timezone,
        "state": state,
        "source": text("source", MAX_SOURCE),
        "booked": flag("booked"),
        **{name: text(name, MAX_UTM) for name in UTM_FIELDS},
    }
    evidence = _evidence(values, strict, problems)
    if problems:
        raise InvalidLead(problems)
    return NormalizedLead(LeadIn(email=email, **lead_values), evidence)


def _evidence(values: Mapping[str, str | None], strict: bool, problems: dict[str, str]) -> ConsentEvidence:
    version = clean_text(values.get("consent_version"), MAX_VERSION)
    if strict and len(values.get("consent_version") or "") > MAX_VERSION:
        problems["consent_version"] = f"consent_version is longer than {MAX_VERSION} characters"
    consent_text = values.get("consent_text") or ""
    if strict and len(consent_text) > MAX_CONSENT_TEXT:
        problems["consent_text"] = f"consent_text is longer than {MAX_CONSENT_TEXT} characters"
    if not version and consent_text.strip():
        version = consent_text_version(consent_text)
    client = ""
    raw_ip = (values.get("consent_ip") or "").strip()
    if raw_ip:
        try:
            client = str(ipaddress.ip_address(raw_ip[:64]))
        except ValueError:
            if strict:
                problems["consent_ip"] = f"consent_ip {raw_ip[:64]!r} is not an IPv4 or IPv6 address"
    return ConsentEvidence(version=version, client=client)


def valid_email(raw_email: str | None) -> str:
    raw_email = raw_email or ""
    if not raw_email.strip():
        raise ValueError("email is empty")
    try:
        return normalize_email(raw_email)
    except EmailNotValidError as exc:
        raise ValueError(f"email {raw_email.strip()[:80]!r} is not valid: {exc}") from None
