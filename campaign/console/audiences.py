"""/console/audiences: who gets what: each audience's rule in words, its lead count, and its
sequence with the day of each email (campaign.app.audiences, as `campaign audiences`)."""

from __future__ import annotations

from starlette.responses import Response
from starlette.routing import Route

from campaign.app.audiences import audience_rows
from campaign.audiences import read_audiences
from campaign.console.pages import PageRequest, require


@require("audiences.view")
def audiences(page: PageRequest) -> Response:
    found, problems = read_audiences(page.settings.audiences_dir)
    described = {a.name: a for a in found}
    rows = [{**row, "about": described[row["audience"]]} for row in audience_rows(found, page.store)]
    return page.render("audiences.html", title="Audiences", rows=rows, problems=problems)


routes = [Route("/audiences", audiences, methods=["GET"])]
