"""Campaign use cases: launch (with the live-send preflight), and the results report of one
campaign or all. (The tick runs its own preflight: campaign.engine.run_tick.)"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from campaign.campaigns import PreflightFailed, is_live, launch, live_preflight

if TYPE_CHECKING:
    from campaign.audiences import Audience
    from campaign.report import Report
    from campaign.settings import Settings
    from campaign.store import Store


@dataclass
class Launched:
    campaign: dict
    drafts: list[str] = field(default_factory=list)  # what a live send would refuse (outbox, sandbox)


def launch_campaign(
    store: Store,
    settings: Settings,
    audiences: list[Audience],
    *,
    name: str,
    audience_names: list[str],
    starts_at: datetime | None,
    sandbox: bool,
    now: datetime,
) -> Launched:
    """Create a campaign over some audiences. A live one (campaigns.is_live, and not a sandbox
    campaign) must pass the preflight: raises PreflightFailed listing every problem; otherwise
    the same problems come back as drafts to fix. Raises CampaignError for unknown audiences
    or a taken name."""
    templates = [st.template for a in audiences if a.name in audience_names for st in a.steps]
    problems = live_preflight(settings, store, templates)
    if problems and is_live(settings) and not sandbox:
        raise PreflightFailed(problems)
    campaign = launch(
        store,
        audiences,
        name=name,
        audience_names=audience_names,
        starts_at=starts_at,
        sandbox=sandbox,
        now=now,
    )
    return Launched(campaign, problems)


def campaign_report(store: Store, audiences: list[Audience], campaign: str | None, now: datetime) -> Report:
    """The results report of one campaign (by slug) or all, steps in sequence order. Raises
    LookupError for an unknown campaign."""
    from campaign.report import build_report

    if campaign and store.campaign(campaign) is None:
        raise LookupError(f"no campaign named {campaign!r}; see `campaign status`")
    order = {a.name: [st.key for st in a.steps] for a in audiences}
    return build_report(store, order, now).for_campaign(campaign)
