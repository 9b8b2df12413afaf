"""Sending commands: tick, schedule, demo, dev-sendgrid, test-send."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from campaign.cli.base import app, console, err, fail, load_audiences_or_fail, parse_when, settings
from campaign.cli.output import Format, FormatOption, JsonOption, chosen, emit
from campaign.progress import terminal_progress

TICK_COLUMNS = ("now", "enrolled", "sent", "failed", "skipped", "unknown", "finished", "errors")


@app.command()
def tick(
    now: Annotated[str | None, typer.Option(help="The time to tick at (ISO 8601). Default: now.")] = None,
    output_format: FormatOption = Format.table,
    as_json: JsonOption = False,
):
    """Enroll new leads, then send every step due at NOW (a Prefect flow run)."""
    output_format = chosen(output_format, as_json)
    parse_when(now)
    from campaign.campaigns import PreflightFailed
    from campaign.delivery import Unauthorized
    from flows.tick import tick as tick_flow

    try:
        with terminal_progress("Ticking (enrollments looked at)", enabled=output_format is Format.table):
            summary = tick_flow(now=now)
    except PreflightFailed as exc:  # the flow's own preflight of a live send
        fail(f"{exc}\nNothing was sent.", code=1)
    except Unauthorized:
        fail(
            "SendGrid refused the API key (401). The tick stopped at once; unsent emails wait for the next "
            "tick. Check SENDGRID_API_KEY (it needs the Mail Send permission).",
            code=1,
        )
    row = {
        "now": summary["now"],
        **summary["totals"],
        "finished": summary["finished"],
        "errors": "; ".join(summary["errors"]),
    }
    emit(output_format, rows=[row], columns=TICK_COLUMNS, data=summary, table=lambda: print_tick(summary))


def print_tick(summary: dict) -> None:
    t = summary["totals"]
    console.print(
        f"Tick at {summary['now']}: enrolled {t['enrolled']}, sent {t['sent']}, failed {t['failed']}, "
        f"skipped {t['skipped']}, unknown {t['unknown']}, finished {summary['finished']}.",
        highlight=False,
    )
    for error in summary["errors"]:
        err.print(f"[red]template error:[/] {error}", highlight=False)


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


@app.command("dev-sendgrid")
def dev_sendgrid(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1 (0: any free port).")] = 3030,
    key: Annotated[str, typer.Option("--key", help="The API key the server accepts.")] = "SG.dev-key",
):
    """Run the project's SendGrid-compatible server on 127.0.0.1 until Ctrl-C: watch a realistic
    run without SendGrid. It accepts POST /v3/mail/send like SendGrid and keeps what it got."""
    from campaign.devserver import main as serve_sendgrid

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
    from campaign.app.delivery import UnsentTestEmail, send_test_email

    s = settings()
    try:
        sent = send_test_email(s, load_audiences_or_fail(s), audience, step, to, first_name)
    except (ValueError, LookupError) as exc:
        fail(str(exc).strip("'\""))
    except UnsentTestEmail as exc:
        fail(str(exc), code=1)
    console.print(
        f"Test email {sent.audience}/{sent.step} sent to {sent.address} through {sent.transport}: "
        f"send id {sent.send_id}, message id {sent.message_id or '-'}.",
        highlight=False,
    )
