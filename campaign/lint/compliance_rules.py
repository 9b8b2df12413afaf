"""The rules a compliance reviewer applies to what one email says: a stated benefit of ketamine
comes with its risks (benefit-without-risk, FDA-style fair balance), an invitation to reply says
how replies are handled (reply-notice), and technical words are explained or dropped (glossary).

All of them read the text part without the footer (``EmailContext.body``): both parts come from
one source, and the shared footer must not satisfy a rule meant for the email itself.
"""

from __future__ import annotations

import re

from campaign.lint.matching import REPLY_INVITATION, first_match, is_safety_link, short, term_pattern
from campaign.lint.registry import EmailContext, Messages, email_rule
from campaign.lint.vocabulary import BENEFIT_SUBJECTS, BENEFIT_TERMS, GLOSSARY, JARGON

# ---- benefit-without-risk ---------------------------------------------------------------------

# A safety summary is a heading that names safety or risks, plus these facts in the same email
# (the shared safety partial renders all of them).
_SAFETY_HEADING = re.compile(r"\b(?:safety|risks?|side effects)\b", re.I)
SAFETY_FACTS: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "that it is a controlled substance (Schedule III)",
        re.compile(r"\bcontrolled\s+(?:substance|drug|medicine)s?\b|\bschedule\s+(?:iii|3)\b", re.I),
    ),
    ("its side effects", re.compile(r"\bside[\s-]effects?\b", re.I)),
    (
        "that it is not for everyone and an evaluation checks",
        re.compile(
            r"\bnot\s+(?:safe\s+|right\s+)?for\s+everyone\b|\bmay\s+not\s+be\s+(?:safe|right)\s+for\s+you\b"
            r"|\bintake\s+(?:evaluation|visit|exam)\b|\bevaluation\b|\bscreening\b",
            re.I,
        ),
    ),
)
_PRONOUN = re.compile(r"\b(?:it|its|this|they|these|that)\b", re.I)
# A negation up to two words before the phrase: "has not eased", "did not help much".
_NEGATION = re.compile(
    r"\b(?:not|no|never|cannot|can't|won't|didn't|doesn't|hasn't|haven't)\W+(?:\w+\W+){0,2}$", re.I
)


def _benefit_phrase(sentence: str) -> str | None:
    """The first benefit phrase in the sentence that is not negated ('has not eased' is not a claim)."""
    for match in term_pattern(BENEFIT_TERMS).finditer(sentence):
        if not _NEGATION.search(sentence[: match.start()]):
            return " ".join(match.group(0).split())
    return None


def benefit_claim(blocks: list[list[str]]) -> str | None:
    """The first sentence that states a possible benefit of ketamine (or esketamine, an
    infusion), described for a message, or None. A sentence claims a benefit when it holds a
    benefit phrase ('may ease', 'relief') and names the treatment, or refers back to it ('it',
    'this') right after a sentence that names it."""
    subjects = term_pattern(BENEFIT_SUBJECTS)
    for block in blocks:
        for i, sentence in enumerate(block):
            phrase = _benefit_phrase(sentence)
            if phrase is None:
                continue
            named = subjects.search(sentence)
            if not named and i > 0 and _PRONOUN.search(sentence):
                named = subjects.search(block[i - 1])
            if named:
                return f"{phrase!r} about {named.group(0).lower()!r}: {short(sentence, 90)}"
    return None


def _heading_lines(body: str) -> list[str]:
    """Short lines that stand alone after a blank line and do not end like a sentence."""
    lines = body.splitlines()
    return [
        line.strip()
        for i, line in enumerate(lines)
        if line.strip()
        and (i == 0 or not lines[i - 1].strip())
        and len(line.strip()) <= 70
        and not line.strip().endswith((".", ",", ";"))
    ]


def missing_safety(body: str) -> list[str]:
    """What a balanced safety summary lacks in this body: [] when it is complete."""
    missing = []
    if not any(_SAFETY_HEADING.search(line) for line in _heading_lines(body)):
        missing.append("a heading that names the risks or safety (e.g. 'Risks and side effects')")
    missing.extend(name for name, pattern in SAFETY_FACTS if not pattern.search(body))
    return missing


@email_rule(
    "benefit-without-risk",
    "An email that states a possible benefit of ketamine carries the safety summary or links to it.",
)
def benefit_without_risk(ctx: EmailContext) -> Messages:
    claim = benefit_claim(ctx.body_blocks)
    if claim is None:
        return
    if any(is_safety_link(url) for url in ctx.all_urls if not ctx.is_unsubscribe(url)):
        return
    missing = missing_safety(ctx.body)
    if missing:
        yield (
            f"the email states a possible benefit ({claim}) without a balanced safety summary: it lacks "
            f"{'; '.join(missing)}. Include the shared safety partial, or link to the clinic's safety "
            "page (a URL whose path names safety or risks)"
        )


# ---- reply-notice -------------------------------------------------------------------------------

_REPLY_WORD = re.compile(r"\brepl(?:y|ies)\b", re.I)
_READ_WORD = re.compile(r"\b(?:read|reads|reading|answer|answers|answered)\b", re.I)
_WHEN = re.compile(
    r"\b(?:office|business|opening)\s+hours\b"
    r"|\bwithin\s+(?:one|two|three|a|an|\d+)\s+(?:business\s+|working\s+)?(?:hours?|days?)\b"
    r"|\b\d{1,2}(?::\d\d)?\s*(?:am|pm|a\.m\.|p\.m\.)"
    r"|\b(?:mondays?|weekdays?)\b",
    re.I,
)
_DONT = re.compile(r"\b(?:don['’]t|do\s+not|never|avoid|please\s+do\s+not)\b", re.I)
_SEND = re.compile(r"\b(?:send|share|include|put|write|email)\w*\b", re.I)
_HEALTH_DETAILS = re.compile(r"\b(?:health|medical)\b", re.I)
_988 = re.compile(r"(?<!\d)988(?!\d)")
_911 = re.compile(r"(?<!\d)911(?!\d)")


def missing_reply_notice(ctx: EmailContext) -> list[str]:
    """What the body lacks of the reply notice: [] when complete."""
    sentences = ctx.body_sentences
    missing = []
    if not any(_REPLY_WORD.search(s) and _READ_WORD.search(s) for s in sentences):
        missing.append("who reads replies (e.g. 'a person on our care team reads replies')")
    # The clinic's own office hours, spelled out, count too (clinic.yaml may not have the field).
    office_hours = (getattr(ctx.clinic, "office_hours", None) or "").strip()
    if not (_WHEN.search(ctx.body) or (office_hours and office_hours in ctx.body)):
        missing.append("when they are read (office hours, from clinic.yaml)")
    if not any(_DONT.search(s) and _SEND.search(s) and _HEALTH_DETAILS.search(s) for s in sentences):
        missing.append("not to send health details they would not want in an email")
    if not (_988.search(ctx.body) and _911.search(ctx.body)):
        missing.append("to call or text 988, or call 911, in a crisis instead of replying")
    return missing


@email_rule(
    "reply-notice",
    "An email that invites a reply says who reads replies and when, what not to send, and 988/911.",
)
def reply_notice(ctx: EmailContext) -> Messages:
    invitation = first_match(REPLY_INVITATION, ctx.body)
    if invitation is None:
        return
    missing = missing_reply_notice(ctx)
    if missing:
        yield (
            f"the email invites a reply ({invitation!r}) but does not say {'; '.join(missing)}. The "
            "footer's crisis note does not count: include the shared reply notice next to the invitation"
        )


# ---- glossary -------------------------------------------------------------------------------------

# An explanation in the sentence that uses the word: after it, a parenthesis, "which is",
# "that is", "means", "meaning", a dash or a colon; right after it (a word may sit between),
# "is a/the/when ...", or an apposition (", a ...", ", or ..."); right before it, "called",
# "known as", "named", or an opening parenthesis after plain words ("a dummy dose (a placebo)").
_EXPLAINED_AFTER = re.compile(
    r"\(|\bwhich\s+(?:is|are|means)\b|\bthat\s+is\b|\bmeans?\b|\bmeaning\b|\s[—–]\s|\s-\s|:", re.I
)
_EXPLAINED_RIGHT_AFTER = re.compile(
    r"^\)?(?:\s+\w+)?"  # one word may sit between: "a placebo group, a group given a dummy dose"
    r"(?:\s+(?:is|are)\s+(?:a|an|the|when|how|what|one|called)\b|,\s+(?:a|an|the|or|which|who|one)\b)",
    re.I,
)
# "... called the GAD-7", "a dummy dose (a placebo)": the plain words come first.
_EXPLAINED_BEFORE = re.compile(
    r"\b(?:called|known\s+as|named|termed)\s+(?:the\s+|a\s+|an\s+)?$|\w\s*\((?:a|an|the)?\s*$", re.I
)


def is_explained(sentence: str, match: re.Match[str]) -> bool:
    before, after = sentence[: match.start()], sentence[match.end() :]
    explained_after = _EXPLAINED_AFTER.search(after) or _EXPLAINED_RIGHT_AFTER.search(after)
    return bool(explained_after or _EXPLAINED_BEFORE.search(before))


def unexplained_terms(blocks: list[list[str]], glossary: tuple[str, ...] = GLOSSARY) -> list[str]:
    """Glossary words used in these sentences (by block) and explained in none of them, in order
    of first use. A sentence that is the word alone ("TMS.") is a label: the next sentence of
    its paragraph or list item explains it."""
    pattern = term_pattern(glossary)
    known = {_key(term) for term in glossary}
    shown: dict[str, str] = {}  # key -> the word as first written
    explained: dict[str, bool] = {}
    for block in blocks:
        for i, sentence in enumerate(block):
            for match in pattern.finditer(sentence):
                key = _key(match.group(0))
                if key.endswith("s") and key[:-1] in known:
                    key = key[:-1]  # "SSRIs" explained counts for "SSRI", and the other way round
                shown.setdefault(key, " ".join(match.group(0).split()))
                label = _key(sentence.strip(" .:;!?")) == _key(match.group(0)) and i + 1 < len(block)
                explained[key] = explained.get(key, False) or label or is_explained(sentence, match)
    return [shown[key] for key, done in explained.items() if not done]


def _key(term: str) -> str:
    return " ".join(re.split(r"[\s\-_]+", term.lower().strip()))


@email_rule(
    "glossary",
    "Every technical word from the glossary is explained in the email; no other jargon.",
)
def glossary(ctx: EmailContext) -> Messages:
    for word in unexplained_terms(ctx.body_blocks):
        yield (
            f"the email uses {word!r} without explaining it; explain it where it first appears (e.g. "
            f"'{word} (a ...)', 'a ... called {word}', '{word}, which is ...') or use a plain word"
        )
    jargon = list(dict.fromkeys(" ".join(w.lower().split()) for w in term_pattern(JARGON).findall(ctx.body)))
    if jargon:
        yield (
            f"the email uses jargon ({', '.join(short(w, 30) for w in jargon)}); say it in plain words "
            "(or add the word to GLOSSARY in campaign/lint/vocabulary.py and explain it)"
        )
