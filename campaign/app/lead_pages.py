"""Lead use cases for the console: the lead list (search, filters, pages by key), one lead's
page (fields, consent, the audience rule that matched and why, the timeline with delivery,
events), and its actions (booked, unsubscribe, forget after typing the address)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from campaign.app.leads import audit_lead, lead_timeline
from campaign.audiences import Audience, AudienceFileError, Verdict, explain_match
from campaign.models import LeadIn
from campaign.settings import Settings
from campaign.store import LeadQuery, Store, email_hash
from campaign.store.browse import LEAD_STATUSES
from campaign.store.leads import lead_from_row

if TYPE_CHECKING:
    from campaign.accounts import Actor

PAGE_SIZE = 50
MAX_SEARCH = 200

STATUS_WORDS = {
    "in_sequence": "In a sequence",
    "finished": "Finished the sequence",
    "stopped": "Stopped (a bounce or complaint)",
    "booked": "Booked a consultation",
    "unsubscribed": "Unsubscribed",
    "not_enrolled": "Not yet in a sequence",
    "no_consent": "No consent to email",
}
assert set(STATUS_WORDS) == set(LEAD_STATUSES)

# The delivery of one email, from its webhook events: the most telling kind wins.
DELIVERY_ORDER = (
    "complained",
    "bounced",
    "rejected",
    "clicked",
    "opened",
    "delivered",
    "deferred",
    "processed",
)
DELIVERY_WORDS = {
    "complained": "marked as spam",
    "bounced": "bounced",
    "rejected": "refused by SendGrid",
    "clicked": "delivered, link clicked",
    "opened": "delivered, opened",
    "delivered": "delivered",
    "deferred": "delayed by the receiver",
    "processed": "accepted by SendGrid",
}


# ---- the list -------------------------------------------------------------------------------


@dataclass(frozen=True)
class LeadFilter:
    """The list's filter as the form gives it (each '' for any)."""

    text: str = ""
    audience: str = ""
    campaign: str = ""  # a campaign's slug
    status: str = ""

    def given(self) -> dict[str, str]:
        return {k: v for k, v in vars(self).items() if v}


@dataclass
class LeadRow:
    public_id: str
    name: str
    email: str
    audience: str
    campaign: str
    status: str  # in words
    last_email_at: datetime | None


@dataclass
class LeadList:
    rows: list[LeadRow]
    next_after: str | None  # the public id to continue after; None on the last page
    problems: list[str] = field(default_factory=list)  # filter values that are not known


def lead_query(
    wanted: LeadFilter, audiences: list[Audience], campaigns: list[dict]
) -> tuple[LeadQuery, list[str]]:
    """The store's query for a filter; unknown audiences, campaigns or statuses are dropped
    with a problem naming them (a stale bookmark still lists leads)."""
    problems = []
    audience = wanted.audience if wanted.audience in {a.name for a in audiences} else None
    if wanted.audience and audience is None:
        problems.append(f"There is no audience called {wanted.audience!r}; showing every audience.")
    campaign_id = next((c["id"] for c in campaigns if c["slug"] == wanted.campaign), None)
    if wanted.campaign and campaign_id is None:
        problems.append(f"There is no campaign {wanted.campaign!r}; showing every campaign.")
    status = wanted.status if wanted.status in STATUS_WORDS else None
    if wanted.status and status is None:
        problems.append(f"{wanted.status!r} is not a status; showing every status.")
    text = wanted.text.strip()[:MAX_SEARCH]
    return LeadQuery(text=text, audience=audience, campaign_id=campaign_id, status=status), problems


def list_leads(
    store: Store,
    wanted: LeadFilter,
    audiences: list[Audience],
    after: str | None = None,
    limit: int = PAGE_SIZE,
) -> LeadList:
    """One page of leads, newest first, continuing after the lead with public id `after`
    (from the first page when that lead is gone)."""
    query, problems = lead_query(wanted, audiences, store.campaigns())
    before_id = store.public_id_to_id(after) if after else None
    found = store.search_leads(query, before_id=before_id, limit=limit + 1)
    page, more = found[:limit], len(found) > limit
    latest = store.latest_enrollments([r["id"] for r in page], query)
    rows = [
        LeadRow(
            public_id=r["public_id"],
            name=f"{r['first_name']} {r['last_name']}".strip(),
            email=r["email"],
            audience=(latest.get(r["id"]) or {}).get("audience", ""),
            campaign=(latest.get(r["id"]) or {}).get("campaign", ""),
            status=status_words(r, latest.get(r["id"])),
            last_email_at=r["last_email_at"],
        )
        for r in page
    ]
    return LeadList(rows, page[-1]["public_id"] if more else None, problems)


def lead_status(lead: dict, enrollment: dict | None) -> str:
    """One of LEAD_STATUSES for a lead and its latest enrollment (the list's filter agrees)."""
    if lead["unsubscribed_at"] is not None:
        return "unsubscribed"
    if lead["booked"]:
        return "booked"
    if enrollment is not None:
        return {"active": "in_sequence", "finished": "finished"}.get(enrollment["state"], "stopped")
    return "not_enrolled" if lead["consent"] else "no_consent"


def status_words(lead: dict, enrollment: dict | None) -> str:
    status = lead_status(lead, enrollment)
    if status == "stopped" and enrollment and enrollment.get("exit_reason"):
        return f"Stopped: {enrollment['exit_reason']}"
    return STATUS_WORDS[status]


# ---- one lead -------------------------------------------------------------------------------


@dataclass
class TimelineRow:
    step: str
    day: int
    at: str  # the lead's local time, "2026-03-02 10:00"
    status: str  # sent, failed, unknown ... or planned
    delivery: str  # from the webhook events ('' when none)


@dataclass
class LeadDetail:
    public_id: str
    email: str
    name: str
    lead: LeadIn
    record: dict  # every column (times: booked_at, unsubscribed_at, created_at ...)
    suppressed: bool  # on the suppression list (a bounce, a complaint, or forgotten before)
    status: str  # in words
    enrollments: list[dict]
    verdicts: list[Verdict]  # audiences by priority up to the one the rules give today
    timeline: list[TimelineRow]
    timeline_note: str
    events: list[dict]  # kind, occurred_at, step

    @property
    def matched(self) -> str | None:
        return self.verdicts[-1].audience if self.verdicts and self.verdicts[-1].matched else None

    @property
    def enrolled_audience(self) -> str | None:
        return self.enrollments[-1]["audience"] if self.enrollments else None


def lead_detail(
    store: Store, settings: Settings, audiences: list[Audience], public_id: str, now: datetime
) -> LeadDetail | None:
    """Everything the lead page shows; None when no lead has this public id."""
    record = store.lead_record(public_id)
    if record is None:
        return None
    lead = lead_from_row(record)
    enrolled = store.lead_enrollments(lead.id)
    latest = enrolled[-1] if enrolled else None
    events = store.lead_events(lead.id)
    timeline, note = _timeline(store, settings, lead, latest, events, now)
    return LeadDetail(
        public_id=public_id,
        email=lead.email,
        name=f"{lead.first_name} {lead.last_name}".strip(),
        lead=lead,
        record=record,
        suppressed=bool(store.suppressed_hashes([email_hash(lead.email, store.secret_key)])),
        status=status_words(record, latest),
        enrollments=enrolled,
        verdicts=explain_match(audiences, lead),
        timeline=timeline,
        timeline_note=note,
        events=[{"kind": e["event"], "at": e["occurred_at"], "step": e["step_key"] or ""} for e in events],
    )


def delivery_of(kinds: set[str]) -> str:
    """The delivery of one email in words, from the kinds of its events ('' for none)."""
    kind = next((k for k in DELIVERY_ORDER if k in kinds), None)
    return DELIVERY_WORDS[kind] if kind else ""


def _timeline(
    store: Store, settings: Settings, lead, latest: dict | None, events: list[dict], now: datetime
) -> tuple[list[TimelineRow], str]:
    """The sent steps with their delivery, then the planned ones while any will be sent."""
    try:
        found = lead_timeline(store, settings, lead.email, now)
    except AudienceFileError:
        return [], "The audience files have problems (see Audiences), so no email can be planned."
    except LookupError:
        return [], "No audience takes this lead, so no email is planned."
    kinds: dict[str, set[str]] = {}
    for e in events:
        if latest is not None and e["enrollment_id"] == latest["id"] and e["step_key"]:
            kinds.setdefault(e["step_key"], set()).add(e["event"])
    tz = ZoneInfo(lead.timezone)
    sent = [r for r in found.steps if r["status"] not in ("planned", "if enrolled now")]
    planned = [r for r in found.steps if r["status"] in ("planned", "if enrolled now")]
    note = ""
    if lead.unsubscribed_at is not None or lead.booked:
        planned, note = (
            [],
            "No more emails: the lead " + ("unsubscribed." if lead.unsubscribed_at else "booked."),
        )
    elif latest is not None and latest["state"] != "active":
        why = "got every step" if latest["state"] == "finished" else f"stopped ({latest['exit_reason']})"
        planned, note = [], f"No more emails: the sequence {why}."
    elif latest is None and not lead.consent:
        planned, note = [], "No email until the lead consents."
    elif latest is None:
        note = "Not in a sequence yet: the planned times are those if the next tick enrolls the lead."
    rows = [
        TimelineRow(
            step=r["step"],
            day=r["day"],
            at=datetime.fromisoformat(r["at"]).astimezone(tz).strftime("%Y-%m-%d %H:%M"),
            status="planned" if r in planned else r["status"],
            delivery=delivery_of(kinds.get(r["step"], set())),
        )
        for r in sent + planned
    ]
    return rows, note


# ---- actions --------------------------------------------------------------------------------


class NotConfirmed(ValueError):
    """The typed address is not the lead's: nothing was done."""


def mark_lead_booked(store: Store, public_id: str, now: datetime, actor: Actor | None = None) -> bool:
    """Booked, and every active sequence ends, audited as `actor`; False when no lead has this
    public id."""
    record = store.lead_record(public_id)
    done = record is not None and store.mark_booked(record["email"], now)
    if done:
        audit_lead(store, actor, "booked", public_id, now)
    return done


def unsubscribe_lead(store: Store, public_id: str, now: datetime, actor: Actor | None = None) -> bool:
    """Unsubscribed (as by the lead's own link), every active sequence ends, audited as
    `actor`; False when no lead has this public id."""
    done = store.unsubscribe_lead(public_id, now) is not None
    if done:
        audit_lead(store, actor, "unsubscribed", public_id, now)
    return done


def forget_lead_confirmed(
    store: Store, public_id: str, typed_address: str, now: datetime, actor: Actor | None = None
) -> dict[str, int] | None:
    """Forget the lead once the typed address is its own (any case or surrounding spaces);
    None when no lead has this public id. Raises NotConfirmed otherwise."""
    record = store.lead_record(public_id)
    if record is None:
        return None
    if typed_address.strip().casefold() != record["email"]:
        raise NotConfirmed("The address you typed is not this lead's address. Nothing was deleted.")
    deleted = store.forget_lead(record["email"], now)
    audit_lead(store, actor, "forget", public_id, now, deleted=deleted)
    return deleted
