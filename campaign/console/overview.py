"""/console/: the overview (campaigns, the last ticks, what a live send would refuse)."""

from __future__ import annotations

from starlette.responses import Response
from starlette.routing import Route

from campaign.app.overview import overview as build_overview
from campaign.audiences import load_audiences
from campaign.console.pages import PageRequest, require


@require("overview.view")
def overview(page: PageRequest) -> Response:
    audiences = load_audiences(page.settings.audiences_dir)
    facts = build_overview(page.store, page.settings, audiences, page.now)
    kind = "error" if facts.live else "warning"
    prefix = "Live sends are refused until this is fixed: " if facts.live else "Before a live send: "
    banners = [{"kind": kind, "text": prefix + problem} for problem in facts.problems]
    return page.render("overview.html", title="Overview", overview=facts, banners=banners)


routes = [Route("/", overview, methods=["GET"])]
