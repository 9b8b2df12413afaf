"""Integration: three tick flow runs at once, in three processes, under a real Prefect server,
on one PostgreSQL database, sending to the project's SendGrid-compatible server with faults
(5xx, resets, hung requests). They take disjoint due batches (the lease in
campaign/store/enrollments.py); after the follow-up ticks settle what the faults left in doubt,
the server holds every due email once and none twice, and every ledger row is 'sent'.

About a minute (the Prefect server's start, and a hung request's 10 s timeout)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from conftest import postgres_schema
from test_prefect_server import prefect_server

from campaign.delivery.sendgrid_transport import SendGridTransport
from campaign.devserver import Faults, running_server
from campaign.engine import run_tick
from campaign.models import AnxietyType, LeadIn
from campaign.runtime import build_context
from campaign.settings import PROJECT_ROOT

KEY = "SG.workers-key"
N_LEADS = 300
WORKERS = 3
NY = ZoneInfo("America/New_York")
MONDAY_10 = datetime(2026, 3, 2, 10, 0, tzinfo=NY).astimezone(UTC)

# One tick flow run; it waits for the `go` file so that the three runs start together.
# The run counts the due enrollments it walked through the progress hook (what the CLI's bar shows).
CHILD = """
import json, sys, time
from pathlib import Path
from campaign import progress
from flows.tick import tick
walked = []
progress._reporter = walked.append
print("ready", flush=True)
while not Path(sys.argv[2]).exists():
    time.sleep(0.01)
totals = tick(now=sys.argv[1])["totals"]
print("RESULT " + json.dumps({**totals, "walked": sum(walked)}), flush=True)
"""


@pytest.fixture
def pg_url(postgres_reason):
    if postgres_reason:
        pytest.skip(f"{postgres_reason}: concurrent tick runs need PostgreSQL (SQLite is one writer)")
    with postgres_schema("w") as url:
        yield url


@pytest.fixture
def prefect_api(tmp_path):
    with prefect_server(tmp_path / "prefect") as env:
        yield env["PREFECT_API_URL"]


def ask(api: str, path: str, body: dict):
    request = urllib.request.Request(
        f"{api}/{path}", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def start_tick_runs(settings, sg, api: str, tmp_path: Path) -> list[subprocess.Popen]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CAMPAIGN_", "SENDGRID_", "PREFECT_"))}
    env.update(
        {
            "PREFECT_API_URL": api,
            "PREFECT_HOME": str(tmp_path / "prefect"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "CAMPAIGN_DATABASE_URL": settings.database_url,
            "CAMPAIGN_SECRET_KEY": settings.secret_key.get_secret_value(),
            "CAMPAIGN_PUBLIC_URL": settings.public_url,
            "CAMPAIGN_CONTENT_DIR": str(PROJECT_ROOT),
            "CAMPAIGN_OUTBOX_DIR": str(tmp_path / "outbox"),
            "CAMPAIGN_BATCH_SIZE": "10",
            "CAMPAIGN_SEND_CONCURRENCY": "2",
            "CAMPAIGN_BULK_SENDING": "0",  # one request per email: many requests, many faults
            "CAMPAIGN_MAX_CONSECUTIVE_FAILURES": "1000",  # the faults must not pause the campaign
            "SENDGRID_API_KEY": KEY,
            "SENDGRID_API_HOST": sg.url,
        }
    )
    return [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, MONDAY_10.isoformat(), str(tmp_path / "go")],
            env=env,
            cwd=PROJECT_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(WORKERS)
    ]


@pytest.mark.prefect
@pytest.mark.postgres
def test_three_tick_runs_at_once_send_every_due_email_once(make_settings, pg_url, prefect_api, tmp_path):
    settings = make_settings(
        database_url=pg_url, SENDGRID_API_KEY=KEY, SENDGRID_API_HOST="http://127.0.0.1:9"
    )
    ctx = build_context(settings)  # migrates the schema before the runs start
    kinds = list(AnxietyType)
    ctx.store.upsert_leads(
        [
            LeadIn(email=f"p{i}@example.com", first_name="Pat", anxiety_type=kinds[i % 4], consent=True)
            for i in range(N_LEADS)
        ],
        MONDAY_10,
    )
    faults = Faults(latency_ms=50, rate_500=0.04, rate_503=0.04, reset_after_body=0.02, hang=0.005, seed=7)
    with running_server(api_key=KEY, faults=faults) as sg:
        runs = start_tick_runs(settings, sg, prefect_api, tmp_path)
        try:
            for run in runs:
                assert run.stdout.readline().strip() == "ready", run.stderr.read()[-3000:]
            (tmp_path / "go").touch()
            outputs = [run.communicate(timeout=300) for run in runs]
        finally:
            for run in runs:
                if run.poll() is None:
                    run.kill()
        results = []
        for (out, err), run in zip(outputs, runs, strict=True):
            assert run.returncode == 0, err[-3000:]
            [line] = [x for x in out.splitlines() if x.startswith("RESULT ")]
            results.append(json.loads(line.removeprefix("RESULT ")))
        flow_runs = ask(prefect_api, "flow_runs/filter", {})
        assert Counter(run["state_type"] for run in flow_runs) == Counter(COMPLETED=WORKERS)
        # Disjoint batches: each of the three runs walked and sent a share, and together they
        # walked each due enrollment about once (each run walking every due row would make it
        # three times; a row whose claim a 5xx released may be walked again by a run behind).
        assert all(r["sent"] > 0 and r["walked"] > 0 for r in results), results
        assert N_LEADS <= sum(r["walked"] for r in results) < 1.5 * N_LEADS, results
        assert sum(sg.counters.faults.values()) > 0, "the faults should have hit some requests"

        # What the faults left: released claims (5xx) are due again, unknown sends (resets, hung
        # requests) are resent past the unknown window. Follow-up ticks with the faults off.
        sg.set_faults(Faults())

        def tick(now):
            c = build_context(settings, store=ctx.store)
            c.transport = SendGridTransport(KEY, host=sg.url, concurrency=4, backoff_base=0.001, seed=1)
            return run_tick(c, now)

        tick(MONDAY_10 + timedelta(minutes=20))
        tick(MONDAY_10 + timedelta(hours=3))

        sent_to = Counter(addr for m in sg.messages for addr in m.to_emails)
        assert sent_to == Counter({f"p{i}@example.com": 1 for i in range(N_LEADS)})
        ledger = ctx.store.ledger()
        assert len(ledger) == N_LEADS and Counter(r["status"] for r in ledger) == Counter(sent=N_LEADS)
        assert {r["send_id"] for r in ledger} == {m.send_id for m in sg.messages}
    ctx.store.close()
