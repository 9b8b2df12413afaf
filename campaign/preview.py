"""Previews a coordinator reads: a static, self-contained HTML gallery of every email, and one
email for one lead.

The gallery (``index.html``) holds, per audience, one card per step: its day in the sequence,
subject and preheader, the email at phone (375 px) and desktop (640 px) widths side by side
(iframes whose ``srcdoc`` is the rendered HTML, so the one file works anywhere, offline), the
text part, the lint results (problems and Flesch-Kincaid grade) and the approval state (a DRAFT
badge when the current content is not approved). Each email is also written on its own as
``<audience>/<step>.html`` next to it.

Emails are rendered for a sample lead (first name "Sam") with an unsubscribe link of the real
shape and a placeholder token: a preview never carries a lead's real unsubscribe token.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from campaign.approval import ApprovalState, approval_state
from campaign.lint import run_lint, sample_unsubscribe_url, sequences_of

if TYPE_CHECKING:
    from campaign.audiences import Audience
    from campaign.lint import Problem
    from campaign.render import Renderer
    from campaign.settings import Settings
    from campaign.store import Store

SAMPLE_FIRST_NAME = "Sam"
# What the sample lead reported, per audience (anxiety_type, prior_treatments), so a preview shows
# the sentences a typical lead of that audience reads; lint renders with nothing reported.
SAMPLE_REPORTED: dict[str, tuple[str | None, int | None]] = {
    "gad": ("gad", None),
    "social": ("social", None),
    "treatment_resistant": ("treatment_resistant", 3),
    "general": ("unspecified", None),
}
PHONE_WIDTH = 375
DESKTOP_WIDTH = 640
NO_STORE_STATE = ApprovalState(False, None, None, False)


@dataclass
class Card:
    audience: str
    step: str
    template: str
    day: float
    path: Path  # the template's source file
    subject: str = ""
    preheader: str = ""
    html: str = ""
    text: str = ""
    error: str | None = None  # the render error, when it does not render
    grade: float | None = None
    problems: list[Problem] = field(default_factory=list)
    state: ApprovalState = NO_STORE_STATE

    @property
    def anchor(self) -> str:
        return f"{self.audience}-{self.step}"

    @property
    def errors(self) -> int:
        return sum(1 for p in self.problems if p.severity == "error")


@dataclass
class Gallery:
    audiences: list[Audience]
    cards: list[Card]
    audience_problems: dict[str, list[Problem]]  # sequence-wide problems, by audience
    first_name: str
    generated_at: datetime
    approvals_known: bool  # False when there was no database to read approvals from


def build_cards(
    renderer: Renderer,
    audiences: list[Audience],
    *,
    public_url: str,
    store: Store | None,
    first_name: str = SAMPLE_FIRST_NAME,
    lint: bool = True,
) -> Gallery:
    """Render, lint and look up the approval state of every step of these audiences."""
    from campaign.render import TemplateError

    unsubscribe_url = sample_unsubscribe_url(public_url)
    sequences = sequences_of(audiences)
    problems, grades = run_lint(renderer, sequences, public_url=public_url) if lint else ([], {})
    names = [name for steps in sequences.values() for _, name in steps]
    states = approval_state(store, renderer, names) if store is not None else {}
    cards = []
    for audience in audiences:
        for step in audience.steps:
            card = Card(
                audience=audience.name,
                step=step.key,
                template=step.template,
                day=step.delay.total_seconds() / 86400,
                path=renderer.templates_dir / f"{step.template}.md",
            )
            anxiety_type, prior_treatments = SAMPLE_REPORTED.get(audience.name, (None, None))
            try:
                email = renderer.render(
                    step.template,
                    first_name=first_name,
                    unsubscribe_url=unsubscribe_url,
                    anxiety_type=anxiety_type,
                    prior_treatments=prior_treatments,
                )
                card.subject, card.preheader, card.html, card.text = (
                    email.subject,
                    email.preheader,
                    email.html,
                    email.text,
                )
            except TemplateError as exc:
                card.error = str(exc)
            card.grade = grades.get(step.template)
            card.problems = [p for p in problems if p.template == step.template]
            card.state = states.get(step.template, NO_STORE_STATE)
            cards.append(card)
    audience_problems = {a.name: [p for p in problems if p.template == a.name] for a in audiences}
    return Gallery(audiences, cards, audience_problems, first_name, datetime.now(UTC), store is not None)


# ---- HTML ---------------------------------------------------------------------------------------

e = html.escape

CSS = """
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #1f2933; \
background: #f4f6f8; }
header.top { background: #12506b; color: #fff; padding: 16px 24px; }
header.top h1 { margin: 0 0 4px 0; font-size: 22px; }
header.top p { margin: 0; opacity: .9; }
nav { padding: 8px 24px; background: #fff; border-bottom: 1px solid #d9e2ec; }
nav a { margin-right: 16px; color: #12506b; }
main { padding: 8px 24px 48px; }
section.audience > h2 { margin: 24px 0 4px; font-size: 20px; }
section.audience > p.description { margin: 0 0 12px; color: #52606d; }
.card { background: #fff; border: 1px solid #d9e2ec; border-radius: 8px; margin: 16px 0; padding: 16px; }
.card header h3 { margin: 0; font-size: 18px; display: flex; gap: 12px; align-items: center; \
flex-wrap: wrap; }
.card .day { background: #e4ecf2; color: #12506b; border-radius: 4px; padding: 1px 8px; font-size: 14px; }
.card dl { display: grid; grid-template-columns: max-content 1fr; gap: 2px 12px; margin: 10px 0; }
.card dt { font-weight: 600; color: #52606d; }
.card dd { margin: 0; }
.badge { border-radius: 4px; padding: 1px 8px; font-size: 13px; font-weight: 700; letter-spacing: .03em; }
.badge.draft { background: #fde68a; color: #7c2d12; }
.badge.approved { background: #c6f6d5; color: #14532d; }
.badge.lint-error { background: #fecaca; color: #7f1d1d; }
.badge.lint-ok { background: #e4ecf2; color: #12506b; }
.views { display: flex; gap: 24px; flex-wrap: wrap; align-items: flex-start; margin: 12px 0; }
.views figure { margin: 0; }
.views figcaption { font-size: 13px; color: #52606d; margin-bottom: 4px; }
.views iframe { border: 1px solid #bcccdc; border-radius: 6px; background: #fff; height: 900px; \
display: block; }
iframe.phone { width: 377px; }
iframe.desktop { width: 642px; }
pre.text { white-space: pre-wrap; background: #f8fafc; border: 1px solid #d9e2ec; border-radius: 6px; \
padding: 12px; max-height: 480px; overflow: auto; font-size: 13px; }
ul.problems { margin: 6px 0; padding-left: 20px; }
ul.problems li.error { color: #7f1d1d; }
ul.problems li.warning { color: #7c4a03; }
.render-error { background: #fee2e2; border: 1px solid #fca5a5; padding: 12px; border-radius: 6px; }
details summary { cursor: pointer; color: #12506b; font-weight: 600; }
"""

# Grow each frame to its email's height (srcdoc frames with allow-same-origin are readable);
# without scripts the frames keep a fixed height and scroll.
SCRIPT = """
function fit(frame) {
  try { var d = frame.contentDocument; \
if (d && d.documentElement) frame.style.height = (d.documentElement.scrollHeight + 4) + 'px'; } catch (err) {}
}
document.querySelectorAll('iframe[srcdoc]').forEach(function (f) {
  f.addEventListener('load', function () { fit(f); });
  if (f.contentDocument && f.contentDocument.readyState === 'complete') fit(f);
});
"""


def _srcdoc(email_html: str) -> str:
    """The email for a preview frame: links open in a new tab instead of inside the frame."""
    return email_html.replace("<head>", '<head><base target="_blank">', 1)


def _frame(card: Card, kind: str, width: int) -> str:
    return (
        f"<figure><figcaption>{kind} ({width} px)</figcaption>"
        f'<iframe class="{kind}" title="{e(card.template)} at {width} px" loading="eager" '
        f'sandbox="allow-same-origin allow-popups allow-popups-to-escape-sandbox" '
        f'srcdoc="{e(_srcdoc(card.html), quote=True)}"></iframe></figure>'
    )


def _state_html(card: Card, approvals_known: bool) -> str:
    state = card.state
    if state.approved:
        return f'<span class="badge approved" title="{e(state.label)}">APPROVED</span>'
    title = state.label if approvals_known else "DRAFT: no database, so no approvals to read"
    return f'<span class="badge draft" title="{e(title)}">DRAFT</span>'


def _problems_html(problems: list[Problem]) -> str:
    items = "".join(
        f'<li class="{p.severity}"><strong>{p.severity}</strong> [{e(p.rule)}] {e(p.message)}</li>'
        for p in problems
    )
    return f'<ul class="problems">{items}</ul>'


def card_html(card: Card, *, approvals_known: bool = True, own_page_href: str | None = None) -> str:
    state = card.state
    if not approvals_known:
        approval_line = "not known (no database yet): DRAFT"
    else:
        approval_line = state.label
    if card.grade is not None:
        grade = f"{card.grade:.1f} (Flesch-Kincaid, text part without the footer; at most 8)"
    else:
        grade = "not measured"
    if card.errors:
        lint_badge = f'<span class="badge lint-error">{card.errors} lint error(s)</span>'
    else:
        lint_badge = '<span class="badge lint-ok">lint ok</span>'
    lint_body = _problems_html(card.problems) if card.problems else "<p>No problems found.</p>"
    day = f"{card.day:g}"
    parts = [
        f'<article class="card" id="{e(card.anchor)}" data-template="{e(card.template)}" '
        f'data-approved="{str(state.approved).lower()}" data-lint-errors="{card.errors}">',
        f'<header><h3><span class="day">Day {e(day)}</span> {e(card.step)} '
        f"{_state_html(card, approvals_known)} {lint_badge}</h3></header>",
        "<dl>",
        f'<dt>Subject</dt><dd class="subject">{e(card.subject) or "<em>none</em>"}</dd>',
        f'<dt>Preheader</dt><dd class="preheader">{e(card.preheader) or "<em>none</em>"}</dd>',
        f"<dt>Template</dt><dd><code>{e(str(card.path))}</code></dd>",
        f'<dt>Approval</dt><dd class="approval">{e(approval_line)}</dd>',
        f'<dt>Reading grade</dt><dd class="grade">{e(grade)}</dd>',
        "</dl>",
        f'<div class="lint"><strong>Lint</strong>{lint_body}</div>',
    ]
    if card.error:
        parts.append(f'<div class="render-error"><strong>Does not render:</strong> {e(card.error)}</div>')
    else:
        parts.append(
            f'<div class="views">{_frame(card, "phone", PHONE_WIDTH)}'
            f"{_frame(card, 'desktop', DESKTOP_WIDTH)}</div>"
        )
        parts.append(f'<details><summary>Text part</summary><pre class="text">{e(card.text)}</pre></details>')
    if own_page_href:
        parts.append(f'<p><a href="{e(own_page_href)}">Open this email on its own</a></p>')
    parts.append("</article>")
    return "\n".join(parts)


def _page(title: str, header: str, body: str) -> str:
    return (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{e(title)}</title><style>{CSS}</style></head><body>"
        f'<header class="top">{header}</header>{body}<script>{SCRIPT}</script></body></html>\n'
    )


def gallery_html(gallery: Gallery, clinic_name: str) -> str:
    cards = gallery.cards
    drafts = sum(1 for c in cards if not c.state.approved)
    lint_errors = sum(c.errors for c in cards) + sum(
        1 for ps in gallery.audience_problems.values() for p in ps if p.severity == "error"
    )
    header = (
        f"<h1>{e(clinic_name)}: email previews</h1>"
        f"<p>{len(cards)} emails in {len(gallery.audiences)} sequences · {drafts} DRAFT (not approved) · "
        f"{lint_errors} lint error(s) · rendered for a sample lead named {e(gallery.first_name)!s} · "
        f"{gallery.generated_at:%Y-%m-%d %H:%M} UTC</p>"
    )
    nav = "<nav>" + "".join(f'<a href="#{e(a.name)}">{e(a.name)}</a>' for a in gallery.audiences) + "</nav>"
    sections = []
    for audience in gallery.audiences:
        seq_problems = gallery.audience_problems.get(audience.name, [])
        seq = (
            '<div class="sequence-lint"><strong>Sequence-wide lint</strong>'
            f"{_problems_html(seq_problems)}</div>"
            if seq_problems
            else ""
        )
        body = "\n".join(
            card_html(c, approvals_known=gallery.approvals_known, own_page_href=f"{c.audience}/{c.step}.html")
            for c in cards
            if c.audience == audience.name
        )
        sections.append(
            f'<section class="audience" id="{e(audience.name)}"><h2>{e(audience.name)}</h2>'
            f'<p class="description">{e(audience.description)}</p>{seq}{body}</section>'
        )
    return _page(f"{clinic_name}: email previews", header, nav + "<main>" + "\n".join(sections) + "</main>")


def single_html(card: Card, clinic_name: str, *, first_name: str, approvals_known: bool) -> str:
    who = first_name if first_name.strip() else "(no first name)"
    header = (
        f"<h1>{e(clinic_name)}: {e(card.template)}</h1>"
        f"<p>Rendered for first name {e(who)} · day {card.day:g} of the {e(card.audience)} sequence</p>"
    )
    return _page(
        f"{card.template}: preview",
        header,
        "<main>" + card_html(card, approvals_known=approvals_known) + "</main>",
    )


# ---- writing ------------------------------------------------------------------------------------


def _renderer_and_audiences(settings: Settings):
    from campaign.audiences import load_audiences
    from campaign.render import Renderer

    return Renderer(settings.templates_dir, settings.clinic), load_audiences(settings.audiences_dir)


@dataclass(frozen=True)
class WrittenGallery:
    index: Path
    cards: int  # emails written, one page each and one card each in the index
    drafts: int  # of those, not approved in their current form


def write_gallery(settings: Settings, out_dir: Path, *, store: Store | None = None) -> Path:
    """Write the gallery (see write_gallery_counted); returns the index path."""
    return write_gallery_counted(settings, out_dir, store=store).index


def write_gallery_counted(settings: Settings, out_dir: Path, *, store: Store | None = None) -> WrittenGallery:
    """Write ``out_dir/index.html`` (self-contained) and ``out_dir/<audience>/<step>.html``.
    ``store`` gives the approval states; without one every email shows DRAFT. Raises
    AudienceFileError when the audience files are invalid."""
    renderer, audiences = _renderer_and_audiences(settings)
    gallery = build_cards(renderer, audiences, public_url=settings.public_url, store=store)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for card in gallery.cards:
        page = out_dir / card.audience / f"{card.step}.html"
        page.parent.mkdir(parents=True, exist_ok=True)
        page.write_text(
            single_html(
                card,
                settings.clinic.name,
                first_name=gallery.first_name,
                approvals_known=gallery.approvals_known,
            ),
            encoding="utf-8",
        )
    index = out_dir / "index.html"
    index.write_text(gallery_html(gallery, settings.clinic.name), encoding="utf-8")
    drafts = sum(1 for card in gallery.cards if not card.state.approved)
    return WrittenGallery(index, len(gallery.cards), drafts)


def preview_one(
    settings: Settings,
    audience: str,
    step: str,
    *,
    first_name: str = SAMPLE_FIRST_NAME,
    store: Store | None = None,
) -> Card:
    """One email of one audience for one first name, linted and with its approval state.
    Raises LookupError naming the audiences or steps there are."""
    renderer, audiences = _renderer_and_audiences(settings)
    found = next((a for a in audiences if a.name == audience), None)
    if found is None:
        raise LookupError(f"no audience {audience!r}; audiences: {', '.join(a.name for a in audiences)}")
    if found.step(step) is None:
        raise LookupError(
            f"audience {audience!r} has no step {step!r}; steps: {', '.join(s.key for s in found.steps)}"
        )
    from campaign.lint import lint_problems_for

    gallery = build_cards(
        renderer, [found], public_url=settings.public_url, store=store, first_name=first_name
    )
    card = next(c for c in gallery.cards if c.step == step)
    # Sequence-wide problems are about the whole audience; keep only this email's.
    card.problems = lint_problems_for(card.problems, [card.template], audience=audience, whole_audience=False)
    return card
