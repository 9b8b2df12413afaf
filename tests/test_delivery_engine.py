"""The tick through SendGridTransport: the official client over real HTTP against the project's
SendGrid-compatible server, on a real SQLite ledger. The 401 stop, the pause after consecutive
failures, and the resolution of unknown sends (by event, or by sending again)."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from pydantic import SecretStr
from sendgrid_fixtures import KEY

from campaign.compose import outbound
from campaign.delivery import Unauthorized
from campaign.delivery.sendgrid_transport import SendGridTransport
from campaign.devserver import Faults
from campaign.engine import due_batches, enroll_new, run_tick
from campaign.events import parse_events
from campaign.models import AnxietyType, LeadIn
from campaign.runtime import build_context, make_transport

NY = ZoneInfo("America/New_York")
MONDAY_10 = datetime(2026, 3, 2, 10, 0, tzinfo=NY).astimezone(UTC)


def leads(n: int) -> list[LeadIn]:
    kinds = list(AnxietyType)
    return [
        LeadIn(
            email=f"lead{i}@example.com",
            first_name=f"Lee{i}",
            anxiety_type=kinds[i % len(kinds)],
            consent=True,
        )
        for i in range(n)
    ]


def context(make_settings, sg, store=None, **overrides):
    """A context whose transport is the official client pointed at `sg` (short backoffs: the
    policy is under test, not the clock)."""
    settings = make_settings(SENDGRID_API_KEY=KEY, SENDGRID_API_HOST=sg.url, **overrides)
    ctx = build_context(settings, store=store)
    ctx.transport = SendGridTransport(
        KEY,
        host=sg.url,
        concurrency=settings.send_concurrency,
        timeout=5.0,
        max_attempts=2,
        backoff_base=0.001,
        backoff_max=0.002,
        seed=1,
    )
    return ctx


def per_address(sg) -> Counter:
    return Counter(addr for m in sg.messages for addr in m.to_emails)


def statuses(store) -> Counter:
    return Counter(row["status"] for row in store.ledger())


def test_the_sending_settings_reach_the_transport_and_the_engines_policy(make_settings):
    settings = make_settings(
        SENDGRID_API_KEY=KEY,
        SENDGRID_API_HOST="http://127.0.0.1:9",
        max_consecutive_failures=7,
        max_per_second=25,
        send_concurrency=9,
    )
    transport = make_transport(settings)
    assert isinstance(transport, SendGridTransport) and transport.concurrency == 9
    policy = build_context(settings).policy
    assert policy.failures.limit == 7
    assert policy.pacer.interval == pytest.approx(1 / 25)
    assert make_settings().max_consecutive_failures == 20 and make_settings().max_per_second is None
    assert build_context(make_settings()).policy.pacer.interval == 0  # no ceiling by default


def test_a_tick_sends_every_due_email_once_and_keeps_the_message_ids(make_settings, sg):
    ctx = context(make_settings, sg, batch_size=7)
    ctx.store.upsert_leads(leads(30), MONDAY_10)
    report = run_tick(ctx, MONDAY_10)

    assert sum(report.sent.values()) == 30
    assert per_address(sg) == Counter({f"lead{i}@example.com": 1 for i in range(30)})
    ledger = ctx.store.ledger()
    assert len(ledger) == 30 and {r["status"] for r in ledger} == {"sent"}
    for row in ledger:
        recorded = sg.message_for(row["send_id"])
        assert row["message_id"] == recorded.message_id
        assert recorded.to_emails == [row["email"]]
    # Nothing health-related travels as metadata: only the random send id.
    assert all(set(m.payload["custom_args"]) == {"send_id"} for m in sg.messages)

    again = run_tick(ctx, MONDAY_10)
    assert sum(again.sent.values()) == 0 and len(sg.messages) == 30


def test_401_stops_the_tick_at_once_and_releases_what_was_not_sent(make_settings, sg, monkeypatch):
    ctx = context(make_settings, sg, batch_size=5, send_concurrency=1)
    ctx.store.upsert_leads(leads(12), MONDAY_10)
    checks = {"n": 0}
    reachable = ctx.store.is_reachable

    def revoke_after_three(*args, **kwargs):
        # The key is revoked at SendGrid while the tick runs, right before the 4th email.
        checks["n"] += 1
        if checks["n"] == 4:
            sg.set_api_key("SG.someone-elses-key")
        return reachable(*args, **kwargs)

    monkeypatch.setattr(ctx.store, "is_reachable", revoke_after_three)
    with pytest.raises(Unauthorized):
        run_tick(ctx, MONDAY_10)

    assert len(sg.messages) == 3
    # The three that went are settled; the 4th (refused) and 5th (never tried) of the batch
    # are released, and the later batches were never claimed.
    assert statuses(ctx.store) == Counter(sent=3)
    assert {r["send_id"] for r in ctx.store.ledger()} == {m.send_id for m in sg.messages}

    monkeypatch.undo()
    sg.set_api_key(KEY)
    report = run_tick(ctx, MONDAY_10 + timedelta(minutes=15))
    assert sum(report.sent.values()) == 9
    assert per_address(sg) == Counter({f"lead{i}@example.com": 1 for i in range(12)})
    assert statuses(ctx.store) == Counter(sent=12)


def test_consecutive_failures_pause_the_campaign_until_resumed(make_settings, sg):
    ctx = context(make_settings, sg, max_consecutive_failures=3, send_concurrency=1)
    ctx.store.upsert_leads(leads(10), MONDAY_10)
    sg.set_faults(rate_503=1.0)

    report = run_tick(ctx, MONDAY_10)
    campaign = ctx.store.campaign("evergreen")
    assert campaign["state"] == "paused"
    assert "paused after 3 consecutive send failures" in campaign["paused_reason"]
    assert "503" in campaign["paused_reason"]
    # The engine counted the failures and stopped the batch: three requests, no more.
    assert sg.counters.requests == 3 * 2  # max_attempts=2 each
    assert report.paused and sum(report.sent.values()) == 0
    # Nothing reached SendGrid: every claim is released, so every welcome is still due.
    assert len(sg.messages) == 0 and statuses(ctx.store) == Counter()

    sg.set_faults(Faults())
    later = MONDAY_10 + timedelta(minutes=15)
    quiet = run_tick(context(make_settings, sg, store=ctx.store), later)
    assert sum(quiet.sent.values()) == 0 and len(sg.messages) == 0

    ctx.store.set_campaign_state("evergreen", "active")  # what `campaign resume` does
    resumed = run_tick(context(make_settings, sg, store=ctx.store), later + timedelta(minutes=15))
    assert sum(resumed.sent.values()) == 10
    assert per_address(sg) == Counter({f"lead{i}@example.com": 1 for i in range(10)})
    assert ctx.store.campaign("evergreen")["paused_reason"] is None


def record_events(ctx, sg, send_id, kind, now):
    body = json.dumps(sg.events_for(send_id, kind))
    return ctx.store.record_events(parse_events(body), now)


def test_unknown_sends_are_confirmed_by_events_or_sent_again(make_settings, sg):
    """A run died after claiming four welcomes and sending two of them (no settle)."""
    ctx = context(make_settings, sg)
    ctx.store.upsert_leads(leads(4), MONDAY_10)
    enroll_new(ctx, MONDAY_10)
    [batch] = list(due_batches(ctx, MONDAY_10))
    claims = ctx.store.claim([(d.enrollment_id, "welcome") for d in batch], MONDAY_10, "sendgrid")
    assert len(claims) == 4
    due_of = {d.enrollment_id: d for d in batch}
    audiences = ctx.audience_by_name
    went = claims[:2]
    evergreen = ctx.store.campaign("evergreen")
    ctx.transport.send_batch(
        [
            outbound(ctx, due_of[c.enrollment_id], audiences[due_of[c.enrollment_id].audience], c, evergreen)
            for c in went
        ]
    )
    assert len(sg.messages) == 2

    # An event for the first arrives while its row is still 'claimed'.
    record_events(ctx, sg, went[0].send_id, "processed", MONDAY_10 + timedelta(minutes=1))

    # Before the stale window nothing is touched: the run might still be sending.
    early = run_tick(ctx, MONDAY_10 + timedelta(minutes=5))
    assert early.reconciled["stale"] == 0 and statuses(ctx.store) == Counter(claimed=4)

    t1 = MONDAY_10 + timedelta(minutes=20)
    report = run_tick(ctx, t1)
    assert report.reconciled["stale"] == 4 and report.reconciled["confirmed"] == 1
    assert statuses(ctx.store) == Counter(unknown=3, sent=1)
    assert sum(report.sent.values()) == 0 and len(sg.messages) == 2
    for d in batch:  # the gap counts from the claim: nobody gets a next step too soon
        lead = ctx.store.lead_by_email(d.lead.email)
        assert lead.last_email_at == MONDAY_10
        assert ctx.store.enrollment_for_lead(lead.id)["next_due_at"] >= MONDAY_10 + timedelta(hours=48)

    # The second one's event arrives after it became 'unknown'.
    record_events(ctx, sg, went[1].send_id, "delivered", t1 + timedelta(minutes=5))

    # Within the window the unconfirmed two wait; after it they are sent again, once.
    waiting = run_tick(ctx, MONDAY_10 + timedelta(minutes=90))
    assert waiting.reconciled["resent"] == 0 and len(sg.messages) == 2
    t2 = MONDAY_10 + timedelta(hours=3)
    resend = run_tick(ctx, t2)
    assert resend.reconciled["resent"] == 2 and sum(resend.sent.values()) == 2
    assert per_address(sg) == Counter({f"lead{i}@example.com": 1 for i in range(4)})

    rows = {r["send_id"]: r for r in ctx.store.ledger()}
    assert {r["status"] for r in rows.values()} == {"sent"}
    for c in went:  # confirmed by events: same row, same send id, SendGrid's message id
        assert rows[c.send_id]["message_id"] == sg.message_for(c.send_id).message_id
    resent = [r for sid, r in rows.items() if sid not in {c.send_id for c in claims}]
    assert len(resent) == 2
    for row in resent:  # the same ledger row, a new send id, the message that went
        assert sg.message_for(row["send_id"]).to_emails == [row["email"]]
        enrollment = ctx.store.enrollment_for_lead(row["lead_id"])
        assert enrollment["next_due_at"] >= t2 + timedelta(hours=48)
    with ctx.store.engine.connect() as conn:
        import sqlalchemy as sa

        from campaign.store import sends

        attempts = dict(conn.execute(sa.select(sends.c.send_id, sends.c.attempts)).all())
    assert sorted(attempts.values()) == [1, 1, 2, 2]

    # Nothing left to resolve: later ticks send nothing more for these steps.
    assert sum(run_tick(ctx, t2 + timedelta(hours=3)).sent.values()) == 0
    assert len(sg.messages) == 4


def test_an_unknown_send_waits_for_the_send_window_and_skips_a_lead_who_left(make_settings, sg):
    ctx = context(make_settings, sg)
    ctx.store.upsert_leads(leads(2), MONDAY_10)
    enroll_new(ctx, MONDAY_10)
    [batch] = list(due_batches(ctx, MONDAY_10))
    ctx.store.claim([(d.enrollment_id, "welcome") for d in batch], MONDAY_10, "sendgrid")
    run_tick(ctx, MONDAY_10 + timedelta(minutes=20))  # stale -> unknown
    assert statuses(ctx.store) == Counter(unknown=2)
    gone = ctx.store.lead_by_email("lead1@example.com")
    ctx.store.unsubscribe_lead(gone.public_id, MONDAY_10 + timedelta(minutes=30))

    night = datetime(2026, 3, 2, 23, 0, tzinfo=NY).astimezone(UTC)  # outside 9-18
    report = run_tick(ctx, night)
    assert report.reconciled["resent"] == 0 and len(sg.messages) == 0
    assert statuses(ctx.store) == Counter(unknown=1, skipped=1)  # the lead who left is never mailed

    morning = datetime(2026, 3, 3, 9, 15, tzinfo=NY).astimezone(UTC)
    report = run_tick(ctx, morning)
    assert report.reconciled["resent"] == 1
    assert per_address(sg) == Counter({"lead0@example.com": 1})


def test_category_is_opaque_and_a_sandbox_campaign_sends_in_sandbox(sg, settings):
    """ESP metadata names the campaign by its id only, never its name or the audience; a
    --sandbox campaign reaches SendGrid in sandbox mode (validated, not delivered)."""
    from campaign.campaigns import launch

    live = settings.model_copy(update={"sendgrid_api_key": SecretStr(KEY), "sendgrid_api_host": sg.url})
    ctx = build_context(live, now=MONDAY_10)
    ctx.store.set_campaign_state("evergreen", "paused")
    spring = launch(
        ctx.store,
        ctx.audiences,
        name="Spring Push",
        audience_names=["gad"],
        starts_at=None,
        sandbox=False,
        now=MONDAY_10,
    )
    launch(
        ctx.store,
        ctx.audiences,
        name="Trial Run",
        audience_names=["social"],
        starts_at=None,
        sandbox=True,
        now=MONDAY_10,
    )
    ctx.store.upsert_leads(
        [
            LeadIn(email="g@example.com", consent=True, anxiety_type=AnxietyType.gad),
            LeadIn(email="s@example.com", consent=True, anxiety_type=AnxietyType.social),
        ],
        MONDAY_10,
    )
    report = run_tick(ctx, MONDAY_10)
    assert sum(report.sent.values()) == 2
    [message] = sg.messages  # the sandbox email is answered 200 and not recorded as delivered
    assert message.payload["categories"] == [f"campaign-{spring['id']}"]
    assert "gad" not in json.dumps(message.payload["categories"]) + json.dumps(message.payload["custom_args"])
    assert sg.counters.sandbox == 1


def test_the_rate_ceiling_spreads_a_ticks_sends_over_time(make_settings, sg):
    # 12 emails at 40/s cannot arrive within less than 11 intervals, however many workers.
    ctx = context(make_settings, sg, max_per_second=40, send_concurrency=6)
    ctx.store.upsert_leads(leads(12), MONDAY_10)
    assert sum(run_tick(ctx, MONDAY_10).sent.values()) == 12
    times = sorted(m.received_at for m in sg.messages)
    assert len(times) == 12
    # A lower bound, with room for a loaded machine delaying the first request's arrival more
    # than the last's; without the ceiling, 6 workers deliver all 12 within a few milliseconds.
    assert times[-1] - times[0] >= 0.6 * 11 / 40
