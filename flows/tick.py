"""The tick flow: enroll new leads, then send what is due, one task per batch of sends."""

from __future__ import annotations

from datetime import UTC, datetime

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from campaign.app.ticks import records_tick
from campaign.campaigns import PreflightFailed, is_live, live_preflight
from campaign.engine import TickReport, due_batches, enroll_new, reconcile_unknown, send_due_batch
from campaign.progress import advance
from campaign.runtime import build_context
from campaign.settings import get_settings


def parse_now(now: str | None) -> datetime:
    if not now:
        return datetime.now(UTC)
    moment = datetime.fromisoformat(now)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# The context holds a database engine: never hash or cache it. Sends must never be cached anyway.
@task(name="enroll-new-leads", cache_policy=NO_CACHE)
def enroll_task(ctx, now: datetime) -> TickReport:
    return enroll_new(ctx, now)


@task(name="reconcile-unknown-sends", cache_policy=NO_CACHE)
def reconcile_task(ctx, now: datetime) -> TickReport:
    return reconcile_unknown(ctx, now)


@task(name="send-due-batch", cache_policy=NO_CACHE)
def send_batch_task(ctx, batch, now: datetime) -> TickReport:
    return send_due_batch(ctx, batch, now)


@flow(name="tick", log_prints=False)
@records_tick  # the console's tick history: each run, its outcome and counts
def tick(now: str | None = None) -> dict:
    """One tick at `now` (ISO 8601; default: the real clock). Returns counts only."""
    moment = parse_now(now)
    ctx = build_context(get_settings(), now=moment if now else None)
    try:
        if is_live(ctx.settings):
            problems = live_preflight(
                ctx.settings, ctx.store, [s.template for a in ctx.audiences for s in a.steps]
            )
            if problems:
                raise PreflightFailed(problems)
        report = reconcile_task(ctx, moment)
        report.merge(enroll_task(ctx, moment))
        for batch in due_batches(ctx, moment):
            part = send_batch_task(ctx, batch, moment)
            report.merge(part)
            advance(len(batch))
    finally:
        ctx.store.close()
    summary = report.as_dict()
    get_run_logger().info("tick at %s: %s", summary["now"], summary["totals"])
    create_table_artifact(
        key="tick-counts",
        table=artifact_rows(report),
        description=f"Tick at {summary['now']}: counts per audience and step (no addresses).",
    )
    return summary


def artifact_rows(report: TickReport) -> list[dict]:
    keys = sorted(set(report.sent) | set(report.failed) | set(report.skipped) | set(report.unknown))
    rows = [
        {
            "audience": a,
            "step": s,
            "sent": report.sent[(a, s)],
            "failed": report.failed[(a, s)],
            "skipped": report.skipped[(a, s)],
            "unknown": report.unknown[(a, s)],
        }
        for a, s in keys
    ]
    rows += [
        {"audience": a, "step": "(enrolled)", "sent": n, "failed": 0, "skipped": 0, "unknown": 0}
        for a, n in sorted(report.enrolled.items())
    ]
    return rows or [{"audience": "-", "step": "-", "sent": 0, "failed": 0, "skipped": 0, "unknown": 0}]
