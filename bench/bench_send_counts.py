"""Benchmark: what the send_counts triggers (migration 0012_console2) cost the ledger.

The same ledger work with and without the triggers, on the same machine in one run, alternating
(so the shared machine's load falls on both alike): N enrolled leads in 4 audiences, then claim
every one in batches of --batch (store.claim), and settle them as sent (store.settle), as a tick
does. "without" is the same database with the triggers dropped. SQLite always; PostgreSQL when
reachable (a private schema, dropped at the end). The counts are checked against the ledger.

    .venv/bin/python bench/bench_send_counts.py --leads 100000 [--rounds 2] [--only sqlite|postgresql]
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from statistics import median

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import sqlalchemy as sa  # noqa: E402
from bench_console import postgres_schema_url  # noqa: E402  (a private PostgreSQL schema)

from campaign.models import SendResult, SendStatus  # noqa: E402
from campaign.store import Store  # noqa: E402

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
TRIGGERS = (
    "send_counts_insert",
    "send_counts_update",
    "send_counts_delete",
    "send_counts_enrollment_delete",
    "send_counts_enrollment_move",
)


def fill(store: Store, n: int) -> list[int]:
    """n leads and their enrollments (4 audiences) in the evergreen campaign: enrollment ids."""
    series = (
        "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < :n) SELECT i FROM s"
        if store.dialect == "sqlite"
        else "SELECT generate_series(1, :n) AS i"
    )
    campaign = store.campaign("evergreen")["id"]
    audience = (
        "CASE id % 4 WHEN 0 THEN 'gad' WHEN 1 THEN 'social' WHEN 2 THEN 'general' "
        "ELSE 'treatment_resistant' END"
    )
    with store.engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO leads (public_id, email, consent, timezone, created_at, updated_at) "
                f"SELECT 'p' || i, 'l' || i || '@example.com', true, 'UTC', :now, :now FROM ({series}) AS g"
            ),
            {"n": n, "now": NOW.replace(tzinfo=None)},
        )
        conn.execute(
            sa.text(
                "INSERT INTO enrollments "
                "(campaign_id, lead_id, audience, audience_version, enrolled_at, state) "
                f"SELECT :c, id, {audience}, 'v', :now, 'active' FROM leads"
            ),
            {"c": campaign, "now": NOW.replace(tzinfo=None)},
        )
        return list(conn.execute(sa.text("SELECT id FROM enrollments ORDER BY id")).scalars())


def ledger_work(store: Store, enrollment_ids: list[int], batch: int) -> tuple[float, float]:
    """Claim then settle every enrollment's welcome, in batches: (claim s, settle s)."""
    claimed = settled = 0.0
    for i in range(0, len(enrollment_ids), batch):
        part = enrollment_ids[i : i + batch]
        start = time.perf_counter()
        claims = store.claim([(e, "welcome") for e in part], NOW, "outbox")
        middle = time.perf_counter()
        results = [SendResult(send_id=c.send_id, status=SendStatus.sent, message_id="m") for c in claims]
        store.settle(results, NOW)
        claimed += middle - start
        settled += time.perf_counter() - middle
    return claimed, settled


def set_triggers(store: Store, on: bool) -> None:
    from alembic.migration import MigrationContext
    from alembic.operations import Operations

    migration = importlib.import_module("campaign.migrations.versions.0012_console2")
    with store.engine.begin() as conn:
        with Operations.context(MigrationContext.configure(conn)):
            migration.drop_triggers()
            if on:
                migration.create_triggers()
        conn.execute(sa.text("DELETE FROM sends"))
        conn.execute(sa.text("DELETE FROM send_counts"))


def run(kind: str, url: str, n: int, batch: int, rounds: int) -> None:
    store = Store.open(url, secret_key="bench")
    ids = fill(store, n)
    times: dict[str, list[tuple[float, float]]] = {"with": [], "without": []}
    for _ in range(rounds):
        for mode in ("without", "with"):
            set_triggers(store, mode == "with")
            times[mode].append(ledger_work(store, ids, batch))
            if mode == "with":
                assert store.send_counts_drift() == {}
    store.close()
    print(f"\n### {kind}: {n:,} sends claimed and settled in batches of {batch}, {rounds} rounds (median)\n")
    print("| triggers | claim s | settle s | total s | per send µs |")
    print("|---|---|---|---|---|")
    for mode in ("without", "with"):
        c, s = median(t[0] for t in times[mode]), median(t[1] for t in times[mode])
        print(f"| {mode} | {c:.2f} | {s:.2f} | {c + s:.2f} | {(c + s) / n * 1e6:.0f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--only", choices=("sqlite", "postgresql"))
    args = parser.parse_args()
    print(f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as tmp:
        if args.only != "postgresql":
            run("SQLite", f"sqlite:///{tmp}/counts.db", args.leads, args.batch, args.rounds)
        if args.only != "sqlite" and (found := postgres_schema_url()):
            url, admin, schema = found
            try:
                run("PostgreSQL", url, args.leads, args.batch, args.rounds)
            finally:
                with admin.begin() as conn:
                    conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    print(f"Load average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
