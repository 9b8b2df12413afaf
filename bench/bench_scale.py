"""Benchmark: import and enrollment at scale, on SQLite or PostgreSQL, without Prefect.

Imports N synthetic leads from a CSV (campaign.sample's vocabulary, written row by row), then
imports the same file again (nothing changes), both in a child process whose peak RSS is the
import's own; then runs the tick's enrollment (every consenting lead matched to its audience
and enrolled, walking leads by id in batches) and counts the enrollments due, each phase timed.

    .venv/bin/python bench/bench_scale.py --leads 100000 [--database postgresql] [--import-only]
    .venv/bin/python bench/bench_scale.py --csv-mb 200 --import-only   # a ~200 MB file's memory
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import os
import platform
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


POSTGRES_URL = os.environ.get(
    "CAMPAIGN_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---- import ---------------------------------------------------------------------------------


def write_leads_csv(path: Path, *, leads: int = 0, megabytes: int = 0) -> int:
    """A form export (campaign.sample's rows, made in blocks, each block's addresses its own) of
    `leads` rows, or of about `megabytes` MB, written block by block; 1 row in 50 repeats the
    address of a row just above it (the later row wins). Returns the number of rows."""
    from campaign.sample import HEADERS, sample_rows

    rows = 0
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(HEADERS)
        for block in itertools.count():
            size = min(10_000, leads - rows) if leads else 10_000
            if size <= 0 or (megabytes and out.tell() >= megabytes * 1_000_000):
                break
            found = sample_rows(size, seed=block, bad_rows=0)
            for i, row in enumerate(found):
                row[0] = found[i - 3][0] if i % 50 == 49 else row[0].replace("@", f".b{block}@", 1)
            writer.writerows(found)
            rows += size
    return rows


def child_import(url: str, csv_path: Path, rounds: int) -> None:
    """In the child process: import the file `rounds` times; print one JSON line with each
    round's counts and seconds, and the peak RSS after each."""
    from campaign.app.leads import import_file
    from campaign.settings import Settings
    from campaign.store import Store

    settings = Settings(database_url=url, secret_key="bench", content_dir=ROOT)
    store = Store.open(url, secret_key="bench")
    found = {"rss_before_mb": rss_mb(), "runs": []}
    for _ in range(rounds):
        t0, cpu = time.perf_counter(), time.process_time()
        s = import_file(store, settings, csv_path, NOW, rejects_path=csv_path.with_suffix(".rejected.csv"))
        found["runs"].append(
            {
                "seconds": time.perf_counter() - t0,
                "cpu_seconds": time.process_time() - cpu,
                **{k: getattr(s, k) for k in ("new", "updated", "unchanged", "rejected")},
                "warnings": len(s.warnings),
                "rss_mb": rss_mb(),
            }
        )
    store.close()
    print(json.dumps(found))


def import_in_child(url: str, csv_path: Path, rounds: int) -> dict:
    """The imports, timed in a fresh process: its peak RSS is the import's alone."""
    command = [sys.executable, __file__, "--child-import", str(csv_path), "--database-url", url]
    done = subprocess.run([*command, "--rounds", str(rounds)], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"the import failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def postgres_schema() -> tuple[str, str]:
    """A private schema's URL on the test server (dropped by drop_schema)."""
    import sqlalchemy as sa

    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(POSTGRES_URL)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    admin.dispose()
    sep = "&" if "?" in POSTGRES_URL else "?"
    return f"{POSTGRES_URL}{sep}options=-csearch_path%3D{schema}", schema


def drop_schema(schema: str) -> None:
    import sqlalchemy as sa

    admin = sa.create_engine(POSTGRES_URL)
    with admin.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


def report_imports(label: str, rows: int, size_mb: float, found: dict) -> None:
    print(
        f"Import run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {label}; {rows:,} rows, {size_mb:.0f} MB CSV; "
        f"Python {platform.python_version()}, {platform.machine()}, nproc {os.cpu_count()}, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print("| phase | seconds | CPU s (this process) | rows/s | new | updated | unchanged | peak RSS after |")
    print("|---|---|---|---|---|---|---|---|")
    for name, run in zip(("import", "re-import"), found["runs"]):
        print(
            f"| {name} | {run['seconds']:.1f} | {run['cpu_seconds']:.1f} | {rows / run['seconds']:,.0f} "
            f"| {run['new']:,} | {run['updated']:,} | {run['unchanged']:,} | {run['rss_mb']:.0f} MB |"
        )
    print(f"Child process RSS before the first import: {found['rss_before_mb']:.0f} MB.", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=100_000)
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--csv-mb", type=int, default=0, help="import a file of about this size instead")
    parser.add_argument("--import-only", action="store_true", help="import and re-import; no enrollment")
    parser.add_argument("--child-import", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--database-url", help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_import:
        child_import(args.database_url, args.child_import, args.rounds)
        return

    from campaign.engine import due_batches, enroll_new
    from campaign.runtime import build_context
    from campaign.settings import Settings

    schema = None
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        csv_path = tmp / "leads.csv"
        rows = write_leads_csv(csv_path, leads=0 if args.csv_mb else args.leads, megabytes=args.csv_mb)
        url, schema = (
            postgres_schema() if args.database == "postgresql" else (f"sqlite:///{tmp / 'c.db'}", None)
        )
        settings = Settings(database_url=url, secret_key="bench", content_dir=ROOT, outbox_dir=tmp / "outbox")
        ctx = build_context(settings, now=NOW)
        base = rss_mb()
        found = import_in_child(url, csv_path, rounds=1 if args.csv_mb else 2)  # a big file: once
        report_imports(args.database, rows, csv_path.stat().st_size / 1e6, found)
        if args.import_only:
            ctx.store.close()
            if schema:
                drop_schema(schema)
            return
        summary, again = (argparse.Namespace(**run) for run in found["runs"])
        t0, t1 = 0.0, found["runs"][0]["seconds"]
        t2 = t1 + found["runs"][1]["seconds"]
        start = time.perf_counter() - t2  # the enrollment's times follow on from the imports'
        enrolled = enroll_new(ctx, NOW)
        t3 = time.perf_counter() - start
        due = sum(len(batch) for batch in due_batches(ctx, NOW))
        t4 = time.perf_counter() - start
        ctx.store.close()
        if schema:
            drop_schema(schema)
    n = args.leads
    print(
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {n} leads; Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}, {platform.machine()}"
    )
    print("| phase | seconds | per second |")
    print("|---|---|---|")
    print(f"| import (new: {summary.new}) | {t1 - t0:.1f} | {n / (t1 - t0):,.0f} leads/s |")
    print(f"| re-import (unchanged: {again.unchanged}) | {t2 - t1:.1f} | {n / (t2 - t1):,.0f} leads/s |")
    print(
        f"| enroll ({sum(enrolled.enrolled.values())} enrolled) | {t3 - t2:.1f} "
        f"| {n / (t3 - t2):,.0f} leads/s |"
    )
    print(f"| walk due enrollments ({due}) | {t4 - t3:.1f} | {due / (t4 - t3):,.0f} /s |")
    print(f"Peak RSS {rss_mb():.0f} MB without the imports ({base:.0f} MB before enrolling; imports above).")


if __name__ == "__main__":
    main()
