"""The tick flow: enroll new leads, then send what is due, one task per batch of sends."""

from __future__ import annotations

from datetime import datetime, timezone

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from campaign.engine import TickReport, due_batches, enroll_new, send_due_batch
from campaign.runtime import build_context
from campaign.settings import get_settings


def parse_now(now: str | None) -> datetime:
    if not now:
        return datetime.now(timezone.utc)
    moment = datetime.fromisoformat(now)
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


# The context holds a database engine: never hash or cache it. Sends must never be cached anyway.
@task(name="enroll-new-leads", cache_policy=NO_CACHE)
def enroll_task(ctx, now: datetime) -> TickReport:
    return enroll_new(ctx, now)


@task(name="send-due-batch", cache_policy=NO_CACHE)
def send_batch_task(ctx, batch, now: datetime) -> TickReport:
    return send_due_batch(ctx, batch, now)


@flow(name="tick", log_prints=False)
def tick(now: str | None = None) -> dict:
    """One tick at `now` (ISO 8601; default: the real clock). Returns counts only."""
    moment = parse_now(now)
    ctx = build_context(get_settings(), now=moment if now else None)
    try:
        report = enroll_task(ctx, moment)
        for batch in due_batches(ctx, moment):
            report.merge(send_batch_task(ctx, batch, moment))
    finally:
        ctx.store.close()
    summary = report.as_dict()
    get_run_logger().info("tick at %s: %s", summary["now"], summary["totals"])
    return summary
