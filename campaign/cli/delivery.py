"""Sending commands: tick, schedule, demo, dev-sendgrid, test-send."""

from __future__ import annotations

import contextlib
import signal
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from campaign.cli.base import (
    app,
    console,
    err,
    fail,
    load_audiences_or_fail,
    parse_when,
    settings,
    store_for,
    store_if_exists,
)
from campaign.cli.output import Format, FormatOption, JsonOption, chosen, emit
from campaign.progress import terminal_progress

PrefectOption = Annotated[
    bool | None,
    typer.Option(
        "--prefect/--no-prefect",
        help="Run as a Prefect flow, or in this process. Default: a flow only when a Prefect server is "
        "configured (PREFECT_API_URL or the active Prefect profile); a flow without one starts a "
        "temporary server (10+ s).",
    ),
]
TICK_COLUMNS = ("now", "enrolled", "sent", "failed", "skipped", "unknown", "finished", "errors")


@app.command()
def tick(
    now: Annotated[
        str | None,
        typer.Option(metavar="WHEN", help="The time to tick at: ISO 8601, a date, today... Default: now."),
    ] = None,
    output_format: FormatOption = Format.table,
    as_json: JsonOption = False,
    prefect: PrefectOption = None,
):
    """Enroll new leads and send what is due.

    Enrolls new consenting leads, then sends every step due at --now (default: the real clock):
    as a Prefect flow run when a Prefect server is configured (PREFECT_API_URL), else in this
    process. With no leads yet it says so, and how to import them."""
    output_format = chosen(output_format, as_json)
    moment = parse_when(now) if now else None
    from campaign.app.leads import has_leads
    from campaign.campaigns import PreflightFailed
    from campaign.delivery import Unauthorized

    s = settings()
    with store_if_exists(s) as store:
        nobody = store is None or not has_leads(store)
    if nobody:
        _no_leads_yet(output_format, moment)
        return
    from campaign.app.ticks import tick_runner

    run, note = tick_runner(prefect)
    try:
        with terminal_progress("Ticking (enrollments looked at)", enabled=output_format is Format.table):
            # The parsed time goes on, so "2026-03-02" or "tomorrow" mean what they meant here.
            summary = run(moment.isoformat() if moment else None)
    except PreflightFailed as exc:  # the flow's own preflight of a live send
        fail(f"{exc}\nNothing was sent.", code=1)
    except Unauthorized:
        fail(
            "SendGrid refused the API key (401). The tick stopped at once; unsent emails wait for the next "
            "tick. Check SENDGRID_API_KEY (it needs the Mail Send permission).",
            code=1,
        )
    except RuntimeError as exc:  # Prefect's client: the configured server did not answer
        if not str(exc).startswith("Failed to reach API"):
            raise
        fail(
            f"{exc} (the configured Prefect server). Nothing was sent. Start the server, or run the tick "
            "in this process: campaign tick --no-prefect",
            code=1,
        )
    if note and output_format is Format.table:
        console.print(note, highlight=False, soft_wrap=True)
    elif note and output_format is Format.csv:  # the CSV stays rows only
        err.print(note, highlight=False, soft_wrap=True)
    _print_tick_summary(output_format, {**summary, "note": note} if note else summary)


def _no_leads_yet(output_format: Format, moment: datetime | None) -> None:
    """Nothing to enroll or send: say why and what to do, and print an empty summary for programs."""
    from campaign.engine import TickReport

    err.print(
        "[yellow]note:[/] there are no leads yet, so there is nothing to send. Import the lead "
        "form's CSV export first, then tick again:\n  campaign import leads.csv\n  campaign tick",
        highlight=False,
    )
    if output_format is not Format.table:
        _print_tick_summary(output_format, TickReport(now=moment or datetime.now(UTC)).as_dict())


def _print_tick_summary(output_format: Format, summary: dict) -> None:
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
    if capped := summary["reconciled"].get("capped"):
        console.print(
            f"{capped} unknown sends reached the resend cap (CAMPAIGN_MAX_RESENDS) and are not sent again.",
            highlight=False,
        )
    for error in summary["errors"]:
        err.print(f"[red]template error:[/] {error}", highlight=False)


@app.command()
def schedule():
    """Run prefect.yaml's schedules from this one process.

    Serves the tick (every 15 minutes), the daily report and the reconciliation of unknown
    sends. Needs a Prefect API
    (PREFECT_API_URL, e.g. `prefect server start`). Ctrl-C stops it cleanly."""
    from flows.serve import serve_all

    # Ctrl-C and a service manager's SIGTERM both stop it cleanly (even where SIGINT was ignored).
    with stop_on_signals():
        try:
            serve_all()  # Prefect's runner handles the interrupt itself and returns
        except KeyboardInterrupt:
            pass
    console.print("Stopped: no more scheduled runs from this process.")


@app.command()
def demo(
    dir: Annotated[Path, typer.Option("--dir", metavar="DIR", help="Working folder (emptied first).")] = Path(
        "campaign-demo"
    ),
    days: Annotated[int, typer.Option(metavar="N", help="How many days to simulate.")] = 30,
    start: Annotated[
        str, typer.Option(metavar="WHEN", help="Simulated start: ISO 8601 or a date.")
    ] = "2026-03-02T08:00:00-05:00",
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
    prefect: PrefectOption = None,
):
    """The whole job on sample leads, in a fresh folder.

    Imports the sample leads, ticks through DAYS simulated days on the embedded default (a
    SQLite file, the outbox; Prefect flows only with a configured Prefect server or --prefect),
    and shows what went out and where to look."""
    from campaign.demo import run_demo

    run_demo(
        dir,
        days=days,
        start=parse_when(start, "--start"),
        console=console,
        sendgrid=sendgrid,
        prefect=prefect,
    )


@app.command("dev-sendgrid")
def dev_sendgrid(
    port: Annotated[int, typer.Option(metavar="N", help="Port on 127.0.0.1 (0: any free port).")] = 3030,
    key: Annotated[
        str, typer.Option("--key", metavar="KEY", help="The API key the server accepts.")
    ] = "SG.dev-key",
):
    """Run a local SendGrid-compatible server to send to.

    Serves on 127.0.0.1 until Ctrl-C (or SIGTERM): watch a realistic run without SendGrid. It
    accepts POST /v3/mail/send like SendGrid and keeps what it got."""
    from campaign.devserver import SendGridServer

    try:
        server = SendGridServer("127.0.0.1", port, api_key=key)
    except OSError as exc:
        fail(f"cannot listen on 127.0.0.1:{port} ({exc.strerror or exc}); choose another --port")
    # Everything on standard output, in one block, with the port it really got.
    typer.echo(
        f"SendGrid-compatible server at {server.url} (Ctrl-C stops it)\n"
        "Point campaign at it from another shell, then tick:\n"
        f"  export SENDGRID_API_HOST={server.url} SENDGRID_API_KEY={key}\n"
        "  campaign tick\n"
        f"What it accepted:   curl {server.url}/_dev/messages\n"
        f"Webhook public key: {server.public_key_b64}"
    )
    with stop_on_signals():
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.stop()
    typer.echo("Stopped.")


@contextlib.contextmanager
def stop_on_signals():
    """SIGINT (Ctrl-C) and SIGTERM raise KeyboardInterrupt, even in a process started in the
    background, where the shell starts it with SIGINT ignored. The old handlers come back after."""

    def stop(signum, frame):
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@app.command("test-send")
def test_send(
    audience: Annotated[str, typer.Argument(help="The audience, e.g. gad.")],
    step: Annotated[str, typer.Argument(help="The step key, e.g. welcome.")],
    to: Annotated[str, typer.Option("--to", metavar="EMAIL", help="The address to send the test to.")] = ...,
    first_name: Annotated[
        str, typer.Option("--first-name", metavar="NAME", help="The name the email greets.")
    ] = "Sam",
    draft: Annotated[
        bool,
        typer.Option(
            "--draft",
            help="With live SendGrid: send content that is not approved or has lint errors, "
            'its subject marked "[TEST DRAFT]". Settings problems still refuse.',
        ),
    ] = False,
):
    """Send one email of a step to an address, as a test.

    Sends AUDIENCE's STEP to the --to address through the configured transport (SendGrid with
    SENDGRID_API_KEY, else the outbox), marked as a test, outside the ledger: no lead, no
    claim, a random send id. With live SendGrid it passes the live preflight first (see
    --draft). Exit 1 when it was not sent."""
    from campaign.accounts import CLI
    from campaign.app.delivery import UnsentTestEmail, send_test_audited

    s = settings()
    # The database holds the approvals (a live send) and the audit log (every test send).
    try:
        with store_for(s) as store:
            sent = send_test_audited(
                s,
                store,
                CLI,
                load_audiences_or_fail(s),
                audience=audience,
                step=step,
                to=to,
                first_name=first_name,
                now=datetime.now(UTC),
                draft=draft,
            )
    except (ValueError, LookupError) as exc:
        fail(str(exc).strip("'\""))
    except UnsentTestEmail as exc:
        fail(str(exc), code=1)
    console.print(
        f"Test email {sent.audience}/{sent.step} sent to {sent.address} through {sent.transport}: "
        f"send id {sent.send_id}, message id {sent.message_id or '-'}.",
        highlight=False,
    )
