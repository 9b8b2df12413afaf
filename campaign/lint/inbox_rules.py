"""The rules for what a reader sees before and around the body: the inbox preview a lock screen
shows (lock-screen), the one clear next step (one-primary-cta), and how the plain-text part's
headings look (text-heading-caps).

Each rule is one function registered with its id; each message says what to change.
"""

from __future__ import annotations

import re

from campaign.lint.matching import (
    CALL_INVITATION,
    REPLY_INVITATION,
    Anchor,
    find_terms,
    first_match,
    is_safety_link,
    same_page,
    short,
    term_pattern,
    visible,
)
from campaign.lint.registry import EmailContext, Messages, email_rule
from campaign.lint.vocabulary import CTA_TERMS, LOCK_SCREEN_TERMS, PREHEADER_HINTS

# What an inbox list or a lock screen shows of a message, at most (iOS and Gmail show less).
PREVIEW_CHARS = 150

# ---- lock-screen ----------------------------------------------------------------------------------


def preview_window(text: str) -> str:
    """The first PREVIEW_CHARS characters of already-visible text, with the word cut at the
    limit kept whole (so 'keta|mine' is still found)."""
    head, tail = text[:PREVIEW_CHARS], text[PREVIEW_CHARS:]
    if head and re.match(r"[\w-]", head[-1]):
        head += re.match(r"[\w-]*", tail).group(0)
    return head


def _quoted(words: list[str]) -> str:
    return ", ".join(repr(w) for w in words)


@email_rule(
    "lock-screen",
    f"The inbox preview (first {PREVIEW_CHARS} visible characters of each part) names no condition or "
    "treatment.",
)
def lock_screen(ctx: EmailContext) -> Messages:
    all_terms = (*ctx.health_terms, *LOCK_SCREEN_TERMS)
    # HTML: the inbox shows the hidden preheader, then (padding or not) the first visible text:
    # the banner, the greeting, the opening lines. Padding characters are invisible: not counted.
    window = preview_window(ctx.html_scan.visible_text)
    preheader = visible(ctx.email.preheader)
    rest = window
    if preheader and window.startswith(preheader):
        rest = window[len(preheader) :]
        # Health words in the preheader are health-in-preheader's finding; these are the others.
        found = find_terms(preheader, LOCK_SCREEN_TERMS)
        if found:
            yield (
                f"the preheader shows {_quoted(found)} on lock screens and in inbox lists; "
                "write a neutral line about the note itself"
            )
        hints = find_terms(preheader, PREHEADER_HINTS)
        if hints:
            yield (
                f"the preheader hints at a stigmatized problem ({_quoted(hints)}); anyone glancing at "
                "the phone reads it: say what the note is, e.g. 'Note 2 of 5: a short read'"
            )
    found = find_terms(rest, all_terms)
    if found:
        yield (
            f"the HTML part's inbox preview (preheader, then the first visible text, {PREVIEW_CHARS} "
            f"characters in all) shows {_quoted(found)}: lock screens show it; keep condition and "
            "treatment words out of the banner (a neutral display name) and the opening sentences"
        )
    found = find_terms(preview_window(visible(ctx.email.text)), all_terms)
    if found:
        yield (
            f"the text part's first {PREVIEW_CHARS} characters show {_quoted(found)}: text-only "
            "clients preview them; open with a neutral greeting and sentence"
        )


# ---- one-primary-cta -------------------------------------------------------------------------------


def _describe(anchor: Anchor) -> str:
    return f"{short(anchor.text or '(no text)', 40)} -> {short(anchor.href, 60)}"


@email_rule(
    "one-primary-cta",
    "Exactly one primary call to action (the front-matter button) and at most one secondary ask.",
)
def one_primary_cta(ctx: EmailContext) -> Messages:
    anchors = [a for a in ctx.html_scan.anchors if not ctx.is_unsubscribe(a.href)]
    buttons = [a for a in anchors if a.is_button]
    links = [a for a in anchors if not a.is_button and not is_safety_link(a.href)]
    cta_words = term_pattern(CTA_TERMS)
    # A body link to the button's page or to booking, or worded like a button, is a second primary.
    targets = [b.href for b in buttons] + [ctx.clinic.booking_url]
    extra = [a for a in links if any(same_page(a.href, t) for t in targets) or cta_words.search(a.text)]
    if not buttons:
        yield (
            "the email has no primary call to action; give its front matter cta_text and cta_url "
            "(a button to booking or to a page): one clear next step"
        )
    primaries = buttons + extra
    if len(primaries) > 1:
        listed = "; ".join(map(_describe, primaries))
        yield (
            f"the email has {len(primaries)} primary calls to action ({listed}); "
            "keep the one front-matter button and make the others plain text"
        )
    secondary = [f"a link {_describe(a)}" for a in links if a not in extra]
    reply = first_match(REPLY_INVITATION, ctx.body)
    if reply:
        secondary.append(f"a reply invitation ({reply!r})")
    call = first_match(CALL_INVITATION, ctx.body)
    if call:
        secondary.append(f"an invitation to phone ({call!r})")
    if len(secondary) > 1:
        yield (
            f"the email asks for {len(secondary)} other things besides the button ({'; '.join(secondary)}); "
            "keep at most one secondary ask (an invitation to reply) and drop the rest"
        )


# ---- text-heading-caps -----------------------------------------------------------------------------

_URL_LIKE = re.compile(r"\S+://\S+|\bwww\.\S+", re.I)
_BULLET = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s")


def _all_caps_headings(text: str, lead_values: list[str]) -> list[str]:
    """Lines that stand alone (blank line before, or the start) in capitals only: at least four
    cased letters, none of them lower case. Lead values (names) are taken out first: a name in
    capitals is the lead's spelling, not a heading."""
    lines = text.splitlines()
    found = []
    for i, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or _BULLET.match(line) or _URL_LIKE.search(stripped):
            continue
        if i > 0 and lines[i - 1].strip():
            continue  # inside a paragraph
        letters_of = stripped
        for value in lead_values:
            if value:
                letters_of = letters_of.replace(value, "")
        cased = [c for c in letters_of if c.lower() != c.upper()]  # letters that have a case
        if len(cased) >= 4 and all(c.isupper() for c in cased):
            found.append(stripped)
    return found


@email_rule("text-heading-caps", "Plain-text part headings are in title case, not ALL CAPS.")
def text_heading_caps(ctx: EmailContext) -> Messages:
    headings = _all_caps_headings(ctx.body, [v.strip() for v in ctx.hostile_inputs])
    if headings:
        shown = ", ".join(short(h, 50) for h in headings[:3]) + (" ..." if len(headings) > 3 else "")
        yield (
            f"the text part has {len(headings)} heading(s) in ALL CAPS ({shown}); capitals read as "
            "shouting and are harder to read: render '## ' headings in title case (campaign/render.py "
            "markdown_to_text) or write them so"
        )
