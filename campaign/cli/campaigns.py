"""Campaign commands: launch, pause, resume, stop, status, report."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from campaign.cli.base import app, console, fail, load_audiences_or_fail, parse_when, settings, store_for
from campaign.cli.output import (
    Format,
    FormatOption,
    JsonOption,
    ReportFormat,
    chosen,
    emit,
    print_table,
    write,
)

STATUS_COLUMNS = (
    "campaign",
    "name",
    "state",
    "paused_reason",
    "sent_today",
    "due_next_24h",
    "failures",
    "unknown",
    "unknown_capped",
    "audience",
    "enrolled",
    "active",
    "finished",
    "exited",
    "sent_per_step",
)


def _campaign_action(name: str, action: str, reason: str = "") -> None:
    from campaign.accounts import CLI
    from campaign.app.campaigns import change_campaign
    from campaign.campaigns import CampaignError

    with store_for(settings()) as store:
        try:
            campaign = change_campaign(store, CLI, name, action, reason=reason, now=datetime.now(UTC))
        except CampaignError as exc:
            fail(str(exc), code=1)
    console.print(f"Campaign {campaign['slug']} is now {campaign['state']}.", highlight=False)


@app.command()
def launch(
    name: Annotated[str, typer.Argument(help="The campaign's name, e.g. 'Spring 2026'.")],
    audiences: Annotated[
        str, typer.Option("--audiences", metavar="A,B", help="Comma-separated audiences, e.g. gad,social.")
    ],
    start: Annotated[
        str | None,
        typer.Option(
            "--start",
            metavar="WHEN",
            help="When it starts: 2026-03-02 (09:00 clinic time), tomorrow, or ISO 8601. Default: now.",
        ),
    ] = None,
    sandbox: Annotated[
        bool, typer.Option("--sandbox", help="SendGrid sandbox mode: validated, never delivered.")
    ] = False,
):
    """Create a campaign over some audiences.

    A live one (SendGrid, not sandbox) must pass the preflight: lint clean, content approved,
    and the settings a live send needs."""
    from campaign.accounts import CLI
    from campaign.app.campaigns import launch_campaign
    from campaign.campaigns import CampaignError, PreflightFailed

    s = settings()
    found = load_audiences_or_fail(s)
    names = [a.strip() for a in audiences.split(",") if a.strip()]
    starts_at = parse_when(start, "--start") if start else None
    with store_for(s) as store:
        try:
            launched = launch_campaign(
                store,
                s,
                found,
                name=name,
                audience_names=names,
                starts_at=starts_at,
                sandbox=sandbox,
                now=datetime.now(UTC),
                actor=CLI,
            )
        except PreflightFailed as exc:
            fail(
                "the campaign cannot go live yet. Fix these, then launch again:\n  - "
                + "\n  - ".join(exc.problems),
                code=1,
            )
        except CampaignError as exc:
            fail(str(exc), code=1)
    console.print(
        f"Launched {launched.campaign['slug']} over {', '.join(names)}"
        + (" (sandbox)" if sandbox else "")
        + "."
    )
    if launched.drafts:
        console.print(
            f"[yellow]Drafts:[/] {len(launched.drafts)} thing(s) to fix before a live send "
            "(run `campaign status`):",
            highlight=False,
        )
        for p in launched.drafts:
            console.print(f"  - {p}", highlight=False)


@app.command()
def pause(
    name: Annotated[str, typer.Argument(help="Campaign name.")],
    reason: Annotated[
        str, typer.Option(metavar="TEXT", help="Why (shown in `campaign status`).")
    ] = "paused by a coordinator",
):
    """Pause a campaign: its leads keep their place.

    Nothing is sent until it is resumed."""
    _campaign_action(name, "pause", reason)


@app.command()
def resume(name: Annotated[str, typer.Argument(help="Campaign name.")]):
    """Resume a paused campaign.

    Overdue emails go out one per lead per tick, inside the send window and the gap: a backlog
    never bursts."""
    _campaign_action(name, "resume")


@app.command()
def stop(name: Annotated[str, typer.Argument(help="Campaign name.")]):
    """Stop a campaign for good.

    Its leads leave their sequences."""
    _campaign_action(name, "stop")


def _sent_per_step(steps: dict) -> str:
    return ", ".join(f"{k} {v.get('sent', 0)}" for k, v in steps.items())


def _status_rows(campaigns: list[dict]) -> list[dict]:
    """Flat rows for CSV: one per campaign and audience (one with no audience before any enrollment)."""
    rows = []
    for c in campaigns:
        head = {k: c[k] for k in STATUS_COLUMNS[:8]}
        per_audience = sorted(c["per_audience"].items()) or [(None, None)]
        for audience, a in per_audience:
            counts = {k: a[k] for k in ("enrolled", "active", "finished", "exited")} if a else {}
            steps = _sent_per_step(a["steps"]) if a else None
            rows.append({**head, "audience": audience, **counts, "sent_per_step": steps})
    return rows


@app.command()
def status(
    now: Annotated[
        str | None,
        typer.Option(
            metavar="WHEN",
            help="Count 'today' and 'the next 24 hours' from this time (as tick --now). Default: now.",
        ),
    ] = None,
    output_format: FormatOption = Format.table,
    as_json: JsonOption = False,
):
    """Each campaign's state, leads, sends and problems.

    Per campaign: state, leads per audience and step, sent today (the clinic's day), due in the
    next 24 hours, failures and unknown sends, and why it is paused. After a simulated run
    (`campaign tick --now ...`), give the same --now so "today" is the simulated day."""
    from campaign.campaigns import status as campaign_status

    output_format = chosen(output_format, as_json)
    moment = parse_when(now)
    s = settings()
    with store_for(s) as store:
        campaigns = campaign_status(store, s, moment)

    def show() -> None:
        for c in campaigns:
            console.print(
                f"[bold]{c['campaign']}[/] ({c['name']}): {c['state']}"
                + (f" — {c['paused_reason']}" if c["paused_reason"] else "")
                + f"; audiences {c['audiences']}; sent today {c['sent_today']}; "
                f"due in 24 h {c['due_next_24h']}; failures {c['failures']}; unknown {c['unknown']}"
                + (f" ({c['unknown_capped']} at the resend cap)" if c["unknown_capped"] else ""),
                highlight=False,
            )
            table = Table("audience", "enrolled", "active", "finished", "exited", "sent per step")
            for audience, a in sorted(c["per_audience"].items()):
                table.add_row(
                    audience,
                    *(str(a[k]) for k in ("enrolled", "active", "finished", "exited")),
                    _sent_per_step(a["steps"]),
                )
            print_table(table)

    emit(output_format, rows=_status_rows(campaigns), columns=STATUS_COLUMNS, data=campaigns, table=show)


REPORT_TABLE = {  # heading -> row key, in the order a coordinator reads the funnel
    "enrolled": "enrolled",
    "sent": "sent",
    "delivered": "delivered",
    "opened": "opened",
    "clicked": "clicked",
    "bounced": "bounced",
    "unsub": "unsubscribed",
    "spam": "spam_reports",
    "booked": "booked",
}


@app.command()
def report(
    campaign: Annotated[str | None, typer.Argument(help="One campaign (default: all).")] = None,
    output_format: Annotated[
        ReportFormat, typer.Option("--format", case_sensitive=False, help="table, json, csv or html.")
    ] = ReportFormat.table,
    as_json: JsonOption = False,
    out: Annotated[
        Path | None, typer.Option("--out", metavar="FILE", help="Write to this file instead of the terminal.")
    ] = None,
):
    """Results per campaign, audience and step.

    Enrolled, sent, delivered, opened, clicked, bounced, unsubscribed, spam reports, booked,
    with rates and the median days from first email to booking. --format html writes one
    self-contained page with funnel charts."""
    from campaign.app.campaigns import campaign_report
    from campaign.report import pct, to_csv, to_html, to_json

    output_format = chosen(output_format, as_json)
    s = settings()
    found = load_audiences_or_fail(s)
    with store_for(s) as store:
        try:
            result = campaign_report(store, found, campaign, datetime.now(UTC))
        except LookupError as exc:
            fail(str(exc), code=1)
    if output_format is not ReportFormat.table:
        # The report renders its own formats (its CSV through the shared formula-safe writer).
        write({"json": to_json, "csv": to_csv, "html": to_html}[output_format.value](result), out)
        return
    table = Table("campaign", "audience", "step", *REPORT_TABLE, "open rate", "booking rate")
    for r in result.rows:
        table.add_row(
            r["campaign"],
            r["audience"],
            r["step"],
            *(str(r[key]) for key in REPORT_TABLE.values()),
            pct(r["open_rate"]),
            pct(r["booking_rate"]),
        )
    print_table(table)
    for (c, a), days in result.median_days_to_booking.items():
        if days is not None:
            console.print(f"{c} · {a}: median {days} days from first email to booking", highlight=False)
