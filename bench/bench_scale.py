"""Benchmark: import and enrollment at scale, on SQLite, without Prefect.

Imports N synthetic leads from a CSV (campaign.sample), then runs the tick's enrollment (every
consenting lead matched to its audience and enrolled, walking leads by id in batches) and
counts the enrollments due, each phase timed, with peak RSS, so that memory stays flat as N
grows (the tick streams; nothing loads the whole table).

    .venv/bin/python bench/bench_scale.py --leads 100000
"""

from __future__ import annotations

import argparse
import platform
import resource
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=100_000)
    args = parser.parse_args()

    from campaign.app.leads import import_file
    from campaign.engine import due_batches, enroll_new
    from campaign.runtime import build_context
    from campaign.sample import sample_csv
    from campaign.settings import Settings

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        csv_path = tmp / "leads.csv"
        csv_path.write_text(sample_csv(args.leads, bad_rows=0))
        settings = Settings(
            database_url=f"sqlite:///{tmp / 'c.db'}",
            secret_key="bench",
            content_dir=ROOT,
            outbox_dir=tmp / "outbox",
        )
        ctx = build_context(settings, now=NOW)
        base = rss_mb()
        t0 = time.perf_counter()
        summary = import_file(ctx.store, settings, csv_path, NOW)
        t1 = time.perf_counter()
        again = import_file(ctx.store, settings, csv_path, NOW)
        t2 = time.perf_counter()
        enrolled = enroll_new(ctx, NOW)
        t3 = time.perf_counter()
        due = sum(len(batch) for batch in due_batches(ctx, NOW))
        t4 = time.perf_counter()
        ctx.store.close()
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
    print(f"Peak RSS {rss_mb():.0f} MB (after imports and settings: {base:.0f} MB before the import).")


if __name__ == "__main__":
    main()
