"""Benchmark: Prefect's share of a tick (issue 14). In one run, on copies of one SQLite database
of N enrolled leads (all due), against the project's SendGrid-compatible server (a child process
on 127.0.0.1; the engine chooses the bulk path):

* plain: campaign.app.ticks.plain_tick, what `campaign tick` runs with no Prefect server;
* flow:  flows.tick.tick, the Prefect flow (one run, a log line a step), reporting to a real
  local Prefect server (`prefect server start`, its own PREFECT_HOME, started once before the
  runs).

Each run is a fresh child process; the time is that of the tick call alone (the flow's includes
creating the flow run, its states, logs and the artifact). Prefect's import, which a
worker's flow process pays once per run, is reported beside it. One run of each kind goes first
unmeasured (`--warmup`): a deployed server has served many runs, and the first after its start
paid cold caches (its first version check took 0.8 s at load 3). Runs alternate (plain, flow,
flow, plain, ...) so a change in the shared machine's load hits both. Every run must leave every
lead's email recorded once by the server and sent in the ledger.

    .venv/bin/python bench/bench_prefect_share.py                  # 20,000 emails, 2 pairs
    .venv/bin/python bench/bench_prefect_share.py --emails 2000 --pairs 1
    .venv/bin/python bench/bench_prefect_share.py --emails 0 --pairs 8    # the fixed cost alone
    .venv/bin/python bench/bench_prefect_share.py --baseline /work/main   # and main's flow beside
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path[:0] = [str(ROOT), str(BENCH)]

from bench_send import KEY, NOW, dev, prepare, summary  # noqa: E402

from campaign.demo import sendgrid_server_process, stop_process  # noqa: E402


def child(phase: str) -> None:
    """One tick in this process, configured by the environment (as `campaign tick` is)."""
    began = time.perf_counter()
    if phase == "flow":
        from flows.tick import tick as run
    else:
        from campaign.app.ticks import plain_tick as run
    imported = time.perf_counter() - began
    cpu_before, started = cpu_seconds(), time.perf_counter()
    result = run(now=NOW.isoformat())
    seconds, cpu = time.perf_counter() - started, cpu_seconds() - cpu_before
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    sent = result["totals"]["sent"]
    print(json.dumps({"seconds": seconds, "cpu": cpu, "import": imported, "sent": sent, "rss": peak}))


def cpu_seconds() -> float:
    """This process's CPU time, all threads (user + system): less at the mercy of the machine's
    load than the wall time."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def prefect_server(folder: Path):
    """`prefect server start` on a free 127.0.0.1 port, its state in `folder`; yields its API URL."""
    port = free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(folder),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
        "DO_NOT_TRACK": "1",
    }
    env.pop("PREFECT_API_URL", None)
    log = (folder / "server.log").open("w")
    cmd = [str(Path(sys.executable).parent / "prefect"), "server", "start", "--host", "127.0.0.1"]
    proc = subprocess.Popen([*cmd, "--port", str(port)], env=env, stdout=log, stderr=log, cwd=folder)

    url = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=5) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the Prefect server did not start; see {folder / 'server.log'}")
            time.sleep(0.5)
        SERVER_PID[0] = proc.pid
        yield url
    finally:
        stop_process(proc, timeout=30)
        log.close()


SERVER_PID = [0]


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a process and its live descendants, from /proc: what the
    Prefect server spends on a run competes for the same 2 cores as the tick."""
    if not pid:
        return 0.0
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry)] = int(fields[1])
        times[int(entry)] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    tree, grew = {pid}, True
    while grew:
        more = {p for p, parent in parents.items() if parent in tree} - tree
        tree |= more
        grew = bool(more)
    return sum(times.get(p, 0.0) for p in tree)


def run_phase(phase: str, template: Path, n: int, sendgrid: str, api: str, args, index: int) -> dict:
    db = template.parent / f"{phase}-{index}.db"
    shutil.copy(template, db)
    dev(sendgrid, "/_dev/reset")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "CAMPAIGN_", "SENDGRID_"))}
    env.update(
        CAMPAIGN_DATABASE_URL=f"sqlite:///{db}",
        CAMPAIGN_SECRET_KEY="bench-secret",
        CAMPAIGN_PUBLIC_URL="https://clinic.example.org",
        CAMPAIGN_CONTENT_DIR=str(ROOT),
        CAMPAIGN_OUTBOX_DIR=str(template.parent / "outbox"),
        CAMPAIGN_SEND_CONCURRENCY="4",
        SENDGRID_API_KEY=KEY,
        SENDGRID_API_HOST=sendgrid,
        PREFECT_HOME=str(template.parent / "prefect-client"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
    )
    if phase == "flow":
        env["PREFECT_API_URL"] = api
        env["PREFECT_LOGGING_LEVEL"] = args.prefect_log_level
    cmd, script, root = [sys.executable], __file__, ROOT
    if phase == "base":  # the flow of another checkout (--baseline), same venv and servers
        root = Path(args.baseline).resolve()
        script, phase_arg = str(root / "bench" / Path(__file__).name), "flow"
        env["PREFECT_API_URL"] = api
        env["PREFECT_LOGGING_LEVEL"] = args.prefect_log_level
    else:
        phase_arg = phase
    if args.profile:
        cmd += ["-m", "cProfile", "-o", f"{args.profile}-{phase}-{index}.prof"]
    server_cpu, started = tree_cpu(SERVER_PID[0]), time.perf_counter()
    out = subprocess.run(
        [*cmd, script, "--phase", phase_arg], env=env, capture_output=True, text=True, cwd=root
    )
    wall = time.perf_counter() - started
    time.sleep(1)  # the server's last events and logs of the run
    server_cpu = tree_cpu(SERVER_PID[0]) - server_cpu
    if out.returncode != 0:
        raise SystemExit(f"{phase} failed:\n{out.stderr[-3000:]}")
    r = json.loads(out.stdout.strip().splitlines()[-1])
    record = summary(sendgrid)
    with sqlite_ledger(db) as ledger_sent:
        ok = r["sent"] == ledger_sent == record["messages"] == record["distinct_to"] == n
    if not ok:
        raise SystemExit(f"{phase}: not every recipient exactly once: {r} ledger {ledger_sent} {record}")
    r.update(wall=wall, requests=record["counters"]["accepted"], server_cpu=server_cpu)
    print(
        f"{phase:<5} #{index}  tick {r['seconds']:6.2f} s  CPU {r['cpu']:6.2f} s  (import "
        f"{r['import']:.2f} s, process {wall:.2f} s)  {n / r['seconds']:7.0f} emails/s  "
        f"{r['requests']} requests  peak RSS {r['rss']:.0f} MB  Prefect server CPU {server_cpu:.2f} s  "
        f"load {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    db.unlink()
    return r


@contextlib.contextmanager
def sqlite_ledger(db: Path):
    import sqlite3

    conn = sqlite3.connect(db)
    try:
        yield conn.execute("SELECT count(*) FROM sends WHERE status = 'sent'").fetchone()[0]
    finally:
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--emails", type=int, default=20_000)
    parser.add_argument("--pairs", type=int, default=2, help="plain/flow pairs, alternating order")
    parser.add_argument("--warmup", type=int, default=1, help="unmeasured runs of each kind first")
    parser.add_argument("--prefect-log-level", default="INFO", help="PREFECT_LOGGING_LEVEL of the flow run")
    parser.add_argument("--profile", help="cProfile each child to PREFIX-<phase>-<i>.prof")
    parser.add_argument(
        "--baseline",
        help="another checkout (e.g. /work/main): its tick flow runs too, as 'base', alternating",
    )
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        child(args.phase)
        return

    runs: dict[str, list[dict]] = {"plain": [], "flow": [], **({"base": []} if args.baseline else {})}
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-share-") as tmp:
        tmp = Path(tmp)
        template = tmp / "template.db"
        t = time.perf_counter()
        prepare(template, args.emails)
        print(f"prepared {args.emails} enrolled leads in {time.perf_counter() - t:.1f} s", flush=True)
        (tmp / "prefect-server").mkdir()
        with sendgrid_server_process(KEY) as sendgrid, prefect_server(tmp / "prefect-server") as api:
            print(f"Prefect server at {api}; SendGrid-compatible server at {sendgrid}", flush=True)
            for i in range(args.warmup):  # not counted: the server's and the disk's first run
                for phase in runs:
                    run_phase(phase, template, args.emails, sendgrid, api, args, -1 - i)
            for i in range(args.pairs):
                order = list(runs) if i % 2 == 0 else list(reversed(runs))
                for phase in order:
                    runs[phase].append(run_phase(phase, template, args.emails, sendgrid, api, args, i))
    report(runs, args, load_before)


def report(runs: dict[str, list[dict]], args, load_before) -> None:
    plain = statistics.median(r["seconds"] for r in runs["plain"])
    flow = statistics.median(r["seconds"] for r in runs["flow"])
    share = (flow - plain) / flow
    plain_cpu = statistics.median(r["cpu"] for r in runs["plain"])
    flow_cpu = statistics.median(r["cpu"] for r in runs["flow"])
    load = os.getloadavg()
    lines = [
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: {args.emails:,} due emails, bulk, "
        f"{len(runs['plain'])} runs each after {args.warmup} unmeasured; Prefect log level "
        f"{args.prefect_log_level}; nproc "
        f"{len(os.sched_getaffinity(0))}; load average {load_before[0]:.2f} before, {load[0]:.2f} / "
        f"{load[1]:.2f} / {load[2]:.2f} after (shared machine: ~7 helpers at work).",
        f"Command: `cd {ROOT} && .venv/bin/python bench/bench_prefect_share.py {' '.join(sys.argv[1:])}`",
        "",
        "| run | tick wall (median) | each run | tick CPU (median) | each run | import | process wall |",
        "|---|---|---|---|---|---|---|",
    ]
    for phase, rs in runs.items():
        lines.append(
            f"| {phase} | {statistics.median(r['seconds'] for r in rs):.2f} s | "
            + ", ".join(f"{r['seconds']:.2f}" for r in rs)
            + f" s | {statistics.median(r['cpu'] for r in rs):.2f} s | "
            + ", ".join(f"{r['cpu']:.2f}" for r in rs)
            + f" s | {statistics.median(r['import'] for r in rs):.2f} s | "
            f"{statistics.median(r['wall'] for r in rs):.2f} s |"
        )
    flow_import = statistics.median(r["seconds"] + r["import"] for r in runs["flow"])
    plain_import = statistics.median(r["seconds"] + r["import"] for r in runs["plain"])
    lines += [
        "",
        f"Prefect's share of the tick, (flow - plain) / flow: **{share:.1%}** of the wall time, "
        f"{(flow_cpu - plain_cpu) / flow_cpu:.1%} of the tick process's CPU time (aim ≤ 10%).",
        f"With the import of each run's modules counted (Prefect's, for the flow: a process work "
        f"pool and `campaign schedule` start a new process for every flow run): "
        f"{(flow_import - plain_import) / flow_import:.1%} of the wall time "
        f"(flow {flow_import:.2f} s, plain {plain_import:.2f} s).",
        "",
    ]
    if runs.get("base"):
        base = statistics.median(r["seconds"] for r in runs["base"])
        base_cpu = statistics.median(r["cpu"] for r in runs["base"])
        lines += [
            f"The baseline's flow ({args.baseline}): {(base - plain) / base:.1%} of the wall time, "
            f"{(base_cpu - plain_cpu) / base_cpu:.1%} of the CPU time; flow - plain "
            f"{flow - plain:.2f} s here, {base - plain:.2f} s there (CPU {flow_cpu - plain_cpu:.2f} / "
            f"{base_cpu - plain_cpu:.2f} s).",
            "",
        ]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
