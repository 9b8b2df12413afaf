"""/console/: the overview."""

from __future__ import annotations

from starlette.responses import Response
from starlette.routing import Route

from campaign.console.pages import PageRequest, require


@require("overview.view")
def overview(page: PageRequest) -> Response:
    return page.render("overview.html", title="Overview")


routes = [Route("/", overview, methods=["GET"])]
