"""/console/reports: the funnel per campaign, audience and step (the numbers of `campaign
report`), a chart per audience, and the CSV download (audited)."""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.responses import Response
from starlette.routing import Route

from campaign.app.campaigns import campaign_report, export_report_csv
from campaign.console.charts import funnel_chart
from campaign.console.pages import PageRequest, require
from campaign.console.shared import audiences_of, page_or_problem
from campaign.report import COUNTS, FUNNEL


def _campaign(page: PageRequest) -> str | None:
    return page.query.get("campaign", "")[:64] or None


@require("reports.view")
@page_or_problem
def reports(page: PageRequest) -> Response:
    chosen = _campaign(page)
    try:
        report = campaign_report(page.store, audiences_of(page), chosen, page.now)
    except LookupError:
        message = f"There is no campaign {chosen!r}."
        return page.render("error.html", title="Not found", message=message, status=404)
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in report.rows:
        groups.setdefault((row["campaign"], row["audience"]), []).append(row)
    sections = [
        {
            "campaign": campaign,
            "audience": audience,
            "rows": rows,
            "chart": funnel_chart(rows),
            "median": report.median_days_to_booking.get((campaign, audience)),
        }
        for (campaign, audience), rows in groups.items()
    ]
    no_events = any(r["sent"] for r in report.rows) and not any(
        r["delivered"] or r["bounced"] for r in report.rows
    )
    return page.render(
        "reports.html",
        title="Reports",
        sections=sections,
        counts=COUNTS,
        funnel=FUNNEL,
        campaigns=[c["slug"] for c in page.store.campaigns()],
        chosen=chosen or "",
        download=urlencode({"campaign": chosen}) if chosen else "",
        no_events=no_events,
    )


@require("reports.view")
@page_or_problem
def reports_csv(page: PageRequest) -> Response:
    chosen = _campaign(page)
    try:
        text = export_report_csv(page.store, page.accounts, page.actor, audiences_of(page), chosen, page.now)
    except LookupError:
        return Response(f"There is no campaign {chosen!r}.\n", status_code=404, media_type="text/plain")
    name = f"report-{chosen or 'all'}-{page.now:%Y%m%d-%H%M}.csv"
    return Response(
        text,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


routes = [
    Route("/reports", reports, methods=["GET"]),
    Route("/reports.csv", reports_csv, methods=["GET"]),
]
