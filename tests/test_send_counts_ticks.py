"""send_counts after real ticks, on SQLite and PostgreSQL: the outbox, a bulk step through the
project's SendGrid-compatible server, a dead run's send reconciled and resent, a late event, a
forgotten lead. After each, the counts equal a GROUP BY over the ledger and the overview's."""

from __future__ import annotations

import json
import shutil
from datetime import timedelta

from send_counts_support import assert_counts_match
from test_bulk_sending import MONDAY_10, gad_leads
from test_resends import AFTER_RESEND, RESEND, context, resent_in_doubt

from campaign.app.leads import forget_lead, import_file
from campaign.campaigns import status
from campaign.engine import run_tick
from campaign.events import parse_events
from campaign.runtime import build_context
from campaign.settings import PROJECT_ROOT


def step_counts(ctx, now) -> dict:
    """(audience, step, status) -> n, as `campaign status` and the overview show them."""
    found = {}
    for c in status(ctx.store, ctx.settings, now):
        for audience, facts in c["per_audience"].items():
            for step, by_status in facts["steps"].items():
                for s, n in by_status.items():
                    found[(audience, step, s)] = found.get((audience, step, s), 0) + n
    return found


def ledger_counts(ctx) -> dict:
    found = {}
    for row in ctx.store.ledger():
        key = (row["audience"], row["step_key"], row["status"])
        found[key] = found.get(key, 0) + 1
    return found


def test_outbox_ticks_keep_the_counts(make_settings, database_url, tmp_path):
    ctx = build_context(make_settings(database_url=database_url), now=MONDAY_10)
    leads_csv = tmp_path / "leads.csv"
    shutil.copy(PROJECT_ROOT / "audiences" / "sample_leads.csv", leads_csv)
    import_file(ctx.store, ctx.settings, leads_csv, MONDAY_10)
    for day in range(0, 8, 2):  # the welcome, then later steps
        run_tick(ctx, MONDAY_10 + timedelta(days=day))
        assert_counts_match(ctx.store, at_least=50)
        assert step_counts(ctx, MONDAY_10) == ledger_counts(ctx)
    assert len({k[1] for k in ledger_counts(ctx)}) >= 2  # more than one step went out
    gone = ctx.store.ledger()[0]["email"]
    assert forget_lead(ctx.store, gone, MONDAY_10 + timedelta(days=8))["sends"] >= 1
    assert_counts_match(ctx.store, at_least=50)
    ctx.store.close()


def test_a_bulk_step_through_the_dev_server_keeps_the_counts(make_settings, sg, database_url):
    ctx = context(make_settings, sg, database_url=database_url)
    ctx.store.upsert_leads(gad_leads(40), MONDAY_10)
    report = run_tick(ctx, MONDAY_10)
    assert sum(report.sent.values()) == 40 and sg.counters.accepted == 1  # one bulk request
    kept = assert_counts_match(ctx.store, at_least=40)
    assert {k[1:]: n for k, n in kept.items()} == {("gad", "welcome", "sent"): 40}
    ctx.store.close()


def test_a_reconciled_resend_and_a_late_event_keep_the_counts(make_settings, sg, database_url):
    ctx = context(make_settings, sg, database_url=database_url)
    first, _ = resent_in_doubt(ctx, sg)  # claimed, unknown (stale), reclaimed, unknown again
    kept = assert_counts_match(ctx.store)
    assert {k[2:]: n for k, n in kept.items()} == {("welcome", "unknown"): 1}
    run_tick(ctx, AFTER_RESEND)  # capped: stays unknown
    assert_counts_match(ctx.store)
    body = json.dumps(sg.events_for(first, "delivered"))
    assert ctx.store.record_events(parse_events(body), RESEND + timedelta(minutes=30)).settled == 1
    kept = assert_counts_match(ctx.store)
    assert {k[2:]: n for k, n in kept.items()} == {("welcome", "sent"): 1}
    assert step_counts(ctx, AFTER_RESEND) == ledger_counts(ctx)
    ctx.store.close()
