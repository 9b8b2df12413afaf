"""Campaign use cases: launch (with the live-send preflight) and the results report of one
campaign or all; for the console, a launch planned and checked before it is confirmed, and
pause/resume/stop, each audited. (The tick runs its own preflight: campaign.engine.run_tick.)"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from campaign.campaigns import Check, PreflightFailed, is_live, launch, live_preflight

if TYPE_CHECKING:
    from campaign.accounts import Actor
    from campaign.audiences import Audience
    from campaign.report import Report
    from campaign.settings import Settings
    from campaign.store import Store
    from campaign.store.accounts import AccountStore


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
    actor: Actor | None = None,
) -> Launched:
    """Create a campaign over some audiences. A live one (campaigns.is_live, and not a sandbox
    campaign) must pass the preflight: raises PreflightFailed listing every problem; otherwise
    the same problems come back as drafts to fix. Raises CampaignError for unknown audiences
    or a taken name. Audited as `actor` (the console's user or the CLI)."""
    from campaign.app.activity import record

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
    start = starts_at.isoformat() if starts_at else "now"
    detail = f"audiences {','.join(audience_names)}; starts {start}; sandbox {sandbox}"
    detail += f"; {len(problems)} preflight problem(s) open"
    record(
        store.engine,
        actor,
        "campaign.launch",
        now=now,
        object_type="campaign",
        object_id=campaign["slug"],
        detail=detail,
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


# ---- the console: plan, launch and change campaigns, each audited -------------------------------

MAX_NAME_CHARS = 100
MAX_REASON_CHARS = 300


@dataclass
class LaunchPlan:
    """A launch as the coordinator filled it in, checked before anything is written."""

    name: str
    audience_names: list[str]
    start: str  # as typed (the clinic's local time), kept for the confirm form
    starts_at: datetime | None  # None: now
    sandbox: bool
    slug: str | None  # what it would be called; None when the name will not do
    errors: list[str]  # what stops this launch whatever the sending mode
    checks: list[Check]  # the live-send preflight, item by item
    live: bool  # emails really reach people: then every check must pass
    delivery: str  # where the emails go, in words

    @property
    def blocked_by_preflight(self) -> bool:
        return self.live and any(not check.ok for check in self.checks)

    @property
    def can_launch(self) -> bool:
        return not self.errors and not self.blocked_by_preflight


def delivery_words(settings: Settings, sandbox: bool) -> str:
    from campaign.campaigns import is_local_dev_host

    if settings.sendgrid_api_key is None:
        return "the outbox folder on the server: nothing is delivered to anyone"
    if is_local_dev_host(settings.sendgrid_api_host):
        return "the local SendGrid test server: nothing is delivered to anyone"
    if sandbox or settings.sandbox:
        return "SendGrid's sandbox: SendGrid checks each email and delivers none"
    return "SendGrid, live: the emails reach real people"


def parse_start(text: str, timezone: str) -> datetime | None:
    """A start typed as the clinic's local date and time (YYYY-MM-DDTHH:MM, what a datetime
    field sends); blank is now. Raises ValueError saying what to type."""
    from zoneinfo import ZoneInfo

    text = text.strip()
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"The start {text!r} is not a date and time; use e.g. 2026-03-02T09:00.") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(timezone))
    return moment


def plan_launch(
    store: Store,
    settings: Settings,
    audiences: list[Audience],
    *,
    name: str,
    audience_names: list[str],
    start: str,
    sandbox: bool,
) -> LaunchPlan:
    """Everything a launch would do and every problem with it, before anything is written."""
    from campaign.app.overview import cached_lint_errors
    from campaign.approval import unapproved
    from campaign.campaigns import CampaignError, check_launch, preflight_checks
    from campaign.render import Renderer

    name = " ".join(name.split())
    errors, slug, starts_at = [], None, None
    known = [a.name for a in audiences]
    chosen = [n for n in known if n in audience_names]  # in priority order, each once
    if not name:
        errors.append("Give the campaign a name, e.g. “Spring 2026”.")
    elif len(name) > MAX_NAME_CHARS:
        errors.append(f"The name is longer than {MAX_NAME_CHARS} characters.")
    if not chosen:
        errors.append("Choose at least one audience.")
    if name and len(name) <= MAX_NAME_CHARS and chosen:
        try:
            slug = check_launch(store, audiences, name=name, audience_names=chosen)
        except CampaignError as problem:
            errors.append(str(problem)[:1].upper() + str(problem)[1:] + ".")
    try:
        starts_at = parse_start(start, settings.clinic.timezone)
    except ValueError as problem:
        errors.append(str(problem))
    templates = [st.template for a in audiences if a.name in chosen for st in a.steps]
    renderer = Renderer(settings.templates_dir, settings.clinic)
    checks = preflight_checks(
        settings,
        lint_errors=cached_lint_errors(settings, templates),
        unapproved=unapproved(store, renderer, templates),
    )
    live = is_live(settings) and not sandbox
    return LaunchPlan(
        name,
        chosen,
        start.strip(),
        starts_at,
        sandbox,
        slug,
        errors,
        checks,
        live,
        delivery_words(settings, sandbox),
    )


class LaunchRefused(ValueError):
    """The plan has errors, or a live launch fails the preflight."""


def launch_planned(
    store: Store,
    actor: Actor,
    settings: Settings,
    audiences: list[Audience],
    plan: LaunchPlan,
    now: datetime,
) -> Launched:
    """Launch what the coordinator confirmed (re-checked now), audited (by launch_campaign).
    Raises LaunchRefused."""
    from campaign.campaigns import CampaignError

    if not plan.can_launch:
        raise LaunchRefused("This launch has problems (listed on the page); nothing was launched.")
    try:
        launched = launch_campaign(
            store,
            settings,
            audiences,
            name=plan.name,
            audience_names=plan.audience_names,
            starts_at=plan.starts_at,
            sandbox=plan.sandbox,
            now=now,
            actor=actor,
        )
    except (PreflightFailed, CampaignError) as problem:
        raise LaunchRefused(str(problem)) from None
    return launched


def change_campaign(
    store: Store,
    actor: Actor,
    slug: str,
    action: str,
    *,
    reason: str = "",
    now: datetime,
) -> dict:
    """Pause (a reason is required), resume or stop a campaign, and audit it. Raises
    CampaignError saying why it cannot."""
    from campaign.app.activity import record
    from campaign.campaigns import CampaignError, change_state

    reason = " ".join(reason.split())
    if action == "pause" and not reason:
        raise CampaignError("Say why you pause it: the reason shows on the overview.")
    if len(reason) > MAX_REASON_CHARS:
        raise CampaignError(f"The reason is longer than {MAX_REASON_CHARS} characters.")
    campaign = change_state(store, slug, action, reason or None)
    record(
        store.engine,
        actor,
        f"campaign.{action}",
        now=now,
        object_type="campaign",
        object_id=campaign["slug"],
        detail=reason,
    )
    return campaign


def campaign_list(store: Store, settings: Settings, now: datetime) -> list[dict]:
    """Every campaign with its state and counts (campaigns.status), newest first, with its
    start as a time (`starts`, None: from launch) and its leads (`leads`, every enrollment)."""
    from campaign.campaigns import status

    rows = []
    for row in reversed(status(store, settings, now)):
        starts = datetime.fromisoformat(row["starts_at"]) if row["starts_at"] else None
        leads = sum(a["enrolled"] for a in row["per_audience"].values())
        rows.append({**row, "starts": starts, "leads": leads})
    return rows


def export_report_csv(
    store: Store,
    accounts: AccountStore,
    actor: Actor,
    audiences: list[Audience],
    campaign: str | None,
    now: datetime,
) -> str:
    """The report (one campaign or all) as formula-safe CSV, the same rows as `campaign report
    --format csv`; the download is audited. Raises LookupError for an unknown campaign."""
    from campaign.accounts import audit
    from campaign.report import to_csv

    report = campaign_report(store, audiences, campaign, now)
    audit(
        accounts,
        actor,
        "report.export",
        now=now,
        object_type="campaign" if campaign else "",
        object_id=campaign or "",
        detail=f"{len(report.rows)} rows",
    )
    return to_csv(report)
