"""SendGrid Event Webhook events, normalized. Pure: no I/O, no clock, no database.

Modelled on django-anymail's SendGrid webhook: a lookup table maps SendGrid's raw event
types to our own kinds, and the raw event is kept beside the normalized one (the store saves
it as it came). Quirks handled here, each where it matters:

- Delivery is at-least-once and duplicates have been seen with *different* ``sg_event_id``
  values, so every event also gets a dedupe key over (sg_message_id, event, timestamp, email).
- Our custom_args come back as top-level keys: ``send_id`` names the ledger row. Bounces that
  return through Return-Path carry no custom_args; the store then links them by the
  X-Message-Id prefix of ``sg_message_id``.
- ``bounce`` covers both hard bounces and ``type: "blocked"`` (the receiver refused for now:
  reputation, content, rate). Only a hard bounce suppresses; a blocked or soft (4.x.x status)
  bounce does not.
- Unknown event types (SendGrid adds some from time to time) are kept with kind ``unknown``
  rather than refused: a refusal would make SendGrid retry the whole batch for 24 hours.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

UTC = UTC

# raw SendGrid event type -> normalized kind
EVENT_KINDS: dict[str, str] = {
    "processed": "processed",
    "delivered": "delivered",
    "deferred": "deferred",
    "bounce": "bounced",
    "dropped": "rejected",
    "open": "opened",
    "click": "clicked",
    "spamreport": "complained",
    "unsubscribe": "unsubscribed",
    "group_unsubscribe": "unsubscribed",
    "group_resubscribe": "resubscribed",
}
UNKNOWN = "unknown"

# Kinds after which the address must never be mailed again (a bounce only when hard).
SUPPRESSING_KINDS = frozenset({"bounced", "rejected", "complained", "unsubscribed"})
# Kinds that prove SendGrid accepted the message: an 'unknown' ledger row was really sent.
ACCEPTED_KINDS = frozenset({"processed", "delivered"})

# Column widths in the events table (store.events).
MAX_SEND_ID = 32
MAX_SG_EVENT_ID = 128
MAX_EMAIL = 320


class MalformedEvents(ValueError):
    """The body is not a JSON array of SendGrid events. The message names the position and
    the field, never a value (values hold addresses)."""


@dataclass(frozen=True)
class NormalizedEvent:
    kind: str  # one of EVENT_KINDS' values, or "unknown"
    raw_event: str  # SendGrid's event type as sent
    email: str  # stripped and casefolded, as the leads table keeps it
    occurred_at: datetime  # aware UTC
    timestamp: int  # SendGrid's Unix time, as sent
    dedupe_key: str  # sha256 hex over (sg_message_id, event, timestamp, email)
    sg_event_id: str | None
    sg_message_id: str | None
    message_id: str | None  # the X-Message-Id prefix of sg_message_id (what sends.message_id holds)
    send_id: str | None  # our custom_args send_id, when it came back
    bounce_type: str | None  # "bounce" or "blocked" on bounce events
    status: str | None  # the SMTP enhanced status code on bounces, e.g. "5.1.1"
    raw: dict = field(compare=False, repr=False)  # the event exactly as SendGrid sent it

    @property
    def suppresses(self) -> bool:
        return suppresses(self)


def dedupe_key(sg_message_id: str | None, event: str, timestamp: int, email: str) -> str:
    # JSON keeps the fields apart unambiguously (no delimiter that a value could contain).
    material = json.dumps([sg_message_id, event, timestamp, email], separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


def message_id_of(sg_message_id: str | None) -> str | None:
    """'14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0' -> '14c5d75ce93': the part before the
    first dot is the X-Message-Id the Mail Send API answered with."""
    if not sg_message_id:
        return None
    prefix = sg_message_id.split(".", 1)[0]
    return prefix or None


def is_soft_bounce(event: NormalizedEvent) -> bool:
    """A blocked bounce, or a bounce whose SMTP status is transient (4.x.x)."""
    return event.bounce_type == "blocked" or bool(event.status and event.status.startswith("4"))


def suppresses(event: NormalizedEvent) -> bool:
    """Whether this event means: never mail this address again."""
    if event.kind == "bounced":
        return not is_soft_bounce(event)
    return event.kind in SUPPRESSING_KINDS


def _optional_str(raw: Mapping, name: str, max_len: int) -> str | None:
    value = raw.get(name)
    if isinstance(value, str) and value and len(value) <= max_len:
        return value
    return None


def normalize(raw: Any, position: int = 0) -> NormalizedEvent:
    """One SendGrid event (a dict from the posted array) -> NormalizedEvent.

    Requires ``event`` (a string), ``email`` (a string) and ``timestamp`` (a Unix time);
    anything else missing or odd is simply None."""
    if not isinstance(raw, dict):
        raise MalformedEvents(f"event {position}: not a JSON object")
    event = raw.get("event")
    if not isinstance(event, str) or not event or len(event) > 32:
        raise MalformedEvents(f"event {position}: 'event' missing or not a short string")
    email = raw.get("email")
    if not isinstance(email, str) or not email.strip() or len(email) > MAX_EMAIL:
        raise MalformedEvents(f"event {position}: 'email' missing or not a string")
    email = email.strip().casefold()
    timestamp = raw.get("timestamp")
    if isinstance(timestamp, bool) or not isinstance(timestamp, (int, float)) or not math.isfinite(timestamp):
        raise MalformedEvents(f"event {position}: 'timestamp' missing or not a Unix time")
    try:
        occurred_at = datetime.fromtimestamp(int(timestamp), UTC)
    except (OverflowError, OSError, ValueError):
        raise MalformedEvents(f"event {position}: 'timestamp' out of range") from None
    sg_message_id = _optional_str(raw, "sg_message_id", 1000)
    kind = EVENT_KINDS.get(event, UNKNOWN)
    return NormalizedEvent(
        kind=kind,
        raw_event=event,
        email=email,
        occurred_at=occurred_at,
        timestamp=int(timestamp),
        dedupe_key=dedupe_key(sg_message_id, event, int(timestamp), email),
        sg_event_id=_optional_str(raw, "sg_event_id", MAX_SG_EVENT_ID),
        sg_message_id=sg_message_id,
        message_id=message_id_of(sg_message_id),
        send_id=_optional_str(raw, "send_id", MAX_SEND_ID),
        bounce_type=_optional_str(raw, "type", 32) if event == "bounce" else None,
        status=_optional_str(raw, "status", 32) if event == "bounce" else None,
        raw=raw,
    )


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def parse_events(body: bytes | str) -> list[NormalizedEvent]:
    """A webhook body (already signature-checked) -> events. Raises MalformedEvents for
    anything but a JSON array of well-formed events; then nothing of it may be stored."""
    try:
        # NaN / Infinity are not JSON (PostgreSQL's json type refuses them): malformed, not a 500.
        data = json.loads(body, parse_constant=_refuse_constant)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise MalformedEvents("the body is not JSON") from None
    if not isinstance(data, list):
        raise MalformedEvents("the body is not a JSON array")
    return [normalize(raw, i) for i, raw in enumerate(data)]


@dataclass(frozen=True)
class RecordedEvents:
    """What one webhook post did (counts only: safe for logs and the HTTP answer)."""

    received: int = 0
    stored: int = 0
    duplicates: int = 0  # already stored, or repeated within the post
    linked: int = 0  # stored events tied to a ledger row
    settled: int = 0  # 'unknown' ledger rows now known to be sent
    suppressed: int = 0  # distinct addresses put on the suppression list by this post
    exited: int = 0  # enrollments ended by this post

    def as_dict(self) -> dict:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}
