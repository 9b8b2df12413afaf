"""Benchmark: where the PostgreSQL enrollment's time goes, on a schema bench_enroll_rerun.py keeps.

Empties enrollments (TRUNCATE, VACUUM ANALYZE, CHECKPOINT: a first tick), then runs the tick's
enrollment (engine.enroll_new) with each part's INSERT ... SELECT under EXPLAIN (ANALYZE, BUFFERS,
WAL, TIMING OFF) in the part's own transaction (the rows are written and committed as by the
product; the counts it returns are not the product's). Meanwhile pg_stat_activity is sampled
every 10 ms for the enrollment's backends (on CPU, or the wait event). Prints each part's plan
summary (buffers, WAL, triggers), the wall, the backends' CPU and voluntary context switches,
the WAL written (for `pg_waldump --stats=record -s START -e END`) and the waits.

    .venv/bin/python bench/bench_enroll_explain.py --schema pgh_rerun [--parts 1] [--set "SET LOCAL jit=off"]
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import sqlalchemy as sa  # noqa: E402
from bench_enroll import NOW, POSTGRES_URL, BackendCPU  # noqa: E402
from bench_enroll_rerun import empty_enrollments  # noqa: E402

from campaign.store import enroll_parts  # noqa: E402

SUMMARY = ("Insert on", "  Buffers:", "  WAL:", "Trigger", "Execution Time")  # the top node, the triggers


def explained(settings: list[str], timing: bool, select_only: bool):
    """A stand-in for enroll_parts.insert_counted: the part's statement under EXPLAIN ANALYZE."""

    def run(conn: sa.Connection, insert: sa.Insert, campaign_id: int) -> dict[str, int]:
        statement = insert.select if select_only else insert
        compiled = statement.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
        for setting in settings:
            conn.exec_driver_sql(setting)
        options = f"ANALYZE, BUFFERS, WAL, TIMING {'ON' if timing else 'OFF'}"
        started = time.perf_counter()
        plan = conn.exec_driver_sql(f"EXPLAIN ({options}) {compiled}", compiled.params).scalars().all()
        lines = plan if timing else [line for line in plan if line.startswith(SUMMARY)]
        name = threading.current_thread().name
        print(f"{name}: {time.perf_counter() - started:.2f} s", *lines, sep="\n  ", flush=True)
        return {}

    return run


def switches(pids: set[int]) -> int:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("voluntary_ctxt_switches"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schema", required=True, help="a schema bench_enroll_rerun.py seeded")
    parser.add_argument("--parts", type=int, help="force the part count (default: the product's choice)")
    parser.add_argument("--set", action="append", default=[], help="a statement run before each part's")
    parser.add_argument("--timing", action="store_true", help="EXPLAIN with TIMING ON (slower), whole plans")
    parser.add_argument("--select-only", action="store_true", help="EXPLAIN the parts' SELECT alone")
    args = parser.parse_args()
    import psycopg

    from campaign.engine import enroll_new
    from campaign.runtime import build_context
    from campaign.settings import Settings

    url = f"{POSTGRES_URL}{'&' if '?' in POSTGRES_URL else '?'}options=-csearch_path%3D{args.schema}"
    tmp = Path(tempfile.mkdtemp())
    settings = Settings(database_url=url, secret_key="bench", content_dir=ROOT, outbox_dir=tmp / "outbox")
    ctx = build_context(settings, now=NOW)
    engine = ctx.store.engine
    enroll_parts.insert_counted = explained(args.set, args.timing, args.select_only)
    if args.parts:
        enroll_parts.parts_for = lambda *_: args.parts
    empty_enrollments(engine)
    backends = BackendCPU(engine)
    waits: collections.Counter = collections.Counter()
    stop = threading.Event()
    dsn = POSTGRES_URL.replace("postgresql+psycopg://", "postgresql://")

    def sample() -> None:
        query = (
            "SELECT state, coalesce(wait_event_type || ':' || wait_event, 'on CPU') FROM pg_stat_activity "
            "WHERE pid = ANY(%s) AND query LIKE 'EXPLAIN%%'"
        )
        with psycopg.connect(dsn, autocommit=True) as conn:
            while not stop.is_set():
                for state, wait in conn.execute(query, (list(backends.pids),)):
                    waits[wait if state == "active" else state] += 1
                time.sleep(0.01)

    with engine.connect() as conn:
        start_lsn = conn.exec_driver_sql("SELECT pg_current_wal_lsn()").scalar()
    sampler = threading.Thread(target=sample)
    sampler.start()
    wall, cpu = time.perf_counter(), backends.seconds()
    enroll_new(ctx, NOW)
    wall, cpu = time.perf_counter() - wall, backends.seconds() - cpu
    stop.set()
    sampler.join()
    with engine.connect() as conn:
        end_lsn = conn.exec_driver_sql("SELECT pg_current_wal_lsn()").scalar()
        wal = conn.exec_driver_sql("SELECT pg_wal_lsn_diff(%s, %s)", (end_lsn, start_lsn)).scalar()
    print(
        f"enrollment: {wall:.1f} s wall, {cpu:.1f} s backend CPU, {switches(backends.pids):,} voluntary "
        f"context switches, load {os.getloadavg()[0]:.1f}; WAL {start_lsn} - {end_lsn} "
        f"({float(wal) / 1e6:.0f} MB, every writer's)"
    )
    seen = sum(waits.values())
    print("the parts' statements, sampled every 10 ms:")
    for wait, n in waits.most_common(10):
        print(f"  {n / max(seen, 1):6.1%} {wait}")
    ctx.store.close()


if __name__ == "__main__":
    main()
