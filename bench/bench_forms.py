"""Benchmark: the public sign-up form under sustained posts (each a new address).

`campaign serve` (real uvicorn, one process) over a fresh database, as bench_api.py starts it;
a form made with campaign.app.forms; a few client threads (each its own keep-alive connection)
post the form with a new address each time, for the given time. Each post stores an unconfirmed
lead, claims a confirmation email and answers the thank-you; the email goes after the answer (a
background task), through the project's SendGrid-compatible server (as in production; or the
outbox with --transport outbox). Reports posts/s, p50/p99/max latency, the status codes,
and checks that every post answered 200 is stored unconfirmed with one confirmation email sent.

The minimum fill time is 0 and the per-client limit is off here: the bench measures the path a
person's post takes, not the traps (each thread reuses one "shown at" from the form page).

    .venv/bin/python bench/bench_forms.py --seconds 30 --threads 4 [--database sqlite|postgresql|both]
        [--transport sendgrid|outbox]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_api import cpu_seconds, each_database, machine_line, run_threads, server, summary, timing_cells

SHOWN = re.compile(r'name="shown" value="([^"]+)"')


def make_form(database_url: str) -> str:
    from campaign.app.forms import create_form
    from campaign.settings import Settings
    from campaign.store import Store

    settings = Settings(database_url=database_url, secret_key="bench-secret-key")
    with Store.open(database_url, secret_key="bench-secret-key") as store:
        return create_form(
            store, settings, f"bench-{uuid.uuid4().hex[:6]}", None, None, datetime.now(UTC)
        ).key


def run_clients(url: str, key: str, threads: int, seconds: float) -> tuple[list, list[str]]:
    import httpx

    results: list[list] = [[] for _ in range(threads)]
    accepted: list[list[str]] = [[] for _ in range(threads)]
    stop_at = time.monotonic() + seconds
    run = uuid.uuid4().hex[:8]

    def client(n: int) -> None:
        with httpx.Client(base_url=url, timeout=30) as http:
            shown = SHOWN.search(http.get(f"/forms/{key}").text).group(1)
            i = 0
            while time.monotonic() < stop_at:
                email = f"signup-{run}-{n}-{i}@example.com"
                body = {
                    "email": email,
                    "first_name": "Sam",
                    "anxiety_type": "Social anxiety",
                    "prior_treatments": "1",
                    "consent": "yes",
                    "website": "",
                    "shown": shown,
                }
                started = time.perf_counter()
                try:
                    status = http.post(f"/forms/{key}", data=body).status_code
                except httpx.HTTPError:
                    status = 0
                results[n].append((status, time.perf_counter() - started))
                if status == 200:
                    accepted[n].append(email)
                i += 1

    run_threads(client, threads)
    return [r for part in results for r in part], [e for part in accepted for e in part]


def stored(database_url: str) -> tuple[set[str], Counter]:
    """The unconfirmed leads' addresses, and the confirmation emails by status."""
    import sqlalchemy as sa

    engine = sa.create_engine(database_url)
    with engine.connect() as conn:
        emails = set(
            conn.execute(sa.text("SELECT email FROM leads WHERE unconfirmed_since IS NOT NULL")).scalars()
        )
        statuses = Counter(
            dict(conn.execute(sa.text("SELECT status, count(*) FROM confirmations GROUP BY status")).all())
        )
    engine.dispose()
    return emails, statuses


@contextlib.contextmanager
def transport(kind: str):
    """The outbox (no key), or the project's SendGrid-compatible server in this process."""
    if kind == "outbox":
        yield
        return
    from campaign.devserver import running_server

    with running_server(api_key="SG.bench-key") as sendgrid:
        os.environ.update(SENDGRID_API_KEY="SG.bench-key", SENDGRID_API_HOST=sendgrid.url)
        try:
            yield
        finally:
            del os.environ["SENDGRID_API_KEY"], os.environ["SENDGRID_API_HOST"]


def measure(name: str, database_url: str, folder: Path, threads: int, seconds: float, via: str) -> dict:
    with transport(via), server(database_url, folder) as (url, _token, pid):
        key = make_form(database_url)
        run_clients(url, key, threads, 2)  # warm up
        loadavg = os.getloadavg()[0]
        started, cpu = time.perf_counter(), cpu_seconds(pid)
        results, accepted = run_clients(url, key, threads, seconds)
        elapsed, cpu = time.perf_counter() - started, cpu_seconds(pid) - cpu
        time.sleep(2)  # the last background sends
    emails, statuses = stored(database_url)
    return {
        "database": name,
        **summary(results, elapsed, cpu, loadavg),
        "accepted": len(accepted),
        "lost": sum(e not in emails for e in accepted),
        "confirmations": dict(statuses),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--database", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--transport", choices=("outbox", "sendgrid"), default="sendgrid")
    args = parser.parse_args()
    os.environ.update(CAMPAIGN_FORM_MIN_FILL_SECONDS="0", CAMPAIGN_FORM_POSTS_PER_CLIENT_MINUTE="100000000")
    print(
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: {args.seconds:g} s of sign-up form posts, "
        f"{args.threads} client threads, one uvicorn process, transport: {args.transport}.\n" + machine_line()
    )
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        rows = each_database(
            args.database,
            folder,
            lambda name, url: measure(name, url, folder, args.threads, args.seconds, args.transport),
        )
    print(
        "| database | posts | posts/s | p50 | p99 | max | statuses | 200 stored unconfirmed "
        "| confirmation emails | server CPU per post | load avg (1 min) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        mails = ", ".join(f"{k}: {v}" for k, v in sorted(r["confirmations"].items()))
        print(
            f"{timing_cells(r)} {r['accepted'] - r['lost']} of {r['accepted']} | {mails} | "
            f"{r['server_cpu_ms']:.1f} ms | {r['load_before']:.2f} |"
        )
    if any(r["lost"] for r in rows):
        sys.exit("some posts answered 200 are not stored")


if __name__ == "__main__":
    main()
