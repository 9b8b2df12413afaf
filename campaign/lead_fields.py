"""One lead's values, normalized: header aliases, free text to a closed vocabulary, addresses,
time zones, the evidence of consent (pure: text in, a LeadIn or a ValueError with the reason out).

Every way a lead arrives (a file row, the lead API; later the form) goes through
`normalize_lead`. `strict` is the API's mode: every unreadable field is a problem, named. A file
row is lenient: only a bad address rejects it; an unreadable consent is a no, an unknown time
zone falls back (with a warning from the file parser).

Real form exports are messy: headers are matched case-, space- and punctuation-insensitively
through an alias table; the anxiety question's free text is mapped to a closed vocabulary.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from zoneinfo import available_timezones

from email_validator import EmailNotValidError, EmailSyntaxError, validate_email
from email_validator.rfc_constants import ATEXT, EMAIL_MAX_LENGTH
from email_validator.syntax import validate_email_domain_name

from campaign.lead_words import ANXIETY_PATTERNS, FALSE_WORDS, NONE_WORDS, NUMBER_WORDS, TRUE_WORDS
from campaign.models import AnxietyType, LeadIn
from campaign.us_states import US_STATE_NAMES, US_STATE_TZ

UTM_FIELDS = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")
# The stored lead's fields (models.LeadIn).
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
FIELDS = LEAD_FIELDS + CONSENT_FIELDS  # what a file column or an API field may hold
MAX_NAME = 200
MAX_TEXT = 500
MAX_SOURCE = 100
MAX_UTM = 200
MAX_VERSION = 100
MAX_CONSENT_TEXT = 20_000


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
    "source": ["source", "lead source", "form", "form name"],
    "booked": ["booked", "consultation booked", "has booked", "appointment booked"],
    # UTM tags: as the fields are named, and as form builders label them ("UTM Source").
    **{f: [f, f.replace("_", " ")] for f in UTM_FIELDS},
    "consent_text": ["consent text", "consent wording", "consent language"],
    "consent_version": ["consent version", "consent text version"],
    "consent_ip": ["consent ip", "ip", "ip address", "submitter ip", "client ip"],
}
HEADER_ALIASES: dict[str, str] = {header_key(a): f for f, aliases in _ALIASES.items() for a in aliases}


# Any letter case: "america/chicago" is what a person typing it means.
_TIMEZONES = {name.casefold(): name for name in available_timezones()}
_TIMEZONE_NAMES = frozenset(_TIMEZONES.values())
# "=?" and "?=" delimit an RFC 2047 encoded word; no real name holds one (see clean_name).
_ENCODED_WORD_MARK = re.compile(r"=\?|\?=")


def _cached_for_short_text(fn):
    """`fn(*texts)` remembered for the last few thousand short answers (a form's choices repeat
    on every row); a long one is worked out each time, so memory stays bounded."""
    cached = functools.lru_cache(maxsize=4096)(fn)

    if fn.__code__.co_argcount == 1:  # the usual case, called for every row: kept quick

        @functools.wraps(fn)
        def call_one(text):
            return cached(text) if text is None or len(text) <= 200 else fn(text)

        return call_one

    @functools.wraps(fn)
    def call(*texts):
        for text in texts:
            if text is not None and len(text) > 200:
                return fn(*texts)
        return cached(*texts)

    return call


def clean_text(value: str | None, limit: int = MAX_TEXT) -> str:
    """Stored as given (escaping happens at render), minus control characters, bounded."""
    if not value:
        return ""
    if value.isprintable():  # the usual case: no control character, no odd space
        return " ".join(value.split())[:limit]
    # Line breaks and tabs become spaces; other control characters are dropped.
    value = "".join(
        " " if ch in "\t\r\n\v\f" else ch
        for ch in value
        if ch.isspace() or unicodedata.category(ch)[0] != "C"
    )
    return " ".join(value.split())[:limit]


@_cached_for_short_text
def clean_name(value: str | None) -> str:
    """A first or last name: clean_text, and never an RFC 2047 encoded word. Such a name, put in
    an email header, could decode to a line break and add a header (a Bcc); the delivery code
    cleans names again, this keeps them out of the store as well."""
    return clean_text(_ENCODED_WORD_MARK.sub(" ", clean_text(value, MAX_NAME * 2)), MAX_NAME)


# A plain address (dot-atom ASCII before the @, ASCII letters, digits, dots and hyphens after):
# checked by email_validator's own rules with the domain's check kept per domain (an import of
# a million rows names a few thousand domains). Anything else takes the full validation.
_PLAIN_ADDRESS = re.compile(rf"([{ATEXT}]+(?:\.[{ATEXT}]+)*)@([A-Za-z0-9.-]+)")  # RFC 5322 dot-atom


@functools.lru_cache(maxsize=4096)
def _plain_domain(domain: str) -> str | None:
    """The domain normalized as validate_email does, or None where it would refuse it."""
    try:
        found = validate_email_domain_name(domain, test_environment=False, globally_deliverable=True)
    except EmailSyntaxError:
        return None
    return found["domain"] if found["domain"] == found["ascii_domain"] else None


def normalize_email(raw: str) -> str:
    """Syntax check (no DNS) and one canonical spelling: the same address in any case is one lead."""
    raw = raw.strip()
    plain = _PLAIN_ADDRESS.fullmatch(raw)
    if plain:
        domain = _plain_domain(plain[2])
        if domain is not None and len(plain[1]) + 1 + max(len(domain), len(plain[2])) <= EMAIL_MAX_LENGTH:
            return f"{plain[1]}@{domain}".casefold()
    return _validated_email(raw)


def _validated_email(raw: str) -> str:
    """normalize_email by the full validation (every address the plain path does not take)."""
    # No SMTPUTF8: SendGrid and many mailbox providers cannot deliver to a non-ASCII local part.
    result = validate_email(raw.strip(), check_deliverability=False, allow_smtputf8=False)
    return result.normalized.casefold()


@_cached_for_short_text
def parse_anxiety_type(text: str | None) -> AnxietyType:
    text = clean_text(text)
    if not text:
        return AnxietyType.unspecified
    for value in AnxietyType:
        if header_key(text) == header_key(value.value):
            return value
    for kind, pattern in ANXIETY_PATTERNS:
        if pattern.search(text):
            return kind
    return AnxietyType.unspecified


@_cached_for_short_text
def parse_prior_treatments(text: str | None) -> int | None:
    """A number, a number word, or a list ("SSRIs; therapy") counted. Blank is unknown."""
    text = clean_text(text).casefold()
    if not text:
        return None
    if text in NONE_WORDS:
        return 0
    match = re.fullmatch(r"(\d+)\s*\+?(\s.*)?", text)
    if match:
        return min(int(match.group(1)), 50)
    first = text.split()[0]
    if first in NUMBER_WORDS:
        return NUMBER_WORDS[first]
    items = [part for part in re.split(r"[;,/|\n]|\band\b|&", text) if part.strip()]
    return len(items)


def parse_bool(text: str | None, *, field_name: str) -> bool:
    value = _yes_no(text)
    if value is None:
        raise ValueError(f"{field_name} {text!r} is not yes/no")
    return value


@_cached_for_short_text
def _yes_no(text: str | None) -> bool | None:
    value = clean_text(text).casefold().rstrip(".!")
    return True if value in TRUE_WORDS else False if value in FALSE_WORDS else None


def canonical_timezone(text: str | None) -> str | None:
    """The IANA name in its own spelling ("america/chicago" -> "America/Chicago"), else None."""
    return _TIMEZONES.get(clean_text(text, 64).casefold())


@_cached_for_short_text
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
    """One file row (field -> raw text) to a LeadIn. Raises ValueError with the reason."""
    return normalize_lead(values, default_timezone=default_timezone).lead


class InvalidLead(ValueError):
    """The lead cannot be taken: one message per bad field (field -> what to change)."""

    def __init__(self, problems: dict[str, str]):
        self.problems = problems
        super().__init__("; ".join(problems.values()))


@dataclass(frozen=True)
class ConsentEvidence:
    """What came with the lead about its consent: the version of the wording shown (the given
    `consent_version`, else "sha256:" + the hash of the exact `consent_text`) and the
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
        email = row_email(values)
    except ValueError as exc:
        problems["email"] = str(exc)

    if strict:
        _strict_problems(values, problems)
    timezone, state = resolve_timezone(values.get("timezone"), values.get("state"), default_timezone)
    lead_values = {
        "first_name": clean_name(values.get("first_name")),
        "last_name": clean_name(values.get("last_name")),
        "anxiety_type": parse_anxiety_type(values.get("anxiety_type")),
        "prior_treatments": parse_prior_treatments(values.get("prior_treatments")),
        "consent": _flag(values, "consent", strict, problems),
        "timezone": timezone,
        "state": state,
        "source": clean_text(values.get("source"), MAX_SOURCE),
        "booked": _flag(values, "booked", strict, problems),
        **{name: clean_text(values.get(name), MAX_UTM) for name in UTM_FIELDS},
    }
    evidence = _evidence(values, strict, problems)
    if problems:
        raise InvalidLead(problems)
    return NormalizedLead(LeadIn(email=email, **lead_values), evidence)


def _flag(values: Mapping[str, str | None], name: str, strict: bool, problems: dict[str, str]) -> bool:
    # Consent must be explicit: blank or (leniently) unreadable means no (stored, never mailed).
    try:
        return parse_bool(values.get(name), field_name=name)
    except ValueError as exc:
        if strict:
            problems[name] = f"{exc}; send yes or no (true/false, 1/0, on/off)"
        return False


_LIMITS = {
    "first_name": MAX_NAME,
    "last_name": MAX_NAME,
    "anxiety_type": MAX_TEXT,
    "prior_treatments": MAX_TEXT,
    "source": MAX_SOURCE,
    **dict.fromkeys(UTM_FIELDS, MAX_UTM),
}


def _strict_problems(values: Mapping[str, str | None], problems: dict[str, str]) -> None:
    """What strict mode refuses beyond an unreadable flag: text too long, an unknown time zone."""
    for name, limit in _LIMITS.items():
        if len(values.get(name) or "") > limit:
            problems[name] = f"{name} is longer than {limit} characters"
    given_tz = clean_text(values.get("timezone"), 64)
    if given_tz and canonical_timezone(given_tz) is None:
        problems["timezone"] = (
            f"timezone {given_tz!r} is not an IANA time zone name (like America/New_York); "
            "leave it out to use the state's or the clinic's"
        )


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


def row_email(values: Mapping[str, str | None]) -> str:
    """The row's address, normalized; a ValueError says why there is none."""
    raw_email = values.get("email") or ""
    if not raw_email.strip():
        raise ValueError("email is empty")
    try:
        return normalize_email(raw_email)
    except EmailNotValidError as exc:
        raise ValueError(f"email {raw_email.strip()[:80]!r} is not valid: {exc}") from None
