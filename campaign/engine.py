"""The tick: enroll new leads, then send every step that is due at `now`.

Plain functions over a Context (store, audiences, renderer, transport). Prefect flows in
flows/ call these in batches; tests and benchmarks may call them directly. Every time decision
takes `now`; rules live in the pure modules (audiences, schedule, render).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from campaign.audiences import Audience, match_audience
from campaign.delivery import Transport
from campaign.models import OutboundEmail, SendResult, SendStatus
from campaign.render import Renderer, TemplateError
from campaign.schedule import as_utc, plan, step_time
from campaign.settings import Settings
from campaign.store import ALL_AUDIENCES, Claim, DueEnrollment, Store, email_hash
from campaign.tokens import unsubscribe_url

# A claim still unsettled after this long belongs to a run that died mid-send.
STALE_CLAIM = timedelta(minutes=15)


@dataclass
class Context:
    settings: Settings
    store: Store
    audiences: list[Audience]
    renderer: Renderer
    transport: Transport

    @property
    def audience_by_name(self) -> dict[str, Audience]:
        return {a.name: a for a in self.audiences}


@dataclass
class TickReport:
    """Counts only: no addresses, no health data (safe for logs and Prefect artifacts)."""

    now: datetime
    enrolled: Counter = field(default_factory=Counter)  # audience -> n
    sent: Counter = field(default_factory=Counter)  # (audience, step) -> n
    failed: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)
    unknown: Counter = field(default_factory=Counter)
    exited: Counter = field(default_factory=Counter)  # reason -> n
    finished: int = 0
    errors: list[str] = field(default_factory=list)  # template problems; never an address
    # Unknown sends: {"stale": claims of a dead run marked unknown, "confirmed": unknown ->
    # sent by an event, "resent": unknown sent again}.
    reconciled: Counter = field(default_factory=Counter)
    paused: list[str] = field(default_factory=list)  # why campaigns were paused in this tick

    def merge(self, other: TickReport) -> TickReport:
        for name in ("enrolled", "sent", "failed", "skipped", "unknown", "exited", "reconciled"):
            getattr(self, name).update(getattr(other, name))
        self.finished += other.finished
        self.errors.extend(e for e in other.errors if e not in self.errors)
        self.paused.extend(p for p in other.paused if p not in self.paused)
        return self

    def as_dict(self) -> dict:
        def flat(counter):
            return {"/".join(k) if isinstance(k, tuple) else k: v for k, v in sorted(counter.items())}

        return {
            "now": self.now.isoformat(),
            "enrolled": flat(self.enrolled),
            "sent": flat(self.sent),
            "failed": flat(self.failed),
            "skipped": flat(self.skipped),
            "unknown": flat(self.unknown),
            "exited": flat(self.exited),
            "finished": self.finished,
            "errors": self.errors,
            "reconciled": dict(sorted(self.reconciled.items())),
            "paused": self.paused,
            "totals": {
                "enrolled": sum(self.enrolled.values()),
                "sent": sum(self.sent.values()),
                "failed": sum(self.failed.values()),
                "skipped": sum(self.skipped.values()),
                "unknown": sum(self.unknown.values()),
            },
        }


def campaign_audiences(campaign: dict, ctx: Context) -> list[Audience]:
    if campaign["audiences"] == ALL_AUDIENCES:
        return ctx.audiences
    names = set(campaign["audiences"].split(","))
    return [a for a in ctx.audiences if a.name in names]


def first_due(audience: Audience, enrolled_at: datetime, tz: str) -> datetime:
    return step_time(
        audience.steps[0],
        enrolled_at=enrolled_at,
        last_email_at=None,
        window=audience.send_window,
        tz=ZoneInfo(tz),
        min_gap=audience.min_gap,
    )


# ---- enrollment --------------------------------------------------------------------------------


def enroll_new(ctx: Context, now: datetime) -> TickReport:
    """Put every consenting, reachable lead not yet in an active campaign into the first
    audience (by priority) that matches it. Walks leads by id in batches."""
    report = TickReport(now=now)
    for audience in ctx.audiences:  # live sequence edits: re-plan from the new steps
        ctx.store.refresh_sequence_version(audience.name, audience.version, now)
    for campaign in ctx.store.active_campaigns(now):
        audiences = campaign_audiences(campaign, ctx)
        after_id = 0
        while batch := ctx.store.unenrolled_leads(campaign["id"], after_id, ctx.settings.batch_size):
            after_id = batch[-1].id
            # Suppressed addresses (bounces, complaints, forgotten leads) are never enrolled.
            hashes = {lead.id: email_hash(lead.email, ctx.store.secret_key) for lead in batch}
            suppressed = ctx.store.suppressed_hashes(hashes.values())
            # A lead who is or was in an audience's sequence (any campaign) never joins it again.
            already = ctx.store.enrolled_audiences([lead.id for lead in batch])
            rows = []
            for lead in batch:
                audience = match_audience(ctx.audiences, lead)
                if audience is None or audience not in audiences or hashes[lead.id] in suppressed:
                    continue
                if audience.name in already[lead.id]:
                    continue
                rows.append(
                    {
                        "campaign_id": campaign["id"],
                        "lead_id": lead.id,
                        "audience": audience.name,
                        "audience_version": audience.version,
                        "enrolled_at": now,
                        "state": "active",
                        "next_due_at": first_due(audience, now, lead.timezone),
                    }
                )
                report.enrolled[audience.name] += 1
            ctx.store.add_enrollments(rows)
    return report


# ---- due sends -----------------------------------------------------------------------------------


def due_batches(ctx: Context, now: datetime) -> Iterator[list[DueEnrollment]]:
    """Enrollments due at `now` in active campaigns, in id order, one batch at a time.
    The active campaigns are read again before each batch: a campaign paused mid-tick (too
    many failures) sends nothing more."""
    after_id = 0
    while campaign_ids := [c["id"] for c in ctx.store.active_campaigns(now)]:
        batch = ctx.store.due_enrollments(campaign_ids, now, after_id, ctx.settings.batch_size)
        if not batch:
            return
        after_id = batch[-1].enrollment_id
        yield batch


def exit_reason(due: DueEnrollment, audience: Audience | None) -> str | None:
    lead = due.lead
    if lead.unsubscribed_at is not None:
        return "unsubscribed"
    if due.suppressed:
        return "suppressed"
    if lead.booked:
        return "booked"
    if not lead.consent:
        return "consent withdrawn"
    if audience is None:
        return "audience removed"
    return None


def send_due_batch(ctx: Context, batch: list[DueEnrollment], now: datetime) -> TickReport:
    """Plan each enrollment, claim the due steps in the ledger, render, send, settle."""
    report = TickReport(now=now)
    audiences = ctx.audience_by_name
    changes: list[dict] = []
    wanted: dict[int, tuple[DueEnrollment, Audience, str]] = {}
    leads_this_batch: set[int] = set()
    for due in batch:
        audience = audiences.get(due.audience)
        reason = exit_reason(due, audience)
        if reason:
            changes.append(
                {"id": due.enrollment_id, "state": "exited", "exit_reason": reason, "next_due_at": None}
            )
            report.exited[reason] += 1
            continue
        if due.lead.id in leads_this_batch:
            # Same lead due in two campaigns: one email now, the other waits out the gap.
            changes.append({"id": due.enrollment_id, "next_due_at": as_utc(now) + audience.min_gap})
            continue
        p = _plan(audience, due, due.sent_keys, due.lead.last_email_at, now)
        if p.finished:
            changes.append({"id": due.enrollment_id, "state": "finished", "next_due_at": None})
            report.finished += 1
        elif p.step is None:
            changes.append({"id": due.enrollment_id, "next_due_at": p.next_at})
        else:
            wanted[due.enrollment_id] = (due, audience, p.step.key)
            leads_this_batch.add(due.lead.id)
    ctx.store.update_enrollments(changes)

    claims = ctx.store.claim([(e, key) for e, (_, _, key) in wanted.items()], now, ctx.transport.name)
    send_claims(ctx, claims, wanted, now, report, release=ctx.store.release)
    return report


def send_claims(
    ctx: Context,
    claims: list[Claim],
    wanted: dict[int, tuple[DueEnrollment, Audience, str]],
    now: datetime,
    report: TickReport,
    release: Callable[[list[str]], object],
) -> None:
    """Render, send and settle claimed sends. What was never sent is handed to `release`
    (its claim goes, so the step is due again): emails the transport did not attempt after a
    stop, and retryable failures (5xx, network) that ran out of attempts.

    The transport's stops: a 401 (SendGridUnauthorized) settles what was sent, releases the
    rest and re-raises (the tick stops at once); TooManyFailures pauses the batch's
    campaigns with the reason, and their remaining due sends wait for a resume."""
    emails, results, lead_of_send = [], [], {}
    campaigns = {c["id"]: c for c in ctx.store.campaigns()} if claims else {}
    for claim in claims:
        due, audience, _ = wanted[claim.enrollment_id]
        try:
            emails.append(outbound(ctx, due, audience, claim, campaigns[due.campaign_id]))
            lead_of_send[claim.send_id] = (due.lead.id, due.lead.email)
        except TemplateError as exc:
            results.append(SendResult(send_id=claim.send_id, status=SendStatus.failed, error=str(exc)))
            if str(exc) not in report.errors:
                report.errors.append(str(exc))
    # Rendering first, then sending: measured faster than rendering while the senders run
    # (the renderer and the sender threads would fight over the GIL).
    stopped = None
    if emails:
        try:
            results.extend(
                ctx.transport.send_batch(
                    emails, before_send=lambda sid: ctx.store.is_reachable(*lead_of_send[sid])
                )
            )
        except Exception as exc:
            stopped = _batch_stop(exc)
            if stopped is None:
                raise  # unexpected: the claims stay 'claimed' and turn 'unknown' when stale
            results.extend(stopped.results)
    claim_of = {c.send_id: c for c in claims}
    final = [r for r in results if not _retry_later(r)]
    later = [r for r in results if _retry_later(r)]
    for r in later:
        due, audience, key = wanted[claim_of[r.send_id].enrollment_id]
        report.failed[(audience.name, key)] += 1
    settle(ctx, final, claim_of, wanted, now, report)
    not_sent = [r.send_id for r in later] + (list(stopped.not_sent) if stopped else [])
    if not_sent:
        release(not_sent)
    if stopped is None:
        return
    from campaign.delivery.sendgrid_transport import TooManyFailures

    if not isinstance(stopped, TooManyFailures):
        raise stopped
    count = getattr(ctx.transport, "consecutive_failures", None) or ctx.settings.max_consecutive_failures
    reason = f"paused after {count} consecutive send failures: {stopped}"
    campaign_ids = sorted({wanted[c.enrollment_id][0].campaign_id for c in claims})
    ctx.store.pause_campaigns(campaign_ids, reason)
    report.paused.extend(f"campaign {cid} {reason}" for cid in campaign_ids)


def _batch_stop(exc: Exception):
    """The transport's BatchStopped (results + not_sent), else None. Imported here so the
    outbox path never loads the SendGrid client."""
    from campaign.delivery.sendgrid_transport import BatchStopped

    return exc if isinstance(exc, BatchStopped) else None


def _retry_later(result: SendResult) -> bool:
    """A failure SendGrid never accepted and that may pass later (5xx, network): not final."""
    return result.status is SendStatus.failed and result.retryable


def _plan(audience: Audience, due: DueEnrollment, sent_keys, last_email_at, now):
    return plan(
        audience.steps,
        set(sent_keys),
        enrolled_at=due.enrolled_at,
        last_email_at=last_email_at,
        now=now,
        window=audience.send_window,
        tz=ZoneInfo(due.lead.timezone),
        min_gap=audience.min_gap,
    )


def outbound(
    ctx: Context, due: DueEnrollment, audience: Audience, claim: Claim, campaign: dict
) -> OutboundEmail:
    clinic = ctx.settings.clinic
    step = audience.step(claim.step_key)
    url = unsubscribe_url(
        ctx.settings.public_url, due.lead.public_id, ctx.settings.secret_key.get_secret_value()
    )
    lead = due.lead
    content = ctx.renderer.render(
        step.template,
        first_name=lead.first_name,
        unsubscribe_url=url,
        anxiety_type=lead.anxiety_type,
        prior_treatments=lead.prior_treatments,
    )
    return OutboundEmail(
        send_id=claim.send_id,
        to_email=due.lead.email,
        to_name=" ".join(p for p in (due.lead.first_name, due.lead.last_name) if p),
        from_email=clinic.sender_email,
        from_name=clinic.sender_name,
        reply_to=clinic.reply_to,
        subject=content.subject,
        preheader=content.preheader,
        html=content.html,
        text=content.text,
        unsubscribe_url=url,
        # Opaque: ESP metadata names no audience, and not the campaign's name either (names
        # of campaigns launched before names were checked may hold condition words). Events
        # link to sends by send id, never by category.
        category=f"campaign-{campaign['id']}",
        sandbox=campaign["sandbox"],
    )


def make_test_email(
    settings: Settings,
    renderer: Renderer,
    audience: Audience,
    step_key: str,
    to_email: str,
    first_name: str = "",
    anxiety_type: str | None = None,
    prior_treatments: int | None = None,
) -> OutboundEmail:
    """One email of a step for `campaign test-send`: marked as a test, with a random send id and
    no lead behind it (its unsubscribe link names no one), never in the ledger. Without a
    reported type or count the email says nothing the lead would have told us."""
    from campaign.store import new_public_id, new_send_id

    step = audience.step(step_key)
    if step is None:
        raise LookupError(
            f"audience {audience.name} has no step {step_key!r}; its steps: "
            + ", ".join(s.key for s in audience.steps)
        )
    clinic = settings.clinic
    url = unsubscribe_url(settings.public_url, new_public_id(), settings.secret_key.get_secret_value())
    content = renderer.render(
        step.template,
        first_name=first_name,
        unsubscribe_url=url,
        anxiety_type=anxiety_type,
        prior_treatments=prior_treatments,
    )
    return OutboundEmail(
        send_id=new_send_id(),
        to_email=to_email,
        to_name=first_name,
        from_email=clinic.sender_email,
        from_name=clinic.sender_name,
        reply_to=clinic.reply_to,
        subject=content.subject,
        preheader=content.preheader,
        html=content.html,
        text=content.text,
        unsubscribe_url=url,
        category="education",
        is_test=True,
    )


def settle(
    ctx: Context,
    results: list[SendResult],
    claims: dict[str, Claim],
    wanted: dict[int, tuple[DueEnrollment, Audience, str]],
    now: datetime,
    report: TickReport,
) -> None:
    ctx.store.settle(results, now)
    emailed, changes = [], []
    for result in results:
        claim = claims[result.send_id]
        due, audience, key = wanted[claim.enrollment_id]
        counter = {
            SendStatus.sent: report.sent,
            SendStatus.failed: report.failed,
            SendStatus.skipped: report.skipped,
            SendStatus.unknown: report.unknown,
        }[result.status]
        counter[(audience.name, key)] += 1
        if result.status is SendStatus.skipped:
            changes.append(
                {
                    "id": due.enrollment_id,
                    "state": "exited",
                    "exit_reason": "unsubscribed",
                    "next_due_at": None,
                }
            )
            continue
        # Sent, or possibly sent: the gap counts from now. A final failure does not.
        last = now if result.status in (SendStatus.sent, SendStatus.unknown) else due.lead.last_email_at
        if last is now:
            emailed.append(due.lead.id)
        p = _plan(audience, due, due.sent_keys | {key}, last, now)
        if p.finished:
            changes.append({"id": due.enrollment_id, "state": "finished", "next_due_at": None})
            report.finished += 1
        else:
            changes.append({"id": due.enrollment_id, "next_due_at": p.next_at})
    ctx.store.mark_emailed(emailed, now)
    ctx.store.update_enrollments(changes)


def run_tick(ctx: Context, now: datetime) -> TickReport:
    """The whole tick without Prefect (tests, benchmarks). flows/tick.py does the same in tasks."""
    report = reconcile_unknown(ctx, now)
    report.merge(enroll_new(ctx, now))
    for batch in due_batches(ctx, now):
        report.merge(send_due_batch(ctx, batch, now))
    return report


# ---- unknown sends -----------------------------------------------------------------------------


def reconcile_unknown(ctx: Context, now: datetime) -> TickReport:
    """Settle sends whose fate is not known; run at the start of every tick (and as its own flow).

    1. Claims still 'claimed' after STALE_CLAIM belong to a run that died mid-send: 'unknown'
       (the request may have reached SendGrid), and the lead's gap counts from the claim.
    2. An 'unknown' send with a stored processed/delivered event for its send_id was sent.
    3. An 'unknown' send with no such event CAMPAIGN_UNKNOWN_RESEND_AFTER_HOURS after its claim
       is sent again now: the same ledger row, a new send_id, attempts + 1. It waits while its
       campaign is paused, outside the lead's send window, or when another email reached the
       lead since and the gap is not over; a lead who left (unsubscribed, booked, suppressed)
       is not mailed again (the row becomes 'skipped').
    Counts go to report.reconciled; the resends' results to report.sent/failed/...
    """
    from campaign.events import ACCEPTED_KINDS
    from campaign.schedule import in_window

    report = TickReport(now=now)
    report.reconciled["stale"] += ctx.store.mark_stale_claims_unknown(now - STALE_CLAIM, now)
    report.reconciled["confirmed"] += ctx.store.confirm_unknown_from_events(ACCEPTED_KINDS, now)
    cutoff = now - timedelta(hours=ctx.settings.unknown_resend_after_hours)
    candidates = ctx.store.unknown_sends(cutoff)
    audiences = ctx.audience_by_name
    size = ctx.settings.batch_size
    leads_seen: set[int] = set()
    for i in range(0, len(candidates), size):
        chunk = candidates[i : i + size]
        dues = {d.enrollment_id: d for d in ctx.store.enrollments_by_id([c.enrollment_id for c in chunk])}
        skipped, todo = [], {}
        for c in chunk:
            due = dues.get(c.enrollment_id)
            if due is None or due.lead.id in leads_seen:
                continue  # one email per lead per tick; the rest wait
            audience = audiences.get(due.audience)
            reason = exit_reason(due, audience)
            if reason is None and c.step_key not in {st.key for st in audience.steps}:
                reason = "step removed from the sequence"
            if reason:
                skipped.append(
                    SendResult(
                        send_id=c.send_id, status=SendStatus.skipped, error=f"not sent again: {reason}"
                    )
                )
                continue
            last = due.lead.last_email_at
            other_email_since = (
                last is not None
                and last > c.claimed_at + STALE_CLAIM
                and as_utc(now) - last < audience.min_gap
            )
            if other_email_since or not in_window(now, audience.send_window, ZoneInfo(due.lead.timezone)):
                continue
            todo[c.send_id] = (due, audience, c.step_key)
            leads_seen.add(due.lead.id)
        ctx.store.settle(skipped, now)
        won = ctx.store.reclaim_unknown(list(todo), now, ctx.transport.name)
        if not won:
            continue
        report.reconciled["resent"] += len(won)
        old_of = {claim.send_id: old for old, claim in won.items()}
        wanted = {claim.enrollment_id: todo[old] for old, claim in won.items()}
        send_claims(
            ctx,
            list(won.values()),
            wanted,
            now,
            report,
            release=lambda ids, old_of=old_of: ctx.store.unclaim_resends({n: old_of[n] for n in ids}),
        )
    return report
