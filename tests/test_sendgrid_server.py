"""The SendGrid-compatible server, exercised over real HTTP (httpx and the official client)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time

import httpx
import pytest
from python_http_client.exceptions import HTTPError
from sendgrid import SendGridAPIClient
from sendgrid.helpers.eventwebhook import EventWebhook
from sendgrid_fixtures import make_email, webhook_receiver

from campaign.delivery.payload import build_payload
from campaign.devserver import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Faults,
    build_event,
    running_server,
)

KEY = "SG.test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
MESSAGE_ID = re.compile(r"^[A-Za-z0-9_-]{22}$")


# One client for the module: httpx.post() builds an SSL context per call (tens of ms).
HTTP = httpx.Client(timeout=5)


@pytest.fixture(scope="module")
def server():
    with running_server(api_key=KEY) as srv:
        yield srv
    HTTP.close()


@pytest.fixture
def sg(server):
    server.reset()
    server.set_faults(Faults())
    return server


def post(server, body, headers=AUTH, **kw) -> httpx.Response:
    return HTTP.post(f"{server.url}/v3/mail/send", json=body, headers=headers, **kw)


def test_accepts_a_valid_message_with_202_and_a_message_id(sg):
    payload = build_payload(make_email())
    response = post(sg, payload)
    assert response.status_code == 202
    message_id = response.headers["X-Message-Id"]
    assert MESSAGE_ID.match(message_id)
    [recorded] = sg.messages
    assert recorded.message_id == message_id
    assert recorded.payload == payload
    assert recorded.send_id == "snd_0000_q8Zr"


def test_message_ids_differ(sg):
    ids = {post(sg, build_payload(make_email(i))).headers["X-Message-Id"] for i in range(5)}
    assert len(ids) == 5


def test_sandbox_mode_answers_200_and_records_nothing(sg):
    response = post(sg, build_payload(make_email(), sandbox=True))
    assert response.status_code == 200
    assert "X-Message-Id" not in response.headers
    assert sg.messages == []
    assert sg.counters.sandbox == 1


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer SG.wrong"}, {"Authorization": KEY}])
def test_wrong_or_missing_key_is_401_shaped_like_sendgrid(sg, headers):
    response = post(sg, build_payload(make_email()), headers=headers)
    assert response.status_code == 401
    [error] = response.json()["errors"]
    assert set(error) == {"message", "field", "help"}
    assert error["field"] is None and error["message"]
    assert sg.messages == []


def _mutated(mutate) -> dict:
    payload = build_payload(make_email())
    mutate(payload)
    return payload


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda p: p.pop("from"), "from"),
        (lambda p: p["from"].update(email="not-an-address"), "from.email"),
        (lambda p: p.update(personalizations=[]), "personalizations"),
        (lambda p: p["personalizations"][0].pop("to"), "personalizations.0.to"),
        (lambda p: p["personalizations"][0]["to"][0].update(email="x"), "personalizations.0.to.0.email"),
        (lambda p: p.pop("subject"), "subject"),
        (lambda p: p.update(subject=""), "subject"),
        (lambda p: p.pop("content"), "content"),
        (lambda p: p["content"][1].update(value=""), "content.1.value"),
        (lambda p: p.update(content=list(reversed(p["content"]))), "content"),
        (lambda p: p["custom_args"].update(n=1), "custom_args.n"),
        (lambda p: p["custom_args"].update(big="x" * 10_000), "custom_args"),
        (lambda p: p.update(categories=[str(i) for i in range(11)]), "categories"),
        (
            lambda p: p.update(mail_settings={"sandbox_mode": {"enable": "true"}}),
            "mail_settings.sandbox_mode.enable",
        ),
        (lambda p: p.update(asm={"group_id": "1"}), "asm.group_id"),
        (lambda p: p["headers"].update(X=1), "headers.X"),
        (
            lambda p: p["personalizations"][0].update(bcc=[{"email": "lead0@example.com"}]),
            "personalizations.0.bcc",
        ),
    ],
)
def test_invalid_payload_is_400_naming_the_field(sg, mutate, field):
    response = post(sg, _mutated(mutate))
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert field in [e["field"] for e in errors], errors
    assert sg.messages == []


def test_subject_per_personalization_is_accepted(sg):
    def mutate(p):
        p.pop("subject")
        p["personalizations"][0]["subject"] = "Hi"

    assert post(sg, _mutated(mutate)).status_code == 202


def test_malformed_json_is_400(sg):
    response = httpx.post(f"{sg.url}/v3/mail/send", content=b"{nope", headers=AUTH)
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] is None


def test_oversize_body_is_413():
    with running_server(api_key=KEY, max_body_bytes=10_000) as srv:
        response = post(srv, build_payload(make_email(html="x" * 20_000)))
        assert response.status_code == 413
        assert response.json()["errors"][0]["message"]
        assert srv.messages == []
        # The connection survived the 413: the next one is accepted.
        assert post(srv, build_payload(make_email())).status_code == 202


def test_unverified_sender_is_403():
    with running_server(api_key=KEY, verified_senders=["care@freshstartketamine.example"]) as srv:
        assert post(srv, build_payload(make_email())).status_code == 202
        response = post(srv, build_payload(make_email(from_email="other@example.org")))
        assert response.status_code == 403
        assert "Sender Identity" in response.json()["errors"][0]["message"]
        assert len(srv.messages) == 1


def test_official_client_sees_sendgrid_errors(sg):
    client = SendGridAPIClient(api_key=KEY, host=sg.url)
    response = client.client.mail.send.post(request_body=build_payload(make_email()), timeout=5)
    assert response.status_code == 202 and MESSAGE_ID.match(response.headers["X-Message-Id"])
    with pytest.raises(HTTPError) as info:
        client.client.mail.send.post(request_body=_mutated(lambda p: p.pop("subject")), timeout=5)
    assert info.value.status_code == 400
    assert info.value.to_dict["errors"][0]["field"] == "subject"


# -- faults ---------------------------------------------------------------------------------


def _statuses(server, n: int) -> list[int | str]:
    out: list[int | str] = []
    for i in range(n):
        try:
            out.append(post(server, build_payload(make_email(i))).status_code)
        except httpx.TransportError as exc:
            out.append(type(exc).__name__)
    return out


def test_faults_are_seeded_and_repeatable(sg):
    faults = Faults(rate_429=0.2, rate_500=0.1, rate_502=0.1, rate_503=0.1, seed=7)
    sg.set_faults(faults)
    first = _statuses(sg, 30)
    sg.reset()
    sg.set_faults(faults)
    assert _statuses(sg, 30) == first
    assert {429, 500, 502, 503, 202} <= set(first)
    assert len(sg.messages) == first.count(202)


def test_429_carries_rate_limit_headers(sg):
    sg.set_faults(rate_429=1.0, rate_limit_reset_s=2)
    response = post(sg, build_payload(make_email()))
    assert response.status_code == 429
    assert response.headers["X-RateLimit-Limit"] == "600"
    assert response.headers["X-RateLimit-Remaining"] == "0"
    reset = int(response.headers["X-RateLimit-Reset"])
    assert time.time() < reset <= time.time() + 3
    assert sg.messages == []


@pytest.mark.parametrize("fault", ["reset_before_body", "reset_after_body"])
def test_connection_resets_answer_nothing_and_record_nothing(sg, fault):
    sg.set_faults(**{fault: 1.0})
    with pytest.raises(httpx.TransportError):
        post(sg, build_payload(make_email()))
    assert sg.messages == []
    assert sg.counters.faults == {fault: 1}


def test_hang_never_answers(sg):
    sg.set_faults(hang=1.0)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{sg.url}/v3/mail/send", json=build_payload(make_email()), headers=AUTH, timeout=0.3)
    assert sg.messages == []


def test_latency_is_added(sg):
    sg.set_faults(latency_ms=150)
    started = time.monotonic()
    assert post(sg, build_payload(make_email())).status_code == 202
    assert time.monotonic() - started >= 0.14  # a lower bound only: slow machines pass too


def test_faults_change_at_runtime_over_http(sg):
    response = HTTP.post(f"{sg.url}/_dev/faults", json={"rate_503": 1.0, "seed": 3})
    assert response.status_code == 200 and response.json()["rate_503"] == 1.0
    assert post(sg, build_payload(make_email())).status_code == 503
    assert HTTP.get(f"{sg.url}/_dev/faults").json()["rate_503"] == 1.0
    assert HTTP.post(f"{sg.url}/_dev/faults", json={"nonsense": 1}).status_code == 400
    HTTP.post(f"{sg.url}/_dev/faults", json={})
    assert post(sg, build_payload(make_email())).status_code == 202


def test_dev_listing_and_reset(sg):
    post(sg, build_payload(make_email(1)))
    listing = HTTP.get(f"{sg.url}/_dev/messages").json()
    assert [m["payload"]["custom_args"]["send_id"] for m in listing["messages"]] == ["snd_0001_q8Zr"]
    assert MESSAGE_ID.match(listing["messages"][0]["message_id"])
    assert listing["counters"]["accepted"] == 1
    assert HTTP.post(f"{sg.url}/_dev/reset").status_code == 200
    assert HTTP.get(f"{sg.url}/_dev/messages").json()["messages"] == []


# -- event webhook --------------------------------------------------------------------------


def test_signed_events_verify_with_the_sendgrid_helper(sg):
    post(sg, build_payload(make_email(3, is_test=True), asm_group_id=12))
    kinds = ["processed", "delivered", "open", "click", "bounce", "dropped", "spamreport", "unsubscribe"]
    events = sg.events_for("snd_0003_q8Zr", *kinds)
    with webhook_receiver() as receiver:
        assert sg.post_events(receiver.url, events) == 200
    [received] = receiver.posts
    signature = received.headers[SIGNATURE_HEADER]
    timestamp = received.headers[TIMESTAMP_HEADER]
    verifier = EventWebhook(sg.public_key_b64)
    assert verifier.verify_signature(received.body.decode(), signature, timestamp) is True
    # Any change to the body or the timestamp breaks it.
    tampered = received.body.decode().replace("lead3", "lead4")
    assert verifier.verify_signature(tampered, signature, timestamp) is False
    assert verifier.verify_signature(received.body.decode(), signature, str(int(timestamp) + 1)) is False

    parsed = json.loads(received.body)
    assert [e["event"] for e in parsed] == kinds
    message_id = sg.messages[0].message_id
    for event in parsed:
        assert event["email"] == "lead3@example.com"
        assert event["sg_message_id"].startswith(f"{message_id}.filter")
        assert event["send_id"] == "snd_0003_q8Zr"  # custom_args as top-level keys
        assert event["category"] == ["education", "test"]
        assert event["asm_group_id"] == 12
        assert isinstance(event["timestamp"], int) and event["sg_event_id"]
    assert len({e["sg_event_id"] for e in parsed}) == len(parsed)
    assert parsed[4]["type"] == "bounce" and parsed[4]["reason"]
    assert parsed[3]["url"]


def test_single_category_is_a_string_in_events(sg):
    post(sg, build_payload(make_email()))
    [event] = sg.events_for("snd_0000_q8Zr", "delivered")
    assert event["category"] == "education"
    with pytest.raises(ValueError):
        build_event(sg.messages[0], "exploded")


def test_events_can_be_posted_over_the_dev_api(sg):
    post(sg, build_payload(make_email(5)))
    with webhook_receiver() as receiver:
        response = HTTP.post(
            f"{sg.url}/_dev/events",
            json={"url": receiver.url, "send_id": "snd_0005_q8Zr", "events": ["delivered", "open"]},
        )
        assert response.status_code == 200 and response.json()["status"] == 200
    [received] = receiver.posts
    key = HTTP.get(f"{sg.url}/_dev/public-key").json()["public_key"]
    assert key == sg.public_key_b64
    assert EventWebhook(key).verify_signature(
        received.body.decode(), received.headers[SIGNATURE_HEADER], received.headers[TIMESTAMP_HEADER]
    )


def test_main_serves_and_prints_url_and_keys():
    code = "from campaign.devserver import main; main(0, 'SG.cli-key')"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+", first).group(0)
        lines = [proc.stdout.readline() for _ in range(3)]
        assert "SENDGRID_API_KEY=SG.cli-key" in "".join(lines)
        assert "public key: MF" in "".join(lines)  # base64 DER SPKI of a P-256 key starts "MFkw"
        response = httpx.post(
            f"{url}/v3/mail/send",
            json=build_payload(make_email()),
            headers={"Authorization": "Bearer SG.cli-key"},
        )
        assert response.status_code == 202
    finally:
        proc.terminate()
        proc.wait(timeout=5)


def test_a_bulk_request_is_recorded_per_recipient_from_its_bytes():
    """A million recipients are kept as their requests' bytes, with each recipient's send id
    and addresses taken out; the parsed body comes back only when someone looks."""
    from campaign.devserver.state import Faults, ServerState

    body = {
        "from": {"email": "c@x.org"},
        "custom_args": {"send_id": "top"},
        "personalizations": [
            {
                "to": [{"email": f"r{i}@x.org"}],
                "substitutions": {"%%n%%": f"N{i}"},
                "custom_args": {"send_id": f"s{i}"},
            }
            for i in range(3)
        ]
        + [{"to": [{"email": "r3@x.org"}], "substitutions": {"%%n%%": "N3"}}],
        "subject": "Hi %%n%%",
        "content": [{"type": "text/plain", "value": "Dear %%n%%"}],
    }
    raw = json.dumps(body).encode()
    state = ServerState("SG.k", Faults(), 1 << 20)
    message_id = state.record(json.loads(raw), raw)
    messages = state.messages
    assert [(m.message_id, m.index, m.send_id, m.to_emails) for m in messages] == [
        (message_id, 0, "s0", ["r0@x.org"]),
        (message_id, 1, "s1", ["r1@x.org"]),
        (message_id, 2, "s2", ["r2@x.org"]),
        (message_id, 3, "top", ["r3@x.org"]),  # the request's custom_args where it has none
    ]
    stored = messages[0].stored
    assert all(m.stored is stored for m in messages) and stored.raw == raw
    assert stored._parsed is None  # nothing parsed kept until asked
    assert (
        messages[2].payload["content"][0]["value"] == "Dear N2" and messages[2].payload["subject"] == "Hi N2"
    )
    assert messages[0].body == body
