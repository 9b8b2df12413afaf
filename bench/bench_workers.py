"""Benchmark: 1, 2, 4 tick workers (processes) at once on one PostgreSQL database, sending N due
welcome emails to the project's SendGrid-compatible server (a process of its own) with added
latency per request (default 50 ms).

For each worker count: a fresh PostgreSQL schema, N consenting leads imported and enrolled (all
due at NOW), then W processes each run the tick (campaign.engine.run_tick, as the Prefect tick
flow does, without Prefect: its share is measured elsewhere) from a common start. Reported:
the wall time from the start to the last worker's end, throughput (distinct recipients the
server recorded per second), duplicates (messages beyond one per recipient: must be 0), ledger
rows 'sent', and each worker's share.

    .venv/bin/python bench/bench_workers.py                           # 5,000 leads, per email
    .venv/bin/python bench/bench_workers.py --leads 20000 --bulk      # bulk requests
    .venv/bin/python bench/bench_workers.py --write                   # append to bench/RESULTS.md

PostgreSQL: CAMPAIGN_TEST_POSTGRES_URL (default postgresql+psycopg://postgres@127.0.0.1:5432/test);
each run uses a schema of its own, dropped afterwards (bench_api.postgres_schema).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

KEY = "SG.bench-key"
NOW = datetime(2026, 3, 2, 10, 0, tzinfo=ZoneInfo("America/New_York")).astimezone(UTC)

# One worker: waits for the start file, runs one tick, prints what it sent and when it ended.
WORKER = """
import json, os, resource, sys, time
from datetime import datetime
from pathlib import Path
from campaign.engine import run_tick
from campaign.runtime import build_context
from campaign.settings import get_settings
now = datetime.fromisoformat(sys.argv[1])
ctx = build_context(get_settings(), now=now)


def cpu_and_wait():
    # CPU seconds, and seconds its threads spent runnable but waiting for a CPU (Linux schedstat).
    usage = resource.getrusage(resource.RUSAGE_SELF)
    tasks = os.listdir("/proc/self/task")
    waited = sum(int(open(f"/proc/self/task/{t}/schedstat").read().split()[1]) for t in tasks)
    return usage.ru_utime + usage.ru_stime, waited / 1e9


cpu0, wait0 = cpu_and_wait()  # start-up (imports, the migrations check) is not the tick's
print("ready", flush=True)
while not Path(sys.argv[2]).exists():
    time.sleep(0.001)
report = run_tick(ctx, now)
ended = time.time()
ctx.store.close()
cpu1, wait1 = cpu_and_wait()
print(json.dumps({"sent": sum(report.sent.values()), "unknown": sum(report.unknown.values()),
                  "failed": sum(report.failed.values()), "ended": ended,
                  "cpu_s": cpu1 - cpu0, "cpu_total_s": cpu1, "cpu_wait_s": wait1 - wait0}), flush=True)
"""


def env_for(url: str, host: str, args, tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CAMPAIGN_", "SENDGRID_"))}
    env.update(
        {
            "CAMPAIGN_DATABASE_URL": url,
            "CAMPAIGN_SECRET_KEY": "bench-secret",
            "CAMPAIGN_PUBLIC_URL": "https://clinic.example.org",
            "CAMPAIGN_CONTENT_DIR": str(ROOT),
            "CAMPAIGN_OUTBOX_DIR": str(tmp / "outbox"),
            "CAMPAIGN_SEND_CONCURRENCY": str(args.concurrency),
            "CAMPAIGN_BATCH_SIZE": str(args.batch_size),
            "CAMPAIGN_BULK_SENDING": "1" if args.bulk else "0",
            "SENDGRID_API_KEY": KEY,
            "SENDGRID_API_HOST": host,
        }
    )
    return env


def prepare(url: str, n: int) -> None:
    """N consenting leads in New York, enrolled at NOW: every welcome is due at NOW."""
    from campaign.engine import enroll_new
    from campaign.models import AnxietyType, LeadIn
    from campaign.runtime import build_context
    from campaign.sample import FIRST, LAST
    from campaign.settings import Settings

    settings = Settings(database_url=url, secret_key="bench-secret", content_dir=ROOT)
    ctx = build_context(settings)
    kinds = list(AnxietyType)
    ctx.store.upsert_leads(
        (
            LeadIn(
                email=f"lead{i}@example.com",
                first_name=FIRST[i % len(FIRST)],
                last_name=LAST[i % len(LAST)],
                anxiety_type=kinds[i % len(kinds)],
                consent=True,
            )
            for i in range(n)
        ),
        NOW,
    )
    report = enroll_new(ctx, NOW)
    assert sum(report.enrolled.values()) == n, report.enrolled
    ctx.store.close()


def ledger_statuses(url: str) -> dict[str, int]:
    from collections import Counter

    from campaign.store import Store

    store = Store.open(url, secret_key="bench-secret", migrate=False)
    try:
        return dict(Counter(row["status"] for row in store.ledger()))
    finally:
        store.close()


def dev(host: str, path: str, body: dict | None = None) -> dict:
    request = urllib.request.Request(
        f"{host}{path}",
        data=None if body is None else json.dumps(body).encode(),
        method="GET" if body is None else "POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as answer:
        return json.load(answer)


def run_workers(workers: int, host: str, args, tmp: Path) -> dict:
    from bench_api import postgres_schema  # a private schema, dropped at the end

    with postgres_schema() as url:
        if url is None:
            raise SystemExit("PostgreSQL is not reachable: tick workers need it (SQLite is one writer)")
        t = time.perf_counter()
        prepare(url, args.leads)
        prepared = time.perf_counter() - t
        dev(host, "/_dev/reset", {})
        go = tmp / f"go-{workers}"
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", WORKER, NOW.isoformat(), str(go)],
                env=env_for(url, host, args, tmp),
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(workers)
        ]
        for p in procs:
            if p.stdout.readline().strip() != "ready":
                raise SystemExit(f"a worker did not start:\n{p.stderr.read()[-3000:]}")
        started = time.time()
        go.touch()
        shares = []
        for p in procs:
            out, err = p.communicate(timeout=3600)
            if p.returncode != 0:
                raise SystemExit(f"a worker failed:\n{err[-3000:]}")
            shares.append(json.loads(out.strip().splitlines()[-1]))
        wall = max(s["ended"] for s in shares) - started
        summary = dev(host, "/_dev/summary")
        statuses = ledger_statuses(url)
    recorded = summary["distinct_to"]
    return {
        "workers": workers,
        "prepared_s": prepared,
        "wall_s": wall,
        "rate": recorded / wall,
        "recorded": recorded,
        "messages": summary["messages"],
        "duplicates": summary["messages"] - recorded,
        "ledger": statuses,
        "shares": [s["sent"] for s in shares],
        # The workers' own CPU (not the server's, PostgreSQL's or the other sessions'), per email.
        "cpu_ms": 1000 * sum(s["cpu_s"] for s in shares) / max(recorded, 1),
        "cpu_wait_s": max(s["cpu_wait_s"] for s in shares),
        "cpu_total_s": sum(s["cpu_total_s"] for s in shares),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--leads", type=int, default=5_000)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--latency", type=float, default=50.0, help="added server latency per request, ms")
    parser.add_argument("--concurrency", type=int, default=4, help="CAMPAIGN_SEND_CONCURRENCY per worker")
    parser.add_argument("--batch-size", type=int, default=1000, help="CAMPAIGN_BATCH_SIZE")
    parser.add_argument("--bulk", action="store_true", help="bulk requests (default: one email per request)")
    parser.add_argument("--write", action="store_true", help="append the table to bench/RESULTS.md")
    args = parser.parse_args()

    from campaign.demo import sendgrid_server_process

    rows = []
    loads = []
    with tempfile.TemporaryDirectory(prefix="bench-workers-") as tmp, sendgrid_server_process(KEY) as host:
        dev(host, "/_dev/faults", {"latency_ms": args.latency})
        for workers in (int(w) for w in args.workers.split(",")):
            r = run_workers(workers, host, args, Path(tmp))
            loads.append(os.getloadavg()[0])
            rows.append(r)
            print(
                f"{workers} worker(s): {r['rate']:7.0f} emails/s  wall {r['wall_s']:6.1f} s  "
                f"recorded {r['recorded']}  duplicates {r['duplicates']}  ledger {r['ledger']}  "
                f"shares {r['shares']}  (prepared in {r['prepared_s']:.0f} s)",
                flush=True,
            )
    # The server has exited: its CPU is in RUSAGE_CHILDREN with the workers'; the difference is its own.
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    workers_cpu = sum(r["cpu_total_s"] for r in rows)
    server_ms = (
        1000 * (children.ru_utime + children.ru_stime - workers_cpu) / sum(r["recorded"] for r in rows)
    )
    mode = "bulk requests" if args.bulk else "one email per request"
    lines = [
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {args.leads:,} due leads; {mode}; "
        f"{args.latency:g} ms added ESP latency; CAMPAIGN_SEND_CONCURRENCY={args.concurrency} and "
        f"CAMPAIGN_BATCH_SIZE={args.batch_size} per worker; PostgreSQL on 127.0.0.1; "
        f"{os.cpu_count()} CPUs; load average (1 min) after each run: "
        f"{', '.join(f'{x:.1f}' for x in loads)} (a machine shared with other sessions); "
        f"Python {platform.python_version()}.",
        "",
        "| workers | wall s | emails/s | × 1 worker | recorded | duplicates | ledger | each worker sent "
        "| workers' CPU ms/email | waiting for a CPU, s (threads summed, most waiting worker) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    base = rows[0]["rate"]
    for r in rows:
        ledger = ", ".join(f"{k} {v:,}" for k, v in r["ledger"].items())
        shares = ", ".join(f"{s:,}" for s in r["shares"])
        lines.append(
            f"| {r['workers']} | {r['wall_s']:.1f} | {r['rate']:,.0f} | {r['rate'] / base:.2f} | "
            f"{r['recorded']:,} | {r['duplicates']} | {ledger} | {shares} | {r['cpu_ms']:.1f} "
            f"| {r['cpu_wait_s']:.1f} |"
        )
    lines += [
        "",
        f"The SendGrid-compatible server's own CPU: {server_ms:.1f} ms per recorded email "
        "(PostgreSQL's is not counted).",
    ]
    table = "\n".join(lines)
    print(table)
    if args.write:
        command = "bench/bench_workers.py " + " ".join(sys.argv[1:])
        with (ROOT / "bench" / "RESULTS.md").open("a", encoding="utf-8") as f:
            f.write(f"\n### Tick workers on PostgreSQL ({mode})\n\nCommand: `.venv/bin/python {command}`\n\n")
            f.write(table + "\n")


if __name__ == "__main__":
    main()
