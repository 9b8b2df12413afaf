"""Sending claimed steps: the send policy, then render, send and settle.

The policy is the engine's, the same for every transport (listmonk: the manager paces and
pauses, the messenger only sends): a ceiling on emails per second, and a pause of the
campaigns after too many failed or unknown sends in a row. Transports only send and report
each email's result, through the hooks described in campaign.delivery.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from campaign.audiences import Audience
from campaign.bulk import prepare
from campaign.delivery import BatchStopped, TooManyFailures
from campaign.models import SendResult, SendStatus
from campaign.schedule import Plan, plan
from campaign.settings import Settings
from campaign.store import Claim, DueEnrollment

if TYPE_CHECKING:
    from campaign.engine import Context, TickReport

log = logging.getLogger(__name__)

# enrollment id -> (the due enrollment, its audience, the step key to send)
Wanted = dict[int, tuple[DueEnrollment, Audience, str]]


class Pacer:
    """At most ``per_second`` emails per second across threads, evenly spaced (e.g. to warm up
    a new sending domain). Each caller reserves the next free slot under a lock, then sleeps
    outside it. It paces emails, not HTTP attempts: retries wait on the transport's backoff."""

    def __init__(
        self,
        per_second: float | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if per_second is not None and per_second <= 0:
            raise ValueError("per_second must be positive (or None for no ceiling)")
        self.interval = 1.0 / per_second if per_second else 0.0
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next = 0.0

    def wait(self) -> None:
        if not self.interval:  # no ceiling: no lock on the hot path
            return
        with self._lock:
            now = self._clock()
            slot = max(now, self._next)
            self._next = slot + self.interval
        if slot > now:
            self._sleep(slot - now)


class FailureLimit:
    """Failed or unknown sends in a row, across the batches of a tick (a sent email resets the
    count; a skip leaves it). Reaching ``limit`` raises TooManyFailures, which stops the batch."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.in_a_row = 0
        self._lock = threading.Lock()

    def count(self, result: SendResult) -> None:
        if result.status is SendStatus.sent and not self.in_a_row and self.limit != 0:
            return  # nothing to reset (a bulk request's thousand answers): no lock
        with self._lock:
            if result.status is SendStatus.sent:
                self.in_a_row = 0
            elif result.status in (SendStatus.failed, SendStatus.unknown):
                self.in_a_row += 1
            reached = self.limit is not None and self.in_a_row >= self.limit
            count = self.in_a_row
        if reached:
            raise TooManyFailures(f"{count} consecutive send failures (last: {result.error})")

    def count_request(self, results: list[SendResult]) -> None:
        """A bulk request's results, which share its fate: its failed or unknown recipients
        count once (a timed-out request of a thousand must not pause the campaign at once), a
        sent one resets the count; in order, as count() would see them one by one."""
        sent_before = failure = sent_after = None
        for r in results:
            status = r.status
            if status is SendStatus.sent:
                if failure is None:
                    sent_before = r
                else:
                    sent_after = r
                    break
            elif failure is None and (status is SendStatus.failed or status is SendStatus.unknown):
                failure = r
        for r in (sent_before, failure, sent_after):
            if r is not None:
                self.count(r)


@dataclass
class SendPolicy:
    pacer: Pacer
    failures: FailureLimit

    @classmethod
    def from_settings(cls, settings: Settings) -> SendPolicy:
        return cls(Pacer(settings.max_per_second), FailureLimit(settings.max_consecutive_failures))


class AnswerRecorder:
    """Writes accepted sends to the ledger as their answers come back, in small groups (every
    ``group`` answers or ``interval`` seconds, whichever first), so a crash mid-batch leaves in
    doubt only what was in flight or answered in the last fraction of a second. One background
    thread writes: the sender threads never wait on the database.

    ``write(results)`` records a group; ``recorded`` holds the send_ids it wrote. A failed
    write is logged and left to the batch's final settle."""

    def __init__(
        self, write: Callable[[list[SendResult]], object], *, group: int = 50, interval: float = 0.25
    ) -> None:
        self._write = write
        self.group = group
        self.interval = interval
        self.recorded: set[str] = set()
        self._pending: list[SendResult] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ledger-answers", daemon=True)

    def __enter__(self) -> AnswerRecorder:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._done.set()
        self._wake.set()
        self._thread.join()
        self._flush()  # what came in since the last group, before the final settle

    def add(self, result: SendResult) -> None:
        if result.status is not SendStatus.sent:
            return  # only accepted sends: failures and unknowns settle with the batch
        with self._lock:
            self._pending.append(result)
            full = len(self._pending) == self.group  # once per group: a bulk request adds 1,000
        if full:
            self._wake.set()

    def add_many(self, results: list[SendResult]) -> None:
        """add() for a bulk request's results: one lock and at most one wake-up for them all."""
        sent = [r for r in results if r.status is SendStatus.sent]
        if not sent:
            return
        with self._lock:
            self._pending += sent
            full = len(self._pending) >= self.group
        if full:
            self._wake.set()

    def _run(self) -> None:
        while not self._done.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            self._flush()

    def _flush(self) -> None:
        with self._lock:
            group, self._pending = self._pending, []
        if not group:
            return
        try:
            self._write(group)
        except Exception:
            log.exception("recording %d accepted sends failed; the batch settles them at its end", len(group))
            return
        self.recorded.update(r.send_id for r in group)


# Plans by everything that decides them: the leads enrolled in one tick, in one time zone and
# at one step share a plan, so a step to a million leads computes a handful. The audience is
# kept in the value, so its id cannot be reused by another while the entry lives.
_plans: dict[tuple, tuple[Audience, Plan]] = {}
_PLANS_KEPT = 10_000


def plan_for(audience: Audience, due: DueEnrollment, sent_keys, last_email_at, now: datetime) -> Plan:
    key = (id(audience), frozenset(sent_keys), due.enrolled_at, last_email_at, now, due.lead.timezone)
    known = _plans.get(key)
    if known is not None:
        return known[1]
    p = plan(
        audience.steps,
        set(sent_keys),
        enrolled_at=due.enrolled_at,
        last_email_at=last_email_at,
        now=now,
        window=audience.send_window,
        tz=ZoneInfo(due.lead.timezone),
        min_gap=audience.min_gap,
    )
    if len(_plans) >= _PLANS_KEPT:
        _plans.clear()
    _plans[key] = (audience, p)
    return p


def send_claims(
    ctx: Context,
    claims: list[Claim],
    wanted: Wanted,
    now: datetime,
    report: TickReport,
    release: Callable[[list[str]], object],
) -> None:
    """Render, send and settle claimed sends. What was never sent is handed to `release`
    (its claim goes, so the step is due again): emails the transport did not attempt after a
    stop, and retryable failures (5xx, network) that ran out of attempts.

    The stops: Unauthorized (a refused key) settles what was sent, releases the rest and
    re-raises (the tick stops at once); TooManyFailures (the policy's limit) pauses the
    batch's campaigns with the reason, and their remaining due sends wait for a resume."""
    ready = prepare(ctx, claims, wanted, now, report)
    bulk, emails, results = ready.bulk, ready.emails, ready.results
    claim_of = {c.send_id: c for c in claims}
    leads = [wanted[c.enrollment_id][0].lead for c in claims]
    lead_of_send = {c.send_id: (lead.id, lead.email) for c, lead in zip(claims, leads, strict=True)}

    def before_send(send_id: str) -> bool:
        ctx.policy.pacer.wait()  # before the check, so the check is fresh when the email leaves
        return ctx.store.is_reachable(*lead_of_send[send_id])

    def before_request(send_ids: list[str]) -> set[str]:
        if ctx.policy.pacer.interval:  # no ceiling: nothing to wait for
            for _ in send_ids:
                ctx.policy.pacer.wait()
        reachable = ctx.store.reachable_among(lead_of_send[s] for s in send_ids)
        return {s for s in send_ids if lead_of_send[s][0] in reachable}

    # Rendering first (prepare), then sending: measured faster than rendering while the
    # senders run (the renderer and the sender threads would fight over the GIL).
    def record(group: list[SendResult]) -> None:
        record_and_advance(ctx, group, claim_of, wanted, now, report)

    def after_send(result: SendResult) -> None:
        recorder.add(result)  # first: the failure limit may raise
        ctx.policy.failures.count(result)

    def after_request(results: list[SendResult]) -> None:
        recorder.add_many(results)  # first: the failure limit may raise
        ctx.policy.failures.count_request(results)

    stopped = None
    recorder = AnswerRecorder(record)
    hooks = {"before_send": before_send, "after_send": after_send}
    singles_tried = False
    if bulk or emails:
        with recorder:
            try:
                if bulk:
                    results.extend(
                        ctx.transport.send_bulk(
                            bulk, **hooks, before_request=before_request, after_request=after_request
                        )
                    )
                singles_tried = True
                if emails:
                    results.extend(ctx.transport.send_batch(emails, **hooks))
            except BatchStopped as exc:
                stopped = exc
                results.extend(exc.results)
                if not singles_tried:  # stopped in the bulk part: the single emails were never tried
                    exc.not_sent.extend(e.send_id for e in emails)
    failed = SendStatus.failed
    if any(r.status is failed for r in results):
        final, later = [], []
        for r in results:
            (later if _retry_later(r) else final).append(r)
    else:  # the common case: nothing to retry later
        final, later = results, []
    for r in later:
        due, audience, key = wanted[claim_of[r.send_id].enrollment_id]
        report.failed[(audience.name, key)] += 1
    # The batch's settle: what the recorder did not write as the answers came.
    if unrecorded := [r for r in final if r.send_id not in recorder.recorded]:
        record(unrecorded)
    not_sent = [r.send_id for r in later] + (stopped.not_sent if stopped else [])
    if not_sent:
        release(not_sent)
    if stopped is None:
        return
    if not isinstance(stopped, TooManyFailures):
        raise stopped
    reason = f"paused after {stopped}"
    campaign_ids = sorted({wanted[c.enrollment_id][0].campaign_id for c in claims})
    ctx.store.pause_campaigns(campaign_ids, reason)
    report.paused.extend(f"campaign {cid} {reason}" for cid in campaign_ids)


def _retry_later(result: SendResult) -> bool:
    """A failure the provider never accepted and that may pass later (5xx, network): not final."""
    return result.status is SendStatus.failed and result.retryable


def record_and_advance(
    ctx: Context,
    results: list[SendResult],
    claims: dict[str, Claim],
    wanted: Wanted,
    now: datetime,
    report: TickReport,
) -> None:
    """Settled `results` in one transaction: their ledger rows, their leads' last_email_at (sent
    or possibly sent: the gap counts from now; a final failure does not) and their enrollments'
    next step; then their counts in the report: counted only once written, so a failed write
    leaves them to be done again, once. The AnswerRecorder's write for a group of accepted
    sends, while the step's other requests are in flight; the batch's settle for the rest."""
    counts: Counter = Counter()  # (status, audience, step) -> n
    emailed_ids = []
    # The columns to set (as write_enrollment_groups takes them) -> the enrollments given
    # them; and, memoized here, what decides an enrollment's next step -> those columns.
    same: dict[tuple, list[int]] = {}
    decided: dict[tuple, tuple] = {}
    finished = 0
    for result in results:
        due, audience, key = wanted[claims[result.send_id].enrollment_id]
        status = result.status
        counts[(status, audience.name, key)] += 1
        if status is SendStatus.skipped:
            values = _EXITED_UNSUBSCRIBED
        else:
            emailed_now = status is SendStatus.sent or status is SendStatus.unknown
            lead = due.lead
            last = now if emailed_now else lead.last_email_at
            if emailed_now:
                emailed_ids.append(lead.id)
            which = (id(audience), due.sent_keys, key, due.enrolled_at, last, lead.timezone)
            values = decided.get(which)
            if values is None:
                p = plan_for(audience, due, due.sent_keys | {key}, last, now)
                values = decided[which] = _FINISHED if p.finished else (("next_due_at", p.next_at),)
            if values is _FINISHED:
                finished += 1
        ids = same.get(values)
        if ids is None:
            same[values] = [due.enrollment_id]
        else:
            ids.append(due.enrollment_id)
    ctx.store.settle(results, now, emailed=emailed_ids, enrollment_groups=same)
    for (status, audience_name, key), n in counts.items():  # report.sent, .failed, .skipped, .unknown
        getattr(report, status.value)[(audience_name, key)] += n
    report.finished += finished


# An enrollment's columns after its last step, or its lead's unsubscribe (sorted by column).
_FINISHED = (("next_due_at", None), ("state", "finished"))
_EXITED_UNSUBSCRIBED = (("exit_reason", "unsubscribed"), ("next_due_at", None), ("state", "exited"))
