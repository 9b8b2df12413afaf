"""Benchmark: the lead API under sustained single-lead POSTs.

Starts `campaign serve` (real uvicorn, one process, as in production) on a free loopback port
over a fresh database (a SQLite file; and a private PostgreSQL schema when the server at
CAMPAIGN_TEST_POSTGRES_URL is reachable), creates an API token, then posts one new lead per
request from a few client threads (each its own keep-alive connection) for the given time.
Reports requests/s, p50/p99/max latency, the status codes, and checks that every lead answered
2xx is in the database (nothing lost).

    .venv/bin/python bench/bench_api.py --seconds 60 --threads 4 [--database sqlite|postgresql|both]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

POSTGRES_URL = os.environ.get(
    "CAMPAIGN_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
ANSWERS = ["GAD", "social anxiety", "constant worry", "nothing has worked", "", "public speaking"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def postgres_schema():
    """A private schema on the test server, dropped at the end; None when unreachable."""
    import sqlalchemy as sa

    try:
        admin = sa.create_engine(POSTGRES_URL, connect_args={"connect_timeout": 2})
        schema = f"bench_{uuid.uuid4().hex[:10]}"
        with admin.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:  # unreachable: skip PostgreSQL, and say why
        print(f"PostgreSQL skipped: {type(exc).__name__}")
        yield None
        return
    sep = "&" if "?" in POSTGRES_URL else "?"
    try:
        yield f"{POSTGRES_URL}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@contextlib.contextmanager
def server(database_url: str, folder: Path):
    """`campaign serve` in a child process; yields (base URL, API token, its pid)."""
    from campaign.accounts import AccountStore, create_token
    from campaign.store import Store

    env = {
        **os.environ,
        "CAMPAIGN_DATABASE_URL": database_url,
        "CAMPAIGN_SECRET_KEY": "bench-secret-key",
        "CAMPAIGN_OUTBOX_DIR": str(folder / "outbox"),
        "CAMPAIGN_API_RATE_LIMIT": "100000",  # the bench measures the API, not its limiter
    }
    with Store.open(database_url, secret_key="bench-secret-key") as store:
        token = create_token(AccountStore(store.engine), "bench", "leads:write", now=datetime.now(UTC)).token
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-c", "from campaign.cli import app; app()", "serve", "--port", str(port)],
        env=env,
        cwd=folder,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        import httpx

        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"campaign serve did not start: {proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.1)
        yield url, token, proc.pid
    finally:
        proc.terminate()
        proc.wait(10)


def run_clients(url: str, token: str, threads: int, seconds: float) -> tuple[list, list[str]]:
    """(per request: (status, latency s)), and the addresses answered 2xx."""
    import httpx

    results: list[list] = [[] for _ in range(threads)]
    accepted: list[list[str]] = [[] for _ in range(threads)]
    stop_at = time.monotonic() + seconds
    run = uuid.uuid4().hex[:8]  # new addresses every run: each post creates a lead

    def client(n: int) -> None:
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=url, headers=headers, timeout=30) as http:
            i = 0
            while time.monotonic() < stop_at:
                email = f"lead-{run}-{n}-{i}@example.com"
                body = {
                    "email": email,
                    "first_name": "Sam",
                    "anxiety_type": ANSWERS[i % len(ANSWERS)],
                    "consent": i % 10 != 0,
                    "state": "NC",
                    "utm_source": "bench",
                }
                started = time.perf_counter()
                try:
                    status = http.post("/api/v1/leads", json=body).status_code
                except httpx.HTTPError:
                    status = 0
                results[n].append((status, time.perf_counter() - started))
                if 200 <= status < 300:
                    accepted[n].append(email)
                i += 1

    run_threads(client, threads)
    return [r for part in results for r in part], [e for part in accepted for e in part]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stored_emails(database_url: str) -> set[str]:
    import sqlalchemy as sa

    engine = sa.create_engine(database_url)
    with engine.connect() as conn:
        found = set(conn.execute(sa.text("SELECT email FROM leads")).scalars())
    engine.dispose()
    return found


def summary(results: list, elapsed: float, cpu: float, loadavg: float) -> dict:
    """Requests/s, latency percentiles, statuses, load and server CPU of one timed run."""
    latencies = sorted(latency for _, latency in results)
    return {
        "requests": len(results),
        "per_second": len(results) / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
        "max_ms": latencies[-1] * 1000,
        "statuses": dict(Counter(status for status, _ in results)),
        "load_before": loadavg,
        "server_cpu_ms": cpu / max(1, len(results)) * 1000,
    }


def timing_cells(r: dict) -> str:
    """A results row's first cells: database, requests, rate, p50, p99, max, statuses."""
    statuses = ", ".join(f"{k}: {v}" for k, v in sorted(r["statuses"].items()))
    return (
        f"| {r['database']} | {r['requests']} | {r['per_second']:.0f} | {r['p50_ms']:.1f} ms | "
        f"{r['p99_ms']:.1f} ms | {r['max_ms']:.0f} ms | {statuses} |"
    )


def run_threads(client: Callable[[int], None], threads: int) -> None:
    workers = [threading.Thread(target=client, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()


def machine_line() -> str:
    return (
        f"Machine: {os.cpu_count()} CPUs, {platform.machine()}, Linux {platform.release()}, "
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}; "
        f"load average before: {os.getloadavg()[0]:.2f}.\n"
    )


def each_database(choice: str, folder: Path, measure_one: Callable[[str, str], dict]) -> list[dict]:
    """measure_one(name, database URL) on a SQLite file and/or a private PostgreSQL schema."""
    rows = []
    if choice in ("sqlite", "both"):
        rows.append(measure_one("SQLite", f"sqlite:///{folder / 'bench.db'}"))
    if choice in ("postgresql", "both"):
        with postgres_schema() as url:
            if url:
                rows.append(measure_one("PostgreSQL", url))
    return rows


def measure(name: str, database_url: str, folder: Path, threads: int, seconds: float) -> dict:
    with server(database_url, folder) as (url, token, pid):
        run_clients(url, token, threads, 2)  # warm up: connections, caches, the first queries
        loadavg = os.getloadavg()[0]
        started, cpu = time.perf_counter(), cpu_seconds(pid)
        results, accepted = run_clients(url, token, threads, seconds)
        elapsed, cpu = time.perf_counter() - started, cpu_seconds(pid) - cpu
    stored = stored_emails(database_url)
    lost = [e for e in accepted if e not in stored]
    return {
        "database": name,
        **summary(results, elapsed, cpu, loadavg),
        "accepted": len(accepted),
        "lost": len(lost),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--database", choices=("sqlite", "postgresql", "both"), default="both")
    args = parser.parse_args()

    print(
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: {args.seconds:g} s of single-lead POSTs, "
        f"{args.threads} client threads, one uvicorn process.\n" + machine_line()
    )
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        rows = each_database(
            args.database, folder, lambda name, url: measure(name, url, folder, args.threads, args.seconds)
        )
    print(
        "| database | requests | leads/s | p50 | p99 | max | statuses | 2xx stored | server CPU per lead "
        "| load avg (1 min) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"{timing_cells(r)} {r['accepted'] - r['lost']} of {r['accepted']} | "
            f"{r['server_cpu_ms']:.1f} ms | {r['load_before']:.2f} |"
        )
    if any(r["lost"] for r in rows):
        sys.exit("some leads answered 2xx are not in the database")


if __name__ == "__main__":
    main()
