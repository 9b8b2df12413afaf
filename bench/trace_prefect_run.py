"""Where a tick flow run's time goes: one flow run of bench_prefect_share.py's setup with each
HTTP request to the Prefect API, each step and the flow function timestamped (ms since the flow
call), the TLS contexts built (and where), the modules imported during the call, and each
thread's CPU time at the end. A diagnostic, not a benchmark (the wrappers cost time).

    .venv/bin/python bench/trace_prefect_run.py --emails 20000 --runs 2
    .venv/bin/python bench/trace_prefect_run.py --run-phase plain         # the plain tick
    .venv/bin/python bench/trace_prefect_run.py --py-spy /tmp/spy         # `pip install py-spy` first
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH.parent), str(BENCH)]

import bench_prefect_share as share  # noqa: E402

T0 = [0.0]
EVENTS: list[tuple[float, str, str]] = []


def mark(what: str) -> None:
    EVENTS.append((time.perf_counter() - T0[0], threading.current_thread().name, what))


def marked(label: str, f):
    """`f`, marking where each call starts and ends."""

    def call(*a, **k):
        mark(f"{label} start")
        try:
            return f(*a, **k)
        finally:
            mark(f"{label} end")

    return call


def instrument() -> None:
    import httpx

    def wrap(cls, name, is_async):
        orig = getattr(cls, name)
        if is_async:

            async def send(self, request, *a, **k):
                t = time.perf_counter()
                r = await orig(self, request, *a, **k)
                mark(f"{request.method} {request.url.path} {1000 * (time.perf_counter() - t):.1f} ms")
                return r
        else:

            def send(self, request, *a, **k):
                t = time.perf_counter()
                r = orig(self, request, *a, **k)
                mark(f"{request.method} {request.url.path} {1000 * (time.perf_counter() - t):.1f} ms")
                return r

        setattr(cls, name, send)

    wrap(httpx.Client, "send", False)
    wrap(httpx.AsyncClient, "send", True)

    import ssl

    orig_ctx = ssl.create_default_context

    def ctx(*a, **k):
        t = time.perf_counter()
        c = orig_ctx(*a, **k)
        import traceback

        stack = traceback.extract_stack()[-9:-1]
        where = [f"{f.filename.rsplit('site-packages/', 1)[-1]}:{f.lineno} {f.name}" for f in stack]
        mark(f"ssl context {1000 * (time.perf_counter() - t):.1f} ms <- " + " <- ".join(reversed(where)))
        return c

    ssl.create_default_context = ctx
    import campaign.engine as engine

    for name in ("reconcile_unknown", "enroll_new", "send_due_batch"):
        f = getattr(engine, name)

        traced = marked(f"step {f.__name__}", f)
        traced.__name__ = f.__name__
        traced.__qualname__ = f.__qualname__
        traced.__module__ = f.__module__
        setattr(engine, name, traced)

    import campaign.runtime as runtime

    runtime.build_context = marked("build_context", runtime.build_context)
    orig_due = engine.due_batches

    def due(*a, **k):
        mark("due walk start")
        for batch in orig_due(*a, **k):
            mark(f"due batch of {len(batch)}")
            yield batch
        mark("due walk end")

    engine.due_batches = due


def child(phase: str) -> None:
    began = time.perf_counter()
    instrument()
    if phase == "flow":
        import flows.tick as ft

        ft.recorded_tick = marked("flow function", ft.recorded_tick)
        run = ft.tick
    else:
        from campaign.app.ticks import plain_tick as run
    imported = time.perf_counter() - began
    before = set(sys.modules)
    T0[0] = time.perf_counter()
    c0 = time.process_time()
    result = run(now=share.NOW.isoformat())
    mark("returned")
    mark("imported during the call: " + " ".join(sorted(set(sys.modules) - before)))
    wall, cpu = time.perf_counter() - T0[0], time.process_time() - c0
    for t, thread, what in EVENTS:
        print(f"{1000 * t:8.1f} {thread[:24]:<24} {what}")
    print(f"import {imported:.2f} s  call {wall:.2f} s  CPU {cpu:.2f} s  load {os.getloadavg()[0]:.2f}")
    for tid, name in [(t.native_id, t.name) for t in threading.enumerate()]:
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            ticks = int(fields[11]) + int(fields[12])
            print(f"thread {name}: CPU {ticks / os.sysconf('SC_CLK_TCK'):.2f} s")
        except OSError:
            pass
    sent = result["totals"]["sent"]  # for the caller's exactly-once check
    print(json.dumps({"seconds": wall, "cpu": cpu, "import": imported, "sent": sent, "rss": 0}))


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--phase")
    p.add_argument("--emails", type=int, default=20000)
    p.add_argument("--run-phase", dest="phase_to_run", default="flow")
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--py-spy", dest="pyspy", help="record the child with py-spy to this prefix")
    args = p.parse_args()
    if args.phase:
        child(args.phase)
        sys.exit()
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory(prefix="trace-") as tmp:
        tmp = Path(tmp)
        template = tmp / "template.db"
        share.prepare(template, args.emails)
        (tmp / "prefect-server").mkdir()
        with (
            share.sendgrid_server_process(share.KEY) as sg,
            share.prefect_server(tmp / "prefect-server") as api,
        ):
            orig_run = subprocess.run

            def run(cmd, **k):
                cmd = [sys.executable, __file__, "--phase", cmd[-1]]
                if args.pyspy:
                    spy = str(Path(sys.executable).parent / "py-spy")
                    cmd = [
                        spy,
                        "record",
                        "-r",
                        "250",
                        "--threads",
                        "-f",
                        "raw",
                        "-o",
                        f"{args.pyspy}-{len(list(tmp.glob('*.db')))}.txt",
                        "--",
                        *cmd,
                    ]
                out = orig_run(cmd, **k)
                print(out.stdout, out.stderr[-2000:] if out.returncode else "", flush=True)
                return out

            share.subprocess.run = run
            phase = args.phase_to_run
            ns = argparse.Namespace(prefect_log_level="INFO", profile=None)
            for i in range(args.runs):
                try:
                    share.run_phase(phase, template, args.emails, sg, api, ns, i)
                except SystemExit as e:
                    print(str(e)[:300])
