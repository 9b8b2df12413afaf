"""The rules for one rendered email: what must be there (footer, unsubscribe link, crisis line,
subject, preheader), what must not (health words where others see them, names in subjects,
unescaped lead values, promises), and how it reads and is built (grade, size, links, HTML).

Each rule is one function registered with its id; each message says what to change.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from campaign.lint.matching import find_terms, short, url_health_terms, without_token
from campaign.lint.readability import reading_grade, smog_grade
from campaign.lint.registry import EmailContext, Finding, Messages, email_rule
from campaign.lint.vocabulary import URL_AUDIENCE_TERMS

MAX_SUBJECT_CHARS = 78
MAX_PREHEADER_CHARS = 140
# Gmail clips an HTML body at about 102 KB; counted in UTF-8 bytes, 1 KB = 1,000 bytes (stricter).
MAX_HTML_BYTES = 102_000
WARN_HTML_BYTES = 90_000
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})

_TABLE_TAG = re.compile(r"<table\b[^>]*>", re.I)
_IMG_TAG = re.compile(r"<img\b[^>]*>", re.I)
_HTML_TAG = re.compile(r"<html\b[^>]*>", re.I)
_LANG_ATTR = re.compile(r"""\blang\s*=\s*["']?([A-Za-z][A-Za-z0-9-]*)""", re.I)
_ROLE_PRESENTATION = re.compile(r"""\brole\s*=\s*["']?presentation\b""", re.I)
_ALT_ATTR = re.compile(r"\balt\s*=", re.I)
_LEFTOVER_JINJA = re.compile(r"\{\{|\}\}|\{%|%\}")


# ---- must be present ------------------------------------------------------------------------------


@email_rule("clinic-name", "Both parts name the clinic (the layout footer).")
def clinic_name(ctx: EmailContext) -> Messages:
    name = ctx.clinic.name
    for part_name, part in ctx.parts:
        if name not in part and name.replace("&", "&amp;") not in part:
            yield f"the {part_name} part lacks the clinic name {name!r}; keep the layout footer"


@email_rule("postal-address", "Both parts carry the clinic's postal address (CAN-SPAM).")
def postal_address(ctx: EmailContext) -> Messages:
    address = ctx.clinic.postal_address
    for part_name, part in ctx.parts:
        if address not in part and address.replace("&", "&amp;") not in part:
            yield (
                f"the {part_name} part lacks the postal address (CAN-SPAM); "
                "keep {{ clinic.postal_address }} in the layout footer"
            )


@email_rule("crisis-line", "Both parts give the 988 crisis line.")
def crisis_line(ctx: EmailContext) -> Messages:
    for part_name, part in ctx.parts:
        if not re.search(r"(?<!\d)988(?!\d)", part):
            yield f"the {part_name} part lacks the 988 crisis line; keep the layout's crisis note"


@email_rule("disclaimer", "Both parts say the email is 'not medical advice'.")
def disclaimer(ctx: EmailContext) -> Messages:
    for part_name, part in ctx.parts:
        if "not medical advice" not in part.lower():
            yield f"the {part_name} part lacks 'not medical advice'; keep the layout's education-only note"


@email_rule("unrendered-jinja", "No Jinja tag is left unrendered in either part.")
def unrendered_jinja(ctx: EmailContext) -> Messages:
    for part_name, part in ctx.parts:
        # A lead value may itself look like Jinja ("{{ x }}"): it is data, rendered once, never
        # re-rendered; only template text counts here.
        for value in ctx.hostile_inputs:
            if value:
                part = part.replace(value, "")
        leftover = _LEFTOVER_JINJA.search(part)
        if leftover:
            yield (
                f"the {part_name} part contains {leftover.group(0)!r}: a Jinja tag was not rendered; fix "
                "the template syntax"
            )


@email_rule("unsubscribe-link", "Both parts carry the unsubscribe link.")
def unsubscribe_link(ctx: EmailContext) -> Messages:
    if not any(ctx.is_unsubscribe(h) for h in ctx.html_scan.hrefs):
        yield (
            "the HTML part has no unsubscribe link (<a href> to the /unsubscribe/ URL); "
            "keep {{ unsubscribe_url }} in the layout footer"
        )
    url = ctx.unsubscribe_url
    if not any(ctx.is_unsubscribe(u) for u in ctx.text_links) and not (url and url in ctx.email.text):
        yield "the text part has no unsubscribe URL; keep 'Unsubscribe: {{ unsubscribe_url }}' in layout.txt"


@email_rule("subject-missing", "The subject is not empty.")
def subject_missing(ctx: EmailContext) -> Messages:
    if not ctx.email.subject.strip():
        yield "the subject is empty; write a short, neutral subject"


@email_rule("subject-too-long", f"The subject is at most {MAX_SUBJECT_CHARS} characters.")
def subject_too_long(ctx: EmailContext) -> Messages:
    subject = ctx.email.subject
    if subject.strip() and len(subject) > MAX_SUBJECT_CHARS:
        yield (
            f"the subject is {len(subject)} characters (max {MAX_SUBJECT_CHARS}); shorten it, and never "
            "put the lead's name in it"
        )


@email_rule("preheader-missing", "The preheader is not empty.")
def preheader_missing(ctx: EmailContext) -> Messages:
    if not ctx.email.preheader.strip():
        yield "the preheader is empty; write one short neutral line"


@email_rule(
    "preheader-too-long", f"The preheader is at most {MAX_PREHEADER_CHARS} characters.", severity="warning"
)
def preheader_too_long(ctx: EmailContext) -> Messages:
    preheader = ctx.email.preheader
    if preheader.strip() and len(preheader) > MAX_PREHEADER_CHARS:
        yield f"the preheader is {len(preheader)} characters; keep it under {MAX_PREHEADER_CHARS}"


# ---- must be absent -------------------------------------------------------------------------------


def _health_words(field: str, value: str, ctx: EmailContext) -> Messages:
    found = find_terms(value, ctx.health_terms)
    if found:
        yield (
            f"the {field} contains {', '.join(repr(w) for w in found)}: {field}s are seen by others; "
            "use neutral words such as 'Your next note from Fresh Start'"
        )


@email_rule("health-in-subject", "No condition or treatment word in the subject (lock screens, logs).")
def health_in_subject(ctx: EmailContext) -> Messages:
    return _health_words("subject", ctx.email.subject, ctx)


@email_rule("health-in-preheader", "No condition or treatment word in the preheader.")
def health_in_preheader(ctx: EmailContext) -> Messages:
    return _health_words("preheader", ctx.email.preheader, ctx)


@email_rule("name-in-subject", "The lead's name is not in the subject.")
def name_in_subject(ctx: EmailContext) -> Messages:
    for name in ctx.hostile_inputs:
        name = name.strip()
        if len(name) >= 2 and re.search(r"(?<!\w)" + re.escape(name) + r"(?!\w)", ctx.email.subject):
            yield (
                f"the subject contains the lead's name {short(name)}; names can be 200 characters long "
                "and subjects are seen by others: take {{ greeting_name }} out of the subject"
            )
            return


@email_rule("health-in-url", "No condition, treatment or audience word in any URL (click trackers).")
def health_in_url(ctx: EmailContext) -> Messages:
    terms = (*ctx.health_terms, *URL_AUDIENCE_TERMS)
    for url in ctx.all_urls:
        # The signed token of an unsubscribe link is random: it may spell anything.
        checked = without_token(url) if ctx.is_unsubscribe(url) else url
        found = url_health_terms(checked, terms)
        if found:
            yield (
                f"the link {short(url, 80)} contains {', '.join(repr(w) for w in found)}: URLs are logged "
                "by click trackers and proxies; link to a neutral page"
            )


@email_rule("unescaped-input", "Lead values are escaped: no raw <script>, event handler or raw markup.")
def unescaped_input(ctx: EmailContext) -> Messages:
    html = ctx.email.html
    if re.search(r"<\s*script\b", html, re.I):
        yield (
            "the HTML contains a raw '<script' tag: a value was not escaped; render lead values with "
            "escaping (never |safe)"
        )
    handlers = sorted({name for name in ctx.html_scan.attr_names if name.startswith("on")})
    if handlers:
        yield (
            f"the HTML has event-handler attribute(s) {handlers}: a value broke out of an attribute; "
            "escape lead values and keep them out of attributes"
        )
    for value in ctx.hostile_inputs:
        # '<' raw in the HTML can open a tag (a '"' or '>' raw in a text node is harmless, and a
        # '"' that broke out of an attribute shows up as the attribute check above).
        if "<" in value and value in html:
            yield (
                f"the HTML contains the lead value {short(value)} unescaped; never mark lead values safe "
                "(|safe, Markup)"
            )


@email_rule("promise", "No promise of results ('cure', 'guaranteed', '100%') anywhere.")
def promise(ctx: EmailContext) -> Messages:
    email = ctx.email
    found = find_terms(f"{email.subject}\n{email.preheader}\n{email.text}", ctx.promise_terms)
    if found:
        yield (
            f"the email says {', '.join(repr(w) for w in found)}: no promise of results; say 'may help', "
            "'some patients'"
        )


# ---- how it reads and is built --------------------------------------------------------------------


@email_rule("reading-grade", "The text part (footer cut) reads at Flesch-Kincaid grade 8 or below.")
def reading_grade_rule(ctx: EmailContext) -> Messages:
    grade = reading_grade(ctx.email.text)
    if grade > ctx.max_grade:
        yield (
            f"Flesch-Kincaid grade {grade:.1f} is above {ctx.max_grade:g}; "
            "use shorter sentences and shorter words"
        )


@email_rule("smog", "The text part (footer cut) has a SMOG index of 8 or below (long words per sentence).")
def smog(ctx: EmailContext) -> Messages:
    grade = smog_grade(ctx.email.text)
    if grade > ctx.max_smog:
        yield (
            f"SMOG index {grade:.1f} is above {ctx.max_smog:g}; use fewer words of three or more "
            "syllables (explain or drop technical words) and split long sentences"
        )


@email_rule("html-size", "The HTML stays under Gmail's ~102 KB clipping (a warning from 90 KB).")
def html_size(ctx: EmailContext) -> Messages:
    size = len(ctx.email.html.encode("utf-8"))
    if size >= MAX_HTML_BYTES:
        yield f"the HTML is {size:,} bytes; Gmail clips at about 102 KB: cut content or styles"
    elif size >= WARN_HTML_BYTES:
        yield Finding(f"the HTML is {size:,} bytes, close to Gmail's 102 KB clipping", "warning")


def _allowed_local_http(ctx: EmailContext, url: str, host: str) -> bool:
    """Plain http is fine for the unsubscribe link only, on a local host the caller allows."""
    return ctx.is_unsubscribe(url) and host in LOCAL_HOSTS and host in set(ctx.allow_http_hosts)


@email_rule("insecure-link", "Every link is an absolute https:// (or mailto:/tel:) URL.")
def insecure_link(ctx: EmailContext) -> Messages:
    for url in ctx.all_urls:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme in ("https", "mailto", "tel"):
            if scheme == "https" and not parts.netloc:
                yield f"the link {short(url, 80)} has no host; use a full https:// URL"
        elif scheme == "http":
            if not _allowed_local_http(ctx, url, parts.hostname or ""):
                yield (
                    f"the link {short(url, 80)} is plain http; use https:// (set CAMPAIGN_PUBLIC_URL to an "
                    "https address)"
                )
        else:
            yield (
                f"the link {short(url, 80)} is not an absolute https:// (or mailto:/tel:) URL; email has "
                "no base URL"
            )


@email_rule("img-alt", "Every image has an alt attribute.")
def img_alt(ctx: EmailContext) -> Messages:
    for tag in _IMG_TAG.findall(ctx.email.html):
        if not _ALT_ATTR.search(tag):
            yield f'an image has no alt attribute ({short(tag, 60)}); add alt text (alt="" if decorative)'


@email_rule("html-lang", "The <html> tag has a real lang attribute (screen readers).")
def html_lang(ctx: EmailContext) -> Messages:
    html_tag = _HTML_TAG.search(ctx.email.html)
    lang = _LANG_ATTR.search(html_tag.group(0)) if html_tag else None
    if not lang or lang.group(1).lower() == "und":  # mrml writes lang="und" when <mjml> has none
        yield (
            'the <html> tag has no real lang attribute (screen readers need it); keep <mjml lang="en"> in '
            "the layout"
        )


@email_rule("table-role", 'Every layout <table> has role="presentation" (screen readers).')
def table_role(ctx: EmailContext) -> Messages:
    bad_tables = [t for t in _TABLE_TAG.findall(ctx.email.html) if not _ROLE_PRESENTATION.search(t)]
    if bad_tables:
        yield (
            f'{len(bad_tables)} <table> tag(s) lack role="presentation" (screen readers read layout tables '
            "as data); add it"
        )
