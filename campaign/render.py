"""Rendering: the one Jinja environment, and RenderedEmail from (lead, step). Pure but for
reading template files, which are loaded once per Renderer.

An email is written once, as Markdown with YAML front matter
(``templates/<audience>/<step>.md``), and both parts come from that one source, so the HTML
and the text part can never drift apart:

- text part: the Markdown rendered by Jinja with the lead's values as given, links spelled out;
- HTML part: the same Markdown rendered with the lead's values Markdown-escaped, turned into HTML
  by markdown-it with raw HTML disabled (so ``<script>`` in a name is text, never markup), put
  into the MJML layout (compiled once by mrml) and CSS-inlined.

Text shared by many emails (the safety summary, the booking text ...) is written once in
``templates/partials/*.md`` and pulled in with ``{% include "partials/<name>.md" %}``. An email's
source knows which partials it uses (``EmailSource.includes``), so the approval hash covers them.

The lead's reported ``anxiety_type`` and ``prior_treatments`` reach the body (and only the body)
so a template can say only what the lead told us; subjects, preheaders and buttons never see them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import css_inline
import jinja2
import jinja2.meta
import mrml
import yaml
from markdown_it import MarkdownIt

from campaign.models import RenderedEmail
from campaign.settings import Clinic

FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)\n---\s*\n(.*)\Z", re.S)
REQUIRED_FIELDS = ("subject", "preheader")
# CommonMark lets any ASCII punctuation be backslash-escaped.
_MD_SPECIAL = re.compile(r"([!-/:-@\[-`{-~])")
_MD_UNESCAPE = re.compile(r"\\([!-/:-@\[-`{-~])")
_MD_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")

# Styles for the Markdown body, which MJML never sees; css-inline moves them onto the elements.
BODY_CSS = """
.body p { margin: 0 0 16px 0; }
.body h2 { font-size: 21px; line-height: 1.3; margin: 8px 0 12px 0; color: #12506b; }
.body ul, .body ol { margin: 0 0 16px 0; padding-left: 22px; }
.body li { margin: 0 0 8px 0; }
.body a { color: #12506b; text-decoration: underline; }
"""


class TemplateError(ValueError):
    """A template that cannot be loaded or rendered; the message names the file and the fix."""


def md_escape(value: str) -> str:
    return _MD_SPECIAL.sub(r"\\\1", value)


# Words a title keeps in lower case unless they open it (Chicago-style title case).
_MINOR_WORDS = frozenset(
    ("a", "an", "and", "as", "at", "but", "by", "for", "from", "if", "in", "into", "nor", "of", "off")
    + ("on", "or", "the", "to", "up", "via", "vs", "with")
)


def title_case(heading: str) -> str:
    """'step 1: what you can ask for' -> 'Step 1: What You Can Ask For'. Small words stay lower
    case inside a title, but not first, last, or after a colon or a full stop; words that already
    hold a capital (GAD-7, TMS, IV) stay as written; a leading quote mark is skipped."""
    words = heading.split(" ")
    out = []
    for i, word in enumerate(words):
        opens = i == 0 or i == len(words) - 1 or words[i - 1].endswith((":", ".", "?", "!"))
        letters = word.lstrip("\"'(\u201c\u2018")
        lead = word[: len(word) - len(letters)]
        if (letters.lower().strip(",;") in _MINOR_WORDS and not opens) or not letters[:1].islower():
            out.append(word)
        else:
            out.append(lead + letters[:1].upper() + letters[1:])
    return " ".join(out)


def markdown_to_text(markdown: str) -> str:
    """A readable text part: links spelled out, emphasis markers dropped, headings in title case
    on their own line (ALL CAPS reads as shouting and is harder to read)."""
    text = _MD_LINK.sub(
        lambda m: m.group(1) if m.group(1) == m.group(2) else f"{m.group(1)} ({m.group(2)})", markdown
    )
    text = re.sub(r"(\*\*|__)(.+?)\1", r"\2", text)
    text = re.sub(r"^#+\s*(.+)$", lambda m: title_case(m.group(1).strip()), text, flags=re.M)
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"


@dataclass(frozen=True)
class EmailSource:
    """One email's template, parsed: front matter fields and the Markdown body."""

    path: Path
    name: str  # e.g. "gad/welcome"
    subject: jinja2.Template
    preheader: jinja2.Template
    cta_text: jinja2.Template | None
    cta_url: jinja2.Template | None
    body: jinja2.Template
    source: str  # raw file text, for approval hashes
    includes: tuple[str, ...] = ()  # partials the body includes, directly or through another partial


def lead_context(first_name: str) -> dict:
    """The lead's values a subject, preheader or button may use: the name only, no email."""
    first_name = first_name.strip()
    return {"first_name": first_name, "greeting_name": first_name or "there"}


def body_context(anxiety_type: str | None, prior_treatments: int | None) -> dict:
    """What the lead reported, for the body alone, so a sentence like "You told us ..." can be
    conditioned on it. Either may be None (not reported, or no lead behind the render); an
    anxiety type is one of the fixed values ``gad``, ``social``, ``treatment_resistant``,
    ``unspecified`` and is never printed, only branched on."""
    kind = getattr(anxiety_type, "value", anxiety_type)  # an AnxietyType enum or its value
    return {"anxiety_type": kind or None, "prior_treatments": prior_treatments}


class Renderer:
    """Owns the Jinja environment and the compiled layout for one templates folder."""

    def __init__(self, templates_dir: Path, clinic: Clinic):
        self.templates_dir = Path(templates_dir)
        self.clinic = clinic
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(self.templates_dir)),
            undefined=jinja2.StrictUndefined,
            autoescape=jinja2.select_autoescape(
                enabled_extensions=("html", "mjml"), default_for_string=False
            ),
            keep_trailing_newline=True,
        )
        self._sources: dict[str, EmailSource] = {}
        self._md = MarkdownIt("commonmark", {"html": False, "typographer": False})

    @cached_property
    def html_layout(self) -> jinja2.Template:
        path = self.templates_dir / "layout.mjml"
        compiled = mrml.to_html(path.read_text(encoding="utf-8")).content
        compiled = compiled.replace("</head>", f"<style>{BODY_CSS}</style></head>", 1)
        # Autoescaped: clinic values and URLs are escaped; body_html arrives as Markup.
        return jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=True).from_string(compiled)

    @cached_property
    def text_layout(self) -> jinja2.Template:
        return self.env.get_template("layout.txt")

    @cached_property
    def _inliner(self) -> css_inline.CSSInliner:
        return css_inline.CSSInliner(keep_style_tags=True)

    def source(self, name: str) -> EmailSource:
        """Load ``templates/<name>.md`` once. Raises TemplateError naming the file."""
        if name not in self._sources:
            self._sources[name] = self._load(name)
        return self._sources[name]

    def _load(self, name: str) -> EmailSource:
        path = self.templates_dir / f"{name}.md"
        try:
            raw = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise TemplateError(
                f"{path}: template not found; create it or fix the step's 'template' field"
            ) from None
        match = FRONT_MATTER.match(raw)
        if not match:
            raise TemplateError(
                f"{path}: must start with a '---' front matter block holding subject and preheader"
            )
        try:
            meta = yaml.safe_load(match.group(1)) or {}
        except yaml.YAMLError as exc:
            raise TemplateError(f"{path}: front matter is not valid YAML: {exc}") from None
        missing = [field for field in REQUIRED_FIELDS if not str(meta.get(field) or "").strip()]
        if missing:
            raise TemplateError(
                f"{path}: front matter lacks {', '.join(missing)}; add a line like 'subject: ...'"
            )
        if bool(meta.get("cta_text")) != bool(meta.get("cta_url")):
            raise TemplateError(f"{path}: give both cta_text and cta_url, or neither")
        unknown = set(meta) - {"subject", "preheader", "cta_text", "cta_url"}
        if unknown:
            raise TemplateError(
                f"{path}: unknown front matter field(s) {sorted(unknown)}; allowed: subject, preheader, "
                "cta_text, cta_url"
            )
        try:
            compile_ = self.env.from_string
            includes = self._includes(match.group(2), path)
            return EmailSource(
                path=path,
                name=name,
                subject=compile_(str(meta["subject"])),
                preheader=compile_(str(meta["preheader"])),
                cta_text=compile_(str(meta["cta_text"])) if meta.get("cta_text") else None,
                cta_url=compile_(str(meta["cta_url"])) if meta.get("cta_url") else None,
                body=compile_(match.group(2)),
                source=raw,
                includes=includes,
            )
        except jinja2.TemplateSyntaxError as exc:
            where = exc.filename or path
            raise TemplateError(
                f"{where}: Jinja syntax error (line {exc.lineno} of its section): {exc.message}"
            ) from None

    def _includes(self, body: str, path: Path) -> tuple[str, ...]:
        """Every partial the body includes, followed through partials that include others.
        Only literal names: an approval hash must know each file an email is made from."""
        found: list[str] = []
        pending = [(body, path)]
        while pending:
            text, where = pending.pop()
            for name in jinja2.meta.find_referenced_templates(self.env.parse(text, filename=str(where))):
                if name is None:
                    raise TemplateError(
                        f"{where}: include a partial by its literal name, e.g. "
                        '{% include "partials/safety.md" %}'
                    )
                if name in found:
                    continue
                try:
                    partial_source = self.partial_source(name)
                except FileNotFoundError:
                    raise TemplateError(
                        f"{where}: includes {name!r}, which is not in {self.templates_dir}; create it or "
                        "fix the name"
                    ) from None
                found.append(name)
                pending.append((partial_source, self.templates_dir / name))
        return tuple(sorted(found))

    def partial_source(self, name: str) -> str:
        """The text of an included file, e.g. ``partials/safety.md``."""
        return (self.templates_dir / name).read_text(encoding="utf-8")

    def render(
        self,
        name: str,
        *,
        first_name: str,
        unsubscribe_url: str,
        anxiety_type: str | None = None,
        prior_treatments: int | None = None,
        review_credit: str | None = None,
        links: dict[str, str] | None = None,
    ) -> RenderedEmail:
        """One email for one lead. ``review_credit`` is the footer's "Medically reviewed by ..."
        line (campaign.approval.review_credit) when the current content is approved; it is not
        part of the template, so it never changes the approval hash. ``links``: more URLs the
        template may use (the confirmation email's ``confirm_url``)."""
        src = self.source(name)
        base = {
            "clinic": self.clinic,
            "unsubscribe_url": unsubscribe_url,
            "booking_url": self.clinic.booking_url,
            **(links or {}),
        }
        plain = {**base, **lead_context(first_name)}
        reported = body_context(anxiety_type, prior_treatments)
        escaped = {**base, **{k: md_escape(v) for k, v in lead_context(first_name).items()}, **reported}
        try:
            subject = " ".join(src.subject.render(plain).split())
            preheader = " ".join(src.preheader.render(plain).split())
            cta_text = src.cta_text.render(plain).strip() if src.cta_text else ""
            cta_url = src.cta_url.render(plain).strip() if src.cta_url else ""
            markdown = src.body.render(escaped)
            # Links are spelled out from the escaped Markdown, so a name shaped like a link
            # stays text; then the escapes come off.
            body_text = _MD_UNESCAPE.sub(r"\1", markdown_to_text(markdown))
            body_html = self._md.render(markdown)
        except jinja2.UndefinedError as exc:
            raise TemplateError(
                f"{src.path}: {exc.message}; use only first_name, greeting_name, clinic.*, booking_url, "
                "unsubscribe_url (and, in the body only, anxiety_type and prior_treatments)"
            ) from None
        except jinja2.TemplateError as exc:  # e.g. a partial deleted after the source was loaded
            raise TemplateError(f"{src.path}: {type(exc).__name__}: {exc}") from None
        shared = {
            "clinic": self.clinic,
            "subject": subject,
            "preheader": preheader,
            "cta_text": cta_text,
            "cta_url": cta_url,
            "unsubscribe_url": unsubscribe_url,
            "review_credit": review_credit or "",
        }
        html = self.html_layout.render(**shared, body_html=jinja2.utils.markupsafe.Markup(body_html))
        text = self.text_layout.render(**shared, body_text=body_text)
        return RenderedEmail(subject=subject, preheader=preheader, html=self._inliner.inline(html), text=text)
