"""Resends of unknown sends: the earlier send id keeps settling the row, a cap on resends, and
SendGrid's Email Activity asked before a resend (the project's SendGrid-compatible server)."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sendgrid_fixtures import KEY

from campaign.campaigns import status
from campaign.compose import outbound
from campaign.delivery.activity import ActivityLookup, groups, send_id_query
from campaign.delivery.sendgrid_transport import SendGridTransport
from campaign.devserver import Faults
from campaign.engine import due_batches, enroll_new, run_tick
from campaign.events import parse_events
from campaign.models import LeadIn
from campaign.runtime import build_context

MONDAY_10 = datetime(2026, 3, 2, 10, 0, tzinfo=ZoneInfo("America/New_York")).astimezone(UTC)
STALE = MONDAY_10 + timedelta(minutes=20)  # the dead run's claim is 'unknown'
RESEND = MONDAY_10 + timedelta(hours=3)  # past the 2 h window: sent again
AFTER_RESEND = MONDAY_10 + timedelta(hours=6)  # past the window again, still in the send window


def context(make_settings, sg, **overrides):
    settings = make_settings(SENDGRID_API_KEY=KEY, SENDGRID_API_HOST=sg.url, **overrides)
    ctx = build_context(settings)
    ctx.transport = SendGridTransport(
        KEY, host=sg.url, timeout=5.0, max_attempts=2, backoff_base=0.001, backoff_max=0.002, seed=1
    )
    return ctx


def sent_by_a_dead_run(ctx) -> str:
    """One welcome claimed and sent by a run that died before it settled: its send id."""
    ctx.store.upsert_leads([LeadIn(email="rae@example.com", first_name="Rae", consent=True)], MONDAY_10)
    enroll_new(ctx, MONDAY_10)
    [[due]] = list(due_batches(ctx, MONDAY_10))
    [claim] = ctx.store.claim([(due.enrollment_id, "welcome")], MONDAY_10, "sendgrid")
    audience = ctx.audience_by_name[due.audience]
    email = outbound(ctx, due, audience, claim, ctx.store.campaign("evergreen"))
    [result] = ctx.transport.send_batch([email])
    assert result.status.value == "sent"
    return claim.send_id


def resent_in_doubt(ctx, sg) -> tuple[str, str]:
    """The dead run's send, resent after the window, and the resend in doubt too (the connection
    reset after the request went out). Returns (first send id, the resend's)."""
    first = sent_by_a_dead_run(ctx)
    assert run_tick(ctx, STALE).reconciled["stale"] == 1
    sg.set_faults(Faults(reset_after_body=1.0))
    report = run_tick(ctx, RESEND)
    sg.set_faults(Faults())
    assert report.reconciled["resent"] == 1 and sum(report.unknown.values()) == 1
    [row] = ctx.store.ledger()
    assert row["status"] == "unknown" and row["send_id"] != first
    return first, row["send_id"]


def test_a_late_event_for_the_first_send_id_settles_the_resent_row(make_settings, sg):
    ctx = context(make_settings, sg)
    first, _ = resent_in_doubt(ctx, sg)

    body = json.dumps(sg.events_for(first, "delivered"))
    recorded = ctx.store.record_events(parse_events(body), RESEND + timedelta(minutes=30))

    assert recorded.linked == 1 and recorded.settled == 1
    [row] = ctx.store.ledger()
    assert row["status"] == "sent" and row["message_id"] == sg.message_for(first).message_id
    assert sum(run_tick(ctx, AFTER_RESEND).sent.values()) == 0 and len(sg.messages) == 1


def test_a_row_resent_once_is_never_sent_a_third_time_and_is_reported(make_settings, sg):
    ctx = context(make_settings, sg)
    resent_in_doubt(ctx, sg)

    report = run_tick(ctx, AFTER_RESEND)

    assert report.reconciled["resent"] == 0 and report.reconciled["capped"] == 1
    assert report.as_dict()["reconciled"]["capped"] == 1
    assert len(sg.messages) == 1  # the first send; the resend's request was never recorded
    [row] = ctx.store.ledger()
    assert row["status"] == "unknown"
    [evergreen] = [c for c in status(ctx.store, ctx.settings, AFTER_RESEND) if c["campaign"] == "evergreen"]
    assert evergreen["unknown"] == 1 and evergreen["unknown_capped"] == 1


def test_a_higher_cap_allows_another_resend(make_settings, sg):
    ctx = context(make_settings, sg, max_resends=2)
    resent_in_doubt(ctx, sg)

    report = run_tick(ctx, AFTER_RESEND)

    assert report.reconciled["resent"] == 1 and report.reconciled["capped"] == 0
    assert ctx.store.ledger()[0]["status"] == "sent"


def test_activity_lookup_settles_an_accepted_send_without_resending_it(make_settings, sg):
    ctx = context(make_settings, sg)
    ctx.activity = ActivityLookup(KEY, host=sg.url)
    first = sent_by_a_dead_run(ctx)
    run_tick(ctx, STALE)

    report = run_tick(ctx, RESEND)

    assert report.reconciled["found"] == 1 and report.reconciled["resent"] == 0
    assert len(sg.messages) == 1
    [row] = ctx.store.ledger()
    assert row["send_id"] == first and row["status"] == "sent"
    assert row["message_id"] == sg.message_for(first).message_id


def test_activity_lookup_resends_what_sendgrid_does_not_have(make_settings, sg):
    ctx = context(make_settings, sg)
    ctx.activity = ActivityLookup(KEY, host=sg.url)
    sent_by_a_dead_run(ctx)
    sg.reset()  # SendGrid never got it
    run_tick(ctx, STALE)

    report = run_tick(ctx, RESEND)

    assert report.reconciled["resent"] == 1 and report.reconciled["found"] == 0
    assert Counter(a for m in sg.messages for a in m.to_emails) == Counter({"rae@example.com": 1})


def test_a_failed_activity_lookup_resends_nothing_and_says_why(make_settings, sg):
    ctx = context(make_settings, sg)
    ctx.activity = ActivityLookup("SG.no-activity-access", host=sg.url)
    sent_by_a_dead_run(ctx)
    run_tick(ctx, STALE)

    report = run_tick(ctx, RESEND)

    assert report.reconciled["resent"] == 0 and report.reconciled["lookup failed"] == 1
    assert any("Email Activity answered 401" in e for e in report.errors)
    assert len(sg.messages) == 1 and ctx.store.ledger()[0]["status"] == "unknown"


def test_the_activity_setting_builds_the_lookup(make_settings):
    off = build_context(make_settings(SENDGRID_API_KEY=KEY))
    on = build_context(make_settings(SENDGRID_API_KEY=KEY, sendgrid_activity_lookup=True))
    assert off.activity is None and isinstance(on.activity, ActivityLookup)
    assert KEY not in repr(on.activity)


def test_lookup_groups_never_hold_one_address_twice():
    address_of = {"a1": "A@example.com", "a2": "a@example.com", "b1": "b@example.com", "c1": "c@example.com"}
    split = groups(address_of, 2)
    assert [sorted(g) for g in split] == [["a1", "b1"], ["a2", "c1"]]
    assert send_id_query(["x", "y"]) == "unique_args['send_id']=\"x\" OR unique_args['send_id']=\"y\""


def test_the_store_links_an_earlier_send_id_and_caps_resends(store):
    """The ledger alone, on SQLite and PostgreSQL: reclaim keeps the old id, a second reclaim
    past the cap wins nothing, an event for the first id settles the row."""
    from campaign.models import SendResult, SendStatus

    store.upsert_leads([LeadIn(email="rae@example.com", first_name="Rae", consent=True)], MONDAY_10)
    lead = store.lead_by_email("rae@example.com")
    campaign_id = store.campaign("evergreen")["id"]
    store.add_enrollments(
        [
            {
                "campaign_id": campaign_id,
                "lead_id": lead.id,
                "audience": "gad",
                "audience_version": "v1",
                "enrolled_at": MONDAY_10,
                "state": "active",
                "next_due_at": MONDAY_10,
            }
        ]
    )
    [enrollment_id] = [e.enrollment_id for e in store.due_enrollments([campaign_id], MONDAY_10, 0, 10)]
    [claim] = store.claim([(enrollment_id, "welcome")], MONDAY_10, "sendgrid")
    store.settle([SendResult(send_id=claim.send_id, status=SendStatus.unknown)], MONDAY_10)

    won = store.reclaim_unknown([claim.send_id], RESEND, "sendgrid", max_resends=1)
    new = won[claim.send_id].send_id
    store.settle([SendResult(send_id=new, status=SendStatus.unknown)], RESEND)
    assert store.reclaim_unknown([new], AFTER_RESEND, "sendgrid", max_resends=1) == {}
    assert store.unknown_sends(AFTER_RESEND, max_resends=1) == [] and store.capped_unknown(1) == 1

    event = {
        "email": "rae@example.com",
        "timestamp": int(AFTER_RESEND.timestamp()),
        "event": "delivered",
        "sg_event_id": "first-delivered",
        "sg_message_id": "firstmsg.filterdrecv-1",
        "send_id": claim.send_id,
    }
    recorded = store.record_events(parse_events(json.dumps([event])), AFTER_RESEND)
    assert recorded.linked == 1 and recorded.settled == 1
    [row] = store.ledger()
    assert row["send_id"] == new and row["status"] == "sent" and row["message_id"] == "firstmsg"
    assert store.capped_unknown(1) == 0
