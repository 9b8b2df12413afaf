"""Content review use cases: lint every email, approve what lint lets through, write previews
(the gallery, or one email for one lead), and the console's review: every email, one email with
what changed since its approval, a reviewer's attested approval."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from threading import Lock
from typing import TYPE_CHECKING

from campaign.app.audiences import day_number

if TYPE_CHECKING:
    from campaign.accounts import Actor
    from campaign.approval import Approved, FileDiff
    from campaign.audiences import Audience
    from campaign.lint import Problem
    from campaign.preview import Card, WrittenGallery
    from campaign.settings import Settings
    from campaign.store import Store
    from campaign.store.accounts import AccountStore


def shown_path(path: Path) -> str:
    """A path as a coordinator types it: relative to the current folder when under it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def problem_row(settings: Settings, problem: Problem, audience_names: set[str]) -> dict:
    """A lint problem with the file to edit: a sequence-wide problem names the audience's folder."""
    if problem.template in audience_names:
        file = (
            f"{shown_path(settings.templates_dir / problem.template)}/*.md (the {problem.template} sequence)"
        )
    else:
        file = shown_path(settings.templates_dir / f"{problem.template}.md")
    return {
        "template": problem.template,
        "file": file,
        "rule": problem.rule,
        "severity": problem.severity,
        "message": problem.message,
    }


# ---- lint ---------------------------------------------------------------------------------------


@dataclass
class LintReport:
    problems: list[dict]  # template, file, rule, severity, message
    grades: dict[str, float]  # template -> Flesch-Kincaid grade of its text part
    emails: list[dict]  # per audience x step: day, grade, errors, warnings
    templates_dir: str  # as the coordinator types it

    @property
    def errors(self) -> int:
        return sum(1 for p in self.problems if p["severity"] == "error")

    @property
    def warnings(self) -> int:
        return len(self.problems) - self.errors

    @property
    def ok(self) -> bool:
        return self.errors == 0

    def as_dict(self) -> dict:
        return {
            "ok": self.ok,
            "errors": self.errors,
            "warnings": self.warnings,
            "problems": self.problems,
            "grades": {name: round(g, 2) for name, g in self.grades.items()},
        }


def lint_content(settings: Settings, audiences: list[Audience]) -> LintReport:
    """Lint every email of these audiences, rendered for the sample leads."""
    from campaign.lint import run_lint, sequences_of
    from campaign.render import Renderer

    sequences = sequences_of(audiences)
    problems, grades = run_lint(
        Renderer(settings.templates_dir, settings.clinic), sequences, public_url=settings.public_url
    )
    rows = [problem_row(settings, p, set(sequences)) for p in problems]
    emails = []
    for audience in audiences:
        for step in audience.steps:
            mine = [p for p in rows if p["template"] == step.template]
            emails.append(
                {
                    "audience": audience.name,
                    "step": step.key,
                    "day": day_number(step.delay),
                    "grade": grades.get(step.template),
                    "errors": sum(1 for p in mine if p["severity"] == "error"),
                    "warnings": sum(1 for p in mine if p["severity"] == "warning"),
                }
            )
    return LintReport(rows, grades, emails, shown_path(settings.templates_dir))


# ---- approve ------------------------------------------------------------------------------------


@dataclass
class ApprovalRequest:
    audience: str
    templates: list[str]  # what would be approved
    blocking: list[dict] = field(default_factory=list)  # lint errors in those (problem rows)


def approval_request(
    settings: Settings, audiences: list[Audience], audience: str, step: str | None
) -> ApprovalRequest:
    """What approving AUDIENCE (or one STEP of it) covers, and the lint errors that block it.
    Raises LookupError naming the audiences or steps there are."""
    from campaign.lint import lint_problems_for, run_lint, sequences_of
    from campaign.render import Renderer

    chosen = next((a for a in audiences if a.name == audience), None)
    if chosen is None:
        raise LookupError(f"no audience {audience!r}; audiences: {', '.join(a.name for a in audiences)}")
    if step is not None and chosen.step(step) is None:
        raise LookupError(
            f"audience {audience!r} has no step {step!r}; steps: {', '.join(st.key for st in chosen.steps)}"
        )
    templates = [st.template for st in chosen.steps if step is None or st.key == step]
    renderer = Renderer(settings.templates_dir, settings.clinic)
    # The whole sequence is linted: some rules (off-label, side effects) look at it together.
    problems, _ = run_lint(renderer, sequences_of([chosen]), public_url=settings.public_url)
    mine = lint_problems_for(problems, templates, audience=audience, whole_audience=step is None)
    blocking = [problem_row(settings, p, {audience}) for p in mine if p.severity == "error"]
    return ApprovalRequest(audience, templates, blocking)


def record_approvals(store: Store, settings: Settings, templates: list[str], by: str) -> list[Approved]:
    """Record `by`'s sign-off of each template's current content (see approval.approve)."""
    from campaign.approval import approve
    from campaign.render import Renderer

    return approve(store, Renderer(settings.templates_dir, settings.clinic), templates, by=by)


# ---- previews -----------------------------------------------------------------------------------

DEFAULT_GALLERY_DIR = Path("preview")


def write_previews(settings: Settings, folder: Path | None, store: Store | None) -> WrittenGallery:
    """The gallery of every email in `folder` (default preview/), with how many cards and
    drafts it wrote. Raises NotADirectoryError for a file, AudienceFileError for bad audiences."""
    from campaign.preview import write_gallery_counted

    folder = folder or DEFAULT_GALLERY_DIR
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"--out {folder} is a file; the gallery needs a folder")
    return write_gallery_counted(settings, folder, store=store)


@dataclass
class Recipient:
    first_name: str
    note: str | None = None  # e.g. the lead is in another sequence than the one previewed


def preview_recipient(
    store: Store | None, lead_email: str | None, audience: str, settings: Settings
) -> Recipient:
    """Who one email is rendered for: the sample lead, or a lead's first name from the database.
    Raises LookupError when there is no database or no such lead."""
    from campaign.preview import SAMPLE_FIRST_NAME

    if lead_email is None:
        return Recipient(SAMPLE_FIRST_NAME)
    if store is None:
        raise LookupError(f"no database at {settings.database_url}: import leads first")
    lead = store.lead_by_email(lead_email)
    if lead is None:
        raise LookupError(f"no lead with the address {lead_email}")
    enrollment = store.enrollment_for_lead(lead.id)
    note = None
    if enrollment and enrollment["audience"] != audience:
        note = f"this lead is in the {enrollment['audience']} sequence, not {audience}"
    return Recipient(lead.first_name, note)


@dataclass
class EmailPreview:
    card: Card
    path: Path  # the .html file written
    approvals_known: bool  # False without a database: every email is a draft


def write_email_preview(
    settings: Settings,
    store: Store | None,
    audience: str,
    step: str,
    *,
    first_name: str,
    out: Path | None,
) -> EmailPreview:
    """Render, lint and write one email to `out` (default preview-AUDIENCE-STEP.html). Raises
    LookupError for an unknown audience or step, AudienceFileError for bad audiences."""
    from campaign.preview import preview_one, single_html

    card = preview_one(settings, audience, step, first_name=first_name, store=store)
    target = out or Path(f"preview-{audience}-{step}.html")
    target.parent.mkdir(parents=True, exist_ok=True)
    approvals_known = store is not None
    target.write_text(
        single_html(card, settings.clinic.name, first_name=first_name, approvals_known=approvals_known),
        encoding="utf-8",
    )
    return EmailPreview(card, target, approvals_known)


# ---- the console's content review ---------------------------------------------------------------


def _find_step(audiences: list[Audience], audience: str, step: str):
    """The audience and step, or LookupError naming what there is."""
    chosen = next((a for a in audiences if a.name == audience), None)
    if chosen is None:
        raise LookupError(f"There is no audience {audience!r}.")
    found = chosen.step(step)
    if found is None:
        raise LookupError(f"The {audience} sequence has no email {step!r}.")
    return chosen, found


@dataclass
class ContentIndex:
    cards: list[Card]  # every email, rendered for the sample lead, linted, with its approval state
    audience_problems: dict[str, list[Problem]]  # sequence-wide lint problems, by audience

    @property
    def drafts(self) -> int:
        return sum(1 for card in self.cards if not card.state.approved)


# Linting every email takes a second or more (each is rendered for a dozen hostile names): the
# console keeps the last result and redoes it only when a content file or the audiences change.
_lint_memo: dict[tuple, tuple[list[Problem], dict[str, float]]] = {}
_lint_lock = Lock()


def linted(settings: Settings, audiences: list[Audience]) -> tuple[list[Problem], dict[str, float]]:
    """run_lint over every email of these audiences (problems, grades), remembered until a file
    under templates/ or clinic.yaml changes."""
    from campaign.app.overview import _content_fingerprint
    from campaign.lint import run_lint, sequences_of
    from campaign.render import Renderer

    sequences = sequences_of(audiences)
    key = (
        str(settings.templates_dir),
        settings.public_url,
        tuple((name, tuple(steps)) for name, steps in sequences.items()),
        _content_fingerprint(settings),
    )
    with _lint_lock:
        if key not in _lint_memo:
            _lint_memo.clear()
            renderer = Renderer(settings.templates_dir, settings.clinic)
            _lint_memo[key] = run_lint(renderer, sequences, public_url=settings.public_url)
        problems, grades = _lint_memo[key]
        return list(problems), dict(grades)


def _cards(store: Store, settings: Settings, audiences: list[Audience], linted_for: list[Audience]):
    """The cards of `audiences` with their own lint problems and grades (lint of `linted_for`)."""
    from campaign.preview import build_cards
    from campaign.render import Renderer

    renderer = Renderer(settings.templates_dir, settings.clinic)
    gallery = build_cards(renderer, audiences, public_url=settings.public_url, store=store, lint=False)
    problems, grades = linted(settings, linted_for)
    for card in gallery.cards:
        card.grade = grades.get(card.template)
        card.problems = [p for p in problems if p.template == card.template]
    return gallery.cards, problems


def content_index(store: Store, settings: Settings, audiences: list[Audience]) -> ContentIndex:
    """Every email of these audiences: subject, day, lint counts and approval state."""
    cards, problems = _cards(store, settings, audiences, audiences)
    return ContentIndex(cards, {a.name: [p for p in problems if p.template == a.name] for a in audiences})


@dataclass
class EmailReview:
    card: Card  # rendered for the sample lead, with this email's lint problems and approval state
    approved_at_hash: str | None  # the content hash of the approval compared with (None: none yet)
    changes: list[FileDiff] | None  # since that approval; None when never approved or text not kept

    @property
    def blocking(self) -> list[Problem]:
        """Lint errors: approval is refused until they are fixed."""
        return [p for p in self.card.problems if p.severity == "error"]


def email_review(
    store: Store, settings: Settings, audiences: list[Audience], audience: str, step: str
) -> EmailReview:
    """One email as a reviewer sees it: the card, and what changed since the approval it is
    compared with (the one of its current content, else the newest). Raises LookupError for an
    unknown audience or step."""
    from campaign.approval import approved_parts, changes_since, content_parts
    from campaign.render import Renderer, TemplateError

    chosen, _ = _find_step(audiences, audience, step)
    # Lint of every audience (remembered for the index too); this email's own problems only.
    cards, _ = _cards(store, settings, [chosen], audiences)
    card = next(c for c in cards if c.step == step)
    state = card.state
    record = None
    if state.approved:
        record = store.approval_record(card.template, state.content_hash)
    elif state.changed_since:
        record = store.approval_record(card.template)
    changes = None
    kept = approved_parts(record["source_text"]) if record else None
    if kept is not None:
        try:
            current = content_parts(Renderer(settings.templates_dir, settings.clinic), card.template)
        except (TemplateError, OSError):
            current = []
        changes = changes_since(kept, current)
    return EmailReview(card, record["content_hash"] if record else None, changes)


def email_frame_html(settings: Settings, audiences: list[Audience], audience: str, step: str) -> str:
    """The email's HTML as the console frames it: rendered for the sample lead, links opening
    in a new tab. Raises LookupError for an unknown email, TemplateError when it does not render."""
    from campaign.lint import sample_unsubscribe_url
    from campaign.preview import SAMPLE_FIRST_NAME
    from campaign.render import Renderer

    _, found = _find_step(audiences, audience, step)
    email = Renderer(settings.templates_dir, settings.clinic).render(
        found.template,
        first_name=SAMPLE_FIRST_NAME,
        unsubscribe_url=sample_unsubscribe_url(settings.public_url),
    )
    return email.html.replace("<head>", '<head><base target="_blank">', 1)


ATTESTATION = "I reviewed this email for medical accuracy."


class ApprovalRefused(ValueError):
    """An approval the rules refuse; the message says why and what to do."""


def approve(
    store: Store,
    accounts: AccountStore,
    settings: Settings,
    audiences: list[Audience],
    *,
    audience: str,
    step: str,
    reviewer: str,
    actor: Actor,
    attested: bool,
    reviewed_hash: str,
    now: datetime,
) -> Approved:
    """A reviewer's sign-off of one email from the console: they attest to the medical review,
    lint has no error in it, and the content is the one they saw (`reviewed_hash`). Records the
    reviewer's name, role, the time, the content hash and the source, and audits it. Raises
    LookupError for an unknown email, ApprovalRefused otherwise."""
    from campaign.accounts import audit
    from campaign.approval import ContentChanged
    from campaign.approval import approve as record
    from campaign.render import Renderer, TemplateError

    _find_step(audiences, audience, step)
    if not attested:
        raise ApprovalRefused(f"Tick the box “{ATTESTATION}” to approve.")
    request = approval_request(settings, audiences, audience, step)
    if request.blocking:
        raise ApprovalRefused(
            f"Lint found {len(request.blocking)} error(s) in this email; "
            "fix them in the template, then approve."
        )
    [template] = request.templates
    try:
        [done] = record(
            store,
            Renderer(settings.templates_dir, settings.clinic),
            [template],
            by=reviewer,
            now=now,
            role=actor.role,
            reviewed={template: reviewed_hash},
        )
    except ContentChanged as changed:
        raise ApprovalRefused(str(changed)) from None
    except (TemplateError, OSError) as exc:
        raise ApprovalRefused(f"The email cannot be read: {exc}") from None
    detail = f"content {done.content_hash[:16]}" + ("" if done.new else f"; already approved by {done.by}")
    audit(
        accounts, actor, "content.approve", now=now, object_type="template", object_id=template, detail=detail
    )
    return done
