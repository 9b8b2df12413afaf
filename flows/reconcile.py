"""The reconcile flow: settle 'unknown' sends on their own (the tick also does this first).

Stale claims of a dead run become 'unknown'; an unknown send with a processed/delivered event
is 'sent'; one with no event after CAMPAIGN_UNKNOWN_RESEND_AFTER_HOURS is sent again.
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from campaign.clock import parse_when
from campaign.engine import reconcile_unknown
from campaign.runtime import build_context
from campaign.settings import get_settings


@flow(name="reconcile", log_prints=False)
def reconcile(now: str | None = None) -> dict:
    """Reconcile unknown sends at `now` (ISO 8601; default: the real clock). Returns counts only."""
    moment = parse_when(now)
    ctx = build_context(get_settings(), now=moment if now else None)
    try:
        report = reconcile_unknown(ctx, moment)
    finally:
        ctx.store.close()
    summary = report.as_dict()
    get_run_logger().info("reconcile at %s: %s, %s", summary["now"], summary["reconciled"], summary["totals"])
    return summary
