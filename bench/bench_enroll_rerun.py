"""Benchmark: the tick's PostgreSQL enrollment alone, again and again on one kept schema of N leads.

bench_enroll.py seeds and hashes 1M leads each run (~4 min at load 5) before its one enrollment;
this keeps the seeded schema (`--schema`, made on the first run) and runs the enrollment `--runs`
times, each after emptying enrollments (TRUNCATE, VACUUM ANALYZE, CHECKPOINT: a first tick), with
the wall time and the CPU of PostgreSQL's backends of each run and their median. `--code DIR`
runs another tree's code (e.g. main's, `git archive` into DIR) against the same schema.

    .venv/bin/python bench/bench_enroll_rerun.py --leads 1000000 --runs 3 [--code /tmp/base] [--drop]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def empty_enrollments(engine) -> None:
    """No enrollments, fresh statistics, and a checkpoint: each run starts from the same state."""
    import sqlalchemy as sa  # main() imports it from the tree it runs (--code)

    with engine.begin() as conn:
        conn.execute(sa.text("TRUNCATE enrollments CASCADE"))
        conn.execute(sa.text("DELETE FROM enrollment_counts"))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("VACUUM ANALYZE enrollments"))
        conn.execute(sa.text("CHECKPOINT"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--schema", default="bench_enroll_kept", help="kept between runs")
    parser.add_argument("--code", type=Path, default=ROOT, help="the tree whose campaign package runs")
    parser.add_argument("--drop", action="store_true", help="drop the schema at the end")
    args = parser.parse_args()
    # That tree's bench_enroll too: it puts its own tree first on the path as it is imported.
    sys.path[:0] = [str(args.code), str(args.code / "bench")]
    import sqlalchemy as sa
    from bench_enroll import NOW, POSTGRES_URL, BackendCPU, seed_leads, suppress_some
    from kept_schema import kept_schema  # this tree's (an older --code tree has none)

    from campaign.engine import enroll_new
    from campaign.runtime import build_context
    from campaign.settings import Settings

    with kept_schema(POSTGRES_URL, args.schema, args.drop) as (url, _):
        tmp = Path(tempfile.mkdtemp())
        settings = Settings(database_url=url, secret_key="bench", content_dir=ROOT, outbox_dir=tmp / "outbox")
        ctx = build_context(settings, now=NOW)
        engine = ctx.store.engine
        with engine.connect() as conn:
            leads = conn.execute(sa.text("SELECT count(*) FROM leads")).scalar()
        if leads != args.leads:
            with engine.begin() as conn:
                conn.execute(sa.text("TRUNCATE leads, suppressions CASCADE"))
            seed_leads(engine, args.leads)
            ctx.store.fill_email_hashes()
            suppress_some(engine)
        print(f"{args.code}: {args.leads:,} leads in schema {args.schema}")
        timed = []
        for _ in range(args.runs):
            empty_enrollments(engine)
            backends = BackendCPU(engine)
            load = os.getloadavg()[0]
            wall, server = time.perf_counter(), backends.seconds()
            enrolled = sum(enroll_new(ctx, NOW).enrolled.values())
            wall, server = time.perf_counter() - wall, backends.seconds() - server
            timed.append((wall, server))
            print(
                f"  {enrolled:,} enrolled: {wall:.1f} s wall, {server:.1f} s backend CPU (load {load:.1f})",
                flush=True,
            )
        median = statistics.median(w for w, _ in timed), statistics.median(c for _, c in timed)
        print(f"  median of {args.runs}: {median[0]:.1f} s wall, {median[1]:.1f} s backend CPU")
        ctx.store.close()


if __name__ == "__main__":
    main()
