"""The web app for real: uvicorn on loopback in a thread, httpx as the client, a SQLite file.

Unsubscribe pages and RFC 8058 one-click, signed undo, the SendGrid Event Webhook (a
throwaway P-256 key, and sendgrid-python's own public test vector), the booking webhook, and
end to end: after each way of leaving, the next real tick sends that lead nothing.
"""

from __future__ import annotations

import base64
import contextlib
import email
import hashlib
import hmac
import json
import shutil
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email import policy
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest
import sqlalchemy as sa
from conftest import SECRET
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from live_server import free_socket, running
from store_support import enrollment_row
from typer.testing import CliRunner

from campaign.delivery.outbox import read_index
from campaign.engine import run_tick
from campaign.models import LeadIn
from campaign.runtime import build_context
from campaign.settings import PROJECT_ROOT, Settings
from campaign.store import Store, email_hash, enrollments, events, leads
from campaign.tokens import make_legacy_token, make_token, make_undo_token, read_token, read_undo_token
from campaign.web import BOOKING_SIGNATURE_HEADER, create_app
from campaign.webhook_signature import SIGNATURE_HEADER, TIMESTAMP_HEADER, InvalidPublicKey

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)  # Monday 10:00 in New York
NEXT = datetime(2026, 3, 5, 15, 0, tzinfo=UTC)  # when New York's second step is due

# A throwaway P-256 key pair, as SendGrid's: the public half as base64 DER SubjectPublicKeyInfo.
PRIVATE_KEY = ec.generate_private_key(ec.SECP256R1())
PUBLIC_KEY = base64.b64encode(
    PRIVATE_KEY.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
).decode()
OTHER_KEY = ec.generate_private_key(ec.SECP256R1())

# sendgrid-python's own test vector (test/unit/test_eventwebhook.py, shipped in the sendgrid
# 6.12.5 wheel as site-packages/test/unit/test_eventwebhook.py).
SG_VECTOR_KEY = (
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3GR"
    "qe62gw+2fNNRaINXvVpiglSI8eNEc6wEA3F+g=="
)
SG_VECTOR_SIGNATURE = (
    "MEUCIGHQVtGj+Y3LkG9fLcxf3qfI10QysgDWmMOVmxG0u6ZUAiEAyBiXDWzM+uOe5W0JuG+luQAbPIqHh89M15TluLtEZtM="
)
SG_VECTOR_TIMESTAMP = "1600112502"
SG_VECTOR_PAYLOAD = (
    json.dumps(
        [
            {
                "email": "hello@world.com",
                "event": "dropped",
                "reason": "Bounced Address",
                "sg_event_id": "ZHJvcC0xMDk5NDkxOS1MUnpYbF9OSFN0T0doUTRrb2ZTbV9BLTA",
                "sg_message_id": "LRzXl_NHStOGhQ4kofSm_A.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC76C-9.0",
                "smtp-id": "<LRzXl_NHStOGhQ4kofSm_A@ismtpd0039p1iad1.sendgrid.net>",
                "timestamp": 1600112492,
            }
        ],
        sort_keys=True,
        separators=(",", ":"),
    )
    + "\r\n"
)


# ---- the live server --------------------------------------------------------------------------


@dataclass
class Live:
    url: str
    settings: Settings
    store: Store  # the app's own store

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10)


@contextlib.contextmanager
def serve_app(make_settings, **overrides) -> Iterator[Live]:
    """create_app(settings) on uvicorn, bound to a free loopback port; public_url points at it."""
    sock, url = free_socket()
    overrides = {"public_url": url, "SENDGRID_WEBHOOK_PUBLIC_KEY": PUBLIC_KEY, **overrides}
    settings = make_settings(**overrides)
    app = create_app(settings)
    with running(app, sock):
        yield Live(url, settings, app.state.store)


@pytest.fixture
def live(make_settings):
    with serve_app(make_settings) as running:
        yield running


def add_enrolled_lead(store: Store, email: str = "jane@example.com"):
    store.upsert_leads([LeadIn(email=email, first_name="Jane", consent=True)], NOW)
    lead = store.lead_by_email(email)
    campaign = store.campaign("evergreen")
    store.add_enrollments([enrollment_row(campaign["id"], lead.id, NOW)])
    return lead


def sign(body: bytes, timestamp: int | str | None = None, key=PRIVATE_KEY) -> dict[str, str]:
    """SendGrid's signature: ECDSA P-256 / SHA-256 over timestamp + body, base64 DER."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    signature = key.sign(ts.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {SIGNATURE_HEADER: base64.b64encode(signature).decode(), TIMESTAMP_HEADER: ts}


def event(kind: str, email: str = "jane@example.com", **extra) -> dict:
    return {
        "email": email,
        "timestamp": int(NOW.timestamp()),
        "event": kind,
        "sg_event_id": f"{kind}-{email}",
        "sg_message_id": "14c5d75ce93.filter0001.16648.5515E0B88.0",
        "category": ["education"],
        **extra,
    }


def post_events(client: httpx.Client, events_: list[dict], **sign_kw) -> httpx.Response:
    body = json.dumps(events_).encode()
    return client.post(
        "/webhooks/sendgrid",
        content=body,
        headers={"Content-Type": "application/json", **sign(body, **sign_kw)},
    )


def event_count(store: Store) -> int:
    with store.engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(events)).scalar()


def booking_post(client: httpx.Client, payload: bytes, secret: str = SECRET) -> httpx.Response:
    signature = hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()
    return client.post(
        "/webhooks/booking",
        content=payload,
        headers={"Content-Type": "application/json", BOOKING_SIGNATURE_HEADER: signature},
    )


# ---- pages ------------------------------------------------------------------------------------


def test_healthz(live):
    with live.client() as client:
        response = client.get("/healthz")
    assert (response.status_code, response.json()) == (200, {"ok": True})


def test_get_shows_the_page_and_never_unsubscribes(live):
    lead = add_enrolled_lead(live.store)
    path = f"/unsubscribe/{make_token(lead.public_id, SECRET)}"
    with live.client() as client:
        page = client.get(path)
        head = client.head(path)
    assert page.status_code == 200 and head.status_code == 200
    body = page.text
    assert "Fresh Start Ketamine" in body
    assert '<html lang="en">' in body and 'name="viewport"' in body
    assert '<form method="post"' in body and '<button type="submit">Unsubscribe</button>' in body
    assert "<script" not in body.lower()
    assert page.headers["referrer-policy"] == "no-referrer"  # the token is in the URL
    assert "no-store" in page.headers["cache-control"]
    assert live.store.lead_by_email("jane@example.com").unsubscribed_at is None
    assert live.store.is_reachable(lead.id)
    assert live.store.enrollment_for_lead(lead.id)["state"] == "active"


def test_the_buttons_post_unsubscribes_and_offers_a_signed_undo(live):
    lead = add_enrolled_lead(live.store)
    with live.client() as client:
        response = client.post(f"/unsubscribe/{make_token(lead.public_id, SECRET)}", data={"confirm": "yes"})
    assert response.status_code == 200
    assert "You are unsubscribed" in response.text
    stored = live.store.lead_by_email("jane@example.com")
    assert stored.unsubscribed_at is not None
    enrollment = live.store.enrollment_for_lead(lead.id)
    assert (enrollment["state"], enrollment["exit_reason"], enrollment["next_due_at"]) == (
        "exited",
        "unsubscribed",
        None,
    )
    assert not live.store.is_reachable(lead.id)
    undo_token = response.text.split('action="../resubscribe/')[1].split('"')[0]
    assert read_undo_token(undo_token, SECRET) == (lead.public_id, stored.unsubscribed_at)


def test_one_click_post_unsubscribes_without_cookies_and_is_idempotent(live):
    lead = add_enrolled_lead(live.store)
    path = f"/unsubscribe/{make_token(lead.public_id, SECRET)}"
    with httpx.Client(base_url=live.url) as client:  # a mail provider: no cookies, no auth
        first = client.post(
            path,
            content=b"List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        when = live.store.lead_by_email("jane@example.com").unsubscribed_at
        second = client.post(
            path,
            content=b"List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
    assert first.status_code == 200 and second.status_code == 200
    assert when is not None and live.store.lead_by_email("jane@example.com").unsubscribed_at == when
    assert not live.store.is_reachable(lead.id)


def test_undo_resubscribes_and_reactivates_the_sequence(live):
    lead = add_enrolled_lead(live.store)
    with live.client() as client:
        done = client.post(f"/unsubscribe/{make_token(lead.public_id, SECRET)}")
        undo_path = "/resubscribe/" + done.text.split('action="../resubscribe/')[1].split('"')[0]
        assert client.get(undo_path).status_code == 405  # only a deliberate post undoes
        assert live.store.lead_by_email("jane@example.com").unsubscribed_at is not None
        undone = client.post(undo_path)
    assert undone.status_code == 200 and "subscribed again" in undone.text
    assert live.store.lead_by_email("jane@example.com").unsubscribed_at is None
    assert live.store.enrollment_for_lead(lead.id)["state"] == "active"
    assert live.store.is_reachable(lead.id)
    again = undone.text.split('action="../unsubscribe/')[1].split('"')[0]
    assert read_token(again, SECRET) == lead.public_id


def test_an_unsubscribe_token_cannot_resubscribe(live):
    lead = add_enrolled_lead(live.store)
    token = make_token(lead.public_id, SECRET)
    with live.client() as client:
        client.post(f"/unsubscribe/{token}")
        refused = client.post(f"/resubscribe/{token}")
    assert refused.status_code == 400
    assert live.store.lead_by_email("jane@example.com").unsubscribed_at is not None


def expired_token(public_id: str, monkeypatch, purpose: str = "unsubscribe") -> str:
    two_years_ago = int(time.time()) - 2 * 365 * 24 * 3600
    if purpose == "unsubscribe":
        return make_token(public_id, SECRET, issued_at=two_years_ago)
    with monkeypatch.context() as m:  # undo tokens are itsdangerous' (made once per unsubscribe)
        m.setattr("itsdangerous.timed.TimestampSigner.get_timestamp", lambda self: two_years_ago)
        return make_legacy_token(public_id, SECRET, purpose=purpose)


@pytest.mark.parametrize("kind", ["tampered", "other secret", "garbage", "expired"])
def test_bad_tokens_get_a_friendly_page_and_change_nothing(live, monkeypatch, kind):
    lead = add_enrolled_lead(live.store)
    good = make_token(lead.public_id, SECRET)
    token = {
        "tampered": good[:-3] + ("AAA" if not good.endswith("AAA") else "BBB"),
        "other secret": make_token(lead.public_id, "another-secret"),
        "garbage": "not-a-token",
        "expired": expired_token(lead.public_id, monkeypatch),
    }[kind]
    status = 410 if kind == "expired" else 400
    with live.client() as client:
        shown = client.get(f"/unsubscribe/{token}")
        posted = client.post(f"/unsubscribe/{token}", content=b"List-Unsubscribe=One-Click")
        undo_token = expired_token(lead.public_id, monkeypatch, "resubscribe") if kind == "expired" else token
        undo = client.post(f"/resubscribe/{undo_token}")
    assert (shown.status_code, posted.status_code, undo.status_code) == (status, status, status)
    for response in (shown, posted):
        assert "Fresh Start Ketamine" in response.text and "unsubscribe link" in response.text
        assert lead.public_id not in response.text and "Signature" not in response.text
        assert "<form" not in response.text
    assert live.store.lead_by_email("jane@example.com").unsubscribed_at is None
    assert live.store.is_reachable(lead.id)


def test_a_forgotten_leads_link_still_answers_politely(live):
    lead = add_enrolled_lead(live.store)
    live.store.forget_lead("jane@example.com", NOW)
    with live.client() as client:
        response = client.post(f"/unsubscribe/{make_token(lead.public_id, SECRET)}")
    assert response.status_code == 200 and "You are unsubscribed" in response.text
    assert "resubscribe" not in response.text  # nothing to undo


# ---- the SendGrid Event Webhook ---------------------------------------------------------------


def test_a_signed_post_is_stored_normalized_and_linked(live):
    lead = add_enrolled_lead(live.store)
    with live.client() as client:
        response = post_events(client, [event("delivered"), event("open"), event("spamreport")])
    assert response.status_code == 200
    assert response.json()["stored"] == 3 and response.json()["suppressed"] == 1
    with live.store.engine.connect() as conn:
        rows = conn.execute(
            sa.select(events.c.event, events.c.raw_event, events.c.lead_id).order_by(events.c.id)
        ).all()
    assert [tuple(r) for r in rows] == [
        ("delivered", "delivered", lead.id),
        ("opened", "open", lead.id),
        ("complained", "spamreport", lead.id),
    ]
    assert not live.store.is_reachable(lead.id)


def test_every_signature_failure_gets_the_same_403_and_stores_nothing(live):
    add_enrolled_lead(live.store)
    body = json.dumps([event("spamreport")]).encode()
    good = sign(body)
    bad_requests = {
        "tampered body": (body.replace(b"spamreport", b"spamreporT"), good),
        "wrong key": (body, sign(body, key=OTHER_KEY)),
        "stale timestamp": (body, sign(body, timestamp=int(time.time()) - 301)),
        "future timestamp": (body, sign(body, timestamp=int(time.time()) + 3600)),
        "timestamp swapped": (body, {**good, TIMESTAMP_HEADER: str(int(good[TIMESTAMP_HEADER]) - 1)}),
        "no signature": (body, {TIMESTAMP_HEADER: good[TIMESTAMP_HEADER]}),
        "no timestamp": (body, {SIGNATURE_HEADER: good[SIGNATURE_HEADER]}),
        "signature not base64": (body, {**good, SIGNATURE_HEADER: "%%%not base64%%%"}),
        "signature not DER": (body, {**good, SIGNATURE_HEADER: base64.b64encode(b"hello").decode()}),
        "timestamp not a number": (body, {**good, TIMESTAMP_HEADER: "yesterday"}),
        "no headers": (body, {}),
    }
    with live.client() as client:
        answers = {
            name: client.post("/webhooks/sendgrid", content=b, headers=h)
            for name, (b, h) in bad_requests.items()
        }
        accepted = client.post("/webhooks/sendgrid", content=body, headers=good)
    for name, response in answers.items():
        assert (response.status_code, response.text) == (403, "forbidden"), name
    assert accepted.status_code == 200  # the same post, correctly signed, goes through
    assert event_count(live.store) == 1


def test_a_replayed_post_is_stored_once(live):
    lead = add_enrolled_lead(live.store)
    body = json.dumps([event("delivered"), event("bounce", type="bounce", status="5.1.1")]).encode()
    headers = sign(body)
    with live.client() as client:
        first = client.post("/webhooks/sendgrid", content=body, headers=headers)
        second = client.post("/webhooks/sendgrid", content=body, headers=headers)
    assert first.status_code == second.status_code == 200
    assert (first.json()["stored"], second.json()["stored"], second.json()["duplicates"]) == (2, 0, 2)
    assert event_count(live.store) == 2
    assert live.store.enrollment_for_lead(lead.id)["exit_reason"] == "bounced"


def test_malformed_body_is_refused_and_loses_nothing_stored(live):
    add_enrolled_lead(live.store)
    with live.client() as client:
        assert post_events(client, [event("delivered")]).status_code == 200
        for body in (
            b"",
            b"{",
            b'{"event": "open"}',
            json.dumps([event("open"), {"event": "click"}]).encode(),
        ):
            response = client.post("/webhooks/sendgrid", content=body, headers=sign(body))
            assert response.status_code == 400, body
    assert event_count(live.store) == 1  # the good event stays; nothing of the bad posts is stored


def test_an_empty_array_is_fine_and_an_empty_unsigned_body_is_not(live):
    with live.client() as client:
        assert client.post("/webhooks/sendgrid", content=b"[]", headers=sign(b"[]")).json()["received"] == 0
        assert client.post("/webhooks/sendgrid", content=b"").status_code == 403


def test_thousands_of_events_in_one_post_are_stored_in_one_answer(live):
    """SendGrid posts events in batches of thousands: one post, one answer, every event kept
    (how fast is the webhook benchmark's business, not a test's)."""
    posted = [event("delivered", email=f"lead{i}@example.com") for i in range(5000)]
    posted += [
        event("bounce", email=f"lead{i}@example.com", type="bounce", status="5.1.1") for i in range(1000)
    ]
    with live.client() as client:
        response = post_events(client, posted)
    assert response.status_code == 200
    assert (response.json()["stored"], response.json()["suppressed"]) == (6000, 1000)
    assert event_count(live.store) == 6000


def test_a_body_over_the_limit_is_refused(make_settings):
    body = json.dumps([event("delivered", email=f"lead{i}@example.com") for i in range(20)]).encode()
    with serve_app(make_settings, sendgrid_max_body_bytes=1000) as running, running.client() as client:
        response = client.post("/webhooks/sendgrid", content=body, headers=sign(body))
        assert response.status_code == 413 and event_count(running.store) == 0


def test_without_a_key_the_webhook_refuses_unless_dev_mode_says_so(make_settings):
    body = json.dumps([event("delivered")]).encode()
    with serve_app(make_settings, SENDGRID_WEBHOOK_PUBLIC_KEY=None) as no_key, no_key.client() as client:
        assert client.post("/webhooks/sendgrid", content=body, headers=sign(body)).status_code == 403
    with serve_app(make_settings, SENDGRID_WEBHOOK_PUBLIC_KEY=None, webhook_insecure_dev=True) as dev:
        with dev.client() as client:
            assert client.post("/webhooks/sendgrid", content=body).status_code == 200
        assert event_count(dev.store) == 1


def test_a_configured_key_wins_over_dev_mode(make_settings):
    body = json.dumps([event("delivered")]).encode()
    with serve_app(make_settings, webhook_insecure_dev=True) as running, running.client() as client:
        assert client.post("/webhooks/sendgrid", content=body).status_code == 403


def test_a_bad_public_key_fails_at_start_up(make_settings):
    with pytest.raises(InvalidPublicKey):
        create_app(make_settings(SENDGRID_WEBHOOK_PUBLIC_KEY="bm90IGEga2V5"))


def test_sendgrids_own_test_vector_verifies_with_the_age_check_relaxed(make_settings):
    body = SG_VECTOR_PAYLOAD.encode()
    headers = {SIGNATURE_HEADER: SG_VECTOR_SIGNATURE, TIMESTAMP_HEADER: SG_VECTOR_TIMESTAMP}
    relaxed = int(time.time()) - int(SG_VECTOR_TIMESTAMP) + 3600
    with (
        serve_app(
            make_settings, SENDGRID_WEBHOOK_PUBLIC_KEY=SG_VECTOR_KEY, webhook_max_age_seconds=relaxed
        ) as running,
        running.client() as client,
    ):
        tampered = client.post(
            "/webhooks/sendgrid", content=body.replace(b"hello@", b"hallo@"), headers=headers
        )
        response = client.post("/webhooks/sendgrid", content=body, headers=headers)
        assert (tampered.status_code, response.status_code) == (403, 200)
        assert response.json()["stored"] == 1
        with running.store.engine.connect() as conn:
            row = conn.execute(sa.select(events)).mappings().one()
        assert (row["event"], row["raw_event"], row["lead_id"]) == ("rejected", "dropped", None)
        assert running.store.suppressed_hashes([email_hash("hello@world.com", SECRET)])
    with (
        serve_app(make_settings, SENDGRID_WEBHOOK_PUBLIC_KEY=SG_VECTOR_KEY) as strict,
        strict.client() as client,
    ):
        assert (
            client.post("/webhooks/sendgrid", content=body, headers=headers).status_code == 403
        )  # 2020: stale


def test_logs_never_carry_an_address(live, caplog):
    add_enrolled_lead(live.store, "secret.lead@example.com")
    caplog.set_level("DEBUG")
    with live.client() as client:
        post_events(
            client,
            [
                event("spamreport", email="secret.lead@example.com"),
                event("bounce", email="unknown.person@example.com", type="bounce", status="5.1.1"),
            ],
        )
        client.post(
            "/webhooks/sendgrid",
            content=b'[{"event": "open", "email": "secret.lead@example.com"}]',
            headers=sign(b'[{"event": "open", "email": "secret.lead@example.com"}]'),
        )
        booking_post(client, b'{"email": "secret.lead@example.com"}')
    assert "sendgrid webhook" in caplog.text and "booking webhook" in caplog.text
    assert "secret.lead" not in caplog.text and "unknown.person" not in caplog.text


# ---- the booking webhook ----------------------------------------------------------------------


def test_booking_marks_the_lead_booked_and_exits_its_sequences(live):
    lead = add_enrolled_lead(live.store)
    with live.client() as client:
        response = booking_post(client, b'{"email": "Jane@Example.com"}')
    assert (response.status_code, response.json()) == (200, {"ok": True, "lead_found": True})
    with live.store.engine.connect() as conn:
        booked, booked_at = conn.execute(
            sa.select(leads.c.booked, leads.c.booked_at).where(leads.c.id == lead.id)
        ).one()
    assert booked is True and booked_at is not None
    enrollment = live.store.enrollment_for_lead(lead.id)
    assert (enrollment["state"], enrollment["exit_reason"]) == ("exited", "booked")
    assert not live.store.is_reachable(lead.id)


def test_booking_refuses_bad_signatures_and_bad_bodies(live):
    lead = add_enrolled_lead(live.store)
    payload = b'{"email": "jane@example.com"}'
    with live.client() as client:
        wrong_secret = booking_post(client, payload, secret="not-the-secret")
        unsigned = client.post("/webhooks/booking", content=payload)
        non_ascii = client.post(
            "/webhooks/booking", content=payload, headers={BOOKING_SIGNATURE_HEADER: "é".encode("latin-1")}
        )
        not_json = booking_post(client, b"email=jane@example.com")
        no_email = booking_post(client, b'{"mail": "jane@example.com"}')
        unknown = booking_post(client, b'{"email": "nobody@example.com"}')
    assert [r.status_code for r in (wrong_secret, unsigned, non_ascii)] == [403, 403, 403]
    assert [r.status_code for r in (not_json, no_email)] == [400, 400]
    assert (unknown.status_code, unknown.json()["lead_found"]) == (200, False)
    assert live.store.is_reachable(lead.id)


def test_booking_refuses_everything_under_the_development_secret(make_settings):
    from campaign.settings import DEV_SECRET_KEY

    with serve_app(make_settings, secret_key=DEV_SECRET_KEY) as running, running.client() as client:
        add_enrolled_lead(running.store)
        assert (
            booking_post(client, b'{"email": "jane@example.com"}', secret=DEV_SECRET_KEY).status_code == 403
        )


# ---- end to end: whatever way a lead leaves, the next real tick sends it nothing -----------------


@dataclass(frozen=True)
class Ticked:
    folder: Path
    victim: str  # an address that got its welcome and is due again at NEXT
    control: str  # same audience, time zone and due time: proves the tick does send at NEXT


@pytest.fixture(scope="module")
def ticked(tmp_path_factory) -> Ticked:
    """The real sample leads imported and a first real tick run (once per module; each test
    gets a copy of the database and outbox)."""
    from campaign.app.leads import import_file

    folder = tmp_path_factory.mktemp("ticked")
    settings = Settings(
        database_url=f"sqlite:///{folder / 'campaign.db'}",
        outbox_dir=folder / "outbox",
        secret_key=SECRET,
        public_url="https://clinic.example.org",
        content_dir=PROJECT_ROOT,
    )
    ctx = build_context(settings, now=NOW)
    import_file(ctx.store, settings, PROJECT_ROOT / "audiences" / "sample_leads.csv", NOW)
    run_tick(ctx, NOW)
    due_again = welcomed_and_due_at_next(ctx.store, settings.outbox_dir)
    park_all_but(ctx.store, due_again[:2])
    ctx.store.close()
    return Ticked(folder, due_again[0], due_again[1])


def welcomed_and_due_at_next(store: Store, outbox: Path) -> list[str]:
    """Addresses that got a welcome and whose next step is due at NEXT (same audience and time
    zone: if the tick at NEXT sends to one of them, it would send to all of them)."""
    welcomed = {e["to"] for e in read_index(outbox)}
    query = (
        sa.select(leads.c.email)
        .join(enrollments, enrollments.c.lead_id == leads.c.id)
        .where(
            enrollments.c.state == "active",
            enrollments.c.next_due_at == NEXT,
            enrollments.c.audience == "gad",
            leads.c.timezone == "America/New_York",
        )
        .order_by(leads.c.id)
    )
    with store.engine.connect() as conn:
        found = [e for e in conn.execute(query).scalars() if e in welcomed]
    assert len(found) >= 2, "the sample leads changed: pick another audience for the end-to-end tests"
    return found


def park_all_but(store: Store, addresses: list[str]) -> None:
    """End every other sequence, so the next tick renders two emails instead of eighty (speed only)."""
    with store.engine.begin() as conn:
        pair = sa.select(leads.c.id).where(leads.c.email.in_(addresses))
        conn.execute(
            sa.update(enrollments)
            .where(enrollments.c.lead_id.not_in(pair))
            .values(state="exited", exit_reason="parked by test", next_due_at=None)
        )


@pytest.fixture
def ticked_copy(ticked, tmp_path) -> Ticked:
    for item in ticked.folder.iterdir():
        target = tmp_path / item.name
        shutil.copytree(item, target) if item.is_dir() else shutil.copy(item, target)
    return ticked


def unsubscribe_link(outbox: Path, address: str) -> str:
    entry = next(e for e in read_index(outbox) if e["to"] == address)
    message = email.message_from_bytes((outbox / entry["file"]).read_bytes(), policy=policy.default)
    return str(message["List-Unsubscribe"]).strip("<>")


def next_tick_recipients(settings: Settings) -> list[str]:
    before = len(read_index(settings.outbox_dir))
    ctx = build_context(settings, now=NEXT)
    try:
        run_tick(ctx, NEXT)
    finally:
        ctx.store.close()
    return [e["to"] for e in read_index(settings.outbox_dir)[before:]]


def leave_by(method: str, live: Live, victim: str) -> None:
    outbox = live.settings.outbox_dir
    link = unsubscribe_link(outbox, victim)
    path = urlparse(link).path
    send_id = next(e["send_id"] for e in read_index(outbox) if e["to"] == victim)
    sg_message_id = f"outbox-{send_id}.filter0001.1.2.0"  # the outbox's message id, as SendGrid would echo it
    with live.client() as client:
        if method == "page":
            assert client.get(path).status_code == 200
            assert live.store.is_reachable(live.store.lead_by_email(victim).id)  # GET changed nothing
            response = client.post(path, data={"confirm": "yes"})
        elif method == "one-click":
            response = client.post(
                path,
                content=b"List-Unsubscribe=One-Click",
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
        elif method == "sendgrid unsubscribe":
            response = post_events(
                client, [event("unsubscribe", victim, send_id=send_id, sg_message_id=sg_message_id)]
            )
        elif method == "spamreport":
            response = post_events(
                client, [event("spamreport", victim, send_id=send_id, sg_message_id=sg_message_id)]
            )
        elif method == "hard bounce":  # through Return-Path: no custom_args
            response = post_events(
                client,
                [
                    event(
                        "bounce",
                        victim,
                        sg_message_id=sg_message_id,
                        type="bounce",
                        status="5.1.1",
                        reason="550 5.1.1 no such user",
                    )
                ],
            )
        elif method == "booking":
            response = booking_post(client, json.dumps({"email": victim}).encode())
        elif method == "forget":
            result = CliRunner().invoke(
                _cli_app(),
                ["forget", victim],
                env={"CAMPAIGN_DATABASE_URL": live.settings.database_url, "CAMPAIGN_SECRET_KEY": SECRET},
            )
            assert result.exit_code == 0, result.output
            assert "Forgot 1 lead" in result.output and victim not in result.output
            assert not any(word in result.output.lower() for word in ("gad", "anxiety", "generalized"))
            return
        else:
            raise AssertionError(method)
    assert response.status_code == 200, response.text
    if method in ("sendgrid unsubscribe", "spamreport", "hard bounce"):
        assert response.json()["linked"] == 1


def _cli_app():
    from campaign.cli import app

    return app


@pytest.mark.parametrize(
    "method", ["page", "one-click", "sendgrid unsubscribe", "spamreport", "hard bounce", "booking", "forget"]
)
def test_after_leaving_the_next_tick_sends_the_lead_nothing(ticked_copy, make_settings, method):
    with serve_app(make_settings) as running:
        victim_id = running.store.lead_by_email(ticked_copy.victim).id
        leave_by(method, running, ticked_copy.victim)
        assert not running.store.is_reachable(victim_id)
        sent = next_tick_recipients(running.settings)
    assert ticked_copy.control in sent  # the tick did send at this time...
    assert ticked_copy.victim not in sent  # ...but not to the lead who left


def test_a_drop_for_our_own_content_keeps_the_lead_and_the_next_tick_sends_to_it(ticked_copy, make_settings):
    """SendGrid dropped the welcome for its content ("Spam Content"): that is about our email,
    not the lead's address, so nobody is suppressed and the next step still goes out."""
    victim = ticked_copy.victim
    with serve_app(make_settings) as running:
        outbox = running.settings.outbox_dir
        send_id = next(e["send_id"] for e in read_index(outbox) if e["to"] == victim)
        drop = event("dropped", victim, send_id=send_id, reason="Spam Content")
        with running.client() as client:
            response = post_events(client, [drop])
        assert response.status_code == 200, response.text
        counts = response.json()
        assert (counts["linked"], counts["content_drops"], counts["suppressed"], counts["exited"]) == (
            1,
            1,
            0,
            0,
        )
        assert running.store.is_reachable(running.store.lead_by_email(victim).id)
        sent = next_tick_recipients(running.settings)
    assert ticked_copy.control in sent and victim in sent


def test_the_cli_marks_leads_booked(ticked_copy, make_settings):
    settings = make_settings()
    result = CliRunner().invoke(
        _cli_app(),
        ["booked", ticked_copy.victim, "nobody@example.com"],
        env={"CAMPAIGN_DATABASE_URL": settings.database_url, "CAMPAIGN_SECRET_KEY": SECRET},
    )
    assert result.exit_code == 1  # one address was not found
    assert "Marked 1 of 2" in result.output and "nobody@example.com" in result.output
    sent = next_tick_recipients(settings)
    assert ticked_copy.control in sent and ticked_copy.victim not in sent


# ---- hardening (issue 13): malformed signature headers, body limits, single-use undo ----------


def test_malformed_signature_headers_get_the_same_403(live):
    body = json.dumps([event("delivered")]).encode()
    good = sign(body)
    malformed = {
        "timestamp of thousands of digits": {**good, TIMESTAMP_HEADER: "9" * 5000},
        "timestamp too big for a float": {**good, TIMESTAMP_HEADER: "9" * 400},
        "timestamp of twenty digits": {**good, TIMESTAMP_HEADER: "1" * 20},
        "timestamp with a sign": {**good, TIMESTAMP_HEADER: "-" + good[TIMESTAMP_HEADER]},
        "timestamp with spaces inside": {**good, TIMESTAMP_HEADER: "17 00000000"},
        "empty timestamp": {**good, TIMESTAMP_HEADER: ""},
        "signature of thousands of characters": {**good, SIGNATURE_HEADER: "A" * 8000},
        "signature with padding inside": {**good, SIGNATURE_HEADER: good[SIGNATURE_HEADER][:40] + "=="},
        "signature missing its padding": {**good, SIGNATURE_HEADER: "QUJD" * 20 + "QQ"},
        "signature with non-base64 bytes": {**good, SIGNATURE_HEADER: "é" + good[SIGNATURE_HEADER]},
        "empty signature": {**good, SIGNATURE_HEADER: ""},
    }
    with live.client() as client:
        answers = {}
        for name, headers in malformed.items():
            encoded = {k: v.encode("latin-1") for k, v in headers.items()}
            answers[name] = client.post("/webhooks/sendgrid", content=body, headers=encoded)
        accepted = client.post("/webhooks/sendgrid", content=body, headers=good)
    for name, response in answers.items():
        assert (response.status_code, response.text) == (403, "forbidden"), name
    assert accepted.status_code == 200 and event_count(live.store) == 1


def raw_post(url: str, path: str, head: dict[str, str], body: bytes = b"", timeout: float = 5) -> int:
    """POST over a bare socket, sending only `body` (however much the headers promise), and
    return the status the server answers with. A server that waits for the rest times out."""
    host, port = urlparse(url).hostname, urlparse(url).port
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}", *(f"{k}: {v}" for k, v in head.items())]
    with socket.create_connection((host, port), timeout=timeout) as conn:
        conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        answer = b""
        while b"\r\n" not in answer:
            chunk = conn.recv(4096)  # socket.timeout when the server waits for the body
            if not chunk:
                break
            answer += chunk
    return int(answer.split(b" ", 2)[1])


def chunked(size: int, piece: int = 16 * 1024) -> bytes:
    parts = [b"%x\r\n%s\r\n" % (piece, b"[" * piece) for _ in range(size // piece)]
    return b"".join(parts)  # no final 0-size chunk: the post is not over


def test_a_declared_body_over_the_limit_is_refused_before_it_is_read(live):
    lead = add_enrolled_lead(live.store)
    thirty_mb = str(30 * 1024 * 1024)
    unsubscribe = f"/unsubscribe/{make_token(lead.public_id, SECRET)}"
    for path in ("/webhooks/sendgrid", "/webhooks/booking", unsubscribe, f"/resubscribe/{lead.public_id}"):
        status = raw_post(live.url, path, {"Content-Length": thirty_mb, "Content-Type": "application/json"})
        assert status == 413, path
    over_form_limit = str(live.settings.max_body_bytes + 1)
    assert raw_post(live.url, unsubscribe, {"Content-Length": over_form_limit}) == 413
    assert live.store.is_reachable(lead.id)  # the refused one-click post changed nothing
    assert event_count(live.store) == 0


def test_a_chunked_body_is_refused_as_soon_as_it_passes_the_limit(make_settings):
    with serve_app(make_settings, sendgrid_max_body_bytes=64 * 1024) as running:
        lead = add_enrolled_lead(running.store)
        head = {"Transfer-Encoding": "chunked", "Content-Type": "application/json"}
        assert raw_post(running.url, "/webhooks/sendgrid", head, chunked(96 * 1024)) == 413
        unsubscribe = f"/unsubscribe/{make_token(lead.public_id, SECRET)}"
        assert (
            raw_post(running.url, unsubscribe, head, chunked(running.settings.max_body_bytes + 32 * 1024))
            == 413
        )
        assert running.store.is_reachable(lead.id) and event_count(running.store) == 0
        with running.client() as client:  # under the limit, chunked or not, all is as before
            body = json.dumps([event("delivered")]).encode()
            streamed = client.post(
                "/webhooks/sendgrid", content=iter([body[:10], body[10:]]), headers=sign(body)
            )
            assert streamed.status_code == 200 and event_count(running.store) == 1


def test_the_body_limits_are_settings_with_generous_defaults():
    defaults = Settings()
    assert defaults.sendgrid_max_body_bytes == 8 * 1024 * 1024
    assert defaults.max_body_bytes == 64 * 1024


def undo_path_of(page: httpx.Response) -> str:
    return "/resubscribe/" + page.text.split('action="../resubscribe/')[1].split('"')[0]


def unsubscribe_path_of(page: httpx.Response) -> str:
    return "/unsubscribe/" + page.text.split('action="../unsubscribe/')[1].split('"')[0]


def test_an_undo_link_works_once(live):
    lead = add_enrolled_lead(live.store)
    with live.client() as client:
        undo = undo_path_of(client.post(f"/unsubscribe/{make_token(lead.public_id, SECRET)}"))
        assert client.post(undo).status_code == 200
        again = client.post(undo)
    assert again.status_code == 410 and "already used" in again.text and "<form" not in again.text
    assert "Fresh Start Ketamine" in again.text and lead.public_id not in again.text
    assert live.store.is_reachable(lead.id)


def test_an_old_undo_link_is_refused_after_a_later_unsubscribe(live):
    lead = add_enrolled_lead(live.store)
    with live.client() as client:
        first_undo = undo_path_of(client.post(f"/unsubscribe/{make_token(lead.public_id, SECRET)}"))
        resubscribed = client.post(first_undo)
        assert resubscribed.status_code == 200
        second = client.post(unsubscribe_path_of(resubscribed))  # "Changed your mind?"
        assert "You are unsubscribed" in second.text
        stale = client.post(first_undo)
        assert stale.status_code == 410 and "already used" in stale.text
        assert live.store.lead_by_email("jane@example.com").unsubscribed_at is not None
        assert not live.store.is_reachable(lead.id)
        assert client.post(undo_path_of(second)).status_code == 200  # the newest undo still works
    assert live.store.is_reachable(lead.id)


def test_an_undo_link_dies_when_sendgrid_reports_a_new_unsubscribe(live):
    lead = add_enrolled_lead(live.store)
    with live.client() as client:
        undo = undo_path_of(client.post(f"/unsubscribe/{make_token(lead.public_id, SECRET)}"))
        assert client.post(undo).status_code == 200
        assert post_events(client, [event("unsubscribe")]).status_code == 200
        assert client.post(undo).status_code == 410
    assert not live.store.is_reachable(lead.id)


def test_an_undo_link_of_the_old_format_is_refused(live):
    lead = add_enrolled_lead(live.store)
    old_style = make_legacy_token(lead.public_id, SECRET, purpose="resubscribe")  # the bare public id
    with live.client() as client:
        client.post(f"/unsubscribe/{make_token(lead.public_id, SECRET)}")
        refused = client.post(f"/resubscribe/{old_style}")
    assert refused.status_code == 400 and "<form" not in refused.text
    assert not live.store.is_reachable(lead.id)


def test_resubscribe_needs_the_very_unsubscribe_it_undoes(store):
    """On SQLite and PostgreSQL alike: the stamp in the undo link round-trips to the microsecond."""
    lead = add_enrolled_lead(store)
    first = store.unsubscribe_lead(lead.public_id, datetime(2026, 3, 2, 15, 0, 0, 123456, tzinfo=UTC))
    assert store.unsubscribe_lead(lead.public_id, NEXT) == first  # the first time counts
    token = make_undo_token(lead.public_id, first, SECRET)
    public_id, since = read_undo_token(token, SECRET)
    assert (public_id, since) == (lead.public_id, first)
    assert not store.resubscribe_lead(public_id, unsubscribed_at=since + timedelta(microseconds=1), now=NEXT)
    assert store.resubscribe_lead(public_id, unsubscribed_at=since, now=NEXT)
    assert store.is_reachable(lead.id) and store.enrollment_for_lead(lead.id)["state"] == "active"
    assert not store.resubscribe_lead(public_id, unsubscribed_at=since, now=NEXT)  # used
    assert store.unsubscribe_lead("no-such-lead", NEXT) is None
