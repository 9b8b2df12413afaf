"""Benchmark: a tick of N due emails through SendGridTransport against the project's
SendGrid-compatible server (in a process of its own, on 127.0.0.1), beside the bare limit.

For each added server latency (default 0 ms and 50 ms):

* bare: the same emails rendered (campaign.render.Renderer) and posted with the same client
  (SendGridTransport: the official sendgrid-python client, one thread-local client per worker)
  and the same concurrency, with no ledger, no store and no Prefect;
* tick: campaign.engine.run_tick over a SQLite ledger holding N enrolled leads, all due now
  (reconcile, enroll (nothing new), then batches: plan, claim, render, send, settle).

Each measurement runs in a fresh child process (so its peak RSS is its own), against a server
whose record was just reset. Only 127.0.0.1 is contacted; everything stops by itself.

    .venv/bin/python bench/bench_send.py                       # 20,000 emails, 0 and 50 ms
    .venv/bin/python bench/bench_send.py --emails 2000 --write  # smaller; --write: bench/RESULTS.md
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import shutil
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

from campaign.store import tables  # noqa: E402

KEY = "SG.bench-key"
NOW = datetime(2026, 3, 2, 10, 0, tzinfo=ZoneInfo("America/New_York")).astimezone(UTC)


def settings_for(db: Path | str, host: str, concurrency: int, batch_size: int):
    """`db`: a SQLite file, or a database URL (PostgreSQL)."""
    from campaign.settings import Settings

    return Settings(
        database_url=db if isinstance(db, str) else f"sqlite:///{db}",
        secret_key="bench-secret",
        public_url="https://clinic.example.org",
        content_dir=ROOT,
        outbox_dir=Path(tempfile.gettempdir()) / "bench-send-outbox",  # unused: SendGrid
        batch_size=batch_size,
        send_concurrency=concurrency,
        SENDGRID_API_KEY=KEY,
        SENDGRID_API_HOST=host,
    )


def prepare(db: Path | str, n: int) -> None:
    """N consenting leads in New York, enrolled at NOW: every welcome is due at NOW.

    The first four (one per anxiety type) go through the import and enrollment; the rest are
    copies of them made with INSERT ... SELECT over a generated series (names from the sample
    lists, each its own address and random public id), enrolled like their model lead: a
    million in well under a minute, without the import path."""
    from campaign.engine import enroll_new
    from campaign.models import AnxietyType, LeadIn
    from campaign.runtime import build_context
    from campaign.sample import FIRST, LAST

    kinds = list(AnxietyType)
    settings = settings_for(db, "http://127.0.0.1:9", 4, 1000)
    ctx = build_context(settings)
    models = min(n, len(kinds))
    ctx.store.upsert_leads(
        (
            LeadIn(
                email=f"lead{i}@example.com",
                first_name=FIRST[i % len(FIRST)],
                last_name=LAST[i % len(LAST)],
                anxiety_type=kinds[i],
                consent=True,
                timezone="America/New_York",
            )
            for i in range(models)
        ),
        NOW,
    )
    report = enroll_new(ctx, NOW)
    assert sum(report.enrolled.values()) == models, report.enrolled
    if n > models:
        copy_leads(ctx.store.engine, models, n, FIRST, LAST)
    ctx.store.close()


def copy_leads(engine, models: int, n: int, first: tuple, last: tuple) -> None:
    """Leads `models`..n-1 as copies of lead i % models (its kind, consent, time zone), each
    enrolled as its model is (same campaign, audience, version, enrollment and due time)."""
    import sqlalchemy as sa

    sqlite = engine.dialect.name == "sqlite"

    def case(expr: str, values: tuple) -> str:
        quoted = [v.replace("'", "''") for v in values]
        whens = " ".join(f"WHEN {i} THEN '{v}'" for i, v in enumerate(quoted))
        return f"CASE ({expr}) % {len(values)} {whens} END"

    series = (
        ("WITH RECURSIVE n(i) AS (SELECT :first UNION ALL SELECT i + 1 FROM n WHERE i < :last) ", "n")
        if sqlite
        else ("", "generate_series(CAST(:first AS integer), CAST(:last AS integer)) AS n(i)")
    )
    public_id = "lower(hex(randomblob(16)))" if sqlite else "md5(random()::text || n.i::text)"
    columns = [
        c.name
        for c in tables.leads.columns
        if c.name not in ("id", "public_id", "email", "first_name", "last_name")
    ]
    model_email = "'lead' || (n.i % :models) || '@example.com'"
    leads = (
        f"{series[0]}INSERT INTO leads (public_id, email, first_name, last_name, {', '.join(columns)}) "
        f"SELECT {public_id}, 'lead' || n.i || '@example.com', {case('n.i', first)}, {case('n.i', last)}, "
        f"{', '.join('m.' + c for c in columns)} FROM {series[1]} JOIN leads m ON m.email = {model_email}"
    )
    enroll = (
        "INSERT INTO enrollments (campaign_id, lead_id, audience, audience_version, enrolled_at, state, "
        "next_due_at) SELECT e.campaign_id, l.id, e.audience, e.audience_version, e.enrolled_at, e.state, "
        "e.next_due_at FROM leads l JOIN leads m ON m.anxiety_type = l.anxiety_type AND m.id <= :models "
        "JOIN enrollments e ON e.lead_id = m.id WHERE l.id > :models"
    )
    with engine.begin() as conn:
        conn.execute(sa.text(leads), {"first": models, "last": n - 1, "models": models})
        conn.execute(sa.text(enroll), {"models": models})
    # Statistics after a bulk load, as PostgreSQL's autovacuum would gather them. Without them
    # SQLite walks the due enrollments through a due index and sorts every batch by id:
    # 2.9 s per batch of 1,000 at 1M due (quadratic); with them, by primary key, 2 ms.
    with engine.connect() as conn:
        conn.execute(sa.text("ANALYZE"))
        conn.commit()


def transport_for(host: str, concurrency: int):
    from campaign.delivery.sendgrid_transport import SendGridTransport

    # The same options make_transport uses (defaults otherwise).
    return SendGridTransport(KEY, host=host, concurrency=concurrency)


def phase_bare(db: Path, host: str, concurrency: int, batch_size: int) -> dict:
    """Render and post the same emails: no ledger, no planning, no Prefect."""
    from campaign.compose import outbound
    from campaign.runtime import build_context
    from campaign.store import Claim

    settings = settings_for(db, host, concurrency, batch_size)
    ctx = build_context(settings)
    audiences = ctx.audience_by_name
    dues = []
    after = 0
    campaign_ids = [c["id"] for c in ctx.store.active_campaigns(NOW)]
    while batch := ctx.store.due_enrollments(campaign_ids, NOW, after, 1000):
        after = batch[-1].enrollment_id
        dues.extend(batch)
    evergreen = ctx.store.campaign("evergreen")  # outbound() reads its id and sandbox flag
    ctx.store.close()
    transport = transport_for(host, concurrency)
    started = time.perf_counter()
    emails = [
        outbound(
            ctx,
            d,
            audiences[d.audience],
            Claim(f"bare{d.enrollment_id:08d}", d.enrollment_id, "welcome"),
            evergreen,
        )
        for d in dues
    ]
    results = transport.send_batch(emails)  # one pool over all of them: no batches, no barriers
    elapsed = time.perf_counter() - started
    sent = sum(1 for r in results if r.status.value == "sent")
    return {"sent": sent, "seconds": elapsed}


class PerEmailOnly:
    """The same transport without send_bulk: the engine sends one email per request."""

    supports_bulk = False

    def __init__(self, transport) -> None:
        self.name = transport.name
        self.send_batch = transport.send_batch
        self.finish = transport.finish


def phase_tick(db: Path | str, host: str, concurrency: int, batch_size: int, per_email: bool = False) -> dict:
    from campaign.engine import run_tick, send_due_batch
    from campaign.runtime import build_context

    ctx = build_context(settings_for(db, host, concurrency, batch_size), now=NOW)
    if per_email:
        ctx.transport = PerEmailOnly(ctx.transport)
    step_cpu = 0.0

    def run(task, *args):
        """Runs each step of the tick as engine.plain does, timing the send steps: the CPU of
        the whole process (sender and ledger threads too) while a step runs, the due walk
        between steps left out."""
        nonlocal step_cpu
        if task is not send_due_batch:
            return task(*args)
        before = time.process_time()
        try:
            return task(*args)
        finally:
            step_cpu += time.process_time() - before

    started, cpu = time.perf_counter(), time.process_time()
    report = run_tick(ctx, NOW, run)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    ledger_sent = sum(ctx.store.send_matrix().values())
    ctx.store.close()
    return {
        "sent": sum(report.sent.values()),
        "ledger_sent": ledger_sent,
        "seconds": elapsed,
        "cpu": cpu,
        "step_cpu": step_cpu,
    }


def child(args) -> None:
    fn = {
        "bare": phase_bare,
        "tick": phase_tick,
        "per-email": lambda *a: phase_tick(*a, per_email=True),
    }[args.phase]
    result = fn(
        args.db if "://" in args.db else Path(args.db), args.host, int(args.concurrency), args.batch_size
    )
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


def dev(url: str, path: str, body: dict | None = None) -> dict:
    request = urllib.request.Request(
        f"{url}{path}",
        data=json.dumps(body or {}).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.load(answer)


def run_child(
    phase: str, db: Path | str, url: str, concurrency: int, batch_size: int, profile: str | None
) -> dict:
    cmd = [sys.executable]
    if profile:
        cmd += ["-m", "cProfile", "-o", f"{profile}-{phase}-c{concurrency}.prof"]
    cmd += [
        __file__,
        "--phase",
        phase,
        "--db",
        str(db),
        "--host",
        url,
        "--concurrency",
        str(concurrency),
        "--batch-size",
        str(batch_size),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, cwd=ROOT)
    if out.returncode != 0:
        raise SystemExit(f"{phase} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--emails", type=int, default=20_000)
    parser.add_argument(
        "--latencies", default="0,50", help="added server latency per request, ms (comma list)"
    )
    parser.add_argument(
        "--concurrency",
        default="0:4,50:24",
        help="in-flight requests per latency, e.g. 0:4,50:24 (the same for bare and tick)",
    )
    parser.add_argument(
        "--batch-size", type=int, default=None, help="CAMPAIGN_BATCH_SIZE for the tick (default: Settings')"
    )
    parser.add_argument("--write", action="store_true", help="write bench/RESULTS.md")
    parser.add_argument("--profile", help="cProfile each child to PREFIX-<phase>-c<concurrency>.prof")
    parser.add_argument(
        "--bulk",
        metavar="N",
        type=int,
        help="bulk mode: per-email vs bulk tick on --emails due leads, then one bulk step to N due leads",
    )
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    parser.add_argument("--host", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        child(args)
        return

    from campaign.demo import sendgrid_server_process
    from campaign.settings import Settings

    batch_size = args.batch_size or Settings.model_fields["batch_size"].default
    if args.bulk:
        return main_bulk(args, batch_size)
    latencies = [float(x) for x in args.latencies.split(",")]
    per_latency = {float(k): int(v) for k, v in (p.split(":") for p in args.concurrency.split(","))}
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-send-") as tmp:
        template = Path(tmp) / "template.db"
        t = time.perf_counter()
        prepare(template, args.emails)
        print(f"prepared {args.emails} enrolled leads in {time.perf_counter() - t:.1f} s", flush=True)
        with sendgrid_server_process(KEY) as url:
            assert url.startswith("http://127.0.0.1:"), url
            for latency in latencies:
                concurrency = per_latency.get(latency, 4)
                dev(url, "/_dev/faults", {"latency_ms": latency})
                measured = {}
                for phase in ("bare", "tick"):
                    db = Path(tmp) / f"{phase}-{latency:g}.db"
                    shutil.copy(template, db)
                    dev(url, "/_dev/reset")
                    r = run_child(phase, db, url, concurrency, batch_size, args.profile)
                    if r["sent"] != args.emails:
                        raise SystemExit(f"{phase} at {latency:g} ms sent {r['sent']} of {args.emails}: {r}")
                    r["rate"] = args.emails / r["seconds"]
                    measured[phase] = r
                    print(
                        f"{latency:>4g} ms  {phase:<4}  c={concurrency:<3} {r['rate']:8.0f} emails/s  "
                        f"{r['seconds']:6.1f} s  peak RSS {r['peak_rss_mb']:.0f} MB",
                        flush=True,
                    )
                    db.unlink()
                dev(url, "/_dev/reset")
                rows.append(
                    {"latency": latency, "concurrency": concurrency, **{k: v for k, v in measured.items()}}
                )
    base = next((r["tick"]["rate"] for r in rows if r["latency"] == 0), None)
    command = (
        "cd "
        + str(ROOT)
        + " && .venv/bin/python bench/bench_send.py "
        + " ".join(a for a in sys.argv[1:] if a != "--write")
    )
    table = render_results(rows, base, args, batch_size, command)
    print(table)
    if args.write:
        (ROOT / "bench" / "RESULTS.md").write_text(table)


def summary(url: str) -> dict:
    with urllib.request.urlopen(f"{url}/_dev/summary", timeout=600) as answer:
        return json.load(answer)


def devserver_pid() -> int | None:
    """The SendGrid-compatible server: our child process."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if b"campaign.devserver" not in cmdline.read_bytes():
                continue
            stat = (cmdline.parent / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == os.getpid():
            return int(cmdline.parent.name)
    return None


def devserver_usage(pid: int | None) -> tuple[float, float]:
    """(CPU seconds so far, peak RSS in MB) of the server process."""
    if pid is None:
        return 0.0, 0.0
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")
    status = Path(f"/proc/{pid}/status").read_text()
    hwm = next(line for line in status.splitlines() if line.startswith("VmHWM:"))
    return cpu, int(hwm.split()[1]) / 1024


def measure(phase: str, db: Path | str, n: int, url: str, concurrency: int, batch_size: int, args) -> dict:
    """One tick in a child process on the prepared database `db`; the server must have
    recorded every recipient exactly once, and the ledger every row sent."""
    dev(url, "/_dev/reset")
    server = devserver_pid()
    cpu_before, _ = devserver_usage(server)
    load = os.getloadavg()[0]
    r = run_child(phase, db, url, concurrency, batch_size, args.profile)
    cpu_after, r["server_rss_mb"] = devserver_usage(server)
    r["server_cpu"] = cpu_after - cpu_before
    r["load"] = (load + os.getloadavg()[0]) / 2
    record = summary(url)
    r.update(
        rate=n / r["seconds"],
        recorded=record["messages"],
        distinct=record["distinct_to"],
        requests=record["counters"]["accepted"],
    )
    ok = r["sent"] == r["ledger_sent"] == r["recorded"] == r["distinct"] == record["distinct_send_ids"] == n
    print(
        f"{phase:<9} {n:>8} due  {r['seconds']:7.1f} s  {r['rate']:8.0f} emails/s  "
        f"{r['requests']:>7} requests  peak RSS {r['peak_rss_mb']:.0f} MB  "
        f"recorded {r['recorded']} ({r['distinct']} distinct)  "
        f"server peak RSS {r['server_rss_mb']:.0f} MB; CPU s: tick {r['cpu']:.1f} (send steps "
        f"{r['step_cpu']:.1f}: {r['step_cpu'] / n * 1e6:.0f} us a recipient), server "
        f"{r['server_cpu']:.1f}; load {r['load']:.1f}",
        flush=True,
    )
    if not ok:
        raise SystemExit(f"{phase}: not every recipient exactly once: {r} {record}")
    return r


@contextlib.contextmanager
def postgres_schema(database_url: str):
    """A private schema in the PostgreSQL database of `database_url`, dropped at the end
    (bench_api's helper, pointed at this URL)."""
    import bench_api

    bench_api.POSTGRES_URL = database_url
    with bench_api.postgres_schema() as url:
        if url is None:
            raise SystemExit(f"PostgreSQL not reachable at {database_url}")
        yield url


def main_bulk(args, batch_size: int) -> None:
    """Per-email vs bulk on the same leads and server, then one bulk step to --bulk leads."""
    from campaign.demo import sendgrid_server_process

    concurrency = 4
    runs = []
    database = os.environ.get("CAMPAIGN_DATABASE_URL", "")
    postgres = database.startswith("postgresql")
    with tempfile.TemporaryDirectory(prefix="bench-bulk-") as tmp, sendgrid_server_process(KEY) as url:
        for n, phases in ((args.emails, ("per-email", "tick")), (args.bulk, ("tick",))):
            template = Path(tmp) / f"template-{n}.db"
            if not postgres:
                t = time.perf_counter()
                prepare(template, n)
                print(f"prepared {n} enrolled leads in {time.perf_counter() - t:.1f} s", flush=True)
            for phase in phases:
                if postgres:  # a fresh schema per tick, filled the same way
                    with postgres_schema(database) as db:
                        t = time.perf_counter()
                        prepare(db, n)
                        print(f"prepared {n} enrolled leads in {time.perf_counter() - t:.1f} s", flush=True)
                        runs.append((phase, n, measure(phase, db, n, url, concurrency, batch_size, args)))
                    continue
                db = Path(tmp) / f"{phase}.db"
                shutil.copy(template, db)
                runs.append((phase, n, measure(phase, db, n, url, concurrency, batch_size, args)))
                db.unlink()
            template.unlink(missing_ok=True)
    load = os.getloadavg()
    lines = [
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {'PostgreSQL' if postgres else 'SQLite'}, "
        f"tick batch size {batch_size}, bulk step {os.environ.get('CAMPAIGN_BULK_BATCH_SIZE', '10000')}, "
        f"{concurrency} in flight, "
        f"0 ms added latency; load average before the report {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}.",
        f"Command: `cd {ROOT} && .venv/bin/python bench/bench_send.py {' '.join(sys.argv[1:])}`",
        "",
        "| mode | due leads | wall | emails/s | requests | peak RSS tick | CPU s tick | us/recipient tick "
        "| CPU s send steps | us/recipient steps | CPU s server | peak RSS server | load (1 min) "
        "| recorded (distinct) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for phase, n, r in runs:
        lines.append(
            f"| {'bulk' if phase == 'tick' else phase} | {n:,} | {r['seconds']:.1f} s | {r['rate']:,.0f} | "
            f"{r['requests']:,} | {r['peak_rss_mb']:.0f} MB | {r['cpu']:.1f} | {r['cpu'] / n * 1e6:.0f} | "
            f"{r['step_cpu']:.1f} | {r['step_cpu'] / n * 1e6:.0f} | {r['server_cpu']:.1f} | "
            f"{r['server_rss_mb']:.0f} MB | {r['load']:.1f} | {r['recorded']:,} ({r['distinct']:,}) |"
        )
    single, bulk = runs[0][2], runs[1][2]
    lines += [
        "",
        f"Bulk / per-email throughput on {args.emails:,} due leads: **{bulk['rate'] / single['rate']:.1f}x** "
        f"by wall time; by CPU time (tick + server) "
        f"{(single['cpu'] + single['server_cpu']) / (bulk['cpu'] + bulk['server_cpu']):.1f}x.",
        "",
    ]
    print("\n".join(lines))


def render_results(rows, base, args, batch_size, command) -> str:
    lines = [
        "| added latency | in flight | bare limit (emails/s) | tick (emails/s) | tick / bare "
        "| tick / tick at 0 ms | peak RSS bare | peak RSS tick |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        bare, tick = r["bare"], r["tick"]
        vs0 = f"{tick['rate'] / base:.2f}" if base else "-"
        lines.append(
            f"| {r['latency']:g} ms | {r['concurrency']} | {bare['rate']:.0f} | {tick['rate']:.0f} | "
            f"{tick['rate'] / bare['rate']:.2f} | {vs0} | {bare['peak_rss_mb']:.0f} MB | "
            f"{tick['peak_rss_mb']:.0f} MB |"
        )
    machine = (
        f"{os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), {platform.machine()}, "
        f"Linux {platform.release()}, Python {platform.python_version()}, SQLite "
        f"{__import__('sqlite3').sqlite_version}"
    )
    return "\n".join(
        [
            f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: {args.emails} due emails, tick batch size "
            f"{batch_size}.",
            f"Machine: {machine}.",
            f"Command: `{command}`",
            "",
            *lines,
            "",
        ]
    )


if __name__ == "__main__":
    main()
