"""Benchmark: the tick's set-based enrollment alone, on SQLite and PostgreSQL, without Prefect.

N leads seeded by INSERT ... SELECT (not the import path: bench_scale.py measures that), their
address hashes filled in, then the tick's set-based enrollment and the walk of what is due, on
SQLite and PostgreSQL (a private schema, dropped at the end; `--db` picks one).
`--compare-walk` also times the Python walk it replaced (enroll_by_walk) on the same leads;
`--walks N` walks the due N times (the first is the row to compare; the median beside it).

    .venv/bin/python bench/bench_enroll.py --leads 1000000 [--db sqlite|postgresql] [--compare-walk]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)

from campaign.store.tables import UTCDateTime  # noqa: E402


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=100_000)
    parser.add_argument("--db", choices=("sqlite", "postgresql"), help="only this one")
    parser.add_argument("--compare-walk", action="store_true", help="time the Python walk too")
    parser.add_argument("--walks", type=int, default=1, help="walk the due this many times (median too)")
    args = parser.parse_args()
    bench_enroll(args.leads, args.db, args.compare_walk, args.walks)


# ---- enrollment alone, SQLite and PostgreSQL ----------------------------------------------------

POSTGRES_URL = os.environ.get(
    "CAMPAIGN_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
TYPES = ("gad", "social", "treatment_resistant", "unspecified")
ZONES = ("America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles", "Pacific/Honolulu")


def _case(expr: str, values: tuple) -> str:
    """SQL choosing values[expr % len(values)] (NULL for None)."""
    whens = " ".join(f"WHEN {i} THEN {'NULL' if v is None else repr(v)}" for i, v in enumerate(values))
    return f"CASE ({expr}) % {len(values)} {whens} END"


def seed_leads(engine: sa.Engine, n: int) -> None:
    """N leads by INSERT ... SELECT over a generated series: every anxiety type, unknown and known
    prior treatments, 1 in 10 without consent, 1 in 97 booked, 1 in 199 unsubscribed, five time
    zones. Their address hashes are left to the tick's fill (timed as its own phase)."""
    sqlite = engine.dialect.name == "sqlite"
    head, source = (
        ("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :n) ", "n")
        if sqlite
        else ("", "generate_series(1, :n) AS n(i)")
    )
    now = sa.bindparam("now", NOW, type_=UTCDateTime())
    priors = _case("i / 4", (None, 0, 1, 2, 3))
    insert = sa.text(
        f"{head}INSERT INTO leads (public_id, email, first_name, anxiety_type, prior_treatments, consent, "
        "timezone, state, source, booked, unsubscribed_at, created_at, updated_at) "
        f"SELECT 'bench' || i, 'lead' || i || '@example.com', 'Sam', {_case('i', TYPES)}, {priors}, "
        f"(i % 10 <> 0), {_case('i / 7', ZONES)}, 'NC', 'bench', (i % 97 = 0), "
        f"CASE WHEN i % 199 = 0 THEN :now END, :now, :now FROM {source}"
    ).bindparams(now, n=n)
    with engine.begin() as conn:
        conn.execute(insert)
        if not sqlite:
            conn.execute(sa.text("ANALYZE"))


def suppress_some(engine: sa.Engine) -> None:
    """1 in 500 addresses on the suppression list (by their stored hash); then, on PostgreSQL,
    the tables vacuumed and analyzed."""
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO suppressions (email_hash, reason, created_at) "
                "SELECT email_hash, 'bounce', created_at FROM leads WHERE id % 500 = 0"
            )
        )
    if engine.dialect.name == "postgresql":
        # The fill rewrote every lead (a new row version each, not HOT: the partial index of
        # missing hashes). Imported leads carry their hash from the start: vacuum to that state.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("VACUUM ANALYZE"))


class BackendCPU:
    """CPU seconds of the PostgreSQL backends serving `engine` (the server on this machine: its
    /proc), from the connections opened after this is made."""

    def __init__(self, engine: sa.Engine) -> None:
        self.pids: set[int] = set()
        if engine.dialect.name != "postgresql":
            return
        engine.dispose()
        sa.event.listen(engine, "connect", self._connected)

    def _connected(self, dbapi, _record) -> None:
        with dbapi.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            self.pids.add(cursor.fetchone()[0])
        dbapi.commit()

    def seconds(self) -> float:
        total = 0.0
        for pid in self.pids:
            try:
                stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:  # another machine's server, or a connection closed since
                continue
            total += (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")
        return total


def enroll_run(kind: str, url: str, n: int, compare_walk: bool, tmp: Path, walks: int = 1) -> None:
    from campaign.engine import due_batches, enroll_by_walk, enroll_new
    from campaign.runtime import build_context
    from campaign.settings import Settings
    from campaign.store import enrollments

    settings = Settings(database_url=url, secret_key="bench", content_dir=ROOT, outbox_dir=tmp / "outbox")
    ctx = build_context(settings, now=NOW)
    engine = ctx.store.engine
    rows = []
    t0 = time.perf_counter()
    seed_leads(engine, n)
    t1 = time.perf_counter()
    filled = ctx.store.fill_email_hashes()
    t2 = time.perf_counter()
    suppress_some(engine)
    rows.append(("seed leads (INSERT ... SELECT)", t1 - t0, n, "leads"))
    rows.append((f"fill address hashes ({filled:,}; once, rows from before 0012)", t2 - t1, filled, "leads"))
    if compare_walk:
        t3 = time.perf_counter()
        walked = enroll_by_walk(ctx, NOW)
        t4 = time.perf_counter()
        rows.append(
            (f"enroll, Python walk ({sum(walked.enrolled.values()):,} enrolled)", t4 - t3, n, "leads")
        )
        with engine.begin() as conn:
            conn.execute(sa.delete(enrollments))
    load = os.getloadavg()[0]
    backends = BackendCPU(engine)
    t5, cpu, server = time.perf_counter(), time.process_time(), backends.seconds()
    report = enroll_new(ctx, NOW)
    t6, cpu, server = time.perf_counter(), time.process_time() - cpu, backends.seconds() - server
    enrolled = sum(report.enrolled.values())
    # CPU time of this process: all of SQLite's work (in-process), none of PostgreSQL's; that is
    # the server's (its backends on this machine), steadier than the wall time on a shared one.
    where = f"{cpu:.1f} s CPU here" + (f", {server:.1f} s in PostgreSQL" if backends.pids else "")
    rows.append((f"**enroll, set-based** ({enrolled:,} enrolled; {where})", t6 - t5, n, "leads"))
    if compare_walk:
        assert report.enrolled == walked.enrolled, (report.enrolled, walked.enrolled)
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(sa.text("ANALYZE"))
    # The walk leases and lets go, nothing else: walking again walks the same due rows. The
    # first walk is the row to compare; with --walks, the median of all (the machine is shared).
    timed = []
    for i in range(walks):
        walk_load = os.getloadavg()[0]
        t7, cpu, server = time.perf_counter(), time.process_time(), backends.seconds()
        due = sum(len(batch) for batch in due_batches(ctx, NOW))
        t8, cpu, server = time.perf_counter(), time.process_time() - cpu, backends.seconds() - server
        timed.append((t8 - t7, cpu, walk_load, server))
        if i == 0:
            # CPU time here: all of SQLite's work; on PostgreSQL only the client's (the rest is waiting).
            where = f"{cpu:.1f} s CPU here" + (f", {server:.1f} s in PostgreSQL" if backends.pids else "")
            label = f"**walk due enrollments** ({due:,}; {where}; load {walk_load:.1f})"
            rows.append((label, t8 - t7, due, "/s"))
    if walks > 1:
        wall, cpu = statistics.median(t[0] for t in timed), statistics.median(t[1] for t in timed)
        server = statistics.median(t[3] for t in timed)
        each = ", ".join(f"{w:.1f} s ({c:.1f} CPU, {s:.1f} server, load {ld:.1f})" for w, c, ld, s in timed)
        label = f"walk, median of {walks} ({cpu:.1f} s CPU here, {server:.1f} s in PostgreSQL): {each}"
        rows.append((label, wall, due, "/s"))
    ctx.store.close()
    print(f"\n### {kind}: {n:,} leads (load average {load:.1f} when enrollment started)\n")
    print("| phase | seconds | per second |")
    print("|---|---|---|")
    for label, took, count, unit in rows:
        rate = f"{count / took:,.0f} {unit if unit != 'leads' else 'leads/s'}" if took > 0 else "-"
        print(f"| {label} | {took:.1f} | {rate} |", flush=True)
    print(f"\nPer audience: {dict(sorted(report.enrolled.items()))}. Peak RSS {rss_mb():.0f} MB.")


def bench_enroll(n: int, only: str | None, compare_walk: bool, walks: int = 1) -> None:
    print(
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}, {platform.machine()}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f} (a machine shared with other sessions)"
    )
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if only != "postgresql":
            enroll_run("SQLite", f"sqlite:///{tmp / 'enroll.db'}", n, compare_walk, tmp, walks)
        if only != "sqlite":
            schema = f"bench_{uuid.uuid4().hex[:10]}"
            try:
                admin = sa.create_engine(POSTGRES_URL, connect_args={"connect_timeout": 2})
                with admin.begin() as conn:
                    conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
            except Exception as exc:  # not there: say so
                print(f"PostgreSQL not reachable at {POSTGRES_URL}: {type(exc).__name__}; skipped")
                return
            sep = "&" if "?" in POSTGRES_URL else "?"
            try:
                url = f"{POSTGRES_URL}{sep}options=-csearch_path%3D{schema}"
                enroll_run("PostgreSQL", url, n, compare_walk, tmp, walks)
            finally:
                with admin.begin() as conn:
                    conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
                admin.dispose()
    print(f"Load average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
