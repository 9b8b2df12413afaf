"""SendGridTransport: the official client over real HTTP against our SendGrid-compatible server."""

from __future__ import annotations

import logging
import pickle
import socket
import threading
from collections import Counter

import pytest
from python_http_client.exceptions import HTTPError, TooManyRequestsError
from sendgrid.helpers.eventwebhook import EventWebhook
from sendgrid_fixtures import KEY, make_email, webhook_receiver

from campaign.delivery import BatchStopped, DeliveryError, TooManyFailures, Unauthorized
from campaign.delivery.payload import build_payload
from campaign.delivery.sendgrid_answers import classify_http_error
from campaign.delivery.sendgrid_transport import RateLimitPause, SendGridTransport
from campaign.devserver import SIGNATURE_HEADER, TIMESTAMP_HEADER, Faults, running_server
from campaign.models import SendStatus
from campaign.settings import Settings


def transport(server, **overrides) -> SendGridTransport:
    """Small waits everywhere: the policy is under test, not the clock."""
    options = dict(
        host=server.url,
        concurrency=4,
        timeout=2.0,
        max_attempts=4,
        backoff_base=0.005,
        backoff_max=0.02,
        rate_limit_wait_cap=0.02,
        seed=1,
    )
    options.update(overrides)
    return SendGridTransport(options.pop("api_key", KEY), **options)


def emails(n: int, **overrides):
    return [make_email(i, **overrides) for i in range(n)]


# -- success --------------------------------------------------------------------------------


def test_every_payload_field_arrives(sg):
    email = make_email(1, to_name="Doe, Jane", is_test=True)
    t = transport(sg, asm_group_id=77, track_opens=True)
    [result] = t.send_batch([email])
    assert result.status == SendStatus.sent
    [recorded] = sg.messages
    assert result.message_id == recorded.message_id
    expected = build_payload(email, asm_group_id=77, track_opens=True)
    assert recorded.payload == expected
    assert recorded.payload["personalizations"][0]["to"] == [
        {"email": "lead1@example.com", "name": "Doe Jane"}
    ]
    assert recorded.payload["custom_args"] == {"send_id": "snd_0001_q8Zr"}


def test_sandbox_sends_are_answered_200_and_not_delivered(sg):
    [result] = transport(sg, sandbox=True).send_batch([make_email()])
    assert result.status == SendStatus.sent and result.message_id is None
    assert sg.messages == [] and sg.counters.sandbox == 1


def test_concurrent_batch_keeps_each_email_with_its_own_payload(sg):
    batch = emails(40)
    results = transport(sg, concurrency=8).send_batch(batch)
    assert [r.send_id for r in results] == [e.send_id for e in batch]  # input order
    assert all(r.status == SendStatus.sent for r in results)
    by_id = {m.message_id: m for m in sg.messages}
    assert len(by_id) == 40
    for email, result in zip(batch, results):
        recorded = by_id[result.message_id]
        assert recorded.send_id == email.send_id
        assert recorded.to_emails == [email.to_email]


# -- final errors ---------------------------------------------------------------------------


def test_400_is_final_and_keeps_sendgrids_message(sg):
    [result] = transport(sg).send_batch([make_email(from_email="not-an-address")])
    assert result.status == SendStatus.failed
    assert result.error.startswith("400: ")
    assert "from.email" in result.error and "valid address" in result.error
    assert sg.counters.requests == 1  # not retried


def test_403_is_final():
    with running_server(api_key=KEY, verified_senders=["someone@else.example"]) as srv:
        [result] = transport(srv).send_batch([make_email()])
        assert result.status == SendStatus.failed
        assert result.error.startswith("403: ") and "Sender Identity" in result.error
        assert srv.counters.requests == 1


def test_413_is_final():
    with running_server(api_key=KEY, max_body_bytes=5_000) as srv:
        [result] = transport(srv).send_batch([make_email(html="<p>" + "x" * 10_000 + "</p>")])
        assert result.status == SendStatus.failed
        assert result.error.startswith("413: ")
        assert srv.counters.requests == 1 and srv.messages == []


def test_payload_over_limits_fails_without_calling_sendgrid(sg):
    results = transport(sg).send_batch([make_email(subject=""), make_email(1)])
    assert results[0].status == SendStatus.failed and "subject" in results[0].error
    assert results[1].status == SendStatus.sent
    assert sg.counters.requests == 1


# -- 401 ------------------------------------------------------------------------------------


def test_bad_key_stops_the_batch_at_once(sg):
    t = transport(sg, api_key="SG.wrong", concurrency=1)
    batch = emails(10)
    with pytest.raises(Unauthorized) as info:
        t.send_batch(batch)
    assert info.value.results == []
    assert info.value.not_sent == [e.send_id for e in batch]
    assert sg.counters.unauthorized == 1  # the bad key did not burn the list
    assert "SG.wrong" not in str(info.value)


def test_key_revoked_mid_batch_keeps_the_results_already_sent(sg):
    calls: list[str] = []

    def before_send(send_id: str) -> bool:
        calls.append(send_id)
        if len(calls) == 4:
            sg.set_api_key("SG.rotated")  # revoked between the 3rd and 4th email
        return True

    batch = emails(8)
    with pytest.raises(Unauthorized) as info:
        transport(sg, concurrency=1).send_batch(batch, before_send=before_send)
    sent = info.value.results
    assert [r.send_id for r in sent] == [e.send_id for e in batch[:3]]
    assert all(r.status == SendStatus.sent for r in sent)
    assert [r.message_id for r in sent] == [m.message_id for m in sg.messages]
    assert info.value.not_sent == [e.send_id for e in batch[3:]]


def test_bad_key_with_workers_in_flight_stops_the_rest(sg):
    with pytest.raises(Unauthorized) as info:
        transport(sg, api_key="SG.wrong", concurrency=4).send_batch(emails(50))
    assert sg.counters.unauthorized <= 4
    assert len(info.value.not_sent) == 50


# -- retries --------------------------------------------------------------------------------


def test_retries_under_faults_end_in_exactly_one_message_per_email(sg):
    sg.set_faults(
        rate_429=0.1,
        rate_500=0.05,
        rate_502=0.05,
        rate_503=0.1,
        reset_before_body=0.05,
        reset_after_body=0.1,
        rate_limit_reset_s=0,
        seed=11,
    )
    batch = emails(60)
    results = transport(sg, max_attempts=12, max_rate_limit_waits=12).send_batch(batch)
    assert Counter(r.status for r in results) == {SendStatus.sent: 60}
    recorded = Counter(m.send_id for m in sg.messages)
    assert recorded == Counter({e.send_id: 1 for e in batch})
    # The faults really happened (else this test would prove nothing).
    faults = sg.counters.faults
    assert set(faults) == {"429", "500", "502", "503", "reset_before_body", "reset_after_body"}
    assert sg.counters.requests == 60 + sum(faults.values())


def test_5xx_until_the_limit_is_a_retryable_failure(sg):
    sg.set_faults(rate_503=1.0)
    [result] = transport(sg, max_attempts=3).send_batch([make_email()])
    assert result.status == SendStatus.failed
    assert result.error.startswith("retryable: 503")
    assert sg.counters.requests == 3


def test_reset_after_the_request_went_out_ends_unknown(sg):
    sg.set_faults(reset_after_body=1.0)
    [result] = transport(sg, max_attempts=3).send_batch([make_email()])
    assert result.status == SendStatus.unknown
    assert sg.counters.requests == 3


def test_an_ambiguous_attempt_then_5xx_is_still_unknown(sg):
    # First a reset (may have gone through), then 503s: the email might exist at SendGrid.
    sg.set_faults(reset_after_body=1.0)
    t = transport(sg, max_attempts=3, concurrency=1)
    original = t._post
    calls = []

    def post_then_switch(payload):
        attempt = original(payload)
        calls.append(attempt)
        if len(calls) == 1:
            sg.set_faults(Faults(rate_503=1.0))
        return attempt

    t._post = post_then_switch  # observe the real HTTP outcome, switch faults between tries
    [result] = t.send_batch([make_email()])
    assert result.status == SendStatus.unknown
    assert [a.status for a in calls] == [None, 503, 503]


def test_timeout_ends_unknown_and_is_not_retried_when_ambiguous_retries_are_off(sg):
    sg.set_faults(hang=1.0)
    [result] = transport(sg, timeout=0.2, retry_ambiguous=False).send_batch([make_email()])
    assert result.status == SendStatus.unknown
    assert "timed out" in result.error
    assert sg.counters.requests == 1


def test_connection_refused_is_a_retryable_failure():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again before use: nothing listens there
    t = SendGridTransport(KEY, host=f"http://127.0.0.1:{port}", max_attempts=2, backoff_base=0.001)
    [result] = t.send_batch([make_email()])
    assert result.status == SendStatus.failed
    assert result.error.startswith("retryable: network error before the request was sent")


def test_429_waits_and_retries(sg):
    sg.set_faults(rate_429=0.5, rate_limit_reset_s=0, seed=5)
    results = transport(sg, concurrency=1, max_rate_limit_waits=20).send_batch(emails(10))
    assert all(r.status == SendStatus.sent for r in results)
    assert sg.counters.faults["429"] > 0
    assert len(sg.messages) == 10


def test_429_forever_gives_up_as_retryable(sg):
    sg.set_faults(rate_429=1.0, rate_limit_reset_s=0)
    [result] = transport(sg, max_rate_limit_waits=2).send_batch([make_email()])
    assert result.status == SendStatus.failed and result.error.startswith("retryable: 429")
    assert sg.counters.requests == 3


def test_rate_limit_wait_is_capped():
    t = SendGridTransport(KEY, rate_limit_wait_cap=0.5, seed=1)
    import time

    assert t._rate_limit_delay(time.time() + 3600) <= 0.5 + 0.05
    assert t._rate_limit_delay(time.time() - 10) <= 0.05  # reset already passed: go now


def test_status_codes_are_compared_not_classes():
    original = TooManyRequestsError(429, "Too Many Requests", b'{"errors":[]}', {"X-RateLimit-Reset": "123"})
    crossed = pickle.loads(pickle.dumps(original))  # comes back as a plain HTTPError
    assert type(crossed) is HTTPError
    attempt = classify_http_error(crossed)
    assert attempt.kind == "rate_limited" and attempt.reset_at == 123.0


# -- before_send ----------------------------------------------------------------------------


def test_before_send_false_skips_and_sends_nothing(sg):
    unsubscribed = {"snd_0001_q8Zr"}
    results = transport(sg).send_batch(emails(3), before_send=lambda sid: sid not in unsubscribed)
    assert [r.status for r in results] == [SendStatus.sent, SendStatus.skipped, SendStatus.sent]
    assert sorted(m.send_id for m in sg.messages) == ["snd_0000_q8Zr", "snd_0002_q8Zr"]


def test_before_send_runs_once_per_email_even_with_retries(sg):
    sg.set_faults(rate_503=0.5, seed=2)
    seen: list[str] = []
    lock = threading.Lock()

    def before_send(send_id):
        with lock:
            seen.append(send_id)
        return True

    transport(sg, max_attempts=10).send_batch(emails(10), before_send=before_send)
    assert sg.counters.faults["503"] > 0
    assert sorted(seen) == sorted(e.send_id for e in emails(10))


def test_before_send_error_stops_the_batch_and_keeps_results(sg):
    def before_send(send_id):
        if send_id == "snd_0002_q8Zr":
            raise RuntimeError("database is locked")
        return True

    with pytest.raises(BatchStopped) as info:
        transport(sg, concurrency=1).send_batch(emails(6), before_send=before_send)
    assert isinstance(info.value.__cause__, RuntimeError)
    assert [r.send_id for r in info.value.results] == ["snd_0000_q8Zr", "snd_0001_q8Zr"]
    assert len(info.value.not_sent) == 4
    assert len(sg.messages) == 2


# -- the 429 wait and the after_send hook --------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)


def test_rate_limit_pause_holds_everyone_until_it_ends():
    clock = FakeClock()
    pause = RateLimitPause(clock=clock, sleep=clock.sleep)
    pause.wait()
    pause.pause_until(clock.now + 3)
    pause.pause_until(clock.now + 1)  # an earlier end never shortens the pause
    pause.wait()
    assert clock.sleeps == [3.0]


def test_after_send_sees_every_settled_email_once(sg):
    sg.set_faults(rate_503=0.3, seed=4)
    seen: list[tuple[str, SendStatus]] = []
    lock = threading.Lock()

    def after_send(result):
        with lock:
            seen.append((result.send_id, result.status))

    results = transport(sg, max_attempts=10).send_batch(
        emails(12), before_send=lambda sid: sid != "snd_0003_q8Zr", after_send=after_send
    )
    assert sg.counters.faults["503"] > 0  # retries happened, and were not reported as results
    assert sorted(seen) == sorted((r.send_id, r.status) for r in results)
    assert dict(seen)["snd_0003_q8Zr"] == SendStatus.skipped


def test_a_stop_raised_by_after_send_stops_the_batch_with_its_results(sg):
    """The caller's failure limit stops the batch through the hook: the email that tripped it
    is settled, the rest are never sent, and the caller's own error comes back."""
    sg.set_faults(rate_503=1.0)

    def after_send(result):
        if result.send_id == "snd_0002_q8Zr":
            raise TooManyFailures("3 consecutive send failures")

    batch = emails(10)
    with pytest.raises(TooManyFailures) as info:
        transport(sg, concurrency=1, max_attempts=1).send_batch(batch, after_send=after_send)
    assert [r.status for r in info.value.results] == [SendStatus.failed] * 3
    assert info.value.not_sent == [e.send_id for e in batch[3:]]
    assert sg.counters.requests == 3


def test_an_after_send_error_stops_the_batch_and_keeps_results(sg):
    def after_send(result):
        raise RuntimeError("database is locked")

    with pytest.raises(BatchStopped) as info:
        transport(sg, concurrency=1).send_batch(emails(4), after_send=after_send)
    assert isinstance(info.value.__cause__, RuntimeError)
    assert [r.send_id for r in info.value.results] == ["snd_0000_q8Zr"]
    assert len(info.value.not_sent) == 3 and len(sg.messages) == 1


# -- events ---------------------------------------------------------------------------------


def test_signed_events_for_sent_emails_verify_with_the_sendgrid_helper(sg):
    [result] = transport(sg).send_batch([make_email(9)])
    events = sg.events_for(
        result.send_id,
        "processed",
        "delivered",
        "open",
        "click",
        "bounce",
        "dropped",
        "spamreport",
        "unsubscribe",
    )
    with webhook_receiver() as receiver:
        assert sg.post_events(receiver.url, events) == 200
    [post] = receiver.posts
    assert EventWebhook(sg.public_key_b64).verify_signature(
        post.body.decode(), post.headers[SIGNATURE_HEADER], post.headers[TIMESTAMP_HEADER]
    )
    import json

    for event in json.loads(post.body):
        assert event["sg_message_id"].split(".")[0] == result.message_id
        assert event["send_id"] == result.send_id


def test_transport_repr_hides_the_key(sg):
    assert KEY not in repr(transport(sg))


def test_client_debug_logs_never_carry_the_email(sg, caplog):
    # python-http-client logs whole request bodies at DEBUG; our filter drops them.
    caplog.set_level(logging.DEBUG)
    transport(sg).send_batch([make_email(from_email="broken")])
    transport(sg).send_batch([make_email(2)])
    assert "python_http_client" in caplog.text  # the client did log something
    assert "lead0@example.com" not in caplog.text and "lead2@example.com" not in caplog.text
    assert "Some patients" not in caplog.text


def test_from_settings_uses_the_sendgrid_variables(sg):
    settings = Settings(SENDGRID_API_KEY=KEY, SENDGRID_API_HOST=sg.url, sandbox=True)
    t = SendGridTransport.from_settings(settings, concurrency=2)
    assert (t.host, t.sandbox, t.concurrency) == (sg.url, True, 2)
    [result] = t.send_batch([make_email()])
    assert result.status == SendStatus.sent and sg.counters.sandbox == 1
    with pytest.raises(DeliveryError):
        SendGridTransport.from_settings(Settings(SENDGRID_API_KEY=None))
