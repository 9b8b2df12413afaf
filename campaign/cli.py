"""The `campaign` command: a thin Typer shell over the library and the flows.

Quick commands never import Prefect (about 1.3 s); only tick, demo and the flow commands do.
Exit codes: 0 ok, 1 problems found (lint, checks), 2 bad input (unreadable file, bad option).
"""

from __future__ import annotations

import csv
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from campaign.progress import terminal_progress

app = typer.Typer(
    help="Patient-education email sequences for anxiety leads: import, check, send, watch.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)
audiences_app = typer.Typer(
    help="Show the audiences (rules, steps, lead counts), or check them.", invoke_without_command=True
)
app.add_typer(audiences_app, name="audiences")

console = Console()
err = Console(stderr=True)


def fail(message: str, code: int = 2) -> None:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def settings():
    from campaign.settings import get_settings

    return get_settings()


def parse_when(value: str | None) -> datetime:
    from campaign.clock import parse_when as parse

    try:
        return parse(value)
    except ValueError as exc:
        fail(f"--now {exc}")


def store_for(s):
    from campaign.runtime import open_store

    return open_store(s)


def load_audiences_or_fail(s):
    from campaign.audiences import AudienceFileError, load_audiences

    try:
        return load_audiences(s.audiences_dir)
    except AudienceFileError as exc:
        fail(
            "the audience files have problems:\n  "
            + "\n  ".join(exc.problems)
            + "\nRun `campaign audiences check` after fixing them.",
            code=1,
        )


# ---- import -------------------------------------------------------------------------------------


@app.command("import")
def import_(
    path: Annotated[Path, typer.Argument(help="CSV export of the lead form.")],
    column: Annotated[
        list[str] | None,
        typer.Option("--column", help='Map a header to a field: "Header Text=field". Repeatable.'),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as one JSON object.")] = False,
):
    """Import leads from a CSV file (an upsert: importing the same file twice changes nothing).

    Rows without a valid email go to <file>.rejected.csv with the reason; the rest import.
    """
    from campaign.leads import ImportFileError, parse_column_overrides
    from campaign.operations import import_file

    try:
        overrides = parse_column_overrides(column or [])
    except ValueError as exc:
        fail(str(exc))
    s = settings()
    store = store_for(s)
    try:
        with terminal_progress(f"Importing {path.name}", enabled=not as_json):
            summary = import_file(store, s, path, datetime.now(UTC), overrides=overrides)
    except ImportFileError as exc:
        fail(f"{exc}\nNothing was imported.")
    finally:
        store.close()
    if as_json:
        print(json.dumps(summary.as_dict()))
        return
    for warning in summary.warnings:
        err.print(f"[yellow]warning:[/] {warning}", highlight=False)
    console.print(
        f"Imported {path}: [bold]{summary.new}[/] new, {summary.updated} updated, "
        f"{summary.unchanged} unchanged, {summary.rejected} rejected.",
        highlight=False,
    )
    if summary.rejected_file:
        console.print(f"Rejected rows and reasons: {summary.rejected_file}", highlight=False)


# ---- leads --------------------------------------------------------------------------------------


@app.command()
def leads(
    format: Annotated[str, typer.Option("--format", help="table, json or csv.")] = "table",
):
    """One row per lead: email, audience, status, steps sent, next step and its time."""
    from campaign.operations import lead_rows

    if format not in ("table", "json", "csv"):
        fail(f"--format {format!r}: use table, json or csv")
    s = settings()
    store = store_for(s)
    try:
        rows = lead_rows(store, load_audiences_or_fail(s))
    finally:
        store.close()
    if format == "json":
        print(json.dumps(rows, indent=1))
    elif format == "csv":
        writer = csv.DictWriter(
            sys.stdout, fieldnames=list(rows[0]) if rows else ["email"], lineterminator="\n"
        )
        writer.writeheader()
        writer.writerows(rows)
    else:
        table = Table("email", "audience", "status", "sent", "next step", "next at (lead's time)")
        for r in rows:
            table.add_row(
                r["email"], r["audience"], r["status"], str(r["steps_sent"]), r["next_step"], r["next_at"]
            )
        console.print(table)
        console.print(f"{len(rows)} leads")


# ---- audiences ----------------------------------------------------------------------------------


@audiences_app.callback()
def audiences_list(ctx: typer.Context):
    """Each audience: its rule, its steps (day), its lead count."""
    if ctx.invoked_subcommand:
        return
    s = settings()
    found = load_audiences_or_fail(s)
    counts = {}
    if _database_exists(s):
        store = store_for(s)
        counts = store.audience_counts()
        store.close()
    table = Table("priority", "audience", "rule", "steps (day)", "leads")
    for a in found:
        steps = ", ".join(f"{st.key} ({st.delay.total_seconds() / 86400:g})" for st in a.steps)
        table.add_row(str(a.priority), a.name, a.describe_rule(), steps, str(counts.get(a.name, 0)))
    console.print(table)


def _database_exists(s) -> bool:
    url = s.database_url
    return not url.startswith("sqlite:///") or Path(url.removeprefix("sqlite:///")).exists()


@audiences_app.command("check")
def audiences_check():
    """Validate audiences/*.yaml and their templates; exit 1 listing every problem."""
    from campaign.audiences import read_audiences
    from campaign.render import Renderer, TemplateError

    s = settings()
    found, problems = read_audiences(s.audiences_dir)
    renderer = Renderer(s.templates_dir, s.clinic)
    for a in found:
        for step in a.steps:
            try:
                renderer.render(
                    step.template, first_name="Sam", unsubscribe_url="https://example.org/unsubscribe/x"
                )
            except TemplateError as exc:
                problems.append(f"{a.name}/{step.key}: {exc}")
    if problems:
        for p in problems:
            err.print(f"[red]✗[/] {p}", highlight=False)
        err.print(f"{len(problems)} problem(s).")
        raise typer.Exit(1)
    console.print(
        f"[green]✓[/] {len(found)} audiences, {sum(len(a.steps) for a in found)} steps, every template "
        "renders."
    )


# ---- tick ---------------------------------------------------------------------------------------


@app.command()
def tick(
    now: Annotated[str | None, typer.Option(help="The time to tick at (ISO 8601). Default: now.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the tick's counts as JSON.")] = False,
):
    """Enroll new leads, then send every step due at NOW (a Prefect flow run)."""
    parse_when(now)
    from campaign.campaigns import PreflightFailed
    from campaign.delivery import Unauthorized
    from flows.tick import tick as tick_flow

    try:
        with terminal_progress("Ticking (enrollments looked at)", enabled=not as_json):
            summary = tick_flow(now=now)
    except PreflightFailed as exc:  # the flow's own preflight of a live send
        fail(f"{exc}\nNothing was sent.", code=1)
    except Unauthorized:
        fail(
            "SendGrid refused the API key (401). The tick stopped at once; unsent emails wait for the next "
            "tick. Check SENDGRID_API_KEY (it needs the Mail Send permission).",
            code=1,
        )
    if as_json:
        print(json.dumps(summary))
    else:
        print_tick(summary)


def print_tick(summary: dict) -> None:
    t = summary["totals"]
    console.print(
        f"Tick at {summary['now']}: enrolled {t['enrolled']}, sent {t['sent']}, failed {t['failed']}, "
        f"skipped {t['skipped']}, unknown {t['unknown']}, finished {summary['finished']}.",
        highlight=False,
    )
    for error in summary["errors"]:
        err.print(f"[red]template error:[/] {error}", highlight=False)


# ---- timeline -----------------------------------------------------------------------------------


@app.command()
def timeline(
    email: Annotated[str, typer.Argument(help="The lead's email address.")],
    days: Annotated[int, typer.Option(help="Show steps up to this many days after enrollment.")] = 60,
):
    """The date and time (in the lead's time zone) each step goes, or would go, to this lead."""
    from campaign.operations import lead_timeline

    s = settings()
    store = store_for(s)
    try:
        audience, rows = lead_timeline(store, s, email, datetime.now(UTC))
    except LookupError as exc:
        fail(str(exc), code=1)
    finally:
        store.close()
    table = Table("step", "day", "when (lead's local time)", "status", title=f"{email} · audience {audience}")
    for r in rows:
        if r["day"] <= days:
            table.add_row(r["step"], str(r["day"]), r["at"], r["status"])
    console.print(table)


# ---- demo ---------------------------------------------------------------------------------------


@app.command()
def demo(
    dir: Annotated[Path, typer.Option("--dir", help="Working folder (emptied first).")] = Path(
        "campaign-demo"
    ),
    days: Annotated[int, typer.Option(help="How many days to simulate.")] = 30,
    start: Annotated[str, typer.Option(help="Simulated start (ISO 8601).")] = "2026-03-02T08:00:00-05:00",
    sendgrid: Annotated[
        bool,
        typer.Option(
            "--sendgrid",
            help=(
                "Send through the official SendGrid client to the project's own SendGrid-compatible server "
                "(a local child process) instead of the outbox."
            ),
        ),
    ] = False,
):
    """The whole job on the embedded default: import the sample leads, tick through DAYS
    simulated days, write the outbox, and show what went out."""
    from campaign.demo import run_demo

    run_demo(dir, days=days, start=parse_when(start), console=console, sendgrid=sendgrid)


# ---- campaigns: launch, pause, resume, stop, status, report, schedule ----------------------------


def _campaign_action(name: str, action: str, reason: str | None = None) -> None:
    from campaign.campaigns import CampaignError, change_state

    s = settings()
    store = store_for(s)
    try:
        campaign = change_state(store, name, action, reason)
    except CampaignError as exc:
        fail(str(exc), code=1)
    finally:
        store.close()
    console.print(f"Campaign {campaign['slug']} is now {campaign['state']}.", highlight=False)


@app.command()
def launch(
    name: Annotated[str, typer.Argument(help="The campaign's name, e.g. 'Spring 2026'.")],
    audiences: Annotated[
        str, typer.Option("--audiences", help="Comma-separated audiences, e.g. gad,social.")
    ],
    start: Annotated[
        str | None, typer.Option("--start", help="When it starts (ISO 8601). Default: now.")
    ] = None,
    sandbox: Annotated[
        bool, typer.Option("--sandbox", help="SendGrid sandbox mode: validated, never delivered.")
    ] = False,
):
    """Create a campaign over some audiences. A live one (SendGrid, not sandbox) must pass the
    preflight: lint clean, content approved, and the settings a live send needs."""
    from campaign.campaigns import CampaignError, is_live, live_preflight
    from campaign.campaigns import launch as launch_campaign

    s = settings()
    found = load_audiences_or_fail(s)
    names = [a.strip() for a in audiences.split(",") if a.strip()]
    store = store_for(s)
    try:
        live = is_live(s) and not sandbox
        templates = [st.template for a in found if a.name in names for st in a.steps]
        problems = live_preflight(s, store, templates)
        if problems and live:
            fail(
                "the campaign cannot go live yet. Fix these, then launch again:\n  - "
                + "\n  - ".join(problems),
                code=1,
            )
        campaign = launch_campaign(
            store,
            found,
            name=name,
            audience_names=names,
            starts_at=parse_when(start) if start else None,
            sandbox=sandbox,
            now=datetime.now(UTC),
        )
    except CampaignError as exc:
        fail(str(exc), code=1)
    finally:
        store.close()
    console.print(
        f"Launched {campaign['slug']} over {', '.join(names)}" + (" (sandbox)" if sandbox else "") + "."
    )
    if problems:
        console.print(
            f"[yellow]Drafts:[/] {len(problems)} thing(s) to fix before a live send (run `campaign status`):",
            highlight=False,
        )
        for p in problems:
            console.print(f"  - {p}", highlight=False)


@app.command()
def pause(
    name: Annotated[str, typer.Argument(help="Campaign name.")],
    reason: Annotated[
        str, typer.Option(help="Why (shown in `campaign status`).")
    ] = "paused by a coordinator",
):
    """Pause a campaign: each lead keeps its place; nothing is sent until resumed."""
    _campaign_action(name, "pause", reason)


@app.command()
def resume(name: Annotated[str, typer.Argument(help="Campaign name.")]):
    """Resume a paused campaign. Overdue emails go out one per lead per tick, inside the send
    window and the gap: a backlog never bursts."""
    _campaign_action(name, "resume")


@app.command()
def stop(name: Annotated[str, typer.Argument(help="Campaign name.")]):
    """Stop a campaign for good: its leads leave their sequences."""
    _campaign_action(name, "stop")


@app.command()
def status(format: Annotated[str, typer.Option("--format", help="table or json.")] = "table"):
    """Per campaign: state, leads per audience and step, sent today, due in the next 24 hours,
    failures and unknown sends, and why it is paused."""
    from campaign.campaigns import status as campaign_status

    if format not in ("table", "json"):
        fail(f"--format {format!r}: use table or json")
    s = settings()
    store = store_for(s)
    try:
        rows = campaign_status(store, s, datetime.now(UTC))
    finally:
        store.close()
    if format == "json":
        print(json.dumps(rows, indent=1, default=str))
        return
    for c in rows:
        console.print(
            f"[bold]{c['campaign']}[/] ({c['name']}): {c['state']}"
            + (f" — {c['paused_reason']}" if c["paused_reason"] else "")
            + f"; audiences {c['audiences']}; sent today {c['sent_today']}; due in 24 h {c['due_next_24h']}; "
            f"failures {c['failures']}; unknown {c['unknown']}",
            highlight=False,
        )
        table = Table("audience", "enrolled", "active", "finished", "exited", "sent per step")
        for audience, a in sorted(c["per_audience"].items()):
            steps = ", ".join(f"{k} {v.get('sent', 0)}" for k, v in a["steps"].items())
            table.add_row(
                audience, str(a["enrolled"]), str(a["active"]), str(a["finished"]), str(a["exited"]), steps
            )
        console.print(table)


@app.command()
def report(
    campaign: Annotated[str | None, typer.Argument(help="One campaign (default: all).")] = None,
    format: Annotated[str, typer.Option("--format", help="table, json, csv or html.")] = "table",
    out: Annotated[
        Path | None, typer.Option("--out", help="Write to this file instead of the terminal.")
    ] = None,
):
    """Results per campaign, audience and step: enrolled, sent, delivered, opened, clicked,
    bounced, unsubscribed, spam reports, booked, with rates and the median days from first
    email to booking. --format html writes one self-contained page with funnel charts."""
    from campaign.report import build_report, pct, to_csv, to_html, to_json

    if format not in ("table", "json", "csv", "html"):
        fail(f"--format {format!r}: use table, json, csv or html")
    s = settings()
    order = {a.name: [st.key for st in a.steps] for a in load_audiences_or_fail(s)}
    store = store_for(s)
    try:
        if campaign and store.campaign(campaign) is None:
            fail(f"no campaign named {campaign!r}; see `campaign status`", code=1)
        result = build_report(store, order, datetime.now(UTC)).for_campaign(campaign)
    finally:
        store.close()
    if format == "table":
        table = Table(
            "campaign",
            "audience",
            "step",
            "enrolled",
            "sent",
            "delivered",
            "opened",
            "clicked",
            "bounced",
            "unsub",
            "spam",
            "booked",
            "open rate",
            "booking rate",
        )
        for r in result.rows:
            table.add_row(
                r["campaign"],
                r["audience"],
                r["step"],
                *(
                    str(r[k])
                    for k in (
                        "enrolled",
                        "sent",
                        "delivered",
                        "opened",
                        "clicked",
                        "bounced",
                        "unsubscribed",
                        "spam_reports",
                        "booked",
                    )
                ),
                pct(r["open_rate"]),
                pct(r["booking_rate"]),
            )
        console.print(table)
        for (c, a), days in result.median_days_to_booking.items():
            if days is not None:
                console.print(f"{c} · {a}: median {days} days from first email to booking", highlight=False)
        return
    text = {"json": to_json, "csv": to_csv, "html": to_html}[format](result)
    if out:
        out.write_text(text, encoding="utf-8")
        console.print(f"Wrote {out}", highlight=False)
    else:
        sys.stdout.write(text)


@app.command()
def schedule():
    """Serve the schedules of prefect.yaml (tick every 15 minutes, the daily report, the
    reconciliation of unknown sends) from this one process. Needs a Prefect API
    (PREFECT_API_URL, e.g. `prefect server start`). Ctrl-C stops it cleanly."""
    import signal

    from flows.serve import serve_all

    def stop(signum, frame):
        raise KeyboardInterrupt

    # Ctrl-C and a service manager's SIGTERM both stop it cleanly (even where SIGINT was ignored).
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        serve_all()  # Prefect's runner handles the interrupt itself and returns
    except KeyboardInterrupt:
        pass
    console.print("Stopped: no more scheduled runs from this process.")


def main():  # pragma: no cover
    app()


# ---- the web app, bookings, forgetting -------------------------------------------------------------


@app.command()
def serve(
    host: Annotated[
        str, typer.Option(help="Address to listen on (put a TLS proxy in front for the public).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
):
    """Run the web app: unsubscribe pages, one-click unsubscribe, SendGrid and booking webhooks."""
    import uvicorn

    from campaign.web import create_app
    from campaign.webhook_signature import InvalidPublicKey

    try:
        web_app = create_app(settings())
    except InvalidPublicKey as exc:
        fail(str(exc))
    # No access log: unsubscribe URLs carry tokens, and a log reader could replay them.
    uvicorn.run(web_app, host=host, port=port, proxy_headers=True, access_log=False)


@app.command()
def booked(
    emails: Annotated[list[str], typer.Argument(help="Addresses of leads who booked a consultation.")],
):
    """Mark leads as booked: their sequences stop (reason "booked")."""
    now = datetime.now(UTC)
    s = settings()
    store = store_for(s)
    try:
        missing = [email for email in emails if not store.mark_booked(email, now)]
    finally:
        store.close()
    console.print(
        f"Marked {len(emails) - len(missing)} of {len(emails)} lead(s) booked; their sequences stopped.",
        highlight=False,
    )
    for email in missing:
        err.print(f"[yellow]not found:[/] {email}", highlight=False)
    if missing:
        raise typer.Exit(1)


@app.command()
def forget(
    email: Annotated[str, typer.Argument(help="The address to forget.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
):
    """Delete everything held about an address (lead, enrollments, sends, events); keep only a
    keyed hash on the suppression list so it is never emailed again. Asks first on a terminal."""
    if not yes and sys.stdin.isatty():
        typer.confirm("Delete this lead and everything about it? This cannot be undone", abort=True)
    s = settings()
    store = store_for(s)
    try:
        counts = store.forget_lead(email, datetime.now(UTC))
    finally:
        store.close()
    if counts["leads"]:
        console.print(
            f"Forgot 1 lead: deleted {counts['enrollments']} enrollment(s), {counts['sends']} send(s), "
            f"{counts['events']} event(s).",
            highlight=False,
        )
    else:
        console.print(f"No lead with that address; deleted {counts['events']} event(s).", highlight=False)
    console.print(
        "Only a keyed hash of the address is kept, on the suppression list: it will never be emailed again.",
        highlight=False,
    )


# ---- lint, approve, preview (content review) ------------------------------------------------------


def _shown(path: Path) -> str:
    """A path as a coordinator types it: relative to the current folder when under it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _problem_file(s, problem, audience_names) -> str:
    if problem.template in audience_names:  # a sequence-wide problem: the audience's emails together
        return f"{_shown(s.templates_dir / problem.template)}/*.md (the {problem.template} sequence)"
    return _shown(s.templates_dir / f"{problem.template}.md")


@app.command()
def lint(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print problems and grades as one JSON object.")
    ] = False,
):
    """Lint every email (audience x step), rendered for sample leads including hostile names:
    footer, unsubscribe link, 988 line, privacy of subjects/preheaders/URLs, escaping, promises,
    off-label statement, reading grade (Flesch-Kincaid at most 8), size, links, images.
    Prints each problem with its template file and what to change, and each email's grade.
    Exits 1 on any error; warnings do not fail."""
    from campaign.approval import run_lint, sequences_of
    from campaign.render import Renderer

    s = settings()
    found = load_audiences_or_fail(s)
    sequences = sequences_of(found)
    problems, grades = run_lint(Renderer(s.templates_dir, s.clinic), sequences, public_url=s.public_url)
    names = set(sequences)
    n_errors = sum(1 for p in problems if p.severity == "error")
    n_warnings = len(problems) - n_errors
    if as_json:
        print(
            json.dumps(
                {
                    "ok": n_errors == 0,
                    "errors": n_errors,
                    "warnings": n_warnings,
                    "problems": [
                        {
                            "template": p.template,
                            "file": _problem_file(s, p, names),
                            "rule": p.rule,
                            "severity": p.severity,
                            "message": p.message,
                        }
                        for p in problems
                    ],
                    "grades": {name: round(g, 2) for name, g in grades.items()},
                },
                indent=1,
            )
        )
    else:
        from rich.markup import escape

        for p in problems:
            colour = "red" if p.severity == "error" else "yellow"
            (err if p.severity == "error" else console).print(
                f"[{colour}]{p.severity}[/] {escape(_problem_file(s, p, names))} "
                f"[dim]\\[{escape(p.rule)}][/] {escape(p.message)}",
                highlight=False,
            )
        table = Table(
            "audience",
            "step",
            "day",
            "grade (FK)",
            "errors",
            "warnings",
            title=f"Reading grade per email ({_shown(s.templates_dir)}/AUDIENCE/STEP.md; text part "
            "without the footer; at most 8)",
        )
        for audience in found:
            for step in audience.steps:
                mine = [p for p in problems if p.template == step.template]
                grade = grades.get(step.template)
                table.add_row(
                    audience.name,
                    step.key,
                    f"{step.delay.total_seconds() / 86400:g}",
                    "-" if grade is None else f"{grade:.1f}",
                    str(sum(1 for p in mine if p.severity == "error")),
                    str(sum(1 for p in mine if p.severity == "warning")),
                )
        console.print(table)
        total = sum(len(v) for v in sequences.values())
        if n_errors:
            err.print(
                f"[red]✗[/] {n_errors} error(s), {n_warnings} warning(s) in {total} emails.", highlight=False
            )
        else:
            console.print(f"[green]✓[/] {total} emails, no errors, {n_warnings} warning(s).", highlight=False)
    if n_errors:
        raise typer.Exit(1)


@app.command()
def approve(
    audience: Annotated[str, typer.Argument(help="The audience whose emails to approve.")],
    step: Annotated[
        str | None, typer.Argument(help="One step's key; default: every step of the audience.")
    ] = None,
    by: Annotated[str, typer.Option("--by", help="The reviewer's name, recorded with the approval.")] = ...,
    force: Annotated[
        bool, typer.Option("--force", help="Approve even though lint finds errors (they are listed).")
    ] = False,
):
    """Record a reviewer's sign-off of one step's email, or every step of an audience: the
    reviewer, the date and a hash of the content. The hash covers templates/<audience>/<step>.md
    AND the shared layouts templates/layout.mjml and templates/layout.txt, so editing an email
    or a layout makes it need approval again. Live SendGrid sends refuse unapproved emails; the
    outbox and the sandbox accept drafts. Lint runs first and errors refuse the approval unless
    --force."""
    from rich.markup import escape

    from campaign.approval import approve as record
    from campaign.approval import lint_problems_for, run_lint, sequences_of
    from campaign.render import Renderer, TemplateError

    s = settings()
    found = load_audiences_or_fail(s)
    chosen = next((a for a in found if a.name == audience), None)
    if chosen is None:
        fail(f"no audience {audience!r}; audiences: {', '.join(a.name for a in found)}")
    if step is not None and chosen.step(step) is None:
        fail(f"audience {audience!r} has no step {step!r}; steps: {', '.join(st.key for st in chosen.steps)}")
    names = [st.template for st in chosen.steps if step is None or st.key == step]
    renderer = Renderer(s.templates_dir, s.clinic)
    # The whole sequence is linted: some rules (off-label, side effects) look at it together.
    problems, _ = run_lint(renderer, sequences_of([chosen]), public_url=s.public_url)
    blocking = [
        p
        for p in lint_problems_for(problems, names, audience=audience, whole_audience=step is None)
        if p.severity == "error"
    ]
    for p in blocking:
        err.print(
            f"[red]error[/] {escape(_problem_file(s, p, {audience}))} [dim]\\[{escape(p.rule)}][/] "
            f"{escape(p.message)}",
            highlight=False,
        )
    if blocking and not force:
        fail(
            f"lint found {len(blocking)} error(s) in what you asked to approve; nothing was approved. "
            "Fix them (see `campaign lint`), or approve anyway with --force.",
            code=1,
        )
    if blocking:
        err.print(
            f"[yellow]warning:[/] approving despite {len(blocking)} lint error(s) (--force).", highlight=False
        )
    store = store_for(s)
    try:
        done = record(store, renderer, names, by=by)
    except ValueError as exc:
        fail(str(exc))
    except (TemplateError, OSError) as exc:
        fail(f"cannot read the template: {exc}; nothing was approved", code=1)
    finally:
        store.close()
    for a in done:
        if a.new:
            console.print(
                f"[green]✓[/] {a.template} approved by {escape(a.by)} on {a.at:%Y-%m-%d} "
                f"(content {a.content_hash[:12]})",
                highlight=False,
            )
        else:
            console.print(
                f"  {a.template}: this content was already approved by {escape(a.by)} on {a.at:%Y-%m-%d}",
                highlight=False,
            )
    console.print(
        "A change to these templates or to templates/layout.mjml or layout.txt needs approval again.",
        highlight=False,
    )


@app.command()
def preview(
    audience: Annotated[
        str | None, typer.Argument(help="With STEP: preview one email. Omit both for the gallery.")
    ] = None,
    step: Annotated[str | None, typer.Argument(help="The step's key (e.g. welcome).")] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help=(
                "Gallery: a folder (default preview/). One email: an .html file (default "
                "preview-AUDIENCE-STEP.html)."
            ),
        ),
    ] = None,
    lead: Annotated[
        str | None,
        typer.Option("--lead", help="One email: render it for this lead's first name (from the database)."),
    ] = None,
    open_: Annotated[bool, typer.Option("--open", help="Open the result in a web browser.")] = False,
):
    """Write previews a coordinator reads. With no arguments: a self-contained HTML gallery
    (OUT/index.html): per audience, each step with its day, subject, preheader, the email at
    phone and desktop widths, its text part, lint results and approval state (DRAFT when not
    approved). With AUDIENCE STEP: one email (for a sample lead, or --lead EMAIL's first name)
    written to an .html file; the subject, preheader and text part are printed here."""
    from rich.markup import escape

    from campaign.audiences import AudienceFileError

    s = settings()
    if audience is not None and step is None:
        fail("give the STEP too (e.g. `campaign preview gad welcome`), or nothing for the gallery")
    if audience is None and lead is not None:
        fail("--lead needs AUDIENCE STEP: the gallery is rendered for a sample lead")
    store = store_for(s) if _database_exists(s) else None
    try:
        if audience is None:
            from campaign.preview import write_gallery

            folder = out or Path("preview")
            if folder.exists() and not folder.is_dir():
                fail(f"--out {folder} is a file; the gallery needs a folder")
            try:
                index = write_gallery(s, folder, store=store)
            except AudienceFileError as exc:
                fail("the audience files have problems:\n  " + "\n  ".join(exc.problems), code=1)
            html_text = index.read_text(encoding="utf-8")
            cards, drafts = html_text.count('<article class="card"'), html_text.count('data-approved="false"')
            console.print(f"Gallery of {cards} emails ({drafts} DRAFT): {index.resolve()}", highlight=False)
            target = index
        else:
            from campaign.preview import SAMPLE_FIRST_NAME, preview_one, single_html

            first_name = SAMPLE_FIRST_NAME
            if lead is not None:
                if store is None:
                    fail(f"no database at {s.database_url}: import leads first", code=1)
                found_lead = store.lead_by_email(lead)
                if found_lead is None:
                    fail(f"no lead with the address {lead}", code=1)
                first_name = found_lead.first_name
                enrollment = store.enrollment_for_lead(found_lead.id)
                if enrollment and enrollment["audience"] != audience:
                    err.print(
                        f"[yellow]note:[/] this lead is in the {enrollment['audience']} sequence, not "
                        f"{audience}",
                        highlight=False,
                    )
            try:
                card = preview_one(s, audience, step, first_name=first_name, store=store)
            except LookupError as exc:
                fail(str(exc).strip("'\""))
            except AudienceFileError as exc:
                fail("the audience files have problems:\n  " + "\n  ".join(exc.problems), code=1)
            target = out or Path(f"preview-{audience}-{step}.html")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(
                single_html(card, s.clinic.name, first_name=first_name, approvals_known=store is not None),
                encoding="utf-8",
            )
            if card.error:
                err.print(f"[red]does not render:[/] {escape(card.error)}", highlight=False)
            typer.echo(f"Subject:   {card.subject}")
            typer.echo(f"Preheader: {card.preheader}")
            typer.echo(
                "Approval:  "
                f"{card.state.label if store is not None else 'DRAFT: no database, so no approvals'}"
            )
            grade = "-" if card.grade is None else f"{card.grade:.1f}"
            typer.echo(
                f"Lint:      {card.errors} error(s), {len(card.problems) - card.errors} warning(s); "
                f"reading grade {grade}"
            )
            for p in card.problems:
                typer.echo(f"  {p.severity} [{p.rule}] {p.message}")
            typer.echo("\n" + card.text)
            console.print(f"Preview written: {target.resolve()}", highlight=False)
            if card.error:
                raise typer.Exit(1)
    finally:
        if store is not None:
            store.close()
    if open_:
        import webbrowser

        webbrowser.open(target.resolve().as_uri())


# ---- SendGrid: the project's local server, a test send ---------------------------------------------


@app.command("dev-sendgrid")
def dev_sendgrid(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1 (0: any free port).")] = 3030,
    key: Annotated[str, typer.Option("--key", help="The API key the server accepts.")] = "SG.dev-key",
):
    """Run the project's SendGrid-compatible server on 127.0.0.1 until Ctrl-C: watch a realistic
    run without SendGrid. It accepts POST /v3/mail/send like SendGrid and keeps what it got."""
    from campaign.delivery.sendgrid_server import main as serve_sendgrid

    shown = port or "PORT"
    console.print(
        "Point campaign at it from another shell, then tick:\n"
        f"  export SENDGRID_API_HOST=http://127.0.0.1:{shown} SENDGRID_API_KEY={key}\n"
        f"  campaign tick\n  curl http://127.0.0.1:{shown}/_dev/messages   # what it accepted\n"
        "Ctrl-C stops it.",
        highlight=False,
    )
    try:
        serve_sendgrid(port=port, api_key=key)
    except OSError as exc:
        fail(f"cannot listen on 127.0.0.1:{port} ({exc.strerror or exc}); choose another --port")


@app.command("test-send")
def test_send(
    audience: Annotated[str, typer.Argument(help="The audience, e.g. gad.")],
    step: Annotated[str, typer.Argument(help="The step key, e.g. welcome.")],
    to: Annotated[str, typer.Option("--to", help="The address to send the test to.")] = ...,
    first_name: Annotated[str, typer.Option("--first-name", help="The name the email greets.")] = "Sam",
):
    """Send one email of AUDIENCE's STEP to ADDRESS through the configured transport (SendGrid
    with SENDGRID_API_KEY, else the outbox), marked as a test, outside the ledger: no lead, no
    claim, a random send id. Exit 1 when it was not sent."""
    from email_validator import EmailNotValidError, validate_email

    from campaign.compose import make_test_email
    from campaign.delivery import BatchStopped
    from campaign.render import Renderer, TemplateError
    from campaign.runtime import make_transport, transport_label

    try:
        address = validate_email(to.strip(), check_deliverability=False).normalized
    except EmailNotValidError as exc:
        fail(f"--to {to!r} is not an email address: {exc}")
    s = settings()
    found = {a.name: a for a in load_audiences_or_fail(s)}
    if audience not in found:
        fail(f"no audience {audience!r}; the audiences: {', '.join(sorted(found))}")
    try:
        email = make_test_email(
            s, Renderer(s.templates_dir, s.clinic), found[audience], step, address, first_name
        )
    except LookupError as exc:
        fail(str(exc).strip("'\""))
    except TemplateError as exc:
        fail(f"the email does not render: {exc}", code=1)
    transport = make_transport(s)
    try:
        [result] = transport.send_batch([email])
    except BatchStopped as exc:  # the transport's stops (a refused key): say why, exit 1
        fail(str(exc), code=1)
    if result.status.value != "sent":
        fail(f"test email not sent ({result.status.value}): {result.error}", code=1)
    console.print(
        f"Test email {audience}/{step} sent to {address} through {transport_label(s)}: "
        f"send id {email.send_id}, message id {result.message_id or '-'}.",
        highlight=False,
    )
