"""Approval: a human signs off each email's content before it may go out through live SendGrid.

An approval is (template, content hash, reviewer, time) in the ``approvals`` table. The content
hash covers everything the email is made from that lives in ``templates/``:

- the email's own source, ``templates/<audience>/<step>.md`` (as the Renderer loaded it, so the
  hash describes exactly what that Renderer sends), and
- the shared layouts ``templates/layout.mjml`` and ``templates/layout.txt`` (read from disk):
  the footer, the crisis line and the unsubscribe link live there, so **a layout change needs
  every email re-approved**, and
- the partials the email includes (``templates/partials/*.md``): editing the shared safety
  summary needs every email that includes it re-approved.

Not covered: ``clinic.yaml`` (name, address, phone, booking URL), which is rendered into every
footer but is configuration, not content.

A template is approved when an approval row exists for its *current* hash. Editing it makes it
unapproved again ("changed since approval"); changing it back to the approved text makes it
approved again. The shipped content ships unapproved.

The engine refuses live (SendGrid, non-sandbox) sends of anything ``unapproved(...)`` names; the
outbox and the SendGrid sandbox accept drafts, and previews mark them DRAFT.

Pure but for reading template files and the store calls.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from campaign.render import Renderer
    from campaign.store import Store

LAYOUT_FILES = ("layout.mjml", "layout.txt")
MAX_REVIEWER_CHARS = 200


@dataclass(frozen=True)
class ApprovalState:
    approved: bool  # an approval exists for the template's current content
    by: str | None  # who approved: the current content if approved, else the latest approval
    at: datetime | None
    changed_since: bool  # approved once, but the content (or a layout) changed since
    content_hash: str | None = None  # None when the template cannot be read
    role: str | None = None  # the approver's console role ("" from the command line)

    @property
    def label(self) -> str:
        if self.approved:
            return f"approved by {self.by} on {self.at:%Y-%m-%d}"
        if self.changed_since:
            return f"DRAFT: changed since {self.by} approved it on {self.at:%Y-%m-%d}"
        return "DRAFT: never approved"


@dataclass(frozen=True)
class Approved:
    template: str
    content_hash: str
    new: bool  # False when this exact content was already approved (the first sign-off stays)
    by: str
    at: datetime


class UnapprovedContent(Exception):
    """Raised for a live send of content nobody approved; names the templates and the fix."""

    def __init__(self, templates: Sequence[str]):
        self.templates = list(templates)
        super().__init__(
            f"{len(self.templates)} template(s) changed since approval or never approved: "
            f"{', '.join(self.templates)}. Review them (`campaign preview`), then "
            "`campaign approve AUDIENCE [STEP] --by NAME`; the outbox and the SendGrid sandbox accept drafts."
        )


# ---- hashing ------------------------------------------------------------------------------------


def content_parts(renderer: Renderer, name: str) -> list[tuple[str, str]]:
    """The files an email is made from, as (file name, text): its source, the partials it
    includes, then the layouts. Raises TemplateError or OSError when a file cannot be read."""
    source = renderer.source(name)
    parts = [(f"{name}.md", source.source)]
    parts += [(partial, renderer.partial_source(partial)) for partial in source.includes]
    parts += [(f, (renderer.templates_dir / f).read_text(encoding="utf-8")) for f in LAYOUT_FILES]
    return parts


def hash_parts(parts: Sequence[tuple[str, str]]) -> str:
    """sha256 over each file's name and text, length-prefixed (no two contents collide)."""
    digest = hashlib.sha256()
    for filename, text in parts:
        data = text.encode("utf-8")
        digest.update(f"{filename}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()


def content_hash(renderer: Renderer, name: str) -> str:
    """sha256 over the template's source and the shared layout files (each length-prefixed,
    with its file name). Raises TemplateError or OSError when a file cannot be read."""
    return hash_parts(content_parts(renderer, name))


def _hash_or_none(renderer: Renderer, name: str) -> str | None:
    from campaign.render import TemplateError

    try:
        return content_hash(renderer, name)
    except (TemplateError, OSError):
        return None  # a template that cannot be loaded is never approved


# ---- state --------------------------------------------------------------------------------------


def approval_state(
    store: Store, renderer: Renderer, template_names: Iterable[str]
) -> dict[str, ApprovalState]:
    """The approval state of each template's current content."""
    names = list(dict.fromkeys(template_names))
    history = store.approvals_for(names)
    states = {}
    for name in names:
        current = _hash_or_none(renderer, name)
        rows = history.get(name, [])  # newest first
        match = next((r for r in rows if current is not None and r["content_hash"] == current), None)
        if match is not None:
            states[name] = ApprovalState(
                True, match["approved_by"], match["approved_at"], False, current, match["approved_role"]
            )
        elif rows:
            last = rows[0]
            states[name] = ApprovalState(
                False, last["approved_by"], last["approved_at"], True, current, last["approved_role"]
            )
        else:
            states[name] = ApprovalState(False, None, None, False, current)
    return states


def unapproved(store: Store, renderer: Renderer, template_names: Iterable[str]) -> list[str]:
    """The templates (in the order given, each once) whose current content nobody approved.
    A live send must refuse every email whose template is listed."""
    return [
        name for name, state in approval_state(store, renderer, template_names).items() if not state.approved
    ]


def require_approved(store: Store, renderer: Renderer, template_names: Iterable[str]) -> None:
    """Raise UnapprovedContent naming every unapproved template; for the live-send path."""
    missing = unapproved(store, renderer, template_names)
    if missing:
        raise UnapprovedContent(missing)


# ---- approving ----------------------------------------------------------------------------------


class ContentChanged(Exception):
    """The email changed between the reviewer opening it and approving it: nothing recorded."""

    def __init__(self, template: str):
        self.template = template
        super().__init__(
            f"{template} changed after you opened it, so what you reviewed is not what would be "
            "approved. Open it again, review the new version, then approve."
        )


def approve(
    store: Store,
    renderer: Renderer,
    template_names: Iterable[str],
    *,
    by: str,
    now: datetime | None = None,
    role: str = "",
    reviewed: dict[str, str] | None = None,
) -> list[Approved]:
    """Record `by`'s sign-off of each template's current content, with their role and the source
    text approved (for a later diff). No lint here: callers run it first (see
    `campaign.lint.lint_problems_for`). `reviewed` maps a template to the content hash the
    reviewer saw; ContentChanged when the files differ now. Raises ValueError for a blank or
    overlong reviewer name, and TemplateError/OSError when a template cannot be read (nothing is
    recorded then)."""
    reviewer = " ".join((by or "").split())
    if not reviewer:
        raise ValueError("give the reviewer's name: --by NAME")
    if len(reviewer) > MAX_REVIEWER_CHARS:
        raise ValueError(f"the reviewer's name is longer than {MAX_REVIEWER_CHARS} characters")
    now = now or datetime.now(UTC)
    names = list(dict.fromkeys(template_names))
    # Read each once: the hash and the kept text describe the same files. All readable, or nothing recorded.
    parts = {name: content_parts(renderer, name) for name in names}
    hashes = {name: hash_parts(parts[name]) for name in names}
    for name, seen in (reviewed or {}).items():
        if hashes.get(name) != seen:
            raise ContentChanged(name)
    done = []
    for name in names:
        source = json.dumps(parts[name], ensure_ascii=False)
        new = store.record_approval(name, hashes[name], reviewer, now, role=role, source_text=source)
        if new:
            done.append(Approved(name, hashes[name], True, reviewer, now))
        else:
            state = approval_state(store, renderer, [name])[name]
            done.append(Approved(name, hashes[name], False, state.by or reviewer, state.at or now))
    return done


# ---- what changed since the approval ------------------------------------------------------------


@dataclass(frozen=True)
class DiffLine:
    kind: str  # "add", "remove", "same", or "hunk" (a @@ line: where the next lines are)
    text: str


@dataclass(frozen=True)
class FileDiff:
    filename: str
    lines: list[DiffLine]


def approved_parts(source_text: str | None) -> list[tuple[str, str]] | None:
    """The files an approval kept (None when it kept none: approved before the text was kept)."""
    if not source_text:
        return None
    return [(str(name), str(text)) for name, text in json.loads(source_text)]


def changes_since(approved: Sequence[tuple[str, str]], current: Sequence[tuple[str, str]]) -> list[FileDiff]:
    """A line diff (difflib, 3 lines of context) of each file that differs, in the current
    files' order; a file only on one side diffs against nothing."""
    before, after = dict(approved), dict(current)
    names = list(after) + [n for n in before if n not in after]
    diffs = []
    for name in names:
        old, new = before.get(name, ""), after.get(name, "")
        if old == new:
            continue
        lines = []
        for line in difflib.unified_diff(old.splitlines(), new.splitlines(), lineterm="", n=3):
            if line.startswith(("---", "+++")):
                continue
            kind = {"@": "hunk", "+": "add", "-": "remove"}.get(line[:1], "same")
            lines.append(DiffLine(kind, _where(line) if kind == "hunk" else line[1:]))
        diffs.append(FileDiff(name, lines))
    return diffs


def _where(hunk: str) -> str:
    """A hunk header ("@@ -3,6 +3,8 @@") in words: where the changed lines are now."""
    found = re.match(r"@@ -\d+(?:,\d+)? \+(\d+)", hunk)
    return f"From line {max(int(found.group(1)), 1)} of the current file:" if found else hunk
