"""The console's overview: every campaign's state and counts (campaigns.status), the last ticks,
and everything the live-send preflight would refuse, as banners."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from threading import Lock
from typing import TYPE_CHECKING

from campaign.app.audiences import day_number
from campaign.app.ticks import recent_ticks
from campaign.campaigns import is_live, lint_errors, preflight, status
from campaign.store.ticks import TickRun

if TYPE_CHECKING:
    from campaign.audiences import Audience
    from campaign.settings import Settings
    from campaign.store import Store

SEND_STATUSES = ("sent", "claimed", "unknown", "failed", "skipped")
ENROLLMENT_STATES = ("enrolled", "active", "finished", "exited")


@dataclass
class StepRow:
    key: str
    day: int | float | None  # None for a step no longer in the sequence (sent before an edit)
    counts: dict[str, int]  # send status -> n


@dataclass
class AudienceRow:
    name: str
    counts: dict[str, int]  # enrollment state -> n (and "enrolled", the total)
    steps: list[StepRow]


@dataclass
class CampaignRow:
    slug: str
    name: str
    state: str
    sandbox: bool
    paused_reason: str | None
    sent_today: int
    due_next_24h: int
    failures: int
    unknown: int
    audiences: list[AudienceRow]


@dataclass
class Overview:
    campaigns: list[CampaignRow]
    ticks: list[TickRun]
    problems: list[str]  # what a live send would refuse (all of them, each with its fix)
    live: bool  # SendGrid without sandbox: the problems stop every tick


def _campaign_row(raw: dict, sequences: dict[str, list]) -> CampaignRow:
    rows = []
    for name, facts in raw["per_audience"].items():
        days = {st.key: day_number(st.delay) for st in sequences.get(name, [])}
        keys = list(days) + sorted(k for k in facts["steps"] if k not in days)
        steps = [
            StepRow(k, days.get(k), {s: facts["steps"].get(k, {}).get(s, 0) for s in SEND_STATUSES})
            for k in keys
        ]
        rows.append(AudienceRow(name, {s: facts.get(s, 0) for s in ENROLLMENT_STATES}, steps))
    order = list(sequences)
    rows.sort(key=lambda a: (order.index(a.name) if a.name in order else len(order), a.name))
    return CampaignRow(
        slug=raw["campaign"],
        name=raw["name"],
        state=raw["state"],
        sandbox=bool(raw["sandbox"]),
        paused_reason=raw["paused_reason"],
        sent_today=raw["sent_today"],
        due_next_24h=raw["due_next_24h"],
        failures=raw["failures"],
        unknown=raw["unknown"],
        audiences=rows,
    )


# Linting every email takes about a second: it is redone only when a content file changes.
_lint_cache: dict[tuple, list[str]] = {}
_lint_lock = Lock()


def _content_fingerprint(settings: Settings) -> tuple:
    clinic = settings.clinic_file or settings.content_dir / "clinic.yaml"
    files = sorted(p for p in Path(settings.templates_dir).rglob("*") if p.is_file()) + [Path(clinic)]
    return tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in files if p.exists())


def cached_lint_errors(settings: Settings, template_names: list[str]) -> list[str]:
    key = (str(settings.templates_dir), tuple(template_names), _content_fingerprint(settings))
    with _lint_lock:
        if key not in _lint_cache:
            _lint_cache.clear()
            _lint_cache[key] = lint_errors(settings, template_names)
        return list(_lint_cache[key])


def preflight_problems(settings: Settings, store: Store, audiences: list[Audience]) -> list[str]:
    """campaigns.live_preflight over every audience, with the lint part cached."""
    from campaign.approval import unapproved
    from campaign.render import Renderer

    names = [st.template for a in audiences for st in a.steps]
    renderer = Renderer(settings.templates_dir, settings.clinic)
    return preflight(
        settings,
        lint_errors=cached_lint_errors(settings, names),
        unapproved=unapproved(store, renderer, names),
    ).problems


def overview(
    store: Store, settings: Settings, audiences: list[Audience], now: datetime, ticks: int = 10
) -> Overview:
    sequences = {a.name: list(a.steps) for a in audiences}
    return Overview(
        campaigns=[_campaign_row(raw, sequences) for raw in status(store, settings, now)],
        ticks=recent_ticks(store, ticks),
        problems=preflight_problems(settings, store, audiences),
        live=is_live(settings),
    )
