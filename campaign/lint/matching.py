"""Finding words and links in rendered emails: whole-word term matching, URL tokens, link lists."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from html.parser import HTMLParser
from urllib.parse import unquote, urlsplit

_TEXT_URL = re.compile(
    r"(?:https?|mailto|tel|ftp)://[^\s<>()\"']+|(?:mailto|tel):[^\s<>()\"']+|\bwww\.[^\s<>()\"']+", re.I
)


# Preheader padding and other characters that take up no visible space: combining grapheme joiner
# (&#847;), zero-width space/joiners/marks, word joiner and invisible operators, BOM, soft hyphen.
_INVISIBLE = re.compile("[\u034f\u200b-\u200f\u2060-\u2064\ufeff\u00ad\u180e]")
# Sentence ends: . ! ? followed by space; a line break always ends one (headings, list items).
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"'\u201d)]*\s+")
_LIST_MARKER = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+")


def visible(text: str) -> str:
    """Text as it shows: invisible filler removed, every run of whitespace (nbsp too) one space."""
    return " ".join(_INVISIBLE.sub("", text).split())


def sentence_blocks(text: str) -> list[list[str]]:
    """The sentences of a text part, roughly, by block: a blank line or a list item starts a new
    block (so a heading or a list item is never glued to the next line); blocks split after
    . ! or ?; list markers dropped."""
    blocks: list[list[str]] = []
    fresh = True
    for line in text.splitlines():
        if not line.strip():
            fresh = True
            continue
        if fresh or _LIST_MARKER.match(line):
            blocks.append([])
        blocks[-1].append(_LIST_MARKER.sub("", line).strip())
        fresh = False
    return [
        [part.strip() for part in _SENTENCE_END.split(" ".join(block)) if part.strip()] for block in blocks
    ]


def sentences(text: str) -> list[str]:
    """All sentences of a text part, in order (see sentence_blocks)."""
    return [sentence for block in sentence_blocks(text) for sentence in block]


def term_pattern(terms: Iterable[str]) -> re.Pattern[str]:
    """One case-insensitive, whole-word regex for all terms (longest first)."""
    parts = []
    for term in sorted({t.strip().lower() for t in terms if t.strip()}, key=len, reverse=True):
        words = [re.escape(w) for w in re.split(r"[\s\-_]+", term)]
        parts.append(r"[\s\-_]+".join(words))
    if not parts:
        return re.compile(r"(?!x)x")  # matches nothing
    return re.compile(r"(?<![\w])(?:" + "|".join(parts) + r")(?![\w])", re.I)


def find_terms(text: str, terms: Iterable[str]) -> list[str]:
    """The distinct terms found in text, as written there (lowercased), in order."""
    seen: list[str] = []
    for match in term_pattern(terms).finditer(text or ""):
        word = " ".join(match.group(0).lower().split())
        if word not in seen:
            seen.append(word)
    return seen


@dataclass(frozen=True)
class Anchor:
    """One <a href> of the HTML part: its target, its visible text, and whether it is drawn as a
    button (a bulletproof email button is an inline-block link, or one with role="button")."""

    href: str
    text: str
    is_button: bool


# Elements whose text no reader sees in the message body.
_HIDDEN_ELEMENTS = frozenset({"head", "title", "style", "script", "template"})


class HtmlScan(HTMLParser):
    """What the rules need from the HTML part: link targets, resource URLs, attribute names,
    anchors with their text, and the visible text in reading order (hidden preheader included:
    it is the first thing an inbox preview shows)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.hrefs: list[str] = []
        self.srcs: list[str] = []
        self.attr_names: set[str] = set()
        self.anchors: list[Anchor] = []
        self._chunks: list[str] = []
        self._hidden_depth = 0
        self._open_anchor: tuple[str, bool, list[str]] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _HIDDEN_ELEMENTS:
            self._hidden_depth += 1
        self._chunks.append(" ")  # a tag boundary separates words ("Fresh Start</div>Hi")
        for name, value in attrs:
            self.attr_names.add(name.lower())
            if value is None:
                continue
            if name == "href":
                self.hrefs.append(value.strip())
            elif name in ("src", "background") or (tag == "form" and name == "action"):
                self.srcs.append(value.strip())
        if tag == "a":
            found = dict(attrs)
            style = re.sub(r"\s+", "", (found.get("style") or "").lower())
            is_button = "display:inline-block" in style or (found.get("role") or "").lower() == "button"
            self._open_anchor = ((found.get("href") or "").strip(), is_button, [])

    def handle_endtag(self, tag: str) -> None:
        if tag in _HIDDEN_ELEMENTS and self._hidden_depth:
            self._hidden_depth -= 1
        self._chunks.append(" ")
        if tag == "a" and self._open_anchor is not None:
            href, is_button, text = self._open_anchor
            if href:
                self.anchors.append(Anchor(href, " ".join("".join(text).split()), is_button))
            self._open_anchor = None

    def handle_data(self, data: str) -> None:
        if self._hidden_depth:
            return
        self._chunks.append(data)
        if self._open_anchor is not None:
            self._open_anchor[2].append(data)

    @property
    def visible_text(self) -> str:
        """The text a reader (or an inbox preview) sees, invisible filler removed, spaces collapsed."""
        return visible(" ".join(self._chunks))


def scan_html(html: str) -> HtmlScan:
    """Links, anchors, attribute names and visible text of an HTML document, entities decoded."""
    scan = HtmlScan()
    scan.feed(html)
    scan.close()
    return scan


def text_links(text: str) -> list[str]:
    return [m.group(0).rstrip(".,;:!?") for m in _TEXT_URL.finditer(text)]


def _url_tokens(url: str) -> list[str]:
    return [t for t in re.split(r"[^a-z0-9]+", unquote(url).lower()) if t]


def url_health_terms(url: str, terms: Iterable[str]) -> list[str]:
    """Health or audience words that stand as whole tokens in a URL (host, path or query).

    Tokens are split on anything but letters and digits, so the clinic's own domain
    (freshstartketamine.example) is one token and does not match 'ketamine'."""
    tokens = _url_tokens(url)
    found = []
    for term in terms:
        words = _url_tokens(term)
        n = len(words)
        if n and any(tokens[i : i + n] == words for i in range(len(tokens) - n + 1)):
            found.append(term)
    return found


def without_token(url: str) -> str:
    """An unsubscribe URL without its last path segment (the random signed token), so that a
    token that happens to spell 'gad' between two dashes does not trip the URL check."""
    parts = urlsplit(url)
    path = parts.path.rsplit("/", 1)[0] if "/" in parts.path.strip("/") else parts.path
    return f"{parts.scheme}://{parts.netloc}{path}" + (f"?{parts.query}" if parts.query else "")


def short(value: str, limit: int = 40) -> str:
    """repr(value), cut to about ``limit`` characters for a message."""
    value = repr(value)
    return value if len(value) <= limit else value[: limit - 4] + "...'"


# ---- asks a reader may act on ------------------------------------------------------------------

# An invitation to reply: "just hit reply", "Reply to this email", "you can reply with ...".
REPLY_INVITATION = re.compile(
    r"\b(?:hit|press|tap|click|just|simply|you\s+can|you\s+may|feel\s+free\s+to|please|or|and)\s+reply\b"
    r"|(?:^|(?<=[.!?:]\s))reply\b"
    r"|\breply\s+(?:to\s+(?:this|our|any|these|us)\b|with\b|and\s+tell\b|here\b|any\s?time\b|back\b)"
    r"|\bwrite\s+(?:back|to\s+us)\b|\bemail\s+us\s+back\b|\banswer\s+this\s+(?:email|note)\b",
    re.I | re.M,
)
# An invitation to phone or text the clinic ("call or text 988" and "call 911" are not).
CALL_INVITATION = re.compile(
    r"\b(?:call|phone|ring|text)\s+us\b|\bgive\s+us\s+a\s+(?:call|ring)\b"
    r"|\bcall\s+(?:our|the)\s+(?:clinic|office|team|front\s+desk)\b",
    re.I,
)
_SAFETY_PATH = re.compile(r"(?:^|[/_-])(?:safety|risks?|side-effects)(?:$|[/_.-])", re.I)


def first_match(pattern: re.Pattern[str], text: str) -> str | None:
    """The first match of pattern in text, whitespace collapsed, or None."""
    match = pattern.search(text)
    return " ".join(match.group(0).split()) if match else None


def is_safety_link(url: str) -> bool:
    """A link to the clinic's safety page: its path names safety, risks or side effects."""
    return bool(_SAFETY_PATH.search(urlsplit(url).path))


def same_page(a: str, b: str) -> bool:
    """Two links to the same page: host and path alike, case, trailing slash and query aside."""
    pa, pb = urlsplit(a.strip()), urlsplit(b.strip())
    return (pa.netloc.lower(), pa.path.rstrip("/")) == (pb.netloc.lower(), pb.path.rstrip("/"))
