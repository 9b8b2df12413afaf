"""/console/campaigns: every campaign with its state; launch (the form, then the preflight
checklist, then the confirm), pause with a reason, resume, stop (confirmed), and a test email
to one's own address. Every change is audited by the use case it calls."""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.responses import Response
from starlette.routing import Route

from campaign.app.audiences import day_number
from campaign.app.campaigns import (
    LaunchRefused,
    campaign_list,
    change_campaign,
    launch_planned,
    plan_launch,
)
from campaign.app.delivery import UnsentTestEmail, send_test_audited
from campaign.campaigns import CampaignError
from campaign.console.pages import PageRequest, require
from campaign.console.shared import audiences_of, page_or_problem
from campaign.runtime import transport_label

DONE = {
    "launched": "Launched {campaign}.",
    "pause": "Paused {campaign}. Nothing is sent for it until it is resumed.",
    "resume": "Resumed {campaign}. Overdue emails go out one per lead per tick, inside the send window.",
    "stop": "Stopped {campaign} for good; its leads left their sequences.",
    "test_sent": "Sent a test of {email} to your address, {to}.",
}


def _notices(page: PageRequest, campaigns: list[dict], steps: list[dict]) -> list[dict]:
    """The banner after a redirect, from known values only (nothing typed is echoed)."""
    code = page.query.get("done", "")
    slugs = {c["campaign"] for c in campaigns}
    keys = {s["value"] for s in steps}
    campaign, email = page.query.get("campaign", ""), page.query.get("email", "")
    if (
        code not in DONE
        or (code != "test_sent" and campaign not in slugs)
        or (code == "test_sent" and email not in keys)
    ):
        return []
    return [{"kind": "ok", "text": DONE[code].format(campaign=campaign, email=email, to=page.user.email)}]


def _steps(audiences) -> list[dict]:
    return [
        {"value": f"{a.name}/{s.key}", "label": f"{a.name} · {s.key} (day {day_number(s.delay)})"}
        for a in audiences
        for s in a.steps
    ]


def _list_page(page: PageRequest, *, error: str = "", status: int = 200) -> Response:
    audiences = audiences_of(page)
    campaigns = campaign_list(page.store, page.settings, page.now)
    steps = _steps(audiences)
    banners = _notices(page, campaigns, steps) + ([{"kind": "error", "text": error}] if error else [])
    return page.render(
        "campaigns.html",
        title="Campaigns",
        campaigns=campaigns,
        steps=steps,
        transport=transport_label(page.settings),
        banners=banners,
        status=status,
    )


@require("overview.view")
@page_or_problem
def campaigns(page: PageRequest) -> Response:
    return _list_page(page)


def _plan(page: PageRequest, values):
    return plan_launch(
        page.store,
        page.settings,
        audiences_of(page),
        name=values.get("name", "")[:500],
        audience_names=values.getlist("audiences"),
        start=values.get("start", "")[:40],
        sandbox=values.get("sandbox", "") == "yes",
    )


def _launch_page(page: PageRequest, plan, *, error: str = "", status: int = 200) -> Response:
    return page.render(
        "campaign_launch.html",
        title="Launch a campaign",
        audiences=audiences_of(page),
        plan=plan,
        timezone=page.settings.clinic.timezone,
        banners=[{"kind": "error", "text": error}] if error else [],
        status=status,
    )


@require("campaigns.launch")
@page_or_problem
def launch_form(page: PageRequest) -> Response:
    """The form; with ?check=1 (the form's own submit) also the checklist and the confirm button."""
    plan = _plan(page, page.query) if page.query.get("check") else None
    return _launch_page(page, plan, status=400 if plan and plan.errors else 200)


@require("campaigns.launch")
@page_or_problem
def launch_confirm(page: PageRequest) -> Response:
    plan = _plan(page, page.form)
    try:
        launched = launch_planned(page.store, page.actor, page.settings, audiences_of(page), plan, page.now)
    except LaunchRefused as refused:
        return _launch_page(page, _plan(page, page.form), error=str(refused), status=400)
    return page.redirect(
        "/campaigns?" + urlencode({"done": "launched", "campaign": launched.campaign["slug"]})
    )


def _change(page: PageRequest, action: str) -> Response:
    slug = page.request.path_params["slug"]
    try:
        changed = change_campaign(
            page.store, page.actor, slug, action, reason=page.field("reason"), now=page.now
        )
    except CampaignError as problem:
        return _list_page(page, error=str(problem), status=400)
    return page.redirect("/campaigns?" + urlencode({"done": action, "campaign": changed["slug"]}))


@require("campaigns.pause")
@page_or_problem
def pause(page: PageRequest) -> Response:
    return _change(page, "pause")


@require("campaigns.resume")
@page_or_problem
def resume(page: PageRequest) -> Response:
    return _change(page, "resume")


def _campaign_or_404(page: PageRequest):
    slug = page.request.path_params["slug"]
    found = next(
        (c for c in campaign_list(page.store, page.settings, page.now) if c["campaign"] == slug), None
    )
    if found is None:
        return None, page.render(
            "error.html", title="Not found", message=f"There is no campaign {slug!r}.", status=404
        )
    return found, None


@require("campaigns.stop")
def stop_form(page: PageRequest) -> Response:
    campaign, missing = _campaign_or_404(page)
    if missing:
        return missing
    return page.render("campaign_stop.html", title=f"Stop {campaign['name']}?", campaign=campaign)


@require("campaigns.stop")
@page_or_problem
def stop(page: PageRequest) -> Response:
    if page.field("confirm") != "yes":
        campaign, missing = _campaign_or_404(page)
        if missing:
            return missing
        message = "Confirm with the button on this page to stop the campaign."
        return page.render(
            "campaign_stop.html",
            title=f"Stop {campaign['name']}?",
            campaign=campaign,
            banners=[{"kind": "error", "text": message}],
            status=400,
        )
    return _change(page, "stop")


@require("test_send")
@page_or_problem
def test_send(page: PageRequest) -> Response:
    audience, _, step = page.field("email").partition("/")
    try:
        send_test_audited(
            page.settings,
            page.store,
            page.actor,
            audiences_of(page),
            audience=audience,
            step=step,
            to=page.user.email,
            first_name=(page.user.name.split() or [""])[0],
            now=page.now,
        )
    except (ValueError, LookupError, UnsentTestEmail) as problem:
        return _list_page(page, error=f"The test email was not sent: {problem}", status=400)
    query = {"done": "test_sent", "email": f"{audience}/{step}"}
    return page.redirect("/campaigns?" + urlencode(query))


routes = [
    Route("/campaigns", campaigns, methods=["GET"]),
    Route("/campaigns/launch", launch_form, methods=["GET"]),
    Route("/campaigns/launch", launch_confirm, methods=["POST"]),
    Route("/campaigns/test-send", test_send, methods=["POST"]),
    Route("/campaigns/{slug}/pause", pause, methods=["POST"]),
    Route("/campaigns/{slug}/resume", resume, methods=["POST"]),
    Route("/campaigns/{slug}/stop", stop_form, methods=["GET"]),
    Route("/campaigns/{slug}/stop", stop, methods=["POST"]),
]
