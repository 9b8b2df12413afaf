"""Benchmark: the console's lead list, a lead's page and the overview with 1M leads.

Fills a database fast with INSERT ... SELECT over a generated series (not the import path):
N leads (a quarter per anxiety type, 1 in 10 without consent), one campaign enrolling 9 in 10
consenting leads (active, some finished, some exited), a "welcome" send for every enrollment
and a "brain" send for half. Then serves the real app (create_app on uvicorn, loopback) and
times requests from a logged-in httpx client: p50 and p95 per page over --repeat requests,
after two warm-up requests each. SQLite always; PostgreSQL too when reachable (a private schema,
dropped at the end). Aim: p95 <= 300 ms.

    .venv/bin/python bench/bench_console.py --leads 1000000 [--repeat 30] [--only sqlite|postgresql]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import re
import socket
import sys
import tempfile
import threading
import time
import uuid
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from statistics import quantiles

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import sqlalchemy as sa  # noqa: E402
import uvicorn  # noqa: E402

from campaign.accounts import add_user  # noqa: E402
from campaign.settings import Settings  # noqa: E402
from campaign.store import Store  # noqa: E402
from campaign.store.accounts import AccountStore  # noqa: E402
from campaign.store.tables import UTCDateTime  # noqa: E402
from campaign.web import create_app  # noqa: E402

POSTGRES_URL = os.environ.get(
    "CAMPAIGN_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
NOW = datetime.now(UTC).replace(microsecond=0)
ADMIN, PASSWORD = "bench@clinic.example", "bench password long enough"
# 40 first and 50 last names: a common name matches 1 lead in 40 (25,000 at 1M), as in a real list.
FIRST_NAMES = """Sam Ana Lee Maria Jon Priya Kofi Mei Omar Lucia Ravi Emma Noah Aisha
Diego Hana Ivan Zoe Tariq Nora Chloe Mateo Yara Ben Sofia Kenji Lina Amir
Grace Leo Fatima Hugo Ines Kai Rosa Eli Maya Theo Alma Finn"""
LAST_NAMES = """Garcia Smith Nguyen Okafor Brown Kim Patel Rossi Lopez Chen Diaz Muller Silva Cohen Ali Novak
Sato Moreau Jones Khan Larsen Costa Ivanova Haddad Reyes Walsh Park Mensah Dubois Singh Torres
Bauer Yilmaz Fischer Ortiz Horvat Lind Wright Adeyemi Castro Nakamura Price Vargas Quinn Ahmed
Fontaine Berg Mora Shah Young"""
FIRST, LAST = tuple(FIRST_NAMES.split()), tuple(LAST_NAMES.split())
TYPES = ("gad", "social", "treatment_resistant", "unspecified")
AUDIENCE = {"gad": "gad", "social": "social", "treatment_resistant": "treatment_resistant"}


def case(expr: str, values: tuple[str, ...]) -> str:
    """SQL choosing values[expr % len(values)]."""
    whens = " ".join(f"WHEN {i} THEN '{v}'" for i, v in enumerate(values))
    return f"CASE ({expr}) % {len(values)} {whens} END"


def fill(engine: sa.Engine, n: int) -> None:
    """N leads, one campaign, enrollments and sends, by INSERT ... SELECT."""
    series = (
        ("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :n) ", "n")
        if engine.dialect.name == "sqlite"
        else ("", "generate_series(1, :n) AS n(i)")
    )
    now = sa.bindparam("now", NOW, type_=UTCDateTime)
    due = sa.bindparam("due", NOW + timedelta(days=1), type_=UTCDateTime)
    leads = sa.text(
        f"{series[0]}INSERT INTO leads (public_id, email, first_name, last_name, anxiety_type, consent, "
        "timezone, state, source, booked, unsubscribed_at, created_at, updated_at) "
        f"SELECT 'bench' || i, 'lead' || i || '@example.com', {case('i', FIRST)}, {case('i / 40', LAST)}, "
        f"{case('i / 3', TYPES)}, (i % 10 <> 0), 'America/New_York', 'NC', 'bench', (i % 97 = 0), "
        "CASE WHEN i % 199 = 0 THEN :now END, "
        f":now, :now FROM {series[1]}"
    ).bindparams(now, n=n)
    audience = "CASE anxiety_type " + " ".join(f"WHEN '{k}' THEN '{v}'" for k, v in AUDIENCE.items())
    enroll = sa.text(
        "INSERT INTO enrollments (campaign_id, lead_id, audience, audience_version, enrolled_at, state, "
        "exit_reason, next_due_at) "
        f"SELECT :campaign, id, {audience} ELSE 'general' END, 'bench', :now, "
        "CASE id % 20 WHEN 1 THEN 'finished' WHEN 2 THEN 'exited' ELSE 'active' END, "
        "CASE id % 20 WHEN 2 THEN 'bounced' END, CASE WHEN id % 20 > 2 THEN :due END "
        "FROM leads WHERE consent AND id % 10 <> 5"
    ).bindparams(now, due)
    # Sends spread over the last 60 days ("sent today" is a sixtieth of them).
    ago = (
        "datetime(:now, '-' || (id % 60) || ' days')"
        if engine.dialect.name == "sqlite"
        else "(:now - (id % 60) * interval '1 day')"
    )
    sends = sa.text(
        "INSERT INTO sends (send_id, enrollment_id, step_key, status, transport, claimed_at, settled_at) "
        f"SELECT :prefix || id, id, :step, 'sent', 'outbox', {ago}, {ago} "
        "FROM enrollments WHERE id % :every = 0"
    ).bindparams(now)
    with engine.begin() as conn:
        conn.execute(leads)
        campaign = conn.execute(
            sa.text(
                "INSERT INTO campaigns (slug, name, state, audiences, sandbox, created_at) VALUES "
                "('bench', 'Bench', 'active', 'gad,social,treatment_resistant,general', false, :now) "
                "RETURNING id"
            ).bindparams(now)
        ).scalar_one()
        conn.execute(enroll, {"campaign": campaign})
        conn.execute(sends, {"prefix": "w", "step": "welcome", "every": 1})
        conn.execute(sends, {"prefix": "b", "step": "brain", "every": 2})
    if engine.dialect.name == "postgresql":
        # What autovacuum does soon after a bulk load (PostgreSQL 13+ vacuums after inserts too):
        # statistics, and the visibility map that lets a count be read from an index alone.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("VACUUM ANALYZE campaigns, leads, enrollments, sends"))


def second_campaign(engine: sa.Engine) -> None:
    """Move 1 enrollment in 100 (with its sends) to a second campaign: the overview's counts can no
    longer take the one-campaign path for "sent today"."""
    now = sa.bindparam("now", NOW, type_=UTCDateTime)
    with engine.begin() as conn:
        other = conn.execute(
            sa.text(
                "INSERT INTO campaigns (slug, name, state, audiences, sandbox, created_at) VALUES "
                "('bench2', 'Bench 2', 'active', 'gad,social,treatment_resistant,general', false, :now) "
                "RETURNING id"
            ).bindparams(now)
        ).scalar_one()
        conn.execute(sa.text("UPDATE enrollments SET campaign_id = :c WHERE id % 100 = 0"), {"c": other})


@contextmanager
def serving(settings: Settings, store: Store):
    # IPPROTO_TCP, as uvicorn's own socket (`campaign web`: host and port) has: asyncio sets
    # TCP_NODELAY only on a socket whose proto says TCP. Without it each keep-alive response
    # (headers, then body) waited ~40 ms for the client's delayed ACK: the "~60 ms of any page".
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    app = create_app(settings.model_copy(update={"public_url": url}), store=store)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def logged_in(url: str) -> httpx.Client:
    client = httpx.Client(base_url=url, timeout=120)
    login = client.get("/console/login").text
    token = re.search(r'name="csrf_token" value="([^"]*)"', login).group(1)
    done = client.post("/console/login", data={"email": ADMIN, "password": PASSWORD, "csrf_token": token})
    assert done.status_code == 303, done.status_code
    return client


def cases(n: int) -> list[tuple[str, object]]:
    """(label, path or a function giving a fresh path per request)."""
    statuses = ("in_sequence", "finished", "stopped", "booked", "unsubscribed", "not_enrolled", "no_consent")
    return [
        ("leads: plain", "/console/leads"),
        ("leads: next page", f"/console/leads?after=bench{n // 2}"),
        ("leads: search address", "/console/leads?q=lead12345"),
        ("leads: search name", "/console/leads?q=priya"),
        ("leads: search first last", "/console/leads?q=mei+ch"),
        ("leads: audience gad", "/console/leads?audience=gad"),
        ("leads: campaign", "/console/leads?campaign=bench"),
        *[(f"leads: status {s}", f"/console/leads?status={s}") for s in statuses],
        ("leads: audience + status finished", "/console/leads?audience=social&status=finished"),
        ("lead page (random lead)", lambda: f"/console/leads/bench{random.randint(1, n)}"),
        ("overview", "/console/"),
    ]


def measure(client: httpx.Client, path, repeat: int) -> tuple[float, float]:
    times = []
    for attempt in range(repeat + 2):
        target = path() if callable(path) else path
        start = time.perf_counter()
        response = client.get(target)
        took = time.perf_counter() - start
        assert response.status_code == 200, (target, response.status_code)
        if attempt >= 2:
            times.append(took * 1000)
    cut = quantiles(times, n=20, method="inclusive")
    return cut[9], cut[18]  # p50, p95


def run(kind: str, url: str, n: int, repeat: int, tmp: Path) -> None:
    settings = Settings(database_url=url, secret_key="bench", content_dir=ROOT, outbox_dir=tmp / "outbox")
    store = Store.open(url, secret_key="bench")
    start = time.perf_counter()
    fill(store.engine, n)
    filled = time.perf_counter() - start
    add_user(AccountStore(store.engine), ADMIN, "admin", PASSWORD, now=datetime.now(UTC))
    print(f"\n### {kind}: {n:,} leads (filled in {filled:.0f} s), {repeat} requests per row\n")
    print("| page | p50 ms | p95 ms | aim |")
    print("|---|---|---|---|")
    with serving(settings, store) as base:
        client = logged_in(base)
        for label, path in cases(n):
            p50, p95 = measure(client, path, repeat)
            print(f"| {label} | {p50:.0f} | {p95:.0f} | {'ok' if p95 <= 300 else 'MISSED'} |", flush=True)
        start = time.perf_counter()
        second_campaign(store.engine)
        moved = time.perf_counter() - start
        p50, p95 = measure(client, "/console/", repeat)
        label = f"overview, 2 campaigns (1 in 100 enrollments moved in {moved:.0f} s)"
        print(f"| {label} | {p50:.0f} | {p95:.0f} | {'ok' if p95 <= 300 else 'MISSED'} |", flush=True)
        client.close()
    store.close()


def postgres_schema_url() -> tuple[str, sa.Engine, str] | None:
    try:
        admin = sa.create_engine(POSTGRES_URL, connect_args={"connect_timeout": 2})
        schema = f"bench_{uuid.uuid4().hex[:10]}"
        with admin.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:  # not there: say so and go on with SQLite
        print(f"PostgreSQL not reachable at {POSTGRES_URL}: {type(exc).__name__}; skipped")
        return None
    sep = "&" if "?" in POSTGRES_URL else "?"
    return f"{POSTGRES_URL}{sep}options=-csearch_path%3D{schema}", admin, schema


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--only", choices=("sqlite", "postgresql"))
    args = parser.parse_args()
    print(
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; Python {platform.python_version()}, "
        f"{platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.only != "postgresql":
            run("SQLite", f"sqlite:///{tmp / 'bench.db'}", args.leads, args.repeat, tmp)
        if args.only != "sqlite" and (found := postgres_schema_url()):
            url, admin, schema = found
            try:
                run("PostgreSQL", url, args.leads, args.repeat, tmp)
            finally:
                with admin.begin() as conn:
                    conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    print(f"Load average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
