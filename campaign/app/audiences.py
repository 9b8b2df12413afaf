"""Audience use cases: who gets what (rules, steps, lead counts), and the check of the audience
files and every template they name."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from datetime import timedelta

    from campaign.audiences import Audience
    from campaign.settings import Settings
    from campaign.store import Store

# The first name and unsubscribe link the check renders every template with.
CHECK_FIRST_NAME = "Sam"
CHECK_UNSUBSCRIBE_URL = "https://example.org/unsubscribe/x"


def day_number(delay: timedelta) -> int | float:
    """A step's delay in days: whole days as an int (2, not 2.0)."""
    days = delay.total_seconds() / 86400
    return int(days) if days.is_integer() else days


def audience_rows(audiences: list[Audience], store: Store | None) -> list[dict]:
    """Each audience by priority: its rule in words, its steps with their day, its lead count
    (0 for all without a store: no database yet)."""
    counts = store.audience_counts() if store is not None else {}
    return [
        {
            "priority": a.priority,
            "audience": a.name,
            "rule": a.describe_rule(),
            "steps": [{"key": st.key, "day": day_number(st.delay)} for st in a.steps],
            "leads": counts.get(a.name, 0),
        }
        for a in audiences
    ]


@dataclass
class AudienceCheck:
    audiences: int = 0
    steps: int = 0
    problems: list[str] = field(default_factory=list)  # each names the file or audience/step

    @property
    def ok(self) -> bool:
        return not self.problems


def check_audiences(settings: Settings) -> AudienceCheck:
    """Validate audiences/*.yaml and render every step's template; every problem, not the first."""
    from campaign.audiences import read_audiences
    from campaign.render import Renderer, TemplateError

    found, problems = read_audiences(settings.audiences_dir)
    renderer = Renderer(settings.templates_dir, settings.clinic)
    for a in found:
        for step in a.steps:
            try:
                renderer.render(
                    step.template, first_name=CHECK_FIRST_NAME, unsubscribe_url=CHECK_UNSUBSCRIBE_URL
                )
            except TemplateError as exc:
                problems.append(f"{a.name}/{step.key}: {exc}")
    return AudienceCheck(len(found), sum(len(a.steps) for a in found), problems)
