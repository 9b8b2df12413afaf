"""The rule registry: each lint rule is an id, a severity, a one-line description and a check.

A check is a plain function of a context (``EmailContext`` for one email, ``SequenceContext``
for one audience's emails together) that yields messages: a ``str`` (reported with the rule's
own severity, on the email's template or the audience) or a ``Finding`` (to report another
severity or template). Register a new rule with ``@email_rule`` or ``@sequence_rule``; nothing
else needs to change (and tests/test_lint.py insists on a seeded bad template for it).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

from campaign.lint.matching import HtmlScan, scan_html, sentence_blocks, text_links
from campaign.lint.readability import MAX_GRADE, MAX_SMOG, body_text
from campaign.lint.vocabulary import DEFAULT_HEALTH_TERMS, DEFAULT_PROMISE_TERMS
from campaign.models import RenderedEmail
from campaign.settings import Clinic

Severity = Literal["error", "warning"]
Scope = Literal["email", "sequence", "render"]


@dataclass(frozen=True)
class Problem:
    template: str  # e.g. "gad/welcome", or an audience for sequence-wide problems
    rule: str  # a stable id, e.g. "health-in-subject"
    message: str  # what is wrong and what to change
    severity: Severity = "error"

    def __str__(self) -> str:
        return f"{self.severity.upper()} {self.template} [{self.rule}] {self.message}"


@dataclass(frozen=True)
class Finding:
    """A message from a check that differs from its rule's defaults."""

    message: str
    severity: Severity | None = None  # None: the rule's severity
    template: str | None = None  # None: the email's template (or the audience, for sequence rules)


# ---- what a check sees --------------------------------------------------------------------------


@dataclass
class EmailContext:
    """One rendered email and what it was rendered with. ``hostile_inputs`` are the lead values
    (first names) that went into the render; ``allow_http_hosts`` lets a local development
    unsubscribe link be plain http, and nothing else."""

    email: RenderedEmail
    template: str
    clinic: Clinic
    hostile_inputs: Sequence[str] = ()
    health_terms: tuple[str, ...] = DEFAULT_HEALTH_TERMS
    promise_terms: tuple[str, ...] = DEFAULT_PROMISE_TERMS
    unsubscribe_url: str | None = None
    allow_http_hosts: Collection[str] = ()
    max_grade: float = MAX_GRADE
    max_smog: float = MAX_SMOG

    @property
    def parts(self) -> tuple[tuple[str, str], ...]:
        """(name for messages, content) of both bodies."""
        return (("HTML", self.email.html), ("text", self.email.text))

    @cached_property
    def html_scan(self) -> HtmlScan:
        return scan_html(self.email.html)

    @cached_property
    def body(self) -> str:
        """The text part without the shared footer: what the email itself says."""
        return body_text(self.email.text)

    @cached_property
    def body_blocks(self) -> list[list[str]]:
        """The body's sentences, by paragraph, list item or heading."""
        return sentence_blocks(self.body)

    @property
    def body_sentences(self) -> list[str]:
        return [sentence for block in self.body_blocks for sentence in block]

    @cached_property
    def text_links(self) -> list[str]:
        return text_links(self.email.text)

    @cached_property
    def all_urls(self) -> list[str]:
        """Every link and resource URL of both parts, each once, in order."""
        scan = self.html_scan
        return list(dict.fromkeys([*scan.hrefs, *scan.srcs, *self.text_links]))

    def is_unsubscribe(self, url: str) -> bool:
        return (self.unsubscribe_url is not None and url == self.unsubscribe_url) or "/unsubscribe/" in url


@dataclass(frozen=True)
class SequenceEmail:
    step: str  # "ketamine"
    key: str  # what the caller named it: a step key or a template name such as "gad/ketamine"
    body: str  # the text part without the footer


@dataclass
class SequenceContext:
    """One audience's emails in send order, as (step key or template name, email)."""

    audience: str
    emails: Sequence[tuple[str, RenderedEmail]]

    @cached_property
    def bodies(self) -> list[SequenceEmail]:
        return [
            SequenceEmail(key.rsplit("/", 1)[-1], key, body_text(email.text)) for key, email in self.emails
        ]

    def template_of(self, item: SequenceEmail) -> str:
        return item.key if "/" in item.key else f"{self.audience}/{item.key}"


# ---- the registry --------------------------------------------------------------------------------

Messages = Iterator["str | Finding"]  # what a check yields
Check = Callable[..., Iterable["str | Finding"]]


@dataclass(frozen=True)
class Rule:
    id: str
    severity: Severity  # of its findings unless a Finding says otherwise
    description: str  # one line: what a passing email does
    scope: Scope
    check: Check | None = None  # None: reported by the runner itself (render failures)

    def apply(self, context: EmailContext | SequenceContext, template: str) -> list[Problem]:
        """Run the check; ``template`` names the problems that do not name their own."""
        if self.check is None:
            return []
        problems = []
        for found in self.check(context):
            finding = found if isinstance(found, Finding) else Finding(found)
            problems.append(
                Problem(
                    finding.template or template,
                    self.id,
                    finding.message,
                    finding.severity or self.severity,
                )
            )
        return problems


_RULES: dict[str, Rule] = {}


def register(rule: Rule) -> Rule:
    if rule.id in _RULES:
        raise ValueError(f"lint rule {rule.id!r} is registered twice")
    _RULES[rule.id] = rule
    return rule


def email_rule(rule_id: str, description: str, severity: Severity = "error") -> Callable[[Check], Check]:
    """Register the decorated function as a check of one rendered email."""

    def decorate(check: Check) -> Check:
        register(Rule(rule_id, severity, description, "email", check))
        return check

    return decorate


def sequence_rule(rule_id: str, description: str, severity: Severity = "error") -> Callable[[Check], Check]:
    """Register the decorated function as a check of one audience's emails together."""

    def decorate(check: Check) -> Check:
        register(Rule(rule_id, severity, description, "sequence", check))
        return check

    return decorate


def registered(scope: Scope | None = None) -> list[Rule]:
    """The registered rules (of one scope, or all), in registration order."""
    return [rule for rule in _RULES.values() if scope is None or rule.scope == scope]
