"""Benchmark: the PostgreSQL due walk alone, old code beside new on one seeded schema.

Seeds a kept schema once (as bench_enroll.py does: leads, hashes, suppressions, the set-based
enrollment, then VACUUM ANALYZE), then walks the due enrollments `--walks` times with the code
under `--root` (another checkout, e.g. `git archive main` unpacked: its campaign package is
imported), timing wall, this process's CPU and the PostgreSQL backends' CPU. `--consume`
sleeps that long per batch, as a tick's sending would (the walk's work hidden behind it).
`--drop` drops the schema at the end.

    .venv/bin/python bench/bench_walk_pg.py --schema walk_1m --leads 1000000 --walks 3 [--root /tmp/base]
"""

from __future__ import annotations

import argparse
import importlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schema", required=True, help="kept between runs (seeded when missing)")
    parser.add_argument("--leads", type=int, default=200_000, help="leads to seed a new schema with")
    parser.add_argument("--walks", type=int, default=3)
    parser.add_argument("--root", default=str(HERE.parent), help="the checkout whose code walks")
    parser.add_argument("--consume", type=float, default=0.0, help="seconds slept per batch")
    parser.add_argument("--drop", action="store_true")
    args = parser.parse_args()
    sys.path[:0] = [args.root, str(HERE)]  # the walking code first; bench_enroll's seeding from here

    # The campaign package from --root, before bench_enroll puts this checkout first on the path.
    campaign = importlib.import_module("campaign")
    seed = importlib.import_module("bench_enroll")
    import sqlalchemy as sa
    from kept_schema import kept_schema

    from campaign.engine import due_batches, enroll_new
    from campaign.runtime import build_context
    from campaign.settings import Settings

    with kept_schema(seed.POSTGRES_URL, args.schema, args.drop) as (url, new):
        out = Path(tempfile.mkdtemp()) / "outbox"
        settings = Settings(database_url=url, secret_key="bench", content_dir=Path(args.root), outbox_dir=out)
        ctx = build_context(settings, now=seed.NOW)
        if new:
            seed.seed_leads(ctx.store.engine, args.leads)
            ctx.store.fill_email_hashes()
            seed.suppress_some(ctx.store.engine)
            enroll_new(ctx, seed.NOW)
            with ctx.store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(sa.text("VACUUM ANALYZE"))
        backends = seed.BackendCPU(ctx.store.engine)
        timed = []
        print(f"code: {campaign.__file__}; schema {args.schema}; consume {args.consume} s a batch")
        for _ in range(args.walks):
            load = os.getloadavg()[0]
            wall, cpu, server = time.perf_counter(), time.process_time(), backends.seconds()
            due = 0
            for batch in due_batches(ctx, seed.NOW):
                due += len(batch)
                time.sleep(args.consume)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            timed.append((wall, cpu, backends.seconds() - server))
            server = timed[-1][2]
            print(
                f"walk: {due:,} due, {wall:.2f} s, {cpu:.2f} s CPU here, {server:.2f} s in PostgreSQL; "
                f"load {load:.1f}"
            )
        wall, cpu, server = (statistics.median(t[i] for t in timed) for i in range(3))
        print(f"median: {wall:.2f} s, {cpu:.2f} s CPU here, {server:.2f} s in PostgreSQL")
        ctx.store.close()


if __name__ == "__main__":
    main()
