"""The daily report flow: the results report as a Prefect markdown artifact (counts only)."""

from __future__ import annotations

from datetime import UTC, datetime

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from campaign.audiences import load_audiences
from campaign.report import build_report, pct
from campaign.runtime import open_store
from campaign.settings import get_settings


@flow(name="daily-report")
def daily_report(campaign: str | None = None) -> dict:
    settings = get_settings()
    order = {a.name: [s.key for s in a.steps] for a in load_audiences(settings.audiences_dir)}
    store = open_store(settings)
    try:
        report = build_report(store, order, datetime.now(UTC)).for_campaign(campaign)
    finally:
        store.close()
    lines = [
        "| campaign | audience | step | sent | delivered | opened | clicked | booked | open rate |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['campaign']} | {r['audience']} | {r['step']} | {r['sent']} | {r['delivered']} | {r['opened']} "
        f"| {r['clicked']} | {r['booked']} | {pct(r['open_rate'])} |"
        for r in report.rows
    ]
    create_markdown_artifact(
        key="daily-report",
        markdown="# Daily campaign report\n\n" + "\n".join(lines),
        description="Counts per campaign, audience and step (no addresses).",
    )
    return {"rows": len(report.rows), "sent": sum(r["sent"] for r in report.rows)}
