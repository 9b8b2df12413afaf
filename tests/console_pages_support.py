"""Shared by the tests of the content, campaigns and reports pages: the console over a private
copy of the content (to edit templates), a populated ledger, and the audit log's actions."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from console_support import PASSWORD, ConsoleServer, serve_console

from campaign.accounts import add_user
from campaign.models import AnxietyType, LeadIn
from campaign.settings import PROJECT_ROOT

NAMED_REVIEWER = "dr.lee@clinic.example"


def copy_content(target: Path) -> Path:
    """A private copy of the shipped templates, audiences and clinic.yaml, to edit freely."""
    target.mkdir(parents=True, exist_ok=True)
    shutil.copytree(PROJECT_ROOT / "templates", target / "templates")
    shutil.copytree(PROJECT_ROOT / "audiences", target / "audiences")
    shutil.copy(PROJECT_ROOT / "clinic.yaml", target / "clinic.yaml")
    return target


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, (path, old)
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def audit_actions(server: ConsoleServer, action: str) -> list:
    """The audit entries of one action, oldest first."""
    rows = server.accounts.audit_page(limit=1000, action=action)
    return sorted(rows, key=lambda entry: entry.id)


def populate(server: ConsoleServer, n_gad: int = 3, n_social: int = 2) -> None:
    """Consenting GAD and social leads, enrolled and welcomed by one tick at the server's clock."""
    from campaign.engine import run_tick
    from campaign.runtime import build_context

    now = server.clock()
    leads = [
        LeadIn(email=f"g{i}@example.com", consent=True, anxiety_type=AnxietyType.gad) for i in range(n_gad)
    ]
    leads += [
        LeadIn(email=f"s{i}@example.com", consent=True, anxiety_type=AnxietyType.social)
        for i in range(n_social)
    ]
    server.store.upsert_leads(leads, now)
    run_tick(build_context(server.settings, now=now, store=server.store), now)


@pytest.fixture
def console_content_dir(tmp_path) -> Path:
    return copy_content(tmp_path / "content")


@pytest.fixture
def content_console(make_settings, console_clock, console_content_dir) -> Iterator[ConsoleServer]:
    """The console over a private copy of the content, with a user of each role and a reviewer
    with a name (NAMED_REVIEWER)."""
    with serve_console(make_settings(content_dir=console_content_dir), console_clock) as server:
        add_user(server.accounts, NAMED_REVIEWER, "reviewer", PASSWORD, "Dr. Jane Lee", now=console_clock())
        server.emails["named_reviewer"] = NAMED_REVIEWER
        yield server
