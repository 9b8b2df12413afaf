"""Content lint: pure checks on rendered emails, so a bad template fails before anyone sends it.

Where things live:

- ``rules``: the rules for one rendered email (footer, links, privacy of subject, preheader
  and URLs, escaping of hostile input, promises, reading grades FK and SMOG, HTML size and
  structure);
- ``compliance_rules``: what one email says (benefit-without-risk: fair balance; reply-notice;
  glossary: technical words explained, no jargon);
- ``inbox_rules``: what a reader sees around the body (lock-screen: the inbox preview;
  one-primary-cta; text-heading-caps);
- ``sequence_rules``: the rules for one audience's emails together (off-label, side effects,
  intake);
- ``registry``: ``Rule`` (id, severity, one-line description, check), the contexts a check
  sees, ``Problem``; ``@email_rule`` / ``@sequence_rule`` register a new rule;
- ``runner``: ``lint_email``, ``lint_sequence``, ``lint_templates`` (every template rendered
  for every name in ``HOSTILE_NAMES``), ``run_lint`` (what the CLI and the preview call),
  ``rule_rows`` (`campaign lint --rules`);
- ``vocabulary`` (health, lock-screen, promise, benefit, glossary, jargon and URL words; hostile
  names), ``matching`` (whole-word terms, links, anchors, visible text, sentences),
  ``readability`` (the Flesch-Kincaid grade and SMOG index, footer cut).

Everything here is pure: no I/O beyond what ``Renderer.render`` does (reading templates).
Each ``Problem.message`` says what to change, not only what is wrong.
"""

from campaign.lint.matching import find_terms, term_pattern, text_links, url_health_terms
from campaign.lint.readability import FOOTER_RULE, MAX_GRADE, MAX_SMOG, body_text, reading_grade, smog_grade
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
    Grades,
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
    GLOSSARY,
    HOSTILE_NAMES,
    JARGON,
    LOCK_SCREEN_TERMS,
    NEUTRAL_NAME,
    URL_AUDIENCE_TERMS,
)

__all__ = [
    "DEFAULT_HEALTH_TERMS",
    "DEFAULT_PROMISE_TERMS",
    "FOOTER_RULE",
    "GLOSSARY",
    "HOSTILE_NAMES",
    "JARGON",
    "LOCK_SCREEN_TERMS",
    "LOCAL_HOSTS",
    "MAX_GRADE",
    "MAX_HTML_BYTES",
    "MAX_PREHEADER_CHARS",
    "MAX_SMOG",
    "MAX_SUBJECT_CHARS",
    "NEUTRAL_NAME",
    "OFF_LABEL_STEPS",
    "PLACEHOLDER_TOKEN",
    "RENDER_RULE",
    "URL_AUDIENCE_TERMS",
    "EmailContext",
    "Finding",
    "Grades",
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
    "smog_grade",
    "term_pattern",
    "text_links",
    "url_health_terms",
]
