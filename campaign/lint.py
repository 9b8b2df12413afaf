"""Content lint: pure checks on rendered emails, so a bad template fails before anyone sends it.

Three levels:

- ``lint_email``: one rendered email (the footer, links, privacy of subject and preheader,
  escaping of hostile input, promises, reading grade, HTML size and structure);
- ``lint_sequence``: one audience's emails together (off-label status, side effects, intake);
- ``lint_templates``: renders every template for every name in ``HOSTILE_NAMES`` and runs both.

Everything here is pure: no I/O beyond what ``Renderer.render`` does (reading templates).
Each ``Problem.message`` says what to change, not only what is wrong.

Reading grade: Flesch-Kincaid grade as ``textstat.flesch_kincaid_grade`` measures it, over the
text part WITHOUT the shared footer (everything from the last line "----" on is cut). Links and
the call-to-action line stay in: that is the number a reviewer gets by running textstat on the
text part, and a bare URL counts as one long word, so keep links few.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import TYPE_CHECKING, Literal
from urllib.parse import unquote, urlsplit

from campaign.models import RenderedEmail
from campaign.settings import Clinic

if TYPE_CHECKING:
    from campaign.render import Renderer

Severity = Literal["error", "warning"]

# Condition, diagnosis and treatment words. None may appear in a subject, a preheader or a URL:
# those travel unencrypted, show on lock screens and in ESP logs, and would tell others that
# the reader has a condition or a treatment relationship. Matched whole-word, case-insensitive;
# in a multi-word term a space, hyphen or underscore matches any of the three.
DEFAULT_HEALTH_TERMS: tuple[str, ...] = (
    "anxiety",
    "anxieties",
    "anxious",
    "gad",
    "generalized anxiety",
    "social anxiety",
    "panic",
    "panic attack",
    "panic attacks",
    "depression",
    "depressed",
    "depressive",
    "treatment-resistant",
    "treatment resistant",
    "ptsd",
    "ocd",
    "bipolar",
    "trauma",
    "phobia",
    "phobias",
    "phobic",
    "disorder",
    "disorders",
    "worry",
    "worries",
    "worried",
    "worrying",
    "fear",
    "fears",
    "afraid",
    "mental health",
    "mental illness",
    "psychiatric",
    "psychiatrist",
    "psychiatry",
    "suicide",
    "suicidal",
    "self-harm",
    "ketamine",
    "esketamine",
    "spravato",
    "infusion",
    "infusions",
    "iv therapy",
    "ssri",
    "ssris",
    "snri",
    "snris",
    "benzodiazepine",
    "benzodiazepines",
    "benzo",
    "benzos",
    "antidepressant",
    "antidepressants",
    "diagnosis",
    "diagnosed",
    "diagnoses",
    "symptom",
    "symptoms",
)

# Words that promise results. None may appear anywhere in an email (subject, preheader, text).
DEFAULT_PROMISE_TERMS: tuple[str, ...] = (
    "cure",
    "cures",
    "cured",
    "curing",
    "curative",
    "guarantee",
    "guaranteed",
    "guarantees",
    "100%",
    "100 percent",
    "permanent",
    "permanently",
    "miracle",
    "miracles",
    "miraculous",
    "risk-free",
    "risk free",
    "no side effects",
    "will fix",
    "will heal",
    "will work",
    "always works",
    "proven to work",
    "clinically proven",
    "breakthrough",
    "life-changing",
)

# Words that, in a URL, give away which audience (condition) a reader belongs to.
URL_AUDIENCE_TERMS: tuple[str, ...] = (
    "anxiety",
    "gad",
    "social",
    "treatment_resistant",
    "audience",
    "diagnosis",
)

# Names that break naive templates: markup, very long, non-Latin scripts, right-to-left, empty.
HOSTILE_NAMES: tuple[str, ...] = (
    "<script>alert(1)</script>",
    'Ann" onmouseover="alert(1)',
    "Tom & Jerry's <b>Bold</b>",
    "[click](https://evil.example) **Sam**",
    "{{ clinic.phone }}",
    "A" * 200,
    "José",
    "Зоя",
    "李小龙",
    "محمد",
    "",
)

NEUTRAL_NAME = "Sam"
MAX_SUBJECT_CHARS = 78
MAX_PREHEADER_CHARS = 140
MAX_GRADE = 8.0
# Gmail clips an HTML body at about 102 KB; counted in UTF-8 bytes, 1 KB = 1,000 bytes (stricter).
MAX_HTML_BYTES = 102_000
WARN_HTML_BYTES = 90_000
FOOTER_RULE = "----"

# Steps whose email describes ketamine treatment: each must state the off-label status itself.
OFF_LABEL_STEPS = ("ketamine", "treatment")
_OFF_LABEL = re.compile(r"\boff[\s-]label\b", re.I)
_SIDE_EFFECTS = re.compile(r"\bside[\s-]effects?\b", re.I)
_INTAKE = re.compile(r"\bintake\b", re.I)

_TEXT_URL = re.compile(
    r"(?:https?|mailto|tel|ftp)://[^\s<>()\"']+|(?:mailto|tel):[^\s<>()\"']+|\bwww\.[^\s<>()\"']+", re.I
)
_TABLE_TAG = re.compile(r"<table\b[^>]*>", re.I)
_IMG_TAG = re.compile(r"<img\b[^>]*>", re.I)
_HTML_TAG = re.compile(r"<html\b[^>]*>", re.I)
_LANG_ATTR = re.compile(r"""\blang\s*=\s*["']?([A-Za-z][A-Za-z0-9-]*)""", re.I)
_ROLE_PRESENTATION = re.compile(r"""\brole\s*=\s*["']?presentation\b""", re.I)
_ALT_ATTR = re.compile(r"\balt\s*=", re.I)
_LEFTOVER_JINJA = re.compile(r"\{\{|\}\}|\{%|%\}")
_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "[::1]"}


@dataclass(frozen=True)
class Problem:
    template: str  # e.g. "gad/welcome", or an audience for sequence-wide problems
    rule: str  # a stable id, e.g. "health-in-subject"
    message: str  # what is wrong and what to change
    severity: Severity = "error"

    def __str__(self) -> str:
        return f"{self.severity.upper()} {self.template} [{self.rule}] {self.message}"


# ---------------------------------------------------------------------------------------------
# helpers


def term_pattern(terms: Iterable[str]) -> re.Pattern[str]:
    """One case-insensitive, whole-word regex for all terms (longest first)."""
    parts = []
    for term in sorted({t.strip().lower() for t in terms if t.strip()}, key=len, reverse=True):
        words = [re.escape(w) for w in re.split(r"[\s\-_]+", term)]
        parts.append(r"[\s\-_]+".join(words))
    if not parts:
        return re.compile(r"(?!x)x")  # matches nothing
    return re.compile(r"(?<![\w])(?:" + "|".join(parts) + r")(?![\w])", re.I)


def find_terms(text: str, terms: Iterable[str]) -> list[str]:
    """The distinct terms found in text, as written there (lowercased), in order."""
    seen: list[str] = []
    for match in term_pattern(terms).finditer(text or ""):
        word = " ".join(match.group(0).lower().split())
        if word not in seen:
            seen.append(word)
    return seen


def body_text(text: str) -> str:
    """The text part without the shared footer: everything from the last '----' line on."""
    lines = text.splitlines()
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].strip() == FOOTER_RULE:
            return "\n".join(lines[:i]).strip() + "\n"
    return text


def reading_grade(text: str) -> float:
    """Flesch-Kincaid grade of the text part's body (footer cut), as textstat measures it."""
    import textstat

    try:
        return float(textstat.flesch_kincaid_grade(body_text(text)))
    except LookupError as exc:  # textstat 0.7.9 reads NLTK's cmudict corpus, absent offline
        raise RuntimeError(
            "textstat cannot count syllables: its CMU dictionary is missing. textstat 0.7.9 loads "
            "it from NLTK's data (not installed here); 0.7.5-0.7.8 bundle it through the 'cmudict' "
            "package. Pin textstat>=0.7.5,<0.7.9."
        ) from exc


class _LinkCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.hrefs: list[str] = []
        self.srcs: list[str] = []
        self.attr_names: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            self.attr_names.add(name.lower())
            if value is None:
                continue
            if name == "href":
                self.hrefs.append(value.strip())
            elif name in ("src", "background") or (tag == "form" and name == "action"):
                self.srcs.append(value.strip())


def _collect(html: str) -> _LinkCollector:
    collector = _LinkCollector()
    collector.feed(html)
    collector.close()
    return collector


def html_links(html: str) -> tuple[list[str], list[str]]:
    """(hrefs, other resource URLs) of an HTML document, entities decoded."""
    collector = _collect(html)
    return collector.hrefs, collector.srcs


def text_links(text: str) -> list[str]:
    return [m.group(0).rstrip(".,;:!?") for m in _TEXT_URL.finditer(text)]


def _url_tokens(url: str) -> list[str]:
    return [t for t in re.split(r"[^a-z0-9]+", unquote(url).lower()) if t]


def url_health_terms(url: str, terms: Iterable[str]) -> list[str]:
    """Health or audience words that stand as whole tokens in a URL (host, path or query).

    Tokens are split on anything but letters and digits, so the clinic's own domain
    (freshstartketamine.example) is one token and does not match 'ketamine'."""
    tokens = _url_tokens(url)
    found = []
    for term in terms:
        words = _url_tokens(term)
        n = len(words)
        if n and any(tokens[i : i + n] == words for i in range(len(tokens) - n + 1)):
            found.append(term)
    return found


def _without_token(url: str) -> str:
    """An unsubscribe URL without its last path segment (the random signed token), so that a
    token that happens to spell 'gad' between two dashes does not trip the URL check."""
    parts = urlsplit(url)
    path = parts.path.rsplit("/", 1)[0] if "/" in parts.path.strip("/") else parts.path
    return f"{parts.scheme}://{parts.netloc}{path}" + (f"?{parts.query}" if parts.query else "")


def _short(value: str, limit: int = 40) -> str:
    value = repr(value)
    return value if len(value) <= limit else value[: limit - 4] + "...'"


# ---------------------------------------------------------------------------------------------
# one email


def lint_email(
    email: RenderedEmail,
    *,
    template: str,
    clinic: Clinic,
    hostile_inputs: Sequence[str] = (),
    health_terms: Iterable[str] = DEFAULT_HEALTH_TERMS,
    promise_terms: Iterable[str] = DEFAULT_PROMISE_TERMS,
    unsubscribe_url: str | None = None,
    allow_http_hosts: Collection[str] = (),
    max_grade: float = MAX_GRADE,
) -> list[Problem]:
    """Check one rendered email. ``hostile_inputs`` are the lead values (first names) that went
    into this render; ``unsubscribe_url`` is the one it was rendered with (if known);
    ``allow_http_hosts`` (e.g. {"localhost", "127.0.0.1"}) lets a local development
    unsubscribe link be plain http, and nothing else."""
    health_terms = tuple(health_terms)
    problems: list[Problem] = []

    def add(rule: str, message: str, severity: Severity = "error") -> None:
        problems.append(Problem(template, rule, message, severity))

    html, text = email.html, email.text

    # --- must be present -------------------------------------------------------------------
    for part_name, part in (("HTML", html), ("text", text)):
        if clinic.name not in part and clinic.name.replace("&", "&amp;") not in part:
            add(
                "clinic-name",
                f"the {part_name} part lacks the clinic name {clinic.name!r}; keep the layout footer",
            )
        address_html = clinic.postal_address.replace("&", "&amp;")
        if clinic.postal_address not in part and address_html not in part:
            add(
                "postal-address",
                f"the {part_name} part lacks the postal address (CAN-SPAM); "
                "keep {{ clinic.postal_address }} in the layout footer",
            )
        if not re.search(r"(?<!\d)988(?!\d)", part):
            add(
                "crisis-line",
                f"the {part_name} part lacks the 988 crisis line; keep the layout's crisis note",
            )
        if "not medical advice" not in part.lower():
            add(
                "disclaimer",
                f"the {part_name} part lacks 'not medical advice'; keep the layout's education-only note",
            )
        # A lead value may itself look like Jinja ("{{ x }}"): it is data, rendered once, never
        # re-rendered; only template text counts here.
        scrubbed = part
        for value in hostile_inputs:
            if value:
                scrubbed = scrubbed.replace(value, "")
        leftover = _LEFTOVER_JINJA.search(scrubbed)
        if leftover:
            add(
                "unrendered-jinja",
                f"the {part_name} part contains {leftover.group(0)!r}: a Jinja tag was not rendered; fix "
                "the template syntax",
            )

    collected = _collect(html)
    hrefs, srcs = collected.hrefs, collected.srcs
    tlinks = text_links(text)

    def is_unsub(url: str) -> bool:
        return (unsubscribe_url is not None and url == unsubscribe_url) or "/unsubscribe/" in url

    if not any(is_unsub(h) for h in hrefs):
        add(
            "unsubscribe-link",
            "the HTML part has no unsubscribe link (<a href> to the /unsubscribe/ URL); "
            "keep {{ unsubscribe_url }} in the layout footer",
        )
    if not any(is_unsub(u) for u in tlinks) and not (unsubscribe_url and unsubscribe_url in text):
        add(
            "unsubscribe-link",
            "the text part has no unsubscribe URL; keep 'Unsubscribe: {{ unsubscribe_url }}' in layout.txt",
        )

    subject, preheader = email.subject, email.preheader
    if not subject.strip():
        add("subject-missing", "the subject is empty; write a short, neutral subject")
    elif len(subject) > MAX_SUBJECT_CHARS:
        add(
            "subject-too-long",
            f"the subject is {len(subject)} characters (max {MAX_SUBJECT_CHARS}); shorten it, and never "
            "put the lead's name in it",
        )
    if not preheader.strip():
        add("preheader-missing", "the preheader is empty; write one short neutral line")
    elif len(preheader) > MAX_PREHEADER_CHARS:
        add(
            "preheader-too-long",
            f"the preheader is {len(preheader)} characters; keep it under {MAX_PREHEADER_CHARS}",
            "warning",
        )

    # --- must be absent ----------------------------------------------------------------------
    for field, value in (("subject", subject), ("preheader", preheader)):
        found = find_terms(value, health_terms)
        if found:
            add(
                f"health-in-{field}",
                f"the {field} contains {', '.join(repr(w) for w in found)}: {field}s are seen by others; "
                "use neutral words such as 'Your next note from Fresh Start'",
            )

    for name in hostile_inputs:
        name = name.strip()
        if len(name) >= 2 and re.search(r"(?<!\w)" + re.escape(name) + r"(?!\w)", subject):
            add(
                "name-in-subject",
                f"the subject contains the lead's name {_short(name)}; names can be 200 characters long "
                "and subjects are seen by others: take {{ greeting_name }} out of the subject",
            )
            break

    unsub_urls = {unsubscribe_url} if unsubscribe_url else set()
    all_urls = list(dict.fromkeys([*hrefs, *srcs, *tlinks]))
    url_terms = (*health_terms, *URL_AUDIENCE_TERMS)
    for url in all_urls:
        checked = _without_token(url) if (url in unsub_urls or "/unsubscribe/" in url) else url
        found = url_health_terms(checked, url_terms)
        if found:
            add(
                "health-in-url",
                f"the link {_short(url, 80)} contains {', '.join(repr(w) for w in found)}: URLs are logged "
                "by click trackers and proxies; link to a neutral page",
            )

    if re.search(r"<\s*script\b", html, re.I):
        add(
            "unescaped-input",
            "the HTML contains a raw '<script' tag: a value was not escaped; render lead values with "
            "escaping (never |safe)",
        )
    handlers = sorted({name for name in collected.attr_names if name.startswith("on")})
    if handlers:
        add(
            "unescaped-input",
            f"the HTML has event-handler attribute(s) {handlers}: a value broke out of an attribute; "
            "escape lead values and keep them out of attributes",
        )
    for value in hostile_inputs:
        # '<' raw in the HTML can open a tag (a '"' or '>' raw in a text node is harmless, and a
        # '"' that broke out of an attribute shows up as the attribute check above).
        if "<" in value and value in html:
            add(
                "unescaped-input",
                f"the HTML contains the lead value {_short(value)} unescaped; never mark lead values safe "
                "(|safe, Markup)",
            )

    found = find_terms(f"{subject}\n{preheader}\n{text}", promise_terms)
    if found:
        add(
            "promise",
            f"the email says {', '.join(repr(w) for w in found)}: no promise of results; say 'may help', "
            "'some patients'",
        )

    grade = reading_grade(text)
    if grade > max_grade:
        add(
            "reading-grade",
            f"Flesch-Kincaid grade {grade:.1f} is above {max_grade:g}; "
            "use shorter sentences and shorter words",
        )

    size = len(html.encode("utf-8"))
    if size >= MAX_HTML_BYTES:
        add("html-size", f"the HTML is {size:,} bytes; Gmail clips at about 102 KB: cut content or styles")
    elif size >= WARN_HTML_BYTES:
        add("html-size", f"the HTML is {size:,} bytes, close to Gmail's 102 KB clipping", "warning")

    for url in all_urls:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme in ("https", "mailto", "tel"):
            if scheme == "https" and not parts.netloc:
                add("insecure-link", f"the link {_short(url, 80)} has no host; use a full https:// URL")
            continue
        if (
            scheme == "http"
            and is_unsub(url)
            and (parts.hostname or "") in _LOCAL_HOSTS
            and (parts.hostname or "") in set(allow_http_hosts)
        ):
            continue
        if scheme == "http":
            add(
                "insecure-link",
                f"the link {_short(url, 80)} is plain http; use https:// (set CAMPAIGN_PUBLIC_URL to an "
                "https address)",
            )
        else:
            add(
                "insecure-link",
                f"the link {_short(url, 80)} is not an absolute https:// (or mailto:/tel:) URL; email has "
                "no base URL",
            )

    for tag in _IMG_TAG.findall(html):
        if not _ALT_ATTR.search(tag):
            add(
                "img-alt",
                f'an image has no alt attribute ({_short(tag, 60)}); add alt text (alt="" if decorative)',
            )
    html_tag = _HTML_TAG.search(html)
    lang = _LANG_ATTR.search(html_tag.group(0)) if html_tag else None
    if not lang or lang.group(1).lower() == "und":  # mrml writes lang="und" when <mjml> has none
        add(
            "html-lang",
            'the <html> tag has no real lang attribute (screen readers need it); keep <mjml lang="en"> in '
            "the layout",
        )
    bad_tables = [t for t in _TABLE_TAG.findall(html) if not _ROLE_PRESENTATION.search(t)]
    if bad_tables:
        add(
            "table-role",
            f'{len(bad_tables)} <table> tag(s) lack role="presentation" (screen readers read layout tables '
            "as data); add it",
        )

    return problems


# ---------------------------------------------------------------------------------------------
# one audience's sequence


def lint_sequence(emails: Sequence[tuple[str, RenderedEmail]], *, audience: str) -> list[Problem]:
    """Checks that need the whole sequence. ``emails`` are (step key or template name, email)
    in send order; a name like "gad/ketamine" counts as step "ketamine"."""
    problems: list[Problem] = []
    bodies = [(key.rsplit("/", 1)[-1], key, body_text(email.text)) for key, email in emails]
    for step, key, body in bodies:
        if step in OFF_LABEL_STEPS and not _OFF_LABEL.search(body):
            template = key if "/" in key else f"{audience}/{key}"
            problems.append(
                Problem(
                    template,
                    "off-label",
                    f"the {step!r} email describes ketamine treatment but does not say its use for anxiety "
                    "is off-label; add a plain sentence saying so",
                )
            )
    if not any(_OFF_LABEL.search(body) for _, _, body in bodies):
        problems.append(
            Problem(
                audience,
                "off-label",
                "no email in the sequence says ketamine's use for anxiety is off-label (not FDA-approved "
                "for any anxiety disorder); say so",
            )
        )
    if not any(_SIDE_EFFECTS.search(body) for _, _, body in bodies):
        problems.append(
            Problem(
                audience,
                "side-effects",
                "no email in the sequence names the side effects (dissociation, raised blood pressure and "
                "heart rate, nausea, drowsiness); add them",
            )
        )
    if not any(_INTAKE.search(body) for _, _, body in bodies):
        problems.append(
            Problem(
                audience,
                "intake",
                "no email in the sequence says treatment starts with an intake evaluation; add it",
            )
        )
    return problems


# ---------------------------------------------------------------------------------------------
# every template


def lint_templates(
    renderer: Renderer,
    sequences: dict[str, list[tuple[str, str]]],
    *,
    unsubscribe_url: str,
    hostile_names: Sequence[str] = HOSTILE_NAMES,
    allow_http_hosts: Collection[str] = (),
    health_terms: Iterable[str] = DEFAULT_HEALTH_TERMS,
    promise_terms: Iterable[str] = DEFAULT_PROMISE_TERMS,
) -> tuple[list[Problem], dict[str, float]]:
    """Render every template of every sequence for each hostile name and lint it.

    ``sequences`` maps audience -> [(step key, template name), ...] in send order. Returns the
    problems (deduplicated, errors first) and the highest reading grade seen per template."""
    from campaign.render import TemplateError

    health_terms, promise_terms = tuple(health_terms), tuple(promise_terms)
    problems: list[Problem] = []
    grades: dict[str, float] = {}
    for audience, steps in sequences.items():
        neutral: list[tuple[str, RenderedEmail]] = []
        for step, name in steps:
            for first_name in (NEUTRAL_NAME, *hostile_names):
                try:
                    email = renderer.render(name, first_name=first_name, unsubscribe_url=unsubscribe_url)
                except TemplateError as exc:
                    problems.append(Problem(name, "render", f"{exc} (first_name={_short(first_name)})"))
                    break  # one render error per template is enough
                except Exception as exc:
                    problems.append(
                        Problem(
                            name,
                            "render",
                            f"rendering with first_name={_short(first_name)} raised {type(exc).__name__}: "
                            f"{exc}",
                        )
                    )
                    continue
                problems.extend(
                    lint_email(
                        email,
                        template=name,
                        clinic=renderer.clinic,
                        hostile_inputs=[first_name],
                        health_terms=health_terms,
                        promise_terms=promise_terms,
                        unsubscribe_url=unsubscribe_url,
                        allow_http_hosts=allow_http_hosts,
                    )
                )
                grades[name] = max(grades.get(name, float("-inf")), reading_grade(email.text))
                if first_name == NEUTRAL_NAME:
                    neutral.append((step, email))
        problems.extend(lint_sequence(neutral, audience=audience))
    unique = list(dict.fromkeys(problems))
    unique.sort(key=lambda p: (p.severity != "error", p.template, p.rule))
    return unique, grades


def errors(problems: Iterable[Problem]) -> list[Problem]:
    return [p for p in problems if p.severity == "error"]
