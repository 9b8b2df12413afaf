"""/console/activity: the audit log, filtered and paged by key; /console/activity.csv downloads it."""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.responses import Response
from starlette.routing import Route

from campaign.app.activity import AuditFilter, activity_page, audit_filter, export_activity_csv
from campaign.console.pages import PageRequest, require

FILTER_FIELDS = ("actor", "action", "since", "until")


def _filter(page: PageRequest) -> tuple[AuditFilter, str]:
    """The filter from the query string, and the problem with it ('' when none)."""
    values = [page.query.get(name, "")[:320] for name in FILTER_FIELDS]
    try:
        return audit_filter(*values, timezone=page.settings.clinic.timezone), ""
    except ValueError as problem:
        return AuditFilter(), str(problem)


def _before(page: PageRequest) -> int | None:
    text = page.query.get("before", "")
    return int(text) if text.isdigit() and len(text) < 19 else None


@require("activity.view")
def activity(page: PageRequest) -> Response:
    wanted, problem = _filter(page)
    found = activity_page(page.accounts, wanted, _before(page))
    given = {name: page.query.get(name, "") for name in FILTER_FIELDS if page.query.get(name)}
    older = urlencode({**given, "before": found.next_before_id}) if found.next_before_id else None
    return page.render(
        "activity.html",
        title="Activity",
        entries=found.entries,
        filters={name: page.query.get(name, "") for name in FILTER_FIELDS},
        problem=problem,
        older=older,
        newest=urlencode(given) if _before(page) else None,
        download=urlencode(given),
        status=400 if problem else 200,
    )


@require("activity.view")
def activity_csv(page: PageRequest) -> Response:
    wanted, problem = _filter(page)
    if problem:
        return Response(problem + "\n", status_code=400, media_type="text/plain")
    text = export_activity_csv(page.accounts, wanted, actor=page.actor, now=page.now)
    name = f"activity-{page.now:%Y%m%d-%H%M}.csv"
    return Response(
        text,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


routes = [
    Route("/activity", activity, methods=["GET"]),
    Route("/activity.csv", activity_csv, methods=["GET"]),
]
