"""/console/leads: the lead list (search, filters, pages by key) and one lead's page, with its
actions (booked, unsubscribe, forget). A lead is named in URLs by its opaque public id, never
by its address. Each view of a lead's page and each action is in the audit log, by public id
only: the log never holds an address or an anxiety type."""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.responses import Response
from starlette.routing import Route

from campaign.accounts import audit
from campaign.app.intake import consent_record
from campaign.app.lead_pages import (
    STATUS_WORDS,
    LeadFilter,
    NotConfirmed,
    forget_lead_confirmed,
    lead_detail,
    list_leads,
    mark_lead_booked,
    unsubscribe_lead,
)
from campaign.audiences import read_audiences
from campaign.console.pages import PageRequest, require

FILTER_FIELDS = {"q": "text", "audience": "audience", "campaign": "campaign", "status": "status"}
NOTICES = {
    "booked": "Marked as booked: no more emails of their sequence.",
    "unsubscribed": "Unsubscribed: no more emails, as if they had clicked the link themselves.",
    "forgotten": "The lead was forgotten: everything held about them is deleted, and their address "
    "(kept only as a keyed hash) is never mailed again.",
}
GONE = "There is no such lead. It may have been forgotten."
# Where a consent came from (ConsentProof.via), before its reference (file and row, token, form).
CONSENT_SOURCES = {"csv": "Imported from", "api": "The lead API, token", "form": "The web form"}


@require("leads.view")
def leads(page: PageRequest) -> Response:
    values = {name: page.query.get(name, "")[:200] for name in FILTER_FIELDS}
    wanted = LeadFilter(**{FILTER_FIELDS[name]: value for name, value in values.items()})
    audiences, _ = read_audiences(page.settings.audiences_dir)  # the Audiences page names problems
    after = page.query.get("after", "")[:64] or None
    found = list_leads(page.store, wanted, audiences, after)
    given = {name: value for name, value in values.items() if value}
    return page.render(
        "leads.html",
        title="Leads",
        filters=values,
        audiences=[a.name for a in audiences],
        campaigns=page.store.campaigns(),
        statuses=STATUS_WORDS,
        found=found,
        first=urlencode(given) if after else None,
        more=urlencode({**given, "after": found.next_after}) if found.next_after else None,
        notice=NOTICES["forgotten"] if page.query.get("done") == "forgotten" else "",
    )


def _lead_page(page: PageRequest, public_id: str, *, error: str = "", status: int = 200) -> Response:
    audiences, _ = read_audiences(page.settings.audiences_dir)
    detail = lead_detail(page.store, page.settings, audiences, public_id, page.now)
    if detail is None:
        return page.render("error.html", title="No such lead", message=GONE, status=404)
    audit(page.accounts, page.actor, "lead.view", now=page.now, object_type="lead", object_id=public_id)
    code = page.query.get("done", "")
    return page.render(
        "lead.html",
        title=detail.name or detail.email,
        lead=detail,
        consent=consent_record(detail.lead),
        consent_sources=CONSENT_SOURCES,
        notice=NOTICES.get(code, "") if code != "forgotten" else "",
        error=error,
        status=status,
    )


@require("leads.view")
def lead(page: PageRequest) -> Response:
    return _lead_page(page, page.request.path_params["public_id"])


def _action(verb: str, act):
    """A lead action's handler: run `act(store, public_id, now)`, audit it, back to the lead."""

    @require("leads.manage")
    def handler(page: PageRequest) -> Response:
        public_id = page.request.path_params["public_id"]
        if not act(page.store, public_id, page.now, page.actor):  # audited by the use case
            return page.render("error.html", title="No such lead", message=GONE, status=404)
        return page.redirect(f"/leads/{public_id}?done={verb}")

    handler.__name__ = f"lead_{verb}"
    return handler


@require("leads.manage")
def lead_forget(page: PageRequest) -> Response:
    public_id = page.request.path_params["public_id"]
    try:
        deleted = forget_lead_confirmed(  # audited by the use case
            page.store, public_id, page.field("confirm_address"), page.now, page.actor
        )
    except NotConfirmed as refused:
        return _lead_page(page, public_id, error=str(refused), status=400)
    if deleted is None:
        return page.render("error.html", title="No such lead", message=GONE, status=404)
    return page.redirect("/leads?done=forgotten")


routes = [
    Route("/leads", leads, methods=["GET"]),
    Route("/leads/{public_id}", lead, methods=["GET"]),
    Route("/leads/{public_id}/booked", _action("booked", mark_lead_booked), methods=["POST"]),
    Route("/leads/{public_id}/unsubscribe", _action("unsubscribed", unsubscribe_lead), methods=["POST"]),
    Route("/leads/{public_id}/forget", lead_forget, methods=["POST"]),
]
