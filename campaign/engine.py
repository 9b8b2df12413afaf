"""The tick: preflight, reconcile unknown sends, enroll new leads, send every step due at `now`.

Plain functions over a Context (store, audiences, renderer, transport, send policy). run_tick
is the one tick sequence: the Prefect flow (flows/tick.py) runs its steps in one flow run, a
log line each; `campaign tick`, tests and benchmarks call them plainly. Every time decision
takes `now`; rules live in the pure modules (audiences, schedule, render); sending and settling
claimed steps in campaign.sending.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from campaign.approval import review_credits
from campaign.audiences import Audience, match_audience
from campaign.bulk import BulkComposer, send_step_size
from campaign.campaigns import PreflightFailed, live_tick_problems
from campaign.delivery import Transport
from campaign.delivery.activity import ActivityLookup, ActivityUnavailable
from campaign.due_walk import LEASE, SQLITE_ONE_WRITER, due_batches, worker_name  # noqa: F401 (the tick's)
from campaign.events import ACCEPTED_KINDS
from campaign.forms_tokens import CONFIRM_MAX_AGE
from campaign.gc_pause import gc_paused
from campaign.models import SendResult, SendStatus
from campaign.progress import advance
from campaign.render import Renderer
from campaign.schedule import Plan, as_utc, in_window, step_time
from campaign.sending import SendPolicy, Wanted, plan_for, send_claims
from campaign.settings import Settings
from campaign.store import ALL_AUDIENCES, DueEnrollment, Store, email_hash

# A claim still unsettled after this long belongs to a run that died mid-send.
STALE_CLAIM = timedelta(minutes=15)
log = logging.getLogger(__name__)


@dataclass
class Context:
    settings: Settings
    store: Store
    audiences: list[Audience]
    renderer: Renderer
    transport: Transport
    # Pacing and the failure limit, for every transport; counts across the batches of a tick.
    policy: SendPolicy | None = None
    # SendGrid's Email Activity search, asked before an unknown send is resent (None: off).
    activity: ActivityLookup | None = None
    # Bulk renders, memoized across the batches (and ticks) of this context.
    bulk_composer: BulkComposer | None = None

    # The footers' review credits, read once per tick (keyed by the tick's `now`).
    _credits: tuple[datetime, dict[str, str]] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.policy is None:
            self.policy = SendPolicy.from_settings(self.settings)
        if self.bulk_composer is None:
            self.bulk_composer = BulkComposer(self.renderer)

    def review_credits(self, now: datetime) -> dict[str, str]:
        """{template: "Medically reviewed by ..."} for the templates approved as they are now."""
        if self._credits is None or self._credits[0] != now:
            names = [step.template for a in self.audiences for step in a.steps]
            self._credits = (now, review_credits(self.store, self.renderer, names))
        return self._credits[1]

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
    # sent by an event, "resent": unknown sent again, "capped": unknown rows at the resend cap
    # (CAMPAIGN_MAX_RESENDS), never sent again}.
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
    audience (by priority) that matches it, set-based: per campaign one INSERT ... SELECT over the
    audiences' rules compiled to SQL (SQLite: one per audience), the first email's time per
    audience and time zone. Audiences from the first rule that does not compile on are walked in Python
    (`enroll_by_walk`'s loop, over the leads no compiled audience takes)."""
    report = _refreshed(ctx, now)
    ctx.store.fill_email_hashes()  # the suppression check joins on the address hash
    compiled = ctx.store.compile_audiences(ctx.audiences)
    zones: list[str] | None = None  # read once, when a campaign enrolls set-based
    for campaign in ctx.store.active_campaigns(now):
        audiences = campaign_audiences(campaign, ctx)
        if mine := [audience for audience, _ in compiled.sql if audience in audiences]:
            if zones is None:
                zones = ctx.store.enrollment_zones()
            due = {a.name: {zone: first_due(a, now, zone) for zone in zones} for a in mine}
            for name, n in ctx.store.enroll_campaign(campaign["id"], compiled, mine, due, now).items():
                if n:
                    report.enrolled[name] += n
        if walked := [a for a in compiled.walked if a in audiences]:
            _enroll_walk(ctx, campaign, walked, now, report, skip=compiled.matched_before())
    return report


def enroll_by_walk(ctx: Context, now: datetime) -> TickReport:
    """enroll_new as a walk of leads by id in batches, each matched in Python: the reference
    the set-based enrollment is tested against (and the fallback for rules SQL cannot hold)."""
    report = _refreshed(ctx, now)
    for campaign in ctx.store.active_campaigns(now):
        _enroll_walk(ctx, campaign, campaign_audiences(campaign, ctx), now, report)
    return report


def _refreshed(ctx: Context, now: datetime) -> TickReport:
    for audience in ctx.audiences:  # live sequence edits: re-plan from the new steps
        ctx.store.refresh_sequence_version(audience.name, audience.version, now)
    return TickReport(now=now)


def _enroll_walk(
    ctx: Context, campaign: dict, audiences: list[Audience], now: datetime, report: TickReport, skip=None
) -> None:
    """Enroll the campaign's unenrolled leads whose first matching audience is one of
    `audiences`, by id in batches; `skip`: leads the set-based part has judged already."""
    after_id = 0
    while batch := ctx.store.unenrolled_leads(campaign["id"], after_id, ctx.settings.batch_size, skip):
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


# ---- due sends -----------------------------------------------------------------------------------


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


@gc_paused()  # the cyclic collector waits while a step runs (a quarter of its CPU time)
def send_due_batch(ctx: Context, batch: list[DueEnrollment], now: datetime) -> TickReport:
    """Plan each enrollment, claim the due steps in the ledger, render, send, settle."""
    report = TickReport(now=now)
    audiences = ctx.audience_by_name
    changes: list[dict] = []
    wanted: Wanted = {}
    leads_this_batch: set[int] = set()
    plans: dict[tuple, Plan] = {}  # what decides a plan -> the plan: a step's rows share a few
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
        lead = due.lead
        which = (id(audience), due.sent_keys, due.enrolled_at, lead.last_email_at, lead.timezone)
        p = plans.get(which)
        if p is None:
            p = plans[which] = plan_for(audience, due, due.sent_keys, lead.last_email_at, now)
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


def plain(task: Callable[..., TickReport], /, *args) -> TickReport:
    """Run a step of the tick as a plain call (tests, benchmarks); flows/tick.py passes a
    wrapper that also logs each step's counts to the flow run."""
    return task(*args)


def run_tick(ctx: Context, now: datetime, run: Callable[..., TickReport] = plain) -> TickReport:
    """The tick: the preflight of a live send (PreflightFailed before anything is sent), then
    reconcile unknown sends, enroll new leads, and send the due steps batch by batch.

    `run(step, *args)` runs each step: `plain` calls it, the Prefect flow logs it too."""
    problems = live_tick_problems(ctx.settings, ctx.store, ctx.audiences)
    if problems:
        raise PreflightFailed(problems)
    try:
        report = run(reconcile_unknown, ctx, now)
        report.merge(run(enroll_new, ctx, now))
        # A bulk tick leases CAMPAIGN_BULK_BATCH_SIZE due enrollments a step (fuller requests);
        # the lease lasts until that step is sent and settled.
        with closing(
            due_batches(ctx, now, send_step_size(ctx))
        ) as batches:  # lets go of the lease if a batch fails
            for batch in batches:
                report.merge(run(send_due_batch, ctx, batch, now))
                advance(len(batch))
    finally:
        ctx.transport.finish()  # once per tick, also when it stops early (the outbox's index.html)
    return report


# ---- unknown sends -----------------------------------------------------------------------------


def reconcile_unknown(ctx: Context, now: datetime) -> TickReport:
    """Settle sends whose fate is not known; run at the start of every tick (and as its own flow).

    1. Claims still 'claimed' after STALE_CLAIM belong to a run that died mid-send: 'unknown'
       (the request may have reached SendGrid), and the lead's gap counts from the claim.
    2. An 'unknown' send with a stored processed/delivered event for its send_id was sent.
    3. With CAMPAIGN_SENDGRID_ACTIVITY_LOOKUP, SendGrid's Email Activity is asked first: a
       send it has is 'sent' without a resend (look_up_first).
    4. An 'unknown' send with no such event CAMPAIGN_UNKNOWN_RESEND_AFTER_HOURS after its claim
       is sent again now: the same ledger row, a new send_id, attempts + 1. It waits while its
       campaign is paused, outside the lead's send window, or when another email reached the
       lead since and the gap is not over; a lead who left (unsubscribed, booked, suppressed)
       is not mailed again (the row becomes 'skipped'). The old send_id is kept
       (previous_send_ids): its late events still settle the row.
    5. A row resent CAMPAIGN_MAX_RESENDS times (default 1) is never sent again: it stays
       'unknown' (an event may still settle it), counted in report.reconciled["capped"].
    Counts go to report.reconciled; the resends' results to report.sent/failed/...
    """
    report = TickReport(now=now)
    # Leads that never confirmed their address (double opt-in) within 7 days: deleted, never mailed.
    if expired := ctx.store.expire_unconfirmed(now - CONFIRM_MAX_AGE):
        report.reconciled["unconfirmed expired"] += expired
    report.reconciled["stale"] += ctx.store.mark_stale_claims_unknown(now - STALE_CLAIM, now)
    report.reconciled["confirmed"] += ctx.store.confirm_unknown_from_events(ACCEPTED_KINDS, now)
    cutoff = now - timedelta(hours=ctx.settings.unknown_resend_after_hours)
    max_resends = ctx.settings.max_resends
    if capped := ctx.store.capped_unknown(max_resends):
        report.reconciled["capped"] += capped
    candidates = ctx.store.unknown_sends(cutoff, max_resends)
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
        todo = look_up_first(ctx, todo, now, report)
        won = ctx.store.reclaim_unknown(list(todo), now, ctx.transport.name, max_resends)
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


def look_up_first(ctx: Context, todo: dict, now: datetime, report: TickReport) -> dict:
    """With the Email Activity lookup on (ctx.activity): an unknown send SendGrid has is settled
    'sent' and not resent (report.reconciled["found"]); one not looked up (past the request
    budget, or the search failed) waits for a later tick. Returns what is left to resend."""
    if ctx.activity is None or not todo:
        return todo
    try:
        found, looked = ctx.activity.accepted({sid: due.lead.email for sid, (due, _, _) in todo.items()})
    except ActivityUnavailable as exc:
        report.reconciled["lookup failed"] += len(todo)
        if str(exc) not in report.errors:
            report.errors.append(str(exc))
        return {}
    ctx.store.settle(
        [SendResult(send_id=sid, status=SendStatus.sent, message_id=mid) for sid, mid in found.items()], now
    )
    report.reconciled["found"] += len(found)
    return {sid: wanted for sid, wanted in todo.items() if sid in looked and sid not in found}
