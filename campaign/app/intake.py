"""The lead intake: every way a lead arrives (a CSV file, the lead API; later the sign-up form)
goes through here, so the same answers give the same stored lead.

`prepare` is the one per-lead rule: raw text per field -> validated, normalized lead (anxiety
answer mapped, consent read, time zone resolved) with the proof of how its consent was given.
The store keeps it (proof written when consent is given): row by row for the API's few leads,
set-based for a file's many (the same rules, in SQL); `describe` says where
each lead stands: its audience (the same `match_audience` the tick enrolls by), its status, and
when its first email is planned, or why none is.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

from campaign.accounts import Actor
from campaign.audiences import Audience, match_audience
from campaign.lead_fields import LEAD_FIELDS, InvalidLead, normalize_lead
from campaign.leads import LeadFile, RejectedRow
from campaign.models import ConsentProof, Lead
from campaign.settings import Settings
from campaign.store import ALL_AUDIENCES, FileImport, Incoming, Staged, Store, Upserted, email_hash
from campaign.store.accounts import AuditEntry
from campaign.store.lead_import import STAGE_CHUNK


class UnknownLead(LookupError):
    """No lead has that address."""


@dataclass(frozen=True)
class Submission:
    """One lead as it arrived: raw text per field, and where from (`via`: csv, api, form;
    `ref`: "leads.csv row 12", the token's name, the form's key)."""

    values: Mapping[str, str | None]
    via: str
    ref: str
    problems: Mapping[str, str] = field(default_factory=dict)  # found while reading it (a list ...)


_GIVEN = frozenset(LEAD_FIELDS)


def prepare(submission: Submission, *, default_timezone: str, strict: bool) -> Incoming:
    """Validate and normalize one lead; InvalidLead names each bad field (`strict`: every
    unreadable field; else only the address). An existing lead keeps the fields not given."""
    try:
        normalized = normalize_lead(submission.values, default_timezone=default_timezone, strict=strict)
    except InvalidLead as exc:
        raise InvalidLead({**submission.problems, **exc.problems}) from None
    if submission.problems:
        raise InvalidLead(dict(submission.problems))
    proof = ConsentProof(
        via=submission.via,
        ref=submission.ref,
        version=normalized.evidence.version,
        client=normalized.evidence.client,
    )
    given = _GIVEN.intersection(submission.values) | {"email"}
    return Incoming(normalized.lead, proof, given)


# ---- a CSV file --------------------------------------------------------------------------------


def take_file(
    store: Store | Callable[[], Store],
    lead_file: LeadFile,
    name: str,
    now: datetime,
    *,
    on_reject: Callable[[RejectedRow], None],
    on_chunk: Callable[[int], None] | None = None,
    dry_run: bool = False,
    chunk: int = STAGE_CHUNK,
    then: Callable[[Store, FileImport], None] | None = None,
) -> FileImport | None:
    """A lead file's rows, read one at a time, each through `prepare` (leniently: only a bad
    address rejects a row; `on_reject` gets it with the reason), the taken ones into the
    store's set-based import, where each address's last row wins. Proof of consent names
    `name` and the row. Fields the file has no column for are kept on existing leads.

    `store` may be an opener: it is called only once a row is taken (a file of rejects alone
    creates no database), and the store it returns is closed here. None: no row was taken.
    `dry_run`: counted, nothing written. `chunk`: rows staged at a time. `then(store, result)`
    runs in the open store once the rows are in (the import's audit entry)."""

    def taken() -> Iterator[Staged]:
        for row_number, cells, values in lead_file.records():
            submission = Submission(values, "csv", f"{name} row {row_number}")
            try:
                item = prepare(submission, default_timezone=lead_file.default_timezone, strict=False)
            except InvalidLead as exc:
                on_reject(RejectedRow(row_number, tuple(cells), str(exc)))
                continue
            lead_file.check_timezone(row_number, values)
            yield Staged(row_number, item.lead, item.proof)

    rows = taken()
    first = next(rows, None)
    if first is None:
        return None
    opened = store if isinstance(store, Store) else store()
    try:
        result = opened.import_leads(
            itertools.chain([first], rows),
            now,
            columns=lead_file.fields,
            chunk=chunk,
            on_chunk=on_chunk,
            dry_run=dry_run,
        )
        if then is not None:
            then(opened, result)
        return result
    finally:
        if opened is not store:
            opened.close()


# ---- the API: a few leads, each answered -------------------------------------------------------


@dataclass
class LeadOutcome:
    """The answer for one submitted lead: taken (created, updated or unchanged) with where it
    stands, or refused with one message per bad field."""

    outcome: str  # created, updated, unchanged, invalid
    id: str | None = None  # the lead's opaque public id
    audience: str | None = None
    campaign: str | None = None
    status: str | None = None
    first_email_at: datetime | None = None
    first_email_reason: str | None = None  # why first_email_at is null
    problems: dict[str, str] = field(default_factory=dict)


# Upserts leads with an audit row each, in one transaction: the store's `intake_leads`, or a
# writer that shares a transaction among concurrent requests (campaign.api.group_commit).
Write = Callable[[list[Incoming], datetime, Callable[[Upserted], AuditEntry]], list[Upserted]]


def take_leads(
    store: Store,
    audiences: list[Audience],
    submissions: list[Submission],
    now: datetime,
    *,
    default_timezone: str,
    actor: Actor,
    write: Write | None = None,
    unconfirmed: bool = False,
) -> list[LeadOutcome]:
    """Each submission validated (a bad one never sinks the rest), the good ones upserted in one
    transaction with an audit row each (by `actor`; no anxiety type), then described.
    `unconfirmed`: a new lead waits for its double opt-in (CAMPAIGN_DOUBLE_OPT_IN)."""
    results: list[LeadOutcome | None] = []
    incoming: list[Incoming] = []
    for submission in submissions:
        try:
            item = prepare(submission, default_timezone=default_timezone, strict=True)
            incoming.append(replace(item, unconfirmed=True) if unconfirmed else item)
            results.append(None)
        except InvalidLead as exc:
            results.append(LeadOutcome("invalid", problems=exc.problems))

    def audit(upserted: Upserted) -> AuditEntry:
        lead = upserted.lead
        return AuditEntry(
            at=now,
            actor=actor.name[:320],
            role=actor.role[:16],
            client=actor.client[:100],
            action=f"lead.{upserted.outcome}",
            object_type="lead",
            object_id=lead.public_id,
            detail=f"via {actor.role}; consent {'yes' if lead.consent else 'no'}",
        )

    stored = (
        {u.lead.email: u for u in (write or store.intake_leads)(incoming, now, audit)} if incoming else {}
    )
    created = {u.lead.id for u in stored.values() if u.outcome == "created"}
    described = describe(store, audiences, [u.lead for u in stored.values()], now, created=created)
    taken = iter(incoming)
    for i, result in enumerate(results):
        if result is None:
            upserted = stored[next(taken).lead.email]
            results[i] = LeadOutcome(upserted.outcome, **described[upserted.lead.id])
    return results  # type: ignore[return-value]  (every None was filled)


# ---- where leads stand -------------------------------------------------------------------------


def describe(
    store: Store,
    audiences: list[Audience],
    leads: Iterable[Lead],
    now: datetime,
    created: Collection[int] = frozenset(),
) -> dict[int, dict]:
    """lead id -> id, audience, campaign, status, first_email_at and first_email_reason (why it
    is null), in a few queries for any number of leads. A lead not yet enrolled is judged as the
    next tick would judge it (`engine.enroll_new`): a planned first email is the welcome the next
    tick enrolls it for, at the first moment its send window is open."""
    from campaign.engine import first_due  # the tick's own rule for the first email's time

    leads = list(leads)
    enrolled = store.standing_of([lead.id for lead in leads if lead.id not in created])
    hashes = {lead.id: email_hash(lead.email, store.secret_key) for lead in leads}
    suppressed = store.suppressed_hashes(hashes.values())
    active = store.active_campaigns(now) if len(enrolled) < len(leads) else []
    found = {}
    for lead in leads:
        facts = {"id": lead.public_id, "audience": None, "campaign": None, "first_email_at": None}
        enrollment = enrolled.get(lead.id)
        if enrollment is not None:
            found[lead.id] = {**facts, **_enrolled(enrollment)}
            continue
        audience = match_audience(audiences, lead)
        status, note = _not_enrolled(lead, hashes[lead.id] in suppressed, audience)
        campaign = None
        if note is None:
            campaign = next((c for c in active if _includes(c, audience)), None)
            if campaign is None:
                note = "its audience is in no active campaign"
        found[lead.id] = {
            **facts,
            "audience": audience.name if audience else None,
            "campaign": campaign["slug"] if campaign else None,
            "status": status,
            "first_email_at": first_due(audience, now, lead.timezone) if campaign else None,
            "first_email_reason": note,
        }
    return found


def _enrolled(enrollment: dict) -> dict:
    """An enrolled lead: its first email went at first_sent_at, or is due at next_due_at."""
    state = enrollment["state"]
    exited = f"exited ({enrollment['exit_reason']})"
    status = {"active": "enrolled", "finished": "finished"}.get(state, exited)
    first_at = enrollment["first_sent_at"] or (enrollment["next_due_at"] if state == "active" else None)
    return {
        "audience": enrollment["audience"],
        "campaign": enrollment["campaign"],
        "status": status,
        "first_email_at": first_at,
        "first_email_reason": None if first_at else f"{status} before any email went",
    }


def _not_enrolled(lead: Lead, suppressed: bool, audience: Audience | None) -> tuple[str, str | None]:
    """A lead without an enrollment: its status, and why no email is planned (None: one is)."""
    if lead.unsubscribed_at is not None:
        return "unsubscribed", "unsubscribed"
    if lead.booked:
        return "booked", "booked a consultation"
    if suppressed:
        return "suppressed", "the address is suppressed (a bounce, a spam report, or forgotten)"
    if not lead.consent:
        return "waiting for consent", "no consent"
    if lead.unconfirmed_since is not None:
        return "waiting for confirmation", "the address is not confirmed yet (double opt-in)"
    if audience is None:
        return "not yet enrolled", "no audience matches this lead"
    return "not yet enrolled", None


def _includes(campaign: dict, audience: Audience) -> bool:
    return campaign["audiences"] == ALL_AUDIENCES or audience.name in campaign["audiences"].split(",")


def consent_record(lead: Lead) -> dict:
    """How this lead's consent was given, as `campaign timeline`, `campaign leads --format json`
    and the API show it."""
    proof = lead.consent_proof
    return {
        "given": lead.consent,
        "at": lead.consent_at.isoformat() if lead.consent_at else None,
        "via": proof.via if proof else None,
        "ref": proof.ref if proof else None,
        "version": (proof.version or None) if proof else None,
        "client": (proof.client or None) if proof else None,
    }


def lead_status(
    store: Store, settings: Settings, audiences: list[Audience], email: str, now: datetime
) -> dict:
    """One lead for a CRM: where it stands, its consent, its steps sent and planned (from the
    ledger and the schedule; never the raw events). UnknownLead for an unknown address."""
    from campaign.app.leads import lead_timeline  # that module imports this one

    lead = store.lead_by_email(email)
    if lead is None:
        raise UnknownLead("no lead with that address")
    try:
        steps = lead_timeline(store, settings, lead.email, now).steps
    except KeyError:
        raise  # a bug, not "no audience"
    except LookupError:  # no audience matches it: nothing is planned
        steps = []
    facts = describe(store, audiences, [lead], now)[lead.id]
    return {**facts, "email": lead.email, "consent": consent_record(lead), "steps": steps}
