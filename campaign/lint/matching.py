"""Finding words and links in rendered emails: whole-word term matching, URL tokens, link lists."""

from __future__ import annotations

import re
from collections.abc import Iterable
from html.parser import HTMLParser
from urllib.parse import unquote, urlsplit

_TEXT_URL = re.compile(
    r"(?:https?|mailto|tel|ftp)://[^\s<>()\"']+|(?:mailto|tel):[^\s<>()\"']+|\bwww\.[^\s<>()\"']+", re.I
)


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


class HtmlScan(HTMLParser):
    """What the rules need from the HTML part: link targets, resource URLs, attribute names."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.hrefs: list[str] = []
        self.srcs: list[str] = []
        self.attr_names: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            self.attr_names.add(name.lower())
            if value is None:
                continue
            if name == "href":
                self.hrefs.append(value.strip())
            elif name in ("src", "background") or (tag == "form" and name == "action"):
                self.srcs.append(value.strip())


def scan_html(html: str) -> HtmlScan:
    """Links and attribute names of an HTML document, entities decoded."""
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
