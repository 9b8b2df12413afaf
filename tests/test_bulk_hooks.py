"""Bulk sending's per-request work: one after_request call per request, its failures counted
once, each personalization's quick check, and the recorder settling groups as they come."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from sendgrid_fixtures import KEY

from campaign.bulk import BulkEmail, BulkRecipient, substitutions
from campaign.delivery import TooManyFailures
from campaign.delivery.bulk_payload import bulk_personalization, check_bulk_personalization, plainly_valid
from campaign.delivery.payload import check_limits, check_personalization
from campaign.delivery.sendgrid_transport import SendGridTransport
from campaign.engine import run_tick
from campaign.models import AnxietyType, LeadIn, SendResult, SendStatus
from campaign.runtime import build_context
from campaign.sending import FailureLimit

MONDAY_10 = datetime(2026, 3, 2, 10, 0, tzinfo=ZoneInfo("America/New_York")).astimezone(UTC)
URL = "https://clinic.example.org/u/abc"


def recipient(i: int, **overrides) -> BulkRecipient:
    values = {
        "send_id": f"snd_{i:05d}",
        "to_email": f"lead{i}@example.com",
        "to_name": f"Lee {i}",
        "subject": f"Welcome, Lee{i}",
        "unsubscribe_url": URL,
        "substitutions": substitutions(f"Lee{i}", URL),
    }
    return BulkRecipient(**(values | overrides))


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"to_email": "not an address"},
        {"to_email": "a@b"},
        {"subject": "   "},
        {"substitutions": {"%%first_name_text%%": "x" * 10_000}},
        {"substitutions": {"%%first_name_text%%": "x" * 800}},  # near the limit: the full check
        {"substitutions": {"%%first_name_text%%": 5}},
        {"to_name": "Doe, Jane\r\nBcc: x@y.org"},
        {"send_id": "x" * 200},  # long for a send id: the full check
        {"send_id": "x" * 10_000},  # past custom_args' limit
    ],
)
def test_the_quick_check_never_passes_what_the_full_check_refuses(overrides):
    r = recipient(1, **overrides)
    problems = check_bulk_personalization(bulk_personalization(r))
    if plainly_valid(r):
        assert problems == []
    if not overrides:
        assert plainly_valid(r)  # the common case takes the quick path


def test_a_send_id_past_the_custom_args_limit_is_refused_alone_not_with_the_request():
    """check_limits takes the personalizations' custom_args as checked one by one (where a
    bad one fails its recipient alone): the one-by-one check must catch them."""
    p = bulk_personalization(recipient(1, send_id="x" * 10_000))
    assert not plainly_valid(recipient(1, send_id="x" * 10_000))
    assert check_bulk_personalization(p) == [
        "personalization.custom_args is 10,015 bytes; SendGrid's limit is 10,000"
    ]
    assert check_personalization(p) == []  # addresses, subject, substitutions, headers: fine
    payload = {
        "from": {"email": "clinic@example.org"},
        "personalizations": [p],
        "content": [{"type": "text/plain", "value": "x"}],
    }
    assert check_limits(payload, personalizations_checked=True) == []
    assert check_limits(payload) == [
        "personalizations[0].custom_args is 10,015 bytes; SendGrid's limit is 10,000"
    ]
    # A request-wide custom_args is merged into each personalization's: checked again then.
    merged = check_limits({**payload, "custom_args": {"run": "r"}}, personalizations_checked=True)
    assert merged == ["personalizations[0].custom_args is 10,027 bytes; SendGrid's limit is 10,000"]


def test_the_quick_check_leaves_odd_values_to_the_full_check():
    assert plainly_valid(recipient(1))
    for odd in (
        {"send_id": 5},
        {"subject": None},
        {"to_email": ["lead1@example.com"]},
        {"substitutions": {"%%first_name_text%%": None}},
        {"substitutions": [("%%first_name_text%%", "Lee")]},
    ):
        assert not plainly_valid(recipient(1, **odd)), odd


def results(*statuses: str) -> list[SendResult]:
    return [SendResult(send_id=f"s{i}", status=SendStatus(s)) for i, s in enumerate(statuses)]


@pytest.mark.parametrize(
    ("start", "statuses", "after"),
    [
        (0, ["unknown"] * 1000, 1),  # a timed-out request counts once
        (2, ["sent"] * 999 + ["failed"], 1),  # sent ones reset, then its failure counts once
        (2, ["failed", "failed", "sent"], 0),  # its last answers were accepted
        (1, ["skipped"] * 5, 1),  # skips leave the count
        (1, ["sent", "unknown", "unknown"], 1),
    ],
)
def test_a_requests_failures_count_once_as_one_by_one_counting_would(start, statuses, after):
    limit = FailureLimit(None)
    limit.in_a_row = start
    limit.count_request(results(*statuses))
    assert limit.in_a_row == after


def test_a_request_that_reaches_the_failure_limit_raises():
    limit = FailureLimit(2)
    limit.in_a_row = 1
    limit.count_request(results("sent", "unknown"))  # reset, then one: not reached
    assert limit.in_a_row == 1
    with pytest.raises(TooManyFailures):
        limit.count_request(results("unknown", "unknown"))  # the second in a row
    limit = FailureLimit(1)
    with pytest.raises(TooManyFailures):
        limit.count_request(results("failed", "failed"))


def test_after_request_is_called_once_per_request_with_every_result(sg):
    transport = SendGridTransport(KEY, host=sg.url, concurrency=2)
    email = BulkEmail(
        from_email="clinic@example.org",
        from_name="Clinic",
        reply_to=None,
        html="<p>Hi %%first_name_html%% <a href='%%unsubscribe_url_html%%'>x</a></p>",
        text="Hi %%first_name_text%% %%unsubscribe_url_text%%",
        category="campaign-1",
        sandbox=False,
        recipients=[recipient(i) for i in range(2300)] + [recipient(9999, to_email="bad address")],
    )
    calls: list[list[SendResult]] = []
    per_result: list[SendResult] = []
    out = transport.send_bulk(
        [email],
        after_send=per_result.append,
        before_request=lambda ids: set(ids) - {"snd_00007"},
        after_request=calls.append,
    )
    assert per_result == []  # after_request replaces after_send
    assert sorted(len(c) for c in calls) == [301, 1000, 1000]
    assert sorted(r.send_id for c in calls for r in c) == sorted(r.send_id for r in out)
    assert Counter(r.status.value for r in out) == Counter(sent=2299, skipped=1, failed=1)
    assert sg.counters.accepted == 3 and len(sg.messages) == 2299  # one message a recipient


def test_a_bulk_tick_settles_and_advances_every_recipient_once(make_settings, sg):
    """The recorder writes each request's accepted sends with their leads' last email and
    their enrollments' next step; the step's end settles nothing twice and counts each once."""
    settings = make_settings(SENDGRID_API_KEY=KEY, SENDGRID_API_HOST=sg.url)
    ctx = build_context(settings)
    ctx.transport = SendGridTransport(KEY, host=sg.url, max_attempts=2, backoff_base=0.001, seed=1)
    ctx.store.upsert_leads(
        (
            LeadIn(email=f"lead{i}@example.com", first_name=f"Lee{i}", anxiety_type=kind, consent=True)
            for i in range(1200)
            for kind in [(AnxietyType.gad, AnxietyType.social)[i % 2]]
        ),
        MONDAY_10,
    )
    sg.set_faults(invalid_addresses=("lead13@example.com",))
    report = run_tick(ctx, MONDAY_10)

    assert sum(report.sent.values()) == 1199 and sum(report.failed.values()) == 1
    ledger = ctx.store.ledger()
    assert Counter(r["status"] for r in ledger) == Counter(sent=1199, failed=1)
    assert Counter(e for m in sg.messages for e in m.to_emails) == Counter(
        {f"lead{i}@example.com": 1 for i in range(1200) if i != 13}
    )
    assert ctx.store.lead_by_email("lead13@example.com").last_email_at is None
    assert all(ctx.store.lead_by_email(f"lead{i}@example.com").last_email_at for i in (0, 1, 14, 1199))
    # Every enrollment moved on to its next step's time: none is due again now.
    assert sum(len(batch) for batch in _due(ctx)) == 0


def _due(ctx):
    from campaign.due_walk import due_batches

    return list(due_batches(ctx, MONDAY_10, 1000))
