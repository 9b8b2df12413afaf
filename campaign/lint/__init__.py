"""Content lint: pure checks on rendered emails, so a bad template fails before anyone sends it.

Where things live:

- ``rules``: the rules for one rendered email (footer, links, privacy of subject, preheader
  and URLs, escaping of hostile input, promises, reading grade, HTML size and structure);
- ``sequence_rules``: the rules for one audience's emails together (off-label, side effects,
  intake);
- ``registry``: ``Rule`` (id, severity, one-line description, check), the contexts a check
  sees, ``Problem``; ``@email_rule`` / ``@sequence_rule`` register a new rule;
- ``runner``: ``lint_email``, ``lint_sequence``, ``lint_templates`` (every template rendered
  for every name in ``HOSTILE_NAMES``), ``run_lint`` (what the CLI and the preview call),
  ``rule_rows`` (`campaign lint --rules`);
- ``vocabulary`` (health, promise and URL words; hostile names), ``matching`` (whole-word
  terms, links), ``readability`` (the Flesch-Kincaid grade, footer cut).

Everything here is pure: no I/O beyond what ``Renderer.render`` does (reading templates).
Each ``Problem.message`` says what to change, not only what is wrong.
"""

from campaign.lint.matching import find_terms, term_pattern, text_links, url_health_terms
from campaign.lint.readability import FOOTER_RULE, MAX_GRADE, body_text, reading_grade
from campaign.lint.registry import (
    EmailContext,
    Finding,
    Problem,
    Rule,
    SequenceContext,
    Severity,
    email_rule,
    registered,
    sequence_rule,
)
from campaign.lint.rules import LOCAL_HOSTS, MAX_HTML_BYTES, MAX_PREHEADER_CHARS, MAX_SUBJECT_CHARS
from campaign.lint.runner import (
    PLACEHOLDER_TOKEN,
    RENDER_RULE,
    errors,
    lint_email,
    lint_problems_for,
    lint_sequence,
    lint_templates,
    rule_rows,
    run_lint,
    sample_unsubscribe_url,
    sequences_of,
)
from campaign.lint.sequence_rules import OFF_LABEL_STEPS
from campaign.lint.vocabulary import (
    DEFAULT_HEALTH_TERMS,
    DEFAULT_PROMISE_TERMS,
    HOSTILE_NAMES,
    NEUTRAL_NAME,
    URL_AUDIENCE_TERMS,
)

__all__ = [
    "DEFAULT_HEALTH_TERMS",
    "DEFAULT_PROMISE_TERMS",
    "FOOTER_RULE",
    "HOSTILE_NAMES",
    "LOCAL_HOSTS",
    "MAX_GRADE",
    "MAX_HTML_BYTES",
    "MAX_PREHEADER_CHARS",
    "MAX_SUBJECT_CHARS",
    "NEUTRAL_NAME",
    "OFF_LABEL_STEPS",
    "PLACEHOLDER_TOKEN",
    "RENDER_RULE",
    "URL_AUDIENCE_TERMS",
    "EmailContext",
    "Finding",
    "Problem",
    "Rule",
    "SequenceContext",
    "Severity",
    "body_text",
    "email_rule",
    "errors",
    "find_terms",
    "lint_email",
    "lint_problems_for",
    "lint_sequence",
    "lint_templates",
    "reading_grade",
    "registered",
    "rule_rows",
    "run_lint",
    "sample_unsubscribe_url",
    "sequence_rule",
    "sequences_of",
    "term_pattern",
    "text_links",
    "url_health_terms",
]
