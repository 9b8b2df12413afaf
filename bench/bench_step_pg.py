"""Benchmark: where the wall time of one PostgreSQL bulk step goes (issue 14), around bench_send.py.

Runs `bench/bench_send.py --emails E --bulk N` on PostgreSQL (CAMPAIGN_DATABASE_URL) with the
environment's PGAPPNAME set to a tag of this run, and while the N-lead tick runs (from its
"prepared N" line to its result line) samples every 20 ms:

* the CPU (/proc) of the tick's child process, of the project's SendGrid-compatible server and of
  every PostgreSQL backend whose application_name is the tag (the tick's connections);
* each such backend's state in pg_stat_activity: active (on CPU or waiting, by wait event) or idle
  (waiting for the tick: a round trip or the tick's own work between statements).

Prints the CPU of each per recipient, the backends' time by state, and the sum of CPU against
the wall times the cores. Only 127.0.0.1 is contacted; nothing is kept.

    CAMPAIGN_DATABASE_URL=postgresql+psycopg://127.0.0.1:5432/test \\
        nice -n 5 .venv/bin/python bench/bench_step_pg.py --emails 2000 --bulk 200000
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TICK = os.sysconf("SC_CLK_TCK")


def cpu_of(pid: int) -> float | None:
    """User + system CPU seconds of a process (all its threads), None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(stat[11]) + int(stat[12])) / TICK


def children_by_cmdline(parent: int, needle: str) -> list[int]:
    """The child processes of `parent` whose command line holds `needle`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError):
            continue
        if ppid == parent and needle in cmd:
            found.append(int(entry.name))
    return found


class Sampler:
    def __init__(self, tag: str, dsn: str, parent: int) -> None:
        self.tag, self.dsn, self.parent = tag, dsn, parent
        self.states: collections.Counter = collections.Counter()
        self.first: dict[str, float] = {}  # "kind:pid" -> CPU when first seen
        self.last: dict[str, float] = {}
        self.stop = threading.Event()
        self.samples = 0

    def _cpu(self, key: str, pid: int) -> None:
        cpu = cpu_of(pid)
        if cpu is None:
            return
        self.first.setdefault(key, cpu)
        self.last[key] = cpu

    def run(self, server_pid: int | None) -> None:
        import psycopg

        query = (
            "SELECT pid, state, coalesce(wait_event_type || ':' || wait_event, '') FROM pg_stat_activity "
            "WHERE application_name = %s AND pid <> pg_backend_pid()"
        )
        with psycopg.connect(self.dsn, autocommit=True, application_name="bench_step_pg sampler") as conn:
            while not self.stop.is_set():
                self.samples += 1
                for pid, state, wait in conn.execute(query, (self.tag,)):
                    self.states[(state, wait if state == "active" else "")] += 1
                    self._cpu(f"backend:{pid}", pid)
                for pid in children_by_cmdline(self.parent, "--phase tick"):
                    self._cpu(f"tick:{pid}", pid)
                if server_pid:
                    self._cpu("server", server_pid)
                time.sleep(0.02)

    def cpu(self, kind: str) -> float:
        return sum(self.last[k] - self.first[k] for k in self.last if k.startswith(kind))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--emails", type=int, default=2000)
    parser.add_argument("--bulk", type=int, default=200_000)
    parser.add_argument("--code", type=Path, default=ROOT, help="the tree whose bench_send.py runs")
    parser.add_argument(
        "--statements", action="store_true", help="time the tick's statements by kind (in the tick process)"
    )
    parser.add_argument(
        "--switch-interval",
        type=float,
        help="with --statements: the tick's sys.setswitchinterval (GIL hand-over)",
    )
    args = parser.parse_args()
    database = os.environ.get("CAMPAIGN_DATABASE_URL", "")
    if not database.startswith("postgresql"):
        raise SystemExit("CAMPAIGN_DATABASE_URL must name the PostgreSQL database")
    tag = f"bench_step_pg_{os.getpid()}"
    dsn = database.replace("postgresql+psycopg://", "postgresql://")
    env = dict(os.environ, PGAPPNAME=tag)
    site = Path(tempfile.mkdtemp(prefix="bench_step_pg-"))
    if args.statements:
        (site / "sitecustomize.py").write_text(SITE)
        env["PYTHONPATH"] = os.pathsep.join([str(site), env.get("PYTHONPATH", "")])
        env["BENCH_STEP_PG_STATEMENTS"] = str(site / "statements.json")
        if args.switch_interval:
            env["BENCH_STEP_PG_SWITCH"] = str(args.switch_interval)
    cmd = [sys.executable, "bench/bench_send.py", "--emails", str(args.emails), "--bulk", str(args.bulk)]
    proc = subprocess.Popen(cmd, cwd=args.code, env=env, stdout=subprocess.PIPE, text=True)
    sampler, thread, started = None, None, 0.0
    for line in proc.stdout:
        print(line, end="", flush=True)
        if line.startswith(f"prepared {args.bulk} ") and sampler is None:
            servers = children_by_cmdline(proc.pid, "campaign.devserver")
            sampler = Sampler(tag, dsn, proc.pid)
            thread = threading.Thread(target=sampler.run, args=(servers[0] if servers else None,))
            started = time.perf_counter()
            thread.start()
        elif sampler and line.startswith("tick ") and f" {args.bulk} due" in line:
            wall = time.perf_counter() - started
            sampler.stop.set()
            thread.join()
            report(sampler, wall, args.bulk)
    if args.statements and (site / "statements.json").exists():
        statements(site / "statements.json", args.bulk)
    shutil.rmtree(site, ignore_errors=True)
    proc.wait()


def report(sampler: Sampler, wall: float, n: int) -> None:
    tick, backends, server = sampler.cpu("tick"), sampler.cpu("backend"), sampler.cpu("server")
    total = tick + backends + server
    load = os.getloadavg()[0]
    print(f"\nstep of {n:,} recipients, {wall:.1f} s wall ({sampler.samples} samples), load {load:.1f}")
    parts = (("tick process", tick), ("PostgreSQL backends", backends), ("SendGrid dev server", server))
    for name, cpu in parts:
        print(f"  {name:<20} {cpu:6.1f} s CPU  {cpu / n * 1e6:5.1f} us a recipient")
    print(
        f"  {'sum':<20} {total:6.1f} s CPU  {total / n * 1e6:5.1f} us a recipient "
        f"= {total / wall:.2f} cores of {wall:.1f} s"
    )
    backends_seen = sum(1 for k in sampler.last if k.startswith("backend:"))
    print(f"  the tick's {backends_seen} backends by state (backends in it on average over the step):")
    for (state, wait), count in sampler.states.most_common(12):
        print(f"    {count / max(sampler.samples, 1):5.2f} {state} {wait}")


# Imported by every Python process of the run; times statements in the N-lead tick's child only
# (the last tick child writes the file), from the cursor's execute to the end of its fetch.
SITE = """
import atexit, json, os, re, sys, threading, time
if "--phase" in sys.argv and sys.argv[sys.argv.index("--phase") + 1] == "tick":
    import sqlalchemy as sa
    if os.environ.get("BENCH_STEP_PG_SWITCH"):
        sys.setswitchinterval(float(os.environ["BENCH_STEP_PG_SWITCH"]))
    _spent, _local = {}, threading.local()

    def _backend_ns(conn):
        try:
            pid = conn.connection.dbapi_connection.info.backend_pid
            with open(f"/proc/{pid}/schedstat") as f:
                return int(f.read().split()[0])
        except Exception:
            return 0

    @sa.event.listens_for(sa.engine.Engine, "before_cursor_execute")
    def _before(conn, cursor, statement, parameters, context, executemany):
        _local.t, _local.ns = time.perf_counter(), _backend_ns(conn)

    @sa.event.listens_for(sa.engine.Engine, "after_cursor_execute")
    def _after(conn, cursor, statement, parameters, context, executemany):
        wall, ns = time.perf_counter() - _local.t, _backend_ns(conn) - _local.ns
        kind = re.sub(r"\\s+", " ", statement)[:72]
        seen = _spent.setdefault(kind, [0.0, 0, 0.0])
        seen[0] += wall
        seen[1] += 1
        seen[2] += ns / 1e9

    @atexit.register
    def _dump():
        with open(os.environ["BENCH_STEP_PG_STATEMENTS"], "w") as f:
            json.dump(_spent, f)
"""


def statements(path: Path, n: int) -> None:
    """The tick's statements by kind: wall in the tick from execute to its return, and the CPU of
    the statement's backend meanwhile (/proc/<pid>/schedstat)."""
    timed = json.loads(path.read_text())
    wall, cpu = sum(t[0] for t in timed.values()), sum(t[2] for t in timed.values())
    print(f"  the tick's statements: {wall:.1f} s wall in the tick, {cpu:.1f} s backend CPU in all:")
    print("     wall s  CPU s  CPU us a recipient   calls  statement")
    for kind, (seconds, calls, backend) in sorted(timed.items(), key=lambda kv: -kv[1][2])[:12]:
        print(f"    {seconds:6.2f} {backend:6.2f} {backend / n * 1e6:8.1f}           {calls:6}  {kind}")


if __name__ == "__main__":
    main()
