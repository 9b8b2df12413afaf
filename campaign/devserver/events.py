"""Signed Event Webhook batches shaped like SendGrid's (ECDSA P-256 over timestamp + body)."""

from __future__ import annotations

import base64
import json
import secrets
import time
import urllib.error
import urllib.request
import uuid
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from campaign.devserver.state import RecordedMessage

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
EVENT_TYPES = (
    "processed",
    "delivered",
    "deferred",
    "open",
    "click",
    "bounce",
    "blocked",
    "dropped",
    "spamreport",
    "unsubscribe",
    "group_unsubscribe",
    "group_resubscribe",
)


def public_key_b64(private_key: ec.EllipticCurvePrivateKey) -> str:
    """The verification key as SendGrid shows it: base64 of DER SubjectPublicKeyInfo."""
    der = private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode("ascii")


def sign_event_body(private_key: ec.EllipticCurvePrivateKey, body: bytes, timestamp: str) -> str:
    """SendGrid's signature: ECDSA P-256/SHA-256 over timestamp + raw body, base64 DER."""
    signature = private_key.sign(timestamp.encode("utf-8") + body, ec.ECDSA(hashes.SHA256()))
    return base64.b64encode(signature).decode("ascii")


def build_event(
    message: RecordedMessage, event: str, *, timestamp: int | None = None, **extra: Any
) -> dict[str, Any]:
    """One Event Webhook entry for an accepted message, shaped like SendGrid's.

    custom_args come back as top-level keys; ``category`` is a string for one category and a
    list for several (SendGrid does that too). ``sg_message_id`` starts with X-Message-Id.
    """
    if event not in EVENT_TYPES:
        raise ValueError(f"unknown event type {event!r}")
    payload = message.payload
    personalization = payload["personalizations"][0]
    custom_args = {**(payload.get("custom_args") or {}), **(personalization.get("custom_args") or {})}
    ev: dict[str, Any] = {
        "email": personalization["to"][0]["email"],
        "timestamp": int(timestamp if timestamp is not None else time.time()),
        "event": event,
        "sg_event_id": base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="),
        "sg_message_id": (
            f"{message.message_id}.filterdrecv-{secrets.token_hex(5)}-"
            f"{secrets.randbelow(10)}-{secrets.token_hex(4).upper()}-{secrets.randbelow(99)}.0"
        ),
        "smtp-id": f"<{message.message_id}@geopod-ismtpd-{secrets.randbelow(10)}>",
    }
    categories = payload.get("categories") or []
    if categories:
        ev["category"] = categories[0] if len(categories) == 1 else list(categories)
    if payload.get("asm"):
        ev["asm_group_id"] = payload["asm"]["group_id"]
    # Per-event fields SendGrid adds.
    if event == "delivered":
        ev.update(response="250 2.0.0 OK", ip="149.72.1.1", tls=1)
    elif event in ("open", "click"):
        ev.update(useragent="Mozilla/5.0", ip="203.0.113.7", sg_machine_open=False)
        if event == "click":
            ev.pop("sg_machine_open")
            ev.update(url="https://example.com/", url_offset={"index": 0, "type": "html"})
    elif event in ("bounce", "blocked"):
        ev.update(
            event="bounce",
            type="blocked" if event == "blocked" else "bounce",
            status="5.1.1" if event == "bounce" else "5.7.1",
            reason="550 5.1.1 The email account that you tried to reach does not exist.",
            bounce_classification="Invalid Address" if event == "bounce" else "Reputation",
            ip="149.72.1.1",
            tls=1,
        )
    elif event == "dropped":
        ev.update(reason="Bounced Address", status="5.0.0")
    elif event == "deferred":
        ev.update(response="400 try again later", attempt="1")
    # Custom args last but without overwriting SendGrid's own keys (SendGrid does the same).
    for key, value in custom_args.items():
        ev.setdefault(key, value)
    ev.update(extra)
    return ev


def post_signed_events(
    private_key: ec.EllipticCurvePrivateKey,
    url: str,
    events: list[dict[str, Any]],
    *,
    timestamp: str | None = None,
    timeout: float = 10.0,
) -> int:
    """POST a signed JSON array of events to ``url``; returns the HTTP status."""
    body = json.dumps(events, separators=(",", ":")).encode("utf-8")
    ts = timestamp if timestamp is not None else str(int(time.time()))
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": "SendGrid Event API",
            SIGNATURE_HEADER: sign_event_body(private_key, body, ts),
            TIMESTAMP_HEADER: ts,
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
