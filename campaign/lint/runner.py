"""Running the registered rules: over one email, one sequence, and every audience x step
rendered for sample leads (a neutral name and every name in ``HOSTILE_NAMES``).

``run_lint`` is what the CLI (lint, approve) and the preview call: the sample unsubscribe link,
plain http allowed for it only on a local host.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from typing import TYPE_CHECKING

# Importing the rule modules registers their rules (in this order: `campaign lint --rules`).
from campaign.lint import compliance_rules as _compliance_rules  # noqa: F401
from campaign.lint import inbox_rules as _inbox_rules  # noqa: F401
from campaign.lint import rules as _email_rules  # noqa: F401
from campaign.lint import sequence_rules as _sequence_rules  # noqa: F401
from campaign.lint.matching import short
from campaign.lint.readability import MAX_GRADE, MAX_SMOG, reading_grade, smog_grade
from campaign.lint.registry import EmailContext, Problem, Rule, SequenceContext, register, registered
from campaign.lint.rules import LOCAL_HOSTS
from campaign.lint.vocabulary import DEFAULT_HEALTH_TERMS, DEFAULT_PROMISE_TERMS, HOSTILE_NAMES, NEUTRAL_NAME
from campaign.models import RenderedEmail
from campaign.settings import Clinic

if TYPE_CHECKING:
    from campaign.audiences import Audience
    from campaign.render import Renderer

PLACEHOLDER_TOKEN = "preview-placeholder-token"

RENDER_RULE = register(
    Rule("render", "error", "Every template renders for every sample name (front matter, Jinja).", "render")
)


class Grades(dict[str, float]):
    """The reading grades lint measured, per template: the mapping itself is the Flesch-Kincaid
    grade (as before, so callers that print it keep working); ``smog`` holds the SMOG index
    beside it. Each is the highest seen over the sample names."""

    def __init__(self) -> None:
        super().__init__()
        self.smog: dict[str, float] = {}

    def add(self, template: str, text: str) -> None:
        self[template] = max(self.get(template, float("-inf")), reading_grade(text))
        self.smog[template] = max(self.smog.get(template, float("-inf")), smog_grade(text))

    def rows(self) -> dict[str, dict[str, float]]:
        """{template: {"fk": ..., "smog": ...}}, rounded to 2 places: for JSON output."""
        return {name: {"fk": round(fk, 2), "smog": round(self.smog[name], 2)} for name, fk in self.items()}


def rule_rows() -> list[dict[str, str]]:
    """One row per registered rule, in registration order: what `campaign lint --rules` prints."""
    return [
        {"id": r.id, "severity": r.severity, "scope": r.scope, "description": r.description}
        for r in registered()
    ]


def errors(problems: Iterable[Problem]) -> list[Problem]:
    return [p for p in problems if p.severity == "error"]


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
    max_smog: float = MAX_SMOG,
) -> list[Problem]:
    """Run every email rule on one rendered email. ``hostile_inputs`` are the lead values (first
    names) that went into this render; ``unsubscribe_url`` is the one it was rendered with (if
    known); ``allow_http_hosts`` (e.g. {"localhost", "127.0.0.1"}) lets a local development
    unsubscribe link be plain http, and nothing else."""
    context = EmailContext(
        email,
        template,
        clinic,
        hostile_inputs=hostile_inputs,
        health_terms=tuple(health_terms),
        promise_terms=tuple(promise_terms),
        unsubscribe_url=unsubscribe_url,
        allow_http_hosts=allow_http_hosts,
        max_grade=max_grade,
        max_smog=max_smog,
    )
    return [problem for rule in registered("email") for problem in rule.apply(context, template)]


def lint_sequence(emails: Sequence[tuple[str, RenderedEmail]], *, audience: str) -> list[Problem]:
    """Run every sequence rule. ``emails`` are (step key or template name, email) in send
    order; a name like "gad/ketamine" counts as step "ketamine"."""
    context = SequenceContext(audience, emails)
    return [problem for rule in registered("sequence") for problem in rule.apply(context, audience)]


def lint_templates(
    renderer: Renderer,
    sequences: dict[str, list[tuple[str, str]]],
    *,
    unsubscribe_url: str,
    hostile_names: Sequence[str] = HOSTILE_NAMES,
    allow_http_hosts: Collection[str] = (),
    health_terms: Iterable[str] = DEFAULT_HEALTH_TERMS,
    promise_terms: Iterable[str] = DEFAULT_PROMISE_TERMS,
) -> tuple[list[Problem], Grades]:
    """Render every template of every sequence for each hostile name and lint it.

    ``sequences`` maps audience -> [(step key, template name), ...] in send order. Returns the
    problems (deduplicated, errors first) and the highest reading grades seen per template
    (Flesch-Kincaid, with SMOG beside it in ``.smog``)."""
    from campaign.render import TemplateError

    health_terms, promise_terms = tuple(health_terms), tuple(promise_terms)
    problems: list[Problem] = []
    grades = Grades()
    for audience, steps in sequences.items():
        neutral: list[tuple[str, RenderedEmail]] = []
        for step, name in steps:
            for first_name in (NEUTRAL_NAME, *hostile_names):
                try:
                    email = renderer.render(name, first_name=first_name, unsubscribe_url=unsubscribe_url)
                except TemplateError as exc:
                    problems.append(Problem(name, RENDER_RULE.id, f"{exc} (first_name={short(first_name)})"))
                    break  # one render error per template is enough
                except Exception as exc:
                    problems.append(
                        Problem(
                            name,
                            RENDER_RULE.id,
                            f"rendering with first_name={short(first_name)} raised {type(exc).__name__}: "
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
                grades.add(name, email.text)
                if first_name == NEUTRAL_NAME:
                    neutral.append((step, email))
        problems.extend(lint_sequence(neutral, audience=audience))
    unique = list(dict.fromkeys(problems))
    unique.sort(key=lambda p: (p.severity != "error", p.template, p.rule))
    return unique, grades


# ---- what lint, approve and preview share ---------------------------------------------------------


def sequences_of(audiences: Iterable[Audience]) -> dict[str, list[tuple[str, str]]]:
    """{audience: [(step key, template name), ...]} in send order: what lint_templates takes."""
    return {a.name: [(s.key, s.template) for s in a.steps] for a in audiences}


def sample_unsubscribe_url(public_url: str) -> str:
    """An unsubscribe link for previews and lint: the real shape, a placeholder token (never a
    lead's real token, so a preview file can be shared without unsubscribing anyone)."""
    return f"{public_url.rstrip('/')}/unsubscribe/{PLACEHOLDER_TOKEN}"


def run_lint(
    renderer: Renderer, sequences: dict[str, list[tuple[str, str]]], *, public_url: str
) -> tuple[list[Problem], Grades]:
    """lint_templates with the sample unsubscribe link; plain http is allowed for it only on a
    local host (the development default http://localhost:8000)."""
    return lint_templates(
        renderer, sequences, unsubscribe_url=sample_unsubscribe_url(public_url), allow_http_hosts=LOCAL_HOSTS
    )


def lint_problems_for(
    problems: Iterable[Problem], template_names: Iterable[str], *, audience: str, whole_audience: bool
) -> list[Problem]:
    """The problems that concern these templates; sequence-wide problems (named after the
    audience) count only when the whole audience is being approved."""
    names = set(template_names)
    return [p for p in problems if p.template in names or (whole_audience and p.template == audience)]
