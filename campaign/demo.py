"""`campaign demo`: the main job end to end on the embedded default, on a simulated clock.

A fresh folder gets its own SQLite file and outbox. The sample leads are imported, then the
tick runs at each 15-minute mark (like the cron schedule) at which something is due, until the
simulated days are over. Marks where nothing is due are skipped: they would send nothing. Like
`campaign tick`, the import and the ticks are Prefect flow runs when a Prefect server is
configured (or with --prefect: then a temporary server, about a second per flow run), else
plain calls in this process.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rich import box
from rich.console import Console
from rich.table import Table

from campaign import prefect_env
from campaign.settings import PROJECT_ROOT

TICK_EVERY = timedelta(minutes=15)
MARKER = ".campaign-demo"


def next_mark(moment: datetime) -> datetime:
    """Round up to the next 15-minute mark (the cron schedule's)."""
    epoch = datetime(2000, 1, 1, tzinfo=UTC)
    steps = -((epoch - moment) // TICK_EVERY)
    return epoch + steps * TICK_EVERY


def prepare_folder(folder: Path) -> None:
    if folder.exists() and any(folder.iterdir()):
        if not (folder / MARKER).exists():
            raise SystemExit(
                f"{folder} is not empty and was not made by `campaign demo`; choose another --dir"
            )
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MARKER).write_text("made by campaign demo\n")


def simulate(
    store,
    start: datetime,
    end: datetime,
    tick: Callable[[datetime], dict],
    on_tick: Callable[[datetime, dict], None] | None = None,
) -> tuple[int, int]:
    """Tick at each 15-minute mark from `start` to `end` at which something is due.
    Returns (ticks run, emails sent)."""
    moment, ticks, sent = next_mark(start), 0, 0
    while moment <= end:
        totals = tick(moment)["totals"]
        ticks += 1
        sent += totals["sent"]
        if on_tick:
            on_tick(moment, totals)
        due = store.next_due_at()
        if due is None:
            break
        moment = max(next_mark(due), moment + TICK_EVERY)
    return ticks, sent


DEMO_SENDGRID_KEY = "SG.demo-key"


@contextlib.contextmanager
def sendgrid_server_process(api_key: str = DEMO_SENDGRID_KEY):
    """The project's SendGrid-compatible server in a child process on a free 127.0.0.1 port
    (a process of its own: sharing the GIL with the sender would halve the throughput).
    Yields its base URL; stops it on exit."""
    code = f"from campaign.devserver import main; main(port=0, api_key={api_key!r}, host='127.0.0.1')"
    proc = subprocess.Popen(
        [sys.executable, "-u", "-c", code], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        first = proc.stdout.readline()  # "SendGrid-compatible server at http://127.0.0.1:PORT"
        if "http://" not in first:
            raise RuntimeError("the SendGrid-compatible server did not start")
        yield first.rsplit(" ", 1)[-1].strip()
    finally:
        stop_process(proc)
        proc.stdout.close()


def stop_process(proc: subprocess.Popen, timeout: float = 10) -> None:
    """Terminate a child process; kill it if it has not ended after `timeout` seconds."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def server_record(url: str) -> dict:
    """What the server accepted: {"messages": n, "send_ids": set of custom_args send ids}."""
    with urllib.request.urlopen(f"{url}/_dev/messages", timeout=30) as answer:
        data = json.load(answer)
    ids = {(m["payload"].get("custom_args") or {}).get("send_id") for m in data["messages"]}
    return {"messages": len(data["messages"]), "send_ids": ids}


def run_demo(
    folder: Path,
    *,
    days: int,
    start: datetime,
    console: Console,
    sendgrid: bool = False,
    prefect: bool | None = None,
) -> dict:
    """`sendgrid`: send through the official client to the project's SendGrid-compatible
    server (started in a child process) instead of writing the outbox. `prefect`: import and
    tick as Prefect flows (None: when a Prefect server is configured, like `campaign tick`)."""
    if not sendgrid:
        return _run_demo(folder, days=days, start=start, console=console, prefect=prefect)
    saved = {k: os.environ.get(k) for k in ("SENDGRID_API_KEY", "SENDGRID_API_HOST")}
    with sendgrid_server_process() as url:
        os.environ["SENDGRID_API_KEY"], os.environ["SENDGRID_API_HOST"] = DEMO_SENDGRID_KEY, url
        try:
            result = _run_demo(folder, days=days, start=start, console=console, prefect=prefect)
            record = server_record(url)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    from campaign.runtime import open_store
    from campaign.settings import get_settings

    store = open_store(get_settings())
    try:
        ledger_sent = {r["send_id"] for r in store.ledger() if r["status"] == "sent"}
    finally:
        store.close()
    console.print(
        f"The SendGrid-compatible server at {url} recorded {record['messages']} messages "
        f"({len(record['send_ids'])} distinct send ids); the ledger holds {len(ledger_sent)} sent, "
        + ("the same emails." if record["send_ids"] == ledger_sent else "NOT the same emails."),
        highlight=False,
    )
    result["server_messages"] = record["messages"]
    result["server_matches_ledger"] = record["send_ids"] == ledger_sent and record["messages"] == len(
        ledger_sent
    )
    return result


def _run_demo(folder: Path, *, days: int, start: datetime, console: Console, prefect: bool | None) -> dict:
    folder = folder.resolve()
    prepare_folder(folder)
    db = folder / "campaign.db"
    outbox = folder / "outbox"
    os.environ["CAMPAIGN_DATABASE_URL"] = f"sqlite:///{db}"
    os.environ["CAMPAIGN_OUTBOX_DIR"] = str(outbox)
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")  # our own lines say what happens
    # Prefect's state (its temporary server's database) lives in the demo folder: a fresh one per
    # run, never shared with another process (a shared one printed "database is locked").
    prefect_env.apply()
    prefect_env.use_home(folder / ".prefect")
    leads_csv = folder / "sample_leads.csv"
    shutil.copy(PROJECT_ROOT / "audiences" / "sample_leads.csv", leads_csv)

    from campaign.app.ticks import tick_runner
    from campaign.runtime import open_store, transport_label
    from campaign.settings import get_settings

    settings = get_settings()
    tick, note = tick_runner(prefect)
    console.print(
        f"Demo in {folder}\nTransport: {transport_label(settings)}. Simulating {days} days from "
        f"{start.isoformat()}."
    )
    if note:  # as `campaign tick` says it
        console.print(
            ("No Prefect server configured: " if prefect is None else "")
            + "the import and the ticks run in this process (--prefect runs them as Prefect flows).",
            highlight=False,
        )
    summary = import_leads(settings, leads_csv, flow=note is None)
    console.print(
        f"Imported {summary['new']} leads ({summary['rejected']} rows rejected: see "
        f"{summary['rejected_file']})."
    )

    store = open_store(settings)
    try:
        ticks, sent = simulate(
            store,
            start,
            start + timedelta(days=days),
            lambda moment: tick(moment.isoformat()),
            on_tick=lambda moment, totals: (
                console.print(
                    f"  {moment:%a %b %d %H:%M} UTC  enrolled {totals['enrolled']:>3}  sent "
                    f"{totals['sent']:>3}",
                    highlight=False,
                )
                if totals["sent"] or totals["enrolled"]
                else None
            ),
        )
        matrix = store.send_matrix()
        audiences = sorted({a for a, _ in matrix})
    finally:
        store.close()

    from campaign.audiences import load_audiences

    steps = [s.key for s in load_audiences(settings.audiences_dir)[0].steps]
    table = Table(title=f"Emails written per audience × step ({ticks} ticks)", box=box.SIMPLE_HEAD)
    table.add_column("audience", no_wrap=True)
    for column in (*steps, "total"):
        table.add_column(column, justify="right")
    for audience in audiences:
        counts = [matrix.get((audience, s), 0) for s in steps]
        table.add_row(audience, *map(str, counts), str(sum(counts)))
    console.print(table)

    from campaign.preview import write_gallery
    from campaign.report import build_report, to_html

    store = open_store(settings)
    try:
        gallery = write_gallery(settings, folder / "preview", store=store)
        order = {a.name: [st.key for st in a.steps] for a in load_audiences(settings.audiences_dir)}
        report_path = folder / "report.html"
        report_path.write_text(
            to_html(build_report(store, order, start + timedelta(days=days))), encoding="utf-8"
        )
        user, password = add_demo_user(store)
    finally:
        store.close()
    where = (
        f"  outbox index: {outbox / 'index.html'}"
        if settings.sendgrid_api_key is None
        else f"  SendGrid:     {transport_label(settings)}"
    )
    console.print(
        f"Sent {sent} emails. Look at:\n{where}\n  previews:     {gallery}\n  report:       "
        f"{report_path}\n  database:     {db}"
    )
    console.print(
        f"The console on this demo's database:\n  CAMPAIGN_DATABASE_URL=sqlite:///{db} campaign serve\n"
        f"  then open http://127.0.0.1:8000/console/ and log in as {user} with password {password}",
        highlight=False,
        soft_wrap=True,
    )
    return {
        "ticks": ticks,
        "sent": sent,
        "matrix": matrix,
        "folder": str(folder),
        "gallery": str(gallery),
        "console_user": user,
        "console_password": password,
    }


def import_leads(settings, path: Path, *, flow: bool) -> dict:
    """The sample file into the demo's database: through the import flow, or plainly."""
    if flow:
        from flows.import_leads import import_leads as import_flow

        return import_flow(str(path))
    from campaign.app.leads import import_file
    from campaign.runtime import open_store

    return import_file(lambda: open_store(settings), settings, str(path), datetime.now(UTC)).as_dict()


DEMO_USER = "demo-admin@clinic.example"


def add_demo_user(store) -> tuple[str, str]:
    """An admin in the demo's own database, with a random password (printed once)."""
    import secrets

    from campaign.accounts import add_user
    from campaign.store.accounts import AccountStore

    password = secrets.token_urlsafe(12)
    add_user(AccountStore(store.engine), DEMO_USER, "admin", password, "Demo admin", now=datetime.now(UTC))
    return DEMO_USER, password
